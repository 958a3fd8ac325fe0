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
  (cd "$REPO_DIR" && apt-ftparchive -o APT::FTPArchive::Release::Origin=cutover-lab \
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
  if [[ ! -f $out/wiki-1.0.0.tar.gz || -n $(find "$LAB_DIR/app" -newer "$out/wiki-1.0.0.tar.gz" -print -quit) ]]; then
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

stop_http() {
  local pid
  pid=$(pid_from_file "$STATE/run/http.pid")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    wait_dead 30 "$pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/run/http.pid"
}
