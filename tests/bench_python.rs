//! bench/run.sh picks the Python for its venv with `pick_python` (bench/python.sh): the newest
//! interpreter that actually runs. Issue 21, item 7: on a machine with a pyenv shim
//! `python3.13` whose version is not installed, the shim was taken (it exists on PATH) and the
//! venv failed with `pyenv: python3.13: command not found`. Needs no lab.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// `pick_python` with PATH = `bin` alone (what it holds is all there is, whatever this machine
/// has installed) and HOME empty (no pyenv versions).
fn pick(bin: &Path, home: &Path, extra: &[(&str, &str)]) -> Output {
    let script = format!(
        ". {}/bench/python.sh; pick_python",
        env!("CARGO_MANIFEST_DIR")
    );
    let timeout = Command::new("sh")
        .args(["-c", "command -v timeout"])
        .output()
        .unwrap();
    let timeout = String::from_utf8(timeout.stdout).unwrap();
    let _ = std::os::unix::fs::symlink(timeout.trim(), bin.join("timeout"));
    Command::new("/bin/bash")
        .args(["-c", &script])
        .env("PATH", bin)
        .env("HOME", home)
        .env_remove("PYENV_ROOT")
        .env_remove("BENCH_PYTHON")
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

/// A pyenv shim for a version that is not installed: it exists, and fails when run.
fn broken_shim(bin: &Path, name: &str) {
    let p = bin.join(name);
    std::fs::write(
        &p,
        format!("#!/bin/sh\necho \"pyenv: {name}: command not found\" >&2\nexit 127\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn system_python3() -> String {
    let o = Command::new("sh")
        .args(["-c", "PATH=/usr/bin:/bin command -v python3"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn a_shim_that_does_not_run_is_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, home) = (dir.path().join("bin"), dir.path().join("home"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    broken_shim(&bin, "python3.13");
    // A working newer-named interpreter after it: python3.12 → the system's python3.
    let python3 = system_python3();
    assert!(!python3.is_empty(), "no python3 on this machine");
    std::os::unix::fs::symlink(&python3, bin.join("python3.12")).unwrap();

    let o = pick(&bin, &home, &[]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.trim(), bin.join("python3.12").display().to_string());
    assert!(
        err.contains(&format!(
            "skipped {}: it does not run (pyenv: python3.13: command not found)",
            bin.join("python3.13").display()
        )),
        "{err}"
    );
}

#[test]
fn without_a_newer_one_that_runs_python3_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, home) = (dir.path().join("bin"), dir.path().join("home"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    for v in ["python3.14", "python3.13", "python3.12"] {
        broken_shim(&bin, v);
    }
    std::os::unix::fs::symlink(system_python3(), bin.join("python3")).unwrap();
    let o = pick(&bin, &home, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        bin.join("python3").display().to_string()
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .matches("skipped")
            .count(),
        3
    );
}

#[test]
fn nothing_that_runs_is_an_error_naming_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, home) = (dir.path().join("bin"), dir.path().join("home"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    broken_shim(&bin, "python3.13");
    broken_shim(&bin, "python3");
    // BENCH_PYTHON is tried first, and is skipped too when it does not run.
    let o = pick(&bin, &home, &[("BENCH_PYTHON", "/nonexistent/python")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert!(err.contains("skipped /nonexistent/python"), "{err}");
    assert!(
        err.contains("no Python 3 that runs") && err.contains("set BENCH_PYTHON"),
        "{err}"
    );
}
