//! After the fact: undoing a run's changes (unwinding on failure, `cutover rollback RUN`), and
//! reading a run's journal back for `cutover resume RUN` (and for `cutover commit RUN`, in
//! [`super::commit`]).
//!
//! Everything here works from the journal alone, so it works after the controller was killed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value as J};

use super::journal::{self, Journal};
use super::output::{OutputMode, Reporter, Status};
use super::writes_guard;
use crate::controller::process::process_alive;
use crate::controller::state_dir::state_dir;
use crate::controller::user::{controller_name, current_user};
use crate::modules::{ModCtx, UndoAction};
use crate::run::lock;
use crate::template::Templates;
use crate::transport::{Become, HostConn, TransportOptions};

/// One change of a run that can be undone.
#[derive(Clone, Debug)]
pub struct Done {
    pub host: String,
    pub step: String,
    /// The step_result event's sequence number, to tell which changes were undone already.
    pub seq: u64,
    pub undo: UndoAction,
    pub become_: Option<Become>,
    /// The change may be only partly made (cut off by a kill, or failed half way): its undo
    /// skips what was never made ([`UndoAction::run_partial`]).
    pub partial: bool,
}

/// A step whose change had begun when the journal ends without its result.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub host: String,
    pub step: String,
    /// Its way back, journaled with the intent (and part of `done`), if the module has one.
    pub undo: Option<UndoAction>,
    /// False for a step declared read-only (`changed_when: false`).
    pub changes: bool,
}

/// What a run's journal says.
pub struct JournalState {
    pub started: J,
    pub finished: Option<J>,
    /// Changes not undone yet, oldest first.
    pub done: Vec<Done>,
    /// (play, step, handler, loop item, host) that finished (ok, changed or skipped).
    pub completed: BTreeSet<(usize, usize, bool, Option<usize>, String)>,
    /// The same key for steps of a block that failed: finished, and the block's to handle.
    pub failed_in_block: BTreeSet<(usize, usize, bool, Option<usize>, String)>,
    /// (play, host, handler name) notified and not yet run.
    pub notified: Vec<(usize, String, String)>,
    pub committed: bool,
    /// The next free step sequence number (a resumed run continues the numbering).
    pub next_seq: u32,
    /// Results registered by finished steps, per host.
    pub registered: HashMap<String, serde_json::Map<String, J>>,
    /// Steps whose change had begun when the journal ends without their result: the
    /// controller died during the change, which may be half done. Their journaled way back
    /// (if any) is in `done`, marked partial.
    pub in_flight: Vec<InFlight>,
    /// The pid of the controller that ran the run last (started or resumed it).
    pub pid: u32,
}

/// Where a step stands in a resumed run, for one batch of its play's hosts.
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// Run it on these hosts (those of the batch that have not finished it).
    On(Vec<String>),
    /// A `run_once` step this host finished for the whole batch: run it nowhere.
    DoneBy(String),
}

impl JournalState {
    /// What a resumed run still owes of a step, on a batch of hosts (`active`: the batch's
    /// hosts still in the run).
    ///
    /// The rule: **a step that finished is never run again.** A result finishes a step when
    /// the journal has it ok, changed, skipped, or failed with `ignore_errors` (the run went
    /// on past it). What "finished" covers depends on the step:
    /// - a per-host step finishes *on its host*: it runs again only on hosts of the batch
    ///   without such a result, and never on a host that has one, whatever is missing for the
    ///   others;
    /// - a `run_once` step runs on one host for the whole batch (as Ansible: once per `serial`
    ///   batch, so once for a play without `serial`): once *any* host of the batch finished
    ///   it, it is finished for all of them. Running it again on a host without a record
    ///   repeats a step the run did — and a check repeated then judges a cluster the run has
    ///   changed since (the JVMs it started fail "no JVM left").
    pub fn still_to_run(
        &self,
        (play, step, handler, item): (usize, usize, bool, Option<usize>),
        run_once: bool,
        batch: &[String],
        active: &[String],
    ) -> Resume {
        let finished_on = |h: &String| {
            self.completed
                .contains(&(play, step, handler, item, h.to_string()))
        };
        if run_once {
            if let Some(h) = batch.iter().find(|h| finished_on(h)) {
                return Resume::DoneBy(h.clone());
            }
        }
        Resume::On(active.iter().filter(|h| !finished_on(h)).cloned().collect())
    }
}

pub fn load_state(run_id: &str) -> Result<JournalState> {
    state_of(run_id, &journal::read(run_id)?)
}

/// Did this result finish its step on its host? ok, changed and skipped did; so did a failure
/// the step ignores (`ignore_errors`: the run went on past it, as past a success).
fn finishes_step(result: &J) -> bool {
    match result["status"].as_str() {
        Some("ok" | "changed" | "skipped") => true,
        Some("failed") => result["ignored"] == true || failed_in_block(result),
        _ => false,
    }
}

/// The step (play, step, handler, loop item) and host a step result is of.
fn result_key(e: &J) -> (usize, usize, bool, Option<usize>, String) {
    (
        e["play"].as_u64().unwrap_or(0) as usize,
        e["step"].as_u64().unwrap_or(0) as usize,
        e["handler"] == true,
        e["item"].as_u64().map(|i| i as usize),
        e["host"].as_str().unwrap_or("").to_string(),
    )
}

/// A failure in a block: the block handles it (its `rescue:`, or the host fails leaving it).
fn failed_in_block(result: &J) -> bool {
    result["status"] == "failed" && result["in_block"] == true && result["ignored"] != true
}

/// Handlers of changes under way (intent journaled, no result): notified if the change was
/// cut off, since it may have been made (and a resumed step then finds nothing to do).
fn cut_off_notifications(events: &[J]) -> Vec<(usize, String, String)> {
    let mut notified_by_cut_off: BTreeMap<u64, Vec<(usize, String, String)>> = BTreeMap::new();
    for e in events {
        if let (Some("step_applying"), Some(seq), Some(names)) = (
            e["event"].as_str(),
            e["seq"].as_u64(),
            e["notify"].as_array(),
        ) {
            let play = e["play"].as_u64().unwrap_or(0) as usize;
            let host = e["host"].as_str().unwrap_or("").to_string();
            notified_by_cut_off.insert(
                seq,
                names
                    .iter()
                    .filter_map(J::as_str)
                    .map(|n| (play, host.clone(), n.to_string()))
                    .collect(),
            );
        }
        if let (Some("step_result"), Some(seq)) = (e["event"].as_str(), e["seq"].as_u64()) {
            notified_by_cut_off.remove(&seq);
        }
    }
    notified_by_cut_off.into_values().flatten().collect()
}

/// A change to undo, from an intent (`undo_pending`) or a result (`undo`).
fn done_of(run_id: &str, e: &J, undo: &J, seq: u64, partial: bool) -> Result<Done> {
    Ok(Done {
        host: e["undo_host"]
            .as_str()
            .or(e["host"].as_str())
            .unwrap_or("")
            .to_string(),
        step: e["name"].as_str().unwrap_or("").to_string(),
        seq,
        undo: serde_json::from_value(undo.clone())
            .map_err(|err| anyhow!("journal of {run_id}: unreadable undo: {err}"))?,
        become_: e["become_user"].as_str().map(|u| Become {
            user: Some(u.to_string()),
        }),
        partial,
    })
}

/// What each host's steps registered, as journaled with their results.
fn registered_of(events: &[J]) -> HashMap<String, serde_json::Map<String, J>> {
    let mut registered: HashMap<String, serde_json::Map<String, J>> = HashMap::new();
    for e in events.iter().filter(|e| e["event"] == "step_result") {
        if let (Some(host), Some(name)) = (e["host"].as_str(), e["register"].as_str()) {
            registered
                .entry(host.to_string())
                .or_default()
                .insert(name.to_string(), e["registered"].clone());
        }
    }
    registered
}

/// The steps whose change began and has no result.
fn in_flight_of(events: &[J]) -> Vec<InFlight> {
    // Keyed by seq where the journal has it (older journals: by host and step name).
    let mut in_flight: Vec<(J, InFlight)> = Vec::new();
    for e in events {
        let key = match e["seq"].as_u64() {
            Some(seq) => json!(seq),
            None => json!([e["host"], e["name"]]),
        };
        match e["event"].as_str() {
            Some("step_applying") => {
                in_flight.retain(|(k, _)| *k != key);
                in_flight.push((
                    key,
                    InFlight {
                        host: e["host"].as_str().unwrap_or("").to_string(),
                        step: e["name"].as_str().unwrap_or("").to_string(),
                        undo: e
                            .get("undo_pending")
                            .and_then(|u| serde_json::from_value(u.clone()).ok()),
                        changes: e["changes"] != false,
                    },
                ))
            }
            Some("step_result") => {
                let by_name = json!([e["host"], e["name"]]);
                in_flight.retain(|(k, _)| *k != key && *k != by_name)
            }
            _ => {}
        }
    }
    in_flight.into_iter().map(|(_, f)| f).collect()
}

fn add_once<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The sequence number a resumed run's next step gets.
fn next_seq_of(events: &[J]) -> u32 {
    events
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .map_or(0, |m| m as u32 + 1)
}

/// What the journal's events say (see [`load_state`]).
pub fn state_of(run_id: &str, events: &[J]) -> Result<JournalState> {
    let started = events
        .iter()
        .find(|e| e["event"] == "run_started")
        .cloned()
        .ok_or_else(|| anyhow!("run {run_id} has no start event"))?;
    let finished = events
        .iter()
        .rev()
        .find(|e| e["event"] == "run_finished")
        .cloned();
    let undone: BTreeSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "undo_result" && e["ok"] == true)
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let mut done: Vec<Done> = Vec::new();
    let mut completed = BTreeSet::new();
    let mut notified: Vec<(usize, String, String)> = Vec::new();
    for item in cut_off_notifications(events) {
        add_once(&mut notified, item);
    }
    for e in events {
        match e["event"].as_str() {
            // The intent of a change, with the way back it will have: kept (as a partial
            // change) until the step's result replaces it, so a run killed during the change
            // still undoes it.
            Some("step_applying") => {
                let (Some(seq), Some(u)) = (
                    e["seq"].as_u64(),
                    e.get("undo_pending").filter(|u| !u.is_null()),
                ) else {
                    continue;
                };
                done.retain(|d| !(d.partial && d.seq == seq));
                if undone.contains(&seq) {
                    continue;
                }
                done.push(done_of(run_id, e, u, seq, true)?);
            }
            Some("step_result") => {
                let seq = e["seq"].as_u64().unwrap_or(0);
                done.retain(|d| !(d.partial && d.seq == seq));
                let key = result_key(e);
                // Notifications are part of the result (a kill right after it must not lose
                // them); `handler_notified` events say the same.
                if let Some(names) = e["notify"].as_array() {
                    for n in names.iter().filter_map(J::as_str) {
                        add_once(&mut notified, (key.0, key.4.clone(), n.to_string()));
                    }
                }
                if finishes_step(e) {
                    if key.2 {
                        let name = e["name"].as_str().unwrap_or("").to_string();
                        notified.retain(|(p, h, n)| !(*p == key.0 && *h == key.4 && *n == name));
                    }
                    completed.insert(key);
                }
                if let Some(u) = e.get("undo").filter(|u| !u.is_null()) {
                    if undone.contains(&seq) {
                        continue;
                    }
                    done.push(done_of(run_id, e, u, seq, e["undo_partial"] == true)?);
                }
            }
            Some("handler_notified") => {
                let item = (
                    e["play"].as_u64().unwrap_or(0) as usize,
                    e["host"].as_str().unwrap_or("").to_string(),
                    e["handler"].as_str().unwrap_or("").to_string(),
                );
                add_once(&mut notified, item);
            }
            _ => {}
        }
    }
    let committed = events.iter().any(|e| e["event"] == "commit_finished");
    let next_seq = next_seq_of(events);
    let registered = registered_of(events);
    let in_flight = in_flight_of(events);
    let pid = events
        .iter()
        .rev()
        .find(|e| e["event"] == "run_started" || e["event"] == "run_resumed")
        .and_then(|e| e["pid"].as_u64())
        .unwrap_or(0) as u32;
    Ok(JournalState {
        started,
        finished,
        done,
        completed,
        failed_in_block: events
            .iter()
            .filter(|e| e["event"] == "step_result" && failed_in_block(e))
            .map(result_key)
            .collect(),
        notified,
        committed,
        next_seq,
        registered,
        in_flight,
        pid,
    })
}

/// Undo `done` (newest first), each change on its own host, recording each in the journal.
pub async fn undo_all(
    done: Vec<Done>,
    conns: &HashMap<String, Arc<HostConn>>,
    templates: &Templates,
    journal: &Journal,
    reporter: &Reporter,
    run_id: &str,
    label: &str,
) -> bool {
    if done.is_empty() {
        return true;
    }
    reporter.say(&format!(
        "{}: undoing {} change(s), newest first",
        label.to_uppercase(),
        done.len()
    ));
    let _ = journal
        .record(
            &format!("{label}_started"),
            json!({ "count": done.len(), "user": current_user(), "pid": std::process::id() }),
        )
        .await;
    let vars = crate::template::Vars::new();
    let approvals: Vec<String> = Vec::new();
    let mut all_ok = true;
    for d in done {
        let started = Instant::now();
        let result = match conns.get(&d.host) {
            Some(conn) => {
                let ctx = ModCtx {
                    host: conn,
                    become_: d.become_.as_ref(),
                    timeout: Some(Duration::from_secs(1800)),
                    templates,
                    vars: &vars,
                    run_id,
                    approvals: &approvals,
                    interactive: false,
                    peers: conns,
                    planned: None,
                };
                if d.partial {
                    d.undo.run_partial(&ctx).await
                } else {
                    d.undo.run(&ctx).await
                }
            }
            None => Err(anyhow!("no connection to {}", d.host)),
        };
        all_ok &= result.is_ok();
        let (status, detail) = match &result {
            Ok(()) => (Status::Changed, d.undo.describe()),
            Err(e) => (Status::Failed, format!("{e:#}")),
        };
        let _ = journal
            .record("undo_result", json!({ "host": d.host, "step": d.step, "seq": d.seq, "undo": d.undo, "partial": d.partial, "ok": result.is_ok(), "detail": detail, "duration_ms": started.elapsed().as_millis() as u64 }))
            .await;
        reporter.step_result(
            label,
            &format!("undo: {}", d.step),
            &d.host,
            status,
            &detail,
            started.elapsed(),
        );
    }
    let _ = journal
        .record(&format!("{label}_finished"), json!({ "ok": all_ok }))
        .await;
    all_ok
}

/// Options for `rollback` and `commit`.
pub struct AfterOptions {
    pub run_id: String,
    pub inventory: Option<PathBuf>,
    pub templates_dir: PathBuf,
    pub transport: TransportOptions,
    pub break_lock: bool,
    pub output: OutputMode,
    /// `rollback --discard-writes-since-window`: merge even though users wrote after the
    /// window closed (their writes are kept in a second snapshot set first).
    pub discard_writes: bool,
    /// `commit --force`: commit a run that did not finish ok (it says what it deletes first).
    pub force: bool,
}

/// Connect to the hosts a run changed and take their locks in the run's name.
pub(super) async fn reconnect(
    opts: &AfterOptions,
    state: &JournalState,
    hosts: &BTreeSet<String>,
) -> Result<(crate::inventory::Inventory, HashMap<String, Arc<HostConn>>)> {
    // A run still alive must be stopped first: two controllers on one cluster is what locks prevent.
    let pid = state.pid;
    let controller = state.started["controller"].as_str().unwrap_or("");
    if state.finished.is_none()
        && controller == controller_name()
        && pid != std::process::id()
        && process_alive(pid)
    {
        bail!(
            "run {} is still running (pid {pid}); stop it first",
            opts.run_id
        );
    }
    let inventory = inventory_of(opts, state);
    let inv = crate::inventory::load_checked(&inventory).map_err(|d| {
        anyhow!(
            "{}",
            d.items.first().map(|x| x.to_string()).unwrap_or_default()
        )
    })?;
    let owner = lock::Owner::me(&opts.run_id);
    let mut conns = HashMap::new();
    for h in hosts {
        let host = inv
            .host(h)
            .ok_or_else(|| anyhow!("host {h} of the run is not in {}", inventory.display()))?;
        let conn = HostConn::connect(h, &host.connection, &opts.transport).await?;
        lock::lock_host(&conn, &owner, opts.break_lock)
            .await
            .map_err(|e| anyhow!("{h}: {e}"))?;
        conns.insert(h.clone(), Arc::new(conn));
    }
    Ok((inv, conns))
}

pub(super) async fn release(conns: HashMap<String, Arc<HostConn>>, run_id: &str) {
    for c in conns.values() {
        lock::unlock_host(c, run_id).await;
    }
    crate::transport::close_all(conns.into_values()).await;
}

/// A killed run leaves its lock on every host it had connected to. Rolling it back releases
/// those too (the hosts in `skip` were released already); a host that cannot be reached now
/// keeps its lock and is named.
async fn release_dead_locks(
    opts: &AfterOptions,
    state: &JournalState,
    skip: &BTreeSet<String>,
    reporter: &Reporter,
) {
    if state.finished.is_some() {
        return; // a run that ended released its locks itself
    }
    let Ok(events) = journal::read(&opts.run_id) else {
        return;
    };
    let left: BTreeSet<String> = events
        .iter()
        .filter(|e| e["event"] == "host_connected")
        .filter_map(|e| e["host"].as_str().map(str::to_string))
        .filter(|h| !skip.contains(h))
        .collect();
    if left.is_empty() {
        return;
    }
    let Ok(inv) = crate::inventory::load_checked(&inventory_of(opts, state)) else {
        return;
    };
    for h in left {
        let Some(host) = inv.host(&h) else {
            continue;
        };
        match HostConn::connect(&h, &host.connection, &opts.transport).await {
            Ok(conn) => {
                lock::unlock_host(&conn, &opts.run_id).await;
                conn.close().await;
            }
            Err(e) => reporter.say(&format!(
                "WARNING: {h} cannot be reached ({e:#}): the lock of run {} stays there (remove it later with --break-lock)",
                opts.run_id
            )),
        }
    }
}

/// The run's inventory: the one given on the command line, else the one it started with.
fn inventory_of(opts: &AfterOptions, state: &JournalState) -> PathBuf {
    opts.inventory
        .clone()
        .or_else(|| state.started["inventory"].as_str().map(PathBuf::from))
        .unwrap_or_default()
}

/// The controller lock of the run's cluster, taken in the run's own name.
pub(super) fn lock_controller_for(
    opts: &AfterOptions,
    state: &JournalState,
) -> Result<lock::ControllerLock> {
    lock::lock_controller(
        &state_dir(),
        &inventory_of(opts, state),
        &lock::Owner::me(&opts.run_id),
    )
}

/// `cutover rollback RUN`: undo every change of a finished or dead run that is not undone yet.
pub async fn rollback(opts: AfterOptions) -> Result<bool> {
    let state = load_state(&opts.run_id)?;
    if state.committed {
        bail!("run {} was committed: its snapshots and backups are gone, there is nothing to roll back to", opts.run_id);
    }
    let _controller_lock = lock_controller_for(&opts, &state)?;
    let hosts: BTreeSet<String> = state.done.iter().map(|d| d.host.clone()).collect();
    let reporter = Reporter::new(opts.output, None, true);
    for f in &state.in_flight {
        match &f.undo {
            Some(u) => reporter.say(&format!(
                "the controller died while \"{}\" was changing {}; its way back ({}) is run too, skipping what was never made",
                f.step, f.host, u.describe()
            )),
            None if f.changes => reporter.say(&format!(
                "WARNING: the controller died while \"{}\" was changing {}; that change may be half done and has no recorded way back: check it by hand",
                f.step, f.host
            )),
            None => {}
        }
    }
    if state.done.is_empty() {
        reporter.say(&format!("run {}: nothing to roll back", opts.run_id));
        release_dead_locks(&opts, &state, &BTreeSet::new(), &reporter).await;
        return Ok(true);
    }
    let marks = writes_guard::guarded_marks(&journal::read(&opts.run_id)?, &state.done);
    let hosts: BTreeSet<String> = hosts.into_iter().chain(marks.keys().cloned()).collect();
    let (_inv, conns) = reconnect(&opts, &state, &hosts).await?;
    let templates = Templates::load(&opts.templates_dir).unwrap_or_else(|_| Templates::empty());
    let journal = Journal::reopen(&opts.run_id)?;
    let mut done: Vec<Done> = state.done.iter().rev().cloned().collect();
    // Users' writes since the window: refused, or kept before they are discarded.
    let lost = writes_guard::lost_writes(&marks, &conns, &templates, &opts.run_id).await;
    if !lost.is_empty() {
        let loss = writes_guard::describe(&lost);
        if !opts.discard_writes {
            let _ = journal
                .record(
                    "rollback_refused",
                    json!({ "why": "users wrote after the maintenance window closed", "lost": writes_guard::to_json(&lost) }),
                )
                .await;
            release(conns, &opts.run_id).await;
            bail!("rollback of run {} refused: {loss}\nNothing was changed. To roll back anyway, pass --discard-writes-since-window: the current data is kept first (a second snapshot set), so what is discarded can be recovered by hand. `cutover rollback --plan {}` shows this without changing anything.", opts.run_id, opts.run_id);
        }
        let kept = writes_guard::keep_current(&mut done, &writes_guard::stamp());
        reporter.say(&format!(
            "WARNING: {loss}\n--discard-writes-since-window: the current data is kept first, before each merge:{}",
            kept.iter()
                .map(|(h, l)| format!("\n  {h}: {l}"))
                .collect::<String>()
        ));
        let _ = journal
            .record(
                "rollback_discarding",
                json!({ "lost": writes_guard::to_json(&lost), "kept": kept.iter().map(|(h, l)| json!({ "host": h, "location": l })).collect::<Vec<_>>() }),
            )
            .await;
    }
    let ok = undo_all(
        done,
        &conns,
        &templates,
        &journal,
        &reporter,
        &opts.run_id,
        "rollback",
    )
    .await;
    release(conns, &opts.run_id).await;
    release_dead_locks(&opts, &state, &hosts, &reporter).await;
    let _ = reporter.finish(if ok {
        "rolled back"
    } else {
        "rollback incomplete"
    });
    Ok(ok)
}

/// `cutover rollback --plan RUN`: what a rollback would undo, and what it would discard that
/// users wrote since the window, without changing anything (no lock taken). Exit code as for
/// `plan`: 0 nothing to undo, 2 changes pending, 1 the rollback would be refused.
pub async fn rollback_plan(opts: AfterOptions) -> Result<u8> {
    let state = load_state(&opts.run_id)?;
    if state.committed {
        bail!(
            "run {} was committed: there is nothing to roll back to",
            opts.run_id
        );
    }
    if state.done.is_empty() {
        println!("run {}: nothing to roll back", opts.run_id);
        return Ok(crate::exit::OK);
    }
    println!(
        "rollback of run {} would undo {} change(s), newest first:",
        opts.run_id,
        state.done.len()
    );
    for d in state.done.iter().rev() {
        println!("  {:<12} {} — {}", d.host, d.step, d.undo.describe());
    }
    for f in state
        .in_flight
        .iter()
        .filter(|f| f.undo.is_none() && f.changes)
    {
        println!(
            "  WARNING: \"{}\" on {} was cut off and has no recorded way back: check it by hand",
            f.step, f.host
        );
    }
    let marks = writes_guard::guarded_marks(&journal::read(&opts.run_id)?, &state.done);
    if marks.is_empty() {
        println!("no maintenance window of this run closed: users wrote nothing the rollback would discard");
        return Ok(crate::exit::CHANGES);
    }
    let inv = crate::inventory::load_checked(&inventory_of(&opts, &state)).map_err(|d| {
        anyhow!(
            "{}",
            d.items.first().map(|x| x.to_string()).unwrap_or_default()
        )
    })?;
    let mut conns = HashMap::new();
    for h in marks.keys() {
        let host = inv
            .host(h)
            .ok_or_else(|| anyhow!("host {h} of the run is not in the inventory"))?;
        conns.insert(
            h.clone(),
            Arc::new(HostConn::connect(h, &host.connection, &opts.transport).await?),
        );
    }
    let templates = Templates::load(&opts.templates_dir).unwrap_or_else(|_| Templates::empty());
    let lost = writes_guard::lost_writes(&marks, &conns, &templates, &opts.run_id).await;
    crate::transport::close_all(conns.into_values()).await;
    if lost.is_empty() {
        println!("nothing was written since the maintenance window closed that the rollback would discard");
        return Ok(crate::exit::CHANGES);
    }
    println!("{}", writes_guard::describe(&lost));
    if opts.discard_writes {
        let mut done = state.done.clone();
        println!("with --discard-writes-since-window the current data would be kept first:");
        for (h, l) in writes_guard::keep_current(&mut done, "YYYYMMDDHHMMSS") {
            println!("  {h}: {l}");
        }
        return Ok(crate::exit::CHANGES);
    }
    println!("the rollback would be REFUSED; with --discard-writes-since-window it would keep the current data first (a second snapshot set), then discard it");
    Ok(crate::exit::FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> J {
        json!({ "event": "run_started", "run_id": "r", "pid": 1 })
    }

    /// A step result of step 1 of play 3 (the play "App nodes stopped" of upgrade.yml).
    fn result(seq: u64, host: &str, status: &str) -> J {
        json!({ "event": "step_result", "play": 3, "step": 1, "handler": false, "seq": seq,
                "name": "No wiki JVM left on any app node", "host": host, "status": status })
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn to_run(events: &[J], run_once: bool, batch: &[&str], active: &[&str]) -> Resume {
        state_of("r", events).unwrap().still_to_run(
            (3, 1, false, None),
            run_once,
            &hosts(batch),
            &hosts(active),
        )
    }

    #[test]
    fn a_finished_loop_item_is_not_run_again_and_the_next_one_is() {
        let item = |i: u64, status: &str| {
            let mut e = result(10 + i, "app1", status);
            e["item"] = json!(i);
            e
        };
        let state = state_of("r", &[started(), item(0, "changed"), item(1, "failed")]).unwrap();
        let all = hosts(&["app1"]);
        let key = |i| (3, 1, false, Some(i));
        assert_eq!(
            state.still_to_run(key(0), false, &all, &all),
            Resume::On(vec![])
        );
        assert_eq!(
            state.still_to_run(key(1), false, &all, &all),
            Resume::On(all.clone())
        );
        assert_eq!(
            state.still_to_run(key(2), false, &all, &all),
            Resume::On(all.clone())
        );
        // The step without an item is another step: its items finishing does not finish it.
        assert_eq!(
            state.still_to_run((3, 1, false, None), false, &all, &all),
            Resume::On(all)
        );
    }

    #[test]
    fn a_run_once_step_finished_on_one_host_is_finished_for_the_batch() {
        // The kill came after app1's result: app2 has no record of the step, and must not
        // run it (it would see the JVMs this run started since).
        let events = [started(), result(7, "app1", "ok")];
        let all = ["app1", "app2"];
        assert_eq!(
            to_run(&events, true, &all, &all),
            Resume::DoneBy("app1".into())
        );
        // Whichever host ran it, and also when that host is no longer active.
        let events = [started(), result(7, "app2", "changed")];
        assert_eq!(
            to_run(&events, true, &all, &["app1"]),
            Resume::DoneBy("app2".into())
        );
    }

    #[test]
    fn a_run_once_step_not_finished_runs_again() {
        let all = ["app1", "app2"];
        assert_eq!(
            to_run(&[started()], true, &all, &all),
            Resume::On(hosts(&all))
        );
        // A failure (not ignored), an unreachable host, an intent without a result: not finished.
        for status in ["failed", "unreachable"] {
            let events = [started(), result(7, "app1", status)];
            assert_eq!(
                to_run(&events, true, &all, &all),
                Resume::On(hosts(&all)),
                "{status}"
            );
        }
        let applying = json!({ "event": "step_applying", "play": 3, "step": 1, "seq": 7,
                               "name": "x", "host": "app1" });
        assert_eq!(
            to_run(&[started(), applying], true, &all, &all),
            Resume::On(hosts(&all))
        );
    }

    #[test]
    fn a_run_once_handler_finished_on_one_host_is_finished_for_the_batch() {
        let mut h = result(9, "app1", "changed");
        h["handler"] = json!(true);
        let all = hosts(&["app1", "app2"]);
        let state = state_of("r", &[started(), h]).unwrap();
        assert_eq!(
            state.still_to_run((3, 1, true, None), true, &all, &all),
            Resume::DoneBy("app1".into())
        );
        // The step of the same index is another thing.
        assert_eq!(
            state.still_to_run((3, 1, false, None), true, &all, &all),
            Resume::On(all.clone())
        );
    }

    #[test]
    fn a_run_once_step_runs_once_per_serial_batch() {
        // serial: 1 — batch [app1] finished it; batch [app2] has not run it yet.
        let events = [started(), result(7, "app1", "ok")];
        assert_eq!(
            to_run(&events, true, &["app1"], &["app1"]),
            Resume::DoneBy("app1".into())
        );
        assert_eq!(
            to_run(&events, true, &["app2"], &["app2"]),
            Resume::On(hosts(&["app2"]))
        );
    }

    #[test]
    fn a_per_host_step_runs_again_only_where_it_did_not_finish() {
        let all = ["app1", "app2", "app3"];
        let events = [
            started(),
            result(7, "app1", "changed"),
            result(8, "app2", "skipped"),
        ];
        assert_eq!(
            to_run(&events, false, &all, &all),
            Resume::On(hosts(&["app3"]))
        );
        let events = [
            started(),
            result(7, "app1", "ok"),
            result(8, "app2", "ok"),
            result(9, "app3", "ok"),
        ];
        assert_eq!(to_run(&events, false, &all, &all), Resume::On(vec![]));
        // Another step's or another play's result does not count.
        let mut other = result(7, "app1", "ok");
        other["step"] = json!(2);
        assert_eq!(
            to_run(&[started(), other], false, &all, &all),
            Resume::On(hosts(&all))
        );
    }

    #[test]
    fn an_ignored_failure_finishes_the_step() {
        let mut ignored = result(7, "app1", "failed");
        ignored["ignored"] = json!(true);
        let all = ["app1", "app2"];
        assert_eq!(
            to_run(&[started(), ignored.clone()], false, &all, &all),
            Resume::On(hosts(&["app2"]))
        );
        assert_eq!(
            to_run(&[started(), ignored], true, &all, &all),
            Resume::DoneBy("app1".into())
        );
    }
}
