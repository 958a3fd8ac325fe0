//! A rollback must not silently discard what users wrote after the maintenance window closed
//! (issue 21, item 6), tested without the lab: `address: local` on a btrfs filesystem of a
//! loop device (needs root, mkfs.btrfs). A run snapshots a volume (`home`), changes it, and
//! marks where its files stand when the window closes (`write_mark`). A file written after
//! the mark refuses the rollback (and its `--plan`); `--discard-writes-since-window` proceeds
//! and keeps the current state first, where the file can still be found. Writes of the
//! application's own (an excluded subtree) do not count. A snapshot step replacing an existing
//! set (`replace_existing`) is irreversible in the plan: that rollback point is gone.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::btrfs::Pool;
use common::local::cutover;
use common::project::text;

/// Apply the "upgrade": snapshot `home`, change it, mark the window's close. Returns the run id.
fn upgrade(dir: &Path, pool: &Pool) -> String {
    std::fs::write(dir.join("inv.yml"), "hosts:\n  me: { address: local }\n").unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let p = pool.pool.display();
    std::fs::write(
        dir.join("pb.yml"),
        format!(
            r#"- hosts: me
  on_failure: unwind
  steps:
    - name: Snapshot the home
      snapshot: {{ backend: btrfs, volumes: [{{ name: home }}], name: pre, pool: "{p}", state: present }}
    - name: The upgrade's own write
      copy: {{ content: "v2\n", dest: "{p}/home/version" }}
    - name: Window closes
      write_mark: {{ point: window_closed, paths: ["{p}/home"], exclude: [logs] }}
"#
        ),
    )
    .unwrap();
    let o = cutover(
        dir,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let ids: Vec<String> = std::fs::read_dir(dir.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[test]
fn a_file_written_after_the_window_refuses_the_rollback_then_is_kept() {
    let _g = common::local::one_at_a_time();
    let Some(pool) = Pool::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = upgrade(d, &pool);
    // A second later, a user attaches a file.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::create_dir_all(pool.home().join("attachments")).unwrap();
    std::fs::write(pool.home().join("attachments/scan.pdf"), "scan\n").unwrap();

    let o = cutover(d, &["rollback", "-i", "inv.yml", "--plan", &id]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(1), "{plan}");
    assert!(plan.contains("would undo 2 change(s)"), "{plan}");
    assert!(plan.contains("me: since the window closed at 20"), "{plan}");
    let files = format!(
        "{}: 1 file written (e.g. attachments/scan.pdf)",
        pool.home().display()
    );
    assert!(plan.contains(&files), "{plan}");
    assert!(plan.contains("would be REFUSED"), "{plan}");

    let o = cutover(d, &["rollback", "-i", "inv.yml", &id, "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("rollback of run {id} refused")),
        "{out}"
    );
    assert!(
        out.contains(&files) && out.contains("Nothing was changed"),
        "{out}"
    );
    // Nothing changed: the upgrade's write, the user's file and the snapshot are there.
    assert!(exists(&pool.home().join("version")));
    assert!(exists(&pool.home().join("attachments/scan.pdf")));
    assert!(exists(&pool.pool.join(".snapshots/pre-home")));
    let runs = text(&cutover(d, &["runs"]));
    assert!(runs.contains("ok, rollback refused at 20"), "{runs}");

    let o = cutover(
        d,
        &[
            "rollback",
            "-i",
            "inv.yml",
            &id,
            "--discard-writes-since-window",
            "--output",
            "plain",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let kept_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("me: ") && l.contains("/.snapshots/kept-pre-"))
        .unwrap_or_else(|| panic!("no kept location printed:\n{out}"));
    let kept = PathBuf::from(kept_line.trim_start().trim_start_matches("me: ").trim());
    // Rolled back: the home is as at the snapshot ...
    assert!(!exists(&pool.home().join("version")), "{out}");
    assert!(!exists(&pool.home().join("attachments")), "{out}");
    assert!(!exists(&pool.pool.join(".snapshots/pre-home")));
    // ... and what was discarded is in the kept copy.
    assert_eq!(
        std::fs::read_to_string(kept.join("attachments/scan.pdf")).unwrap(),
        "scan\n"
    );
    // (The upgrade's own write was undone by its own way back before the merge, newest first.)
    assert!(!exists(&kept.join("version")));
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    assert!(journal.contains("\"event\":\"rollback_refused\""));
    assert!(journal.contains("\"event\":\"rollback_discarding\""));
    assert!(journal.contains(&format!(
        "\"keep_current_as\":\"{}\"",
        kept.file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches("-home")
    )));
    let runs = text(&cutover(d, &["runs"]));
    assert!(runs.contains("  rolled back at 20"), "{runs}");
    // `show` tells it in order: the refusal, then the discard with where the data was kept.
    let show = text(&cutover(d, &["show", &id]));
    let refused = show.find("ROLLBACK REFUSED: users wrote after the maintenance window closed");
    let discards = show.find("ROLLBACK DISCARDS writes made after the window");
    let kept_at = show.find(&format!(
        "me: current data kept first as {}",
        kept.display()
    ));
    let rolled = show.find("\nstate: rolled back at 20");
    assert!(
        refused.is_some() && refused < discards && discards < kept_at && kept_at < rolled,
        "{show}"
    );
}

#[test]
fn the_applications_own_writes_and_no_writes_do_not_refuse() {
    let _g = common::local::one_at_a_time();
    let Some(pool) = Pool::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = upgrade(d, &pool);
    std::thread::sleep(Duration::from_millis(1100));
    // The app's own log, under the excluded subtree.
    std::fs::create_dir_all(pool.home().join("logs")).unwrap();
    std::fs::write(pool.home().join("logs/wiki.log"), "started\n").unwrap();
    let o = cutover(d, &["rollback", "-i", "inv.yml", "--plan", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nothing was written since the maintenance window closed"));
    let o = cutover(d, &["rollback", "-i", "inv.yml", &id, "--output", "plain"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("kept"), "{out}");
    assert!(!exists(&pool.home().join("version")));
    let left = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".cutover-runs")
                    .collect()
            })
            .unwrap_or_default()
    };
    let snaps = pool.pool.join(".snapshots");
    assert_eq!(
        left(snaps.clone()),
        Vec::<String>::new(),
        "no kept set, no snapshot left"
    );
    // The record of the run that made the snapshot goes with it.
    assert_eq!(left(snaps.join(".cutover-runs")), Vec::<String>::new());
}

/// A snapshot step that replaces an existing set (`replace_existing`) destroys that set's
/// rollback point: the plan marks it irreversible, on the host where the set exists only,
/// and says whose set goes.
#[test]
fn replacing_a_snapshot_set_is_irreversible_in_the_plan() {
    let _g = common::local::one_at_a_time();
    let Some(pool) = Pool::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = upgrade(d, &pool);
    let p = pool.pool.display();
    let playbook = |replace: bool| {
        format!(
            "- hosts: me\n  steps:\n    - name: Snapshot again\n      snapshot: {{ backend: btrfs, volumes: [{{ name: home }}], name: pre, pool: \"{p}\", state: present, replace_existing: {replace} }}\n"
        )
    };
    std::fs::write(d.join("again.yml"), playbook(true)).unwrap();
    let o = cutover(
        d,
        &["plan", "-i", "inv.yml", "again.yml", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = &plan["entries"][0];
    assert_eq!(entry["outcome"], "change", "{entry}");
    assert_eq!(entry["irreversible"], true, "{entry}");
    assert!(
        entry["summary"].as_str().unwrap().contains(&first),
        "names the run whose set goes: {entry}"
    );
    assert!(
        entry["undo"].as_str().unwrap().contains("is not restored"),
        "{entry}"
    );
    let o = cutover(d, &["plan", "-i", "inv.yml", "again.yml"]);
    assert!(text(&o).contains("irreversible"), "{}", text(&o));

    // With nothing to replace (the set committed first), the same step has a way back.
    let o = cutover(d, &["commit", "-i", "inv.yml", &first]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cutover(
        d,
        &["plan", "-i", "inv.yml", "again.yml", "--format", "json"],
    );
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["entries"][0]["irreversible"], false, "{plan}");
}

/// A host whose data is marked by two steps (staging: its database, then its app home) keeps
/// both marks: a write under the first one still refuses the rollback (the second mark used to
/// replace the first, and what only the first covered went unguarded).
#[test]
fn every_mark_of_a_host_counts_not_only_its_last() {
    let _g = common::local::one_at_a_time();
    let Some(pool) = Pool::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(pool.home().join("data")).unwrap();
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
    - name: Window closes - the attachments
      write_mark: {{ point: window_closed, paths: ["{p}/home"], exclude: [data] }}
    - name: Window closes - the data
      write_mark: {{ point: window_closed, paths: ["{p}/home/data"] }}
"#
        ),
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = std::fs::read_dir(d.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    // Under the first mark's tree only.
    std::fs::write(pool.home().join("scan.pdf"), "scan\n").unwrap();
    let o = cutover(d, &["rollback", "-i", "inv.yml", "--plan", &id]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains("me: since the window closed at 20")
            && plan.contains(&format!(
                "{}: 1 file written (e.g. scan.pdf)",
                pool.home().display()
            )),
        "{plan}"
    );
    // And under the second's.
    std::fs::write(pool.home().join("data/rows"), "1\n").unwrap();
    let o = cutover(d, &["rollback", "-i", "inv.yml", "--plan", &id]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains(&format!(
            "{}/data: 1 file written (e.g. rows)",
            pool.home().display()
        )) && plan.contains("(e.g. scan.pdf)"),
        "{plan}"
    );
    let o = cutover(d, &["commit", "-i", "inv.yml", &id]);
    assert!(o.status.success(), "{}", text(&o));
}
