//! The maintenance window's breakdown, computed from a run's journal alone (so `cutover show`
//! gives the same numbers as the end of the run, and a resumed or unwound run is measured too).
//!
//! - **Start**: the `step_result` of the step that turned the page on (`page: "on"`), or, in a
//!   run without a page (a rehearsal on staging), of the step marked `window: start`.
//! - **End**: the `step_result` that turned it off (`page: "off"`) or is marked `window: end`,
//!   or the `undo_result` of a way back that turned the page off (an unwind or rollback
//!   rerunning `maintenance` with `state: off`). Never turned off: the window ends at the run's
//!   last event and is *still open*.
//! - **Phases**: each step inside the window is counted in the phase its `step_result` names
//!   (`phase`, classified when the step ran by [`phase_of`]); each way back run inside it (an
//!   `undo_result`, of an unwind or rollback) in `unwind`.
//! - **Remote time**: a step ran remotely from `ts - duration_ms` to `ts`. Steps on several hosts
//!   in parallel overlap, so the wall-clock **union** of those intervals (clipped to the window)
//!   is counted, not their sum; each phase is the union of its own steps' intervals too.
//! - **Cutover's own work**: the window minus the remote time (planning, journaling, connecting,
//!   waiting between steps). A resumed run's window spans the stop: the time the controller was
//!   down counts there, and the breakdown says so.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value as J};

pub mod fit;
pub mod prediction;

/// The phases of a window, in the order they are printed.
pub const PHASES: [&str; 8] = [
    "stops",
    "snapshots",
    "switch",
    "migration",
    "starts",
    "checks",
    "unwind",
    "other",
];

/// A step's phase: the one it names (`phase:`), else the one its module and its arguments as
/// written tell. The table:
///
/// | phase | steps |
/// |---|---|
/// | stops | `service` with `state: stopped`; `mysql_replication` with `state: stopped` |
/// | starts | `service` with `state: started`/`restarted`/`reloaded`; `mysql_replication` `started` |
/// | snapshots | `snapshot` |
/// | switch | `file` with `state: link` (the release symlink), `symlink` |
/// | checks | `http_check`, `cluster_safety`, `wait_for`, `assert`, `write_mark`, `mysql_replication` `synced` |
/// | other | everything else (commands, templates, the page switch itself, …) |
///
/// Nothing tells a start that migrates the schema from another start: such a step says
/// `phase: migration`.
pub fn phase_of(
    module: &str,
    args: &Map<String, J>,
    declared: Option<&'static str>,
) -> &'static str {
    if let Some(p) = declared {
        return p;
    }
    let state = args.get("state").and_then(J::as_str).unwrap_or("");
    match (module, state) {
        ("service" | "mysql_replication", "stopped") => "stops",
        ("service", "started" | "restarted" | "reloaded") => "starts",
        ("mysql_replication", "started") => "starts",
        ("snapshot", _) => "snapshots",
        ("file", "link") | ("symlink", _) => "switch",
        ("http_check" | "cluster_safety" | "wait_for" | "assert" | "write_mark", _) => "checks",
        ("mysql_replication", "synced") => "checks",
        _ => "other",
    }
}

/// The maintenance window of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Time under the page.
    pub total: Duration,
    /// Wall-clock time of each phase ([`PHASES`] order; phases with no step are left out).
    pub phases: Vec<(&'static str, Duration)>,
    /// Wall-clock time some remote step was running.
    pub remote: Duration,
    /// The page was never turned off in this run.
    pub still_open: bool,
    /// The run was stopped and resumed while the page was on.
    pub spans_resume: bool,
    /// The page went off by a way back (unwind or rollback), not by the playbook.
    pub unwound: bool,
    /// Marked by `window: start` (a rehearsal without a page), not by a maintenance page.
    pub rehearsed: bool,
}

/// Milliseconds since the epoch of an event's `ts`.
fn ts_ms(e: &J) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(e["ts"].as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Did this event turn the page on (`Some(true)`) or off (`Some(false)`)?
fn page_switch(e: &J) -> Option<bool> {
    match e["event"].as_str()? {
        "step_result" if e["status"] == "ok" || e["status"] == "changed" => {
            match (e["page"].as_str(), e["window"].as_str()) {
                (Some("on"), _) | (_, Some("start")) => Some(true),
                (Some("off"), _) | (_, Some("end")) => Some(false),
                _ => None,
            }
        }
        "undo_result" if e["ok"] == true => {
            let u = &e["undo"];
            let off = u["undo"] == "rerun"
                && u["module"] == "maintenance"
                && matches!(
                    u["args"]["state"].as_str(),
                    Some("off" | "absent" | "false")
                );
            off.then_some(false)
        }
        _ => None,
    }
}

/// The length of the union of intervals, each clipped to `[lo, hi]`.
fn union_ms(mut spans: Vec<(u64, u64)>, lo: u64, hi: u64) -> u64 {
    spans.retain_mut(|s| {
        *s = (s.0.max(lo), s.1.min(hi));
        s.0 < s.1
    });
    spans.sort_unstable();
    let (mut total, mut cur): (u64, Option<(u64, u64)>) = (0, None);
    for (a, b) in spans {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + cur.map_or(0, |(a, b)| b - a)
}

/// The run's maintenance window, or `None` if no step turned the page on.
pub fn window(events: &[J]) -> Option<Window> {
    let start_at = events.iter().position(|e| page_switch(e) == Some(true))?;
    let start = ts_ms(&events[start_at])?;
    let end_at = events[start_at..]
        .iter()
        .position(|e| page_switch(e) == Some(false))
        .map(|i| start_at + i);
    let end = match end_at {
        Some(i) => ts_ms(&events[i])?,
        None => events.iter().filter_map(ts_ms).max()?,
    };
    let inside = &events[start_at + 1..end_at.unwrap_or(events.len())];
    let mut spans: Vec<(&str, (u64, u64))> = Vec::new();
    // The step (or way back) that turns the page off runs under the page too.
    let last = end_at.map(|i| &events[i]);
    for e in inside.iter().chain(last) {
        let (Some(to), Some(d)) = (ts_ms(e), e["duration_ms"].as_u64()) else {
            continue;
        };
        let phase = match e["event"].as_str() {
            Some("undo_result") => "unwind",
            Some("step_result") => PHASES
                .iter()
                .find(|p| e["phase"] == **p)
                .copied()
                .unwrap_or("other"),
            _ => continue,
        };
        spans.push((phase, (to.saturating_sub(d), to)));
    }
    let of = |keep: &dyn Fn(&str) -> bool| {
        let s = spans.iter().filter(|(p, _)| keep(p)).map(|(_, s)| *s);
        Duration::from_millis(union_ms(s.collect(), start, end))
    };
    let phases = PHASES
        .iter()
        .filter(|p| spans.iter().any(|(q, _)| q == *p))
        .map(|p| (*p, of(&|q| q == *p)))
        .collect();
    Some(Window {
        total: Duration::from_millis(end.saturating_sub(start)),
        phases,
        remote: of(&|_| true),
        still_open: end_at.is_none(),
        spans_resume: inside.iter().any(|e| e["event"] == "run_resumed"),
        unwound: end_at.is_some_and(|i| events[i]["event"] == "undo_result"),
        rehearsed: events[start_at]["page"].as_str() != Some("on"),
    })
}

/// A duration as people read it: `2m31s`, `12s`, `2.1s`, `340ms`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=3_599_999 => {
            let s = (ms + 500) / 1000;
            if s < 60 {
                format!("{s}s")
            } else {
                format!("{}m{:02}s", s / 60, s % 60)
            }
        }
        _ => {
            let m = (ms + 30_000) / 60_000;
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

impl Window {
    /// Cutover's own share: the window minus the remote time.
    pub fn own(&self) -> Duration {
        self.total.saturating_sub(self.remote)
    }

    /// One line: `maintenance window 2m31s: stops 12s, …; cutover's own work 2.1s (1%)`.
    pub fn describe(&self) -> String {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {}", human(*d)))
            .collect();
        let pct = match self.total.as_millis() {
            0 => 0,
            t => (self.own().as_millis() * 100 + t / 2) / t,
        };
        let mut notes = Vec::new();
        if self.still_open {
            notes.push("still open: the page was not turned off");
        }
        if self.unwound {
            notes.push("the page went off by the way back");
        }
        if self.rehearsed {
            notes.push("rehearsed: marked by `window:` steps, no maintenance page");
        }
        if self.spans_resume {
            notes.push("spans a stop and resume: the time stopped counts as cutover's own");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        format!(
            "maintenance window {}{notes}: {}; cutover's own work {} ({pct}%)",
            human(self.total),
            if phases.is_empty() {
                "no steps".to_string()
            } else {
                phases.join(", ")
            },
            human(self.own()),
        )
    }

    /// The window as a JSON field (milliseconds).
    pub fn to_json(&self) -> J {
        let phases: Map<String, J> = self
            .phases
            .iter()
            .map(|(p, d)| (p.to_string(), json!(d.as_millis() as u64)))
            .collect();
        json!({
            "total_ms": self.total.as_millis() as u64,
            "phases_ms": phases,
            "remote_ms": self.remote.as_millis() as u64,
            "own_ms": self.own().as_millis() as u64,
            "still_open": self.still_open,
            "spans_resume": self.spans_resume,
            "unwound": self.unwound,
            "rehearsed": self.rehearsed,
        })
    }
}

#[cfg(test)]
mod tests;
