# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the other lib files
# Shared settings and helpers for lab/lab.sh. Sourced, never run.

STATE=${CUTOVER_LAB_STATE:-/var/lib/cutover-lab}
CACHE=${CUTOVER_LAB_CACHE:-/var/cache/cutover-lab}
CTL_NS=cutover-ctl
BRIDGE=labbr0
CTL_ADDR=10.77.0.1
PREFIX=16
SUITE=bookworm
REPO_PORT=8080
# The announcement sink (lab/sink/announce_sink.py) and the file it records to.
ANNOUNCE_PORT=8081
ANNOUNCE_RECORD=$STATE/announce/received.jsonl
# The mail sink (lab/sink/mail_sink.py): the site's mail server the hosts' msmtp relays to.
MAIL_PORT=2525
MAIL_RECORD=$STATE/announce/mail.jsonl
# Bump when the recipe of the base tree changes, so cached trees are rebuilt.
TREE_VERSION=3
TREE=$CACHE/rootfs-$SUITE
# The system python: a pyenv shim may shadow python3 on PATH.
PYTHON=/usr/bin/python3

# name address volumes (comma separated subvolume names under /srv/vol).
LAB_HOSTS=(
  "app1 10.77.0.11 app,home"
  "app2 10.77.0.12 app,home"
  "db1 10.77.0.21 mysql"
  "db2 10.77.0.22 mysql"
  "lb 10.77.0.31 -"
  "staging 10.77.0.41 app,home,mysql"
)
VM_NAME=lvm1
VM_ADDR=10.77.0.51

# Where each volume is bind-mounted inside a host.
declare -A VOLUME_TARGET=(
  [app]=/opt/wiki
  [home]=/var/lib/wiki
  [mysql]=/var/lib/mysql
)

# Packages the local apt repository must be able to install on a bare host.
REPO_PACKAGES=(
  mariadb-server mariadb-client apache2 libapache2-mod-jk
  tomcat10 tomcat10-common libtomcat10-java default-jre-headless
  libmariadb-java rsync curl msmtp msmtp-mta
)

LAB_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=logs.sh
source "$LAB_LIB/logs.sh"
# shellcheck source=apt.sh
source "$LAB_LIB/apt.sh"
# shellcheck source=packages.sh
source "$LAB_LIB/packages.sh"

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# die_with_log MESSAGE LOGFILE: fail a step, quoting the end of its log, so the reason is on
# the screen (and in CI's output) without opening the file.
die_with_log() {
  { printf '[lab] ERROR: %s (log: %s)\n' "$1" "$2"; log_tail "$2"; } >&2
  exit 1
}

# step_log NAME: a fresh log for a step, the previous attempts kept beside it (logs.sh).
step_log() { rotate_log "$STATE/logs/$1.log"; }

# What `up` found done already and skipped; printed once at the end.
SKIPPED=()
skipped() {
  SKIPPED+=("$1")
  log "cached, skipped: $1"
}

# Run a named step and print how long it took.
timed() {
  local what=$1 start end
  shift
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  log "$(awk -v w="$what" -v a="$start" -v b="$end" 'BEGIN { printf "%-30s %6.1f s", w, b - a }')"
}

# True if PID is a live (not zombie) process: PID 1 here is not systemd and reaps
# orphans lazily, so kill -0 would lie; the state letter is the third field of
# /proc/PID/stat (proc(5), https://man7.org/linux/man-pages/man5/proc.5.html).
alive() {
  local pid=$1 stat
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z && $stat != X ]]
}

pid_from_file() {
  if [[ -f $1 ]]; then cat "$1" 2>/dev/null || true; fi
}

# Wait until none of the given pids is alive, at most $1 tenths of a second.
wait_dead() {
  local limit=$1 i pid any
  shift
  for ((i = 0; i < limit; i++)); do
    any=0
    for pid in "$@"; do
      if alive "$pid"; then any=1; fi
    done
    ((any)) || return 0
    sleep 0.1
  done
  return 1
}

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

netns_exists() { [[ -e /run/netns/$1 ]]; }

in_ctl() { ip netns exec "$CTL_NS" "$@"; }

# The Debian mirror of the build machine, read at run time so that no mirror
# name is ever written into the repository.
debian_mirror() {
  local uri
  uri=$(
    {
      # deb822 files: the first URIs line of a stanza that serves the suite.
      for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$SUITE" '
          /^[[:space:]]*$/ { if (u != "" && s ~ ("(^| )" suite "( |$)")) { print u; exit } u = ""; s = "" ; next}
          /^URIs:/ { u = $2 }
          /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); s = $0 }
          END { if (u != "" && s ~ ("(^| )" suite "( |$)")) print u }
        ' "$f"
      done
      # one-line format
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) print $i }' "$f"
      done
    } | grep -v -- '-security' | head -n1
  )
  [[ -n $uri ]] || die "no Debian mirror for $SUITE found in /etc/apt/sources.list(.d)"
  printf '%s\n' "$uri"
}

host_field() { # host_field NAME INDEX(1=addr,2=vols)
  local entry f
  for entry in "${LAB_HOSTS[@]}"; do
    read -r -a f <<<"$entry"
    if [[ ${f[0]} == "$1" ]]; then
      printf '%s\n' "${f[$2]}"
      return 0
    fi
  done
  return 1
}

lab_host_names() {
  local entry
  for entry in "${LAB_HOSTS[@]}"; do printf '%s\n' "${entry%% *}"; done
}
