# Tandem. The two commands that matter: `make demo` and `make test`.
GO            ?= go
TANDEM_CACHE  ?= $(HOME)/.cache/tandem
export TANDEM_CACHE

.PHONY: all build demo test deps-test fmt-check vet unit fuzz-short clean

all: build

build:
	$(GO) build -o bin/tandem ./cmd/tandem

## demo: build Tandem and show a release on the embedded default (no external services).
demo: build
	./bin/tandem demo

## test: install what the tests need (if missing), then gofmt, go vet and every test.
test: deps-test fmt-check vet unit

deps-test:
	scripts/install-chromium.sh

fmt-check:
	@files=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	TANDEM_REQUIRE_CHROMIUM=1 $(GO) test -timeout 25m ./...

clean:
	rm -rf bin results
