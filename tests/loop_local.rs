//! `loop:` on a step, run against the controller itself (`address: local`): the plan shows
//! each item and writes nothing; apply makes each item once and journals it as a step of its
//! own; `register` gives `results` per item; an unwind undoes the items newest first; an
//! empty loop does nothing.

mod common;

use std::path::Path;

use common::local::cutover;
use common::project::text;

/// A playbook making `data/a`, `data/b`, `data/c` in a loop, writing `data/note` when the
/// second item changed something, and then failing if `fail`.
fn project(d: &Path, fail: bool) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let failing = if fail {
        "    - name: The app starts\n      fail: { msg: it does not }\n"
    } else {
        ""
    };
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- hosts: n1
  on_failure: unwind
  vars: {{ dirs: [a, b, c] }}
  steps:
    - name: Make dirs
      file: {{ path: "{data}/{{{{ dir }}}}", state: directory }}
      loop: "{{{{ dirs }}}}"
      loop_control: {{ loop_var: dir }}
      register: made
    - name: Note the second
      copy: {{ content: "b was made\n", dest: "{data}/note" }}
      when: made.results[1].changed
    - name: Nothing to make
      file: {{ path: "{data}/none-{{{{ item }}}}", state: directory }}
      loop: []
{failing}"#,
            data = d.join("data").display()
        ),
    )
    .unwrap();
}

fn data(d: &Path) -> Vec<String> {
    common::local::names_in(&d.join("data"))
}

#[test]
fn a_loop_is_planned_applied_registered_and_applied_again_item_by_item() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, false);
    let plan = cutover(
        d,
        &["plan", "-i", "inv.yml", "pb.yml", "--out", "plan.json"],
    );
    let out = text(&plan);
    for item in ["(item 1/3: a)", "(item 2/3: b)", "(item 3/3: c)"] {
        assert!(out.contains(&format!("Make dirs {item}")), "{out}");
    }
    assert!(
        !out.contains("Nothing to make"),
        "an empty loop plans nothing:\n{out}"
    );
    assert_eq!(data(d), Vec::<String>::new(), "a plan writes nothing");

    // The reviewed plan applies item by item (a saved plan keys each item's outcome).
    let o = cutover(d, &["apply", "plan.json", "--output", "plain"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(data(d), ["a", "b", "c", "note"]);

    // Again: every item is there, so the second one changes nothing and no note is written.
    std::fs::remove_file(d.join("data/note")).unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(data(d), ["a", "b", "c"]);
}

#[test]
fn an_unwind_undoes_the_items_newest_first() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, true);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("UNWIND"), "{out}");
    assert_eq!(data(d), Vec::<String>::new(), "{out}");
    let at = |item: &str| {
        out.find(&format!("undo: Make dirs ({item})"))
            .unwrap_or_else(|| panic!("no undo of {item}:\n{out}"))
    };
    assert!(at("item 3/3: c") < at("item 2/3: b"), "{out}");
    assert!(at("item 2/3: b") < at("item 1/3: a"), "{out}");
}

/// The step results a run journaled for the step named `name`.
fn results_of(d: &Path, id: &str, name: &str) -> usize {
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_result" && e["name"] == name)
        .count()
}

#[test]
fn a_resumed_run_does_not_redo_the_items_it_finished() {
    use std::os::unix::process::ExitStatusExt;
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, false);
    // Killed once items a and b are journaled (the controller's host lock may be another
    // test binary's for a moment: then try again).
    let o = common::local::killed_by_fault(d, "kill-after-result=2");
    assert_eq!(o.status.signal(), Some(9), "killed:\n{}", text(&o));
    assert_eq!(data(d), ["a", "b"]);
    let id = common::local::latest_run_id(d);
    let o = cutover(d, &["resume", "-i", "inv.yml", &id, "--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    for item in ["item 1/3: a", "item 2/3: b", "item 3/3: c"] {
        assert_eq!(
            results_of(d, &id, &format!("Make dirs ({item})")),
            1,
            "{item}"
        );
    }
    // `made` was restored from the journal with its first two results, then got the third.
    assert_eq!(data(d), ["a", "b", "c", "note"]);
}

#[test]
fn a_secret_item_never_shows_in_output_or_the_journal() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("inv.yml"),
        "secret_vars: [db_password]\nhosts:\n  n1: { address: local }\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(d.join("vars.yml"), "db_password: s3cret-Pw-42\n").unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - name: Use each\n      debug: { msg: ok }\n      loop: [plain, \"{{ db_password }}\"]\n",
    )
    .unwrap();
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "-e",
            "@vars.yml",
            "pb.yml",
            "--output",
            "plain",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("Use each (item 1/2: plain)"), "{out}");
    assert!(
        out.contains("Use each (item 2/2: [secret:db_password])"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
    let runs = d.join("state/runs");
    for run in std::fs::read_dir(&runs).unwrap().flatten() {
        let journal = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
        assert!(!journal.contains("s3cret"), "{journal}");
    }
}
