# shellcheck shell=bash
# Network namespaces, btrfs volumes, nspawn containers, ssh client files.
# Sourced by lab.sh.

HOSTS_DIR=$STATE/hosts
RUN_DIR=$STATE/run
SSH_DIR=$STATE/ssh

# ---- network ---------------------------------------------------------------

ensure_ctl_net() {
  if ! netns_exists "$CTL_NS"; then ip netns add "$CTL_NS"; fi
  ip -n "$CTL_NS" link set lo up
  if ! ip -n "$CTL_NS" link show "$BRIDGE" >/dev/null 2>&1; then
    ip -n "$CTL_NS" link add "$BRIDGE" type bridge stp_state 0
  fi
  if ! ip -n "$CTL_NS" -4 addr show dev "$BRIDGE" | grep -q "inet $CTL_ADDR/"; then
    ip -n "$CTL_NS" addr add "$CTL_ADDR/$PREFIX" dev "$BRIDGE"
  fi
  ip -n "$CTL_NS" link set "$BRIDGE" up
  # No default route anywhere: nothing can leave the lab.
}

# A host's namespace and its veth pair (ctl side vl-NAME on the bridge, eth0 inside).
ensure_host_net() {
  local name=$1 addr=$2 ns=lab-$1
  if ! netns_exists "$ns"; then ip netns add "$ns"; fi
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip -n "$CTL_NS" link del "vl-$name" 2>/dev/null || true
    ip -n "$CTL_NS" link add "vl-$name" type veth peer name eth0 netns "$ns"
  fi
  ip -n "$CTL_NS" link set "vl-$name" master "$BRIDGE" up
  if ! ip -n "$ns" -4 addr show dev eth0 | grep -q "inet $addr/"; then
    ip -n "$ns" addr add "$addr/$PREFIX" dev eth0
  fi
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
}

# ---- names -----------------------------------------------------------------

# /etc/hosts lines for the lab (controller, hosts, VM, fleet).
hosts_lines() {
  local entry name addr
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
  printf '%s\tcontroller controller.lab repo repo.lab\n' "$CTL_ADDR"
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name addr _ <<<"$entry"
    printf '%s\t%s %s.lab\n' "$addr" "$name" "$name"
  done
  printf '%s\t%s %s.lab\n' "$VM_ADDR" "$VM_NAME" "$VM_NAME"
  if [[ -f $STATE/fleet/hosts.txt ]]; then
    while read -r name addr; do
      printf '%s\t%s %s.lab\n' "$addr" "$name" "$name"
    done <"$STATE/fleet/hosts.txt"
  fi
}

write_ctl_hosts() {
  # `ip netns exec cutover-ctl` bind-mounts these over /etc/hosts and /etc/resolv.conf.
  mkdir -p "/etc/netns/$CTL_NS"
  hosts_lines >"/etc/netns/$CTL_NS/hosts"
  printf '# lab: no DNS; names are in /etc/hosts\n' >"/etc/netns/$CTL_NS/resolv.conf"
}

# ---- btrfs volumes -----------------------------------------------------------

ensure_btrfs() {
  local img=$STATE/btrfs.img mnt=$STATE/btrfs loop
  mkdir -p "$mnt"
  if ! is_mounted "$mnt"; then
    if [[ ! -f $img ]]; then
      # Sparse: uses only what the volumes hold.
      truncate -s 20G "$img"
      mkfs.btrfs -q "$img" >/dev/null
    fi
    loop=$(losetup -j "$img" | head -n1 | cut -d: -f1)
    [[ -n $loop ]] || loop=$(losetup -f --show "$img")
    mount -t btrfs "$loop" "$mnt"
  fi
}

# $STATE/btrfs/NAME: the host's /srv/vol, with one subvolume per volume.
ensure_volumes() {
  local name=$1 vols=$2 v dir=$STATE/btrfs/$1
  mkdir -p "$dir/.snapshots"
  [[ $vols == - ]] && return 0
  for v in ${vols//,/ }; do
    if [[ ! -d $dir/$v ]]; then btrfs -q subvolume create "$dir/$v" >/dev/null; fi
  done
}

# ---- containers --------------------------------------------------------------

ensure_overlay() {
  local dir=$HOSTS_DIR/$1
  mkdir -p "$dir"/{upper,work,root}
  if ! is_mounted "$dir/root"; then
    mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
  fi
}

# Units that mean nothing in a lab container and sometimes fail at boot under load, leaving
# systemd "degraded" and the lab not ready: utmp's runlevel unit (seen once: app1, after a
# quick down/up); e2scrub_reap, which scans every block device with lvs (seen once: app2,
# in CI). Masked at every boot, not once, so hosts customised by an older lab.sh get them too.
mask_boot_units() {
  local root=$HOSTS_DIR/$1/root unit
  for unit in systemd-update-utmp.service systemd-update-utmp-runlevel.service \
    e2scrub_reap.service e2scrub_all.timer; do
    ln -sfn /dev/null "$root/etc/systemd/system/$unit"
  done
}

# Per-host files, written once into the host's overlay (they land in upper/).
customize_host() {
  local name=$1 vols=$2 dir=$HOSTS_DIR/$1
  local root=$dir/root
  [[ -f $dir/.customized ]] && return 0
  printf '%s\n' "$name" >"$root/etc/hostname"
  hosts_lines >"$root/etc/hosts"
  tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
  rm -f "$root"/etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$root/etc/ssh/ssh_host_ed25519_key"
  cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$dir/host_key.pub"
  local user home uid gid
  for user in root admin operator; do
    IFS=: read -r _ _ uid gid _ home _ < <(grep "^$user:" "$root/etc/passwd")
    install -d -m 700 -o "$uid" -g "$gid" "$root$home/.ssh"
    install -m 600 -o "$uid" -g "$gid" "$SSH_DIR/id_ed25519.pub" "$root$home/.ssh/authorized_keys"
  done
  # operator's password, for sudo (set as a hash: no password ever in a command line).
  local hash
  hash=$(openssl passwd -6 -stdin <"$STATE/secrets/operator-sudo-password")
  sed -i "s|^operator:[^:]*:|operator:${hash//|/\\|}:|" "$root/etc/shadow"
  # Data volumes: bind mounts from /srv/vol (the host's btrfs dir), in fstab
  # so that they come back at every boot.
  if [[ $vols != - ]]; then
    local v
    {
      printf '# cutover lab: data volumes are btrfs subvolumes under /srv/vol\n'
      for v in ${vols//,/ }; do
        printf '/srv/vol/%s\t%s\tnone\tbind\t0\t0\n' "$v" "${VOLUME_TARGET[$v]}"
        mkdir -p "$root${VOLUME_TARGET[$v]}"
      done
    } >"$root/etc/fstab"
  fi
  touch "$dir/.customized"
}

host_pid() { pid_from_file "$RUN_DIR/$1.pid"; }

# Boot a host's real systemd with nspawn, in the background. --register=no --keep-unit: PID 1 here
# is not systemd, and without them nspawn fails with "Failed to open system bus" (flags:
# systemd-nspawn(1), https://www.freedesktop.org/software/systemd/man/latest/systemd-nspawn.html).
start_container() {
  local name=$1 kind=$2 dir=$HOSTS_DIR/$1 pid
  pid=$(host_pid "$name")
  if alive "$pid"; then return 0; fi
  mkdir -p "$RUN_DIR" "$STATE/logs"
  local args=(
    --quiet --directory="$dir/root" --machine="$name"
    --register=no --keep-unit --network-namespace-path="/run/netns/lab-$name"
    --capability=all --private-users=no --console=passive
    --link-journal=no --resolv-conf=off --timezone=off
  )
  if [[ $kind == full ]]; then
    mask_boot_units "$name"
    args+=(--bind="$STATE/btrfs/$name:/srv/vol" --boot)
  else
    # Fleet hosts: only sshd, under nspawn's stub init (no systemd: ~10 MB each). Its log goes
    # to a file: on nspawn's passive console nobody reads it, and once that buffer fills sshd
    # blocks on its log line and stops answering (seen after a few hundred logins).
    args+=(--as-pid2 /bin/sh -c 'mkdir -p /run/sshd && exec /usr/sbin/sshd -D -E /var/log/sshd.log')
  fi
  # 9>&-: the daemon must not inherit lab.sh's lock.
  local logf
  logf=$(step_log "$name")
  setsid systemd-nspawn "${args[@]}" </dev/null >"$logf" 2>&1 9>&- &
  echo $! >"$RUN_DIR/$name.pid"
}

# Wait until every named host's sshd accepts TCP connections.
wait_ssh_port() {
  local limit=$1 name addr i pending
  shift
  pending=("$@")
  for ((i = 0; i < limit * 10; i++)); do
    local still=()
    for name in "${pending[@]}"; do
      addr=$(host_addr "$name")
      if ! in_ctl timeout 1 bash -c "exec 3<>/dev/tcp/$addr/22" 2>/dev/null; then
        still+=("$name")
        if ! alive "$(host_pid "$name")"; then
          die_with_log "container $name exited" "$STATE/logs/$name.log"
        fi
      fi
    done
    ((${#still[@]} == 0)) && return 0
    pending=("${still[@]}")
    sleep 0.1
  done
  die "sshd did not come up in ${limit}s on: ${pending[*]}"
}

host_addr() {
  local a
  if a=$(host_field "$1" 1); then printf '%s\n' "$a"; return 0; fi
  if [[ $1 == "$VM_NAME" ]]; then printf '%s\n' "$VM_ADDR"; return 0; fi
  awk -v n="$1" '$1 == n { print $2 }' "$STATE/fleet/hosts.txt" 2>/dev/null
}

# Kill containers: SIGKILL each one's init (ends its whole PID namespace; the
# lab is thrown away, so no clean shutdown), then wait for all nspawns at once.
stop_containers() {
  local name pid c pids=()
  for name in "$@"; do
    pid=$(host_pid "$name")
    if alive "$pid"; then
      for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null || true); do kill -9 "$c" 2>/dev/null || true; done
      pids+=("$pid")
    fi
  done
  if ((${#pids[@]})); then
    wait_dead 50 "${pids[@]}" || kill -9 "${pids[@]}" 2>/dev/null || true
    wait_dead 50 "${pids[@]}" || log "WARNING: some nspawn processes are still alive: ${pids[*]}"
  fi
  for name in "$@"; do rm -f "$RUN_DIR/$name.pid"; done
}

# ---- ssh ---------------------------------------------------------------------

ensure_controller_key() {
  mkdir -p "$SSH_DIR" "$STATE/secrets"
  chmod 700 "$SSH_DIR" "$STATE/secrets"
  if [[ ! -f $SSH_DIR/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "cutover-lab-controller" -f "$SSH_DIR/id_ed25519"
  fi
  if [[ ! -s $STATE/secrets/operator-sudo-password ]]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/secrets/operator-sudo-password")
  fi
  chmod 600 "$STATE/secrets/operator-sudo-password"
}

ssh_host_block() { # NAME ADDR
  cat <<EOF

Host $1 $1.lab $2
  HostName $2
  User root
  IdentityFile $SSH_DIR/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $SSH_DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  ConnectTimeout 5
EOF
}

# ssh config (a Host block per lab host and fleet host) and known_hosts (each
# host's own key under its name, NAME.lab and address). lab/vm/vm.sh adds its
# own block in config.d/ and its own known_hosts lines: keep those.
write_ssh_files() {
  local entry name addr
  mkdir -p "$SSH_DIR/config.d"
  {
    printf '# cutover lab: generated by lab/lab.sh, do not edit\n'
    printf '# The VM (lab/vm/vm.sh) writes its Host block into config.d/.\n'
    printf 'Include %s/config.d/*.conf\n' "$SSH_DIR"
    for entry in "${LAB_HOSTS[@]}"; do
      read -r name addr _ <<<"$entry"
      ssh_host_block "$name" "$addr"
    done
    if [[ -f $STATE/fleet/hosts.txt ]]; then
      while read -r name addr; do ssh_host_block "$name" "$addr"; done <"$STATE/fleet/hosts.txt"
    fi
  } >"$SSH_DIR/config.tmp"
  mv "$SSH_DIR/config.tmp" "$SSH_DIR/config"
  local mine=" " tmp
  for entry in "${LAB_HOSTS[@]}"; do
    read -r name addr _ <<<"$entry"
    mine+="$name $name.lab $addr "
  done
  tmp=$(mktemp "$SSH_DIR/.known_hosts.XXXXXX")
  # shellcheck disable=SC2094 # known_hosts is the lock file; written only via $tmp
  (
    # Same lock as lab/vm/vm.sh takes on this file.
    flock 8
    {
      for entry in "${LAB_HOSTS[@]}"; do
        read -r name addr _ <<<"$entry"
        known_hosts_line "$name" "$addr" "$HOSTS_DIR/$name/host_key.pub"
      done
      if [[ -f $STATE/fleet/hosts.txt ]]; then
        while read -r name addr; do
          known_hosts_line "$name" "$addr" "$HOSTS_DIR/$name/host_key.pub"
        done <"$STATE/fleet/hosts.txt"
      fi
      # Lines of others (the VM): everything not naming a lab or fleet host.
      # shellcheck disable=SC2094 # read here, written only after via $tmp
      [[ ! -s $SSH_DIR/known_hosts ]] || awk -v mine="$mine" '
        { n = split($1, a, ","); for (i = 1; i <= n; i++) if (index(mine, " " a[i] " ") || a[i] ~ /^(bench[0-9]+(\.lab)?|10\.77\.1\.[0-9]+)$/) next; print }
      ' "$SSH_DIR/known_hosts"
    } >"$tmp"
    cat "$tmp" >"$SSH_DIR/known_hosts"
  ) 8>>"$SSH_DIR/known_hosts"
  rm -f "$tmp"
}

known_hosts_line() { # NAME ADDR PUBFILE
  [[ -f $3 ]] || return 0
  local type key
  read -r type key _ <"$3"
  printf '%s,%s.lab,%s %s %s\n' "$1" "$1" "$2" "$type" "$key"
}
