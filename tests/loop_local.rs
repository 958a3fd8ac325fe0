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
    let mut names: Vec<String> = std::fs::read_dir(d.join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
