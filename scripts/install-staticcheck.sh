#!/usr/bin/env bash
# Installs staticcheck (honnef.co/go/tools) with `go install` into
# $TANDEM_CACHE/bin (default ~/.cache/tandem/bin, outside the repository)
# when it is missing or another version, then prints its version.
# Idempotent. make lint runs it over every package.
set -euo pipefail

version=0.8.2 # staticcheck 2026.2.2: type-checks Go 1.26
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}
bin=$cache/bin/staticcheck
if [ ! -x "$bin" ] || ! "$bin" -version | grep -qF "($version)"; then
	GOBIN=$cache/bin "${GO:-go}" install "honnef.co/go/tools/cmd/staticcheck@v$version"
fi
"$bin" -version
