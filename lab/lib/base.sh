# shellcheck shell=bash
# Build-machine packages and the shared debootstrap tree. Sourced by lab.sh.

# command -> Debian package that provides it on the build machine
declare -A HOST_TOOLS=(
  [debootstrap]=debootstrap
  [systemd-nspawn]=systemd-container
  [mkfs.btrfs]=btrfs-progs
  [dpkg-scanpackages]=dpkg-dev
  [ip]=iproute2
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [curl]=curl
  [losetup]=mount
  [apt-ftparchive]=apt-utils
)

ensure_host_packages() {
  local cmd missing=()
  for cmd in "${!HOST_TOOLS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${HOST_TOOLS[$cmd]}")
  done
  [[ -x $PYTHON ]] || missing+=(python3)
  # GNU time (peak memory of a run, for the streaming tests; `time` alone is the shell's keyword)
  [[ -x /usr/bin/time ]] || missing+=(time)
  if ((${#missing[@]} == 0)); then
    log "build-machine packages already installed"
    return 0
  fi
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing on the build machine: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists when they are missing or too old to install from.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null ||
    ! apt-get install -y -qq "${missing[@]}" >"$STATE/logs/apt-host.log" 2>&1; then
    apt-get update -qq >>"$STATE/logs/apt-host.log" 2>&1 || die "apt-get update failed, see $STATE/logs/apt-host.log"
    apt-get install -y -qq "${missing[@]}" >>"$STATE/logs/apt-host.log" 2>&1 ||
      die "apt-get install ${missing[*]} failed, see $STATE/logs/apt-host.log"
  fi
}

# Any overlay of the lab still using the tree as its lower layer?
tree_in_use() {
  grep -q " overlay .*lowerdir=${TREE}[,:]" /proc/mounts
}

ensure_base_tree() {
  if [[ -f $TREE/.lab-tree-version && $(cat "$TREE/.lab-tree-version") == "$TREE_VERSION" ]]; then
    log "base tree cached at $TREE"
    return 0
  fi
  if [[ -d $TREE ]]; then
    # An older recipe: re-apply the (idempotent) customisation in place.
    tree_in_use && die "base tree $TREE is outdated but in use; run lab/lab.sh down first"
    log "updating base tree $TREE to recipe $TREE_VERSION"
    customize_tree "$TREE"
    return 0
  fi
  local tmp=$TREE.tmp mirror
  mirror=$(debian_mirror)
  rm -rf "$tmp"
  mkdir -p "$CACHE/debootstrap-debs"
  log "debootstrap $SUITE (log: $STATE/logs/debootstrap.log)"
  # minbase + what a bare server of this cluster has: systemd, sshd, sudo, btrfs-progs.
  debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
    --include=systemd-sysv,dbus,openssh-server,sudo,btrfs-progs,ca-certificates,iproute2,procps \
    "$SUITE" "$tmp" "$mirror" >"$STATE/logs/debootstrap.log" 2>&1 ||
    die "debootstrap failed, see $STATE/logs/debootstrap.log"
  customize_tree "$tmp"
  mv "$tmp" "$TREE"
}

# Settings shared by every host. Per-host things (keys, hostname, machine-id,
# fstab, passwords) go into each host's overlay upper dir instead.
customize_tree() {
  local root=$1
  # apt: only the lab repository. [trusted=yes]: it is an unsigned lab-local repo.
  : >"$root/etc/apt/sources.list"
  rm -f "$root"/etc/apt/sources.list.d/*
  cat >"$root/etc/apt/sources.list.d/lab.sources" <<EOF
# The lab's local repository, served from the controller namespace.
# Trusted: yes because it is an unsigned repository that exists only inside the lab.
Types: deb
URIs: http://repo:$REPO_PORT/debian
Suites: ./
Trusted: yes
EOF
  cat >"$root/etc/apt/apt.conf.d/90lab" <<'EOF'
Acquire::Languages "none";
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb

  # sshd: key login only; UsePAM no saves ~25 ms per connection (LAB.md).
  rm -f "$root"/etc/ssh/ssh_host_*
  cat >"$root/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
EOF

  # Users: admin (passwordless sudo) and operator (sudo asks for a password).
  local user
  for user in admin operator; do
    chroot "$root" id "$user" >/dev/null 2>&1 && continue
    # Debian already has a group "operator" (gid 37): reuse it as the primary group.
    if chroot "$root" getent group "$user" >/dev/null; then
      chroot "$root" useradd -m -s /bin/bash -g "$user" "$user"
    else
      chroot "$root" useradd -m -s /bin/bash "$user"
    fi
  done
  # '*' = no password but not "locked": sshd with UsePAM no refuses locked ('!') accounts.
  chroot "$root" usermod -p '*' admin
  chroot "$root" usermod -p '*' operator
  printf 'admin ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/lab-admin"
  printf 'operator ALL=(ALL:ALL) ALL\n' >"$root/etc/sudoers.d/lab-operator"
  chmod 440 "$root"/etc/sudoers.d/lab-*

  # No DNS in the lab: every name is in /etc/hosts.
  rm -f "$root/etc/resolv.conf"
  printf '# lab: no DNS; names are in /etc/hosts\n' >"$root/etc/resolv.conf"
  : >"$root/etc/machine-id"
  rm -f "$root/etc/hostname"

  # Units that cannot work in a container and would make the system "degraded".
  local unit
  for unit in systemd-networkd-wait-online.service getty@tty1.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  mkdir -p "$root/srv/vol"
  printf '%s\n' "$TREE_VERSION" >"$root/.lab-tree-version"
}
