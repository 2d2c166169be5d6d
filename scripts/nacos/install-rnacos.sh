#!/usr/bin/env bash
# Installs r-nacos (crate rnacos), a Nacos-compatible server written in Rust, into the Tandem
# cache and prints the path of its binary. Does nothing when that binary is already there.
#
#   scripts/nacos/install-rnacos.sh            # prints e.g. ~/.cache/tandem/rnacos-0.8.5/bin/rnacos
#
# Needs cargo and a C compiler (rnacos bundles SQLite). Building takes about 8 minutes on 2 cores.
# internal/nacostest starts the binary; docs/nacos-servers.md describes the server.
set -euo pipefail

version=0.8.5
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}
root=$cache/rnacos-$version
bin=$root/bin/rnacos

if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

command -v cargo >/dev/null || { echo "install-rnacos: cargo is needed to build rnacos $version" >&2; exit 1; }
mkdir -p "$cache"
# Build into a scratch root and move it in place, so that an interrupted build never looks installed.
tmp=$(mktemp -d "$cache/rnacos-$version.tmp.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "install-rnacos: building rnacos $version into $root (takes minutes)" >&2
# --locked uses the crate's own Cargo.lock: the versions its authors tested.
cargo install rnacos --version "$version" --locked --root "$tmp" >&2
rm -rf "$root"
mv "$tmp" "$root"
trap - EXIT
echo "$bin"
