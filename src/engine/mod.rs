//! The engine: runs a playbook's plays in order (the walk `run::walk` shared with the plan, in
//! apply mode: `applying.rs`); within a play, each step runs on all of the batch's hosts in
//! parallel (bounded by `--forks`) before the next step starts.
//!
//! Every step on every host is probe → decide → apply; what was done and how to undo it goes to
//! the journal before the next action. A host that fails drops out of the run; with
//! `on_failure: unwind` the run's changes are undone, newest first.

mod applying;
mod fault;
pub mod journal;
pub mod output;
pub mod recovery;
pub mod run_status;
pub mod writes_guard;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value as J};
use tokio::sync::{OnceCell, Semaphore};

use crate::controller::hash::sha256_hex;
use crate::controller::user::{controller_name, current_user};
use crate::diag::Diagnostics;
use crate::error_kind::ErrorKind;
use crate::inventory::vars::Resolved;
use crate::inventory::{pattern, Inventory, Var};
use crate::modules::{self, Decision, ModCtx, UndoAction};
use crate::playbook::{Play, Playbook, Step, Undo};
use crate::template::{self, Templates};
use crate::transport::{Become, HostConn, TransportOptions};

use crate::run::connections::Connections;
use crate::run::inputs::{Inputs, Request};
use crate::run::step::{become_for, delegate_target, render_args};
use crate::run::walk::StepAt;
use crate::run::{facts, lock};
use journal::Journal;
use output::{OutputMode, Reporter, Status};

pub struct RunOptions {
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    pub templates_dir: PathBuf,
    pub extra_vars: Vec<Var>,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub forks: usize,
    pub start_at_step: Option<String>,
    pub approvals: Vec<String>,
    pub output: OutputMode,
    pub junit: Option<PathBuf>,
    pub break_lock: bool,
    pub transport: TransportOptions,
    pub verbose: bool,
    /// Applying a reviewed plan: each step's probe must conclude what the plan showed.
    pub expected: Option<Arc<Expected>>,
    /// Continue this run (its controller died): same journal, steps already done skipped.
    pub resume: Option<String>,
}

/// What a saved plan showed for each (play, step, handler, host).
pub type Expected = HashMap<(usize, usize, bool, String), (crate::plan::Outcome, String)>;

#[derive(Debug, PartialEq)]
pub enum RunStatus {
    Ok,
    Failed,
    Unreachable,
    Interrupted,
    /// Refused before any step: a host of the run is locked by another (live) run.
    Locked,
    /// Refused before any step: a host's lock could not be taken (a stale lock, or a file
    /// that is not a cutover lock).
    Refused,
}

pub struct RunResult {
    pub run_id: String,
    pub status: RunStatus,
}

/// Why a run did not start.
pub enum RunError {
    Invalid(Diagnostics),
    Locked(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Other(e)
    }
}

use recovery::Done;

/// State shared by the host tasks of a run.
struct Run {
    id: String,
    inv: Inventory,
    templates: Templates,
    journal: Journal,
    reporter: Reporter,
    opts: RunOptions,
    conns: Connections,
    registered: std::sync::Mutex<HashMap<String, Map<String, J>>>,
    facts: std::sync::Mutex<HashMap<String, Arc<OnceCell<J>>>>,
    done: std::sync::Mutex<Vec<Done>>,
    interrupted: AtomicBool,
    step_counter: AtomicU32,
    /// Step results this process journaled (for the fault-injection points of the tests).
    results_journaled: AtomicU32,
    /// What the journal of a resumed run says was done before.
    resumed: Option<recovery::JournalState>,
    /// `groups` and `hostvars` of the current play, built once when the play starts.
    shared: std::sync::Mutex<Option<Arc<template::Shared>>>,
    /// Hosts found unreachable when the run started (reported then, not tried again).
    down: std::sync::Mutex<BTreeSet<String>>,
}

/// The play's shared template context, set by `run_plays` when a play starts.
fn shared_context(run: &Run, everyone: &BTreeMap<String, Resolved>) -> Arc<template::Shared> {
    let slot = run.shared.lock().unwrap_or_else(|e| e.into_inner());
    match &*slot {
        Some(s) => s.clone(),
        None => Arc::new(template::Shared::new(&run.inv, everyone)),
    }
}

/// A run may be resumed only with the inputs it started with, and only if it did not finish.
fn resume_state(
    id: &str,
    fingerprint: &str,
) -> std::result::Result<recovery::JournalState, RunError> {
    let state = recovery::load_state(id)?;
    // A run stopped by Ctrl-C (at a step boundary) may be resumed like a killed one.
    if let Some(f) = state
        .finished
        .as_ref()
        .filter(|f| f["status"] != "interrupted")
    {
        return Err(RunError::Other(anyhow!(
            "run {id} already finished ({}); roll it back with `cutover rollback {id}` or start a new run",
            f["status"].as_str().unwrap_or("?")
        )));
    }
    if state.started["fingerprint"].as_str() != Some(fingerprint) {
        return Err(RunError::Other(anyhow!(
            "the playbooks, inventory, templates or -e variables differ from those run {id} started with; resume needs the same inputs (or roll it back)"
        )));
    }
    Ok(state)
}

/// Run a playbook. Validation runs first: nothing touches a host unless all input is valid.
pub async fn apply(opts: RunOptions) -> std::result::Result<RunResult, RunError> {
    let inputs = load_inputs(&opts)?;
    apply_loaded(inputs, opts).await
}

/// Run a playbook whose inputs are loaded and checked (`load_inputs`).
pub async fn apply_loaded(
    inputs: Inputs,
    opts: RunOptions,
) -> std::result::Result<RunResult, RunError> {
    let Inputs {
        inv,
        templates,
        plays,
        limited,
    } = inputs;

    crate::transport::reap_stale_masters();
    let fingerprint = fingerprint(&plays.playbook, &opts)?;
    let resumed = match &opts.resume {
        Some(id) => Some(resume_state(id, &fingerprint)?),
        None => None,
    };
    let run_id = opts.resume.clone().unwrap_or_else(journal::new_run_id);
    let owner = lock::Owner::me(&run_id);
    let _controller_lock = match lock::lock_controller(
        &crate::controller::state_dir::state_dir(),
        &opts.inventory,
        &owner,
    ) {
        Ok(l) => l,
        Err(e) => {
            let why = format!("{e:#}");
            journal_refusal(&run_id, &opts, &fingerprint, resumed.is_some(), &why).await?;
            return Err(RunError::Locked(why));
        }
    };
    let journal = open_journal(&run_id, &opts, &fingerprint, resumed.as_ref()).await?;

    let reporter = Reporter::new(opts.output, opts.junit.clone(), opts.verbose);
    reporter.say(&format!(
        "run {run_id}: {} on {}",
        opts.playbook.display(),
        opts.inventory.display()
    ));
    say_cut_off(&reporter, resumed.as_ref());
    let run = Arc::new(Run {
        id: run_id.clone(),
        inv,
        templates,
        journal,
        reporter,
        opts,
        conns: Connections::default(),
        registered: std::sync::Mutex::new(
            resumed
                .as_ref()
                .map(|r| r.registered.clone())
                .unwrap_or_default(),
        ),
        facts: std::sync::Mutex::new(HashMap::new()),
        done: std::sync::Mutex::new(resumed.as_ref().map(|r| r.done.clone()).unwrap_or_default()),
        interrupted: AtomicBool::new(false),
        step_counter: AtomicU32::new(resumed.as_ref().map_or(0, |r| r.next_seq)),
        results_journaled: AtomicU32::new(0),
        resumed,
        shared: std::sync::Mutex::new(None),
        down: std::sync::Mutex::new(BTreeSet::new()),
    });

    let signals = watch_interrupts(&run);

    // Every host the run may touch is locked before its first step: a run that would meet a
    // locked host is refused before it changes anything anywhere.
    let everywhere = hosts_of_run(&run, &plays.playbook, limited.as_ref());
    let status = match lock_run_hosts(&run, &everywhere).await {
        Ok(()) => applying::run_plays(&run, &plays).await,
        Err(refused) => refused,
    };
    signals.abort();

    // Release host locks and close every master connection, whatever happened.
    let conns = run.conns.take_all().await;
    for c in &conns {
        lock::unlock_host(c, &run.id).await;
    }
    crate::transport::close_all(conns).await;
    let status_word = match status {
        RunStatus::Ok => "ok",
        RunStatus::Failed => "failed",
        RunStatus::Unreachable => "unreachable",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Locked => "locked",
        RunStatus::Refused => "refused",
    };
    let recap: BTreeMap<String, J> = run
        .reporter
        .recap()
        .into_iter()
        .map(|(h, r)| (h, json!({ "ok": r.ok, "changed": r.changed, "failed": r.failed, "skipped": r.skipped, "unreachable": r.unreachable })))
        .collect();
    // A refused resume ran nothing: the run stays as it was, to be resumed later.
    let refused = matches!(status, RunStatus::Locked | RunStatus::Refused);
    if !(refused && run.resumed.is_some()) {
        run.journal
            .record(
                "run_finished",
                json!({ "status": status_word, "recap": recap }),
            )
            .await?;
    }
    run.reporter
        .finish(status_word)
        .map_err(|e| anyhow!("cannot write JUnit file: {e}"))?;
    Ok(RunResult { run_id, status })
}

/// Everything a run reads, checked before anything else happens: the inventory, the playbook,
/// the templates it uses, each play's variables, the hosts `--limit` selects.
pub fn load_inputs(opts: &RunOptions) -> std::result::Result<Inputs, RunError> {
    Inputs::load(&Request {
        inventory: &opts.inventory,
        playbook: &opts.playbook,
        templates_dir: &opts.templates_dir,
        extra_vars: &opts.extra_vars,
        limit: opts.limit.as_deref(),
        tags: &opts.tags,
        skip_tags: &opts.skip_tags,
        start_at_step: opts.start_at_step.as_deref(),
        approvals: &opts.approvals,
    })
    .map_err(RunError::Invalid)
}

/// The run's journal: a new one with `run_started`, or the stopped run's, reopened with
/// `run_resumed`.
async fn open_journal(
    run_id: &str,
    opts: &RunOptions,
    fingerprint: &str,
    resumed: Option<&recovery::JournalState>,
) -> Result<Journal> {
    Ok(match resumed {
        Some(r) => {
            let j = Journal::reopen(run_id)?;
            // Steps cut off by the kill: their way back (journaled with the intent) stays part
            // of the run, so a later rollback undoes them even if the resumed step finds
            // nothing left to change.
            let cut_off: Vec<J> = r
                .in_flight
                .iter()
                .map(|f| json!({ "host": f.host, "step": f.step, "undo": f.undo }))
                .collect();
            j.record("run_resumed", json!({ "pid": std::process::id(), "controller": controller_name(), "user": current_user(), "cut_off": cut_off })).await?;
            j
        }
        None => {
            let j = Journal::create(run_id)?;
            j.record(
                "run_started",
                journal::run_started_fields(
                    run_id,
                    &opts.playbook,
                    &opts.inventory,
                    fingerprint,
                    opts.limit.as_deref(),
                ),
            )
            .await?;
            j
        }
    })
}

/// Tell what a resumed run does with the steps the stop cut off.
fn say_cut_off(reporter: &Reporter, resumed: Option<&recovery::JournalState>) {
    for f in resumed.iter().flat_map(|r| &r.in_flight) {
        reporter.say(&match &f.undo {
            Some(u) => format!(
                "\"{}\" on {} was cut off by the stop; it runs again, and its way back ({}) stays recorded",
                f.step,
                f.host,
                u.describe()
            ),
            None => format!(
                "\"{}\" on {} was cut off by the stop; it runs again (no recorded way back for what it may have done)",
                f.step, f.host
            ),
        });
    }
}

/// First Ctrl-C: finish the steps in flight, then stop cleanly. Second: stop now.
fn watch_interrupts(run: &Arc<Run>) -> tokio::task::JoinHandle<()> {
    let signal_run = run.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            signal_run.interrupted.store(true, Ordering::SeqCst);
            signal_run.reporter.say("interrupted: finishing the steps in flight, then stopping (Ctrl-C again to stop at once)");
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = signal_run
                    .journal
                    .record(
                        "run_interrupted",
                        json!({ "how": "second Ctrl-C: stopped at once" }),
                    )
                    .await;
                std::process::exit(crate::exit::INTERRUPTED as i32);
            }
        }
    })
}

/// A run refused by the controller's lock is journaled as one refused by a host's lock is: a
/// new run's journal holds its start, `run_refused` (with the holder) and its end, `locked`; a
/// refused resume adds `run_refused` to the run's journal and leaves the run resumable.
async fn journal_refusal(
    run_id: &str,
    opts: &RunOptions,
    fingerprint: &str,
    resuming: bool,
    why: &str,
) -> Result<()> {
    let j = if resuming {
        Journal::reopen(run_id)?
    } else {
        let j = Journal::create(run_id)?;
        let fields = journal::run_started_fields(
            run_id,
            &opts.playbook,
            &opts.inventory,
            fingerprint,
            opts.limit.as_deref(),
        );
        j.record("run_started", fields).await?;
        j
    };
    j.record(
        "run_refused",
        json!({ "lock": "controller", "why": "locked by another run", "detail": why, "pid": std::process::id() }),
    )
    .await?;
    if !resuming {
        j.record("run_finished", json!({ "status": "locked", "recap": {} }))
            .await?;
    }
    Ok(())
}

/// SHA-256 over everything the run reads: playbooks, inventory, templates, extra variables.
fn fingerprint(pb: &Playbook, opts: &RunOptions) -> Result<String> {
    let mut data = Vec::new();
    let mut files: BTreeSet<PathBuf> = pb.plays.iter().map(|p| p.file.clone()).collect();
    files.insert(opts.inventory.clone());
    if let Ok(rd) = std::fs::read_dir(&opts.templates_dir) {
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    for f in files {
        data.extend(f.display().to_string().into_bytes());
        data.extend(std::fs::read(&f).unwrap_or_default());
    }
    for v in &opts.extra_vars {
        data.extend(format!("{}={}", v.name, v.value).into_bytes());
    }
    Ok(sha256_hex(&data))
}

fn tags_allow(opts: &RunOptions, play_tags: &[String], step_tags: &[String]) -> bool {
    crate::playbook::tags_allow(&opts.tags, &opts.skip_tags, play_tags, step_tags)
}

/// The hosts a run may touch, in inventory order: the hosts of every play it runs (after
/// `--limit` and tags), and the delegates and peer hosts (`sync`'s `src_host`, …) their steps
/// name literally. A name computed by a template is only known when its step runs; such a
/// host is locked when it is first reached.
fn hosts_of_run(run: &Run, pb: &Playbook, limited: Option<&BTreeSet<String>>) -> Vec<String> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let literal = |name: &str| !name.contains("{{") && run.inv.host(name).is_some();
    for play in &pb.plays {
        if !tags_allow(&run.opts, &play.tags, &[])
            && play
                .steps
                .iter()
                .all(|s| !tags_allow(&run.opts, &play.tags, &s.tags))
        {
            continue;
        }
        let hosts: Vec<String> = pattern::select(&run.inv, &play.hosts)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| limited.is_none_or(|l| l.contains(*h)))
            .map(str::to_string)
            .collect();
        if hosts.is_empty() {
            continue;
        }
        wanted.extend(hosts);
        for step in play.steps.iter().chain(play.handlers.iter()) {
            if let Some((d, _)) = &step.delegate_to {
                if literal(d) {
                    wanted.insert(d.clone());
                }
            }
            for peer in modules::peer_hosts(&step.action.module, &step.action.args) {
                if literal(&peer) {
                    wanted.insert(peer);
                }
            }
        }
    }
    pattern::select(&run.inv, "all")
        .unwrap_or_default()
        .into_iter()
        .filter(|h| wanted.contains(*h))
        .map(str::to_string)
        .collect()
}

/// Connect to and lock every host of the run, in parallel, before anything runs. A host held
/// by another run (or whose lock cannot be taken) refuses the whole run: the locks taken are
/// released by the caller and nothing has changed anywhere. An unreachable host is reported
/// now and left out of the run, as when a batch reaches it.
async fn lock_run_hosts(run: &Arc<Run>, hosts: &[String]) -> std::result::Result<(), RunStatus> {
    let closed = open_hosts(run, hosts).await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for (h, why) in &closed {
        report_closed(run, h, why).await;
        match why {
            Closed::Lock(lock::HostLockError::Held(_)) => held.push(h.clone()),
            Closed::Lock(_) => refused.push(h.clone()),
            Closed::Unreachable(_) => {
                run.down
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(h.clone());
            }
        }
    }
    if held.is_empty() && refused.is_empty() {
        return Ok(());
    }
    let blocked: Vec<String> = held.iter().chain(refused.iter()).cloned().collect();
    let _ = run
        .journal
        .record(
            "run_refused",
            json!({ "lock": "host", "hosts": blocked, "why": if held.is_empty() { "lock" } else { "locked by another run" } }),
        )
        .await;
    run.reporter.say(&format!(
        "run refused before its first step: {} cannot be locked for this run (see above); nothing was changed on any host",
        blocked.join(", ")
    ));
    Err(if held.is_empty() {
        RunStatus::Refused
    } else {
        RunStatus::Locked
    })
}

/// Why a host could not be opened for the run.
enum Closed {
    Unreachable(anyhow::Error),
    Lock(lock::HostLockError),
}

impl From<tokio::task::JoinError> for Closed {
    fn from(e: tokio::task::JoinError) -> Self {
        Closed::Unreachable(anyhow!("internal error opening the host: {e}"))
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Unreachable(e) => write!(f, "{e:#}"),
            Closed::Lock(e) => write!(f, "{e}"),
        }
    }
}

async fn report_closed(run: &Arc<Run>, h: &str, why: &Closed) {
    let msg = why.to_string();
    let _ = run
        .journal
        .record("host_unreachable", json!({ "host": h, "error": msg }))
        .await;
    run.reporter.step_result(
        "connect",
        "connect",
        h,
        Status::Unreachable,
        &msg,
        Duration::ZERO,
    );
}

/// Connect (and lock) every host of a batch not yet connected, in parallel. Hosts found
/// unreachable when the run started are not tried again.
async fn connect_all(run: &Arc<Run>, hosts: &[String]) -> BTreeSet<String> {
    for (h, why) in open_hosts(run, hosts).await {
        report_closed(run, &h, &why).await;
    }
    let open = run.conns.all().await;
    hosts
        .iter()
        .filter(|h| open.contains_key(*h))
        .cloned()
        .collect()
}

/// Connect to and lock the hosts not yet connected (nor down since the start), in parallel;
/// the ones that could not be opened, and why.
async fn open_hosts(run: &Arc<Run>, hosts: &[String]) -> Vec<(String, Closed)> {
    let down = run.down.lock().unwrap_or_else(|e| e.into_inner()).clone();
    run.conns
        .open_missing(hosts, run.opts.forks, |h| {
            (!down.contains(h)).then(|| open_host(run.clone(), h.to_string()))
        })
        .await
}

/// Connect to a host and lock it for the run.
async fn open_host(run: Arc<Run>, h: String) -> std::result::Result<HostConn, Closed> {
    let Some(host) = run.inv.host(&h) else {
        return Err(Closed::Unreachable(anyhow!("not in the inventory")));
    };
    let started = Instant::now();
    let conn = HostConn::connect(&h, &host.connection, &run.opts.transport)
        .await
        .map_err(Closed::Unreachable)?;
    if let Err(e) = lock::lock_host(&conn, &lock::Owner::me(&run.id), run.opts.break_lock).await {
        conn.close().await;
        return Err(Closed::Lock(e));
    }
    let _ = run
        .journal
        .record(
            "host_connected",
            json!({ "host": h, "ms": started.elapsed().as_millis() as u64 }),
        )
        .await;
    Ok(conn)
}

struct HostOutcome {
    host: String,
    status: Status,
    notify: bool,
}

async fn run_step_everywhere(
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
        let (play_index, step_index, handler) = (at.play_index, at.step_index, at.handler);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let at = StepAt {
                play: &play,
                play_index,
                step_index,
                step: &step,
                handler,
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
fn share_run_once_result(run: &Run, step: &Step, ran_on: &str, hosts: &[String]) {
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
fn failed_step(e: &anyhow::Error, pending: &mut Option<(UndoAction, String)>) -> StepResult {
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
fn add_undo_fields(
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

async fn run_step_on_host(
    run: &Arc<Run>,
    at: StepAt<'_>,
    host: &str,
    everyone: &BTreeMap<String, Resolved>,
) -> HostOutcome {
    let StepAt {
        play,
        play_index,
        step_index,
        step,
        handler,
    } = at;
    let started = Instant::now();
    let label = step.display_name();
    run.reporter.step_started(&label, host);
    let seq = run.step_counter.fetch_add(1, Ordering::SeqCst);
    let where_ = json!({ "play": play_index, "step": step_index, "handler": handler, "name": label, "host": host, "seq": seq });
    let mut pending: Option<(UndoAction, String)> = None;
    let result = execute(run, at, seq, host, everyone, &mut pending).await;
    // An error after the change began (the module failed half way, the host was lost): the
    // change may be partly made; its way back, journaled with the intent, is kept as the step's
    // undo (safe to run on a change that was only partly made).
    let partial = result.is_err() && pending.is_some();
    let (status, detail, undo, decision, registered) =
        result.unwrap_or_else(|e| failed_step(&e, &mut pending));
    let registered_mark = registered.clone();
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

fn effective_become(run: &Run, play: &Play, step: &Step, host: &str) -> Option<Become> {
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
type StepResult = (
    Status,
    String,
    Option<(UndoAction, String)>,
    Option<String>,
    J,
);

/// One step on one host: when → render → probe → apply (with retries/until) → verdict.
/// `pending` receives the way back journaled with the intent, once the change has begun.
async fn execute(
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
    let args = render_args(&step.action.module, &step.action.args, &ctx, step)?;
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
            let mut fields = json!({ "play": at.play_index, "step": at.step_index, "handler": at.handler, "host": host, "name": step.display_name(), "seq": seq, "changes": !read_only });
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
/// applies a saved plan); a step the plan did not have is refused.
fn reviewed_outcome(
    run: &Run,
    at: StepAt<'_>,
    host: &str,
) -> Result<Option<(crate::plan::Outcome, String)>> {
    let Some(exp) = &run.opts.expected else {
        return Ok(None);
    };
    match exp.get(&(at.play_index, at.step_index, at.handler, host.to_string())) {
        Some(e) => Ok(Some(e.clone())),
        None => Err(anyhow!(
            "this step was not part of the reviewed plan on {host}; nothing done"
        )),
    }
}

/// A step's variables on a host: the host's, the run's id, and what earlier steps registered.
fn step_vars(
    run: &Arc<Run>,
    host: &str,
    resolved: &Resolved,
    everyone: &BTreeMap<String, Resolved>,
) -> template::Vars {
    let shared = shared_context(run, everyone);
    let mut ctx = template::host_context_with(&run.inv, host, resolved, &shared);
    // `run.id` names what a run leaves behind (snapshot sets, backups).
    ctx.insert(crate::context_names::RUN, &json!({ "id": run.id }));
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

/// The connection to where a step runs; a delegate outside the play's hosts is connected now.
async fn connection_to(run: &Arc<Run>, target: &str) -> Result<Arc<HostConn>> {
    if let Some(c) = run.conns.get(target).await {
        return Ok(c);
    }
    connect_all(run, &[target.to_string()]).await;
    run.conns
        .get(target)
        .await
        .ok_or_else(|| anyhow!("cannot reach delegate {target}"))
}

/// Does `when:` skip the step? Refused as drift when the reviewed plan ran it.
fn when_is_false(
    step: &Step,
    ctx: &template::Vars,
    reviewed: Option<&(crate::plan::Outcome, String)>,
) -> Result<bool> {
    let Some(w) = &step.when else {
        return Ok(false);
    };
    if template::eval_bool(&w.text, ctx, &w.pos).map_err(|d| anyhow!("{d}"))? {
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
fn step_undo(
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
struct Judged {
    result: Map<String, J>,
    changed: bool,
    failed: Option<String>,
    done: bool,
}

fn judge(step: &Step, outcome: &modules::Outcome, ctx: &template::Vars) -> Result<Judged> {
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
fn register(run: &Run, host: &str, name: &str, value: J) {
    run.registered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(host.to_string())
        .or_default()
        .insert(name.to_string(), value);
}

/// The fault injection point after a step's result is journaled (tests only; see `fault`).
async fn fault_after_result(run: &Run, label: &str) {
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
fn add_applying_fields(
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

/// A step's status and result line from what it came to.
fn verdict(
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
async fn facts_of(run: &Run, target: &str, conn: &HostConn) -> Result<J> {
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
fn drifted(
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
fn skipped() -> StepResult {
    (
        Status::Skipped,
        String::new(),
        None,
        None,
        json!({ "skipped": true, "changed": false, "failed": false }),
    )
}

/// Modules reading other hosts (`sync`'s `src_host`, …) get their connections.
async fn peers_for(
    run: &Arc<Run>,
    module: &str,
    args: &Map<String, J>,
) -> HashMap<String, Arc<HostConn>> {
    let wanted = modules::peer_hosts(module, args);
    if wanted.is_empty() {
        HashMap::new()
    } else {
        connect_all(run, &wanted).await;
        run.conns.all().await
    }
}

/// The result line of a step that changed something: what the probe said it would do, or —
/// where the probe could not tell (`unknown`) — what the module did, never the doubt as if it
/// were the result.
fn done_detail(module: &str, decision: &Decision, result: &Map<String, J>) -> String {
    match decision {
        Decision::Change { summary, .. } => summary.clone(),
        Decision::Unknown { .. } => modules::describe_done(module, result)
            .unwrap_or_else(|| "changed (the probe could not tell beforehand)".into()),
        Decision::NoChange => "nothing to do (counted as changed by changed_when)".into(),
    }
}

fn step_mentions_facts(step: &Step) -> bool {
    let in_args = serde_json::to_string(&step.action.args).is_ok_and(|s| facts::mentions_facts(&s));
    in_args
        || step
            .when
            .as_ref()
            .is_some_and(|w| facts::mentions_facts(&w.text))
}

/// Undo everything this run changed, newest first, each on its own host.
async fn unwind(run: &Arc<Run>) {
    let done: Vec<Done> = run
        .done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .rev()
        .collect();
    let conns = run.conns.all().await;
    recovery::undo_all(
        done,
        &conns,
        &run.templates,
        &run.journal,
        &run.reporter,
        &run.id,
        "unwind",
    )
    .await;
}
