#!/bin/bash
# Build the three stand-in "wiki" release bundles into OUTDIR:
#   wiki-1.0.0.tar.gz, wiki-2.0.0.tar.gz, wiki-3.0.0.tar.gz (+ .sha256 in sha256sum format),
# and the lab's plugins into OUTDIR/plugins: NAME-VERSION.plugin descriptors (+ .sha256).
# Installs the Debian build dependencies if missing (lab/lib/apt.sh). Deterministic (fixed mtimes/owners, gzip -n), idempotent.
set -euo pipefail

OUT=${1:?usage: build.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVLET_JAR=/usr/share/java/tomcat10-servlet-api.jar
MARIADB_JAR=/usr/share/java/mariadb-java-client.jar
MTIME=@1704067200 # 2024-01-01: fixed so rebuilding gives the same tarball

# release  schema  broken
RELEASES=(
  "1.0.0 1 false"
  "2.0.0 2 false"
  "3.0.0 3 true"
)

# name version supports (the app releases the plugin declares: X.Y.Z exactly, X.Y.Z+ and later).
# diagrams has no version for 3.0.0: a rehearsal to 3.0.0 with it installed must name it.
PLUGINS=(
  "calendar 1.0 1.0.0"
  "calendar 2.0 2.0.0+"
  "diagrams 1.0 1.0.0,2.0.0"
  "diagrams 1.1 2.0.0"
)

# The build tools (lab/lib/packages.sh), through the project's one install helper: lab.sh has
# installed them already; run alone, this installs what is missing and waits its turn.
# shellcheck source=../lib/apt.sh
source "$HERE/../lib/apt.sh"
# shellcheck source=../lib/packages.sh
source "$HERE/../lib/packages.sh"
apt_install --no-install-recommends "${APP_BUILD_PACKAGES[@]}" >&2

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for rel in "${RELEASES[@]}"; do
  read -r version schema broken <<<"$rel"
  name=wiki-$version
  src=$WORK/src-$version
  root=$WORK/$name
  mkdir -p "$src/wiki" "$root"

  # Sources plus the generated Release.java for this version.
  cp "$HERE"/src/wiki/*.java "$src/wiki/"
  sed -e "s/@VERSION@/$version/" -e "s/@SCHEMA@/$schema/" -e "s/@BROKEN@/$broken/" \
    "$HERE/src/wiki/Release.java.in" >"$src/wiki/Release.java"

  # CATALINA_BASE layout.
  # conf/Standalone/localhost: Tomcat creates it at start (Engine/Host config base) and logs SEVERE if it cannot
  # (conf/ is not writable by user wiki), so ship it.
  mkdir -p "$root"/{conf/Standalone/localhost,bin,logs,temp,work} "$root/webapps/ROOT/WEB-INF/classes" "$root/webapps/ROOT/WEB-INF/lib" \
    "$root/webapps/ROOT/META-INF"
  cp "$HERE"/base/conf/{server.xml,web.xml,logging.properties} "$root/conf/"
  for f in setenv.sh start-wiki.sh stop-wiki.sh; do
    sed "s/@VERSION@/$version/g" "$HERE/base/bin/$f" >"$root/bin/$f"
  done
  chmod 755 "$root"/bin/*.sh
  cp "$HERE/webapp/WEB-INF/web.xml" "$root/webapps/ROOT/WEB-INF/"
  cp "$HERE/webapp/META-INF/context.xml" "$root/webapps/ROOT/META-INF/"
  cp -L "$MARIADB_JAR" "$root/webapps/ROOT/WEB-INF/lib/mariadb-java-client.jar"
  printf 'wiki.home=/var/lib/wiki\n' >"$root/webapps/ROOT/WEB-INF/classes/wiki-init.properties"
  printf '%s\n' "$version" >"$root/VERSION"

  javac --release 17 -nowarn -encoding UTF-8 -cp "$SERVLET_JAR" -d "$root/webapps/ROOT/WEB-INF/classes" "$src"/wiki/*.java

  find "$root" -type d -exec chmod 755 {} +
  find "$root" -type f ! -name '*.sh' -exec chmod 644 {} +
  tar -C "$WORK" --sort=name --mtime="$MTIME" --owner=0 --group=0 --numeric-owner -cf - "$name" |
    gzip -n -9 >"$WORK/$name.tar.gz"
  (cd "$WORK" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
  mv -f "$WORK/$name.tar.gz" "$WORK/$name.tar.gz.sha256" "$OUT/"
  echo "built $OUT/$name.tar.gz ($(cut -c1-16 "$OUT/$name.tar.gz.sha256")...)"
done

mkdir -p "$OUT/plugins"
for plugin in "${PLUGINS[@]}"; do
  read -r name version supports <<<"$plugin"
  f=$name-$version.plugin
  printf 'name=%s\nversion=%s\nsupports=%s\n' "$name" "$version" "$supports" >"$WORK/$f"
  (cd "$WORK" && sha256sum "$f" >"$f.sha256")
  mv -f "$WORK/$f" "$WORK/$f.sha256" "$OUT/plugins/"
done
echo "built $OUT/plugins: $(cd "$OUT/plugins" && echo *.plugin)"
