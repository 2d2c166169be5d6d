#!/usr/bin/env bash
# Installs gnuplot (the Debian gnuplot-nox package, no X11) when it is
# missing, then prints its version. Idempotent: does nothing but print when
# gnuplot is on the PATH. make bench-e2e renders its timeline with it.
set -euo pipefail

if ! command -v gnuplot >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-gnuplot: gnuplot is missing and installing it needs root (apt-get install gnuplot-nox)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q gnuplot-nox
fi
gnuplot --version
