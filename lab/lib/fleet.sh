# shellcheck shell=bash
# Benchmark fleet: bench001..benchNNN at 10.77.1.N, sshd only. Sourced by lab.sh.

FLEET_FILE=$STATE/fleet/hosts.txt

fleet_names() {
  [[ -f $FLEET_FILE ]] && awk '{ print $1 }' "$FLEET_FILE"
  return 0
}

fleet_up() {
  local n=${1:-}
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 254)); then die "usage: lab.sh fleet up N (1..254)"; fi
  if ! netns_exists "$CTL_NS" || [[ ! -f $SSH_DIR/id_ed25519 || ! -f $TREE/.lab-tree-version ]]; then
    die "the lab is not up: run lab/lab.sh up first"
  fi
  local avail_mb
  avail_mb=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
  # ~15 MB per fleet host (nspawn + stub init + sshd); keep 1 GB spare.
  ((n * 15 + 1024 < avail_mb)) || die "not enough memory for $n fleet hosts (${avail_mb} MB available)"

  # Remove hosts beyond N if the fleet was bigger.
  local name i extra=()
  for name in $(fleet_names); do
    if ((10#${name#bench} > n)); then extra+=("$name"); fi
  done
  fleet_remove_hosts "${extra[@]}"
  mkdir -p "$STATE/fleet"
  : >"$FLEET_FILE.tmp"
  for ((i = 1; i <= n; i++)); do
    printf 'bench%03d 10.77.1.%d\n' "$i" "$i" >>"$FLEET_FILE.tmp"
  done
  mv "$FLEET_FILE.tmp" "$FLEET_FILE"
  write_ctl_hosts

  local names=() addr
  while read -r name addr; do
    ensure_host_net "$name" "$addr"
    ensure_overlay "$name"
    customize_host "$name" -
    start_container "$name" fleet
    names+=("$name")
  done <"$FLEET_FILE"
  write_ssh_files
  wait_ssh_port 120 "${names[@]}"
  log "fleet of $n hosts up; list in $FLEET_FILE"
}

fleet_remove_hosts() {
  local name
  (($#)) || return 0
  stop_containers "$@"
  for name in "$@"; do
    if is_mounted "$HOSTS_DIR/$name/root"; then umount "$HOSTS_DIR/$name/root" || umount -l "$HOSTS_DIR/$name/root"; fi
    rm -rf "${HOSTS_DIR:?}/$name"
    if netns_exists "lab-$name"; then ip netns del "lab-$name"; fi
  done
}

fleet_down() {
  local names=()
  # The listed hosts and any whose list was lost.
  mapfile -t names < <({
    fleet_names
    ip netns list | awk '$1 ~ /^lab-bench[0-9]+$/ { sub(/^lab-/, "", $1); print $1 }'
  } | sort -u)
  fleet_remove_hosts "${names[@]}"
  rm -rf "$STATE/fleet"
  if [[ -d $SSH_DIR ]] && [[ -f $SSH_DIR/config ]]; then write_ssh_files; fi
  if [[ -d /etc/netns/$CTL_NS ]]; then write_ctl_hosts; fi
}
