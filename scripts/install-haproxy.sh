#!/usr/bin/env bash
# Installs HAProxy from the Debian packages when it is missing, then prints
# its version. Idempotent: does nothing but print when /usr/sbin/haproxy exists.
# The tests start their own instances on loopback (internal/haproxytest);
# this script starts none.
set -euo pipefail

haproxy=/usr/sbin/haproxy
if [ ! -x "$haproxy" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-haproxy: $haproxy is missing and installing it needs root (apt-get install haproxy)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q haproxy
fi
"$haproxy" -v | sed -n 1p
