//! `cutover runs` and `cutover show`: past runs, and a run's journal replayed as the admin saw
//! it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{exit, one, Refusal};
use crate::diag::Diagnostic;

pub(super) fn cmd_runs() -> Result<u8, Refusal> {
    let runs = crate::engine::journal::list_runs().map_err(|e| {
        one(Diagnostic::new(
            crate::diag::Pos::cli("runs"),
            format!("{e:#}"),
        ))
    })?;
    if runs.is_empty() {
        println!(
            "no runs in {}",
            crate::engine::journal::runs_dir().display()
        );
    }
    for (id, first, state) in &runs {
        println!("{}", crate::engine::journal::describe_run(id, first, state));
    }
    Ok(exit::OK)
}

pub(super) fn cmd_show(run: &str, raw: bool) -> Result<u8, Refusal> {
    let events = crate::engine::journal::read(run).map_err(|e| {
        one(Diagnostic::new(
            crate::diag::Pos::cli("show"),
            format!("{e:#}"),
        ))
    })?;
    // Steps whose change began but whose result never came (the controller died meanwhile).
    let finished_seqs: BTreeSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "step_result")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    for e in &events {
        if raw {
            println!("{e}");
            continue;
        }
        let ts = e["ts"].as_str().unwrap_or("");
        let time = ts.get(11..19).unwrap_or(ts);
        let kind = e["event"].as_str().unwrap_or("");
        if !show_run_event(time, kind, e) && !show_step_event(time, kind, e, &finished_seqs) {
            show_recovery_event(time, kind, e);
        }
    }
    if raw {
        return Ok(exit::OK);
    }
    show_final_state(&events);
    if let Some(w) = crate::engine::window::window(&events) {
        println!("{}", w.describe());
    }
    Ok(exit::OK)
}

/// The run's own events (start, plays, hosts lost, resume, handlers, end). False: not one.
fn show_run_event(time: &str, kind: &str, e: &Value) -> bool {
    match kind {
        "run_started" => println!(
            "{time} run {} of {} on {} by {}",
            e["run_id"].as_str().unwrap_or(""),
            e["playbook"].as_str().unwrap_or(""),
            e["inventory"].as_str().unwrap_or(""),
            e["user"].as_str().unwrap_or("")
        ),
        "play_started" => println!(
            "{time} PLAY {} {}",
            e["name"].as_str().unwrap_or(""),
            e["hosts"]
        ),
        "host_unreachable" => println!(
            "{time} {:<12} UNREACHABLE {}",
            e["host"].as_str().unwrap_or(""),
            e["error"].as_str().unwrap_or("")
        ),
        "run_resumed" => println!(
            "{time} run resumed by {} (pid {})",
            e["user"].as_str().unwrap_or(""),
            e["pid"]
        ),
        "handler_notified" => println!(
            "{time} {:<12} notified    {}",
            e["host"].as_str().unwrap_or(""),
            e["handler"].as_str().unwrap_or("")
        ),
        "run_interrupted" => {
            println!("{time} INTERRUPTED ({})", e["how"].as_str().unwrap_or(""))
        }
        "run_finished" => println!("{time} finished: {}", e["status"].as_str().unwrap_or("")),
        "run_refused" => println!(
            "{time} REFUSED ({}): {}",
            e["why"].as_str().unwrap_or(""),
            e["detail"].as_str().unwrap_or("")
        ),
        "window_checked" => println!("{time} {}", e["text"].as_str().unwrap_or("")),
        _ => return false,
    }
    true
}

/// A step's result, or a change that began and never reported (the run stopped meanwhile).
/// False: not one.
fn show_step_event(time: &str, kind: &str, e: &Value, finished_seqs: &BTreeSet<u64>) -> bool {
    match kind {
        "step_result" => {
            let detail = e["detail"].as_str().unwrap_or("");
            let undo = e
                .get("undo")
                .map(|u| {
                    format!(
                        "  [undo: {}]",
                        serde_json::from_value::<crate::modules::UndoAction>(u.clone())
                            .map(|u| u.describe())
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            println!(
                "{time} {:<12} {:<11} {}{}{}",
                e["host"].as_str().unwrap_or(""),
                e["status"].as_str().unwrap_or(""),
                e["name"].as_str().unwrap_or(""),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" — {detail}")
                },
                undo
            );
        }
        "step_applying"
            if e["seq"]
                .as_u64()
                .is_some_and(|q| !finished_seqs.contains(&q)) =>
        {
            let undo = e
                .get("undo_pending")
                .and_then(|u| serde_json::from_value::<crate::modules::UndoAction>(u.clone()).ok())
                .map_or_else(
                    || "no recorded way back".to_string(),
                    |u| format!("undo: {}", u.describe()),
                );
            println!(
            "{time} {:<12} {:<11} {} — the change began and the run stopped before its result [{undo}]",
            e["host"].as_str().unwrap_or(""),
            "CUT OFF",
            e["name"].as_str().unwrap_or(""),
        );
        }
        _ => return false,
    }
    true
}

/// Unwind, rollback, commit and undo events; anything else is not shown.
fn show_recovery_event(time: &str, kind: &str, e: &Value) {
    match kind {
        "unwind_started" => println!("{time} UNWIND {} change(s)", e["count"]),
        "unwind_finished" => println!(
            "{time} unwind {}",
            if e["ok"] == true {
                "finished"
            } else {
                "INCOMPLETE"
            }
        ),
        "after_run_started" => println!(
            "{time} AFTER RUN (the run ended {}): {} play(s)",
            e["status"].as_str().unwrap_or("?"),
            e["plays"]
        ),
        "after_run_finished" if e["ok"] != true => {
            println!("{time} after_run plays: a step failed (the run's status stands)")
        }
        "rollback_started" => println!(
            "{time} ROLLBACK of {} change(s) by {}",
            e["count"],
            e["user"].as_str().unwrap_or("?")
        ),
        "rollback_finished" => println!(
            "{time} {}",
            if e["ok"] == true {
                "rolled back"
            } else {
                "ROLLBACK INCOMPLETE (an undo failed)"
            }
        ),
        "rollback_discarding" => show_discarding(time, e),
        "rollback_refused" => println!(
            "{time} ROLLBACK REFUSED: {}",
            e["why"].as_str().unwrap_or("")
        ),
        "commit_refused" => println!(
            "{time} COMMIT REFUSED (by {}): the run being {}",
            e["user"].as_str().unwrap_or("?"),
            e["run_status"].as_str().unwrap_or("?")
        ),
        "commit_started" => println!(
            "{time} COMMIT of {} change(s) by {}{}",
            e["count"],
            e["user"].as_str().unwrap_or("?"),
            if e["forced"] == true {
                format!(
                    " — FORCED, the run being {}",
                    e["run_status"].as_str().unwrap_or("?")
                )
            } else {
                String::new()
            }
        ),
        "commit_result" => {
            show_fill(time, e);
            println!(
                "{time} {:<12} {:<11} {}",
                e["host"].as_str().unwrap_or(""),
                if e["ok"] == true {
                    "committed"
                } else {
                    "COMMIT FAILED"
                },
                e["detail"].as_str().unwrap_or("")
            )
        }
        "commit_finished" => println!(
            "{time} {}",
            if e["ok"] == true {
                "committed"
            } else {
                "COMMIT INCOMPLETE"
            }
        ),
        "undo_result" => println!(
            "{time} {:<12} {:<11} undo {}",
            e["host"].as_str().unwrap_or(""),
            if e["ok"] == true {
                "undone"
            } else {
                "UNDO FAILED"
            },
            e["detail"].as_str().unwrap_or("")
        ),
        _ => {}
    }
}

/// What a rollback with `--discard-writes-since-window` throws away, and where it keeps it.
fn show_discarding(time: &str, e: &Value) {
    println!(
        "{time} ROLLBACK DISCARDS writes made after the window (--discard-writes-since-window):"
    );
    for l in e["lost"].as_array().into_iter().flatten() {
        for w in l["what"].as_array().into_iter().flatten() {
            println!(
                "           {}: {}",
                l["host"].as_str().unwrap_or(""),
                w.as_str().unwrap_or("")
            );
        }
    }
    for k in e["kept"].as_array().into_iter().flatten() {
        println!(
            "           {}: current data kept first as {}",
            k["host"].as_str().unwrap_or(""),
            k["location"].as_str().unwrap_or("")
        );
    }
}

/// The run's state at the end of its journal.
fn show_final_state(events: &[Value]) {
    let state = crate::engine::run_status::run_state(events);
    println!("state: {}", state.describe());
    if matches!(
        state.state,
        crate::engine::run_status::State::Unfinished
            | crate::engine::run_status::State::RollbackIncomplete { .. }
    ) && !events
        .last()
        .is_some_and(|e| e["event"] == "rollback_finished")
    {
        println!(
            "(the journal ends here: the run or its rollback was killed, or is still running)"
        );
    }
}

/// How full each LVM snapshot was when the commit deleted it, as journaled.
fn show_fill(time: &str, e: &Value) {
    let fills: Vec<crate::modules::snapshot::SnapshotFill> =
        serde_json::from_value(e["fill"].clone()).unwrap_or_default();
    for f in fills {
        println!(
            "{time} {:<12} {:<11} {}",
            e["host"].as_str().unwrap_or(""),
            "fill",
            f.describe()
        );
    }
}
