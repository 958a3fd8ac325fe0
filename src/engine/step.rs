//! One step on the hosts of a batch, and on one host: probe, decide (against the reviewed plan
//! when there is one), journal the intent with its way back, apply, judge the result
//! (`changed_when`, `failed_when`, `until`), register it and journal it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value as J};
use tokio::sync::Semaphore;

use super::hosts::{connection_to, peers_for};
use super::output::{OutputMode, Status};
use super::recovery::Done;
use super::{fault, shared_context, Run};
use crate::error_kind::ErrorKind;
use crate::inventory::vars::Resolved;
use crate::modules::{self, Decision, ModCtx, UndoAction};
use crate::playbook::{Play, Step, Undo};
use crate::run::facts;
use crate::run::step::{become_for, delegate_target, render_args};
use crate::run::walk::StepAt;
use crate::template;
use crate::transport::{Become, HostConn};

pub(super) struct HostOutcome {
    pub(super) host: String,
    pub(super) status: Status,
    pub(super) notify: bool,
}

pub(super) async fn run_step_everywhere(
    run: &Arc<Run>,
    at: StepAt<'_>,
    hosts: &[String],
    everyone: &Arc<BTreeMap<String, Resolved>>,
) -> Vec<HostOutcome> {
    let step = at.step;
    let targets = crate::run::walk::step_hosts(step, hosts).to_vec();
    let sem = Arc::new(Semaphore::new(run.opts.forks.max(1)));
    let mut tasks = Vec::new();
    for h in targets {
        let (run, sem, everyone) = (run.clone(), sem.clone(), everyone.clone());
        let (play, step) = (at.play.clone(), step.clone());
        let (play_index, step_index, handler, item) =
            (at.play_index, at.step_index, at.handler, at.item);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let at = StepAt {
                play: &play,
                play_index,
                step_index,
                step: &step,
                handler,
                item,
            };
            run_step_on_host(&run, at, &h, &everyone).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => out.push(o),
            Err(e) => run
                .reporter
                .say(&format!("internal error in a host task: {e}")),
        }
    }
    if let (true, Some(first)) = (step.run_once, out.first()) {
        share_run_once_result(run, step, &first.host, hosts);
    }
    out
}

/// A `run_once` step's one result stands for every host of the batch: what it registered on
/// the host that ran it is registered on all of them (also when a resumed run finds the step
/// finished by that host before the stop).
pub(super) fn share_run_once_result(run: &Run, step: &Step, ran_on: &str, hosts: &[String]) {
    let Some(reg) = &step.register else {
        return;
    };
    let mut regs = run.registered.lock().unwrap_or_else(|e| e.into_inner());
    let Some(v) = regs.get(ran_on).and_then(|m| m.get(reg)).cloned() else {
        return;
    };
    for h in hosts {
        regs.entry(h.clone())
            .or_default()
            .insert(reg.clone(), v.clone());
    }
}

/// A step that ended in an error: unreachable when the connection went away, else failed.
/// A way back journaled with the intent is kept: the change may be partly made.
pub(super) fn failed_step(
    e: &anyhow::Error,
    pending: &mut Option<(UndoAction, String)>,
) -> StepResult {
    let msg = format!("{e:#}");
    let status = match ErrorKind::of(e) {
        ErrorKind::ConnectionLost => Status::Unreachable,
        _ => Status::Failed,
    };
    (
        status,
        msg,
        pending.take(),
        None,
        json!({ "failed": true, "msg": format!("{e:#}") }),
    )
}

/// A step result's way back, as journaled: the undo, its host, whether the change may be only
/// partly made, and the user it runs as.
pub(super) fn add_undo_fields(
    fields: &mut J,
    (undo, undo_host): &(UndoAction, String),
    partial: bool,
    become_: &Option<Become>,
) {
    fields["undo"] = serde_json::to_value(undo).unwrap_or(J::Null);
    fields["undo_host"] = json!(undo_host);
    if partial {
        fields["undo_partial"] = json!(true);
    }
    fields["become_user"] = json!(become_
        .as_ref()
        .map(|b| b.user.clone().unwrap_or_else(|| "root".into())));
}

pub(super) async fn run_step_on_host(
    run: &Arc<Run>,
    at: StepAt<'_>,
    host: &str,
    everyone: &BTreeMap<String, Resolved>,
) -> HostOutcome {
    let StepAt {
        play, step, item, ..
    } = at;
    let started = Instant::now();
    let label = step.display_name();
    run.reporter.step_started(&label, host);
    let seq = run.step_counter.fetch_add(1, Ordering::SeqCst);
    let where_ = event_fields(at, host, seq);
    let mut pending: Option<(UndoAction, String)> = None;
    let result = execute(run, at, seq, host, everyone, &mut pending).await;
    // An error after the change began (the module failed half way, the host was lost): the
    // change may be partly made; its way back, journaled with the intent, is kept as the step's
    // undo (safe to run on a change that was only partly made).
    let partial = result.is_err() && pending.is_some();
    let (status, detail, undo, decision, registered) =
        result.unwrap_or_else(|e| failed_step(&e, &mut pending));
    let registered_mark = registered.clone();
    let registered = looped_registered(run, host, (step, item), status, registered);
    // Kept in the journal too (secrets masked), so a resumed run still knows it.
    let registered_for_journal = step
        .register
        .as_ref()
        .map(|r| (r.clone(), registered.clone()));
    if let Some(r) = &step.register {
        register(run, host, r, registered);
    }
    let become_ = effective_become(run, play, step, host);
    if let Some((u, undo_host)) = &undo {
        run.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Done {
                host: undo_host.clone(),
                step: label.clone(),
                seq: seq as u64,
                undo: u.clone(),
                become_: become_.clone(),
                partial,
            });
    }
    let mut fields = where_;
    fields["status"] = json!(status);
    if let Some((name, value)) = registered_for_journal {
        fields["register"] = json!(name);
        fields["registered"] = value;
    }
    // Where user data stood at this point: a rollback compares with it (modules::write_mark).
    if step.action.module == "write_mark" && status == Status::Ok {
        fields["mark"] = registered_mark.clone();
    }
    fields["detail"] = json!(detail);
    fields["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    // What the maintenance window's breakdown reads (engine::window).
    add_window_fields(&mut fields, step, &registered_mark);
    // The handlers this result notifies are journaled with it, in the same event, so a kill
    // between the result and its `handler_notified` events cannot lose them.
    if status == Status::Changed && !step.notify.is_empty() {
        fields["notify"] = json!(step.notify.iter().map(|(n, _)| n).collect::<Vec<_>>());
    }
    if let Some(way_back) = &undo {
        add_undo_fields(&mut fields, way_back, partial, &become_);
    }
    if matches!(step.undo, Undo::Irreversible(_)) {
        fields["irreversible"] = json!(true);
    }
    // An ignored failure finishes the step as a success would: a resumed run does not repeat it.
    if step.ignore_errors && status == Status::Failed {
        fields["ignored"] = json!(true);
    }
    if let Some(d) = decision {
        fields["decision"] = json!(d);
    }
    if let Err(e) = run.journal.record("step_result", fields).await {
        // Without a journal there is no way back: stop this host.
        run.reporter.step_result(
            &play.name,
            &label,
            host,
            Status::Failed,
            &format!("journal: {e:#}"),
            started.elapsed(),
        );
        return HostOutcome {
            host: host.to_string(),
            status: Status::Failed,
            notify: false,
        };
    }
    fault_after_result(run, &label).await;
    let shown = if step.ignore_errors && status == Status::Failed {
        format!("{detail} (ignored)")
    } else {
        detail
    };
    run.reporter
        .step_result(&play.name, &label, host, status, &shown, started.elapsed());
    HostOutcome {
        host: host.to_string(),
        status,
        notify: status == Status::Changed,
    }
}

pub(super) fn effective_become(run: &Run, play: &Play, step: &Step, host: &str) -> Option<Become> {
    become_for(
        &run.inv,
        play.become_root,
        play.become_user.as_deref(),
        step,
        host,
    )
}

/// Status, detail, the undo with the host it runs on (the delegate, if any), the decision,
/// and the registered result.
pub(super) type StepResult = (
    Status,
    String,
    Option<(UndoAction, String)>,
    Option<String>,
    J,
);

/// One step on one host: when → render → probe → apply (with retries/until) → verdict.
/// `pending` receives the way back journaled with the intent, once the change has begun.
pub(super) async fn execute(
    run: &Arc<Run>,
    at: StepAt<'_>,
    seq: u32,
    host: &str,
    everyone: &BTreeMap<String, Resolved>,
    pending: &mut Option<(UndoAction, String)>,
) -> Result<StepResult> {
    let StepAt { play, step, .. } = at;
    let reviewed = reviewed_outcome(run, at, host)?;
    let resolved = everyone
        .get(host)
        .ok_or_else(|| anyhow!("host {host} has no variables"))?;
    let mut ctx = step_vars(run, host, resolved, everyone);
    crate::playbook::bind_scope(step, &mut ctx, resolved).map_err(|d| anyhow!("{d}"))?;
    let target = delegate_target(&run.inv, step, host, &ctx)?;
    let conn = connection_to(run, &target).await?;
    if step_mentions_facts(step) {
        ctx.insert(
            crate::context_names::FACTS,
            &facts_of(run, &target, &conn).await?,
        );
    }
    // Variables reading registered results or facts can be rendered now that those exist.
    template::expand_deferred(&mut ctx, resolved);
    if when_is_false(step, &ctx, reviewed.as_ref())? {
        return Ok(skipped());
    }
    let args = rendered_args(run, step, &ctx)?;
    let become_ = effective_become(run, play, step, host);
    let timeout = step.timeout_secs.map(Duration::from_secs);
    let approvals = run.opts.approvals.clone();
    let peers = peers_for(run, &step.action.module, &args).await;
    let mctx = ModCtx {
        host: &conn,
        become_: become_.as_ref(),
        timeout,
        templates: &run.templates,
        vars: &ctx,
        run_id: &run.id,
        approvals: &approvals,
        interactive: run.opts.output != OutputMode::Json,
        peers: &peers,
        planned: None,
    };
    let mut attempt = 0;
    loop {
        let probe = modules::probe(&step.action.module, &args, &mctx).await?;
        if attempt == 0 && drifted(reviewed.as_ref(), &probe.decision, &run.id) {
            return Err(anyhow!(
                "drift: the host no longer matches the reviewed plan for this step; nothing done"
            ));
        }
        let decision = match &probe.decision {
            Decision::NoChange => "no change".to_string(),
            Decision::Change { summary, .. } => summary.clone(),
            Decision::Unknown { reason } => format!("unknown: {reason}"),
        };
        // The intent goes to the journal first, with the way back the step will record if it
        // completes: if the controller dies during the change, a rollback (or the resumed run)
        // still undoes it, and names the steps that may be half done with no way back.
        if probe.decision != Decision::NoChange {
            let read_only =
                step.declared_read_only() || modules::changes_nothing(&step.action.module, &args);
            *pending = if read_only {
                None
            } else {
                let module_undo =
                    || modules::pending_undo(&step.action.module, &args, &probe, &mctx);
                step_undo(step, module_undo, &ctx)?
            }
            .map(|u| (u, target.clone()));
            let mut fields = event_fields(at, host, seq);
            fields["changes"] = json!(!read_only);
            add_applying_fields(&mut fields, step, read_only, pending.as_ref(), &become_);
            run.journal.record("step_applying", fields).await?;
            fault::after_applying(&step.display_name());
        }
        let outcome = modules::apply(&step.action.module, &args, &probe, &mctx).await?;
        fault::after_apply(&step.display_name());
        let Judged {
            result,
            changed,
            mut failed,
            done,
        } = judge(step, &outcome, &ctx)?;
        if !done && attempt < step.retries {
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(step.delay_secs)).await;
            continue;
        }
        if failed.is_none() {
            failed = fault::injected_failure(&step.display_name());
        }
        if step.until.is_some() && !done && failed.is_none() {
            failed = Some(format!(
                "`until: {}` still false after {} attempts",
                step.until.as_ref().map_or("", |u| u.text.as_str()),
                attempt + 1
            ));
        }
        let undo = if changed {
            step_undo(step, || outcome.undo.clone(), &ctx)?
        } else {
            None
        };
        let (status, detail) = verdict(step, failed, changed, &probe.decision, &result);
        let undo = undo.map(|u| (u, target.clone()));
        return Ok((status, detail, undo, Some(decision), J::Object(result)));
    }
}

/// The outcome and fingerprint the reviewed plan has for this step on this host (when the run
/// applies a saved plan); a step the plan did not have is refused, but for the steps of
/// `after_run` plays, which no plan has.
pub(super) fn reviewed_outcome(
    run: &Run,
    at: StepAt<'_>,
    host: &str,
) -> Result<Option<(crate::plan::Outcome, String)>> {
    let Some(exp) = &run.opts.expected else {
        return Ok(None);
    };
    // A plan leaves out the `after_run` plays (what they do depends on how the run ends); the
    // plan's input hashes still pin the playbook they are written in.
    if at.play.after_run.is_some() {
        return Ok(None);
    }
    match exp.get(&(
        at.play_index,
        at.step_index,
        at.handler,
        at.item,
        host.to_string(),
    )) {
        Some(e) => Ok(Some(e.clone())),
        None => Err(anyhow!(
            "this step was not part of the reviewed plan on {host}; nothing done"
        )),
    }
}

/// A step's variables on a host: the host's, the run's id, and what earlier steps registered.
pub(super) fn step_vars(
    run: &Arc<Run>,
    host: &str,
    resolved: &Resolved,
    everyone: &BTreeMap<String, Resolved>,
) -> template::Vars {
    let shared = shared_context(run, everyone);
    let mut ctx = template::host_context_with(&run.inv, host, resolved, &shared);
    // `run.id` names what a run leaves behind (snapshot sets, backups).
    // In an `after_run` play, `run` also tells how the run ended (`after_run::outcome`).
    match &*run.ended.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(ended) => ctx.insert(crate::context_names::RUN, ended),
        None => ctx.insert(crate::context_names::RUN, &json!({ "id": run.id })),
    }
    if let Some(regs) = run
        .registered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(host)
    {
        for (k, v) in regs {
            ctx.insert(k.as_str(), v);
        }
    }
    ctx
}

/// Does `when:` skip the step? Refused as drift when the reviewed plan ran it.
pub(super) fn when_is_false(
    step: &Step,
    ctx: &template::Vars,
    reviewed: Option<&(crate::plan::Outcome, String)>,
) -> Result<bool> {
    let mut all_true = true;
    for w in step.conditions() {
        if !template::eval_bool(&w.text, ctx, &w.pos).map_err(|d| anyhow!("{d}"))? {
            all_true = false;
            break;
        }
    }
    if all_true {
        return Ok(false);
    }
    let planned_to_run = reviewed.is_some_and(|(o, _)| {
        !matches!(
            o,
            crate::plan::Outcome::Skipped | crate::plan::Outcome::Unknown
        )
    });
    if planned_to_run {
        return Err(anyhow!(
            "drift: the reviewed plan ran this step, now `when:` is false; nothing done"
        ));
    }
    Ok(true)
}

/// The way back of a step: the module's own (`module_undo`), none, or the declared `undo:`
/// rendered for this host.
pub(super) fn step_undo(
    step: &Step,
    module_undo: impl FnOnce() -> Option<UndoAction>,
    ctx: &template::Vars,
) -> Result<Option<UndoAction>> {
    Ok(match &step.undo {
        Undo::Module => module_undo(),
        Undo::Irreversible(_) => None,
        Undo::Custom(action) => Some(UndoAction::Step {
            module: action.module.clone(),
            args: render_args(&action.module, &action.args, ctx, step)?,
        }),
    })
}

/// What one attempt of a step came to, after `changed_when`, `failed_when` and `until`.
pub(super) struct Judged {
    result: Map<String, J>,
    changed: bool,
    failed: Option<String>,
    done: bool,
}

pub(super) fn judge(
    step: &Step,
    outcome: &modules::Outcome,
    ctx: &template::Vars,
) -> Result<Judged> {
    let mut result = outcome.result.clone();
    result.insert("changed".into(), J::Bool(outcome.changed));
    result.insert("failed".into(), J::Bool(outcome.failed.is_some()));
    if let Some(f) = &outcome.failed {
        result.insert("msg".into(), J::String(f.clone()));
    }
    let mut rctx = ctx.clone();
    rctx.insert(crate::context_names::RESULT, &result);
    if let Some(r) = &step.register {
        rctx.insert(r.as_str(), &result);
    }
    let mut changed = outcome.changed;
    if let Some(e) = &step.changed_when {
        changed = template::eval_bool(&e.text, &rctx, &e.pos).map_err(|d| anyhow!("{d}"))?;
    }
    let mut failed = outcome.failed.clone();
    if let Some(e) = &step.failed_when {
        failed = template::eval_bool(&e.text, &rctx, &e.pos)
            .map_err(|d| anyhow!("{d}"))?
            .then(|| {
                outcome
                    .failed
                    .clone()
                    .unwrap_or_else(|| format!("failed_when: {}", e.text))
            });
    }
    result.insert("changed".into(), J::Bool(changed));
    result.insert("failed".into(), J::Bool(failed.is_some()));
    rctx.insert(crate::context_names::RESULT, &result);
    if let Some(r) = &step.register {
        rctx.insert(r.as_str(), &result);
    }
    let done = match &step.until {
        Some(u) => template::eval_bool(&u.text, &rctx, &u.pos).map_err(|d| anyhow!("{d}"))?,
        None => failed.is_none(),
    };
    Ok(Judged {
        result,
        changed,
        failed,
        done,
    })
}

/// A registered result, for the host's later steps.
/// Where a step's journal events are: play, step (and loop item), host, sequence number.
fn event_fields(at: StepAt<'_>, host: &str, seq: u32) -> J {
    let mut fields = json!({ "play": at.play_index, "step": at.step_index, "handler": at.handler, "name": at.step.display_name(), "at": at.step.location(), "host": host, "seq": seq });
    if let Some(i) = at.item {
        fields["item"] = json!(i);
    }
    // A failure here is handled by the block (rescued, or the host fails when it leaves the
    // block): a resumed run does not run the step again.
    if !at.step.blocks.is_empty() {
        fields["in_block"] = json!(true);
    }
    fields
}

/// What an item of a looped step registers: the results of the items before it on this host,
/// with its own; any other step's result as it is.
fn looped_registered(
    run: &Run,
    host: &str,
    (step, item): (&Step, Option<usize>),
    status: Status,
    result: J,
) -> J {
    let (Some(r), Some(i)) = (&step.register, item) else {
        return result;
    };
    let earlier = run
        .registered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(host)
        .and_then(|m| m.get(r))
        .cloned();
    with_item_result(earlier.filter(|_| i > 0), step, status, result)
}

/// What a looped step registers, as Ansible: `results` (one entry per item so far, each with
/// its `item`), `changed` and `failed` if any item's was, `skipped` if every item was.
fn with_item_result(earlier: Option<J>, step: &Step, status: Status, result: J) -> J {
    let mut entry = match result {
        J::Object(m) => m,
        other => Map::from_iter([("result".to_string(), other)]),
    };
    entry.insert("changed".into(), json!(status == Status::Changed));
    entry.insert(
        "failed".into(),
        json!(matches!(status, Status::Failed | Status::Unreachable)),
    );
    entry.insert("skipped".into(), json!(status == Status::Skipped));
    if let Some((var, value)) = &step.item {
        entry.insert(var.clone(), value.clone());
        entry.insert("item".into(), value.clone());
    }
    let mut results = earlier
        .and_then(|e| e.get("results").and_then(J::as_array).cloned())
        .unwrap_or_default();
    results.push(J::Object(entry));
    let any = |key: &str| results.iter().any(|r| r[key] == true);
    json!({
        "changed": any("changed"),
        "failed": any("failed"),
        "skipped": results.iter().all(|r| r["skipped"] == true),
        "results": results,
    })
}

pub(super) fn register(run: &Run, host: &str, name: &str, value: J) {
    run.registered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(host.to_string())
        .or_default()
        .insert(name.to_string(), value);
}

/// The fault injection point after a step's result is journaled (tests only; see `fault`).
pub(super) async fn fault_after_result(run: &Run, label: &str) {
    match fault::after_result(
        run.results_journaled.fetch_add(1, Ordering::SeqCst) + 1,
        label,
    ) {
        fault::Then::Go => {}
        fault::Then::Pause(d) => tokio::time::sleep(d).await,
        fault::Then::AwaitInterrupt => {
            for _ in 0..400 {
                if run.interrupted.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// A `step_applying` event's way back (journaled before the change) and the handlers a
/// change cut off by a kill counts as notifying.
pub(super) fn add_applying_fields(
    fields: &mut J,
    step: &Step,
    read_only: bool,
    pending: Option<&(UndoAction, String)>,
    become_: &Option<Become>,
) {
    if let Some((u, target)) = pending {
        fields["undo_pending"] = serde_json::to_value(u).unwrap_or(J::Null);
        fields["undo_host"] = json!(target);
        fields["become_user"] = json!(become_
            .as_ref()
            .map(|b| b.user.clone().unwrap_or_else(|| "root".into())));
    }
    // A change cut off by a kill may be made: its handlers count as notified.
    if !read_only && !step.notify.is_empty() {
        fields["notify"] = json!(step.notify.iter().map(|(n, _)| n).collect::<Vec<_>>());
    }
}

/// The step's arguments, rendered. Just before the maintenance page goes on, the agreed window
/// is checked again (staging the release took time): a refusal fails the step before it
/// changes anything, and the play's `on_failure` unwinds what the run did.
fn rendered_args(run: &Run, step: &Step, ctx: &template::Vars) -> Result<Map<String, J>> {
    let args = render_args(&step.action.module, &step.action.args, ctx, step)?;
    let Some(a) = &run.agreed else {
        return Ok(args);
    };
    if !super::window::fit::turns_page_on(&step.action.module, &args) {
        return Ok(args);
    }
    match a.refusal(&super::window::fit::decide_now(a)) {
        Some(why) => Err(anyhow!(why)),
        None => Ok(args),
    }
}

/// A step result's module, its phase in the maintenance window and, for a `maintenance` step,
/// the state it left the page in (`page`, from its rendered result).
fn add_window_fields(fields: &mut J, step: &Step, result: &J) {
    let module = step.action.module.as_str();
    fields["module"] = json!(module);
    fields["phase"] = json!(super::window::phase_of(
        module,
        &step.action.args,
        step.phase
    ));
    if module == "maintenance" {
        if let Some(page) = result.get("page").and_then(J::as_str) {
            fields["page"] = json!(page);
        }
    }
    if let Some(mark) = step.window_mark {
        fields["window"] = json!(mark);
    }
}

/// A step's status and result line from what it came to.
pub(super) fn verdict(
    step: &Step,
    failed: Option<String>,
    changed: bool,
    decision: &Decision,
    result: &Map<String, J>,
) -> (Status, String) {
    match failed {
        Some(f) => (Status::Failed, f),
        None if changed => (
            Status::Changed,
            done_detail(&step.action.module, decision, result),
        ),
        None => (
            Status::Ok,
            result
                .get("msg")
                .and_then(J::as_str)
                .map(str::to_string)
                .unwrap_or_default(),
        ),
    }
}

/// A host's facts, gathered once per run on first use.
pub(super) async fn facts_of(run: &Run, target: &str, conn: &HostConn) -> Result<J> {
    let cell = run
        .facts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target.to_string())
        .or_default()
        .clone();
    Ok(cell.get_or_try_init(|| facts::gather(conn)).await?.clone())
}

/// Does the probe now differ from the reviewed plan? A step unknown in the plan never does:
/// the reviewer accepted whatever it turns out to be.
pub(super) fn drifted(
    reviewed: Option<&(crate::plan::Outcome, String)>,
    decision: &Decision,
    run_id: &str,
) -> bool {
    reviewed.is_some_and(|(outcome, fp)| {
        *outcome != crate::plan::Outcome::Unknown
            && *fp
                != crate::plan::fingerprint(&crate::plan::with_placeholder_run_id(decision, run_id))
    })
}

/// A step that `when:` skips.
pub(super) fn skipped() -> StepResult {
    (
        Status::Skipped,
        String::new(),
        None,
        None,
        json!({ "skipped": true, "changed": false, "failed": false }),
    )
}

/// The result line of a step that changed something: what the probe said it would do, or —
/// where the probe could not tell (`unknown`) — what the module did, never the doubt as if it
/// were the result.
pub(super) fn done_detail(module: &str, decision: &Decision, result: &Map<String, J>) -> String {
    match decision {
        // A module that needs no undo (a message sent) tells what it did from its result
        // (where it went, what it answered), not the plan's "would send".
        Decision::Change { summary, .. } => match modules::spec::find(module) {
            Some(s) if s.reversibility == modules::spec::Reversibility::NoUndoNeeded => {
                modules::describe_done(module, result).unwrap_or_else(|| summary.clone())
            }
            _ => summary.clone(),
        },
        Decision::Unknown { .. } => modules::describe_done(module, result)
            .unwrap_or_else(|| "changed (the probe could not tell beforehand)".into()),
        Decision::NoChange => "nothing to do (counted as changed by changed_when)".into(),
    }
}

pub(super) fn step_mentions_facts(step: &Step) -> bool {
    let in_args = serde_json::to_string(&step.action.args).is_ok_and(|s| facts::mentions_facts(&s));
    in_args || step.conditions().any(|w| facts::mentions_facts(&w.text))
}

#[cfg(test)]
mod loop_register_tests {
    use super::*;

    fn item_step(value: &str) -> Step {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pb.yml");
        std::fs::write(&path, "- hosts: all\n  steps:\n    - command: \"true\"\n").unwrap();
        let pb = crate::playbook::load_checked(&path).unwrap();
        let mut step = pb.plays[0].steps[0].clone();
        step.item = Some(("dir".into(), json!(value)));
        step
    }

    #[test]
    fn a_looped_register_has_results_per_item_and_any_changed_or_failed() {
        let first = with_item_result(None, &item_step("a"), Status::Changed, json!({"rc": 0}));
        assert_eq!(
            first,
            json!({ "changed": true, "failed": false, "skipped": false, "results": [
                { "rc": 0, "changed": true, "failed": false, "skipped": false, "dir": "a", "item": "a" }
            ]})
        );
        let second = with_item_result(Some(first), &item_step("b"), Status::Failed, json!({}));
        assert_eq!(second["changed"], true);
        assert_eq!(second["failed"], true);
        assert_eq!(second["results"][1]["item"], "b");
        assert_eq!(second["results"][1]["changed"], false);
        let skips = with_item_result(None, &item_step("a"), Status::Skipped, skipped().4);
        let skips = with_item_result(Some(skips), &item_step("b"), Status::Skipped, skipped().4);
        assert_eq!(skips["skipped"], true);
        assert_eq!(skips["changed"], false);
        assert_eq!(skips["results"].as_array().unwrap().len(), 2);
    }
}
