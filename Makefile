# Tandem. The two commands that matter: `make demo` and `make test`.
GO            ?= go
TANDEM_CACHE  ?= $(HOME)/.cache/tandem
export TANDEM_CACHE

.PHONY: all build demo test deps-test fmt-check vet lint unit fuzz-short bench-e2e bench-scale clean

all: build

build:
	$(GO) build -o bin/tandem ./cmd/tandem

## demo: build Tandem and show a release and its git revert under live traffic, on
## embedded emulators (no external services); DEMO_ONCE=1 exits after the report.
demo: build
	./bin/tandem demo $(if $(filter 1,$(DEMO_ONCE)),--once)

## test: install what the tests need (if missing), then gofmt, go vet,
## staticcheck and every test.
test: deps-test fmt-check vet lint unit fuzz-short

# Real servers the integration tests use, and staticcheck, installed once and
# cached under $(TANDEM_CACHE) (outside the repository).
deps-test:
	GO=$(GO) scripts/install-staticcheck.sh
	scripts/install-haproxy.sh
	scripts/install-prometheus.sh
	scripts/nacos/install-rnacos.sh
	scripts/nacos/install-nacos3.sh
	scripts/build-java-apps.sh
	scripts/install-chromium.sh

fmt-check:
	@files=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck with its default checks (none is disabled); installed by
# scripts/install-staticcheck.sh (run here too, so make lint works alone).
lint:
	@GO=$(GO) scripts/install-staticcheck.sh >/dev/null
	$(TANDEM_CACHE)/bin/staticcheck ./...

# Under make test a missing real server fails its tests instead of skipping them.
unit:
	TANDEM_REQUIRE_HAPROXY=1 TANDEM_REQUIRE_PROMETHEUS=1 TANDEM_REQUIRE_REAL_NACOS=1 TANDEM_REQUIRE_CHROMIUM=1 TANDEM_REQUIRE_JAVA_APPS=1 $(GO) test -timeout 25m ./...

# A short fuzz run of every decoder of untrusted input; the seeds are hostile
# files (huge, deep, alias bombs, invalid UTF-8, duplicate keys). Longer:
# make fuzz-short FUZZTIME=10m.
FUZZTIME ?= 10s
fuzz-short:
	$(GO) test ./spec -run '^$$' -fuzz '^FuzzParseServices$$' -fuzztime $(FUZZTIME)
	$(GO) test ./spec -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./spec/gitsource -run '^$$' -fuzz '^FuzzWebhook$$' -fuzztime $(FUZZTIME)

## bench-e2e: releases and reverts through Tandem under load beside the naive
## in-place restart; prints the figures, writes results/e2e.csv and results/timeline.png.
BENCH_E2E_FLAGS ?= -releases 5
bench-e2e:
	scripts/install-haproxy.sh
	scripts/install-gnuplot.sh
	$(GO) run ./internal/cmd/bench-e2e $(BENCH_E2E_FLAGS) -out results

## bench-scale: one daemon in charge of 1,000 services on the emulators (ALB,
## SLB, Nacos): time of an idle pass over all, the daemon's memory, API calls
## per pass. Prints the figures and whether each target is met.
bench-scale: build
	TANDEM_BIN=$(CURDIR)/bin/tandem $(GO) test ./internal/scalebench -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 20m

clean:
	rm -rf bin results
