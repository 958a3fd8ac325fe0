# shellcheck shell=bash
# The lab's local apt repository and HTTP server. Sourced by lab.sh.

REPO_DIR=$CACHE/repo/debian
# Bump when the way the repository is filled changes.
REPO_RECIPE=3
RELEASE_NOTES_VERSIONS=(1.0 1.1)

repo_stamp() {
  printf '%s\n' "recipe=$REPO_RECIPE tree=$TREE_VERSION notes=${RELEASE_NOTES_VERSIONS[*]}" "${REPO_PACKAGES[@]}" | sha256sum | cut -c1-16
}

ensure_repo() {
  local stamp
  stamp=$(repo_stamp)
  if [[ -f $CACHE/repo/.stamp && $(cat "$CACHE/repo/.stamp") == "$stamp" && -f $REPO_DIR/Packages ]]; then
    skipped "apt repository (cached at $REPO_DIR, $(find "$REPO_DIR" -name '*.deb' | wc -l) packages)"
    return 0
  fi
  rm -rf "$CACHE/repo"
  mkdir -p "$REPO_DIR"
  timed "download package closure" download_closure "$REPO_DIR"
  local v
  for v in "${RELEASE_NOTES_VERSIONS[@]}"; do
    build_release_notes "$v" "$REPO_DIR"
  done
  index_repo
  printf '%s\n' "$stamp" >"$CACHE/repo/.stamp"
  log "apt repository built: $(find "$REPO_DIR" -name '*.deb' | wc -l) packages"
}

# Exact closure of REPO_PACKAGES over the bare host tree: apt-get --download-only
# in a throw-away overlay of the base tree, against the build machine's mirror.
download_closure() {
  local out=$1 work=$CACHE/closure.tmp rc=0 logf
  logf=$(step_log closure)
  cleanup_closure "$work"
  mkdir -p "$work"/{upper,work,root}
  mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$work/upper,workdir=$work/work" "$work/root"
  local root=$work/root
  # The build machine's own apt sources and settings (mirror, proxy, snapshot
  # validity): read here at run time, never stored in the repository.
  rm -f "$root"/etc/apt/sources.list.d/*
  cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/" 2>/dev/null || true
  if [[ -f /etc/apt/sources.list ]]; then cp /etc/apt/sources.list "$root/etc/apt/sources.list"; fi
  cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
  cp -a /usr/share/keyrings/. "$root/usr/share/keyrings/" 2>/dev/null || true
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  {
    chroot "$root" apt-get update &&
      chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --download-only "${REPO_PACKAGES[@]}"
  } >"$logf" 2>&1 || rc=$?
  if ((rc == 0)); then
    # Pool-style names without the epoch: apt's cache names carry it as "%3a",
    # which would need URL-escaping.
    local deb base
    for deb in "$root"/var/cache/apt/archives/*.deb; do
      base=$(basename "$deb")
      cp "$deb" "$out/$(sed -E 's/_[0-9]+%3a/_/' <<<"$base")"
    done
  fi
  cleanup_closure "$work"
  ((rc == 0)) || die_with_log "downloading the package closure failed" "$logf"
}

cleanup_closure() {
  local work=$1
  if is_mounted "$work/root/proc"; then umount "$work/root/proc"; fi
  if is_mounted "$work/root"; then umount "$work/root"; fi
  rm -rf "$work"
}

# lab-release-notes: a tiny package in two versions, so that an upgrade has
# something to upgrade. Hosts get nothing preinstalled from it.
build_release_notes() {
  local version=$1 out=$2 pkg
  pkg=$(mktemp -d)
  mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/lab-release-notes"
  cat >"$pkg/DEBIAN/control" <<EOF
Package: lab-release-notes
Version: $version
Architecture: all
Maintainer: cutover lab <root@localhost>
Section: misc
Priority: optional
Description: cutover lab: release notes (test package)
 A package that exists in two versions in the lab repository, so that a
 system upgrade inside the lab has something to upgrade.
EOF
  printf 'cutover lab release notes, version %s\n' "$version" >"$pkg/usr/share/lab-release-notes/VERSION"
  dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$out/lab-release-notes_${version}_all.deb" >/dev/null
  rm -rf "$pkg"
}

index_repo() {
  # --multiversion keeps both versions of lab-release-notes in the index.
  (cd "$REPO_DIR" && dpkg-scanpackages --multiversion . 2>/dev/null >Packages)
  gzip -9kf "$REPO_DIR/Packages"
  # apt-ftparchive needs none of the build machine's apt settings: it reads an empty apt
  # configuration of its own (APT_CONFIG is read before /etc/apt; `-o` only after it), so a
  # stray or half-written file under /etc/apt/apt.conf.d cannot fail the lab's build (seen
  # once, when a script wrote one there by mistake).
  local etc=$CACHE/repo/apt-etc
  mkdir -p "$etc/apt.conf.d"
  printf 'Dir::Etc "%s";\n' "$etc" >"$etc/apt.conf"
  (cd "$REPO_DIR" && APT_CONFIG=$etc/apt.conf apt-ftparchive -o APT::FTPArchive::Release::Origin=cutover-lab \
    -o APT::FTPArchive::Release::Label=cutover-lab release . >Release.tmp && mv Release.tmp Release)
}

# The app bundles from lab/app/build.sh (written by another part of the lab).
ensure_app_bundles() {
  local build=$LAB_DIR/app/build.sh out=$CACHE/app v logf
  if [[ ! -x $build ]]; then
    log "SKIP app bundles: $build does not exist yet (releases/ stays empty)"
    return 0
  fi
  # Rebuild when anything under lab/app is newer than the cached bundles.
  if [[ ! -f $out/wiki-1.0.0.tar.gz || ! -d $out/plugins || -n $(find "$LAB_DIR/app" -newer "$out/wiki-1.0.0.tar.gz" -print -quit) ]]; then
    mkdir -p "$out"
    logf=$(step_log app-build)
    log "building app bundles with $build (log: $logf)"
    "$build" "$out" >"$logf" 2>&1 || die_with_log "lab/app/build.sh failed" "$logf"
  else
    skipped "app bundles (cached in $out)"
  fi
  mkdir -p "$STATE/www/releases"
  for v in 1.0.0 2.0.0 3.0.0; do
    [[ -f $out/wiki-$v.tar.gz ]] || die "lab/app/build.sh did not produce $out/wiki-$v.tar.gz"
    cp "$out/wiki-$v.tar.gz" "$STATE/www/releases/"
    (cd "$STATE/www/releases" && sha256sum "wiki-$v.tar.gz" >"wiki-$v.tar.gz.sha256")
  done
  log "app bundles served: $(cd "$STATE/www/releases" && echo wiki-*.tar.gz)"
  # The plugins (descriptors + sha256), served at http://repo:8080/plugins/NAME-VERSION.plugin.
  [[ -n $(find "$out/plugins" -name '*.plugin' -print -quit 2>/dev/null) ]] ||
    die "lab/app/build.sh did not produce plugins in $out/plugins"
  rm -rf "$STATE/www/plugins"
  cp -r "$out/plugins" "$STATE/www/plugins"
  log "plugins served: $(cd "$STATE/www/plugins" && echo *.plugin)"
}

start_http() {
  mkdir -p "$STATE/www" "$STATE/run"
  ln -sfn "$REPO_DIR" "$STATE/www/debian"
  local pid
  pid=$(pid_from_file "$STATE/run/http.pid")
  if alive "$pid"; then
    log "repo HTTP server already running (pid $pid)"
    return 0
  fi
  local logf
  logf=$(step_log http)
  ip netns exec "$CTL_NS" setsid "$PYTHON" -m http.server "$REPO_PORT" --bind "$CTL_ADDR" \
    --directory "$STATE/www" </dev/null >"$logf" 2>&1 9>&- &
  echo $! >"$STATE/run/http.pid"
  local i
  for ((i = 0; i < 50; i++)); do
    if in_ctl curl -fsS -o /dev/null "http://$CTL_ADDR:$REPO_PORT/debian/Release" 2>/dev/null; then
      log "repo HTTP server on http://repo:$REPO_PORT/ (pid $(cat "$STATE/run/http.pid"))"
      return 0
    fi
    sleep 0.1
  done
  die_with_log "repo HTTP server did not start" "$logf"
}

# The announcement sinks, in the controller's namespace (the repo's address): the webhook
# (lab/sink/announce_sink.py, every POST of the upgrade's `announce` steps as a JSON line in
# $ANNOUNCE_RECORD, on http://repo:$ANNOUNCE_PORT/) and the site's mail server
# (lab/sink/mail_sink.py, SMTP on repo:$MAIL_PORT, every mail the hosts' msmtp relays as a JSON
# line in $MAIL_RECORD). Tests read and empty both files.
start_announce_sink() {
  start_sink announce-sink announce_sink.py "$ANNOUNCE_RECORD" "$ANNOUNCE_PORT"
}

start_mail_sink() {
  start_sink mail-sink mail_sink.py "$MAIL_RECORD" "$MAIL_PORT"
}

# start_sink NAME SCRIPT RECORD PORT: start lab/sink/SCRIPT unless it runs (pid in
# $STATE/run/NAME.pid), and wait until it accepts connections on repo:PORT.
start_sink() {
  local name=$1 script=$2 record=$3 port=$4 pid logf i
  mkdir -p "$STATE/run" "$(dirname "$record")"
  touch "$record"
  pid=$(pid_from_file "$STATE/run/$name.pid")
  if alive "$pid"; then
    log "$name already running (pid $pid)"
    return 0
  fi
  logf=$(step_log "$name")
  ip netns exec "$CTL_NS" setsid "$PYTHON" "$LAB_DIR/sink/$script" "$record" \
    "$CTL_ADDR" "$port" </dev/null >"$logf" 2>&1 9>&- &
  echo $! >"$STATE/run/$name.pid"
  for ((i = 0; i < 50; i++)); do
    if in_ctl bash -c "exec 3<>/dev/tcp/$CTL_ADDR/$port" 2>/dev/null; then
      log "$name on repo:$port recording to $record"
      return 0
    fi
    sleep 0.1
  done
  die_with_log "$name did not start" "$logf"
}

stop_announce_sink() {
  stop_sink announce-sink
  stop_sink mail-sink
}

stop_sink() {
  local pid
  pid=$(pid_from_file "$STATE/run/$1.pid")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    wait_dead 30 "$pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/run/$1.pid"
}

stop_http() {
  local pid
  pid=$(pid_from_file "$STATE/run/http.pid")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    wait_dead 30 "$pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/run/http.pid"
}

# The installation's customizations under version control (issue #17, the runbook's "reapply
# customizations ... with a VCS, e.g. git"): a bare repository served by the repo server at
# http://repo:8080/customizations.git (dumb HTTP: `git update-server-info`), laid over an
# install dir by the playbooks' `git_overlay` step. Two commits, made REPRODUCIBLE (fixed
# names, e-mails, dates, no user or system git config), so the commit ids pinned in
# inventory/lab.yml are the same on every machine: the inventory pins the first; the second
# is a newer one that must not land until it is pinned.
CUSTOMIZATIONS_COMMIT_1=f71622737a3b15c88f2e9a273dc148ebfbaa6d1d
CUSTOMIZATIONS_COMMIT_2=f2b07a62b86f21077da0664104559cd9931174f4

# git with nothing of this machine's configuration, and fixed authors and dates.
lab_git() {
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    GIT_AUTHOR_NAME="cutover lab" GIT_AUTHOR_EMAIL=lab@cutover.invalid \
    GIT_COMMITTER_NAME="cutover lab" GIT_COMMITTER_EMAIL=lab@cutover.invalid \
    git "$@"
}

# Commit 1: Tomcat keeps 30 days of logs (conf/logging.properties replaced), a banner in a new
# directory of the webapp, an executable health-check script. Commit 2: a new banner text and
# a contact page.
customizations_commit_1() {
  local w=$1
  mkdir -p "$w/conf" "$w/bin" "$w/webapps/ROOT/custom"
  cat >"$w/conf/logging.properties" <<'PROPS'
# Customized (customizations.git): catalina logs are kept 30 days, not 14.
handlers = 1catalina.org.apache.juli.AsyncFileHandler, java.util.logging.ConsoleHandler
.handlers = 1catalina.org.apache.juli.AsyncFileHandler, java.util.logging.ConsoleHandler

1catalina.org.apache.juli.AsyncFileHandler.level = FINE
1catalina.org.apache.juli.AsyncFileHandler.directory = ${catalina.base}/logs
1catalina.org.apache.juli.AsyncFileHandler.prefix = catalina.
1catalina.org.apache.juli.AsyncFileHandler.maxDays = 30
1catalina.org.apache.juli.AsyncFileHandler.encoding = UTF-8

java.util.logging.ConsoleHandler.level = FINE
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
java.util.logging.ConsoleHandler.encoding = UTF-8
PROPS
  printf '%s\n' '<p class="banner">Lab wiki: customizations v1</p>' >"$w/webapps/ROOT/custom/banner.html"
  printf '%s\n' '#!/bin/sh' '# Customized: is this node serving? (exit 0 when /status answers)' \
    'exec curl -fsS --max-time 5 -o /dev/null http://localhost:8080/status' >"$w/bin/wiki-healthcheck.sh"
  chmod 755 "$w/bin/wiki-healthcheck.sh"
}

customizations_commit_2() {
  local w=$1
  printf '%s\n' '<p class="banner">Lab wiki: customizations v2</p>' >"$w/webapps/ROOT/custom/banner.html"
  printf '%s\n' 'Wiki operations: ops@lab.invalid' >"$w/webapps/ROOT/custom/contact.txt"
}

build_customizations_repo() {
  local out=$1 w
  w=$(mktemp -d)
  lab_git init --quiet -b main "$w"
  customizations_commit_1 "$w"
  lab_git -C "$w" add -A
  GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z" \
    lab_git -C "$w" commit --quiet -m "Customizations: 30 days of logs, banner, health check"
  customizations_commit_2 "$w"
  lab_git -C "$w" add -A
  GIT_AUTHOR_DATE="2024-02-01T00:00:00Z" GIT_COMMITTER_DATE="2024-02-01T00:00:00Z" \
    lab_git -C "$w" commit --quiet -m "Customizations: banner v2, contact page"
  rm -rf "$out.tmp"
  lab_git clone --quiet --bare "$w" "$out.tmp"
  lab_git -C "$out.tmp" update-server-info
  rm -rf "$w" "$out"
  mv "$out.tmp" "$out"
}

# Built at every `up` (well under a second); a commit id that differs from the pinned ones
# means the recipe changed: update inventory/lab.yml and these ids together.
ensure_customizations_repo() {
  local out=$STATE/www/customizations.git got
  mkdir -p "$STATE/www"
  build_customizations_repo "$out"
  got=$(lab_git -C "$out" rev-list --reverse main | tr '\n' ' ')
  [[ $got == "$CUSTOMIZATIONS_COMMIT_1 $CUSTOMIZATIONS_COMMIT_2 " ]] ||
    die "customizations.git has commits $got, not the pinned $CUSTOMIZATIONS_COMMIT_1 $CUSTOMIZATIONS_COMMIT_2 (update lab/lib/repo.sh and inventory/lab.yml together)"
  log "customizations repository served: http://repo:$REPO_PORT/customizations.git (main: $CUSTOMIZATIONS_COMMIT_2)"
}
