#!/usr/bin/env bash
# Installs the Prometheus server from the Debian packages (bookworm: 2.42)
# when it is missing, then prints its version. Idempotent: does nothing but
# print when /usr/bin/prometheus exists. The tests start their own servers on
# loopback with a temporary storage directory (internal/promtest); this script
# starts none, and keeps the package's own service from starting (a
# policy-rc.d refusing every start while apt runs, then the service stopped
# and disabled if an init system started it anyway).
set -euo pipefail

prometheus=/usr/bin/prometheus
if [ ! -x "$prometheus" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-prometheus: $prometheus is missing and installing it needs root (apt-get install prometheus)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [ ! -e "$policy" ]; then
		# invoke-rc.d asks this script before starting a service; 101 = "not allowed".
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	trap 'if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
	if ! apt-cache show prometheus >/dev/null 2>&1; then
		apt-get update -q
	fi
	apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 prometheus
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/prometheus ]; then
		/etc/init.d/prometheus stop >/dev/null 2>&1 || true
	fi
fi
"$prometheus" --version 2>&1 | sed -n 1p
