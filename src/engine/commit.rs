//! `cutover commit RUN`: accept a run for good — its snapshots and the backups kept for undo
//! are deleted, after which it cannot be rolled back.
//!
//! Only a run that finished `ok` is committed. Deleting the rollback points of a run that
//! failed, was unwound or rolled back, or never finished throws away the only way back for no
//! gain, so such a run is refused before any host is touched (as Terraform refuses a stale
//! plan), naming its status and what to do instead. `--force` overrides it for a run that
//! ended, and first lists what it deletes, on which host. Each LVM snapshot's fill (Data%) is
//! printed and journaled before it is deleted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value as J};

use super::journal::{self, Journal};
use super::output::{Reporter, Status};
use super::recovery::{load_state, lock_controller_for, reconnect, release, AfterOptions, Done};
use super::run_status::{run_state, State};
use crate::controller::user::current_user;
use crate::modules::{ModCtx, UndoAction};
use crate::template::Templates;
use crate::transport::HostConn;

/// Why a run is not committed as it is.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// The run's status, as `cutover runs` shows it (`failed at 2026-…`).
    pub status: String,
    /// What to do instead.
    pub instead: String,
    /// `--force` may override it (false: the run may still be changing hosts).
    pub forceable: bool,
}

/// Whether a run's journal allows a commit: `None` for a run that finished `ok`. Commit
/// events of their own are left out, so a commit cut off half way can be run again.
pub fn refusal(run_id: &str, events: &[J]) -> Option<Refusal> {
    let run: Vec<J> = events
        .iter()
        .filter(|e| !e["event"].as_str().unwrap_or("").starts_with("commit_"))
        .cloned()
        .collect();
    let st = run_state(&run);
    let rollback = format!("`cutover rollback {run_id}` undoes its changes instead");
    let (instead, forceable) = match &st.state {
        State::Finished(s) if s == "ok" => return None,
        State::Unfinished => (
            format!("it was killed or is still running: `cutover resume {run_id}` finishes it (then commit), or {rollback}"),
            false,
        ),
        State::Finished(s) if s == "interrupted" => (
            format!("it was stopped by Ctrl-C: `cutover resume {run_id}` finishes it (then commit), or {rollback}"),
            true,
        ),
        State::Finished(_) => (rollback, true),
        State::Unwound(_) | State::RolledBack => (
            "its changes were undone already: there is nothing to accept".to_string(),
            true,
        ),
        State::UnwindIncomplete { .. } | State::RollbackIncomplete { .. } => (
            format!("`cutover rollback {run_id}` finishes undoing the changes left"),
            true,
        ),
        State::Committed | State::CommitIncomplete => return None,
    };
    Some(Refusal {
        status: st.describe(),
        instead,
        forceable,
    })
}

/// The refusal as the admin reads it.
fn refused(run_id: &str, r: &Refusal) -> String {
    let force = if r.forceable {
        format!("\nTo delete its snapshots and backups anyway: `cutover commit --force {run_id}` (it lists what it deletes first).")
    } else {
        String::new()
    };
    format!(
        "commit of run {run_id} refused: the run is {}, not ok; committing deletes its snapshots and backups, its only way back.\nNothing was changed: {}.{force}",
        r.status, r.instead
    )
}

/// When the run's last commit finished with everything deleted, if it did.
pub fn committed_at(events: &[J]) -> Option<String> {
    let st = run_state(events);
    (st.state == State::Committed).then_some(st.at)
}

/// A refused commit goes to the run's journal (who tried, the run's status), under the
/// controller lock: a run still going holds that lock and its journal is not written to.
async fn journal_refusal(opts: &AfterOptions, state: &super::recovery::JournalState, r: &Refusal) {
    let Ok(_lock) = lock_controller_for(opts, state) else {
        return;
    };
    if let Ok(journal) = Journal::reopen(&opts.run_id) {
        let fields =
            json!({ "user": current_user(), "run_status": r.status, "forced": opts.force });
        let _ = journal.record("commit_refused", fields).await;
    }
}

/// What a forced commit deletes, a line per snapshot set or kept copy: `HOST: WHAT`.
pub fn deletions(done: &[Done]) -> Vec<String> {
    done.iter()
        .filter_map(|d| {
            d.undo
                .kept_for_undo()
                .map(|what| format!("{}: {what}", d.host))
        })
        .collect()
}

/// `cutover commit RUN`: accept a run: remove its snapshots and the backups kept for undo.
/// After this the run cannot be rolled back.
pub async fn commit(opts: AfterOptions) -> Result<bool> {
    let state = load_state(&opts.run_id)?;
    let events = journal::read(&opts.run_id)?;
    let reporter = Reporter::new(opts.output, None, true);
    if let Some(at) = committed_at(&events) {
        // Nothing left to delete: said, and no host is touched (as a second apply of a
        // converged playbook changes nothing).
        reporter.say(&format!(
            "run {} was committed already at {at}: its snapshots and backups are gone; nothing to do",
            opts.run_id
        ));
        let _ = reporter.finish("committed");
        return Ok(true);
    }
    let refusal = refusal(&opts.run_id, &events);
    if let Some(r) = &refusal {
        if !opts.force || !r.forceable {
            journal_refusal(&opts, &state, r).await;
            bail!("{}", refused(&opts.run_id, r));
        }
        let gone = deletions(&state.done);
        reporter.say(&format!(
            "WARNING: run {} is {}, not ok; --force commits it anyway and deletes, with no way back:{}",
            opts.run_id,
            r.status,
            if gone.is_empty() {
                "\n  nothing (no snapshot or backup of the run is left)".to_string()
            } else {
                gone.iter().map(|g| format!("\n  {g}")).collect()
            }
        ));
    }
    let _controller_lock = lock_controller_for(&opts, &state)?;
    let hosts: BTreeSet<String> = state.done.iter().map(|d| d.host.clone()).collect();
    let (_inv, conns) = reconnect(&opts, &state, &hosts).await?;
    let journal = Journal::reopen(&opts.run_id)?;
    let mut started =
        json!({ "count": state.done.len(), "user": current_user(), "pid": std::process::id() });
    if let Some(r) = &refusal {
        started["forced"] = json!(true);
        started["run_status"] = json!(r.status);
        started["deletes"] = json!(deletions(&state.done));
    }
    let _ = journal.record("commit_started", started).await;
    let templates = Templates::load(&opts.templates_dir).unwrap_or_else(|_| Templates::empty());
    let mut ok = true;
    for d in &state.done {
        let Some(conn) = conns.get(&d.host) else {
            continue;
        };
        ok &= commit_one(
            d,
            conn,
            &conns,
            &templates,
            &opts.run_id,
            &journal,
            &reporter,
        )
        .await;
    }
    let _ = journal.record("commit_finished", json!({ "ok": ok })).await;
    release(conns, &opts.run_id).await;
    let _ = reporter.finish(if ok { "committed" } else { "commit incomplete" });
    Ok(ok)
}

/// Commit one change: its snapshots' fill said first, then what was kept for it deleted.
async fn commit_one(
    d: &Done,
    conn: &Arc<HostConn>,
    conns: &HashMap<String, Arc<HostConn>>,
    templates: &Templates,
    run_id: &str,
    journal: &Journal,
    reporter: &Reporter,
) -> bool {
    let vars = crate::template::Vars::new();
    let ctx = ModCtx {
        host: conn,
        become_: d.become_.as_ref(),
        timeout: Some(Duration::from_secs(600)),
        templates,
        vars: &vars,
        run_id,
        approvals: &[],
        interactive: false,
        peers: conns,
        planned: None,
    };
    let (fill_lines, fill) = fill_before_commit(&d.undo, &ctx).await;
    for line in &fill_lines {
        reporter.say(&format!("{}:{line}", d.host));
    }
    let started = Instant::now();
    let result = d.undo.commit(&ctx).await;
    let detail = match &result {
        Ok(Some(what)) => what.clone(),
        Ok(None) => return true,
        Err(e) => format!("{e:#}"),
    };
    let mut event = json!({ "host": d.host, "step": d.step, "seq": d.seq, "ok": result.is_ok(), "detail": detail });
    if !fill.is_null() {
        event["fill"] = fill;
    }
    let _ = journal.record("commit_result", event).await;
    reporter.step_result(
        "commit",
        &format!("commit: {}", d.step),
        &d.host,
        if result.is_ok() {
            Status::Changed
        } else {
            Status::Failed
        },
        &detail,
        started.elapsed(),
    );
    result.is_ok()
}

/// How full the snapshots a change kept are, before they are deleted: a line each for the
/// output (`/dev/vg0/pre-data 12.4% full`) and the journal's form (null: not a snapshot set).
/// btrfs snapshots have no fill level (they share the pool's free space), and say so.
async fn fill_before_commit(undo: &UndoAction, ctx: &ModCtx<'_>) -> (Vec<String>, J) {
    let UndoAction::SnapshotMerge(m) = undo else {
        return (Vec::new(), J::Null);
    };
    if m.backend != "lvm" {
        return (
            vec![format!(
                " snapshot set {} ({}): no fill level — btrfs snapshots share the pool's free space and do not fill up on their own",
                m.name, m.backend
            )],
            json!({ "backend": m.backend, "fill": null }),
        );
    }
    match crate::modules::snapshot::snapshot_fill(m, ctx).await {
        Ok(fills) => (fills.iter().map(|f| f.describe()).collect(), json!(fills)),
        Err(e) => (
            vec![format!(" snapshot set {}: fill unknown ({e:#})", m.name)],
            json!({ "error": format!("{e:#}") }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, mut fields: J) -> J {
        fields["event"] = json!(kind);
        fields["ts"] = json!("2026-12-07T06:00:00.000Z");
        fields
    }

    fn run(tail: &[J]) -> Vec<J> {
        let mut events = vec![
            ev("run_started", json!({ "run_id": "r1" })),
            ev(
                "step_result",
                json!({ "play": 0, "step": 0, "host": "h", "seq": 0, "status": "changed",
                        "undo": { "undo": "restore_file", "path": "/a", "backup": "/a~" } }),
            ),
        ];
        events.extend_from_slice(tail);
        events
    }

    fn finished(status: &str) -> J {
        ev("run_finished", json!({ "status": status }))
    }

    #[test]
    fn only_a_run_that_finished_ok_is_committed() {
        assert_eq!(refusal("r1", &run(&[finished("ok")])), None);
        // Resumed to the end, or a commit cut off half way and run again: still ok.
        let resumed = run(&[
            ev("run_resumed", json!({})),
            finished("ok"),
            ev("commit_started", json!({})),
        ]);
        assert_eq!(refusal("r1", &resumed), None);
    }

    #[test]
    fn a_failed_run_is_refused_with_rollback_as_the_way() {
        for status in ["failed", "unreachable", "locked"] {
            let r = refusal("r1", &run(&[finished(status)])).expect(status);
            assert!(r.status.starts_with(status), "{r:?}");
            assert!(r.instead.contains("`cutover rollback r1`"), "{r:?}");
            assert!(r.forceable);
        }
    }

    #[test]
    fn undone_runs_are_refused_as_having_nothing_to_accept() {
        let unwound = run(&[
            ev("unwind_started", json!({})),
            ev("unwind_finished", json!({ "ok": true })),
            finished("failed"),
        ]);
        let rolled_back = run(&[
            finished("ok"),
            ev("rollback_started", json!({})),
            ev("rollback_finished", json!({ "ok": true })),
        ]);
        for (events, status) in [(unwound, "failed, unwound"), (rolled_back, "rolled back")] {
            let r = refusal("r1", &events).expect(status);
            assert!(r.status.starts_with(status), "{r:?}");
            assert!(r.instead.contains("undone already"), "{r:?}");
        }
        // A rollback cut off half way: finish it.
        let half = run(&[finished("ok"), ev("rollback_started", json!({}))]);
        let r = refusal("r1", &half).unwrap();
        assert!(
            r.status.starts_with("rollback incomplete (1 change left)"),
            "{r:?}"
        );
        assert!(
            r.instead.contains("`cutover rollback r1` finishes"),
            "{r:?}"
        );
    }

    #[test]
    fn an_unfinished_run_is_refused_with_resume_and_no_force() {
        let r = refusal("r1", &run(&[])).unwrap();
        assert!(r.status.starts_with("unfinished"), "{r:?}");
        assert!(r.instead.contains("`cutover resume r1`"), "{r:?}");
        assert!(!r.forceable);
        let msg = refused("r1", &r);
        assert!(!msg.contains("--force"), "{msg}");
        // Ctrl-C: resumable too, but it ended, so --force may override.
        let r = refusal("r1", &run(&[finished("interrupted")])).unwrap();
        assert!(r.instead.contains("`cutover resume r1`"), "{r:?}");
        assert!(refused("r1", &r).contains("`cutover commit --force r1`"));
    }

    /// `lvs` output as [`snapshot_fill`](crate::modules::snapshot::snapshot_fill) reads it
    /// (`--reportformat json --binary --units b --nosuffix`), captured on the lab's LVM VM
    /// (lvm1, LVM 2.03.16): set `cgcap`, its snapshot of `data` 12.57% full (4 MiB written to a
    /// 32 MiB COW space), that of `logs` filled up (8 MiB into 4 MiB: invalid, Data% 100),
    /// beside the VG's plain LVs (`lv_snapshot_invalid` -1).
    const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"cgcap-data", "vg_name":"vg0", "lv_attr":"swi-a-s---", "origin":"scratch", "lv_size":"33554432", "snap_percent":"12.57", "lv_merging":"0", "lv_snapshot_invalid":"0", "lv_tags":"cutover-run:r1"},
                  {"lv_name":"cgcap-logs", "vg_name":"vg0", "lv_attr":"swi-I-s---", "origin":"scratch", "lv_size":"4194304", "snap_percent":"100.00", "lv_merging":"0", "lv_snapshot_invalid":"1", "lv_tags":"cutover-run:r1"},
                  {"lv_name":"data", "vg_name":"vg0", "lv_attr":"-wi-ao----", "origin":"", "lv_size":"268435456", "snap_percent":"", "lv_merging":"0", "lv_snapshot_invalid":"-1", "lv_tags":""},
                  {"lv_name":"scratch", "vg_name":"vg0", "lv_attr":"owi-a-s---", "origin":"", "lv_size":"134217728", "snap_percent":"", "lv_merging":"0", "lv_snapshot_invalid":"-1", "lv_tags":""}
              ]
          }
      ]
  }
"#;

    fn set(volumes: &[(&str, &str)]) -> crate::modules::snapshot::MergeSpec {
        serde_json::from_value(json!({
            "backend": "lvm", "name": "cgcap", "pool": "", "services": [], "reboot": false,
            "volumes": volumes.iter().map(|(n, lv)| json!({ "name": n, "vg": "vg0", "lv": lv })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn the_fill_of_each_snapshot_of_the_set_is_read_from_lvs() {
        use crate::modules::snapshot::fill_of_report;
        let fills = fill_of_report(
            LVS,
            &set(&[("data", "data"), ("logs", "logs"), ("home", "home")]),
        )
        .unwrap();
        let said: Vec<String> = fills.iter().map(|f| f.describe()).collect();
        assert_eq!(
            said,
            [
                "/dev/vg0/cgcap-data 12.6% full",
                "/dev/vg0/cgcap-logs INVALID: its COW space filled up, the rollback point was lost already",
                "/dev/vg0/cgcap-home not found (nothing to delete)",
            ]
        );
        assert_eq!(fills[0].percent, Some(12.57));
        assert_eq!(fills[1].percent, Some(100.0));
        // As journaled, and read back by `cutover show`.
        let back: Vec<crate::modules::snapshot::SnapshotFill> =
            serde_json::from_value(json!(fills)).unwrap();
        assert_eq!(back, fills);
        // Not an lvs report: an error, not a made-up fill.
        let err = fill_of_report(
            "  WARNING: Failed to connect to lvmetad",
            &set(&[("data", "data")]),
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("unexpected lvm report"));
    }

    #[test]
    fn a_forced_commit_lists_what_it_deletes_per_host() {
        let state = crate::engine::recovery::state_of(
            "r1",
            &run(&[ev(
                "step_result",
                json!({ "play": 0, "step": 1, "host": "db1", "seq": 1, "status": "changed",
                        "undo": { "undo": "snapshot_merge", "backend": "lvm", "name": "pre", "pool": "",
                                  "services": [], "reboot": false,
                                  "volumes": [{ "name": "data", "vg": "vg0", "lv": "data" }] } }),
            )]),
        )
        .unwrap();
        assert_eq!(
            deletions(&state.done),
            ["h: backup /a~", "db1: snapshot set pre (lvm: data)"]
        );
    }
}
