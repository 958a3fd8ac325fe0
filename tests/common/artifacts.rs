//! Where the lab tests keep what cutover left: for one run of the suite, every invocation's
//! stdout and stderr, and every project's journals, saved plans, JSON and JUnit files, under
//! `target/test-artifacts/<test binary>/<test case>/<n>/` (or `$CUTOVER_TEST_ARTIFACTS`).
//! Nothing there is deleted by the tests; `.ci/run` clears the directory before the suite, and
//! the `secret_sweep` target greps all of it for the lab's secrets afterwards.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The root of all test artifacts.
pub fn root() -> PathBuf {
    if let Some(d) = std::env::var_os("CUTOVER_TEST_ARTIFACTS") {
        return PathBuf::from(d);
    }
    // CARGO_BIN_EXE_cutover is <target dir>/<profile>/cutover.
    let bin = Path::new(env!("CARGO_BIN_EXE_cutover"));
    bin.parent()
        .and_then(Path::parent)
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| super::repo_root().join("target/test-artifacts"))
}

/// A name safe as one path component.
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let c = c.trim_matches('.').to_string();
    if c.is_empty() {
        "_".into()
    } else {
        c
    }
}

/// The test case running on this thread (libtest names each test's thread after it).
pub fn case_name() -> String {
    component(
        &std::thread::current()
            .name()
            .unwrap_or("main")
            .replace("::", "."),
    )
}

/// A new, empty directory for this test case's artifacts (one per project: a test may have
/// several, and repeated runs outside CI do not overwrite each other).
pub fn case_dir() -> PathBuf {
    let base = root()
        .join(component(env!("CARGO_CRATE_NAME")))
        .join(case_name());
    std::fs::create_dir_all(&base).expect("create the test artifacts directory");
    for n in 1.. {
        let d = base.join(n.to_string());
        match std::fs::create_dir(&d) {
            Ok(()) => return d,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", d.display()),
        }
    }
    unreachable!()
}

/// Invocations recorded in this process, for unique names.
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh name for one invocation's files in `dir`: `<dir>/cutover/NNN-<what>`.
pub fn invocation(dir: &Path, what: &str) -> PathBuf {
    let d = dir.join("cutover");
    std::fs::create_dir_all(&d).expect("create the invocations directory");
    loop {
        let n = SEQ.fetch_add(1, Ordering::SeqCst) + 1;
        let p = d.join(format!("{n:04}-{}", component(what)));
        if !PathBuf::from(format!("{}.cmd", p.display())).exists() {
            return p;
        }
    }
}

/// Keep one invocation's command line, exit status, stdout and stderr as files.
pub fn record(dir: &Path, args: &[String], out: &Output) -> PathBuf {
    let what = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map_or("cutover", String::as_str);
    let base = invocation(dir, what);
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    std::fs::write(
        with("cmd"),
        format!(
            "cutover {}\nexit: {:?}\n",
            args.join(" "),
            out.status.code()
        ),
    )
    .expect("write the command line");
    std::fs::write(with("stdout"), &out.stdout).expect("write stdout");
    std::fs::write(with("stderr"), &out.stderr).expect("write stderr");
    base
}

/// Files for a spawned invocation's stdout and stderr (when the test does not read them).
pub fn output_files(dir: &Path, args: &[String]) -> (std::fs::File, std::fs::File, PathBuf) {
    let what = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map_or("cutover", String::as_str);
    let base = invocation(dir, what);
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    std::fs::write(with("cmd"), format!("cutover {}\n", args.join(" ")))
        .expect("write the command line");
    (
        std::fs::File::create(with("stdout")).expect("create stdout file"),
        std::fs::File::create(with("stderr")).expect("create stderr file"),
        with("stderr"),
    )
}
