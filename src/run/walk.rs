//! One walk over a playbook for plan and apply, as Terraform's plan and apply walk one graph:
//! the plays in order; a play's hosts (within `--limit`) in its batches (`serial`); in each
//! batch the steps in order — those `--tags`/`--skip-tags` keep, from `--start-at-step` on —
//! on the hosts still active, then the handlers notified, in the order they are defined.
//!
//! What a step does on its hosts is the mode's: a plan probes what it would change
//! (`plan::`), a run applies it and keeps the journal (`engine::`). The order of everything,
//! and which step is visited on which hosts, is decided here once for both.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::blocks::BlockWalk;
use super::loops::{item_step, PlayLoops};
use crate::inventory::vars::Resolved;
use crate::playbook::{Play, Playbook, Step};
use crate::template;

/// The plays of a checked playbook, with what each play needs before any host is contacted.
pub struct Plays {
    pub playbook: Playbook,
    /// Each play's variables for every host, by play index.
    pub vars: Vec<Arc<BTreeMap<String, Resolved>>>,
    /// What every host's template context shares in each play (`groups`, `hostvars`), built
    /// once by the check, by play index.
    pub shared: Vec<Arc<template::Shared>>,
    /// The hosts each play selects within `--limit`, in inventory order, by play index.
    pub hosts: Vec<Vec<String>>,
    /// Each play's looped steps with their items on each host, by play index.
    pub loops: Vec<PlayLoops>,
}

/// A play as the walk reaches it.
pub struct PlayAt<'a> {
    pub play: &'a Play,
    pub index: usize,
    /// The play's variables for every host.
    pub vars: &'a Arc<BTreeMap<String, Resolved>>,
    /// What every host's template context shares in the play.
    pub shared: &'a Arc<template::Shared>,
    /// The play's looped steps, with their items on each host.
    pub loops: &'a PlayLoops,
}

/// One step (or handler) of a play, and where it stands: what every host's run of it shares.
#[derive(Clone, Copy)]
pub struct StepAt<'a> {
    pub play: &'a Play,
    pub play_index: usize,
    pub step_index: usize,
    pub step: &'a Step,
    pub handler: bool,
    /// A looped step's item (from 0): each item is planned, journaled and resumed as a step.
    pub item: Option<usize>,
}

/// What plan and apply each do at the walk's stops.
pub(crate) trait Mode {
    /// Why a walk ended before its end (a run's status).
    type Stop;

    /// `--tags` and `--skip-tags`.
    fn tags(&self) -> (&[String], &[String]);

    /// Ctrl-C: stop at the next step boundary.
    fn interrupted(&self) -> bool {
        false
    }

    /// A play left out whole, before its hosts are looked at.
    fn skips_play(&self, _play: &Play) -> bool {
        false
    }

    /// The hosts a play runs on, from those it selects; None leaves the play out.
    fn play_hosts(&mut self, play: &Play, selected: &[String]) -> Option<Vec<String>>;

    async fn start_play(&mut self, at: &PlayAt<'_>, hosts: &[String]);

    /// The play's hosts split into the batches it runs in.
    fn batches(&self, play: &Play, hosts: &[String]) -> Vec<Vec<String>>;

    /// Reach a batch's hosts: those that can run its steps.
    async fn open_batch(&mut self, play_index: usize, batch: &[String]) -> Vec<String>;

    /// A step on the batch's active hosts; drops from `active` the hosts that go no further.
    async fn step(
        &mut self,
        at: StepAt<'_>,
        at_play: &PlayAt<'_>,
        batch: &[String],
        active: &mut Vec<String>,
    );

    /// The hosts a handler runs on: those of `active` it was (or may have been) notified on.
    fn handler_hosts(&mut self, at: StepAt<'_>, batch: &[String], active: &[String])
        -> Vec<String>;

    async fn handler(&mut self, at: StepAt<'_>, at_play: &PlayAt<'_>, hosts: &[String]);

    /// After a batch's handlers: Some ends the walk.
    async fn close_batch(&mut self, play: &Play) -> Option<Self::Stop>;

    /// A resumed run: the host failed this step of a block before the stop (the failure is
    /// the block's to handle, so the step is not run again).
    fn failed_before(&self, _at: StepAt<'_>, _host: &str) -> bool {
        false
    }

    /// A plan probes every step of a block, `rescue:` ones included, on every host that
    /// enters it: a reviewer sees what a rescue would do, and a saved plan has an entry for it.
    fn probes_every_path(&self) -> bool {
        false
    }

    /// Is the host out of the run for being unreachable (not for a failure)?
    fn unreachable(&self, _host: &str) -> bool {
        false
    }

    /// A failure no block rescued: the host failed. True stops the batch (over its budget).
    fn block_failure_escaped(&mut self, _play: &Play, _host: &str) -> bool {
        false
    }

    /// Every `rescue:` step of block `block` succeeded on the host: its failure is handled.
    async fn block_rescued(&mut self, _at_play: &PlayAt<'_>, _host: &str, _block: usize) {}
}

/// Walk the plays in `mode`; Some when the mode ended the walk early. Plays with `after_run:`
/// are not part of it ([`walk_after_run`]).
pub(crate) async fn walk<M: Mode>(
    plays: &Plays,
    mode: &mut M,
    start_at: Option<String>,
) -> Option<M::Stop> {
    let mut start_at = start_at;
    for (index, play) in plays.playbook.plays.iter().enumerate() {
        if mode.interrupted() {
            break;
        }
        if play.after_run.is_some() {
            continue;
        }
        if let Some(stop) = walk_play(plays, index, mode, &mut start_at).await {
            return Some(stop);
        }
    }
    None
}

/// Walk the plays with `after_run:` that a run that ended this way (`succeeded` or not) runs,
/// in order; every one of them, whatever an earlier one's batches ended with.
pub(crate) async fn walk_after_run<M: Mode>(plays: &Plays, mode: &mut M, succeeded: bool) {
    for (index, play) in plays.playbook.plays.iter().enumerate() {
        if play.after_run.is_some_and(|a| a.runs_after(succeeded)) {
            walk_play(plays, index, mode, &mut None).await;
        }
    }
}

/// One play: its hosts, batch by batch.
async fn walk_play<M: Mode>(
    plays: &Plays,
    index: usize,
    mode: &mut M,
    start_at: &mut Option<String>,
) -> Option<M::Stop> {
    let play = &plays.playbook.plays[index];
    if mode.skips_play(play) {
        return None;
    }
    let hosts = mode.play_hosts(play, &plays.hosts[index])?;
    let at = PlayAt {
        play,
        index,
        vars: &plays.vars[index],
        shared: &plays.shared[index],
        loops: &plays.loops[index],
    };
    mode.start_play(&at, &hosts).await;
    for batch in mode.batches(play, &hosts) {
        let mut active = mode.open_batch(index, &batch).await;
        walk_steps(mode, &at, &batch, &mut active, start_at).await;
        walk_handlers(mode, &at, &batch, &active).await;
        if let Some(stop) = mode.close_batch(play).await {
            return Some(stop);
        }
    }
    None
}

/// A batch's steps in order, on the hosts still active.
async fn walk_steps<M: Mode>(
    mode: &mut M,
    at_play: &PlayAt<'_>,
    batch: &[String],
    active: &mut Vec<String>,
    start_at: &mut Option<String>,
) {
    let play = at_play.play;
    let mut blocks = BlockWalk::new(&play.blocks);
    for (step_index, step) in play.steps.iter().enumerate() {
        if mode.interrupted() {
            break;
        }
        if let Some(target) = start_at.as_ref() {
            if step.name.as_deref() != Some(target.as_str()) {
                continue;
            }
            *start_at = None;
        }
        let (tags, skip_tags) = mode.tags();
        if !crate::playbook::tags_allow(tags, skip_tags, &play.tags, &step.tags)
            || (active.is_empty() && blocks.idle())
        {
            continue;
        }
        let at = StepAt {
            play,
            play_index: at_play.index,
            step_index,
            step,
            handler: false,
            item: None,
        };
        if play.blocks.is_empty() {
            walk_step(mode, at, at_play, batch, active).await;
        } else {
            settle(mode, at_play, &mut blocks, Some(step), active).await;
            walk_block_step(mode, at, at_play, batch, active, &mut blocks).await;
        }
    }
    settle(mode, at_play, &mut blocks, None, active).await;
}

/// One step (looped or not) on the hosts in `active`.
async fn walk_step<M: Mode>(
    mode: &mut M,
    at: StepAt<'_>,
    at_play: &PlayAt<'_>,
    batch: &[String],
    active: &mut Vec<String>,
) {
    match at_play.loops.get(&at.step_index) {
        None => mode.step(at, at_play, batch, active).await,
        Some(items) => walk_items(mode, at, at_play, batch, active, items).await,
    }
}

/// A step of a block on the hosts `BlockWalk` says run it; who failed it is the block's.
async fn walk_block_step<M: Mode>(
    mode: &mut M,
    at: StepAt<'_>,
    at_play: &PlayAt<'_>,
    batch: &[String],
    active: &mut Vec<String>,
    blocks: &mut BlockWalk<'_>,
) {
    if mode.probes_every_path() {
        return walk_step(mode, at, at_play, batch, active).await;
    }
    let mut run_on = blocks.hosts_for(at.step, active);
    // Resumed: a failure journaled before the stop is the block's again.
    let failed_before: Vec<String> = run_on
        .iter()
        .filter(|h| mode.failed_before(at, h))
        .cloned()
        .collect();
    run_on.retain(|h| !failed_before.contains(h));
    let ran = run_on.clone();
    if !run_on.is_empty() {
        walk_step(mode, at, at_play, batch, &mut run_on).await;
    }
    let gone: Vec<String> = ran.into_iter().filter(|h| !run_on.contains(h)).collect();
    active.retain(|h| !(gone.contains(h) && mode.unreachable(h)));
    let failed: Vec<String> = gone
        .into_iter()
        .filter(|h| !mode.unreachable(h))
        .chain(failed_before)
        .collect();
    blocks.after(at.step, &failed, active);
}

/// Before a step (None: after the last one): rescues that ended, and failures that left
/// every block, which fail their hosts.
async fn settle<M: Mode>(
    mode: &mut M,
    at_play: &PlayAt<'_>,
    blocks: &mut BlockWalk<'_>,
    step: Option<&Step>,
    active: &mut Vec<String>,
) {
    let settled = blocks.settle(step);
    for (host, block) in &settled.rescued {
        mode.block_rescued(at_play, host, *block).await;
    }
    for host in &settled.failed {
        if mode.block_failure_escaped(at_play.play, host) {
            active.clear();
        }
    }
}

/// A looped step, item by item in order, each on the active hosts that have it. Hosts whose
/// item is the same step (the same item, label and count) run it together; a host that fails
/// an item goes no further, as after any failed step.
async fn walk_items<M: Mode>(
    mode: &mut M,
    at: StepAt<'_>,
    at_play: &PlayAt<'_>,
    batch: &[String],
    active: &mut Vec<String>,
    items: &BTreeMap<String, Vec<super::loops::Item>>,
) {
    let longest = active
        .iter()
        .filter_map(|h| items.get(h).map(Vec::len))
        .max()
        .unwrap_or(0);
    for index in 0..longest {
        let mut groups: Vec<(Step, Vec<String>)> = Vec::new();
        for host in active.iter() {
            let Some(host_items) = items.get(host) else {
                continue;
            };
            let Some(item) = host_items.get(index) else {
                continue;
            };
            let s = item_step(at.step, index, host_items.len(), item);
            match groups
                .iter_mut()
                .find(|(g, _)| g.name == s.name && g.item == s.item)
            {
                Some((_, hosts)) => hosts.push(host.clone()),
                None => groups.push((s, vec![host.clone()])),
            }
        }
        for (s, hosts) in &groups {
            if mode.interrupted() {
                return;
            }
            let item_at = StepAt {
                step: s,
                item: Some(index),
                ..at
            };
            let mut still = hosts.clone();
            mode.step(item_at, at_play, batch, &mut still).await;
            active.retain(|h| !hosts.contains(h) || still.contains(h));
        }
    }
}

/// The handlers notified in a batch, in the order they are defined, once per host.
async fn walk_handlers<M: Mode>(
    mode: &mut M,
    at_play: &PlayAt<'_>,
    batch: &[String],
    active: &[String],
) {
    let play = at_play.play;
    for (handler_index, handler) in play.handlers.iter().enumerate() {
        let at = StepAt {
            play,
            play_index: at_play.index,
            step_index: handler_index,
            step: handler,
            handler: true,
            item: None,
        };
        let hosts = mode.handler_hosts(at, batch, active);
        if hosts.is_empty() || mode.interrupted() {
            continue;
        }
        mode.handler(at, at_play, &hosts).await;
    }
}

/// The hosts a step runs on among `hosts`: a `run_once` step on the first only.
pub fn step_hosts<'h>(step: &Step, hosts: &'h [String]) -> &'h [String] {
    if step.run_once {
        &hosts[..hosts.len().min(1)]
    } else {
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYBOOK: &str = r#"
- name: first
  hosts: all
  serial: 2
  steps:
    - name: one
      command: "true"
      notify: restart
    - name: two
      command: "true"
      tags: [later]
    - name: three
      command: "true"
  handlers:
    - name: restart
      command: "true"
- name: second
  hosts: b
  steps:
    - name: four
      command: "true"
"#;

    /// Records where the walk stops; h2 is lost at step "one", h3 fails there.
    #[derive(Default)]
    struct Recorder {
        tags: Vec<String>,
        seen: Vec<String>,
        notified: Vec<String>,
        stop_after_batches: Option<usize>,
        batches_closed: usize,
    }

    impl Mode for Recorder {
        type Stop = &'static str;
        fn tags(&self) -> (&[String], &[String]) {
            (&self.tags, &[])
        }
        fn play_hosts(&mut self, play: &Play, selected: &[String]) -> Option<Vec<String>> {
            self.seen.push(format!("play {} {selected:?}", play.name));
            Some(selected.to_vec())
        }
        async fn start_play(&mut self, _at: &PlayAt<'_>, _hosts: &[String]) {}
        fn batches(&self, _play: &Play, hosts: &[String]) -> Vec<Vec<String>> {
            hosts.chunks(2).map(<[String]>::to_vec).collect()
        }
        async fn open_batch(&mut self, _play_index: usize, batch: &[String]) -> Vec<String> {
            self.seen.push(format!("batch {batch:?}"));
            batch.to_vec()
        }
        async fn step(
            &mut self,
            at: StepAt<'_>,
            _p: &PlayAt<'_>,
            _b: &[String],
            active: &mut Vec<String>,
        ) {
            self.seen
                .push(format!("step {} {active:?}", at.step.display_name()));
            self.notified.extend(active.iter().take(1).cloned());
            active.retain(|h| h != "h2");
        }
        fn handler_hosts(
            &mut self,
            _at: StepAt<'_>,
            _b: &[String],
            active: &[String],
        ) -> Vec<String> {
            active
                .iter()
                .filter(|h| self.notified.contains(h))
                .cloned()
                .collect()
        }
        async fn handler(&mut self, at: StepAt<'_>, _p: &PlayAt<'_>, hosts: &[String]) {
            self.seen
                .push(format!("handler {} {hosts:?}", at.step.display_name()));
        }
        async fn close_batch(&mut self, _play: &Play) -> Option<&'static str> {
            self.batches_closed += 1;
            (Some(self.batches_closed) == self.stop_after_batches).then_some("stopped")
        }
    }

    fn plays() -> Plays {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pb.yml");
        std::fs::write(&path, PLAYBOOK).unwrap();
        let playbook = crate::playbook::load_checked(&path).unwrap();
        let hosts = vec![
            ["h1", "h2", "h3"].map(String::from).to_vec(),
            vec!["h3".to_string()],
        ];
        let vars = (0..2).map(|_| Arc::new(BTreeMap::new())).collect();
        std::fs::write(dir.path().join("inv.yml"), "hosts:\n  h1: {}\n").unwrap();
        let inv = crate::inventory::load_checked(&dir.path().join("inv.yml")).unwrap();
        let shared = (0..2)
            .map(|_| Arc::new(template::Shared::new(&inv, &BTreeMap::new())))
            .collect();
        Plays {
            playbook,
            vars,
            shared,
            hosts,
            loops: vec![Default::default(); 2],
        }
    }

    fn walked(mode: &mut Recorder, start_at: Option<&str>) -> Option<&'static str> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(walk(&plays(), mode, start_at.map(String::from)))
    }

    #[test]
    fn plays_batches_steps_then_handlers_on_the_hosts_still_active() {
        let mut mode = Recorder::default();
        assert_eq!(walked(&mut mode, None), None);
        assert_eq!(
            mode.seen,
            [
                r#"play first ["h1", "h2", "h3"]"#,
                r#"batch ["h1", "h2"]"#,
                r#"step one ["h1", "h2"]"#,
                r#"step two ["h1"]"#,
                r#"step three ["h1"]"#,
                r#"handler restart ["h1"]"#,
                r#"batch ["h3"]"#,
                r#"step one ["h3"]"#,
                r#"step two ["h3"]"#,
                r#"step three ["h3"]"#,
                r#"handler restart ["h3"]"#,
                r#"play second ["h3"]"#,
                r#"batch ["h3"]"#,
                r#"step four ["h3"]"#,
            ]
        );
    }

    #[test]
    fn tags_start_at_and_a_stop_leave_out_what_they_should() {
        let mut mode = Recorder {
            tags: vec!["later".into()],
            stop_after_batches: Some(1),
            ..Recorder::default()
        };
        assert_eq!(walked(&mut mode, None), Some("stopped"));
        assert_eq!(
            mode.seen,
            [
                r#"play first ["h1", "h2", "h3"]"#,
                r#"batch ["h1", "h2"]"#,
                r#"step two ["h1", "h2"]"#,
                r#"handler restart ["h1"]"#,
            ]
        );
        let mut mode = Recorder::default();
        walked(&mut mode, Some("three"));
        let steps: Vec<&String> = mode.seen.iter().filter(|s| s.starts_with("step")).collect();
        assert_eq!(
            steps,
            [
                r#"step three ["h1", "h2"]"#,
                r#"step one ["h3"]"#,
                r#"step two ["h3"]"#,
                r#"step three ["h3"]"#,
                r#"step four ["h3"]"#
            ]
        );
    }

    #[test]
    fn a_looped_step_walks_item_by_item_on_the_hosts_that_have_each_item() {
        use crate::run::loops::Item;
        let mut plays = plays();
        let item = |v: &str| Item {
            value: serde_json::json!(v),
            label: v.to_string(),
        };
        // Step "three" loops: h1 over [x, y], h2 over [x, y]; h3 over nothing.
        let by_host: BTreeMap<String, Vec<Item>> = [
            ("h1".to_string(), vec![item("x"), item("y")]),
            ("h2".to_string(), vec![item("x"), item("y")]),
            ("h3".to_string(), vec![]),
        ]
        .into();
        plays.loops[0].insert(2, by_host);
        let mut mode = Recorder::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(walk(&plays, &mut mode, None));
        let steps: Vec<&String> = mode.seen.iter().filter(|s| s.starts_with("step")).collect();
        // h2 is lost at step "one" (the Recorder drops it), so items run on h1 only.
        assert_eq!(
            steps,
            [
                r#"step one ["h1", "h2"]"#,
                r#"step two ["h1"]"#,
                r#"step three (item 1/2: x) ["h1"]"#,
                r#"step three (item 2/2: y) ["h1"]"#,
                r#"step one ["h3"]"#,
                r#"step two ["h3"]"#,
                r#"step four ["h3"]"#,
            ]
        );
    }

    #[test]
    fn a_run_once_step_runs_on_the_first_host() {
        let hosts = ["a", "b"].map(String::from);
        let pb = plays().playbook;
        let mut step = pb.plays[0].steps[0].clone();
        assert_eq!(step_hosts(&step, &hosts), hosts);
        step.run_once = true;
        assert_eq!(step_hosts(&step, &hosts), ["a"]);
        assert!(step_hosts(&step, &[]).is_empty());
    }
}
