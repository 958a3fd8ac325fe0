//! cutover on the controller itself (`address: local`), without the lab: every test gives it
//! a directory of its own for its state and control files.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::project::text;

/// The tests of one binary that run cutover against the controller share its host lock
/// (`address: local`): they take this first, one at a time, so no run is refused (or
/// retried) because of another test's.
static LOCAL_HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    LOCAL_HOST.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cutover ARGS` run in `dir`, with `dir/state` and `dir/runtime` as its state and control
/// directories.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.args(args)
        .env("CUTOVER_STATE_DIR", dir.join("state"))
        .env("XDG_RUNTIME_DIR", dir.join("runtime"))
        .current_dir(dir);
    c
}

/// [`command`]'s output. Another local run on this machine (the host lock
/// `/var/tmp/cutover.lock` is the controller's own) is waited for, for up to a minute, and so
/// is a killed one until its resume takes the lock over.
pub fn cutover(dir: &Path, args: &[&str]) -> Output {
    for _ in 0..60 {
        let o = command(dir, args).output().unwrap();
        let busy = text(&o).contains("locked by run") || text(&o).contains("stale lock left by");
        if o.status.code() != Some(5) && !busy {
            return o;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the controller stayed locked by another local run for a minute");
}

/// `cutover apply -i inv.yml pb.yml` in `dir` with the fault `CUTOVER_TEST_FAULT=fault` (which
/// SIGKILLs the controller at that point): its output. A run refused by the controller's host
/// lock (another test binary's run, exit 5) is thrown away and tried again, for up to a minute.
pub fn killed_by_fault(dir: &Path, fault: &str) -> Output {
    for _ in 0..60 {
        let o = command(
            dir,
            &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
        )
        .env("CUTOVER_TEST_FAULT", fault)
        .output()
        .unwrap();
        if o.status.code() != Some(5) {
            return o;
        }
        let _ = std::fs::remove_dir_all(dir.join("state/runs"));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the controller stayed locked by another local run for a minute");
}

/// The id of the newest run in `dir/state` (run ids sort by their start).
pub fn latest_run_id(dir: &Path) -> String {
    std::fs::read_dir(dir.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .expect("no run in state/runs")
}

/// The newest run's journal, as written.
pub fn latest_journal_text(dir: &Path) -> String {
    let path = dir
        .join("state/runs")
        .join(latest_run_id(dir))
        .join("journal.jsonl");
    std::fs::read_to_string(path).unwrap()
}

/// The newest run's journal, one event a line.
pub fn latest_journal(dir: &Path) -> Vec<serde_json::Value> {
    latest_journal_text(dir)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The names in a directory, sorted (what a test's steps left there).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
