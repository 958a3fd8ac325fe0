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
use super::{Block, BlockAt, Expr, Step};
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

/// What an include or a block gives each step in it.
pub(super) struct Inherited {
    pub vars: Vec<Var>,
    pub when: Option<Expr>,
    pub tags: Vec<String>,
    pub become_root: Option<bool>,
    pub become_user: Option<String>,
}

impl Inherited {
    /// The keywords an include or a block shares with its steps, from its fields.
    pub fn read(f: &Fields<'_>, what: &str, diags: &mut Diagnostics) -> Inherited {
        Inherited {
            vars: f
                .get("vars")
                .map(|n| vars(n, what, diags))
                .unwrap_or_default(),
            when: f.get("when").and_then(|n| read_expr(n, "when", diags)),
            tags: f
                .str_list("tags", diags)
                .unwrap_or_default()
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            become_root: f.bool("become", diags),
            become_user: become_user(f, diags),
        }
    }
}

/// Is this item of a `steps:` list an include?
pub(super) fn is_include(node: &Node) -> bool {
    has_key(node, INCLUDE_KEY)
}

pub(super) fn has_key(node: &Node, key: &str) -> bool {
    matches!(&node.value, Value::Map(entries) if entries.iter().any(|(k, _)| k.key_text() == key))
}

/// Reads a play's `steps:` list: includes expanded, blocks flattened (their steps marked).
pub(super) struct StepsReader {
    /// The files being read (the playbook's first), canonical and as shown, to report a file
    /// that includes itself through others.
    stack: Vec<(PathBuf, PathBuf)>,
    /// The play's blocks so far; the blocks being read, innermost last.
    pub blocks: Vec<Block>,
    pub(super) open_blocks: Vec<BlockAt>,
}

impl StepsReader {
    pub fn new(canonical: PathBuf, shown: &Path) -> StepsReader {
        StepsReader {
            stack: vec![(canonical, shown.to_path_buf())],
            blocks: Vec::new(),
            open_blocks: Vec::new(),
        }
    }

    /// The steps of a `steps:` list (or of a block's part), includes and blocks expanded.
    pub fn read_steps(
        &mut self,
        items: &[Node],
        file: &Path,
        diags: &mut Diagnostics,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for item in items {
            if is_include(item) {
                steps.extend(self.read_include(item, file, diags));
            } else if has_key(item, "block") {
                steps.extend(self.read_block(item, file, diags));
            } else if let Some(d) = super::block::stray_part(item) {
                diags.push(d);
            } else if let Some(mut step) = read_step(item, false, diags) {
                step.blocks = self.open_blocks.clone();
                steps.push(step);
            }
        }
        steps
    }

    fn read_include(&mut self, node: &Node, file: &Path, diags: &mut Diagnostics) -> Vec<Step> {
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
        let inherited = Inherited::read(&f, "include vars", diags);
        let path = relative_to(file, &rel);
        let mut steps = self.read_step_file(&path, target, diags);
        for step in &mut steps {
            inherit(step, &inherited);
            step.included_from.insert(0, target.pos.clone());
        }
        steps
    }

    /// The steps of one step file, checked as a list of steps.
    fn read_step_file(&mut self, path: &Path, at: &Node, diags: &mut Diagnostics) -> Vec<Step> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.iter().any(|(c, _)| *c == canonical) {
            let chain: Vec<String> = self
                .stack
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
        self.stack.push((canonical, path.to_path_buf()));
        let steps = self.read_steps(items, path, diags);
        self.stack.pop();
        steps
    }
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

/// An include's or a block's keywords on one of its steps (inner ones were applied first).
pub(super) fn inherit(step: &mut Step, from: &Inherited) {
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
