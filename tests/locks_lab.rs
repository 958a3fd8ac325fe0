//! Host locks are taken for every host of a run before its first step. Needs `lab/lab.sh up`.
//!
//! A playbook whose first play changes app1 and whose second play runs on app2, while app2 is
//! held by another run (a lock file written by "another controller"): the run is refused up
//! front, and app1 is left untouched — no change, no lock. Only test paths are touched; the
//! planted lock is removed afterwards.

mod common;

use common::project::{lab_inventory, text, Project};
use serde_json::Value as J;

const OTHER_RUN: &str = "20200101-000000-0th3";

/// The tests of this file both run on app1: one at a time, so neither meets the other's lock.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ssh_ok(host: &str, cmd: &str) -> String {
    common::lab_ssh_ok(host, cmd)
}

/// Plant a lock on `host` as another controller's live run would leave it (its liveness cannot
/// be checked from here, so it counts as held).
fn plant_lock(host: &str) {
    let lock = format!(
        r#"{{"run_id":"{OTHER_RUN}","user":"someone","controller":"another-controller","pid":4242,"started":"2020-01-01T00:00:00Z"}}"#
    );
    ssh_ok(
        host,
        &format!("set -C; printf '%s\\n' '{lock}' > /var/tmp/cutover.lock"),
    );
}

fn remove_planted_lock(host: &str) {
    let _ = common::lab_ssh(
        host,
        &format!("grep -q '{OTHER_RUN}' /var/tmp/cutover.lock 2>/dev/null && rm -f /var/tmp/cutover.lock; true"),
    );
}

#[test]
fn a_run_meeting_a_locked_host_in_a_later_play_is_refused_before_its_first_step() {
    let _g = serial();
    common::require_lab();
    let marker = format!("/var/tmp/cutover-lock-start-{}", std::process::id());
    let p = Project::new();
    p.write(
        "pb.yml",
        &format!(
            r#"- name: first play, app1
  hosts: app1
  steps:
    - name: change app1
      copy: {{ content: "changed\n", dest: "{marker}" }}
- name: second play, app2
  hosts: app2
  steps:
    - name: on app2
      command: "true"
"#
        ),
    );
    // app2 free before we plant the lock (another test binary's run may hold it a moment).
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory().display().to_string(),
        &p.write(
            "noop.yml",
            "- hosts: app1:app2\n  steps:\n    - debug: { msg: free }\n",
        )
        .display()
        .to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    plant_lock("app2");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let before = p.run_ids();
        let o = p
            .apply_command(&lab_inventory(), "pb.yml", &["--output", "plain"])
            .output()
            .unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(5), "{out}");
        let run_id = p.new_run(&before);
        assert!(
            out.contains(&format!(
                "locked by run {OTHER_RUN} by someone on another-controller"
            )) && out.contains("run refused before its first step")
                && out.contains("nothing was changed"),
            "{out}"
        );
        // Nothing ran, nothing changed on app1, and app1's lock was given back.
        let j: Vec<J> = p
            .journal_text(&run_id)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(
            !j.iter()
                .any(|e| e["event"] == "step_result" || e["event"] == "step_applying"),
            "{j:#?}"
        );
        assert!(j
            .iter()
            .any(|e| e["event"] == "run_refused" && e["hosts"] == J::from(vec!["app2"])));
        let finished = j.iter().find(|e| e["event"] == "run_finished").unwrap();
        assert_eq!(finished["status"], "locked", "{finished}");
        assert_eq!(
            ssh_ok("app1", &format!("test -e {marker} && echo yes || echo no")).trim(),
            "no",
            "app1 was changed"
        );
        let app1_lock = ssh_ok("app1", "cat /var/tmp/cutover.lock 2>/dev/null || true");
        assert!(!app1_lock.contains(&run_id), "app1 lock left: {app1_lock}");

        // --limit leaves app2 out of the run: then its lock is no obstacle.
        let o = p.apply("pb.yml", &["--output", "plain", "--limit", "app1"]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(ssh_ok("app1", &format!("cat {marker}")), "changed\n");

        // The other run is gone: the whole playbook runs.
        remove_planted_lock("app2");
        let o = p.apply("pb.yml", &["--output", "plain"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("on app2"), "{}", text(&o));
    }));
    remove_planted_lock("app2");
    let _ = common::lab_ssh("app1", &format!("rm -f {marker}"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// A host reached only through a step's `delegate_to` is locked at the start too.
#[test]
fn a_delegate_named_by_a_step_is_locked_at_the_start() {
    let _g = serial();
    common::require_lab();
    let marker = format!("/var/tmp/cutover-lock-delegate-{}", std::process::id());
    let p = Project::new();
    p.write(
        "pb.yml",
        &format!(
            r#"- hosts: app1
  steps:
    - name: change app1
      copy: {{ content: "changed\n", dest: "{marker}" }}
    - name: on db2 for app1
      command: "true"
      delegate_to: db2
"#
        ),
    );
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory().display().to_string(),
        &p.write(
            "noop.yml",
            "- hosts: app1:db2\n  steps:\n    - debug: { msg: free }\n",
        )
        .display()
        .to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    plant_lock("db2");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let o = p
            .apply_command(&lab_inventory(), "pb.yml", &["--output", "plain"])
            .output()
            .unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(5), "{out}");
        assert!(out.contains(&format!("locked by run {OTHER_RUN}")), "{out}");
        assert_eq!(
            ssh_ok("app1", &format!("test -e {marker} && echo yes || echo no")).trim(),
            "no",
            "app1 was changed"
        );
    }));
    remove_planted_lock("db2");
    let _ = common::lab_ssh("app1", &format!("rm -f {marker}"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
