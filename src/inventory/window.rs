//! The agreed maintenance window an inventory declares, and the margin added to a prediction:
//!
//! ```yaml
//! maintenance_window: { start: "2026-12-08T01:00:00+01:00", end: "2026-12-08T05:00:00+01:00" }
//! maintenance_window_margin: 20      # percent added to the predicted window (default 20)
//! ```
//!
//! Read when the inventory is read, so `check`, `plan` and `apply` refuse a malformed window
//! (at its file:line:column) before any host is touched.

use chrono::{DateTime, FixedOffset};

use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::yaml::{Node, Value};

/// The margin when the inventory names none, in percent.
pub const DEFAULT_MARGIN_PERCENT: f64 = 20.0;
/// A larger margin is a typo (`2000` for `20`): a prediction tripled still fits a window only
/// a planner would have agreed to on purpose.
pub const MAX_MARGIN_PERCENT: f64 = 500.0;

const WINDOW_KEYS: &[&str] = &["start", "end"];

/// The window agreed with the users: the maintenance page may go on only inside it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgreedWindow {
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    /// Where `maintenance_window:` is written.
    pub pos: Pos,
}

impl AgreedWindow {
    /// `{ start, end }` as written (RFC 3339, the offsets the inventory gave).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "start": self.start.to_rfc3339(), "end": self.end.to_rfc3339() })
    }
}

/// The inventory's `maintenance_window:` and `maintenance_window_margin:` (default 20 %).
pub fn read(top: &Fields, diags: &mut Diagnostics) -> (Option<AgreedWindow>, f64) {
    let window = top
        .get("maintenance_window")
        .and_then(|n| read_window(n, diags));
    let margin = top
        .get("maintenance_window_margin")
        .and_then(|n| read_margin(n, diags))
        .unwrap_or(DEFAULT_MARGIN_PERCENT);
    (window, margin)
}

/// `maintenance_window:`, checked: a mapping of exactly `start` and `end`, both RFC 3339
/// date-times with an offset, the end after the start.
pub fn read_window(node: &Node, diags: &mut Diagnostics) -> Option<AgreedWindow> {
    let what = "`maintenance_window`";
    let f = Fields::new(node, what, WINDOW_KEYS, diags)?;
    if let Value::Null = node.value {
        diags.push(Diagnostic::new(
            node.pos.clone(),
            "expected a mapping `{ start: RFC 3339, end: RFC 3339 }` for `maintenance_window`, found nothing",
        ));
        return None;
    }
    let start = f
        .require("start", what, diags)
        .and_then(|n| time(n, "start", diags));
    let end = f
        .require("end", what, diags)
        .and_then(|n| time(n, "end", diags));
    let (start, end) = (start?, end?);
    if end <= start {
        let at = f.get("end").map_or(node.pos.clone(), |n| n.pos.clone());
        diags.push(Diagnostic::new(
            at,
            format!(
                "`maintenance_window`: end {} is not after start {}",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        ));
        return None;
    }
    Some(AgreedWindow {
        start,
        end,
        pos: node.pos.clone(),
    })
}

/// One end of the window: an RFC 3339 date-time with its offset (`Z` or `+01:00`).
fn time(node: &Node, key: &str, diags: &mut Diagnostics) -> Option<DateTime<FixedOffset>> {
    let text = decode::string(node, &format!("maintenance_window.{key}"), diags)?;
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(
                Diagnostic::new(
                    node.pos.clone(),
                    format!(
                        "`maintenance_window.{key}`: \"{}\" is not an RFC 3339 date-time ({e})",
                        crate::diag::one_line(&text)
                    ),
                )
                .with_help("write it like 2026-12-08T01:00:00+01:00 or 2026-12-08T00:00:00Z"),
            );
            None
        }
    }
}

/// `maintenance_window_margin:` in percent: a number (`20`, `12.5`) or a string `"20%"`,
/// from 0 to [`MAX_MARGIN_PERCENT`].
pub fn read_margin(node: &Node, diags: &mut Diagnostics) -> Option<f64> {
    let value = match &node.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse().ok()),
        _ => None,
    };
    let found = match &node.value {
        Value::Str(s) => format!("\"{}\"", crate::diag::one_line(s)),
        other => other.kind().to_string(),
    };
    match value {
        Some(p) if p.is_finite() && (0.0..=MAX_MARGIN_PERCENT).contains(&p) => Some(p),
        Some(p) => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("`maintenance_window_margin` must be between 0 and {MAX_MARGIN_PERCENT} (percent), found {p}"),
            ));
            None
        }
        None => {
            diags.push(
                Diagnostic::new(
                    node.pos.clone(),
                    format!("expected a percentage for `maintenance_window_margin` (a number like 20, or \"20%\"), found {found}"),
                )
                .with_help("the margin is added to the predicted window: 20 means 20 %"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn node(text: &str) -> Node {
        let src = Arc::new(crate::yaml::Source {
            path: Path::new("inv.yml").to_path_buf(),
            text: String::new(),
        });
        crate::yaml::parse_bytes(src, text.as_bytes().to_vec())
            .unwrap()
            .1
    }

    /// `FILE:LINE:COL: message (help)`, one line.
    fn located(d: &Diagnostic) -> String {
        format!(
            "{}: {} ({})",
            d.pos,
            d.message,
            d.help.as_deref().unwrap_or("")
        )
    }

    fn window(text: &str) -> (Option<AgreedWindow>, Vec<String>) {
        let mut d = Diagnostics::default();
        let root = node(text);
        let w = read_window(&root, &mut d);
        (w, d.sorted().iter().map(located).collect())
    }

    #[test]
    fn a_window_with_offsets_is_read() {
        let (w, d) = window("{ start: \"2026-12-08T01:00:00+01:00\", end: 2026-12-08T04:00:00Z }");
        assert!(d.is_empty(), "{d:?}");
        let w = w.unwrap();
        assert_eq!((w.end - w.start).num_hours(), 4);
    }

    #[test]
    fn every_malformed_window_is_located() {
        for (text, want) in [
            ("[a, b]", "inv.yml:1:1: expected a mapping for `maintenance_window`, found a list"),
            ("\"tonight\"", "expected a mapping for `maintenance_window`, found a string"),
            ("{ start: 2026-12-08T01:00:00Z }", "inv.yml:1:1: `maintenance_window` is missing required key `end`"),
            ("{ end: 2026-12-08T01:00:00Z }", "missing required key `start`"),
            ("{ start: 2026-12-08T01:00:00Z, ende: 2026-12-08T02:00:00Z }", "inv.yml:1:32: unknown key `ende`"),
            ("{ start: 2026-12-08 01:00, end: 2026-12-08T02:00:00Z }", "inv.yml:1:10: `maintenance_window.start`: \"2026-12-08 01:00\" is not an RFC 3339 date-time"),
            ("{ start: 2026-12-08T01:00:00, end: 2026-12-08T02:00:00Z }", "is not an RFC 3339 date-time"),
            ("{ start: 2026-12-08T01:00:00Z, end: 1765000000 }", "inv.yml:1:37: expected a string for `maintenance_window.end`, found an integer"),
            ("{ start: 2026-12-08T02:00:00Z, end: 2026-12-08T02:00:00Z }", "inv.yml:1:37: `maintenance_window`: end 2026-12-08T02:00:00+00:00 is not after start"),
            ("{ start: 2026-12-08T03:00:00+01:00, end: 2026-12-08T01:30:00Z }", "is not after start"),
            ("~", "found nothing"),
        ] {
            let (w, d) = window(text);
            assert!(w.is_none(), "{text}");
            assert!(d.iter().any(|l| l.contains(want)), "{text}: want {want} in {d:?}");
        }
    }

    #[test]
    fn a_near_miss_key_is_suggested() {
        let (_, d) = window("{ stat: 2026-12-08T01:00:00Z, end: 2026-12-08T02:00:00Z }");
        assert!(
            d.iter().any(|l| l.contains("did you mean `start`")),
            "{d:?}"
        );
    }

    #[test]
    fn margins() {
        let margin = |text: &str| {
            let mut d = Diagnostics::default();
            let m = read_margin(&node(text), &mut d);
            (m, d.sorted().iter().map(located).collect::<Vec<_>>())
        };
        assert_eq!(margin("20").0, Some(20.0));
        assert_eq!(margin("12.5").0, Some(12.5));
        assert_eq!(margin("\"30 %\"").0, Some(30.0));
        assert_eq!(margin("0").0, Some(0.0));
        for (text, want) in [
            ("-5", "must be between 0 and 500 (percent), found -5"),
            ("2000", "found 2000"),
            ("\"twenty\"", "expected a percentage for `maintenance_window_margin` (a number like 20, or \"20%\"), found \"twenty\""),
            ("\"20\"", "found \"20\""),
            ("[20]", "found a list"),
            ("1e9", "must be between"),
        ] {
            let (m, d) = margin(text);
            assert!(m.is_none(), "{text}");
            assert!(d.iter().any(|l| l.contains(want) && l.starts_with("inv.yml:1:1")), "{text}: want {want} in {d:?}");
        }
    }
}
