//! Step files: `include_steps: FILE` as an item of a `steps:` list (Ansible's static
//! `import_tasks`). The file is a YAML list of steps, read and checked with the playbook before
//! anything runs, its path relative to the file that includes it. Its steps join the play in
//! place and keep their own file and line (plans and journals name them).
//!
//! Beside `include_steps:` an item may carry `name:` (for the reader), `vars:` (given to every
//! included step, above the play's `vars:` and below `-e`, as Ansible's include parameters),
//! `when:` (every included step runs only when it holds too), `tags:` (added to each step's)
//! and `become:`/`become_user:` (for the steps that do not set their own).

use std::path::{Component, Path, PathBuf};

use super::load::{become_user, read_expr, read_step, vars};
use super::{Expr, Step};
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::Var;
use crate::yaml::{self, Node, Value};

pub(super) const INCLUDE_KEY: &str = "include_steps";
const INCLUDE_KEYS: &[&str] = &[
    INCLUDE_KEY,
    "name",
    "vars",
    "when",
    "tags",
    "become",
    "become_user",
];

/// What an include gives each step it brings in.
struct Inherited {
    vars: Vec<Var>,
    when: Option<Expr>,
    tags: Vec<String>,
    become_root: Option<bool>,
    become_user: Option<String>,
}

/// Is this item of a `steps:` list an include?
pub(super) fn is_include(node: &Node) -> bool {
    matches!(&node.value, Value::Map(entries) if entries.iter().any(|(k, _)| k.key_text() == INCLUDE_KEY))
}

/// The steps of a `steps:` list, includes expanded. `stack` holds the files being read (the
/// playbook's first), canonical and as shown, to report a file that includes itself through
/// others.
pub(super) fn read_steps(
    items: &[Node],
    file: &Path,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    diags: &mut Diagnostics,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for item in items {
        if is_include(item) {
            steps.extend(read_include(item, file, stack, diags));
        } else if let Some(step) = read_step(item, false, diags) {
            steps.push(step);
        }
    }
    steps
}

fn read_include(
    node: &Node,
    file: &Path,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    diags: &mut Diagnostics,
) -> Vec<Step> {
    let Some(f) = Fields::new(node, "`include_steps` item", INCLUDE_KEYS, diags) else {
        return Vec::new();
    };
    let Some(target) = f.get(INCLUDE_KEY) else {
        return Vec::new();
    };
    let Some(rel) = decode::string(target, INCLUDE_KEY, diags) else {
        return Vec::new();
    };
    if rel.contains("{{") || rel.contains("{%") {
        diags.push(
            Diagnostic::new(
                target.pos.clone(),
                "`include_steps:` names a file read before the run; a template here is known only when it runs",
            )
            .with_help("name the file as written; pass what differs with `vars:` beside it"),
        );
        return Vec::new();
    }
    let inherited = Inherited {
        vars: f
            .get("vars")
            .map(|n| vars(n, "include vars", diags))
            .unwrap_or_default(),
        when: f.get("when").and_then(|n| read_expr(n, "when", diags)),
        tags: f
            .str_list("tags", diags)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
        become_root: f.bool("become", diags),
        become_user: become_user(&f, diags),
    };
    let path = relative_to(file, &rel);
    let mut steps = read_step_file(&path, target, stack, diags);
    for step in &mut steps {
        inherit(step, &inherited);
        step.included_from.insert(0, target.pos.clone());
    }
    steps
}

/// `rel` next to `file`, with `.` and `dir/..` taken out, so that errors and the plan name
/// `steps/x.yml`, not `playbooks/../steps/x.yml` (symlinks are left alone: cycles compare
/// canonical paths).
pub(super) fn relative_to(file: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in file
        .parent()
        .unwrap_or(Path::new(""))
        .join(rel)
        .components()
    {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The steps of one step file, checked as a list of steps.
fn read_step_file(
    path: &Path,
    at: &Node,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    diags: &mut Diagnostics,
) -> Vec<Step> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if stack.iter().any(|(c, _)| *c == canonical) {
        let chain: Vec<String> = stack
            .iter()
            .map(|(_, shown)| shown.as_path())
            .chain([path])
            .map(|p| p.display().to_string())
            .collect();
        diags.push(Diagnostic::new(
            at.pos.clone(),
            format!("include cycle: {}", chain.join(" → ")),
        ));
        return Vec::new();
    }
    let root = match yaml::load_file(path) {
        Ok((_, root)) => root,
        Err(d) if d.pos.line == 0 => {
            diags.push(Diagnostic::new(
                at.pos.clone(),
                format!("cannot include {}: {}", path.display(), d.message),
            ));
            return Vec::new();
        }
        Err(d) => {
            diags.push(d);
            return Vec::new();
        }
    };
    let Some(items) = step_list(&root, diags) else {
        return Vec::new();
    };
    stack.push((canonical, path.to_path_buf()));
    let steps = read_steps(items, path, stack, diags);
    stack.pop();
    steps
}

/// A step file's top level: a list of steps (a playbook or a mapping is named as such).
fn step_list<'a>(root: &'a Node, diags: &mut Diagnostics) -> Option<&'a [Node]> {
    let items = match &root.value {
        Value::Seq(items) => items,
        other => {
            diags.push(
                Diagnostic::new(
                    root.pos.clone(),
                    format!(
                        "expected a step file (a list of steps), found {}",
                        other.kind()
                    ),
                )
                .with_help("start each step with `- `"),
            );
            return None;
        }
    };
    let play = items.iter().find_map(|i| match &i.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k.key_text().as_str(), "hosts" | "steps" | "import_playbook")),
        _ => None,
    });
    if let Some((k, _)) = play {
        diags.push(
            Diagnostic::new(
                k.pos.clone(),
                format!(
                    "a step file holds steps, not plays: `{}` belongs to a playbook",
                    k.key_text()
                ),
            )
            .with_help("include a playbook with `import_playbook:` at play level"),
        );
        return None;
    }
    Some(items)
}

/// An include's keywords on one of its steps (an inner include's were applied first).
fn inherit(step: &mut Step, from: &Inherited) {
    step.scope_vars.splice(0..0, from.vars.iter().cloned());
    if let Some(w) = &from.when {
        step.inherited_when.insert(0, w.clone());
    }
    for t in &from.tags {
        if !step.tags.contains(t) {
            step.tags.push(t.clone());
        }
    }
    if step.become_root.is_none() {
        step.become_root = from.become_root;
    }
    if step.become_user.is_none() {
        step.become_user = from.become_user.clone();
    }
}
