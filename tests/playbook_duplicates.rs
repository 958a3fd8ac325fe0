//! The shipped procedures do not repeat themselves: no run of three or more consecutive steps
//! with the same modules and arguments (step names and variable names aside) is written in two
//! places under `playbooks/`. What repeats belongs in a step file (`include_steps:`), written
//! once; steps brought in from one step file are one place however often it is included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cutover::playbook::{Step, Undo};
use serde_json::Value as J;

/// Steps in a row that make a copy.
const RUN: usize = 3;

/// A step as compared: its module, arguments and conditions with every `{{ }}` variable name
/// replaced by `V` (and its name and `register:` left out).
fn signature(step: &Step) -> String {
    let mut parts = vec![
        step.action.module.clone(),
        normalize(&J::Object(step.action.args.clone())),
    ];
    for e in step
        .conditions()
        .chain(&step.changed_when)
        .chain(&step.failed_when)
        .chain(&step.until)
    {
        parts.push(normalize(&J::String(format!("{{{{ {} }}}}", e.text))));
    }
    // A step that notifies handlers does more than one that does not (which ones: names).
    if !step.notify.is_empty() {
        parts.push("notifies".into());
    }
    if let Undo::Custom(a) = &step.undo {
        parts.push(a.module.clone());
        parts.push(normalize(&J::Object(a.args.clone())));
    }
    parts.join(" | ")
}

/// Variable names inside templates become `V`: `{{ app_home }}/logs` and `{{ home }}/logs`
/// are one thing written twice.
fn normalize(v: &J) -> String {
    let text = v.to_string();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let inner = &rest[open + 2..open + close];
        out.push_str("{{");
        out.push_str(&rename_identifiers(inner));
        out.push_str("}}");
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Every identifier that is not a keyword or a filter/test name becomes `V`.
fn rename_identifiers(expr: &str) -> String {
    const KEEP: &[&str] = &[
        "and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "defined",
    ];
    let mut out = String::new();
    let mut word = String::new();
    let mut after_pipe = false;
    let flush = |word: &mut String, out: &mut String, after_pipe: bool| {
        if word.is_empty() {
            return;
        }
        let keep = KEEP.contains(&word.as_str())
            || after_pipe
            || word.chars().next().is_some_and(|c| c.is_ascii_digit());
        out.push_str(if keep { word.as_str() } else { "V" });
        word.clear();
    };
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        // A string literal is compared as written.
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            flush(&mut word, &mut out, after_pipe);
            quote = Some(c);
            out.push(c);
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out, after_pipe);
        if c == '|' {
            after_pipe = true;
        } else if !c.is_whitespace() {
            after_pipe = false;
        }
        out.push(c);
    }
    flush(&mut word, &mut out, after_pipe);
    out
}

/// Every play's steps of every shipped playbook, in order, with where each is written.
fn shipped_steps() -> Vec<(String, Vec<(String, String)>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let pb = cutover::playbook::load_checked(&f)
            .unwrap_or_else(|d| panic!("{} does not load: {d:?}", f.display()));
        for play in pb.plays.iter().filter(|p| p.file == f) {
            let steps = play
                .steps
                .iter()
                .map(|s| (signature(s), s.location()))
                .collect();
            out.push((format!("{} / {}", f.display(), play.name), steps));
        }
    }
    out
}

#[test]
fn no_three_steps_in_a_row_are_written_twice_under_playbooks() {
    // Each run of RUN signatures, with the places it is written at.
    let mut seen: BTreeMap<Vec<String>, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for (play, steps) in shipped_steps() {
        for w in steps.windows(RUN) {
            let sig: Vec<String> = w.iter().map(|(s, _)| s.clone()).collect();
            let at: Vec<String> = w.iter().map(|(_, a)| a.clone()).collect();
            // Steps of a YAML alias (`steps: *configure`) all carry the alias's line: that
            // list is written once, at its anchor.
            if at.windows(2).any(|p| p[0] == p[1]) {
                continue;
            }
            let places = seen.entry(sig).or_default();
            // A copy is a place where each of the steps is written again: steps reached
            // through one step file (included in both places) are written once.
            if places
                .iter()
                .all(|(_, a)| a.iter().zip(&at).all(|(x, y)| x != y))
            {
                places.push((play.clone(), at));
            }
        }
    }
    let copies: Vec<String> = seen
        .values()
        .filter(|places| places.len() > 1)
        .map(|places| {
            places
                .iter()
                .map(|(play, at)| format!("{play} at {}", at.join(", ")))
                .collect::<Vec<_>>()
                .join("\n    = ")
        })
        .collect();
    assert!(
        copies.is_empty(),
        "{} runs of {RUN}+ steps are written twice; put them in a step file:\n  {}",
        copies.len(),
        copies.join("\n  ")
    );
}

#[test]
fn the_comparison_sees_through_names_and_variable_names_only() {
    assert_eq!(
        rename_identifiers(" app_home ~ '/logs' | default(value='x') "),
        " V ~ '/logs' | default(V='x') "
    );
    assert_eq!(
        rename_identifiers(" a if b else \"c d\" "),
        " V if V else \"c d\" "
    );
    assert_eq!(
        normalize(&J::String("{{ home }}/a {{ n | int }}".into())),
        "\"{{ V }}/a {{ V | int }}\""
    );
    assert_ne!(
        normalize(&J::String("{{ home }}/a".into())),
        normalize(&J::String("{{ home }}/b".into())),
        "a different literal is a different step"
    );
}
