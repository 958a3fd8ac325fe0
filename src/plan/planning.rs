//! The plan's mode of the walk (`run::walk`): every step probed on the play's reachable hosts
//! against what the steps before it leave (the overlay), what only a real run can know said
//! "unknown" with the reason, handlers planned where they may be notified.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::{
    fingerprint, input_hashes, irreversible, summary_of, Entry, Outcome, Plan, PlanOptions,
    Summary, Unreachable, RUN_ID_PLACEHOLDER, SCHEMA,
};
use crate::controller::hash::sha256_hex;
use crate::error_kind::ErrorKind;
use crate::inventory::vars::Resolved;
use crate::inventory::Inventory;
use crate::modules::spec::Reversibility;
use crate::modules::{self, Decision, ModCtx};
use crate::overlay::{Effect, Overlay};
use crate::playbook::{Play, Step, Undo};
use crate::run::connections::Connections;
use crate::run::inputs::Inputs;
use crate::run::walk::{self, Mode, PlayAt, StepAt};
use crate::template::{self, Templates};
use crate::transport::HostConn;

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
        shared: std::sync::Mutex::new(None),
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
        // Set by the caller, which knows the agreed window (`engine::window::fit`).
        maintenance_window: None,
        after_run: super::after_run_plays(&plays.playbook),
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

    async fn start_play(&mut self, at: &PlayAt<'_>, hosts: &[String]) {
        *self.run.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(at.shared.clone());
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

    fn probes_every_path(&self) -> bool {
        true
    }

    async fn close_batch(&mut self, _play: &Play) -> Option<Self::Stop> {
        None
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
    /// The current play's `groups` and `hostvars` (built once by the check).
    shared: std::sync::Mutex<Option<Arc<template::Shared>>>,
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
        let ctx = self.step_context(step, host, everyone).ok();
        // Where the step acts: a templated `delegate_to:` rendered for this host (the planned
        // state of that host is what later steps there are probed against).
        let target = match (&step.delegate_to, &ctx) {
            (Some(_), Some(ctx)) => crate::run::step::delegate_target(self.inv, step, host, ctx)
                .unwrap_or_else(|_| host.to_string()),
            (Some((d, _)), None) => d.clone(),
            (None, _) => host.to_string(),
        };
        // What the step may touch, whatever its outcome (arguments that need a result only a
        // run knows cannot be rendered: then nothing is known of them).
        let touches = ctx
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
                item: at.item,
                name: step.display_name(),
                at: Some(step.location()),
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
                    Undo::Module => spec.and_then(|s| match s.reversibility {
                        Reversibility::Reversible => {
                            Some("recorded by the module when applied".to_string())
                        }
                        Reversibility::NoUndoNeeded => {
                            Some("none needed: nothing on a host to undo".to_string())
                        }
                        _ => None,
                    }),
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
        let (before, after) = step_texts(step);
        // After the module ran, the step's own `register:` name is its new result.
        let reads = |name: &str| {
            before.iter().any(|t| mentions(t, name))
                || (step.register.as_deref() != Some(name)
                    && after.iter().any(|t| mentions(t, name)))
        };
        if let Some((name, by)) = mem.unknown_registers.iter().find(|(name, _)| reads(name)) {
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
        let shared = self.run_shared(everyone);
        let mut ctx = template::host_context_with(self.inv, host, resolved, &shared);
        // The run id is only known when the plan is applied.
        ctx.insert(
            crate::context_names::RUN,
            &serde_json::json!({ "id": RUN_ID_PLACEHOLDER }),
        );
        Ok(ctx)
    }

    /// What one step sees on a host: the host's context with the step's include variables
    /// and loop item bound.
    fn step_context(
        &self,
        step: &Step,
        host: &str,
        everyone: &BTreeMap<String, Resolved>,
    ) -> Result<template::Vars> {
        let mut ctx = self.context(host, everyone)?;
        if let Some(resolved) = everyone.get(host) {
            crate::playbook::bind_scope(step, &mut ctx, resolved).map_err(|d| anyhow!("{d}"))?;
        }
        Ok(ctx)
    }

    /// The play's shared template context: the one its start set, else built now.
    fn run_shared(&self, everyone: &BTreeMap<String, Resolved>) -> Arc<template::Shared> {
        let slot = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(s) => s.clone(),
            None => Arc::new(template::Shared::new(self.inv, everyone)),
        }
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
        let mut ctx = self.step_context(step, host, everyone)?;
        let target = crate::run::step::delegate_target(self.inv, step, host, &ctx)?;
        if !self.conns.contains(&target).await {
            self.connect(std::slice::from_ref(&target)).await;
        }
        let conn = self
            .conns
            .get(&target)
            .await
            .ok_or_else(|| anyhow!("{target} is unreachable"))?;
        let (before, after) = step_texts(step);
        if crate::run::facts::mentions_facts(&[before, after].concat().join("\n")) {
            ctx.insert(
                crate::context_names::FACTS,
                &crate::run::facts::gather(&conn).await?,
            );
        }
        for w in step.conditions() {
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

/// Every text of a step that can name a variable: those read before the module runs
/// (arguments, conditions, include vars), and those read after it (`changed_when`,
/// `failed_when`, `until`, where the step's own result is bound under its `register:` name).
fn step_texts(step: &Step) -> (Vec<String>, Vec<String>) {
    let mut before = vec![serde_json::to_string(&step.action.args).unwrap_or_default()];
    before.extend(step.conditions().map(|e| e.text.clone()));
    before.extend(step.scope_vars.iter().map(|v| v.value.to_string()));
    let after = [&step.changed_when, &step.failed_when, &step.until]
        .into_iter()
        .flatten()
        .map(|e| e.text.clone())
        .collect();
    (before, after)
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
}
