//! Plays with `after_run: succeeded|failed|always`: left out of the run's walk, run once after
//! the run has ended — after its unwind — when it ended that way (an end-of-run announcement
//! that must go out on a rollback too).
//!
//! Their steps see `run` as it ended, told from the journal (so secrets are masked as there):
//! `run.status` (`ok`, `failed`, `unreachable`), `run.succeeded`,
//! `run.unwound` (an unwind ran) and `run.unwind_ok`, `run.failed` (the first step that failed:
//! `step`, `host`, `message`; null when none did) and `run.window` (the measured maintenance
//! window: `total_s`, `total_ms`, `described`, the breakdown of `Window::to_json`; null when no
//! step turned the page on). A failure in such a play is reported and journaled like any
//! step's, and changes nothing else: not the run's status, and no unwind. A run stopped by
//! Ctrl-C has not ended (it is resumed): its `after_run` plays run at the end of the resume;
//! one stopped by Ctrl-C in its `after_run` plays after it succeeded ends `interrupted`, and
//! its resume runs the rest of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value as J};

use super::{applying, journal, window, Run, RunStatus};
use crate::run::walk::Plays;

/// Run the due `after_run` plays, if any, with `run` describing how the run ended; the run's
/// status after them: as it was, but `Interrupted` when Ctrl-C stopped them after a run that
/// succeeded (its resume runs the rest of them; a failed run stays failed, never resumed).
pub(super) async fn run_after(run: &Arc<Run>, plays: &Plays, status: RunStatus) -> RunStatus {
    if walk_after(run, plays, &status).await
        && status == RunStatus::Ok
        && run.interrupted.load(Ordering::SeqCst)
    {
        let how = "Ctrl-C: stopped at a step boundary of the after_run plays";
        let _ = run
            .journal
            .record("run_interrupted", json!({ "how": how }))
            .await;
        return RunStatus::Interrupted;
    }
    status
}

/// Walk the due `after_run` plays; false when none was due.
async fn walk_after(run: &Arc<Run>, plays: &Plays, status: &RunStatus) -> bool {
    let word = match status {
        RunStatus::Ok => "ok",
        RunStatus::Failed => "failed",
        RunStatus::Unreachable => "unreachable",
        // Stopped at a step boundary to be resumed: the run has not ended yet (its resume
        // runs them). Refused before any step: nothing ran, nothing to tell.
        RunStatus::Interrupted | RunStatus::Locked | RunStatus::Refused => return false,
    };
    let succeeded = *status == RunStatus::Ok;
    let due = plays
        .playbook
        .plays
        .iter()
        .filter(|p| p.after_run.is_some_and(|a| a.runs_after(succeeded)))
        .count();
    if due == 0 {
        return false;
    }
    let events = journal::read_path(&run.journal.path).unwrap_or_default();
    let ended = outcome(&events, &run.id, word);
    *run.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
    run.reporter.say(&format!(
        "AFTER RUN (the run ended {word}): {due} play(s); their failures do not change the run's status"
    ));
    let _ = run
        .journal
        .record("after_run_started", json!({ "status": word, "plays": due }))
        .await;
    let ok = applying::run_after_plays(run, plays, succeeded).await;
    let _ = run
        .journal
        .record("after_run_finished", json!({ "ok": ok }))
        .await;
    true
}

/// `run` as the `after_run` plays see it, from the run's journal events.
pub(super) fn outcome(events: &[J], run_id: &str, status: &str) -> J {
    let unwind = events
        .iter()
        .rev()
        .find(|e| e["event"] == "unwind_finished" || e["event"] == "run_resumed");
    let unwound = unwind.is_some_and(|e| e["event"] == "unwind_finished");
    let failed = events
        .iter()
        .find(|e| {
            e["event"] == "step_result"
                && matches!(e["status"].as_str(), Some("failed" | "unreachable"))
                && e["ignored"] != true
        })
        .map(|e| json!({ "step": e["name"], "host": e["host"], "message": e["detail"] }));
    let window = window::window(events).map(|w| {
        let mut j = w.to_json();
        j["total_s"] = json!(w.total.as_secs_f64().round() as u64);
        j["described"] = json!(w.describe());
        j
    });
    json!({
        "id": run_id,
        "status": status,
        "succeeded": status == "ok",
        "unwound": unwound,
        "unwind_ok": unwind.filter(|_| unwound).map(|e| e["ok"] == true),
        "failed": failed,
        "window": window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, ts: &str, fields: J) -> J {
        let mut e = fields;
        e["event"] = json!(event);
        e["ts"] = json!(ts);
        e
    }

    #[test]
    fn a_successful_run_is_told_with_its_window() {
        let events = [
            ev("run_started", "2026-12-07T22:00:00Z", json!({})),
            ev(
                "step_result",
                "2026-12-07T22:00:10Z",
                json!({"status": "changed", "page": "on", "duration_ms": 100, "name": "on", "host": "lb"}),
            ),
            ev(
                "step_result",
                "2026-12-07T22:01:10Z",
                json!({"status": "failed", "ignored": true, "duration_ms": 100, "name": "x", "host": "app1", "detail": "ignored"}),
            ),
            ev(
                "step_result",
                "2026-12-07T22:02:40Z",
                json!({"status": "changed", "page": "off", "duration_ms": 100, "name": "off", "host": "lb"}),
            ),
        ];
        let o = outcome(&events, "R1", "ok");
        assert_eq!(o["id"], "R1");
        assert_eq!(o["status"], "ok");
        assert_eq!(o["succeeded"], true);
        assert_eq!(o["unwound"], false);
        assert_eq!(o["unwind_ok"], J::Null);
        // An ignored failure is no failure of the run.
        assert_eq!(o["failed"], J::Null);
        assert_eq!(o["window"]["total_s"], 150);
        assert_eq!(o["window"]["total_ms"], 150_000);
        assert_eq!(o["window"]["still_open"], false);
        assert!(o["window"]["described"]
            .as_str()
            .unwrap()
            .starts_with("maintenance window 2m30s"));
    }

    #[test]
    fn a_failed_and_unwound_run_is_told_with_its_first_failure() {
        let events = [
            ev("run_started", "2026-12-07T22:00:00Z", json!({})),
            ev(
                "step_result",
                "2026-12-07T22:00:05Z",
                json!({"status": "failed", "name": "Start the node", "host": "app1", "detail": "exit 3: [secret:db_password]"}),
            ),
            ev(
                "step_result",
                "2026-12-07T22:00:06Z",
                json!({"status": "unreachable", "name": "Later", "host": "app2", "detail": "lost"}),
            ),
            ev(
                "unwind_started",
                "2026-12-07T22:00:07Z",
                json!({"count": 2}),
            ),
            ev(
                "unwind_finished",
                "2026-12-07T22:00:09Z",
                json!({"ok": true}),
            ),
        ];
        let o = outcome(&events, "R2", "failed");
        assert_eq!(o["succeeded"], false);
        assert_eq!(o["unwound"], true);
        assert_eq!(o["unwind_ok"], true);
        assert_eq!(
            o["failed"],
            json!({"step": "Start the node", "host": "app1", "message": "exit 3: [secret:db_password]"})
        );
        assert_eq!(o["window"], J::Null);
        // An unwind that left changes is told as such.
        let mut partial = events.to_vec();
        partial[4] = ev(
            "unwind_finished",
            "2026-12-07T22:00:09Z",
            json!({"ok": false}),
        );
        assert_eq!(outcome(&partial, "R2", "failed")["unwind_ok"], false);
    }
}
