//! The predicted maintenance window of a production run, from the newest successful
//! rehearsal of the same inventory kept in the state directory.
//!
//! A **rehearsal** is a run that finished `ok` (without unwinding) whose journal measures a
//! window marked by `window: start` / `window: end` steps (no maintenance page): rehearse.yml
//! on staging. Its inventory is the one the run started with (`run_started.inventory_path`,
//! the canonical path), so a rehearsal against another inventory never predicts this one's.
//! A rehearsal rolled back later (staging put back) still counts: its measurement stands.
//!
//! **Scaling.** The rehearsal upgrades one node. Production stops, snapshots and switches all
//! nodes in parallel (the same wall-clock time as one node), then starts the nodes one at a
//! time, each with its health check and a cluster-safety cycle. So:
//!
//! `scaled = measured window + (N − 1) × (starts + migration + checks)`
//!
//! where N is the number of hosts in the inventory's `app_nodes` group (at least 1) and the
//! three phases are the rehearsal's own (`engine::window::PHASES`). It counts the schema
//! migration again for every further node: an upper bound (later nodes start on the migrated
//! schema), on the safe side for a go/no-go decision. The **prediction** is `scaled` plus the
//! inventory's `maintenance_window_margin` (default 20 %).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value as J};

use super::{window, Window};
use crate::engine::journal;
use crate::inventory::Inventory;

/// The group whose hosts the production run starts one at a time.
pub const APP_NODES_GROUP: &str = "app_nodes";
/// The phases each further node adds once more.
pub const PER_NODE_PHASES: [&str; 3] = ["starts", "migration", "checks"];

/// A production window predicted from a rehearsal.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The rehearsal run it comes from.
    pub run: String,
    /// The rehearsal's measured window.
    pub measured: Duration,
    /// Scaled to the inventory's app nodes.
    pub scaled: Duration,
    pub app_nodes: usize,
    pub margin_percent: f64,
    /// What the agreed window must still hold: `scaled` plus the margin.
    pub total: Duration,
}

impl Prediction {
    /// `4m12s (rehearsal RUN measured 2m50s, scaled to 2 app nodes 3m30s, + 20 % margin)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (rehearsal {} measured {}, scaled to {} app node{} {}, + {} % margin)",
            super::human(self.total),
            self.run,
            super::human(self.measured),
            self.app_nodes,
            if self.app_nodes == 1 { "" } else { "s" },
            super::human(self.scaled),
            self.margin_percent
        )
    }

    pub fn to_json(&self) -> J {
        json!({
            "run": self.run,
            "total_s": self.total.as_secs_f64().ceil() as u64,
            "measured_s": self.measured.as_secs_f64(),
            "scaled_s": self.scaled.as_secs_f64(),
            "app_nodes": self.app_nodes,
            "margin_percent": self.margin_percent,
        })
    }
}

/// The rehearsal's window scaled to `app_nodes` nodes (the rule above).
pub fn scale(w: &Window, app_nodes: usize) -> Duration {
    let per_node: Duration = w
        .phases
        .iter()
        .filter(|(p, _)| PER_NODE_PHASES.contains(p))
        .map(|(_, d)| *d)
        .sum();
    let further = u32::try_from(app_nodes.max(1) - 1).unwrap_or(u32::MAX);
    w.total + per_node.saturating_mul(further)
}

/// `d` plus `percent` % of it.
pub fn with_margin(d: Duration, percent: f64) -> Duration {
    d.mul_f64(1.0 + percent / 100.0)
}

/// A rehearsal's measured window, if these events are one: finished ok without unwinding, a
/// window marked by `window:` steps, closed by the playbook.
pub fn rehearsal_window(events: &[J]) -> Option<Window> {
    let finished_ok = events
        .iter()
        .rev()
        .find(|e| e["event"] == "run_finished")
        .is_some_and(|e| e["status"] == "ok");
    let unwound = events.iter().any(|e| e["event"] == "unwind_started");
    if !finished_ok || unwound {
        return None;
    }
    window(events).filter(|w| w.rehearsed && !w.still_open && !w.unwound)
}

/// The path a run's journal names its inventory by: canonical, so `-i inv.yml` and
/// `-i ./x/../inv.yml` are one inventory.
pub fn inventory_id(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The newest rehearsal of this inventory in the state directory, with its window.
pub fn newest_rehearsal(inventory: &Path) -> Option<(String, Window)> {
    let me = inventory_id(inventory);
    let runs = journal::list_runs().ok()?;
    runs.into_iter()
        .filter(|(_, first, _)| first["inventory_path"].as_str() == Some(&me.to_string_lossy()))
        .find_map(|(id, _, _)| {
            let events = journal::read(&id).ok()?;
            rehearsal_window(&events).map(|w| (id, w))
        })
}

/// The predicted window of a production run with this inventory, if a rehearsal is on record.
pub fn predict(inv: &Inventory) -> Option<Prediction> {
    let (run, w) = newest_rehearsal(&inv.path)?;
    let app_nodes = inv.group_hosts(APP_NODES_GROUP).len().max(1);
    let scaled = scale(&w, app_nodes);
    Some(Prediction {
        run,
        measured: w.total,
        scaled,
        app_nodes,
        margin_percent: inv.window_margin_percent,
        total: with_margin(scaled, inv.window_margin_percent),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: u64) -> String {
        format!("2026-12-07T15:{:02}:{:02}.000Z", 20 + s / 60, s % 60)
    }

    /// A rehearsal's journal: marked window 10..70 s, start + migration 20 s, checks 10 s.
    fn rehearsal(finished: &str) -> Vec<J> {
        let step = |name: &str, phase: &str, end: u64, ms: u64| {
            json!({ "event": "step_result", "host": "staging", "name": name, "status": "changed",
                    "duration_ms": ms, "module": "command", "phase": phase, "ts": ts(end) })
        };
        let mut start = step("T0", "other", 10, 0);
        start["window"] = json!("start");
        let mut end = step("T4", "other", 70, 0);
        end["window"] = json!("end");
        vec![
            json!({ "event": "run_started", "ts": ts(0) }),
            start,
            step("Stop wiki", "stops", 15, 5000),
            step("Start the node alone", "migration", 40, 20_000),
            step("cluster safety", "checks", 55, 10_000),
            end,
            json!({ "event": "run_finished", "status": finished, "ts": ts(71) }),
        ]
    }

    #[test]
    fn a_rehearsal_is_measured_from_its_window_marks() {
        let w = rehearsal_window(&rehearsal("ok")).expect("a rehearsal");
        assert_eq!(w.total, Duration::from_secs(60));
        assert!(w.rehearsed);
    }

    #[test]
    fn failed_unwound_or_paged_runs_are_not_rehearsals() {
        assert_eq!(rehearsal_window(&rehearsal("failed")), None);
        let mut unwound = rehearsal("ok");
        unwound.insert(6, json!({ "event": "unwind_started", "ts": ts(70) }));
        assert_eq!(rehearsal_window(&unwound), None);
        // A production run (its window is the page's) predicts nothing.
        let mut paged = rehearsal("ok");
        for e in &mut paged {
            if let Some(m) = e.as_object_mut().and_then(|m| m.remove("window")) {
                e["page"] = json!(if m == "start" { "on" } else { "off" });
            }
        }
        assert!(window(&paged).is_some());
        assert_eq!(rehearsal_window(&paged), None);
        // No end mark: the window is still open.
        let mut open = rehearsal("ok");
        open.remove(5);
        assert_eq!(rehearsal_window(&open), None);
    }

    #[test]
    fn each_further_node_adds_its_start_migration_and_checks() {
        let w = rehearsal_window(&rehearsal("ok")).unwrap();
        // 60 s measured; starts + migration + checks = 20 + 10 = 30 s per further node.
        assert_eq!(scale(&w, 1), Duration::from_secs(60));
        assert_eq!(scale(&w, 0), Duration::from_secs(60));
        assert_eq!(scale(&w, 2), Duration::from_secs(90));
        assert_eq!(scale(&w, 4), Duration::from_secs(150));
        assert_eq!(
            with_margin(Duration::from_secs(90), 20.0),
            Duration::from_secs(108)
        );
        assert_eq!(
            with_margin(Duration::from_secs(90), 0.0),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn the_prediction_describes_where_it_comes_from() {
        let p = Prediction {
            run: "20261207-152000-abcd".into(),
            measured: Duration::from_secs(60),
            scaled: Duration::from_secs(90),
            app_nodes: 2,
            margin_percent: 20.0,
            total: Duration::from_secs(108),
        };
        assert_eq!(
            p.describe(),
            "1m48s (rehearsal 20261207-152000-abcd measured 1m00s, scaled to 2 app nodes 1m30s, + 20 % margin)"
        );
        assert_eq!(p.to_json()["total_s"], 108);
        assert_eq!(p.to_json()["run"], "20261207-152000-abcd");
    }
}
