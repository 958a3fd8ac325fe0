# shellcheck shell=bash
# shellcheck disable=SC2034 # lists used by the scripts that source this file
# The Debian packages this project installs on the build machine, by who needs them.
# Sourced by lab/lab.sh, lab/vm/vm.sh, lab/app/build.sh and scripts/main-job, so that what
# main-job announces is what the lab then installs (install through lab/lib/apt.sh).

# The lab of containers: debootstrap, nspawn, btrfs volumes, the apt repository, the
# controller's ssh, the repo's HTTP server, GNU time for the streaming tests' peak memory, git
# (the customizations repository the lab serves, and cutover's `git_overlay` on the controller),
# aiosmtpd for the lab's mail sink (lab/sink/mail_sink.py).
LAB_HOST_PACKAGES=(
  debootstrap systemd-container btrfs-progs dpkg-dev apt-utils iproute2 openssh-client
  curl mount python3 time git python3-aiosmtpd
)
# The LVM VM (lab/vm/vm.sh): its image is built with debootstrap and mkfs.ext4 -d, run by qemu.
VM_HOST_PACKAGES=(debootstrap qemu-system-x86 qemu-utils e2fsprogs openssh-client)
# The lab app's release bundles (lab/app/build.sh): javac, the servlet API, the JDBC driver.
APP_BUILD_PACKAGES=(default-jdk-headless libtomcat10-java libmariadb-java)
