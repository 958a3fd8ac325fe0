# Sourced by bench/run.sh (and its test): pick the Python that makes the benchmark's venv.
#
# ansible-core's newest releases need python >= 3.12 on the controller, so the newest python3.x
# there is comes first: python3.14, 3.13, 3.12 on PATH, then pyenv's installed versions, then
# python3. A candidate counts only if it RUNS and has venv: a pyenv shim whose version is not
# installed exists on PATH but answers "pyenv: python3.13: command not found". Each one skipped
# is reported with why; BENCH_PYTHON forces a choice (still tried first).
#
# pick_python prints the interpreter taken on stdout, what was skipped on stderr; it fails when
# nothing runs.

# Does this interpreter run, with venv? On failure, prints why (its first line of output).
python_works() {
  local out
  out=$(timeout 20 "$1" -c 'import sys, venv; print("%d.%d.%d" % sys.version_info[:3])' 2>&1) && return 0
  printf '%s' "${out%%$'\n'*}"
  return 1
}

pick_python() {
  local c p why
  local -a candidates=()
  [[ -n ${BENCH_PYTHON:-} ]] && candidates+=("$BENCH_PYTHON")
  for c in python3.14 python3.13 python3.12; do
    p=$(command -v "$c" 2>/dev/null) && candidates+=("$p")
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${c#python}"*/bin/"$c"; do
      [[ -x $p ]] && candidates+=("$p")
    done
  done
  p=$(command -v python3 2>/dev/null) && candidates+=("$p")
  for p in "${candidates[@]}"; do
    if why=$(python_works "$p"); then
      echo "$p"
      return 0
    fi
    printf '[bench] skipped %s: it does not run (%s)\n' "$p" "${why:-no output}" >&2
  done
  printf '[bench] error: no Python 3 that runs (tried: %s); set BENCH_PYTHON\n' "${candidates[*]:-none}" >&2
  return 1
}
