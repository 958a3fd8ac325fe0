# shellcheck shell=bash
# Build-machine packages and the shared debootstrap tree. Sourced by lab.sh.

# Every package the lab needs on the build machine, installed in the foreground before
# anything runs in the background (the VM build), so no two installs ever race.
ensure_host_packages() {
  local missing=() logf
  mapfile -t missing < <(apt_missing "${LAB_HOST_PACKAGES[@]}" "${APP_BUILD_PACKAGES[@]}" "${VM_HOST_PACKAGES[@]}" | sort -u)
  if ((${#missing[@]} == 0)); then
    skipped "build-machine packages (all installed)"
    return 0
  fi
  logf=$(step_log apt-host)
  log "installing on the build machine: ${missing[*]} (log: $logf)"
  { apt_install "${LAB_HOST_PACKAGES[@]}" && apt_install --no-install-recommends "${APP_BUILD_PACKAGES[@]}"; } >>"$logf" 2>&1 ||
    die_with_log "installing the build machine's packages failed" "$logf"
  # The VM's tools through vm.sh, which knows how to pair qemu-utils with qemu-system-x86.
  "$VM_SCRIPT" host-tools >>"$logf" 2>&1 || die_with_log "installing the VM's host tools failed" "$logf"
}

# Any overlay of the lab still using the tree as its lower layer?
tree_in_use() {
  grep -q " overlay .*lowerdir=${TREE}[,:]" /proc/mounts
}

ensure_base_tree() {
  if [[ -f $TREE/.lab-tree-version && $(cat "$TREE/.lab-tree-version") == "$TREE_VERSION" ]]; then
    skipped "base tree (cached at $TREE)"
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
  local logf
  logf=$(step_log debootstrap)
  log "debootstrap $SUITE (log: $logf)"
  # minbase + what a bare server of this cluster has: systemd, sshd, sudo, btrfs-progs.
  debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
    --include=systemd-sysv,dbus,openssh-server,sudo,btrfs-progs,ca-certificates,iproute2,procps \
    "$SUITE" "$tmp" "$mirror" >"$logf" 2>&1 ||
    die_with_log "debootstrap failed" "$logf"
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

  # sshd: key login only; UsePAM no (sshd_config(5)) saves ~25 ms per connection, as measured on
  # this lab's containers.
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
