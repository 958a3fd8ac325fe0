//! Playbooks: a list of plays; a play targets a host pattern and runs steps in order.
//!
//! ```yaml
//! - name: Upgrade the app nodes
//!   hosts: app_nodes
//!   serial: 1
//!   vars: { release: 2.0.0 }
//!   steps:
//!     - name: Stop the app
//!       service: { name: wiki, state: stopped }
//!       undo: { service: { name: wiki, state: started } }
//! - import_playbook: rollback-checks.yml
//! ```

mod block;
mod include;
mod load;
mod loops;
mod scope;
mod vars_files;

use std::path::PathBuf;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::inventory::Var;

pub use load::{load, load_checked};
pub use loops::{item_label, items_for, Loop, LoopItems};
pub use scope::bind as bind_scope;

/// An expression evaluated per host at run time (`when:`, `until:`, `changed_when:`…).
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub text: String,
    pub pos: Pos,
}

/// How many hosts of a play run at once through all of its steps.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Count(u32),
    Percent(u32),
}

/// A module and its arguments: what a step does.
#[derive(Clone, Debug)]
pub struct Action {
    pub module: String,
    pub pos: Pos,
    /// Arguments as written (strings may hold `{{ }}` templates, rendered per host).
    pub args: serde_json::Map<String, serde_json::Value>,
    pub arg_pos: Vec<(String, Pos)>,
}

/// How a step is undone if the run has to unwind.
#[derive(Clone, Debug)]
pub enum Undo {
    /// Whatever the module records by itself (or nothing, for read-only modules).
    Module,
    /// The author says there is no way back; plans mark the step as irreversible.
    Irreversible(Pos),
    /// Run this action instead of the module's own undo.
    Custom(Box<Action>),
}

/// The maintenance-window phases a step may name with `phase:` (`engine::window` counts each
/// step in one; the unwind is the engine's own).
pub const WINDOW_PHASES: [&str; 7] = [
    "stops",
    "snapshots",
    "switch",
    "migration",
    "starts",
    "checks",
    "other",
];

#[derive(Clone, Debug)]
pub struct Step {
    pub name: Option<String>,
    /// Where `name:` was written, for errors about the name.
    pub name_pos: Option<Pos>,
    pub pos: Pos,
    pub action: Action,
    pub when: Option<Expr>,
    pub register: Option<String>,
    pub tags: Vec<String>,
    pub timeout_secs: Option<u64>,
    pub retries: u32,
    pub delay_secs: u64,
    pub until: Option<Expr>,
    pub delegate_to: Option<(String, Pos)>,
    pub run_once: bool,
    pub notify: Vec<(String, Pos)>,
    pub undo: Undo,
    pub changed_when: Option<Expr>,
    pub failed_when: Option<Expr>,
    pub ignore_errors: bool,
    pub become_root: Option<bool>,
    pub become_user: Option<String>,
    /// `phase:`: the maintenance-window phase the step counts in, when the author names it.
    pub phase: Option<&'static str>,
    /// `window: start|end`: where a window without a maintenance page starts or ends (a
    /// rehearsal), journaled with the step's result (`engine::window`).
    pub window_mark: Option<&'static str>,
    /// `loop:` (with `loop_control:`): the step runs once per item.
    pub loop_: Option<Loop>,
    /// An item of a looped step, as the run expands it: the variable and its value.
    pub item: Option<(String, serde_json::Value)>,
    /// Variables the `include_steps:` around the step give it (`vars:` beside the include),
    /// outermost first: an inner include's value wins. Rendered per host at run time.
    pub scope_vars: Vec<Var>,
    /// `when:` of the includes around the step, outermost first: the step runs only when all
    /// of them and its own `when:` are true.
    pub inherited_when: Vec<Expr>,
    /// Where the `include_steps:` that brought the step in are written, outermost first.
    pub included_from: Vec<Pos>,
    /// The `block:`s the step is in and in which part, outermost first.
    pub blocks: Vec<BlockAt>,
    /// Handlers only: other names this handler answers to.
    pub listen: Vec<String>,
}

impl Step {
    /// Every condition the step runs under: its includes' `when:`, then its own.
    pub fn conditions(&self) -> impl Iterator<Item = &Expr> {
        self.inherited_when.iter().chain(&self.when)
    }

    /// Where the step is written (`file:line`), for plans and journals: a step from a step
    /// file names that file.
    pub fn location(&self) -> String {
        format!("{}:{}", self.pos.file.display(), self.pos.line)
    }

    /// The names a handler answers to in `notify:` (its name and its `listen:` names).
    pub fn answers_to(&self) -> Vec<&str> {
        self.name
            .iter()
            .map(String::as_str)
            .chain(self.listen.iter().map(String::as_str))
            .collect()
    }

    /// `changed_when: false`: the author's word that the step only reads.
    pub fn declared_read_only(&self) -> bool {
        self.changed_when
            .as_ref()
            .is_some_and(|e| e.text.trim() == "false")
    }

    /// The name shown in output: the step's own, or the module and its first argument.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                let first = self.action.args.values().next().map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                match first {
                    Some(f) => format!(
                        "{} {}",
                        self.action.module,
                        f.chars().take(60).collect::<String>()
                    ),
                    None => self.action.module.clone(),
                }
            }
        }
    }
}

/// The parts of a `block:`: its steps, the steps that run on a host where one of them failed
/// (`rescue:`), and those that run whatever happened (`always:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockPart {
    Body,
    Rescue,
    Always,
}

/// A step's place in a block: which block of its play (`Play::blocks`), which part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockAt {
    pub id: usize,
    pub part: BlockPart,
}

/// A `block:` of a play (its steps are the play's, flattened, each knowing its blocks).
#[derive(Clone, Debug)]
pub struct Block {
    pub name: Option<String>,
    pub pos: Pos,
    pub has_rescue: bool,
    /// The block this one is written in, and in which part.
    pub parent: Option<BlockAt>,
}

#[derive(Clone, Debug)]
pub struct Play {
    pub name: String,
    pub pos: Pos,
    /// The file the play was written in (imports keep their own file).
    pub file: PathBuf,
    pub hosts: String,
    pub hosts_pos: Pos,
    pub serial: Vec<Batch>,
    pub max_fail_percentage: Option<u32>,
    pub defaults: Vec<Var>,
    pub vars: Vec<Var>,
    /// `vars_files:`, as found (relative to the playbook file).
    pub vars_files: Vec<PathBuf>,
    /// Their variables, in the order they override each other.
    pub file_vars: Vec<Var>,
    pub steps: Vec<Step>,
    /// The play's `block:`s, by id (`BlockAt::id`), in the order they are written.
    pub blocks: Vec<Block>,
    pub handlers: Vec<Step>,
    pub tags: Vec<String>,
    pub become_root: Option<bool>,
    pub become_user: Option<String>,
    pub on_failure: OnFailure,
    /// Set: the play is not part of the run's walk; it runs once after the run has ended
    /// (after its unwind), when the run ended this way (`after_run:`).
    pub after_run: Option<AfterRun>,
}

/// When an `after_run` play runs: after a run that succeeded, failed, or either.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AfterRun {
    Succeeded,
    Failed,
    Always,
}

impl AfterRun {
    /// The values `after_run:` takes, as written.
    pub const WORDS: &'static [&'static str] = &["succeeded", "failed", "always"];

    pub fn from_word(w: &str) -> Option<AfterRun> {
        match w {
            "succeeded" => Some(AfterRun::Succeeded),
            "failed" => Some(AfterRun::Failed),
            "always" => Some(AfterRun::Always),
            _ => None,
        }
    }

    /// The value as written.
    pub fn word(self) -> &'static str {
        match self {
            AfterRun::Succeeded => "succeeded",
            AfterRun::Failed => "failed",
            AfterRun::Always => "always",
        }
    }

    /// Does a run that ended ok (`succeeded`) or not run this play?
    pub fn runs_after(self, succeeded: bool) -> bool {
        match self {
            AfterRun::Succeeded => succeeded,
            AfterRun::Failed => !succeeded,
            AfterRun::Always => true,
        }
    }
}

/// What the engine does when a host fails in a play.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnFailure {
    /// Stop; hosts stay as they are, and `cutover rollback RUN` can still undo the run.
    Stop,
    /// Undo every change this run made, newest first, on every host, then stop.
    Unwind,
}

#[derive(Clone, Debug)]
pub struct Playbook {
    pub path: PathBuf,
    /// Plays in run order, with `import_playbook` already expanded.
    pub plays: Vec<Play>,
}

impl Playbook {
    /// The run options that name parts of this playbook, checked before any host is touched:
    /// `--start-at-step` must name a step and each `--tags`, `--skip-tags` and `--approve`
    /// something the playbook has, or a typo would skip steps, run a step meant to be skipped,
    /// or wait for an approval.
    pub fn check_run_options(
        &self,
        start_at_step: Option<&str>,
        tags: &[String],
        skip_tags: &[String],
        approvals: &[String],
    ) -> Diagnostics {
        let steps = || self.plays.iter().flat_map(|p| p.steps.iter());
        let mut diags = Diagnostics::default();
        let mut refuse = |option: &str, what: &str, name: &str, known: Vec<&str>| {
            let d = Diagnostic::new(
                Pos::cli(option),
                format!(
                    "{option} `{name}` names no {what} of {}",
                    self.path.display()
                ),
            );
            diags.push(d.suggest(name, known));
        };
        if let Some(name) = start_at_step {
            // The run's walk starts there: a step of an `after_run` play is not in it.
            let names: Vec<&str> = self
                .plays
                .iter()
                .filter(|p| p.after_run.is_none())
                .flat_map(|p| p.steps.iter())
                .filter_map(|s| s.name.as_deref())
                .collect();
            if !names.contains(&name) {
                refuse("--start-at-step", "step", name, names);
            }
        }
        let known_tags: Vec<&str> = self
            .plays
            .iter()
            .flat_map(|p| {
                let steps = p.steps.iter().chain(&p.handlers);
                p.tags.iter().chain(steps.flat_map(|s| &s.tags))
            })
            .map(String::as_str)
            .collect();
        for (option, given) in [("--tags", tags), ("--skip-tags", skip_tags)] {
            for t in given.iter().filter(|t| !known_tags.contains(&t.as_str())) {
                refuse(option, "tag", t, known_tags.clone());
            }
        }
        let stages: Vec<&str> = steps()
            .filter(|s| s.action.module == "approve")
            .filter_map(|s| s.action.args.get("stage").and_then(|v| v.as_str()))
            .collect();
        // A stage written as a template is known only per host at run time.
        let literal = stages.iter().all(|s| !s.contains("{{"));
        for a in approvals
            .iter()
            .filter(|a| literal && !stages.contains(&a.as_str()))
        {
            refuse("--approve", "approve stage", a, stages.clone());
        }
        diags
    }
}

/// Does `--tags`/`--skip-tags` let a step run? Tags of the play count for its steps; `always`
/// runs unless skipped by name.
pub fn tags_allow(
    tags: &[String],
    skip_tags: &[String],
    play_tags: &[String],
    step_tags: &[String],
) -> bool {
    let all: Vec<&String> = play_tags.iter().chain(step_tags).collect();
    if all.iter().any(|t| skip_tags.contains(t)) {
        return false;
    }
    tags.is_empty()
        || all
            .iter()
            .any(|t| tags.contains(t) || t.as_str() == "always")
}

/// The templates the `template` steps of these playbooks name; None when a step computes its
/// `src` (`{{ }}`), which only the run knows: then every template is needed.
pub fn templates_used_by<'a>(
    playbooks: impl IntoIterator<Item = &'a Playbook>,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for pb in playbooks {
        for play in &pb.plays {
            for step in play.steps.iter().chain(&play.handlers) {
                if step.action.module != "template" {
                    continue;
                }
                match step
                    .action
                    .args
                    .get("src")
                    .and_then(serde_json::Value::as_str)
                {
                    Some(s) if s.contains("{{") || s.contains("{%") => return None,
                    Some(s) => out.push(s.to_string()),
                    None => {}
                }
            }
        }
    }
    Some(out)
}
