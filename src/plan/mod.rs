//! Dry runs: probe every host read-only and say, per step and host, what would happen. The
//! plan walks the playbook with the run's own walk (`run::walk`), in plan mode (`Planning`).
//!
//! A plan never writes: no journal, no lock file, no command run on a host other than the
//! modules' read-only probes. Where the outcome depends on something only a real run can know
//! (a command without a check, a result registered by an earlier step, an approval), the plan
//! says "unknown" and why — never "no change".

mod render;
pub mod saved;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::controller::hash::sha256_hex;
use crate::diag::Diagnostics;
use crate::error_kind::ErrorKind;
use crate::inventory::vars::Resolved;
use crate::inventory::{pattern, Inventory, Var};
use crate::modules::spec::Reversibility;
use crate::modules::{self, Decision, ModCtx};
use crate::overlay::{Effect, Overlay};
use crate::playbook::{Play, Playbook, Step, Undo};
use crate::run::connections::Connections;
use crate::run::inputs::{Inputs, Request};
use crate::run::walk::{self, Mode, PlayAt, StepAt};
use crate::template::{self, Templates};
use crate::transport::{HostConn, TransportOptions};

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
    pub name: String,
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

/// What `{{ run.id }}` shows in a plan: the id of the run that applies it is not known yet.
pub const RUN_ID_PLACEHOLDER: &str = "RUN-ID";

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

/// Every input: playbook files, inventory, its secrets file (as encrypted), templates, `-e`
/// files and `-e name=value` variables.
pub fn inputs(pb: &Playbook, inv: &Inventory, templates_dir: &Path, extra: &[Var]) -> Vec<Input> {
    let mut files: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    files.extend(
        template::template_files(templates_dir)
            .into_iter()
            .map(|(_, t)| (t, "template")),
    );
    files.extend(pb.plays.iter().map(|p| (p.file.clone(), "playbook")));
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

/// What earlier steps of the plan leave behind on a host, for the steps after them.
#[derive(Default)]
struct HostMemory {
    /// Registered names whose value only a real run knows, with the step that registers them.
    unknown_registers: BTreeMap<String, String>,
    /// Earlier steps that change packages (their effects are not modelled, only named).
    package_changes: Vec<String>,
    /// Handlers notified: name → "will run" (true) or "may run" (false).
    notified: BTreeMap<String, bool>,
}

/// Probe everything and build the plan. Invalid input is refused before any host is touched.
pub async fn plan(opts: &PlanOptions) -> std::result::Result<Plan, Diagnostics> {
    Ok(plan_loaded(&load_inputs(opts)?, opts).await)
}

/// The plan of inputs already loaded and checked (`load_inputs`): a saved plan's inputs are
/// loaded once, planned again and then applied.
pub async fn plan_loaded(inputs: &Inputs, opts: &PlanOptions) -> Plan {
    let plays = &inputs.plays;
    let run = PlanRun {
        inv: &inputs.inv,
        templates: &inputs.templates,
        opts,
        conns: Connections::default(),
        many_plays: plays.playbook.plays.len() > 1,
    };
    let plan = Plan {
        schema: SCHEMA.into(),
        created: crate::controller::clock::now_rfc3339(),
        playbook: opts.playbook.display().to_string(),
        inventory: opts.inventory.display().to_string(),
        limit: opts.limit.clone(),
        tags: opts.tags.clone(),
        skip_tags: opts.skip_tags.clone(),
        inputs: input_hashes(
            &plays.playbook,
            run.inv,
            &opts.templates_dir,
            &opts.extra_vars,
        ),
        hosts: Vec::new(),
        unreachable: Vec::new(),
        summary: Summary::default(),
        entries: Vec::new(),
    };
    let mut planning = Planning {
        run: &run,
        plan,
        memory: HashMap::new(),
        planned: Overlay::default(),
        unreachable: BTreeSet::new(),
        reachable: Vec::new(),
    };
    let _ = walk::walk(plays, &mut planning, None).await;
    let mut plan = planning.plan;
    run.close().await;
    plan.summary = summary_of(&plan);
    plan
}

/// The walk in plan mode: every step probed on the play's reachable hosts against what the
/// steps before it leave.
struct Planning<'p> {
    run: &'p PlanRun<'p>,
    plan: Plan,
    memory: HashMap<String, HostMemory>,
    /// What the steps planned so far leave on each host, for the steps after them.
    planned: Overlay,
    unreachable: BTreeSet<String>,
    /// The current play's hosts that could be reached.
    reachable: Vec<String>,
}

impl Mode for Planning<'_> {
    /// A plan goes through to the end.
    type Stop = std::convert::Infallible;

    fn tags(&self) -> (&[String], &[String]) {
        (&self.run.opts.tags, &self.run.opts.skip_tags)
    }

    fn play_hosts(&mut self, _play: &Play, selected: &[String]) -> Option<Vec<String>> {
        Some(selected.to_vec())
    }

    async fn start_play(&mut self, _at: &PlayAt<'_>, hosts: &[String]) {
        self.reachable = self
            .run
            .reach(hosts, &mut self.plan, &mut self.unreachable)
            .await;
    }

    /// One batch: `serial` changes when a step runs on a host, not what it does there.
    fn batches(&self, _play: &Play, hosts: &[String]) -> Vec<Vec<String>> {
        vec![hosts.to_vec()]
    }

    async fn open_batch(&mut self, _play_index: usize, _batch: &[String]) -> Vec<String> {
        self.reachable.clone()
    }

    async fn step(
        &mut self,
        at: StepAt<'_>,
        at_play: &PlayAt<'_>,
        _batch: &[String],
        active: &mut Vec<String>,
    ) {
        let entries = self
            .run
            .step_everywhere(
                at,
                None,
                active,
                at_play.vars,
                &mut self.memory,
                &mut self.planned,
            )
            .await;
        self.plan.entries.extend(entries);
    }

    fn handler_hosts(
        &mut self,
        at: StepAt<'_>,
        _batch: &[String],
        active: &[String],
    ) -> Vec<String> {
        maybe_notified(active, &at.step.answers_to(), &self.memory)
    }

    async fn handler(&mut self, at: StepAt<'_>, at_play: &PlayAt<'_>, hosts: &[String]) {
        let names = at.step.answers_to();
        let entries = self
            .run
            .step_everywhere(
                at,
                Some(&names),
                hosts,
                at_play.vars,
                &mut self.memory,
                &mut self.planned,
            )
            .await;
        self.plan.entries.extend(entries);
    }

    async fn close_batch(&mut self, _play: &Play) -> Option<Self::Stop> {
        None
    }
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

/// The hosts where a handler answering to `names` may have been notified.
fn maybe_notified(
    reachable: &[String],
    names: &[&str],
    memory: &HashMap<String, HostMemory>,
) -> Vec<String> {
    reachable
        .iter()
        .filter(|h| {
            memory
                .get(*h)
                .is_some_and(|m| names.iter().any(|n| m.notified.contains_key(*n)))
        })
        .cloned()
        .collect()
}

struct PlanRun<'a> {
    inv: &'a Inventory,
    templates: &'a Templates,
    opts: &'a PlanOptions,
    conns: Connections,
    /// The playbook has more than one play: name the play where a reason names a step.
    many_plays: bool,
}

/// One step on one host, as planned.
struct StepPlan {
    entry: Entry,
    /// The host the step runs on (its delegate, if any).
    target: String,
    /// What the host looks like after the step, as its probe derived it.
    after: Vec<Effect>,
    /// What the step may change, for when its outcome is unknown.
    touches: Vec<Effect>,
}

impl PlanRun<'_> {
    /// Connect to hosts not yet connected. No lock is taken: a plan writes nothing.
    async fn connect(&self, hosts: &[String]) -> Vec<Unreachable> {
        let transport = &self.opts.transport;
        let closed = self
            .conns
            .open_missing(hosts, self.opts.forks, |h| {
                let conn = self.inv.host(h)?.connection.clone();
                let (name, transport) = (h.to_string(), transport.clone());
                Some(async move {
                    let c = HostConn::connect(&name, &conn, &transport).await?;
                    warn_if_locked(&name, &c).await;
                    Ok::<_, anyhow::Error>(c)
                })
            })
            .await;
        closed
            .into_iter()
            .map(|(host, e)| Unreachable {
                host,
                error: format!("{e:#}"),
            })
            .collect()
    }

    async fn close(self) {
        self.conns.close_all().await;
    }

    /// How a reason names a step of this plan.
    fn step_label(&self, play_name: &str, index: usize, name: &str, handler: bool) -> String {
        let mut by = if handler {
            format!("handler \"{name}\"")
        } else {
            format!("step {} ({name})", index + 1)
        };
        if self.many_plays {
            by.push_str(&format!(" of play \"{play_name}\""));
        }
        by
    }

    /// Connect to a play's hosts: the plan lists every host, and each unreachable one once;
    /// the reachable ones are returned.
    async fn reach(
        &self,
        hosts: &[String],
        plan: &mut Plan,
        unreachable: &mut BTreeSet<String>,
    ) -> Vec<String> {
        for e in self.connect(hosts).await {
            if unreachable.insert(e.host.clone()) {
                plan.unreachable.push(e);
            }
        }
        for h in hosts {
            if !plan.hosts.contains(h) {
                plan.hosts.push(h.clone());
            }
        }
        hosts
            .iter()
            .filter(|h| !unreachable.contains(*h))
            .cloned()
            .collect()
    }

    /// One step (or handler) on every host. `handler`: the names a handler answers to; on a
    /// host where it is only maybe notified, a change becomes "unknown".
    async fn step_everywhere(
        &self,
        at: StepAt<'_>,
        handler: Option<&[&str]>,
        hosts: &[String],
        everyone: &Arc<BTreeMap<String, Resolved>>,
        memory: &mut HashMap<String, HostMemory>,
        planned: &mut Overlay,
    ) -> Vec<Entry> {
        let (play_name, index, step) = (at.play.name.as_str(), at.step_index, at.step);
        let targets = walk::step_hosts(step, hosts);
        let results = {
            let seen: &Overlay = planned;
            let futs = targets.iter().map(|h| {
                let mem = memory.remove(h).unwrap_or_default();
                let everyone = everyone.clone();
                async move {
                    let sp = self
                        .step_on_host(at, handler.is_some(), h, &everyone, &mem, seen)
                        .await;
                    (h.to_string(), sp, mem)
                }
            });
            futures::future::join_all(futs).await
        };
        let mut out = Vec::new();
        for (h, sp, mut mem) in results {
            let StepPlan {
                mut entry,
                target,
                after,
                touches,
            } = sp;
            if let Some(names) = handler {
                let sure = names.iter().any(|n| mem.notified.get(*n) == Some(&true));
                if !sure && entry.outcome != Outcome::NoChange {
                    entry.outcome = Outcome::Unknown;
                    entry.reason =
                        Some("runs only if a step that notifies it changes something".into());
                }
            }
            // What the later steps see: the derived state after a change; after a step whose
            // outcome is unknown (or not derived), whatever it touches, as unknown.
            let effects = match entry.outcome {
                Outcome::Change if !after.is_empty() => after,
                Outcome::Change | Outcome::Unknown => touches,
                Outcome::NoChange | Outcome::Skipped => Vec::new(),
            };
            if !effects.is_empty() {
                let by = self.step_label(play_name, index, &entry.name, handler.is_some());
                planned
                    .hosts
                    .entry(target)
                    .or_default()
                    .record(&effects, &by);
            }
            if let Some(r) = &step.register {
                if entry.outcome != Outcome::Skipped {
                    mem.unknown_registers.insert(
                        r.clone(),
                        self.step_label(play_name, index, &entry.name, handler.is_some()),
                    );
                }
            }
            if step.action.module == "package"
                && entry.outcome != Outcome::NoChange
                && entry.outcome != Outcome::Skipped
            {
                mem.package_changes.push(self.step_label(
                    play_name,
                    index,
                    &entry.name,
                    handler.is_some(),
                ));
            }
            for (n, _) in &step.notify {
                match entry.outcome {
                    Outcome::Change => {
                        mem.notified.insert(n.clone(), true);
                    }
                    Outcome::Unknown => {
                        mem.notified.entry(n.clone()).or_insert(false);
                    }
                    _ => {}
                }
            }
            memory.insert(h, mem);
            out.push(entry);
        }
        out
    }

    /// A step's plan on one host before its probe: where it runs, what it may touch, its way
    /// back.
    fn step_plan(
        &self,
        at: StepAt<'_>,
        handler: bool,
        host: &str,
        everyone: &BTreeMap<String, Resolved>,
    ) -> StepPlan {
        let (play, play_name, index, step) =
            (at.play_index, at.play.name.as_str(), at.step_index, at.step);
        let spec = modules::spec::find(&step.action.module);
        let irreversible = irreversible(step);
        let target = step
            .delegate_to
            .as_ref()
            .map_or(host.to_string(), |(d, _)| d.clone());
        // What the step may touch, whatever its outcome (arguments that need a result only a
        // run knows cannot be rendered: then nothing is known of them).
        let touches = self
            .context(host, everyone)
            .ok()
            .and_then(|ctx| {
                crate::run::step::render_args(&step.action.module, &step.action.args, &ctx, step)
                    .ok()
            })
            .map(|args| modules::touches(&step.action.module, &args))
            .unwrap_or_default();
        StepPlan {
            entry: Entry {
                play,
                play_name: play_name.to_string(),
                step: index,
                handler,
                name: step.display_name(),
                module: step.action.module.clone(),
                host: host.to_string(),
                outcome: Outcome::Unknown,
                summary: String::new(),
                diff: None,
                reason: None,
                irreversible,
                undo: match &step.undo {
                    Undo::Custom(a) => Some(format!("declared: {}", a.module)),
                    Undo::Irreversible(_) => None,
                    Undo::Module => spec
                        .filter(|s| s.reversibility == Reversibility::Reversible)
                        .map(|_| "recorded by the module when applied".to_string()),
                },
                fingerprint: String::new(),
            },
            target,
            after: Vec::new(),
            touches,
        }
    }

    async fn step_on_host(
        &self,
        at: StepAt<'_>,
        handler: bool,
        host: &str,
        everyone: &BTreeMap<String, Resolved>,
        mem: &HostMemory,
        planned: &Overlay,
    ) -> StepPlan {
        let mut sp = self.step_plan(at, handler, host, everyone);
        let (step, play_become, play_become_user) =
            (at.step, &at.play.become_root, &at.play.become_user);
        let entry = &mut sp.entry;
        // A step reading a result registered earlier can only be known when it runs.
        let texts = step_texts(step);
        if let Some((name, by)) = mem
            .unknown_registers
            .iter()
            .find(|(name, _)| texts.iter().any(|t| mentions(t, name)))
        {
            entry.reason = Some(format!(
                "depends on {by}, whose result `{name}` is known only when it runs"
            ));
            entry.fingerprint = fingerprint(&Decision::Unknown {
                reason: entry.reason.clone().unwrap_or_default(),
            });
            return sp;
        }
        let mut derived_unknown = false;
        let decision = match self
            .probe(step, host, everyone, play_become, play_become_user, planned)
            .await
        {
            Ok(Some(p)) => {
                sp.after = p.after;
                // A reversible step that destroys something on this host first.
                if let Some(lost) = p.loses {
                    entry.irreversible = true;
                    entry.undo = Some(format!(
                        "recorded by the module when applied; {lost} is not restored"
                    ));
                }
                p.decision
            }
            Ok(None) => {
                entry.outcome = Outcome::Skipped;
                entry.reason = Some("`when:` is false".into());
                entry.fingerprint = sha256_hex(b"skipped");
                return sp;
            }
            // An earlier step of the plan leaves something this probe cannot see.
            Err(e) => match ErrorKind::of(&e) {
                ErrorKind::NotDerivable(why) => {
                    derived_unknown = true;
                    Decision::Unknown {
                        reason: why.to_string(),
                    }
                }
                _ => Decision::Unknown {
                    reason: format!("cannot probe: {e:#}"),
                },
            },
        };
        entry.fingerprint = fingerprint(&decision);
        // `changed_when: false` is the author's word that the step only reads: it will run,
        // and change nothing.
        if step.declared_read_only() {
            entry.outcome = Outcome::NoChange;
            entry.reason =
                Some("runs during apply; declared read-only (changed_when: false)".into());
            sp.after.clear();
            sp.touches.clear();
            return sp;
        }
        match decision {
            Decision::NoChange => {
                entry.outcome = Outcome::NoChange;
            }
            Decision::Change { summary, diff } => {
                entry.outcome = Outcome::Change;
                entry.summary = summary;
                entry.diff = diff;
            }
            Decision::Unknown { reason } => {
                entry.outcome = Outcome::Unknown;
                entry.reason = Some(match mem.package_changes.last() {
                    Some(by) if !reason.starts_with("command") && !derived_unknown => {
                        format!("{reason}; depends on {by}, which changes packages this step reads")
                    }
                    _ => reason,
                });
            }
        }
        sp
    }

    /// The template context of a host for a step of the plan.
    fn context(&self, host: &str, everyone: &BTreeMap<String, Resolved>) -> Result<template::Vars> {
        let resolved = everyone
            .get(host)
            .ok_or_else(|| anyhow!("no variables for {host}"))?;
        let mut ctx = template::host_context(self.inv, host, resolved, everyone);
        // The run id is only known when the plan is applied.
        ctx.insert(
            crate::context_names::RUN,
            &serde_json::json!({ "id": RUN_ID_PLACEHOLDER }),
        );
        Ok(ctx)
    }

    /// `Ok(None)`: the step is skipped on this host.
    async fn probe(
        &self,
        step: &Step,
        host: &str,
        everyone: &BTreeMap<String, Resolved>,
        play_become: &Option<bool>,
        play_become_user: &Option<String>,
        planned: &Overlay,
    ) -> Result<Option<modules::Probe>> {
        let mut ctx = self.context(host, everyone)?;
        let target = crate::run::step::delegate_target(self.inv, step, host, &ctx)?;
        if !self.conns.contains(&target).await {
            self.connect(std::slice::from_ref(&target)).await;
        }
        let conn = self
            .conns
            .get(&target)
            .await
            .ok_or_else(|| anyhow!("{target} is unreachable"))?;
        if crate::run::facts::mentions_facts(&step_texts(step).join("\n")) {
            ctx.insert(
                crate::context_names::FACTS,
                &crate::run::facts::gather(&conn).await?,
            );
        }
        if let Some(w) = &step.when {
            if !template::eval_bool(&w.text, &ctx, &w.pos).map_err(|d| anyhow!("{d}"))? {
                return Ok(None);
            }
        }
        let args =
            crate::run::step::render_args(&step.action.module, &step.action.args, &ctx, step)?;
        let become_ = crate::run::step::become_for(
            self.inv,
            *play_become,
            play_become_user.as_deref(),
            step,
            host,
        );
        // Modules reading other hosts (`sync`'s `src_host`, …) get their connections.
        let wanted = modules::peer_hosts(&step.action.module, &args);
        let peers = if wanted.is_empty() {
            HashMap::new()
        } else {
            self.connect(&wanted).await;
            self.conns.all().await
        };
        let mctx = ModCtx {
            peers: &peers,
            host: &conn,
            become_: become_.as_ref(),
            timeout: Some(Duration::from_secs(step.timeout_secs.unwrap_or(120))),
            templates: self.templates,
            vars: &ctx,
            run_id: "plan",
            approvals: &self.opts.approvals,
            interactive: false,
            planned: Some(planned),
        };
        Ok(Some(
            modules::probe(&step.action.module, &args, &mctx).await?,
        ))
    }
}

/// A run in progress makes this plan stale; say so, but read on.
async fn warn_if_locked(host: &str, c: &HostConn) {
    let read = format!("cat {} 2>/dev/null", crate::run::lock::HOST_LOCK);
    if let Ok(out) = c.run(&read, None, None, None).await {
        if let Ok(owner) = serde_json::from_str::<crate::run::lock::Owner>(out.stdout_text().trim())
        {
            eprintln!(
                "warning: {host} is locked by {} — this plan may be stale",
                owner.describe()
            );
        }
    }
}

/// Every text of a step that can name a variable: arguments and expressions.
fn step_texts(step: &Step) -> Vec<String> {
    let mut out = vec![serde_json::to_string(&step.action.args).unwrap_or_default()];
    for e in [
        &step.when,
        &step.changed_when,
        &step.failed_when,
        &step.until,
    ]
    .into_iter()
    .flatten()
    {
        out.push(e.text.clone());
    }
    out
}

/// Does `text` use `name` as a variable (not as part of a longer word)?
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after) && before != Some('.')
    })
}

/// The hosts a plan of `pb` covers, as `plan` lists them: each play's hosts within `limit`,
/// in the order they first appear. Known without contacting any host.
pub fn hosts_covered(pb: &Playbook, inv: &Inventory, limit: Option<&str>) -> Vec<String> {
    let limited: Option<BTreeSet<&str>> = limit.map(|p| {
        pattern::select(inv, p)
            .unwrap_or_default()
            .into_iter()
            .collect()
    });
    let mut out: Vec<String> = Vec::new();
    for play in &pb.plays {
        for h in pattern::select(inv, &play.hosts).unwrap_or_default() {
            if limited.as_ref().is_none_or(|l| l.contains(h)) && !out.iter().any(|o| o == h) {
                out.push(h.to_string());
            }
        }
    }
    out
}

/// Why a saved plan may no longer be applied.
pub fn drift(saved: &Plan, now: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &saved.inputs {
        match now.inputs.get(k) {
            Some(n) if n == v => {}
            Some(_) => out.push(format!("input changed: {k}")),
            None => out.push(format!("input gone: {k}")),
        }
    }
    for k in now.inputs.keys().filter(|k| !saved.inputs.contains_key(*k)) {
        out.push(format!("new input: {k}"));
    }
    // The hosts a reviewer read at the top of the plan are the hosts the run covers.
    if saved.hosts != now.hosts {
        out.push(format!(
            "the plan covers {}; this run would cover {}",
            host_list(&saved.hosts),
            host_list(&now.hosts)
        ));
    }
    let key = |e: &Entry| (e.play, e.step, e.handler, e.host.clone());
    let before: BTreeMap<_, &Entry> = saved.entries.iter().map(|e| (key(e), e)).collect();
    let after: BTreeMap<_, &Entry> = now.entries.iter().map(|e| (key(e), e)).collect();
    for (k, e) in &before {
        match after.get(k) {
            Some(n) if n.fingerprint == e.fingerprint => {}
            Some(n) => {
                let mut what = format!(
                    "{}: step \"{}\" was planned as {} and would now be {}",
                    e.host,
                    e.name,
                    describe(e),
                    describe(n)
                );
                if let Some(d) = saved::content_drift(e, n) {
                    what.push_str(":\n");
                    what.extend(d.lines().map(|l| format!("      {l}\n")));
                }
                out.push(what.trim_end().to_string());
            }
            None => out.push(format!(
                "{}: step \"{}\" is no longer part of the plan",
                e.host, e.name
            )),
        }
    }
    for (k, n) in &after {
        if !before.contains_key(k) {
            out.push(format!(
                "{}: step \"{}\" is new in the plan",
                n.host, n.name
            ));
        }
    }
    let hosts_then: BTreeSet<&String> = saved.unreachable.iter().map(|u| &u.host).collect();
    for u in &now.unreachable {
        if !hosts_then.contains(&u.host) {
            out.push(format!("{} is now unreachable: {}", u.host, u.error));
        }
    }
    out
}

fn host_list(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "no host".into()
    } else {
        format!("hosts {}", hosts.join(", "))
    }
}

fn describe(e: &Entry) -> String {
    match e.outcome {
        Outcome::NoChange => "no change".into(),
        Outcome::Change => format!("change ({})", e.summary),
        Outcome::Unknown => format!("unknown ({})", e.reason.as_deref().unwrap_or("")),
        Outcome::Skipped => "skipped".into(),
    }
}

/// A step that may change something with no way back, and the hosts where it would.
#[derive(Clone, Debug, PartialEq)]
pub struct IrreversibleStep<'a> {
    pub play_name: &'a str,
    pub step: usize,
    pub handler: bool,
    pub name: &'a str,
    pub hosts: Vec<&'a str>,
}

/// The plan's irreversible steps, each once (with every host it would run on), in plan order.
/// Steps that change nothing (no change, skipped) are left out.
pub fn irreversible_steps(entries: &[Entry]) -> Vec<IrreversibleStep<'_>> {
    let mut out: Vec<IrreversibleStep<'_>> = Vec::new();
    let mut index: BTreeMap<(usize, usize, bool), usize> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.irreversible && matches!(e.outcome, Outcome::Change | Outcome::Unknown))
    {
        let key = (e.play, e.step, e.handler);
        match index.get(&key) {
            Some(&i) => out[i].hosts.push(&e.host),
            None => {
                index.insert(key, out.len());
                out.push(IrreversibleStep {
                    play_name: &e.play_name,
                    step: e.step,
                    handler: e.handler,
                    name: &e.name,
                    hosts: vec![&e.host],
                });
            }
        }
    }
    out
}

/// Does a step change something with no way back? A step that only reads — a read-only
/// module (checks, waits, facts), a read-only query, a wait for the replica, a step declared
/// `changed_when: false` — is never irreversible, whatever its `undo:` says: there is nothing
/// to go back from.
pub fn irreversible(step: &Step) -> bool {
    let spec = modules::spec::find(&step.action.module);
    let reads_only = step.declared_read_only()
        || spec.is_some_and(|s| s.reversibility == Reversibility::ReadOnly)
        || modules::changes_nothing(&step.action.module, &step.action.args);
    !reads_only
        && match &step.undo {
            Undo::Irreversible(_) => true,
            Undo::Custom(_) => false,
            Undo::Module => spec.is_some_and(|s| s.reversibility == Reversibility::Irreversible),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_whole_variable_names_only() {
        assert!(mentions("res.rc == 0", "res"));
        assert!(mentions("{{ res }}", "res"));
        assert!(!mentions("result.rc", "res"));
        assert!(!mentions("x.res", "res"));
    }

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

#[cfg(test)]
mod irreversible_tests {
    use super::*;

    fn steps_of(yaml: &str) -> Vec<Step> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pb.yml");
        std::fs::write(&path, yaml).unwrap();
        let mut diags = Diagnostics::default();
        let pb = crate::playbook::load(&path, &mut diags).unwrap();
        assert!(diags.is_empty(), "{diags:?}");
        pb.plays.into_iter().flat_map(|p| p.steps).collect()
    }

    fn named(steps: &[Step], name: &str) -> bool {
        irreversible(
            steps
                .iter()
                .find(|s| s.name.as_deref() == Some(name))
                .unwrap(),
        )
    }

    #[test]
    fn read_only_steps_are_never_irreversible() {
        let steps = steps_of(
            r#"
- name: p
  hosts: all
  steps:
    - { name: check declared read-only, command: "date +%s", changed_when: false }
    - { name: read-only but undo irreversible, shell: "cat /etc/hostname", changed_when: false, undo: irreversible }
    - { name: http check, http_check: { url: "http://x/status" } }
    - { name: cluster check, cluster_safety: { check: no_app_running, hosts: [a] } }
    - { name: wait, wait_for: { port: 22 }, undo: irreversible }
    - { name: query, mysql_query: { sql: "SELECT 1", read_only: true } }
    - { name: replica synced, mysql_replication: { state: synced, master: db1 } }
    - { name: migrate, command: /opt/migrate }
    - { name: declared irreversible, file: { path: /x, state: absent }, undo: irreversible }
    - { name: write query, mysql_query: { sql: "DELETE FROM t" } }
    - { name: command with a way back, command: /opt/migrate, undo: { command: /opt/unmigrate } }
"#,
        );
        for read_only in [
            "check declared read-only",
            "read-only but undo irreversible",
            "http check",
            "cluster check",
            "wait",
            "query",
            "replica synced",
            "command with a way back",
        ] {
            assert!(!named(&steps, read_only), "{read_only} marked irreversible");
        }
        for irr in ["migrate", "declared irreversible", "write query"] {
            assert!(named(&steps, irr), "{irr} not marked irreversible");
        }
    }

    fn entry(play: usize, play_name: &str, step: usize, name: &str, host: &str) -> Entry {
        Entry {
            play,
            play_name: play_name.into(),
            step,
            handler: false,
            name: name.into(),
            module: "command".into(),
            host: host.into(),
            outcome: Outcome::Unknown,
            summary: String::new(),
            diff: None,
            reason: Some("a command without a check".into()),
            irreversible: true,
            undo: None,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn the_irreversible_list_names_each_step_once_with_its_play_and_hosts() {
        let mut entries = vec![
            entry(0, "Nodes", 2, "Migrate", "app1"),
            entry(0, "Nodes", 2, "Migrate", "app2"),
            entry(3, "Verify", 1, "Migrate", "app1"),
            entry(3, "Verify", 4, "Cleanup", "lb"),
        ];
        let mut unchanged = entry(3, "Verify", 5, "Nothing to do", "lb");
        unchanged.outcome = Outcome::NoChange;
        entries.push(unchanged);
        let steps = irreversible_steps(&entries);
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].hosts, ["app1", "app2"]);
        let plan = Plan {
            schema: SCHEMA.into(),
            created: String::new(),
            playbook: "pb.yml".into(),
            inventory: "inv.yml".into(),
            limit: None,
            tags: vec![],
            skip_tags: vec![],
            inputs: BTreeMap::new(),
            hosts: vec!["app1".into(), "app2".into(), "lb".into()],
            unreachable: vec![],
            summary: Summary {
                hosts: 3,
                unknown: 4,
                no_change: 1,
                irreversible: steps.len(),
                ..Summary::default()
            },
            entries,
        };
        let text = render::render_text(&plan, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("; 3 IRREVERSIBLE steps"), "{}", lines[0]);
        assert_eq!(lines[1], "Irreversible steps (no automatic way back):");
        assert_eq!(lines[2], "  - PLAY Nodes / step 3: Migrate on app1, app2");
        assert_eq!(lines[3], "  - PLAY Verify / step 2: Migrate on app1");
        assert_eq!(lines[4], "  - PLAY Verify / step 5: Cleanup on lb");
        assert_eq!(lines[5], "");
        assert!(!text.contains("Nothing to do on"));
        let md = render::render_markdown(&plan);
        assert!(md.contains("- play _Nodes_, step 3: **Migrate** on `app1`, `app2`\n"));
        assert_eq!(md.matches("**Migrate** on").count(), 2);
    }
}
