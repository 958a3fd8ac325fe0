//! A run's state as `cutover runs` and `cutover show` report it, derived from its journal
//! events alone: what happened last (finished, unwound, rolled back, committed, or a rollback
//! cut off half way with the changes it left), when, and how often the run was resumed.

use crate::controller::clock::event_time;
use serde_json::Value as J;

/// What a run's journal says happened to it last.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Started or resumed, never finished: killed, or still running.
    Unfinished,
    /// Finished with this status (`ok`, `failed`, `interrupted`, …).
    Finished(String),
    /// Finished with this status after undoing its own changes (`on_failure: unwind`).
    Unwound(String),
    /// Its unwind left changes behind (an undo failed, or the unwind was cut off).
    UnwindIncomplete {
        status: String,
        left: usize,
    },
    /// `cutover rollback` is under way, or was killed: `left` changes are not undone.
    RollbackIncomplete {
        left: usize,
    },
    RolledBack,
    Committed,
    CommitIncomplete,
}

/// A run's state, when it was reached, and how many times the run was resumed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    pub state: State,
    /// The time of the event that set the state (RFC 3339, to the second).
    pub at: String,
    pub resumed: usize,
    /// A rollback that was refused (writes since the window would be lost), if the last one
    /// was refused and nothing happened since.
    pub rollback_refused: Option<String>,
    /// The last commit was forced (`commit --force`: the run had not finished ok).
    pub forced_commit: bool,
}

impl RunState {
    /// One phrase: `rolled back`, `rollback incomplete (3 changes left)`, `ok, resumed 2×`, …
    pub fn label(&self) -> String {
        let mut s = match &self.state {
            State::Unfinished => "unfinished (killed or still running)".to_string(),
            State::Finished(st) => st.clone(),
            State::Unwound(st) => format!("{st}, unwound"),
            State::UnwindIncomplete { status, left } => {
                format!("{status}, unwind incomplete ({})", changes_left(*left))
            }
            State::RollbackIncomplete { left } => {
                format!("rollback incomplete ({})", changes_left(*left))
            }
            State::RolledBack => "rolled back".to_string(),
            State::Committed => "committed".to_string(),
            State::CommitIncomplete => "commit incomplete".to_string(),
        };
        if self.forced_commit && matches!(self.state, State::Committed | State::CommitIncomplete) {
            s.push_str(" (forced)");
        }
        if self.resumed > 0 {
            s.push_str(&format!(
                ", resumed{}",
                if self.resumed > 1 {
                    format!(" {}×", self.resumed)
                } else {
                    String::new()
                }
            ));
        }
        if self.rollback_refused.is_some() {
            s.push_str(", rollback refused");
        }
        s
    }

    /// The label with the time it was reached: `rolled back at 2026-12-07T06:12:03Z`.
    pub fn describe(&self) -> String {
        if self.at.is_empty() {
            self.label()
        } else {
            format!("{} at {}", self.label(), self.at)
        }
    }
}

fn changes_left(n: usize) -> String {
    format!("{n} change{} left", if n == 1 { "" } else { "s" })
}

/// The changes of the run that are recorded and not undone yet.
fn left(run_id: &str, events: &[J]) -> usize {
    super::recovery::state_of(run_id, events).map_or(0, |s| s.done.len())
}

/// The run's state from its journal events, in order.
pub fn run_state(events: &[J]) -> RunState {
    let run_id = events
        .first()
        .and_then(|e| e["run_id"].as_str())
        .unwrap_or("");
    let mut st = RunState {
        state: State::Unfinished,
        at: events.first().map(event_time).unwrap_or_default(),
        resumed: 0,
        rollback_refused: None,
        forced_commit: false,
    };
    // The run's own unwind, until its run_finished says how the run ended.
    let mut unwind: Option<bool> = None;
    for e in events {
        let at = event_time(e);
        let kind = e["event"].as_str().unwrap_or("");
        // `left: 0` is counted once at the end, from every event (see below).
        let next = match kind {
            "run_started" => Some(State::Unfinished),
            "run_resumed" => {
                st.resumed += 1;
                unwind = None;
                Some(State::Unfinished)
            }
            "unwind_started" => {
                unwind = Some(false);
                None
            }
            "unwind_finished" => {
                unwind = Some(e["ok"] == true);
                None
            }
            "run_finished" => {
                let status = e["status"].as_str().unwrap_or("?").to_string();
                Some(match unwind.take() {
                    None => State::Finished(status),
                    Some(true) => State::Unwound(status),
                    Some(false) => State::UnwindIncomplete { status, left: 0 },
                })
            }
            "rollback_started" => Some(State::RollbackIncomplete { left: 0 }),
            "rollback_finished" if e["ok"] == true => Some(State::RolledBack),
            "rollback_finished" => Some(State::RollbackIncomplete { left: 0 }),
            "commit_started" => {
                st.forced_commit = e["forced"] == true;
                Some(State::CommitIncomplete)
            }
            "commit_finished" if e["ok"] == true => Some(State::Committed),
            "commit_finished" => Some(State::CommitIncomplete),
            "rollback_refused" => {
                st.rollback_refused = Some(at.clone());
                None
            }
            _ => None,
        };
        if let Some(next) = next {
            st.at = at;
            st.rollback_refused = None;
            st.state = next;
        }
    }
    // The changes still in place: what the whole journal says is recorded and not undone.
    match &mut st.state {
        State::RollbackIncomplete { left: n } | State::UnwindIncomplete { left: n, .. } => {
            *n = left(run_id, events)
        }
        _ => {}
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, sec: u32, mut fields: J) -> J {
        fields["event"] = json!(kind);
        fields["ts"] = json!(format!("2026-12-07T06:00:{sec:02}.123Z"));
        fields
    }

    fn started() -> J {
        ev(
            "run_started",
            0,
            json!({ "run_id": "r1", "playbook": "pb.yml" }),
        )
    }

    /// A change on `host` recorded by step `seq`, with its way back.
    fn change(seq: u64, sec: u32) -> J {
        ev(
            "step_result",
            sec,
            json!({ "play": 0, "step": seq, "handler": false, "host": "app1", "name": format!("s{seq}"), "seq": seq, "status": "changed",
                    "undo": { "undo": "remove_path", "path": format!("/tmp/f{seq}") } }),
        )
    }

    fn undone(seq: u64, sec: u32) -> J {
        ev(
            "undo_result",
            sec,
            json!({ "host": "app1", "seq": seq, "ok": true }),
        )
    }

    #[test]
    fn applied_ok() {
        let s = run_state(&[
            started(),
            change(0, 1),
            ev("run_finished", 2, json!({ "status": "ok" })),
        ]);
        assert_eq!(s.state, State::Finished("ok".into()));
        assert_eq!(s.describe(), "ok at 2026-12-07T06:00:02Z");
    }

    #[test]
    fn failed_and_unwound() {
        let s = run_state(&[
            started(),
            change(0, 1),
            ev("unwind_started", 2, json!({ "count": 1 })),
            undone(0, 3),
            ev("unwind_finished", 4, json!({ "ok": true })),
            ev("run_finished", 5, json!({ "status": "failed" })),
        ]);
        assert_eq!(s.describe(), "failed, unwound at 2026-12-07T06:00:05Z");
    }

    #[test]
    fn rolled_back() {
        let s = run_state(&[
            started(),
            change(0, 1),
            change(1, 2),
            ev("run_finished", 3, json!({ "status": "ok" })),
            ev("rollback_started", 10, json!({ "count": 2 })),
            undone(1, 11),
            undone(0, 12),
            ev("rollback_finished", 13, json!({ "ok": true })),
        ]);
        assert_eq!(s.state, State::RolledBack);
        assert_eq!(s.describe(), "rolled back at 2026-12-07T06:00:13Z");
    }

    #[test]
    fn rollback_killed_half_way_counts_the_changes_left() {
        let s = run_state(&[
            started(),
            change(0, 1),
            change(1, 2),
            change(2, 3),
            ev("run_finished", 4, json!({ "status": "ok" })),
            ev("rollback_started", 10, json!({ "count": 3 })),
            undone(2, 11),
        ]);
        assert_eq!(s.state, State::RollbackIncomplete { left: 2 });
        assert_eq!(
            s.describe(),
            "rollback incomplete (2 changes left) at 2026-12-07T06:00:10Z"
        );
        // A failed undo: the rollback finished, not ok, one change left.
        let s = run_state(&[
            started(),
            change(0, 1),
            ev("run_finished", 4, json!({ "status": "ok" })),
            ev("rollback_started", 10, json!({ "count": 1 })),
            ev(
                "undo_result",
                11,
                json!({ "host": "app1", "seq": 0, "ok": false }),
            ),
            ev("rollback_finished", 12, json!({ "ok": false })),
        ]);
        assert_eq!(s.label(), "rollback incomplete (1 change left)");
    }

    #[test]
    fn killed_resumed_then_committed() {
        let killed = [started(), change(0, 1)];
        assert_eq!(run_state(&killed).state, State::Unfinished);
        let mut events = killed.to_vec();
        events.push(ev("run_resumed", 20, json!({ "pid": 2 })));
        events.push(change(1, 21));
        events.push(ev("run_finished", 22, json!({ "status": "ok" })));
        assert_eq!(
            run_state(&events).describe(),
            "ok, resumed at 2026-12-07T06:00:22Z"
        );
        events.push(ev("commit_started", 30, json!({ "count": 2 })));
        assert_eq!(run_state(&events).label(), "commit incomplete, resumed");
        events.push(ev("commit_finished", 31, json!({ "ok": true })));
        assert_eq!(
            run_state(&events).describe(),
            "committed, resumed at 2026-12-07T06:00:31Z"
        );
    }

    #[test]
    fn a_forced_commit_says_so() {
        let mut events = vec![
            started(),
            change(0, 1),
            ev("run_finished", 2, json!({ "status": "failed" })),
            ev("commit_started", 3, json!({ "count": 1, "forced": true })),
        ];
        assert_eq!(run_state(&events).label(), "commit incomplete (forced)");
        events.push(ev("commit_finished", 4, json!({ "ok": true })));
        assert_eq!(
            run_state(&events).describe(),
            "committed (forced) at 2026-12-07T06:00:04Z"
        );
    }

    #[test]
    fn a_refused_rollback_is_named_until_something_else_happens() {
        let mut events = vec![
            started(),
            change(0, 1),
            ev("run_finished", 2, json!({ "status": "ok" })),
            ev("rollback_refused", 9, json!({})),
        ];
        assert_eq!(
            run_state(&events).describe(),
            "ok, rollback refused at 2026-12-07T06:00:02Z"
        );
        events.push(ev("rollback_started", 10, json!({ "count": 1 })));
        events.push(undone(0, 11));
        events.push(ev("rollback_finished", 12, json!({ "ok": true })));
        assert_eq!(run_state(&events).label(), "rolled back");
    }
}
