//! `cutover commit RUN` accepts only a run that finished ok (issue 17, item 6), tested without
//! the lab: `address: local`. A run overwrites a file (its old content kept as a backup for
//! undo), then fails, or succeeds and is rolled back, or is left unfinished. A commit of such a
//! run is refused (exit 1) before anything is touched, naming the run, its status and what to
//! do instead; the backup is still there. `--force` lists what it deletes, deletes it and
//! journals `forced: true`; a run that never finished is refused even with `--force`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::local::cutover;
use common::project::text;
use serde_json::Value as J;

/// Apply a playbook that rewrites `d/data/version` (v1 → v2) and then, if `fail`, fails.
/// Returns the run id and the apply's output.
fn upgrade(d: &Path, fail: bool) -> (String, Output) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/version"), "v1\n").unwrap();
    let failing = if fail {
        "    - name: Check the new release\n      fail: { msg: the new release does not start }\n"
    } else {
        ""
    };
    std::fs::write(
        d.join("pb.yml"),
        format!(
            "- hosts: n1\n  steps:\n    - name: New release\n      copy: {{ content: \"v2\\n\", dest: \"{}\" }}\n{failing}",
            d.join("data/version").display()
        ),
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let ids: Vec<String> = std::fs::read_dir(d.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{}", text(&o));
    (ids[0].clone(), o)
}

/// The backups of `data/version` the run kept for undo.
fn backups(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d.join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("version.cutover-"))
        .collect()
}

fn journal(d: &Path, id: &str) -> Vec<J> {
    std::fs::read_to_string(d.join("state/runs").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn events<'a>(journal: &'a [J], kind: &str) -> Vec<&'a J> {
    journal.iter().filter(|e| e["event"] == kind).collect()
}

fn commit(d: &Path, id: &str, force: bool) -> Output {
    let mut args = vec!["commit", "-i", "inv.yml", "--output", "plain", id];
    if force {
        args.insert(1, "--force");
    }
    cutover(d, &args)
}

#[test]
fn a_failed_run_is_refused_and_force_says_what_it_deletes() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, o) = upgrade(d, true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let kept = backups(d);
    assert_eq!(kept.len(), 1, "{kept:?}");

    let o = commit(d, &id, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "error: commit of run {id} refused: the run is failed at 20"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "`cutover rollback {id}` undoes its changes instead"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("`cutover commit --force {id}`")),
        "{out}"
    );
    // Nothing touched: the backup is there, no commit was journaled, no host was locked.
    assert_eq!(backups(d), kept);
    let j = journal(d, &id);
    assert!(events(&j, "commit_started").is_empty(), "{j:?}");
    // The refusal itself is on record: who tried, and the run's status then.
    let refused = events(&j, "commit_refused");
    assert_eq!(refused.len(), 1, "{j:?}");
    assert!(
        refused[0]["run_status"]
            .as_str()
            .unwrap()
            .starts_with("failed"),
        "{j:?}"
    );
    assert_eq!(refused[0]["forced"], false);
    assert_eq!(
        std::fs::read_to_string(d.join("data/version")).unwrap(),
        "v2\n"
    );

    let o = commit(d, &id, true);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let warning = out
        .find(&format!("WARNING: run {id} is failed at 20"))
        .unwrap_or_else(|| panic!("{out}"));
    let listed = out
        .find(&format!("\n  n1: backup {}", kept[0].display()))
        .unwrap_or_else(|| panic!("{out}"));
    let deleted = out
        .find("removed backup")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        warning < listed && listed < deleted,
        "said first, then done:\n{out}"
    );
    assert!(backups(d).is_empty(), "{:?}", backups(d));
    let j = journal(d, &id);
    let started = events(&j, "commit_started");
    assert_eq!(started.len(), 1, "{j:?}");
    assert_eq!(started[0]["forced"], true);
    assert_eq!(
        started[0]["deletes"],
        serde_json::json!([format!("n1: backup {}", kept[0].display())])
    );
    assert_eq!(events(&j, "commit_finished")[0]["ok"], true);
    let runs = text(&cutover(d, &["runs"]));
    assert!(runs.contains("  committed (forced) at 20"), "{runs}");
}

#[test]
fn a_rolled_back_run_is_refused_as_having_nothing_to_accept() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, o) = upgrade(d, false);
    assert!(o.status.success(), "{}", text(&o));
    let o = cutover(d, &["rollback", "-i", "inv.yml", "--output", "plain", &id]);
    assert!(o.status.success(), "{}", text(&o));

    let o = commit(d, &id, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "commit of run {id} refused: the run is rolled back at 20"
        )),
        "{out}"
    );
    assert!(out.contains("its changes were undone already"), "{out}");
    assert!(events(&journal(d, &id), "commit_started").is_empty());
    // Forced, it has nothing left to delete, and says so.
    let o = commit(d, &id, true);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "deletes, with no way back:\n  nothing (no snapshot or backup of the run is left)"
        ),
        "{out}"
    );
}

#[test]
fn an_ok_run_is_committed_without_a_word_of_force() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, o) = upgrade(d, false);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(backups(d).len(), 1);
    let o = commit(d, &id, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    assert!(out.contains("removed backup"), "{out}");
    assert!(backups(d).is_empty());
    let j = journal(d, &id);
    assert_eq!(events(&j, "commit_started")[0].get("forced"), None);

    // Committed already: said, nothing touched, nothing journaled again.
    let o = commit(d, &id, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("run {id} was committed already at 20")),
        "{out}"
    );
    assert!(out.contains("nothing to do"), "{out}");
    let again = journal(d, &id);
    assert_eq!(again.len(), j.len(), "a second commit journals nothing");
}

#[test]
fn an_unfinished_run_is_refused_even_with_force() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, o) = upgrade(d, false);
    assert!(o.status.success(), "{}", text(&o));
    // The journal of a controller killed before the end: no run_finished.
    let path = d.join("state/runs").join(&id).join("journal.jsonl");
    let cut: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"run_finished\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, cut).unwrap();
    for force in [false, true] {
        let o = commit(d, &id, force);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(
            out.contains(&format!(
                "commit of run {id} refused: the run is unfinished (killed or still running)"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("`cutover resume {id}` finishes it")),
            "{out}"
        );
        assert!(!out.contains("--force"), "{out}");
        assert_eq!(backups(d).len(), 1);
    }
    // Dead (no process holds the controller lock): both refusals are on record.
    let j = journal(d, &id);
    let forced: Vec<&J> = events(&j, "commit_refused")
        .iter()
        .map(|e| &e["forced"])
        .collect();
    assert_eq!(forced, [false, true], "{j:?}");
}

/// A snapshot set on btrfs (a loop device): a failed run's set stays after the refusal; the
/// forced commit names it, says btrfs has no fill level instead of inventing one, removes it.
#[test]
fn a_forced_commit_names_the_snapshot_set_and_says_btrfs_has_no_fill_level() {
    let _g = common::local::one_at_a_time();
    let Some(pool) = common::btrfs::Pool::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  me: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    let p = pool.pool.display();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- hosts: me
  steps:
    - name: Snapshot the home
      snapshot: {{ backend: btrfs, volumes: [{{ name: home }}], name: pre, pool: "{p}", state: present }}
    - name: Check the new release
      fail: {{ msg: the new release does not start }}
"#
        ),
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let id = std::fs::read_dir(d.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    let snap = pool.pool.join(".snapshots/pre-home");
    assert!(snap.exists(), "{}", text(&o));

    let o = commit(d, &id, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(snap.exists(), "a refused commit deleted the snapshot");

    let o = commit(d, &id, true);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("\n  me: snapshot set pre (btrfs: home)"),
        "{out}"
    );
    assert!(
        out.contains("me: snapshot set pre (btrfs): no fill level — btrfs snapshots share the pool's free space"),
        "{out}"
    );
    assert!(!out.contains("% full"), "{out}");
    assert!(!snap.exists(), "the forced commit left the snapshot\n{out}");
    let j = journal(d, &id);
    let result = events(&j, "commit_result");
    assert_eq!(result[0]["fill"]["backend"], "btrfs", "{j:?}");
    assert!(result[0]["fill"]["fill"].is_null(), "{j:?}");
}
