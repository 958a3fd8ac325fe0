//! The window's breakdown from journals shaped as the engine writes them (step.rs, recovery.rs,
//! mod.rs: `run_started`, `step_result` with `ts`/`duration_ms`/`module`/`phase`/`page`,
//! `undo_result`, `run_resumed`, `run_finished`).

use std::time::Duration;

use serde_json::{json, Value as J};

use super::*;

/// `ts` of second `s` (plus `ms`) of a fixed minute.
fn ts(s: u64, ms: u64) -> String {
    format!("2026-12-07T15:{:02}:{:02}.{ms:03}Z", 20 + s / 60, s % 60)
}

/// A `step_result` ending at second `end`, after `dur_ms` of remote work.
fn result(host: &str, name: &str, module: &str, phase: &str, end: u64, dur_ms: u64) -> J {
    json!({ "event": "step_result", "handler": false, "host": host, "name": name, "play": 1,
            "seq": 1, "status": "changed", "step": 0, "detail": "", "duration_ms": dur_ms,
            "module": module, "phase": phase, "ts": ts(end, 0) })
}

fn page(state: &str, end: u64) -> J {
    let mut e = result("lb", "Maintenance page", "maintenance", "other", end, 0);
    e["page"] = json!(state);
    e
}

fn event(kind: &str, at: u64) -> J {
    json!({ "event": kind, "ts": ts(at, 0) })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_run_without_the_page_has_no_window() {
    let events = vec![
        event("run_started", 0),
        result("app1", "Stop wiki", "service", "stops", 10, 5000),
        event("run_finished", 20),
    ];
    assert_eq!(window(&events), None);
}

#[test]
fn phases_are_wall_clock_unions_and_own_work_is_the_rest() {
    let events = vec![
        event("run_started", 0),
        result("lb", "before the page", "service", "stops", 5, 4000),
        page("on", 10),
        // Two hosts stop in parallel: 10..14 and 11..15 → 5s of wall clock, not 8.
        result("app1", "Stop wiki", "service", "stops", 14, 4000),
        result("app2", "Stop wiki", "service", "stops", 15, 4000),
        result(
            "db1",
            "Snapshot every data volume",
            "snapshot",
            "snapshots",
            20,
            3000,
        ),
        result(
            "app1",
            "current -> the new release",
            "file",
            "switch",
            21,
            500,
        ),
        result(
            "app1",
            "Start the node alone (it migrates the schema)",
            "service",
            "migration",
            60,
            30000,
        ),
        result("db2", "Start the slave", "service", "starts", 70, 8000),
        result("app1", "Node healthy", "shell", "checks", 75, 4000),
        page("off", 80),
        result("app1", "after the page", "service", "starts", 90, 9000),
        event("run_finished", 95),
    ];
    let w = window(&events).expect("a window");
    assert_eq!(w.total, secs(70));
    assert_eq!(
        w.phases,
        vec![
            ("stops", secs(5)),
            ("snapshots", secs(3)),
            ("switch", Duration::from_millis(500)),
            ("migration", secs(30)),
            ("starts", secs(8)),
            ("checks", secs(4)),
            ("other", Duration::ZERO),
        ]
    );
    assert_eq!(w.remote, Duration::from_millis(50_500));
    assert_eq!(w.own(), Duration::from_millis(19_500));
    assert!(!w.still_open && !w.spans_resume && !w.unwound);
    assert_eq!(
        w.describe(),
        "maintenance window 1m10s: stops 5.0s, snapshots 3.0s, switch 500ms, migration 30s, \
         starts 8.0s, checks 4.0s, other 0ms; cutover's own work 20s (28%)"
    );
    assert_eq!(w.to_json()["own_ms"], 19_500);
    assert_eq!(w.to_json()["phases_ms"]["migration"], 30_000);
}

#[test]
fn a_step_begun_before_the_page_counts_only_its_part_under_it() {
    let events = vec![
        page("on", 10),
        result("app1", "Stop wiki", "service", "stops", 12, 5000),
        page("off", 20),
    ];
    let w = window(&events).expect("a window");
    assert_eq!(w.phases[0], ("stops", secs(2)));
    assert_eq!(w.remote, secs(2));
}

#[test]
fn a_page_never_turned_off_is_still_open_until_the_last_event() {
    let events = vec![
        page("on", 10),
        result("app1", "Stop wiki", "service", "stops", 15, 5000),
        json!({ "event": "run_finished", "status": "failed", "recap": {}, "ts": ts(30, 0) }),
    ];
    let w = window(&events).expect("a window");
    assert_eq!(w.total, secs(20));
    assert!(w.still_open);
    assert!(w.describe().contains("still open"), "{}", w.describe());
}

#[test]
fn an_unwind_that_turns_the_page_off_ends_the_window() {
    let events = vec![
        page("on", 10),
        result("app1", "Stop wiki", "service", "stops", 15, 5000),
        json!({ "event": "undo_result", "host": "app1", "step": "Stop wiki", "seq": 4,
                "undo": { "undo": "rerun", "module": "shell",
                          "args": { "cmd": "systemctl start wiki" },
                          "what": "shell: systemctl start wiki" },
                "partial": false, "ok": true, "detail": "", "duration_ms": 6000, "ts": ts(23, 0) }),
        json!({ "event": "undo_result", "host": "lb", "step": "Maintenance page", "seq": 3,
                "undo": { "undo": "rerun", "module": "maintenance",
                          "args": { "path": "/var/www/maintenance/on", "state": "off" },
                          "what": "maintenance page back off (/var/www/maintenance/on)" },
                "partial": false, "ok": true, "detail": "", "duration_ms": 1000, "ts": ts(25, 0) }),
        event("run_finished", 40),
    ];
    let w = window(&events).expect("a window");
    assert_eq!(w.total, secs(15));
    // The ways back run under the page too: 17..23 and 24..25.
    assert_eq!(w.phases, vec![("stops", secs(5)), ("unwind", secs(7))]);
    assert_eq!(w.remote, secs(12));
    assert!(w.unwound && !w.still_open);
    assert!(w.describe().contains("by the way back"), "{}", w.describe());
}

#[test]
fn a_resumed_run_spans_the_stop_and_says_so() {
    let events = vec![
        page("on", 10),
        result("app1", "Stop wiki", "service", "stops", 15, 5000),
        event("run_resumed", 100),
        result("app1", "Start wiki", "service", "starts", 110, 5000),
        page("off", 120),
    ];
    let w = window(&events).expect("a window");
    assert_eq!(w.total, secs(110));
    assert_eq!(w.remote, secs(10));
    assert!(w.spans_resume);
    assert!(w.describe().contains("spans a stop and resume"));
}

#[test]
fn failed_or_skipped_page_steps_do_not_open_the_window() {
    let mut failed = page("on", 10);
    failed["status"] = json!("failed");
    let mut skipped = page("on", 11);
    skipped["status"] = json!("skipped");
    assert_eq!(window(&[failed, skipped, event("run_finished", 20)]), None);
}

#[test]
fn the_classification_table() {
    let a = |v: J| v.as_object().cloned().unwrap_or_default();
    let cases = [
        (
            "service",
            json!({"name": "wiki", "state": "stopped"}),
            None,
            "stops",
        ),
        (
            "mysql_replication",
            json!({"state": "stopped"}),
            None,
            "stops",
        ),
        ("service", json!({"state": "started"}), None, "starts"),
        ("service", json!({"state": "restarted"}), None, "starts"),
        (
            "mysql_replication",
            json!({"state": "started"}),
            None,
            "starts",
        ),
        (
            "service",
            json!({"state": "started"}),
            Some("migration"),
            "migration",
        ),
        ("snapshot", json!({"state": "present"}), None, "snapshots"),
        ("file", json!({"state": "link"}), None, "switch"),
        ("file", json!({"state": "directory"}), None, "other"),
        ("http_check", json!({}), None, "checks"),
        ("cluster_safety", json!({}), None, "checks"),
        ("wait_for", json!({}), None, "checks"),
        (
            "mysql_replication",
            json!({"state": "synced"}),
            None,
            "checks",
        ),
        ("shell", json!({"cmd": "true"}), None, "other"),
        ("maintenance", json!({"state": "on"}), None, "other"),
    ];
    for (module, args, declared, want) in cases {
        assert_eq!(
            phase_of(module, &a(args), declared),
            want,
            "{module} {declared:?}"
        );
    }
    // The name tells nothing: a start is a start unless it says `phase: migration`.
    let start = a(json!({"state": "started"}));
    assert_eq!(phase_of("service", &start, None), "starts");
    assert_eq!(phase_of("command", &a(json!({})), Some("switch")), "switch");
}

#[test]
fn human_durations() {
    assert_eq!(human(Duration::from_millis(340)), "340ms");
    assert_eq!(human(Duration::from_millis(2100)), "2.1s");
    assert_eq!(human(secs(12)), "12s");
    assert_eq!(human(secs(151)), "2m31s");
    assert_eq!(human(secs(3 * 3600 + 600)), "3h10m");
}
