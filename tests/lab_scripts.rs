//! The lab scripts' own helpers, without the lab: the one package installer
//! (`lab/lib/apt.sh`) and the step logs (`lab/lib/logs.sh`).
//!
//! `apt_install` is driven with `apt-get` and `dpkg-query` stand-ins first on PATH: what is
//! under test is the helper's own logic (only what is missing, never two installs at once,
//! the lock's timeout passed to apt, a refresh only when installing fails), not apt.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bash(script: &str, path_prefix: &Path, envs: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}",
        path_prefix.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo())
        .env("PATH", path)
        .envs(envs.iter().copied())
        .output()
        .expect("run bash")
}

/// Stand-ins: `dpkg-query` reports the packages listed in $DIR/installed as installed;
/// `apt-get` logs "start ARGS" and "end" lines with times to $DIR/calls, sleeps
/// $APT_SLEEP, fails an install while $DIR/fail-install exists (removing it), and marks
/// installed packages.
fn stand_ins(dir: &Path) {
    let dpkg_query = r#"#!/bin/bash
pkg=${@: -1}
grep -qx -- "$pkg" "$STUB_DIR/installed" 2>/dev/null && printf installed || printf not-installed
"#;
    let apt_get = r#"#!/bin/bash
echo "start $(date +%s.%N) $*" >>"$STUB_DIR/calls"
sleep "${APT_SLEEP:-0}"
if [[ " $* " == *" install "* ]]; then
  if [[ -e $STUB_DIR/fail-install ]]; then rm -f "$STUB_DIR/fail-install"; echo "end $(date +%s.%N)" >>"$STUB_DIR/calls"; exit 100; fi
  for a in "$@"; do [[ $a == -* || $a == install ]] || echo "${a%%=*}" >>"$STUB_DIR/installed"; done
fi
echo "end $(date +%s.%N)" >>"$STUB_DIR/calls"
"#;
    for (name, body) in [("dpkg-query", dpkg_query), ("apt-get", apt_get)] {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn calls(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn env_for(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("STUB_DIR", dir.display().to_string()),
        (
            "CUTOVER_APT_LOCK_FILE",
            dir.join("apt.lock").display().to_string(),
        ),
    ]
}

fn run_apt(dir: &Path, script: &str, extra: &[(&str, &str)]) -> Output {
    let envs = env_for(dir);
    let mut all: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    bash(&format!("source lab/lib/apt.sh; {script}"), dir, &all)
}

#[test]
fn installs_only_what_is_missing_and_passes_the_dpkg_lock_timeout() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path());
    fs::write(dir.path().join("installed"), "curl\n").unwrap();
    let out = run_apt(
        dir.path(),
        "apt_install --no-install-recommends curl qemu-utils=1:7.2",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = calls(dir.path());
    assert_eq!(c.len(), 2, "one apt-get install, nothing else: {c:?}");
    assert!(c[0].contains("-o DPkg::Lock::Timeout=900"), "{}", c[0]);
    assert!(
        c[0].ends_with("install --no-install-recommends qemu-utils=1:7.2"),
        "only the missing one, pin kept: {}",
        c[0]
    );
    // Everything installed now: no apt-get at all, not even for the lock.
    let out = run_apt(dir.path(), "apt_install curl qemu-utils", &[]);
    assert!(out.status.success());
    assert_eq!(
        calls(dir.path()).len(),
        2,
        "a machine that has it all never runs apt-get"
    );
}

#[test]
fn refreshes_the_lists_only_when_installing_fails() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path());
    fs::write(dir.path().join("fail-install"), "").unwrap();
    let out = run_apt(dir.path(), "apt_install foo", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verbs: Vec<&str> = calls(dir.path())
        .iter()
        .filter(|l| l.starts_with("start"))
        .map(|l| {
            if l.contains(" update") {
                "update"
            } else {
                "install"
            }
        })
        .collect();
    assert_eq!(verbs, ["install", "update", "install"]);
}

#[test]
fn two_installs_at_once_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path());
    // Two installers of different packages started together, each apt-get taking 0.5 s.
    let out = run_apt(
        dir.path(),
        "apt_install alpha & a=$!; apt_install beta & b=$!; wait $a && wait $b",
        &[("APT_SLEEP", "0.5")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = calls(dir.path());
    assert_eq!(c.len(), 4, "{c:?}");
    // start/end must alternate: start end start end, never start start.
    let kinds: Vec<&str> = c.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end"],
        "installs overlapped: {c:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting for another install"),
        "the second says why it waits: {stderr}"
    );
}

#[test]
fn the_second_installer_skips_what_the_first_installed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path());
    let out = run_apt(
        dir.path(),
        "apt_install alpha & sleep 0.2; apt_install alpha; wait",
        &[("APT_SLEEP", "0.6")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        calls(dir.path()).len(),
        2,
        "one install of alpha, not two: {:?}",
        calls(dir.path())
    );
}

#[test]
fn step_logs_keep_five_attempts_and_errors_quote_the_last_twenty_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let script = format!(
        "source lab/lib/logs.sh; for i in 1 2 3 4 5 6 7; do f=$(rotate_log {0}); echo attempt $i >\"$f\"; done; seq 1 50 >{0}; log_tail {0}",
        log.display()
    );
    let out = bash(&script, dir.path(), &[]);
    assert!(out.status.success());
    let read = |n: &str| fs::read_to_string(dir.path().join(n)).unwrap();
    assert_eq!(read("step.log.1"), "attempt 6\n");
    assert_eq!(read("step.log.4"), "attempt 3\n");
    assert!(
        !dir.path().join("step.log.5").exists(),
        "only five attempts are kept"
    );
    let tail = String::from_utf8_lossy(&out.stdout);
    let quoted: Vec<&str> = tail.lines().filter(|l| l.starts_with("  | ")).collect();
    assert_eq!(quoted.len(), 20, "{tail}");
    assert_eq!(quoted[0], "  | 31");
    assert_eq!(quoted[19], "  | 50");
}

#[test]
fn a_failing_lab_step_quotes_its_log_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "export CUTOVER_LAB_STATE={0}; source lab/lib/common.sh; f=$(step_log demo); printf 'E: Could not get lock /var/lib/dpkg/lock-frontend\\n' >\"$f\"; die_with_log 'demo step failed' \"$f\"",
        dir.path().display()
    );
    let out = bash(&script, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[lab] ERROR: demo step failed (log: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("  | E: Could not get lock /var/lib/dpkg/lock-frontend"),
        "{stderr}"
    );
}

#[test]
fn lab_scripts_pass_no_inherited_descriptor_to_what_they_start() {
    // `flock LOCK lab.sh up` once left the lock on fd 3 in every container and the repo's
    // HTTP server, so the lock never came free. A child started after
    // close_inherited_fds must not see the caller's descriptors.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "exec 7>{0}/held 9>{0}/also; source lab/lib/logs.sh; close_inherited_fds; \
         sh -c 'for fd in 7 9; do test -e /proc/self/fd/$fd && echo \"leaked $fd\"; done; echo checked'",
        dir.path().display()
    );
    let out = bash(&script, dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "checked\n");
}
