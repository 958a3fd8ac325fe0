//! The engine: runs a playbook's plays in order (the walk `run::walk` shared with the plan, in
//! apply mode: `applying.rs`); within a play, each step runs on all of the batch's hosts in
//! parallel (bounded by `--forks`) before the next step starts.
//!
//! Every step on every host is probe → decide → apply; what was done and how to undo it goes to
//! the journal before the next action. A host that fails drops out of the run; with
//! `on_failure: unwind` the run's changes are undone, newest first.

mod after_run;
mod applying;
pub mod commit;
mod fault;
mod hosts;
pub mod journal;
pub mod output;
pub mod recovery;
pub mod run_status;
mod step;
pub mod window;
pub mod writes_guard;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value as J};
use tokio::sync::OnceCell;

use crate::controller::hash::sha256_hex;
use crate::controller::user::{controller_name, current_user};
use crate::diag::Diagnostics;
use crate::inventory::vars::Resolved;
use crate::inventory::{Inventory, Var};
use crate::playbook::Playbook;
use crate::template::{self, Templates};
use crate::transport::TransportOptions;

use crate::run::connections::Connections;
use crate::run::inputs::{Inputs, Request};
use crate::run::lock;
use hosts::{hosts_of_run, lock_run_hosts};
use journal::Journal;
use output::{OutputMode, Reporter};

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
pub type Expected =
    HashMap<(usize, usize, bool, Option<usize>, String), (crate::plan::Outcome, String)>;

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

impl RunStatus {
    /// How the journal's `run_finished` and the recap name it.
    fn word(&self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Unreachable => "unreachable",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Locked => "locked",
            RunStatus::Refused => "refused",
        }
    }
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
    /// The agreed maintenance window, checked again just before the page goes on.
    agreed: Option<window::fit::Agreed>,
    /// How the run ended, once it has (`run` of the `after_run` plays: `after_run::outcome`).
    ended: std::sync::Mutex<Option<J>>,
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
        mut inv,
        templates,
        plays,
        limited,
    } = inputs;
    let agreed = window::fit::agree(&mut inv, &plays.playbook);
    let fit_now = agreed.as_ref().map(window::fit::decide_now);

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
    // Outside the agreed window, or too little of it left: refused before anything is touched
    // (a resumed run is past this point: its page step, if still to run, checks again).
    if let (Some(a), Some(fit), None) = (&agreed, &fit_now, &resumed) {
        refuse_outside_window(a, fit, &run_id, &opts, &fingerprint).await?;
    }
    let journal = open_journal(&run_id, &opts, &fingerprint, resumed.as_ref()).await?;

    let reporter = Reporter::new(opts.output, opts.junit.clone(), opts.verbose);
    reporter.say(&format!(
        "run {run_id}: {} on {}",
        opts.playbook.display(),
        opts.inventory.display()
    ));
    say_cut_off(&reporter, resumed.as_ref());
    if let (Some(a), Some(fit)) = (&agreed, &fit_now) {
        say_window(&reporter, &journal, a, fit).await?;
    }
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
        agreed,
        ended: std::sync::Mutex::new(None),
    });

    let signals = watch_interrupts(&run);

    // Every host the run may touch is locked before its first step: a run that would meet a
    // locked host is refused before it changes anything anywhere.
    let everywhere = hosts_of_run(&run, &plays.playbook, limited.as_ref());
    let status = run_locked(&run, &plays, &everywhere).await;
    signals.abort();

    // Release host locks and close every master connection, whatever happened.
    let conns = run.conns.take_all().await;
    for c in &conns {
        lock::unlock_host(c, &run.id).await;
    }
    crate::transport::close_all(conns).await;
    let status_word = status.word();
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
        .finish_run(status_word, journaled_window(&run.journal).as_ref())
        .map_err(|e| anyhow!("cannot write JUnit file: {e}"))?;
    Ok(RunResult { run_id, status })
}

/// The plays, once every host of the run is locked, then the `after_run` plays (after the
/// run's unwind, still holding its locks and connections): the run's status.
async fn run_locked(
    run: &Arc<Run>,
    plays: &crate::run::walk::Plays,
    everywhere: &[String],
) -> RunStatus {
    match lock_run_hosts(run, everywhere).await {
        Ok(()) => {
            let status = applying::run_plays(run, plays).await;
            after_run::run_after(run, plays, status).await
        }
        Err(refused) => refused,
    }
}

/// The run's maintenance window, measured from its journal as `cutover show` measures it.
fn journaled_window(j: &Journal) -> Option<window::Window> {
    let events = journal::read_path(&j.path).ok()?;
    window::window(&events)
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
        None => start_journal(run_id, opts, fingerprint).await?,
    })
}

/// A new run's journal, its first event `run_started` (also for a run refused before it did
/// anything: its journal says what was asked and why nothing happened).
async fn start_journal(run_id: &str, opts: &RunOptions, fingerprint: &str) -> Result<Journal> {
    let j = Journal::create(run_id)?;
    let fields = journal::run_started_fields(
        run_id,
        &opts.playbook,
        &opts.inventory,
        fingerprint,
        opts.limit.as_deref(),
    );
    j.record("run_started", fields).await?;
    Ok(j)
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
        start_journal(run_id, opts, fingerprint).await?
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

/// A run refused by the agreed maintenance window: its journal holds its start, `run_refused`
/// (why, the window, the prediction) and its end, `refused`. Nothing else happened.
async fn refuse_outside_window(
    a: &window::fit::Agreed,
    fit: &window::fit::Fit,
    run_id: &str,
    opts: &RunOptions,
    fingerprint: &str,
) -> std::result::Result<(), RunError> {
    let Some(why) = a.refusal(fit) else {
        return Ok(());
    };
    let window = a.to_json(fit);
    let j = start_journal(run_id, opts, fingerprint).await?;
    j.record(
        "run_refused",
        json!({ "why": "maintenance window", "detail": why, "maintenance_window": window }),
    )
    .await?;
    j.record("run_finished", json!({ "status": "refused", "recap": {} }))
        .await?;
    Err(RunError::Other(anyhow!(why)))
}

/// The agreed window, the prediction and the fit, said and journaled when a run starts.
async fn say_window(
    reporter: &Reporter,
    journal: &Journal,
    a: &window::fit::Agreed,
    fit: &window::fit::Fit,
) -> Result<()> {
    if a.prediction.is_none() {
        reporter.say("warning: no rehearsal of this inventory on record (a successful rehearse.yml run in this state directory): only the window itself is checked");
    }
    let text = a.describe(fit);
    reporter.say(&text);
    let mut checked = a.to_json(fit);
    checked["text"] = json!(text);
    journal.record("window_checked", checked).await
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
