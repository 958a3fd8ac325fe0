//! "Nothing is lost" for a rollback hours after the window: merging a snapshot back discards
//! whatever users wrote since the window closed. Before a rollback merges anything, the state
//! of every host with a `write_mark` at `window_closed` and a snapshot still to merge is compared
//! with that mark ([`crate::modules::write_mark::since`]). Writes found refuse the rollback,
//! unless the admin names the loss (`--discard-writes-since-window`); then the current state of
//! every volume is kept (a second snapshot set) before it is merged, and where it is kept is
//! printed and journaled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as J};

use super::recovery::Done;
use crate::modules::write_mark::{self, HostMarks};
use crate::modules::{ModCtx, UndoAction};
use crate::template::Templates;
use crate::transport::HostConn;

/// What a rollback would discard on one host.
#[derive(Clone, Debug, PartialEq)]
pub struct Lost {
    pub host: String,
    /// When the window closed (the mark was journaled).
    pub since: String,
    pub what: Vec<String>,
}

/// The window marks whose host still has a snapshot to merge back (once merged, nothing is
/// left there to lose, and the host's log of writes went back with it).
pub fn guarded_marks(events: &[J], done: &[Done]) -> BTreeMap<String, HostMarks> {
    let mut marks = write_mark::marks_in(events, write_mark::WINDOW_CLOSED);
    marks.retain(|host, _| {
        done.iter()
            .any(|d| &d.host == host && matches!(d.undo, UndoAction::SnapshotMerge(_)))
    });
    marks
}

/// Compare each host with each of its marks. A host that cannot be read counts as losing
/// writes: the rollback cannot tell that nothing would be lost.
pub async fn lost_writes(
    marks: &BTreeMap<String, HostMarks>,
    conns: &HashMap<String, Arc<HostConn>>,
    templates: &Templates,
    run_id: &str,
) -> Vec<Lost> {
    let vars = crate::template::Vars::new();
    let mut out = Vec::new();
    for (host, host_marks) in marks {
        let Some(conn) = conns.get(host) else {
            out.push(Lost {
                host: host.clone(),
                since: host_marks
                    .first()
                    .map(|(_, at)| at.clone())
                    .unwrap_or_default(),
                what: vec![format!(
                    "no connection to {host}: cannot tell what was written"
                )],
            });
            continue;
        };
        let ctx = ModCtx {
            host: conn,
            become_: None,
            timeout: Some(Duration::from_secs(600)),
            templates,
            vars: &vars,
            run_id,
            approvals: &[],
            interactive: false,
            peers: conns,
            planned: None,
        };
        for (mark, at) in host_marks {
            let what = match write_mark::since(mark, &ctx).await {
                Ok(w) => w,
                Err(e) => vec![format!(
                    "cannot tell what was written since the window closed ({e:#})"
                )],
            };
            if !what.is_empty() {
                out.push(Lost {
                    host: host.clone(),
                    since: at.clone(),
                    what,
                });
            }
        }
    }
    out
}

/// The loss, one line per host and kind.
pub fn describe(lost: &[Lost]) -> String {
    let mut s = String::from(
        "the rollback would discard what was written after the maintenance window closed:",
    );
    for l in lost {
        for w in &l.what {
            s.push_str(&format!(
                "\n  {}: since the window closed at {}: {w}",
                l.host, l.since
            ));
        }
    }
    s
}

pub fn to_json(lost: &[Lost]) -> J {
    json!(lost
        .iter()
        .map(|l| json!({ "host": l.host, "since": l.since, "what": l.what }))
        .collect::<Vec<_>>())
}

/// The name of the set that keeps the current state: `kept-SET-YYYYMMDDHHMMSS`.
fn keep_name(set: &str, stamp: &str) -> String {
    format!("kept-{set}-{stamp}")
}

/// Make every snapshot merge keep the volumes' current state first; returns where, per host.
pub fn keep_current(done: &mut [Done], stamp: &str) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for d in done.iter_mut() {
        if let UndoAction::SnapshotMerge(m) = &mut d.undo {
            m.keep_current_as = Some(keep_name(&m.name, stamp));
            kept.extend(m.kept_locations().into_iter().map(|l| (d.host.clone(), l)));
        }
    }
    kept
}

/// Now, for [`keep_current`]: `20261207061203`.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::snapshot::{MergeSpec, SnapVolume};

    fn merge(host: &str, set: &str) -> Done {
        Done {
            host: host.into(),
            step: "Snapshot every data volume".into(),
            seq: 1,
            undo: UndoAction::SnapshotMerge(MergeSpec {
                backend: "btrfs".into(),
                name: set.into(),
                volumes: vec![SnapVolume {
                    name: "mysql".into(),
                    vg: None,
                    lv: None,
                    mount: Some("/var/lib/mysql".into()),
                }],
                pool: "/srv/vol".into(),
                services: vec!["mariadb".into()],
                reboot: false,
                keep_current_as: None,
            }),
            become_: None,
            partial: false,
        }
    }

    #[test]
    fn only_hosts_with_a_merge_left_are_guarded() {
        let mark = |host: &str| {
            json!({ "event": "step_result", "host": host, "status": "ok", "ts": "2026-12-07T06:00:00Z",
                    "mark": { "point": "window_closed", "time": "1", "mysql": { "file": "mysql-bin.000001", "pos": 4 } } })
        };
        let events = [mark("db1"), mark("db2")];
        let done = vec![merge("db1", "pre")];
        let g = guarded_marks(&events, &done);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["db1"]);
        assert!(guarded_marks(&events, &[]).is_empty());
    }

    #[test]
    fn every_merge_keeps_the_current_state_and_says_where() {
        let mut done = vec![merge("db1", "pre"), merge("db2", "pre")];
        let kept = keep_current(&mut done, "20261207061203");
        assert_eq!(
            kept,
            [
                (
                    "db1".to_string(),
                    "/srv/vol/.snapshots/kept-pre-20261207061203-mysql".to_string()
                ),
                (
                    "db2".to_string(),
                    "/srv/vol/.snapshots/kept-pre-20261207061203-mysql".to_string()
                )
            ]
        );
        // Journaled with the undo, so `show` and a later rollback know it.
        let j = serde_json::to_value(&done[0].undo).unwrap();
        assert_eq!(j["keep_current_as"], "kept-pre-20261207061203");
    }

    #[test]
    fn the_loss_names_host_time_and_what() {
        let lost = [Lost {
            host: "db1".into(),
            since: "2026-12-07T06:00:00Z".into(),
            what: vec!["database: 2 transactions on wiki.PAGES (2)".into()],
        }];
        assert_eq!(
            describe(&lost),
            "the rollback would discard what was written after the maintenance window closed:\n  db1: since the window closed at 2026-12-07T06:00:00Z: database: 2 transactions on wiki.PAGES (2)"
        );
    }
}
