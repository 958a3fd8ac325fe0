//! A run's walk over the playbook (`run::walk`, shared with the plan): each step applied on
//! the batch's active hosts, hosts that fail or are lost dropped from the run, handlers run
//! where they were notified, and the run stopped (and unwound, with `on_failure: unwind`)
//! after a batch in which a host failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use super::hosts::connect_all;
use super::output::Status;
use super::step::{run_step_everywhere, share_run_once_result};
use super::{recovery, tags_allow, unwind, Run, RunStatus};
use crate::playbook::{Batch, OnFailure, Play, Step};
use crate::run::walk::{self, Mode, PlayAt, Plays, StepAt};

/// Run the plays: the status the run ends with.
pub(super) async fn run_plays(run: &Arc<Run>, plays: &Plays) -> RunStatus {
    let mut applying = Applying::new(run, false);
    if let Some(status) = walk::walk(plays, &mut applying, run.opts.start_at_step.clone()).await {
        return status;
    }
    if run.interrupted.load(Ordering::SeqCst) {
        let _ = run
            .journal
            .record(
                "run_interrupted",
                json!({ "how": "Ctrl-C: stopped at a step boundary" }),
            )
            .await;
        return RunStatus::Interrupted;
    }
    status_of(&applying.failed_hosts, &applying.unreachable)
}

/// Run the `after_run:` plays due after a run that ended this way: the hosts that failed
/// (or failed in them) are reported and journaled as in any play, nothing is unwound for them,
/// and the run's status stays what it was. True when every step on every host went well.
pub(super) async fn run_after_plays(run: &Arc<Run>, plays: &Plays, succeeded: bool) -> bool {
    let mut applying = Applying::new(run, true);
    walk::walk_after_run(plays, &mut applying, succeeded).await;
    applying.failed_hosts.is_empty() && applying.unreachable.is_empty()
}

/// The walk in apply mode, and what it keeps across plays and batches.
struct Applying<'r> {
    /// Walking the `after_run:` plays: a failure neither unwinds nor stops the others.
    after_run: bool,
    run: &'r Arc<Run>,
    /// Hosts that failed a step: they run nothing more.
    failed_hosts: BTreeSet<String>,
    /// Hosts lost (or never reached): they run nothing more.
    unreachable: BTreeSet<String>,
    /// The batch's notified handlers: name → hosts.
    notified: BTreeMap<String, BTreeSet<String>>,
    /// Hosts of the batch that failed, against `max_fail_percentage`.
    batch_failed: usize,
    batch_size: usize,
}

impl<'r> Applying<'r> {
    fn new(run: &'r Arc<Run>, after_run: bool) -> Applying<'r> {
        Applying {
            after_run,
            run,
            failed_hosts: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            notified: BTreeMap::new(),
            batch_failed: 0,
            batch_size: 1,
        }
    }
}

impl Mode for Applying<'_> {
    type Stop = RunStatus;

    fn tags(&self) -> (&[String], &[String]) {
        (&self.run.opts.tags, &self.run.opts.skip_tags)
    }

    fn interrupted(&self) -> bool {
        self.run.interrupted.load(Ordering::SeqCst)
    }

    fn skips_play(&self, play: &Play) -> bool {
        tags_exclude_play(self.run, play)
    }

    fn play_hosts(&mut self, play: &Play, selected: &[String]) -> Option<Vec<String>> {
        let hosts: Vec<String> = selected
            .iter()
            // An `after_run` play runs whatever an earlier one did on the host.
            .filter(|h| {
                (self.after_run || !self.failed_hosts.contains(*h))
                    && !self.unreachable.contains(*h)
            })
            .cloned()
            .collect();
        if hosts.is_empty() {
            self.run
                .reporter
                .say(&format!("PLAY {}: no hosts left to run on", play.name));
            return None;
        }
        Some(hosts)
    }

    async fn start_play(&mut self, at: &PlayAt<'_>, hosts: &[String]) {
        let run = self.run;
        *run.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(at.shared.clone());
        start_play(run, at.play, at.index, hosts).await;
    }

    fn batches(&self, play: &Play, hosts: &[String]) -> Vec<Vec<String>> {
        batches(hosts, &play.serial)
    }

    async fn open_batch(&mut self, play_index: usize, batch: &[String]) -> Vec<String> {
        let reached = connect_all(self.run, batch).await;
        for h in batch.iter().filter(|h| !reached.contains(*h)) {
            self.unreachable.insert(h.clone());
        }
        self.notified = owed_handlers(self.run, play_index, batch);
        self.batch_size = batch.len().max(1);
        self.batch_failed = 0;
        batch
            .iter()
            .filter(|h| reached.contains(*h))
            .cloned()
            .collect()
    }

    async fn step(
        &mut self,
        at: StepAt<'_>,
        at_play: &PlayAt<'_>,
        batch: &[String],
        active: &mut Vec<String>,
    ) {
        let (run, step) = (self.run, at.step);
        // Resuming: a step finished before the controller died is not run again
        // (`JournalState::still_to_run` says what "finished" covers).
        let todo = still_to_run(
            run,
            (at.play_index, at.step_index, false, at.item),
            step,
            batch,
            active,
        );
        if todo.is_empty() {
            return;
        }
        for o in run_step_everywhere(run, at, &todo, at_play.vars).await {
            if o.notify {
                notify(run, at.play_index, step, &o.host, &mut self.notified).await;
            }
            if o.status == Status::Unreachable {
                self.unreachable.insert(o.host.clone());
                active.retain(|h| h != &o.host);
            } else if o.status == Status::Failed && !step.ignore_errors {
                active.retain(|h| h != &o.host);
                // A failure in a block is the block's (`run::blocks`): the host fails only
                // if no `rescue:` handles it.
                if step.blocks.is_empty() {
                    self.failed_hosts.insert(o.host.clone());
                    self.batch_failed += 1;
                }
            }
        }
        if over_fail_budget(run, at.play, self.batch_failed, self.batch_size) {
            active.clear();
        }
    }

    fn handler_hosts(
        &mut self,
        at: StepAt<'_>,
        batch: &[String],
        active: &[String],
    ) -> Vec<String> {
        let targets = notified_among(active, &at.step.answers_to(), &self.notified);
        let key = (at.play_index, at.step_index, true, None);
        still_to_run(self.run, key, at.step, batch, &targets)
    }

    async fn handler(&mut self, at: StepAt<'_>, at_play: &PlayAt<'_>, hosts: &[String]) {
        for o in run_step_everywhere(self.run, at, hosts, at_play.vars).await {
            if o.status == Status::Failed && !at.step.ignore_errors {
                self.failed_hosts.insert(o.host.clone());
            }
        }
    }

    fn failed_before(&self, at: StepAt<'_>, host: &str) -> bool {
        self.run.resumed.as_ref().is_some_and(|r| {
            r.failed_in_block.contains(&(
                at.play_index,
                at.step_index,
                at.handler,
                at.item,
                host.to_string(),
            ))
        })
    }

    fn unreachable(&self, host: &str) -> bool {
        self.unreachable.contains(host)
    }

    fn block_failure_escaped(&mut self, play: &Play, host: &str) -> bool {
        self.run
            .reporter
            .say(&format!("{host}: failed in a block and not rescued"));
        self.failed_hosts.insert(host.to_string());
        self.batch_failed += 1;
        over_fail_budget(self.run, play, self.batch_failed, self.batch_size)
    }

    async fn block_rescued(&mut self, at_play: &PlayAt<'_>, host: &str, block: usize) {
        let name = at_play.play.blocks[block].name.clone().unwrap_or_default();
        self.run.reporter.say(&format!(
            "{host}: rescued (block {name:?}): the failure is handled"
        ));
        let _ = self
            .run
            .journal
            .record(
                "block_rescued",
                json!({ "play": at_play.index, "block": block, "host": host }),
            )
            .await;
    }

    async fn close_batch(&mut self, play: &Play) -> Option<RunStatus> {
        if self.failed_hosts.is_empty() && self.unreachable.is_empty() || self.after_run {
            return None;
        }
        if play.on_failure == OnFailure::Unwind {
            unwind(self.run).await;
        }
        Some(status_of(&self.failed_hosts, &self.unreachable))
    }
}

/// A play whose tags, and every step's, are excluded by `--tags`/`--skip-tags`.
fn tags_exclude_play(run: &Run, play: &Play) -> bool {
    !tags_allow(&run.opts, &play.tags, &[])
        && play
            .steps
            .iter()
            .all(|s| !tags_allow(&run.opts, &play.tags, &s.tags))
}

async fn start_play(run: &Run, play: &Play, play_index: usize, hosts: &[String]) {
    let _ = run
        .journal
        .record(
            "play_started",
            json!({ "play": play_index, "name": play.name, "hosts": hosts }),
        )
        .await;
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    run.reporter
        .play_started(&play.name, &host_refs, play.steps.len());
}

/// The handlers a resumed run still owes this batch: notified before the controller died.
fn owed_handlers(
    run: &Run,
    play_index: usize,
    batch: &[String],
) -> BTreeMap<String, BTreeSet<String>> {
    let mut notified: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(r) = &run.resumed {
        for (p, h, n) in &r.notified {
            if *p == play_index && batch.contains(h) {
                notified.entry(n.clone()).or_default().insert(h.clone());
            }
        }
    }
    notified
}

/// A changed step notifies its handlers on a host; each notification is journaled.
async fn notify(
    run: &Run,
    play_index: usize,
    step: &Step,
    host: &str,
    notified: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for (n, _) in &step.notify {
        notified
            .entry(n.clone())
            .or_default()
            .insert(host.to_string());
        let _ = run
            .journal
            .record(
                "handler_notified",
                json!({ "play": play_index, "host": host, "handler": n }),
            )
            .await;
    }
}

/// More hosts of the batch failed than the play's `max_fail_percentage` allows (said).
fn over_fail_budget(run: &Run, play: &Play, batch_failed: usize, batch_size: usize) -> bool {
    let budget = play.max_fail_percentage.unwrap_or(100);
    let over = batch_failed > 0
        && (batch_failed * 100 / batch_size) as u32 > budget.min(99)
        && play.max_fail_percentage.is_some();
    if over {
        run.reporter.say(&format!("PLAY {}: {batch_failed} of {batch_size} hosts failed, over the budget of {budget}%: stopping", play.name));
    }
    over
}

/// The active hosts a handler answering to `names` was notified on.
fn notified_among(
    active: &[String],
    names: &[&str],
    notified: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    active
        .iter()
        .filter(|h| {
            names
                .iter()
                .any(|n| notified.get(*n).is_some_and(|set| set.contains(*h)))
        })
        .cloned()
        .collect()
}

fn status_of(failed_hosts: &BTreeSet<String>, unreachable: &BTreeSet<String>) -> RunStatus {
    if !failed_hosts.is_empty() {
        RunStatus::Failed
    } else if !unreachable.is_empty() {
        RunStatus::Unreachable
    } else {
        RunStatus::Ok
    }
}

/// The hosts of a batch a step (or handler) runs on: all of `hosts`, or in a resumed run those
/// the journal does not show it finished for (`JournalState::still_to_run`). A `run_once` step
/// finished before the stop runs nowhere, and what it registered stands for the batch again.
fn still_to_run(
    run: &Run,
    key: (usize, usize, bool, Option<usize>),
    step: &Step,
    batch: &[String],
    hosts: &[String],
) -> Vec<String> {
    let Some(r) = &run.resumed else {
        return hosts.to_vec();
    };
    match r.still_to_run(key, step.run_once, batch, hosts) {
        recovery::Resume::On(hosts) => hosts,
        recovery::Resume::DoneBy(host) => {
            share_run_once_result(run, step, &host, batch);
            Vec::new()
        }
    }
}

/// Split a play's hosts into serial batches (`serial: 1`, `"50%"`, or a growing list).
pub fn batches(hosts: &[String], serial: &[Batch]) -> Vec<Vec<String>> {
    if serial.is_empty() {
        return vec![hosts.to_vec()];
    }
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < hosts.len() {
        let b = &serial[k.min(serial.len() - 1)];
        let n = match b {
            Batch::Count(c) => *c as usize,
            Batch::Percent(p) => ((hosts.len() * *p as usize).div_ceil(100)).max(1),
        };
        let end = (i + n.max(1)).min(hosts.len());
        out.push(hosts[i..end].to_vec());
        i = end;
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_batches() {
        let hosts: Vec<String> = (1..=5).map(|i| format!("h{i}")).collect();
        assert_eq!(batches(&hosts, &[]).len(), 1);
        let b = batches(&hosts, &[Batch::Count(2)]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let b = batches(&hosts, &[Batch::Count(1), Batch::Percent(100)]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 4]);
        let b = batches(&hosts, &[Batch::Percent(40)]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    }
}
