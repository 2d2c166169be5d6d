#!/usr/bin/env bash
# Builds a runnable standalone Nacos 3 server from Maven Central artifacts into the Tandem cache
# and prints its directory. Does nothing when the cached build matches this script's inputs.
#
#   scripts/nacos/install-nacos3.sh            # prints e.g. ~/.cache/tandem/nacos3-3.1.0-bugfix
#
# The directory holds the server's jars (from scripts/nacos/nacos3/pom.xml) in lib/ and lib-sofa/,
# classes/ (our dev.tandem.nacos3.Main and LoopbackServerProvider) and conf/application.properties.
# Start it as internal/nacostest does (see docs/nacos-servers.md):
#
#   java -Dnacos.standalone=true -Dnacos.home=HOME -Dnacos.remote.grpc.listen.ip=127.0.0.1 \
#        -cp 'DIR/classes:DIR/lib/*:DIR/lib-sofa/*' dev.tandem.nacos3.Main \
#        --spring.config.additional-location=file:DIR/conf/ --nacos.server.main.port=PORT ...
#
# lib-sofa/ holds the com.alipay.sofa artifacts (JRaft and SOFA's fork of Hessian) and must come
# after lib/: the fork has classes of the same names as com.caucho:hessian 4.0.63 but without
# SerializerFactory.getClassFactory(), which nacos-consistency calls, while Nacos also needs the
# fork's own com.alipay.hessian classes. A lib/* wildcard has no order, so the two go apart.
#
# Needs Maven and a JDK 17 or newer (javac, java).
set -euo pipefail

version=3.1.0-bugfix
src=$(cd "$(dirname "$0")/nacos3" && pwd)
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}
dir=$cache/nacos3-$version

# The build is keyed by its inputs, so that changing the pom or our classes rebuilds it.
stamp=$(cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [[ -f $dir/stamp && $(cat "$dir/stamp") == "$stamp" ]]; then
	echo "$dir"
	exit 0
fi

for tool in mvn javac; do
	command -v "$tool" >/dev/null || { echo "install-nacos3: $tool is needed to build Nacos $version" >&2; exit 1; }
done
mkdir -p "$cache"
# Build into a scratch directory and move it in place, so that a failed build never looks installed.
tmp=$(mktemp -d "$cache/nacos3-$version.tmp.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "install-nacos3: building Nacos $version into $dir" >&2
mvn -B -q -f "$src/pom.xml" dependency:copy-dependencies \
	-DincludeScope=runtime -DexcludeGroupIds=com.alipay.sofa -DoutputDirectory="$tmp/lib" >&2
mvn -B -q -f "$src/pom.xml" dependency:copy-dependencies \
	-DincludeScope=runtime -DincludeGroupIds=com.alipay.sofa -DoutputDirectory="$tmp/lib-sofa" >&2
mkdir -p "$tmp/classes" "$tmp/conf"
javac --release 17 -nowarn -d "$tmp/classes" -cp "$tmp/lib/*:$tmp/lib-sofa/*" $(find "$src/src/main/java" -name '*.java') >&2
cp -R "$src/src/main/resources/." "$tmp/classes/"
cp "$src/application.properties" "$tmp/conf/application.properties"
echo "$stamp" >"$tmp/stamp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
