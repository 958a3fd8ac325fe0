//! A plan, as a reviewer reads it: terminal (summary first, coloured on a TTY), Markdown for a
//! change review (a section per host, diffs folded), or JSON (docs/plan-format.md).

use std::fmt::Write;

use super::{irreversible_steps, Entry, Outcome, Plan};

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn diff(&self, diff: &str) -> String {
        diff.lines()
            .map(|l| {
                let painted = if l.starts_with("+++") || l.starts_with("---") {
                    self.paint("1", l)
                } else if l.starts_with('+') {
                    self.paint("32", l)
                } else if l.starts_with('-') {
                    self.paint("31", l)
                } else if l.starts_with("@@") {
                    self.paint("36", l)
                } else {
                    l.to_string()
                };
                format!("      {painted}\n")
            })
            .collect()
    }
}

fn outcome_word(e: &Entry) -> &'static str {
    match e.outcome {
        Outcome::NoChange => "no change",
        Outcome::Change => "change",
        Outcome::Unknown => "unknown",
        Outcome::Skipped => "skipped",
    }
}

fn interesting(e: &Entry) -> bool {
    matches!(e.outcome, Outcome::Change | Outcome::Unknown)
}

/// `Maintenance window: the maintenance window … 3h10m left: fits; the predicted window is …`.
fn window_line(w: &serde_json::Value) -> String {
    format!("Maintenance window: {}", w["text"].as_str().unwrap_or(""))
}

fn summary_lines(p: &Plan) -> String {
    let s = &p.summary;
    let mut out = format!(
        "Plan for {} on {} ({} host{}): {} to change, {} unknown, {} unchanged, {} skipped",
        p.playbook,
        p.inventory,
        s.hosts,
        if s.hosts == 1 { "" } else { "s" },
        s.changes,
        s.unknown,
        s.no_change,
        s.skipped
    );
    if s.irreversible > 0 {
        let _ = write!(
            out,
            "; {} IRREVERSIBLE step{}",
            s.irreversible,
            if s.irreversible == 1 { "" } else { "s" }
        );
    }
    if s.unreachable > 0 {
        let _ = write!(out, "; {} host(s) UNREACHABLE", s.unreachable);
    }
    out
}

pub fn render_text(p: &Plan, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    let _ = writeln!(out, "{}", st.paint("1", &summary_lines(p)));
    if let Some(w) = &p.maintenance_window {
        let fits = w["fit"] == "fits";
        let _ = writeln!(
            out,
            "{}",
            st.paint(if fits { "1" } else { "31;1" }, &window_line(w))
        );
    }
    for u in &p.unreachable {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            st.paint("31", "UNREACHABLE"),
            u.host,
            u.error
        );
    }
    let irreversible = irreversible_steps(&p.entries);
    if !irreversible.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            st.paint("31;1", "Irreversible steps (no automatic way back):")
        );
        for i in irreversible {
            let _ = writeln!(
                out,
                "  - PLAY {} / step {}{}: {} on {}",
                i.play_name,
                i.step + 1,
                if i.handler { " (handler)" } else { "" },
                i.name,
                i.hosts.join(", ")
            );
        }
    }
    let _ = writeln!(out);
    let mut last_play = usize::MAX;
    let mut last_step: Option<(usize, bool, &str)> = None;
    for e in p.entries.iter().filter(|e| interesting(e)) {
        if e.play != last_play {
            let _ = writeln!(out, "{}", st.paint("1", &format!("PLAY {}", e.play_name)));
            last_play = e.play;
            last_step = None;
        }
        if last_step != Some((e.step, e.handler, e.name.as_str())) {
            let tag = if e.handler { " (handler)" } else { "" };
            let at =
                e.at.as_deref()
                    .map(|a| format!("  ({a})"))
                    .unwrap_or_default();
            let _ = writeln!(
                out,
                "  step {}: {}{tag}{}",
                e.step + 1,
                e.name,
                st.paint("2", &at)
            );
            last_step = Some((e.step, e.handler, e.name.as_str()));
        }
        let (code, word) = match e.outcome {
            Outcome::Change => ("33", outcome_word(e)),
            _ => ("35", outcome_word(e)),
        };
        let detail = match e.outcome {
            Outcome::Change => e.summary.clone(),
            _ => e.reason.clone().unwrap_or_default(),
        };
        let mark = if e.irreversible {
            st.paint("31", " [irreversible]")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    {:<12} {} {detail}{mark}",
            e.host,
            st.paint(code, word)
        );
        if let Some(d) = &e.diff {
            out.push_str(&st.diff(d));
        }
    }
    after_run_lines(p, &st, &mut out);
    if let Some(v) = verdict(p) {
        let _ = writeln!(out, "{v}");
    }
    out
}

/// The `after_run` plays, named with their steps: not planned.
fn after_run_lines(p: &Plan, st: &Style, out: &mut String) {
    if p.after_run.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{}",
        st.paint(
            "1",
            "After the run (not planned: what they do depends on how the run ends):"
        )
    );
    for a in &p.after_run {
        let _ = writeln!(
            out,
            "  PLAY {} (after_run: {}): {}",
            a.name,
            a.when,
            a.steps.join("; ")
        );
    }
}

/// The plan's last line. Hosts that could not be probed were not compared with anything, so a
/// plan with one never says the hosts match.
fn verdict(p: &Plan) -> Option<String> {
    let n = p.unreachable.len();
    if n > 0 {
        let names: Vec<&str> = p.unreachable.iter().map(|u| u.host.as_str()).collect();
        return Some(format!(
            "Incomplete: {n} host{} unreachable and not probed ({}); nothing is known about {}.",
            if n == 1 { " was" } else { "s were" },
            names.join(", "),
            if n == 1 { "it" } else { "them" }
        ));
    }
    (p.summary.changes == 0 && p.summary.unknown == 0)
        .then(|| "No changes: the hosts already match the playbook.".into())
}

pub fn render_markdown(p: &Plan) -> String {
    let mut out = String::new();
    let s = &p.summary;
    let _ = writeln!(out, "# Plan: `{}`\n", p.playbook);
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| inventory | `{}` |", p.inventory);
    if let Some(l) = &p.limit {
        let _ = writeln!(out, "| limit | `{l}` |");
    }
    let _ = writeln!(out, "| created | {} |", p.created);
    let _ = writeln!(out, "| hosts | {} |", s.hosts);
    let _ = writeln!(out, "| to change | **{}** |", s.changes);
    let _ = writeln!(out, "| unknown | **{}** |", s.unknown);
    let _ = writeln!(out, "| unchanged | {} |", s.no_change);
    let _ = writeln!(out, "| irreversible | **{}** |", s.irreversible);
    let _ = writeln!(out, "| unreachable | {} |\n", s.unreachable);
    if let Some(w) = &p.maintenance_window {
        let _ = writeln!(out, "> **{}**\n", window_line(w));
    }
    for u in &p.unreachable {
        let _ = writeln!(
            out,
            "> **Unreachable:** `{}`: {}\n",
            u.host,
            u.error.replace('\n', " ")
        );
    }
    let irreversible = irreversible_steps(&p.entries);
    if !irreversible.is_empty() {
        let _ = writeln!(out, "## ⚠ Irreversible steps\n");
        for i in irreversible {
            let _ = writeln!(
                out,
                "- play _{}_, step {}{}: **{}** on {}",
                md(i.play_name),
                i.step + 1,
                if i.handler { " (handler)" } else { "" },
                md(i.name),
                i.hosts
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(out);
    }
    for host in &p.hosts {
        let entries: Vec<&Entry> = p
            .entries
            .iter()
            .filter(|e| &e.host == host && interesting(e))
            .collect();
        let _ = writeln!(out, "## `{host}`\n");
        if p.unreachable.iter().any(|u| &u.host == host) {
            let _ = writeln!(out, "Unreachable: not probed, nothing is known.\n");
            continue;
        }
        if entries.is_empty() {
            let _ = writeln!(out, "No changes.\n");
            continue;
        }
        for e in entries {
            let mark = if e.irreversible {
                " ⚠ **irreversible**"
            } else {
                ""
            };
            let what = match e.outcome {
                Outcome::Change => md(&e.summary),
                _ => format!("_{}_", md(e.reason.as_deref().unwrap_or(""))),
            };
            let at =
                e.at.as_deref()
                    .map(|a| format!(" (`{a}`)"))
                    .unwrap_or_default();
            let _ = writeln!(
                out,
                "- **{}**{at} — {}: {what}{mark}",
                md(&e.name),
                outcome_word(e)
            );
            if let Some(d) = &e.diff {
                let fence = if d.contains("```") { "~~~~" } else { "```" };
                let _ = writeln!(
                    out,
                    "  <details><summary>diff</summary>\n\n{fence}diff\n{}{fence}\n\n  </details>",
                    d
                );
            }
        }
        let _ = writeln!(out);
    }
    after_run_markdown(p, &mut out);
    out
}

/// The `after_run` plays, named with their steps: not planned.
fn after_run_markdown(p: &Plan, out: &mut String) {
    if !p.after_run.is_empty() {
        let _ = writeln!(
            out,
            "## After the run\n\nNot planned: what these plays do depends on how the run ends.\n"
        );
        for a in &p.after_run {
            let steps: Vec<String> = a.steps.iter().map(|s| md(s)).collect();
            let _ = writeln!(
                out,
                "- play _{}_ (`after_run: {}`): {}",
                md(&a.name),
                a.when,
                steps.join("; ")
            );
        }
        let _ = writeln!(out);
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render_json(p: &Plan) -> String {
    serde_json::to_string_pretty(p).unwrap_or_default() + "\n"
}
