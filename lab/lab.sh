#!/usr/bin/env bash
# The cutover test lab: systemd-nspawn hosts on a private bridge, btrfs data
# volumes, a local apt repository, a benchmark fleet. See lab/README.md.
#
#   lab.sh up | status | down | fleet up N | fleet down | exec CMD... | missing-packages
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$LAB_DIR/lib/common.sh"
# shellcheck source=lib/base.sh
source "$LAB_DIR/lib/base.sh"
# shellcheck source=lib/repo.sh
source "$LAB_DIR/lib/repo.sh"
# shellcheck source=lib/hosts.sh
source "$LAB_DIR/lib/hosts.sh"
# shellcheck source=lib/fleet.sh
source "$LAB_DIR/lib/fleet.sh"

VM_SCRIPT=$LAB_DIR/vm/vm.sh
export CUTOVER_LAB_STATE=$STATE CUTOVER_LAB_CACHE=$CACHE

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

need_root() { ((EUID == 0)) || die "lab.sh needs root (namespaces, mounts, nspawn)"; }

# Serialise lab.sh invocations that change the lab.
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another lab.sh is running (lock $STATE/.lock)"
}

cmd_up() {
  local t0 name addr vols entry
  t0=$(date +%s.%N)
  mkdir -p "$STATE/logs" "$RUN_DIR" "$CACHE"
  timed "build-machine packages" ensure_host_packages
  timed "base tree" ensure_base_tree
  timed "apt repository" ensure_repo
  timed "controller key" ensure_controller_key
  timed "network" up_network
  # The VM boots slowly (TCG): start it now and collect it at the end.
  local vm_pid="" vm_log
  if [[ -x $VM_SCRIPT ]]; then
    vm_log=$(step_log vm-up)
    log "starting the LVM VM in the background (log: $vm_log)"
    "$VM_SCRIPT" up >"$vm_log" 2>&1 9>&- &
    vm_pid=$!
  else
    log "SKIP VM $VM_NAME: $VM_SCRIPT does not exist yet"
  fi
  timed "btrfs volumes" up_volumes
  timed "containers started" up_containers
  timed "repo http server" start_http
  timed "announcement sink" start_announce_sink
  timed "mail sink" start_mail_sink
  timed "app bundles" ensure_app_bundles
  timed "customizations repository" ensure_customizations_repo
  local names=()
  mapfile -t names < <(lab_host_names)
  timed "sshd listening" wait_ssh_port 90 "${names[@]}"
  timed "ssh login + systemd running" check_hosts "${names[@]}"
  if [[ -n $vm_pid ]]; then
    if wait "$vm_pid"; then
      log "VM $VM_NAME up"
      if grep -q 'image cached' "$vm_log"; then skipped "VM image (cached)"; fi
      if grep -q 'already running' "$vm_log"; then skipped "VM (already running)"; fi
      write_ssh_files # picks up the VM's host key if it wrote one
    else
      { log "WARNING: lab/vm/vm.sh up failed (containers are fine)"; log_tail "$vm_log"; } >&2
    fi
  fi
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "lab up in %.1f s", b - a }')"
  if ((${#SKIPPED[@]})); then
    log "skipped (done by an earlier run): $(printf '%s; ' "${SKIPPED[@]}" | sed 's/; $//')"
  fi
  log "try: lab/lab.sh exec ssh -F $SSH_DIR/config app1 hostname"
}

up_network() {
  ensure_ctl_net
  local entry name addr
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name addr _ <<<"$entry"
    ensure_host_net "$name" "$addr"
  done
  write_ctl_hosts
}

up_volumes() {
  ensure_btrfs
  local entry name vols
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name _ vols <<<"$entry"
    ensure_volumes "$name" "$vols"
  done
}

up_containers() {
  local entry name vols
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name _ vols <<<"$entry"
    ensure_overlay "$name"
    customize_host "$name" "$vols"
    start_container "$name" full
  done
  write_ssh_files
}

# On a host: wait (bounded) for systemd to finish booting. A unit that failed at boot is
# started again once before the host counts as not ready: under load a unit can fail to get
# its cgroup (status=219/CGROUP, seen in CI: systemd-modules-load on db2) and work the next
# time; one that is really broken fails again. Each retry is printed to the check's log.
# shellcheck disable=SC2016 # expanded on the host, not here
READY_SCRIPT='timeout 60 systemctl is-system-running --wait >/dev/null
s=$(systemctl is-system-running)
if [ "$s" = degraded ]; then
  for u in $(systemctl --failed --no-legend --plain | cut -d" " -f1); do
    echo "retrying $u, failed at boot: $(systemctl show -p Result --value "$u")"
    systemctl reset-failed "$u"; systemctl restart "$u"
  done
  s=$(systemctl is-system-running)
fi
[ "$s" = running ] || { echo "$s"; systemctl --failed --no-legend; exit 1; }'

# Log in on every host with strict host key checking and wait for it to be ready.
check_hosts() {
  local name pids=() failed=()
  for name in "$@"; do
    in_ctl ssh -F "$SSH_DIR/config" "$name" "$READY_SCRIPT" \
      >"$(step_log "check-$name")" 2>&1 &
    pids+=($!)
  done
  local i hosts=("$@")
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${hosts[$i]}")
  done
  if ((${#failed[@]})); then
    for name in "${failed[@]}"; do log "host $name: $(tr '\n' ' ' <"$STATE/logs/check-$name.log")"; done
    die "hosts not ready: ${failed[*]}"
  fi
}

cmd_down() {
  local t0
  t0=$(date +%s.%N)
  timed "fleet down" fleet_down
  if [[ -x $VM_SCRIPT ]]; then
    timed "vm down" "$VM_SCRIPT" down || log "WARNING: lab/vm/vm.sh down failed"
  fi
  timed "http server stopped" stop_http
  timed "announcement sinks stopped" stop_announce_sink
  timed "containers stopped" down_containers
  timed "mounts, loop, netns removed" down_system
  rm -rf "${STATE:?}"/{hosts,btrfs,www,run,fleet,announce} "$STATE/btrfs.img" "$SSH_DIR/config" "$SSH_DIR/known_hosts"
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "lab down in %.1f s", b - a }')"
}

down_containers() {
  local names=() pids=() pid
  mapfile -t names < <(lab_host_names)
  stop_containers "${names[@]}"
  # Any nspawn of this lab whose pid file was lost.
  for pid in $(lab_nspawn_pids); do
    local c
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null || true); do kill -9 "$c" 2>/dev/null || true; done
    pids+=("$pid")
  done
  if ((${#pids[@]})); then
    wait_dead 50 "${pids[@]}" || kill -9 "${pids[@]}" 2>/dev/null || true
  fi
}

# pids of live systemd-nspawn processes that run a tree of this lab's state dir
lab_nspawn_pids() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $(cat "$d/comm" 2>/dev/null) == systemd-nspawn ]] || continue
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q -- "--directory=$HOSTS_DIR/" || continue
    alive "$pid" && printf '%s\n' "$pid"
  done
  return 0
}

down_system() {
  local m
  # Deepest mounts first.
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || log "WARNING: cannot unmount $m"
  done < <(awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/mounts | sort -r)
  local loop
  for loop in $(losetup -j "$STATE/btrfs.img" 2>/dev/null | cut -d: -f1); do
    losetup -d "$loop" || log "WARNING: cannot detach $loop"
  done
  local ns
  for ns in $(ip netns list | awk '$1 ~ /^lab-/ || $1 == "'"$CTL_NS"'" { print $1 }'); do
    ip netns del "$ns" || log "WARNING: cannot delete netns $ns"
  done
  rm -rf "/etc/netns/$CTL_NS"
}

cmd_status() {
  local ok=0 entry name addr pid state
  if netns_exists "$CTL_NS"; then
    printf 'controller netns %-12s up (%s on %s)\n' "$CTL_NS" "$CTL_ADDR" "$BRIDGE"
  else
    printf 'controller netns %-12s DOWN\n' "$CTL_NS"
    ok=1
  fi
  pid=$(pid_from_file "$RUN_DIR/http.pid")
  if alive "$pid"; then printf 'repo http server     pid %s http://repo:%s/\n' "$pid" "$REPO_PORT"; else
    printf 'repo http server     DOWN\n'
    ok=1
  fi
  pid=$(pid_from_file "$RUN_DIR/announce-sink.pid")
  if alive "$pid"; then printf 'announcement sink    pid %s http://repo:%s/ (%s)\n' "$pid" "$ANNOUNCE_PORT" "$ANNOUNCE_RECORD"; else
    printf 'announcement sink    DOWN\n'
    ok=1
  fi
  pid=$(pid_from_file "$RUN_DIR/mail-sink.pid")
  if alive "$pid"; then printf 'mail sink            pid %s smtp://repo:%s/ (%s)\n' "$pid" "$MAIL_PORT" "$MAIL_RECORD"; else
    printf 'mail sink            DOWN\n'
    ok=1
  fi
  if [[ -f $STATE/www/customizations.git/info/refs ]]; then
    printf 'customizations git   http://repo:%s/customizations.git (main %s)\n' "$REPO_PORT" \
      "$(awk '$2 == "refs/heads/main" { print substr($1, 1, 12) }' "$STATE/www/customizations.git/info/refs")"
  else
    printf 'customizations git   MISSING\n'
    ok=1
  fi
  if is_mounted "$STATE/btrfs"; then printf 'btrfs volumes        mounted at %s\n' "$STATE/btrfs"; else
    printf 'btrfs volumes        NOT MOUNTED\n'
    ok=1
  fi
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name addr _ <<<"$entry"
    pid=$(host_pid "$name")
    if ! alive "$pid"; then
      state=DOWN
      ok=1
    elif netns_exists "$CTL_NS" && in_ctl timeout 1 bash -c "exec 3<>/dev/tcp/$addr/22" 2>/dev/null; then
      state="up (nspawn pid $pid, sshd answering)"
    else
      state="starting (nspawn pid $pid, no sshd yet)"
      ok=1
    fi
    printf 'host %-15s %-12s %s\n' "$name" "$addr" "$state"
  done
  local n=0 up=0
  for name in $(fleet_names); do
    n=$((n + 1))
    if alive "$(host_pid "$name")"; then up=$((up + 1)); fi
  done
  printf 'fleet                %d of %d hosts running\n' "$up" "$n"
  if [[ -x $VM_SCRIPT ]]; then
    printf 'vm %s:\n' "$VM_NAME"
    "$VM_SCRIPT" status 2>&1 | sed 's/^/  /' || true
  else
    printf 'vm %-17s not built (lab/vm/vm.sh missing)\n' "$VM_NAME"
  fi
  return "$ok"
}

main() {
  close_inherited_fds
  (($#)) || usage
  local cmd=$1
  shift
  case $cmd in
    up) need_root; take_lock; cmd_up ;;
    down) need_root; take_lock; cmd_down ;;
    status) cmd_status ;;
    missing-packages)
      # What `up` would install on this machine (scripts/main-job announces it).
      apt_missing "${LAB_HOST_PACKAGES[@]}" "${APP_BUILD_PACKAGES[@]}" "${VM_HOST_PACKAGES[@]}" | sort -u
      ;;
    exec)
      (($#)) || die "usage: lab.sh exec CMD..."
      netns_exists "$CTL_NS" || die "the lab is not up: run lab/lab.sh up"
      exec ip netns exec "$CTL_NS" "$@"
      ;;
    fleet)
      need_root
      take_lock
      case ${1:-} in
        up) fleet_up "${2:-}" ;;
        down) fleet_down; log "fleet down" ;;
        *) die "usage: lab.sh fleet up N | fleet down" ;;
      esac
      ;;
    -h | --help | help) usage ;;
    *) die "unknown command: $cmd (try lab.sh help)" ;;
  esac
}

main "$@"
