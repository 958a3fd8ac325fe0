# shellcheck shell=bash
# The one way this project installs Debian packages on the build machine. Sourced by
# lab/lab.sh, lab/vm/vm.sh, lab/app/build.sh, bench/run.sh and scripts/main-job; needs nothing
# else sourced first.
#
# Why: lab.sh builds the VM in the background while the foreground installs the app's build
# tools; two apt-get runs at once make one of them fail on the dpkg lock, and only on a
# fresh machine (a machine that has every package never installs). So every install here
#   - takes one controller-wide lock (flock) first: two installs of this project never overlap;
#   - asks apt to wait for dpkg's own lock (DPkg::Lock::Timeout) held by anything else
#     (unattended-upgrades, a person's apt-get);
#   - installs only what is missing, so a machine that has it all never waits for the lock.

APT_LOCK_FILE=${CUTOVER_APT_LOCK_FILE:-/run/lock/cutover-apt.lock}
APT_LOCK_TIMEOUT=${CUTOVER_APT_LOCK_TIMEOUT:-900}

# The packages among the arguments that are not installed (a NAME=VERSION pin counts as its
# NAME). Prints one a line.
apt_missing() {
  local p name
  for p in "$@"; do
    name=${p%%=*}
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null) == installed ]] || printf '%s\n' "$p"
  done
}

# apt_install [APT-GET OPTION…] PACKAGE…: install what is missing, waiting its turn.
# Options (words starting with -) go to `apt-get install` as they are. apt's output goes to
# the caller's stdout/stderr: the caller decides which log it belongs in.
apt_install() {
  local opts=() pkgs=() missing=() a
  for a in "$@"; do
    if [[ $a == -* ]]; then opts+=("$a"); else pkgs+=("$a"); fi
  done
  mapfile -t missing < <(apt_missing "${pkgs[@]}")
  ((${#missing[@]})) || return 0
  (
    exec {lock_fd}>>"$APT_LOCK_FILE"
    if ! flock -n "$lock_fd"; then
      printf '[apt] waiting for another install of this project (lock %s)\n' "$APT_LOCK_FILE" >&2
      flock -w "$APT_LOCK_TIMEOUT" "$lock_fd" ||
        { printf '[apt] gave up after %s s waiting for %s\n' "$APT_LOCK_TIMEOUT" "$APT_LOCK_FILE" >&2; exit 1; }
    fi
    # Whoever held the lock may have installed some of them.
    mapfile -t missing < <(apt_missing "${missing[@]}")
    ((${#missing[@]})) || exit 0
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -y -q)
    printf '[apt] installing: %s\n' "${missing[*]}"
    # Refresh the package lists only when they are missing or too old to install from.
    if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null &&
      "${apt[@]}" install "${opts[@]}" "${missing[@]}" {lock_fd}>&-; then
      exit 0
    fi
    printf '[apt] refreshing the package lists, then installing again\n'
    # The lock's fd is closed for apt: a daemon a package starts must not hold it forever.
    "${apt[@]}" update {lock_fd}>&- && "${apt[@]}" install "${opts[@]}" "${missing[@]}" {lock_fd}>&-
  )
}
