//! `block:` with `rescue:` and `always:`, run against the controller itself (`address: local`):
//! a failure the rescue handles does not unwind and the run ends ok; a failure no rescue
//! handles runs `always:`, then unwinds the run's changes newest first; a run killed inside a
//! rescue resumes in it, without running the failed step again.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::local::cutover;
use common::project::text;

/// A play making `data/before`, then a block (`body1`, a step failing when `fail_body`,
/// `body-never`) with a rescue (`rescue1`, a step failing when `fail_rescue`) and an always
/// (`always1`), then `after`. `rescue` false: the block has no `rescue:`.
fn project(d: &Path, rescue: bool) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let rescue = if rescue {
        "      rescue:\n        - name: Rescue one\n          file: { path: \"{{ d }}/rescue1\", state: directory }\n        - name: Rescue fails\n          fail: { msg: rescue broke }\n          when: fail_rescue\n"
    } else {
        ""
    };
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- hosts: n1
  on_failure: unwind
  vars: {{ d: "{data}", fail_body: true, fail_rescue: false }}
  steps:
    - name: Before
      file: {{ path: "{{{{ d }}}}/before", state: directory }}
    - name: Work
      block:
        - name: Body one
          file: {{ path: "{{{{ d }}}}/body1", state: directory }}
        - name: Body fails
          fail: {{ msg: body broke }}
          when: fail_body
        - name: Body never
          file: {{ path: "{{{{ d }}}}/body-never", state: directory }}
{rescue}      always:
        - name: Always one
          file: {{ path: "{{{{ d }}}}/always1", state: directory }}
    - name: After
      file: {{ path: "{{{{ d }}}}/after", state: directory }}
"#,
            data = d.join("data").display()
        ),
    )
    .unwrap();
}

fn data(d: &Path) -> Vec<String> {
    common::local::names_in(&d.join("data"))
}

#[test]
fn a_rescued_failure_does_not_unwind_and_the_run_goes_on() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, true);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("UNWIND"), "{out}");
    assert_eq!(data(d), ["after", "always1", "before", "body1", "rescue1"]);
    assert!(out.contains("n1: rescued (block \"Work\")"), "{out}");
    assert!(common::local::latest_journal_text(d).contains("\"event\":\"block_rescued\""));
}

#[test]
fn a_failure_no_rescue_handles_runs_always_then_unwinds_newest_first() {
    let _g = common::local::one_at_a_time();
    for rescue in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        project(d, rescue);
        // With a rescue, the rescue itself fails; without one, the body's failure is left.
        let o = cutover(
            d,
            &[
                "apply",
                "-i",
                "inv.yml",
                "pb.yml",
                "--output",
                "plain",
                "-e",
                "fail_rescue=true",
            ],
        );
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert_eq!(data(d), Vec::<String>::new(), "unwound: {out}");
        let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?}:\n{out}"));
        assert!(
            at("Always one (") < at("UNWIND"),
            "always runs first: {out}"
        );
        assert!(at("undo: Always one") < at("undo: Body one"), "{out}");
        assert!(at("undo: Body one") < at("undo: Before"), "{out}");
        assert!(!out.contains("Body never"), "{out}");
        assert!(!out.contains("After"), "{out}");
        assert_eq!(out.contains("Rescue one"), rescue, "{out}");
    }
}

#[test]
fn a_run_killed_in_a_rescue_resumes_there_without_rerunning_the_failed_step() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, true);
    // Killed once "Rescue one" is journaled (results: Before, Body one, Body fails, Rescue one).
    let o = common::local::killed_by_fault(d, "kill-after-step=1:Rescue one");
    assert_eq!(o.status.signal(), Some(9), "killed:\n{}", text(&o));
    assert_eq!(data(d), ["before", "body1", "rescue1"]);
    let id = common::local::latest_run_id(d);
    let o = cutover(d, &["resume", "-i", "inv.yml", &id, "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        !out.contains("Body fails"),
        "the failed step is not run again: {out}"
    );
    assert!(
        !out.contains("Body never"),
        "the host is still in the rescue: {out}"
    );
    assert_eq!(data(d), ["after", "always1", "before", "body1", "rescue1"]);
}
