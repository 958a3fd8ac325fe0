#!/usr/bin/env bash
# Benchmark cutover against ansible-core and pyinfra on the lab's benchmark fleet, and write
# BENCHMARKS.md. Needs root and the lab (lab/lab.sh up). See bench/README.md.
#
#   bench/run.sh                 # full run: fleets of 6, 25, 50 hosts (~25 min)
#   bench/run.sh --quick         # fleets of 6 and 25, fewer runs (~5 min)
#   bench/run.sh --sizes 6,100 --runs 3 --workloads a,c --ansible-cap 1000
#   bench/run.sh --report-only   # rewrite BENCHMARKS.md from the last results
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CUTOVER_LAB_CACHE:-/var/cache/cutover-lab}
export BENCH_VENV=${BENCH_VENV:-$CACHE/bench-venv}
export BENCH_WORK=${BENCH_WORK:-$CACHE/bench-work}

say() { printf '[bench] %s\n' "$*"; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (the lab's network namespaces)"
mkdir -p "$BENCH_WORK"

report_only=false
for a in "$@"; do [[ $a == --report-only ]] && report_only=true; done

# `time` for peak memory (/usr/bin/time -v), through the project's one install helper.
# shellcheck source=../lab/lib/apt.sh
source "$REPO/lab/lib/apt.sh"
apt_install time >/dev/null

# The venv: latest ansible-core and pyinfra from PyPI, made once and reused, with the newest
# Python that actually runs (bench/python.sh).
. "$REPO/bench/python.sh"
if ! $report_only; then
  # A venv whose interpreter no longer runs (its Python was removed) is made again.
  if [[ -e $BENCH_VENV/bin/python ]] && ! why=$(python_works "$BENCH_VENV/bin/python"); then
    say "the venv's python does not run ($why): making the venv again"
    rm -rf "$BENCH_VENV"
  fi
  if [[ ! -x $BENCH_VENV/bin/ansible-playbook || ! -x $BENCH_VENV/bin/pyinfra || -n ${BENCH_UPGRADE:-} ]]; then
    py=$(pick_python) || die "no Python to make the venv with"
    say "python: $py ($("$py" -V 2>&1)), the first that runs"
    say "venv $BENCH_VENV: pip install --upgrade ansible-core pyinfra"
    [[ -x $BENCH_VENV/bin/python ]] || "$py" -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q --upgrade pip
    "$BENCH_VENV/bin/pip" install -q --upgrade ansible-core pyinfra
  else
    say "python: $BENCH_VENV/bin/python ($("$BENCH_VENV/bin/python" -V 2>&1)), the venv's"
  fi

  if [[ -n ${BENCH_CUTOVER_BIN:-} ]]; then
    say "using $BENCH_CUTOVER_BIN (BENCH_CUTOVER_BIN), not building"
    src=$BENCH_CUTOVER_BIN
  else
    say "cargo build --release"
    (cd "$REPO" && cargo build --release -q)
    src=$REPO/target/release/cutover
  fi
  # A copy, so a rebuild in the tree during the run does not change the binary under test.
  if [[ $src != "$BENCH_WORK/cutover" ]]; then
    cp "$src" "$BENCH_WORK/cutover.new" && mv "$BENCH_WORK/cutover.new" "$BENCH_WORK/cutover"
  fi

  ip netns list | grep -q '^cutover-ctl' || die "the lab is not up: run lab/lab.sh up first"
fi

exec "$BENCH_VENV/bin/python" "$REPO/bench/bench.py" --cutover-bin "$BENCH_WORK/cutover" \
  --command-line "bench/run.sh${*:+ $*}" "$@"
