# shellcheck shell=bash
# Log files of the lab's steps. Sourced by lab/lib/common.sh and lab/vm/vm.sh.
#
# A step that fails must keep its evidence: running `lab.sh up` again used to overwrite the
# log that said why the first attempt failed. So every step writes a fresh log and the
# previous four attempts stay beside it as NAME.log.1 (newest) … NAME.log.4.

LOG_KEEP=5       # attempts kept per log: the current one and four before it
LOG_TAIL_LINES=20 # lines of a failing step's log quoted in its error

# rotate_log FILE: move FILE to FILE.1 (and FILE.1 to FILE.2 …), dropping the oldest; prints FILE.
rotate_log() {
  local file=$1 i
  mkdir -p "$(dirname "$file")"
  for ((i = LOG_KEEP - 1; i > 1; i--)); do
    [[ -e $file.$((i - 1)) ]] && mv -f "$file.$((i - 1))" "$file.$i"
  done
  [[ -e $file ]] && mv -f "$file" "$file.1"
  : >"$file"
  printf '%s\n' "$file"
}

# close_inherited_fds: close every descriptor above 2 that this script inherited. The lab
# starts long-lived daemons (nspawn, the repo's HTTP server, qemu); any descriptor they
# inherit lives as long as the lab. A caller's lock (`flock LOCK lab.sh up`) then never
# comes free: seen on this machine, where every later `flock LOCK …` waited forever.
close_inherited_fds() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    # 255: bash's own handle on the script it is reading (close-on-exec already).
    ((fd > 2 && fd != 255)) || continue
    eval "exec $fd>&-" 2>/dev/null || true
  done
}

# log_tail FILE: the last lines of a failing step's log, indented, for its error message.
log_tail() {
  local file=$1
  if [[ ! -s $file ]]; then
    printf '  (%s is empty)\n' "$file"
    return 0
  fi
  printf '  last %d lines of %s:\n' "$LOG_TAIL_LINES" "$file"
  tail -n "$LOG_TAIL_LINES" "$file" | sed 's/^/  | /'
}
