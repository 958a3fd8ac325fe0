#!/usr/bin/env bash
# lab/vm/vm.sh — one qemu VM ("lvm1") with real LVM for the LVM tests.
#
# The host kernel has no device-mapper, so LVM snapshots/merges can only be tested
# inside a VM. See lab/vm/README.md for the layout and measured times.
#
#   vm.sh build   debootstrap + kernel/initrd + base qcow2 (cached; no-op if cached)
#   vm.sh host-tools  install the build machine's packages the VM needs (lab.sh up does
#                 this in the foreground, before it starts `up` in the background)
#   vm.sh up      fresh overlay + data disk, start qemu in netns cutover-ctl, wait for ssh
#   vm.sh down    poweroff (kill after a timeout), remove tap and per-run state
#   vm.sh status  print whether the VM runs and answers ssh (exit 0 only if it does)
#   vm.sh ssh     ssh root@lvm1 [command...] from the controller namespace
#
# Environment:
#   CUTOVER_LAB_CACHE  cache root (default /var/cache/cutover-lab); image in $CUTOVER_LAB_CACHE/vm
#   CUTOVER_LAB_STATE  state root (default /var/lib/cutover-lab); run state in $CUTOVER_LAB_STATE/vm
#   CUTOVER_LAB_VM_WAIT  seconds `up` waits for ssh (default 120)
#   CUTOVER_LAB_VM_NAME, CUTOVER_LAB_VM_IP, CUTOVER_LAB_VM_MAC  a second VM beside lvm1
#                 (default lvm1, 10.77.0.51, 52:54:00:77:00:51). Its image, cache and run
#                 state are its own ($CACHE_ROOT/vm-NAME, $STATE_ROOT/vm-NAME) and its tap is
#                 tap-NAME: e.g. CUTOVER_LAB_VM_NAME=sys1 CUTOVER_LAB_VM_IP=10.77.0.52
#                 CUTOVER_LAB_VM_MAC=52:54:00:77:00:52 vm.sh up
set -euo pipefail

VM_NAME=${CUTOVER_LAB_VM_NAME:-lvm1}
VM_IP=${CUTOVER_LAB_VM_IP:-10.77.0.51}
VM_PREFIX=16
VM_MAC=${CUTOVER_LAB_VM_MAC:-52:54:00:77:00:51}
[[ $VM_NAME =~ ^[a-z][a-z0-9]{0,10}$ ]] || { echo "CUTOVER_LAB_VM_NAME: 1-11 of [a-z0-9], a letter first" >&2; exit 2; }
VM_MEM=${CUTOVER_LAB_VM_MEM:-768}
VM_CPUS=${CUTOVER_LAB_VM_CPUS:-2}
NETNS=cutover-ctl
BRIDGE=labbr0
BRIDGE_ADDR=10.77.0.1/16
TAP=tap-$VM_NAME
SUITE=bookworm
# The root disk /dev/vda is the PV of $ROOT_VG; its LV `root` holds the root ext4, so that a
# system upgrade can be rolled back by merging a snapshot of it. The rest of the PV stays
# free for that snapshot.
ROOT_VG=vgsys
ROOT_LV_SIZE=1G      # the root LV and its ext4; the tree is ~0.5 GB
ROOT_DISK_SIZE=1536M # PV: the root LV + ~508 MiB free
DATA_DISK_SIZE=2G    # second disk: PV for vg0

CACHE_ROOT=${CUTOVER_LAB_CACHE:-/var/cache/cutover-lab}
STATE_ROOT=${CUTOVER_LAB_STATE:-/var/lib/cutover-lab}
# lvm1 keeps the plain names (vm/); another VM gets its own (vm-NAME/).
VM_DIR=vm
[[ $VM_NAME == lvm1 ]] || VM_DIR=vm-$VM_NAME
CACHE=$CACHE_ROOT/$VM_DIR
STATE=$STATE_ROOT/$VM_DIR
SSH_DIR=$STATE_ROOT/ssh
SSH_KEY=$SSH_DIR/id_ed25519
KNOWN_HOSTS=$SSH_DIR/known_hosts
SSH_CONF=$SSH_DIR/config.d/$VM_NAME.conf

BASE_IMG=$CACHE/base.qcow2
KERNEL=$CACHE/vmlinuz
INITRD=$CACHE/initrd.img
HOSTKEY_PUB=$CACHE/ssh_host_ed25519_key.pub
STAMP=$CACHE/build.done
# What the stamp holds; a cache built by an older recipe is rebuilt (when the VM is down).
# 2: the root on an LV (vgsys/root). 3: its tree trimmed (trim_tree) for room on that LV.
IMAGE_RECIPE=3

ROOT_OVL=$STATE/root.qcow2
DATA_DISK=$STATE/data.qcow2
PIDFILE=$STATE/qemu.pid
CONSOLE=$STATE/console.log

log() { printf '[vm.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm.sh] ERROR: %s\n' "$*" >&2; exit 1; }
# die_with_log MESSAGE LOGFILE: fail, quoting the end of the step's log.
die_with_log() {
    { printf '[vm.sh] ERROR: %s (log: %s)\n' "$1" "$2"; log_tail "$2"; } >&2
    exit 1
}

LAB_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)
# shellcheck source=../lib/logs.sh
source "$LAB_LIB/logs.sh"
# shellcheck source=../lib/apt.sh
source "$LAB_LIB/apt.sh"
# shellcheck source=../lib/packages.sh
source "$LAB_LIB/packages.sh"

# Serialise concurrent callers (lab.sh starts `up` in the background; people run it by hand).
# The lock fds (7 build, 8 state) must not leak into the daemonized qemu, or a lock
# would live as long as the VM.
take_lock() { # FD FILE
    local fd=$1 file=$2
    mkdir -p "$(dirname "$file")"
    eval "exec $fd>>\"\$file\""
    flock -w 900 "$fd" || die "timed out waiting for lock $file"
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (netns, tap devices, debootstrap)"; }

# ---------------------------------------------------------------- host tools

# Install the host packages we need (lab/lib/packages.sh), only what is missing, through the
# project's one install helper (lab/lib/apt.sh: waits its turn, never two installs at once).
# qemu-utils is pinned to qemu-system-x86's version: a backported qemu-utils (>= 8) Breaks
# bookworm's qemu-system-common, and apt resolves that by *removing* qemu-utils while it
# installs qemu-system-x86 (seen on a fresh machine of this kind). Hence a second pass.
ensure_host_tools() {
    local pass missing=() v
    for pass in 1 2; do
        mapfile -t missing < <(apt_missing "${VM_HOST_PACKAGES[@]}")
        [[ ${#missing[@]} -eq 0 ]] && return 0
        v=$(qemu_system_version)
        [[ -n $v ]] && missing=("${missing[@]/#qemu-utils/qemu-utils=$v}")
        log "installing host packages (pass $pass): ${missing[*]}"
        apt_install --allow-downgrades "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    done
    mapfile -t missing < <(apt_missing "${VM_HOST_PACKAGES[@]}")
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after installing them: ${missing[*]}"
}

# The version of qemu-system-x86: installed, else apt's candidate (empty if neither).
qemu_system_version() {
    local v
    v=$(dpkg-query -W -f='${db:Status-Status} ${Version}' qemu-system-x86 2>/dev/null | awk '$1 == "installed" { print $2 }')
    [[ -n $v ]] || v=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }')
    printf '%s\n' "$v"
}

# The Debian mirror for $SUITE, read from the host's apt configuration (never hard-coded).
debian_mirror() {
    local m="" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        m=$(awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; types = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^URIs:/)    { sub(/^URIs:[ \t]*/, "", line); uris = line }
                    if (line ~ /^Suites:/)  { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
                    if (line ~ /^Types:/)   { types = " " line " " }
                    if (line ~ /^Enabled:[ \t]*no/) { enabled = "no" }
                }
                if (enabled == "yes" && types ~ /[ \t]deb[ \t]/ && suites ~ (" " suite " ")) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
        [[ -n $m ]] && break
    done
    if [[ -z $m && -f /etc/apt/sources.list ]]; then
        m=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    [[ -n $m ]] || die "no '$SUITE' deb source found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
    printf '%s\n' "$m"
}

# ---------------------------------------------------------------- build

# Leave room on the 1 GiB root LV for what the tests install there (MariaDB's server takes
# ~200 MB: upgrade_lvm_vm): kernel modules a virtio VM never loads (graphics, sound, media,
# wireless, USB, InfiniBand, ...) and documentation, manuals and translations go; depmod
# then indexes what is left. The initramfs (built before) keeps its own copies.
trim_tree() { # TREE KVER
    local r=${1:?} kver=${2:?} d
    local mods=$r/usr/lib/modules/$kver/kernel
    [[ -d $mods ]] || die "trim_tree: no $mods"
    for d in sound drivers/{gpu,media,infiniband,iio,staging,usb,hid,hwmon,platform,bluetooth,input,scsi,isdn,mmc,thunderbolt,nfc,leds,w1,power,atm,net/wireless,net/ethernet,net/can,net/usb} net/{wireless,bluetooth,mac80211}; do
        rm -rf "${mods:?}/$d"
    done
    rm -rf "$r"/usr/share/{doc,man,info,locale}/*
    chroot "$r" depmod -a "$kver" || die "depmod in the trimmed tree failed"
}

# Files written into the VM's root tree (all static; per-run data comes via fw_cfg).
write_guest_config() {
    local r=$1

    echo "$VM_NAME" >"$r/etc/hostname"
    cat >"$r/etc/hosts" <<EOF
127.0.0.1 localhost
$VM_IP $VM_NAME.lab $VM_NAME
${BRIDGE_ADDR%/*} repo
EOF
    # The VM has no route to any mirror; its only source is the lab's repository (served
    # from the controller namespace, as for the containers: lab/lib/base.sh), which holds
    # lab-release-notes in two versions for the system-upgrade test.
    echo "# lab VM: only the lab repository (sources.list.d/lab.sources)" >"$r/etc/apt/sources.list"
    rm -f "$r"/etc/apt/sources.list.d/*
    cat >"$r/etc/apt/sources.list.d/lab.sources" <<'EOF'
# The lab's local repository, served from the controller namespace.
# Trusted: yes because it is an unsigned repository that exists only inside the lab.
Types: deb
URIs: http://repo:8080/debian
Suites: ./
Trusted: yes
EOF
    printf 'Acquire::Languages "none";\n' >"$r/etc/apt/apt.conf.d/90lab"

    # /srv/data: nofail so a missing vg0 never blocks boot; the first-boot unit
    # (cutover-vg-init) creates vg0 and is ordered before this mount.
    cat >"$r/etc/fstab" <<EOF
/dev/mapper/$ROOT_VG-root / ext4 defaults,errors=remount-ro 0 1
/dev/vg0/data   /srv/data ext4 defaults,nofail,x-systemd.device-timeout=60s 0 2
EOF
    mkdir -p "$r/srv/data"

    # Static address on the lab bridge; no gateway and no DNS: nothing leaves the lab.
    mkdir -p "$r/etc/systemd/network"
    cat >"$r/etc/systemd/network/10-lab.network" <<EOF
[Match]
Name=eth0

[Network]
Address=$VM_IP/$VM_PREFIX
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF

    # sshd: root by key only; only the ed25519 host key we generate (and pin) at build time.
    mkdir -p "$r/etc/ssh/sshd_config.d"
    cat >"$r/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
EOF
    rm -f "$r"/etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -C "root@$VM_NAME" -f "$r/etc/ssh/ssh_host_ed25519_key"

    # The controller's public key arrives per boot through qemu fw_cfg, so a new lab
    # key never needs an image rebuild.
    mkdir -p "$r/usr/local/sbin" "$r/etc/systemd/system" "$r/root/.ssh"
    chmod 700 "$r/root/.ssh"
    cat >"$r/usr/local/sbin/cutover-authkeys" <<'EOF'
#!/bin/sh
# Install the lab controller key passed by qemu as fw_cfg opt/cutover/authorized_keys.
set -eu
modprobe qemu_fw_cfg 2>/dev/null || true
src=/sys/firmware/qemu_fw_cfg/by_name/opt/cutover/authorized_keys/raw
i=0
while [ ! -r "$src" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -r "$src" ] || { echo "cutover-authkeys: $src missing" >&2; exit 1; }
install -d -m 700 /root/.ssh
cat "$src" >/root/.ssh/authorized_keys.new
chmod 600 /root/.ssh/authorized_keys.new
mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
EOF
    cat >"$r/etc/systemd/system/cutover-authkeys.service" <<'EOF'
[Unit]
Description=Install lab controller ssh key from qemu fw_cfg
DefaultDependencies=no
After=systemd-remount-fs.service
Before=ssh.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cutover-authkeys

[Install]
WantedBy=sysinit.target
EOF

    # First boot: make /dev/vdb the PV of vg0 with LVs data (mounted) and scratch,
    # leaving most extents free for snapshots. Done in the VM because the host has no dm.
    mkdir -p "$r/usr/local/share/cutover-lab/data-seed"
    echo "cutover lab data volume (vg0/data)" >"$r/usr/local/share/cutover-lab/data-seed/README"
    echo "hello from lvm1" >"$r/usr/local/share/cutover-lab/data-seed/hello.txt"
    mkdir -p "$r/usr/local/share/cutover-lab/data-seed/app"
    seq 1 1000 >"$r/usr/local/share/cutover-lab/data-seed/app/numbers.txt"
    echo "version=1" >"$r/usr/local/share/cutover-lab/data-seed/app/VERSION"
    cat >"$r/usr/local/sbin/cutover-vg-init" <<'EOF'
#!/bin/sh
# Create vg0 on /dev/vdb once (the disk itself says whether it was done: a PV label).
set -eu
export LC_ALL=C
dev=/dev/vdb
if blkid -p -s TYPE -o value "$dev" 2>/dev/null | grep -qx LVM2_member; then
    echo "cutover-vg-init: $dev already a PV; activating vg0"
    vgchange -ay vg0
    exit 0
fi
pvcreate -y "$dev"
vgcreate vg0 "$dev"
lvcreate -y -n data -L 256M vg0
lvcreate -y -n scratch -L 128M vg0
mkfs.ext4 -q -L data -d /usr/local/share/cutover-lab/data-seed /dev/vg0/data
mkfs.ext4 -q -L scratch /dev/vg0/scratch
udevadm settle || true
echo "cutover-vg-init: created vg0 (data, scratch)"
EOF
    cat >"$r/etc/systemd/system/cutover-vg-init.service" <<'EOF'
[Unit]
Description=Create LVM volume group vg0 on /dev/vdb (lab first boot)
DefaultDependencies=no
Requires=dev-vdb.device
After=dev-vdb.device systemd-remount-fs.service systemd-udevd.service lvm2-monitor.service
Before=srv-data.mount local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cutover-vg-init
TimeoutStartSec=300

[Install]
WantedBy=local-fs.target
EOF
    write_root_lv_builder "$r"
    chmod 755 "$r/usr/local/sbin/cutover-authkeys" "$r/usr/local/sbin/cutover-vg-init"

    # Small initramfs: only what this VM needs (boot is CPU-bound under TCG).
    sed -i 's/^MODULES=.*/MODULES=list/' "$r/etc/initramfs-tools/initramfs.conf"
    cat >"$r/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_net
virtio_rng
virtio_console
crc32c_generic
ext4
dm_mod
dm_snapshot
dm_bufio
qemu_fw_cfg
EOF
    mkdir -p "$r/etc/modules-load.d"
    echo qemu_fw_cfg >"$r/etc/modules-load.d/qemu_fw_cfg.conf"
}

# The init (init=) of the one-shot builder VM that `build` boots once: the host has no
# device-mapper, so the root LV is made inside a VM. Root is the tree's ext4 image (/dev/vdb,
# read-only); /dev/vda, empty, becomes the PV of $ROOT_VG with LV root, a block copy of /dev/vdb.
# The console says CUTOVER-ROOT-LV-OK only when every step worked.
write_root_lv_builder() {
    local r=$1
    cat >"$r/usr/local/sbin/cutover-root-lv-build" <<EOF
#!/bin/sh
# Used once by lab/vm/vm.sh build (kernel init=...); never at a normal boot.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs run /run 2>/dev/null
mkdir -p /run/lock/lvm /run/lvm
# No udev, a read-only /etc: lvm makes its own device nodes and keeps no backups.
cfg='activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } backup { backup = 0 archive = 0 } global { use_lvmpolld = 0 }'
ok() {
    pvcreate -y --config "\$cfg" /dev/vda &&
    vgcreate --config "\$cfg" $ROOT_VG /dev/vda &&
    lvcreate -y -Zn --config "\$cfg" -n root -L $ROOT_LV_SIZE $ROOT_VG &&
    dd if=/dev/vdb of=/dev/mapper/$ROOT_VG-root bs=4M conv=fsync status=none &&
    vgchange -an --config "\$cfg" $ROOT_VG &&
    pvs --config "\$cfg" && lvs --config "\$cfg"
}
if ok; then echo CUTOVER-ROOT-LV-OK; else echo CUTOVER-ROOT-LV-FAILED; fi
sync
echo o >/proc/sysrq-trigger
sleep 30
EOF
    chmod 755 "$r/usr/local/sbin/cutover-root-lv-build"
}

# Make the root disk: boot the tree's ext4 image once with an empty disk beside it and let
# cutover-root-lv-build (above) make the PV, the VG and the root LV and copy the image into it.
build_root_disk() { # EXT4_IMAGE RAW_DISK
    local img=$1 disk=$2 logf
    rm -f "$disk"
    truncate -s "$ROOT_DISK_SIZE" "$disk"
    logf=$(rotate_log "$CACHE/root-lv-build.log")
    log "builder VM: $ROOT_VG/root on the root disk (log: $logf)"
    timeout 600 qemu-system-x86_64 \
        -machine pc -accel tcg,thread=multi,tb-size=128 -cpu max -smp "$VM_CPUS" -m "$VM_MEM" \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "root=/dev/vdb ro console=ttyS0 init=/usr/local/sbin/cutover-root-lv-build mitigations=off" \
        -drive "file=$disk,if=virtio,format=raw" \
        -drive "file=$img,if=virtio,format=raw,readonly=on" \
        -nic none -display none -vga none -monitor none -no-reboot \
        -serial "file:$logf" 7>&- 8>&- \
        || die_with_log "builder VM failed" "$logf"
    grep -q CUTOVER-ROOT-LV-OK "$logf" || die_with_log "builder VM did not make the root LV" "$logf"
}

# Enable/mask units inside the tree (offline, via systemctl --root).
configure_units() {
    local r=$1
    systemctl --root="$r" enable systemd-networkd.service cutover-authkeys.service cutover-vg-init.service ssh.service >/dev/null 2>&1
    # Nothing useful on a short-lived lab VM; they only cost boot time under TCG.
    systemctl --root="$r" mask \
        systemd-networkd-wait-online.service systemd-firstboot.service \
        apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer getty@tty1.service systemd-timesyncd.service >/dev/null 2>&1 || true
    # A fixed machine-id: no "first boot" logic on every fresh overlay.
    systemd-machine-id-setup --root="$r" >/dev/null
}

image_current() { [[ -f $STAMP && $(cat "$STAMP") == "$IMAGE_RECIPE" && -f $BASE_IMG ]]; }

cmd_build() {
    need_root
    if image_current && [[ -f $KERNEL && -f $INITRD && -f $HOSTKEY_PUB ]]; then
        log "image cached in $CACHE (remove $STAMP to rebuild)"
        return 0
    fi
    # A running VM's overlay is backed by the base image: never replace it under it.
    if vm_running; then
        log "image in $CACHE is outdated or incomplete, but $VM_NAME runs on it: rebuilt after 'vm.sh down'"
        return 0
    fi
    take_lock 7 "$CACHE_ROOT/.vm-build.lock"
    if image_current; then
        log "image built meanwhile by another vm.sh"
        return 0
    fi
    ensure_host_tools
    local t0=$SECONDS mirror tree=$CACHE/rootfs logf
    mirror=$(debian_mirror)
    mkdir -p "$CACHE"
    rm -f "$STAMP"

    # debootstrap is the slow part: keep a finished tree and reuse it when only later steps failed.
    if [[ ! -f $tree/.debootstrap.done ]]; then
        rm -rf "$tree"
        log "debootstrap $SUITE into $tree (a few minutes)"
        debootstrap --variant=minbase \
            --include=linux-image-amd64,initramfs-tools,systemd-sysv,udev,dbus,kmod,iproute2,procps,openssh-server,lvm2,e2fsprogs,xfsprogs,sudo,util-linux \
            "$SUITE" "$tree" "$mirror" >"$(rotate_log "$CACHE/debootstrap.log")" 2>&1 \
            || die_with_log "debootstrap failed" "$CACHE/debootstrap.log"
        touch "$tree/.debootstrap.done"
        log "debootstrap done after $((SECONDS - t0)) s"
    fi

    write_guest_config "$tree"
    configure_units "$tree"

    # Rebuild the initramfs with MODULES=list inside the tree (needs proc/sys/dev).
    local mounted=()
    cleanup_mounts() { local m; for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
    trap cleanup_mounts EXIT
    mount -t proc proc "$tree/proc" && mounted+=("$tree/proc")
    mount -t sysfs sys "$tree/sys" && mounted+=("$tree/sys")
    mount --bind /dev "$tree/dev" && mounted+=("$tree/dev")
    logf=$(rotate_log "$CACHE/initramfs.log")
    chroot "$tree" update-initramfs -u -k all >"$logf" 2>&1 \
        || die_with_log "update-initramfs failed" "$logf"
    cleanup_mounts
    mounted=()
    trap - EXIT

    local kver="" k
    for k in "$tree"/boot/vmlinuz-*; do [[ -f $k ]] && kver=${k##*/vmlinuz-}; done
    [[ -n $kver ]] || die "no kernel in $tree/boot (linux-image-amd64 not installed?)"
    cp "$tree/boot/vmlinuz-$kver" "$KERNEL.tmp" && mv "$KERNEL.tmp" "$KERNEL"
    cp "$tree/boot/initrd.img-$kver" "$INITRD.tmp" && mv "$INITRD.tmp" "$INITRD"
    cp "$tree/etc/ssh/ssh_host_ed25519_key.pub" "$HOSTKEY_PUB"
    echo "$kver" >"$CACHE/kernel.version"

    # Trim the tree before imaging: apt caches are useless without a mirror.
    rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
    trim_tree "$tree" "$kver"

    log "making the root ext4 image (mkfs.ext4 -d, no mount)"
    local img=$CACHE/root-ext4.raw raw=$CACHE/base.raw
    rm -f "$img"
    truncate -s "$ROOT_LV_SIZE" "$img"
    mkfs.ext4 -q -F -L root -d "$tree" "$img" || die "mkfs.ext4 -d failed (does the tree fit $ROOT_LV_SIZE?)"
    build_root_disk "$img" "$raw"
    qemu-img convert -O qcow2 "$raw" "$BASE_IMG.tmp" && mv "$BASE_IMG.tmp" "$BASE_IMG"
    rm -f "$raw" "$img"
    echo "$IMAGE_RECIPE" >"$STAMP"
    log "build done in $((SECONDS - t0)) s: $BASE_IMG ($(du -h "$BASE_IMG" | cut -f1)), kernel $kver"
}

# ---------------------------------------------------------------- process helpers

qemu_pid() { [[ -f $PIDFILE ]] && tr -dc '0-9' <"$PIDFILE"; }

# Alive = /proc/PID/stat exists, state is not Z/X (zombies linger here), and it is our qemu.
pid_alive() {
    local pid=$1 stat state
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]] || return 1
    grep -q qemu "/proc/$pid/comm" 2>/dev/null
}

vm_running() { local pid; pid=$(qemu_pid) || return 1; pid_alive "$pid"; }

ssh_base() {
    printf '%s\n' ip netns exec "$NETNS" ssh -F /dev/null \
        -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$KNOWN_HOSTS" -o IdentitiesOnly=yes -i "$SSH_KEY" \
        -o LogLevel=ERROR "root@$VM_IP"
}

vm_ssh() { local -a base; mapfile -t base < <(ssh_base); "${base[@]}" "$@"; }

# ---------------------------------------------------------------- lab plumbing

# The lab (lab/lab.sh) owns netns + bridge; create them only when missing so the VM
# can be used alone. Never deleted here.
ensure_netns() {
    if [[ ! -e /run/netns/$NETNS ]]; then
        log "netns $NETNS missing: creating it (owned by the lab from now on)"
        ip netns add "$NETNS"
    fi
    ip -n "$NETNS" link set lo up
    if ! ip -n "$NETNS" link show "$BRIDGE" >/dev/null 2>&1; then
        log "bridge $BRIDGE missing in $NETNS: creating it with $BRIDGE_ADDR"
        ip -n "$NETNS" link add "$BRIDGE" type bridge
        ip -n "$NETNS" addr add "$BRIDGE_ADDR" dev "$BRIDGE"
    fi
    ip -n "$NETNS" link set "$BRIDGE" up
}

ensure_ssh_key() {
    mkdir -p "$SSH_DIR/config.d"
    chmod 700 "$SSH_DIR"
    if [[ ! -f $SSH_KEY ]]; then
        log "creating lab controller key $SSH_KEY"
        ssh-keygen -q -t ed25519 -N '' -C cutover-lab -f "$SSH_KEY"
    fi
    touch "$KNOWN_HOSTS"
}

# Replace our own known_hosts lines (lvm1, lvm1.lab, 10.77.0.51), leave others alone.
# flock: the lab helper may edit the same file.
update_known_hosts() {
    local mode=$1 key tmp
    key=$(awk '{print $1" "$2}' "$HOSTKEY_PUB")
    tmp=$(mktemp "$SSH_DIR/.known_hosts.XXXXXX")
    # shellcheck disable=SC2094  # fd 9 is only a lock; the file is rewritten in place under it
    (
        flock 9
        # Drop a line if any of its comma-separated host names is ours (lab.sh writes
        # "lvm1,lvm1.lab,10.77.0.51 KEY" from the same key, see publish_host_key).
        awk -v names="$VM_NAME $VM_NAME.lab $VM_IP" '
            BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) mine[a[i]] = 1 }
            { k = split($1, h, ","); for (i = 1; i <= k; i++) if (h[i] in mine) next; print }' "$KNOWN_HOSTS" >"$tmp"
        if [[ $mode == add ]]; then
            printf '%s %s\n' "$VM_NAME" "$key" "$VM_NAME.lab" "$key" "$VM_IP" "$key" >>"$tmp"
        fi
        cat "$tmp" >"$KNOWN_HOSTS"
    ) 9>>"$KNOWN_HOSTS"
    rm -f "$tmp"
}

# lab/lab.sh rewrites known_hosts from scratch and takes the VM's key from
# $STATE/vm/lvm1/host_key.pub: publish it there so our lines survive its rewrite.
publish_host_key() {
    mkdir -p "$STATE/$VM_NAME"
    cp "$HOSTKEY_PUB" "$STATE/$VM_NAME/host_key.pub"
}

write_ssh_config() {
    cat >"$SSH_CONF.tmp" <<EOF
# Written by lab/vm/vm.sh up (removed by vm.sh down). Usable alone: ssh -F $SSH_CONF lvm1
Host $VM_NAME $VM_NAME.lab $VM_IP
    HostName $VM_IP
    User root
    IdentityFile $SSH_KEY
    IdentitiesOnly yes
    UserKnownHostsFile $KNOWN_HOSTS
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
EOF
    mv "$SSH_CONF.tmp" "$SSH_CONF"
}

# ---------------------------------------------------------------- up / down / status

wait_ready() {
    local limit=$1 t0=$SECONDS
    while (( SECONDS - t0 < limit )); do
        vm_running || die_with_log "qemu exited during boot" "$CONSOLE"
        # Ready = ssh works and first-boot LVM setup finished (vg0 exists, /srv/data mounted).
        if vm_ssh 'vgs vg0 >/dev/null 2>&1 && mountpoint -q /srv/data' 2>/dev/null; then
            return 0
        fi
        sleep 2
    done
    return 1
}

cmd_up() {
    need_root
    take_lock 8 "$STATE_ROOT/.vm.lock"
    if vm_running; then
        # Only refresh the ssh files (the lab may have rewritten known_hosts).
        ensure_ssh_key
        publish_host_key
        update_known_hosts add
        write_ssh_config
        log "$VM_NAME already running (pid $(qemu_pid)); ssh files refreshed"
        return 0
    fi
    image_current || cmd_build
    ensure_host_tools
    ensure_netns
    ensure_ssh_key
    mkdir -p "$STATE"

    # Fresh per-run disks: overlay over the cached base, and an empty PV disk.
    rm -f "$ROOT_OVL" "$DATA_DISK" "$PIDFILE"
    qemu-img create -q -f qcow2 -b "$BASE_IMG" -F qcow2 "$ROOT_OVL"
    qemu-img create -q -f qcow2 "$DATA_DISK" "$DATA_DISK_SIZE"

    # Tap in the controller netns, on the lab bridge.
    ip -n "$NETNS" link del "$TAP" 2>/dev/null || true
    ip -n "$NETNS" tuntap add dev "$TAP" mode tap
    ip -n "$NETNS" link set "$TAP" master "$BRIDGE"
    ip -n "$NETNS" link set "$TAP" up

    publish_host_key
    update_known_hosts add
    write_ssh_config

    local t0=$SECONDS
    rotate_log "$CONSOLE" >/dev/null # the consoles of the last boots stay beside it
    log "starting qemu (TCG) for $VM_NAME"
    # No -no-reboot: a guest reboot resets the machine and boots the same kernel again.
    ip netns exec "$NETNS" qemu-system-x86_64 \
        -name "$VM_NAME" \
        -machine pc -accel tcg,thread=multi,tb-size=128 -cpu max \
        -smp "$VM_CPUS" -m "$VM_MEM" \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "root=/dev/mapper/$ROOT_VG-root rw console=ttyS0 net.ifnames=0 quiet mitigations=off" \
        -drive "file=$ROOT_OVL,if=virtio,format=qcow2" \
        -drive "file=$DATA_DISK,if=virtio,format=qcow2" \
        -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=$VM_MAC" \
        -device virtio-rng-pci \
        -fw_cfg "name=opt/cutover/authorized_keys,file=$SSH_KEY.pub" \
        -display none -vga none -monitor none \
        -serial "file:$CONSOLE" \
        -pidfile "$PIDFILE" -daemonize 7>&- 8>&- \
        || die "qemu failed to start"

    local wait=${CUTOVER_LAB_VM_WAIT:-120}
    if ! wait_ready "$wait"; then
        die_with_log "$VM_NAME did not answer ssh (with vg0 ready) within $wait s" "$CONSOLE"
    fi
    log "$VM_NAME up: ssh ready after $((SECONDS - t0)) s (pid $(qemu_pid))"
}

cmd_down() {
    need_root
    take_lock 8 "$STATE_ROOT/.vm.lock"
    local pid
    pid=$(qemu_pid || true)
    if [[ -n $pid ]] && pid_alive "$pid"; then
        log "powering off $VM_NAME"
        local -a base
        mapfile -t base < <(ssh_base)
        # --no-block: ssh returns before the connection drops, so a failure here means
        # no shutdown was started and there is nothing to wait for.
        local grace=60
        if ! timeout 20 "${base[@]}" 'systemctl poweroff --no-block' >/dev/null 2>&1; then
            log "ssh poweroff failed; stopping qemu with signals"
            grace=0
        fi
        local t0=$SECONDS
        while pid_alive "$pid" && (( SECONDS - t0 < grace )); do sleep 1; done
        if pid_alive "$pid"; then
            log "still running after $grace s: SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            t0=$SECONDS
            while pid_alive "$pid" && (( SECONDS - t0 < 10 )); do sleep 0.5; done
        fi
        if pid_alive "$pid"; then
            log "SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            t0=$SECONDS
            while pid_alive "$pid" && (( SECONDS - t0 < 10 )); do sleep 0.5; done
            pid_alive "$pid" && die "qemu pid $pid does not die"
        fi
        log "$VM_NAME stopped"
    else
        log "$VM_NAME not running"
    fi
    # Only our tap and our files; netns/bridge belong to the lab.
    if [[ -e /run/netns/$NETNS ]]; then
        ip -n "$NETNS" link del "$TAP" 2>/dev/null || true
    fi
    if [[ -f $KNOWN_HOSTS && -f $HOSTKEY_PUB ]]; then update_known_hosts remove; fi
    rm -f "$SSH_CONF"
    rm -rf "$STATE"
}

cmd_status() {
    if ! vm_running; then
        echo "$VM_NAME: stopped"
        return 3
    fi
    if vm_ssh true 2>/dev/null; then
        echo "$VM_NAME: running (pid $(qemu_pid)), ssh ok at $VM_IP"
        return 0
    fi
    echo "$VM_NAME: running (pid $(qemu_pid)), ssh NOT answering (booting?); console: $CONSOLE"
    return 1
}

cmd_ssh() {
    vm_running || die "$VM_NAME is not running (lab/vm/vm.sh up)"
    local -a base
    mapfile -t base < <(ssh_base)
    # Allocate a tty only for interactive use.
    if [[ $# -eq 0 && -t 0 ]]; then "${base[@]}" -t; else "${base[@]}" "$@"; fi
}

usage() { sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

main() {
    close_inherited_fds
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        build) cmd_build ;;
        host-tools) need_root; ensure_host_tools ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        ssh) cmd_ssh "$@" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# One line: bash reads a script as it runs, so nothing after this may be parsed
# from a file that was replaced meanwhile.
main "$@"; exit $?
