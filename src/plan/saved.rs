//! A saved plan (`cutover plan --out PLAN.json`) read back for `cutover apply PLAN.json`, and
//! what refuses it before any host is contacted: a format this cutover does not read, inputs
//! other than those it was made from, hosts nothing was reviewed for.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Entry, Input, Plan, SCHEMA};
use crate::diag::{Diagnostic, Diagnostics, Pos};

/// The largest saved plan read (its diffs make it much larger than a playbook).
const MAX_PLAN_BYTES: u64 = 256 * 1024 * 1024;

/// Is `path` meant as a saved plan? A plan is a JSON object; a playbook is a YAML list. Only
/// the start of a regular file is looked at (a FIFO or a device is left to the playbook's
/// reader, which refuses it).
pub fn looks_like_plan(path: &Path) -> bool {
    use std::io::Read;
    // Opened without blocking and refused unless regular (a FIFO would wait for a writer).
    let Ok((f, _)) = crate::input::open_regular(path) else {
        return false;
    };
    let mut start = Vec::new();
    if f.take(4096).read_to_end(&mut start).is_err() {
        return false;
    }
    start
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Read `path` as a saved plan of the format this cutover knows.
pub fn read(path: &Path) -> Result<Plan, Diagnostics> {
    let fail = |d: Diagnostic| {
        let mut ds = Diagnostics::default();
        ds.push(d);
        Err(ds)
    };
    // The one bounded, non-blocking reader: the size limit holds while reading.
    let text = match crate::input::read(path, MAX_PLAN_BYTES)
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|_| "is not UTF-8 text".to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            return fail(Diagnostic::file_error(
                path,
                format!("{}: {e} (saved plans)", path.display()),
            ))
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fail(json_error(path, &e, "is not valid JSON")),
    };
    let schema_at = position_of(path, &text, "\"schema\"");
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return fail(
                Diagnostic::new(
                    schema_at,
                    format!(
                        "{} is a plan in format `{other}`, which this cutover does not know (it reads `{SCHEMA}`)",
                        path.display()
                    ),
                )
                .with_help("make the plan again with this cutover (`cutover plan … --out FILE`) and have it reviewed"),
            )
        }
        None => {
            return fail(
                Diagnostic::new(
                    Pos::start(path),
                    format!(
                        "{} is JSON but no cutover plan: it has no `schema: \"{SCHEMA}\"`",
                        path.display()
                    ),
                )
                .with_help("pass a file saved by `cutover plan --out FILE`, or a playbook"),
            )
        }
    }
    match serde_json::from_str::<Plan>(&text) {
        Ok(plan) => Ok(plan),
        Err(e) => fail(json_error(
            path,
            &e,
            &format!("is not a valid `{SCHEMA}` plan"),
        )),
    }
}

/// A JSON error at its line and column, without serde's own "at line … column …".
fn json_error(path: &Path, e: &serde_json::Error, what: &str) -> Diagnostic {
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    Diagnostic::new(
        Pos::new(path, e.line() as u32, e.column() as u32),
        format!("{} {what}: {message}", path.display()),
    )
}

/// Where `needle` first occurs in `text` (1-based), or the file's start.
fn position_of(path: &Path, text: &str, needle: &str) -> Pos {
    let Some(at) = text.find(needle) else {
        return Pos::start(path);
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Pos::new(path, line as u32, col as u32)
}

/// Why `saved` cannot be applied as it was reviewed, known before any host is contacted:
/// hosts that were unreachable when it was made, and inputs that differ from its own.
pub fn refusals(path: &Path, saved: &Plan, now: &[Input]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    // Each refusal points at the plan's line it is about.
    let text = crate::input::read(path, MAX_PLAN_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let line_of = |needle: String| position_of(path, &text, &needle);
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    for u in &saved.unreachable {
        diags.push(
            Diagnostic::new(
                line_of(format!("\"host\": {}", json(&u.host))),
                format!(
                    "{}: host `{}` was unreachable when the plan was made ({}); nothing was reviewed for it",
                    path.display(),
                    u.host,
                    u.error.lines().next().unwrap_or("")
                ),
            )
            .with_help("make a new plan once every host answers (or one whose --limit leaves it out)"),
        );
    }
    let current: BTreeMap<&str, &Input> = now.iter().map(|i| (i.key.as_str(), i)).collect();
    for (key, hash) in &saved.inputs {
        let why = match current.get(key.as_str()) {
            Some(i) if i.sha256 == *hash => continue,
            Some(i) => format!(
                "{} `{key}` differs from the one the plan was made from",
                i.kind
            ),
            None => format!("`{key}` was an input of the plan and is not one of this run"),
        };
        diags.push(input_refusal(path, line_of(format!("{}:", json(key))), why));
    }
    for i in now.iter().filter(|i| !saved.inputs.contains_key(&i.key)) {
        let why = format!(
            "{} `{}` is an input of this run but not of the plan",
            i.kind, i.key
        );
        diags.push(input_refusal(path, line_of("\"inputs\":".into()), why));
    }
    diags
}

/// The hosts the plan says it covers (what a reviewer reads first) must be the hosts this
/// run covers: a plan edited to name other hosts is refused before any is contacted.
pub fn host_refusal(path: &Path, saved: &Plan, covered: &[String]) -> Option<Diagnostic> {
    if saved.hosts == covered {
        return None;
    }
    let text = crate::input::read(path, MAX_PLAN_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let list = |h: &[String]| {
        if h.is_empty() {
            "no host".to_string()
        } else {
            h.join(", ")
        }
    };
    Some(
        Diagnostic::new(
            position_of(path, &text, "\"hosts\":"),
            format!(
                "{}: the plan covers {}, but this run would cover {}",
                path.display(),
                list(&saved.hosts),
                list(covered)
            ),
        )
        .with_help("make a new plan and have it reviewed"),
    )
}

fn input_refusal(path: &Path, at: Pos, why: String) -> Diagnostic {
    Diagnostic::new(at, format!("{}: {why}", path.display())).with_help(
        "apply with the inputs the plan was made from (the same files and -e), or make a new plan and have it reviewed",
    )
}

/// What changed on the host between the plan and now, for a step whose diff changed: the host's
/// side of both diffs (context and removed lines), diffed; when that side is the same (what
/// would be written changed instead), the two diffs themselves. Secrets are masked on both
/// sides (the saved plan holds them masked).
pub fn content_drift(planned: &Entry, now: &Entry) -> Option<String> {
    let then = planned.diff.as_deref().unwrap_or("");
    let now_diff = crate::secrets::redact(now.diff.as_deref().unwrap_or("")).into_owned();
    if then == now_diff {
        return None;
    }
    let (a, b) = (host_side(then), host_side(&now_diff));
    let (a, b, header) = if a != b {
        (a, b, ("on the host when planned", "on the host now"))
    } else {
        (
            then.to_string(),
            now_diff,
            ("change as planned", "change now"),
        )
    };
    let diff = similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header(header.0, header.1)
        .to_string();
    Some(diff)
}

/// The host's side of a unified diff: its context and removed lines, hunk by hunk (`…`
/// between hunks). A one-line summary (binary or large content) is kept as it is.
fn host_side(diff: &str) -> String {
    if !diff.contains("\n@@ ") && !diff.starts_with("@@ ") {
        return diff.to_string();
    }
    let mut out = String::new();
    for line in diff.lines().skip_while(|l| !l.starts_with("@@ ")) {
        if line.starts_with("@@ ") {
            if !out.is_empty() {
                out.push_str("…\n");
            }
        } else if let Some(kept) = line.strip_prefix(' ').or_else(|| line.strip_prefix('-')) {
            out.push_str(kept);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(diff: &str) -> Entry {
        Entry {
            play: 0,
            play_name: "p".into(),
            step: 0,
            handler: false,
            item: None,
            name: "write".into(),
            at: None,
            module: "copy".into(),
            host: "h".into(),
            outcome: super::super::Outcome::Change,
            summary: "update /etc/x".into(),
            diff: Some(diff.into()),
            reason: None,
            irreversible: false,
            undo: None,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn content_drift_shows_what_the_host_has_now() {
        let head = "--- h:/etc/x (before)\n+++ h:/etc/x (after)\n@@ -1,3 +1,3 @@\n";
        let planned = entry(&format!("{head} a\n-port=80\n+port=8080\n c\n"));
        let now = entry(&format!("{head} a\n-port=81\n+port=8080\n c\n"));
        let d = content_drift(&planned, &now).unwrap();
        assert!(
            d.contains("--- on the host when planned\n+++ on the host now\n"),
            "{d}"
        );
        assert!(d.contains("\n-port=80\n+port=81\n"), "{d}");
        assert!(!d.contains("8080"), "only the host's side: {d}");
        assert_eq!(content_drift(&planned, &planned.clone()), None);
        // Same host side, another change to make: the two changes are compared.
        let other = entry(&format!("{head} a\n-port=80\n+port=9090\n c\n"));
        let d = content_drift(&planned, &other).unwrap();
        assert!(d.contains("-+port=8080\n++port=9090\n"), "{d}");
    }

    #[test]
    fn only_the_start_of_a_regular_file_is_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates the file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(!looks_like_plan(&fifo), "a FIFO is not opened for reading");
        let plan = dir.path().join("p.json");
        std::fs::write(&plan, format!("\n  {{{}", " ".repeat(10_000))).unwrap();
        assert!(looks_like_plan(&plan));
        std::fs::write(&plan, "- hosts: all\n").unwrap();
        assert!(!looks_like_plan(&plan));
    }

    #[test]
    fn json_positions_are_one_based_lines_and_columns() {
        let p = Path::new("p.json");
        assert_eq!(
            position_of(p, "{\n  \"a\": 1,\n  \"schema\": 2}", "\"schema\""),
            Pos::new(p, 3, 3)
        );
        assert_eq!(position_of(p, "{}", "\"schema\""), Pos::start(p));
    }
}
