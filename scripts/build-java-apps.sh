#!/usr/bin/env bash
# Builds the Java provider and consumer of the end-to-end tests (e2e/java: Spring Boot 3.5,
# Spring Cloud 2025.0, Spring Cloud Alibaba 2025.0 Nacos discovery) into the Tandem cache and
# prints its directory. Does nothing when the cached build matches the sources.
#
#   scripts/build-java-apps.sh          # prints e.g. ~/.cache/tandem/java-apps-<hash>
#   TANDEM_JAVA_APPS_CHECK=1 scripts/build-java-apps.sh   # only checks: exit 3 when not built
#
# The directory holds provider.jar and consumer.jar (Spring Boot executable jars). Maven's local
# repository is $TANDEM_CACHE/m2, outside the repository; the first build downloads the
# dependencies (minutes), later builds of changed sources run offline when they can.
#
# Needs Maven and a JDK 17 or newer.
set -euo pipefail

src=$(cd "$(dirname "$0")/../e2e/java" && pwd)
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}
# Keyed by a hash of the sources, so that changing a pom or a class rebuilds.
hash=$(cd "$src" && find . -type f -not -path './*/target/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
dir=$cache/java-apps-$hash
if [[ -f $dir/provider.jar && -f $dir/consumer.jar ]]; then
	echo "$dir"
	exit 0
fi
if [[ ${TANDEM_JAVA_APPS_CHECK:-} == 1 ]]; then
	echo "build-java-apps: not built: $dir" >&2
	exit 3
fi

for tool in mvn java; do
	command -v "$tool" >/dev/null || { echo "build-java-apps: $tool is needed to build the Java apps" >&2; exit 1; }
done
mkdir -p "$cache/m2"
tmp=$(mktemp -d "$cache/java-apps-$hash.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Build a copy, so that no target/ lands in the working tree.
cp -R "$src/." "$tmp/src"
echo "build-java-apps: building $src into $dir" >&2
mvn=(mvn -B -q -Dmaven.repo.local="$cache/m2" -f "$tmp/src/pom.xml" package -DskipTests)
# Offline first: after the first build every dependency is in the cache.
if ! "${mvn[@]}" -o >"$tmp/offline.log" 2>&1; then
	"${mvn[@]}" >&2
fi
mkdir -p "$tmp/out"
cp "$tmp/src/provider/target/provider.jar" "$tmp/src/consumer/target/consumer.jar" "$tmp/out/"
rm -rf "$dir"
mv "$tmp/out" "$dir"
echo "$dir"
