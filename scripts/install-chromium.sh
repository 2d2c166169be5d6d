#!/usr/bin/env bash
# Installs Debian's chromium when it is missing, then prints its version.
# Idempotent: does nothing but print when /usr/bin/chromium exists. The
# dashboard test (server/dashboard_test.go) starts its own headless
# instance on loopback and stops it; this script starts none.
set -euo pipefail

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-chromium: $chromium is missing and installing it needs root (apt-get install chromium)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q chromium
fi
# The Debian wrapper script may print shell noise on stderr; keep the version line.
"$chromium" --version 2>/dev/null | head -n 1
