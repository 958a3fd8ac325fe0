//! Dry runs: probe every host read-only and say, per step and host, what would happen. The
//! plan walks the playbook with the run's own walk (`run::walk`), in plan mode (`Planning`).
//!
//! A plan never writes: no journal, no lock file, no command run on a host other than the
//! modules' read-only probes. Where the outcome depends on something only a real run can know
//! (a command without a check, a result registered by an earlier step, an approval), the plan
//! says "unknown" and why — never "no change".

mod drift;
mod irreversible;
mod planning;
mod render;
pub mod saved;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::controller::hash::sha256_hex;
use crate::diag::Diagnostics;
use crate::inventory::{Inventory, Var};
use crate::modules::Decision;
use crate::playbook::Playbook;
use crate::run::inputs::{Inputs, Request};
use crate::template;
use crate::transport::TransportOptions;

pub use drift::{drift, hosts_covered};
pub use irreversible::{irreversible, irreversible_steps, IrreversibleStep};
pub use planning::plan_loaded;
pub use render::{render_json, render_markdown, render_text, Format};

/// Version of the JSON plan format (docs/plan-format.md). Bumped on incompatible changes.
pub const SCHEMA: &str = "cutover.plan/v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    NoChange,
    Change,
    Unknown,
    Skipped,
}

/// One step on one host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub play: usize,
    pub play_name: String,
    pub step: usize,
    pub handler: bool,
    /// A looped step's item (from 0); plans saved before loops have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub name: String,
    /// Where the step is written (`file:line`; a step from a step file names that file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub module: String,
    pub host: String,
    pub outcome: Outcome,
    /// What changes, in a line (before → after for packages, services, members…).
    pub summary: String,
    /// Unified diff for files and templates.
    pub diff: Option<String>,
    /// Why the outcome is unknown, or why a step is skipped.
    pub reason: Option<String>,
    /// The change has no way back (no undo).
    pub irreversible: bool,
    /// How the change would be undone.
    pub undo: Option<String>,
    /// Hash of what the probe concluded; a saved plan is applied only if it is unchanged.
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub hosts: usize,
    pub changes: usize,
    pub unknown: usize,
    pub no_change: usize,
    pub skipped: usize,
    pub irreversible: usize,
    pub unreachable: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unreachable {
    pub host: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub created: String,
    pub playbook: String,
    pub inventory: String,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    /// SHA-256 of every input file and extra variable, by name.
    pub inputs: BTreeMap<String, String>,
    pub hosts: Vec<String>,
    pub unreachable: Vec<Unreachable>,
    pub summary: Summary,
    pub entries: Vec<Entry>,
    /// The agreed maintenance window, the predicted one and whether it fits now (when the
    /// playbook puts the page on and the inventory declares `maintenance_window:`): `window`,
    /// `prediction` (null: no rehearsal on record), `fit`
    /// (`fits`/`too_short`/`not_started`/`over`), `left_s`, `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<serde_json::Value>,
    /// The `after_run` plays: listed, not planned (what they do depends on how the run ends).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_run: Vec<AfterRunPlay>,
}

/// A play that runs once the run has ended (`after_run:`), as a plan lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AfterRunPlay {
    pub play: usize,
    pub name: String,
    /// `succeeded`, `failed` or `always`.
    pub when: String,
    /// Its steps' names.
    pub steps: Vec<String>,
}

/// The playbook's `after_run` plays, as a plan lists them.
pub fn after_run_plays(pb: &crate::playbook::Playbook) -> Vec<AfterRunPlay> {
    pb.plays
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.after_run.map(|a| AfterRunPlay {
                play: i,
                name: p.name.clone(),
                when: a.word().to_string(),
                steps: p.steps.iter().map(|s| s.display_name()).collect(),
            })
        })
        .collect()
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.changes > 0 || self.summary.unknown > 0
    }
}

pub struct PlanOptions {
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    pub templates_dir: PathBuf,
    pub extra_vars: Vec<Var>,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub forks: usize,
    pub approvals: Vec<String>,
    pub transport: TransportOptions,
}

pub use crate::context_names::RUN_ID_PLACEHOLDER;

/// A decision as the plan would have shown it: the applying run's id put back to the
/// placeholder, so a saved plan's fingerprints still match.
pub fn with_placeholder_run_id(d: &Decision, run_id: &str) -> Decision {
    let swap = |s: &str| s.replace(run_id, RUN_ID_PLACEHOLDER);
    match d {
        Decision::NoChange => Decision::NoChange,
        Decision::Change { summary, diff } => Decision::Change {
            summary: swap(summary),
            diff: diff.as_deref().map(swap),
        },
        Decision::Unknown { reason } => Decision::Unknown {
            reason: swap(reason),
        },
    }
}

/// The fingerprint of a probe's conclusion, taken with secret values masked (as the plan
/// shows it): a hash of a diff that holds a secret would be derived from the secret.
pub fn fingerprint(decision: &Decision) -> String {
    let text = match decision {
        Decision::NoChange => "no_change".to_string(),
        Decision::Change { summary, diff } => {
            format!("change\n{summary}\n{}", diff.as_deref().unwrap_or(""))
        }
        Decision::Unknown { reason } => format!("unknown\n{reason}"),
    };
    sha256_hex(crate::secrets::redact(&text).as_bytes())
}

/// One input a plan is made from, by the name the plan's `inputs` keys it with.
pub struct Input {
    pub key: String,
    /// What it is, for a message: "playbook", "inventory", "secrets file", "template",
    /// "-e file", "variable" (`-e name=value`).
    pub kind: &'static str,
    pub sha256: String,
}

/// Every input: playbook files, step files, vars files (encrypted ones as encrypted),
/// inventory, its secrets file (as encrypted), templates, `-e` files and `-e name=value`
/// variables.
pub fn inputs(pb: &Playbook, inv: &Inventory, templates_dir: &Path, extra: &[Var]) -> Vec<Input> {
    let mut files: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    files.extend(
        template::template_files(templates_dir)
            .into_iter()
            .map(|(_, t)| (t, "template")),
    );
    files.extend(pb.plays.iter().map(|p| (p.file.clone(), "playbook")));
    for play in &pb.plays {
        let steps = play.steps.iter().filter(|s| s.pos.file != play.file);
        files.extend(steps.map(|s| (s.pos.file.clone(), "step file")));
        files.extend(play.vars_files.iter().map(|f| (f.clone(), "vars file")));
    }
    files.insert(inv.path.clone(), "inventory");
    files.extend(inv.secrets_file.clone().map(|f| (f, "secrets file")));
    let mut out: Vec<Input> = Vec::new();
    for v in extra {
        if v.pos.line == 0 {
            out.push(Input {
                key: format!("-e {}", v.name),
                kind: "variable",
                sha256: input_fingerprint(v.value.to_string().as_bytes()),
            });
        } else {
            files.insert(v.pos.file.clone(), "-e file");
        }
    }
    for (f, kind) in files {
        out.push(Input {
            key: f.display().to_string(),
            kind,
            // Bounded and non-blocking: an input that became a FIFO must not hang the plan.
            sha256: input_fingerprint(
                &crate::input::read(&f, crate::input::MAX_INPUT_BYTES).unwrap_or_default(),
            ),
        });
    }
    out
}

/// An input's fingerprint, taken with every secret value masked first: a plain hash of a
/// secret (or of a file around it, whose rest the reader knows) could be brute-forced from
/// the plan. A change of a secret value alone is therefore not seen as a changed input.
fn input_fingerprint(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    sha256_hex(crate::secrets::redact(&text).as_bytes())
}

/// The plan's `inputs`: each input's SHA-256 by its key.
pub fn input_hashes(
    pb: &Playbook,
    inv: &Inventory,
    templates_dir: &Path,
    extra: &[Var],
) -> BTreeMap<String, String> {
    inputs(pb, inv, templates_dir, extra)
        .into_iter()
        .map(|i| (i.key, i.sha256))
        .collect()
}

/// Probe everything and build the plan. Invalid input is refused before any host is touched.
pub async fn plan(opts: &PlanOptions) -> std::result::Result<Plan, Diagnostics> {
    Ok(plan_loaded(&load_inputs(opts)?, opts).await)
}

/// What a plan reads, checked first: the inventory, the playbook, the templates it uses, each
/// play's variables, the hosts `--limit` selects.
pub fn load_inputs(opts: &PlanOptions) -> std::result::Result<Inputs, Diagnostics> {
    Inputs::load(&Request {
        inventory: &opts.inventory,
        playbook: &opts.playbook,
        templates_dir: &opts.templates_dir,
        extra_vars: &opts.extra_vars,
        limit: opts.limit.as_deref(),
        tags: &opts.tags,
        skip_tags: &opts.skip_tags,
        start_at_step: None,
        approvals: &opts.approvals,
    })
}

/// The counts a plan's summary shows.
fn summary_of(plan: &Plan) -> Summary {
    Summary {
        hosts: plan.hosts.len(),
        changes: plan
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Change)
            .count(),
        unknown: plan
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Unknown)
            .count(),
        no_change: plan
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::NoChange)
            .count(),
        skipped: plan
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Skipped)
            .count(),
        irreversible: irreversible_steps(&plan.entries).len(),
        unreachable: plan.unreachable.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_the_diff() {
        let a = fingerprint(&Decision::Change {
            summary: "update".into(),
            diff: Some("-a\n+b\n".into()),
        });
        let b = fingerprint(&Decision::Change {
            summary: "update".into(),
            diff: Some("-a\n+c\n".into()),
        });
        assert_ne!(a, b);
        assert_eq!(
            a,
            fingerprint(&Decision::Change {
                summary: "update".into(),
                diff: Some("-a\n+b\n".into())
            })
        );
    }
}
