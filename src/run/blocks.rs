//! Which hosts run a step of a `block:` (see `playbook::block`), for one batch. A host that
//! fails a step of a block is *failing in* that block: it skips the block's remaining steps,
//! runs its `rescue:` steps (then, when they all succeed, it is rescued and goes on as if
//! nothing failed) and its `always:` steps. A failure the block does not rescue leaves it when
//! the walk leaves the block: it becomes the enclosing block's, or, outside every block, the
//! host's failure for the run (then `on_failure` applies: stop, or unwind the run's changes).

use std::collections::{BTreeMap, BTreeSet};

use crate::playbook::{Block, BlockAt, BlockPart, Step};

/// A host's failure not yet rescued nor left the block it happened in.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Failing {
    block: usize,
    /// The block's `rescue:` may still handle it (it happened in the block's own steps).
    rescuable: bool,
}

/// What happened to hosts between two steps.
#[derive(Debug, Default, PartialEq)]
pub struct Settled {
    /// Failures that left every block: the hosts failed.
    pub failed: Vec<String>,
    /// Hosts whose `rescue:` steps all succeeded: their failure is handled.
    pub rescued: Vec<(String, usize)>,
}

/// The state of a batch's hosts inside the play's blocks.
#[derive(Debug)]
pub struct BlockWalk<'p> {
    blocks: &'p [Block],
    failing: BTreeMap<String, Failing>,
    /// Hosts running a block's `rescue:` steps, with the block.
    rescuing: BTreeMap<String, BTreeSet<usize>>,
}

impl<'p> BlockWalk<'p> {
    pub fn new(blocks: &'p [Block]) -> Self {
        BlockWalk {
            blocks,
            failing: BTreeMap::new(),
            rescuing: BTreeMap::new(),
        }
    }

    /// No host is failing in a block (with none active, no step has anyone to run on).
    pub fn idle(&self) -> bool {
        self.failing.is_empty()
    }

    /// Before `step` (None: the play's steps are over): rescues that ended, and failures
    /// carried out of the blocks the step is not in.
    pub fn settle(&mut self, step: Option<&Step>) -> Settled {
        let chain: &[BlockAt] = step.map_or(&[], |s| &s.blocks);
        let mut out = Settled::default();
        // A host that failed again inside its rescue is not rescued by it.
        let failing = &self.failing;
        self.rescuing.retain(|h, _| !failing.contains_key(h));
        for (host, blocks) in &mut self.rescuing {
            let ended: Vec<usize> = blocks
                .iter()
                .copied()
                .filter(|b| {
                    !chain.contains(&BlockAt {
                        id: *b,
                        part: BlockPart::Rescue,
                    })
                })
                .collect();
            for b in ended {
                blocks.remove(&b);
                out.rescued.push((host.clone(), b));
            }
        }
        self.rescuing.retain(|_, b| !b.is_empty());
        let mut escaped = Vec::new();
        for (host, f) in &mut self.failing {
            while !chain.iter().any(|b| b.id == f.block) {
                match self.blocks[f.block].parent {
                    None => {
                        escaped.push(host.clone());
                        break;
                    }
                    Some(p) => {
                        *f = Failing {
                            block: p.id,
                            rescuable: p.part == BlockPart::Body && self.blocks[p.id].has_rescue,
                        }
                    }
                }
            }
        }
        for h in &escaped {
            self.failing.remove(h);
        }
        out.failed = escaped;
        out
    }

    /// The hosts that run `step`: the active ones (a `rescue:` step only where its block is
    /// being rescued), and the failing ones the step rescues or is an `always:` of. A failing
    /// host that starts a rescue becomes active again.
    pub fn hosts_for(&mut self, step: &Step, active: &mut Vec<String>) -> Vec<String> {
        let mut run_on: Vec<String> = Vec::new();
        let starting: Vec<String> = self
            .failing
            .iter()
            .filter(|(_, f)| {
                f.rescuable
                    && step.blocks.contains(&BlockAt {
                        id: f.block,
                        part: BlockPart::Rescue,
                    })
            })
            .map(|(h, _)| h.clone())
            .collect();
        for h in starting {
            let f = self.failing.remove(&h).expect("failing host");
            self.rescuing.entry(h.clone()).or_default().insert(f.block);
            if !active.contains(&h) {
                active.push(h);
            }
        }
        for h in active.iter() {
            let rescues_ok = step
                .blocks
                .iter()
                .filter(|b| b.part == BlockPart::Rescue)
                .all(|b| self.rescuing.get(h).is_some_and(|r| r.contains(&b.id)));
            if rescues_ok {
                run_on.push(h.clone());
            }
        }
        for (h, f) in &self.failing {
            if step.blocks.contains(&BlockAt {
                id: f.block,
                part: BlockPart::Always,
            }) {
                run_on.push(h.clone());
            }
        }
        run_on
    }

    /// After `step` ran on `ran`: `still` are those that went on; the others failed it (the
    /// unreachable ones are the caller's, not passed here). Failing hosts are taken out of
    /// `active`.
    pub fn after(&mut self, step: &Step, failed: &[String], active: &mut Vec<String>) {
        let Some(inner) = step.blocks.last() else {
            return;
        };
        for h in failed {
            active.retain(|a| a != h);
            if let Some(f) = self.failing.get_mut(h) {
                f.rescuable = false;
                continue;
            }
            if let Some(r) = self.rescuing.get_mut(h) {
                r.remove(&inner.id);
            }
            let rescuable = inner.part == BlockPart::Body && self.blocks[inner.id].has_rescue;
            self.failing.insert(
                h.clone(),
                Failing {
                    block: inner.id,
                    rescuable,
                },
            );
        }
        self.rescuing.retain(|_, b| !b.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Pos;
    use std::path::Path;

    fn block(has_rescue: bool, parent: Option<BlockAt>) -> Block {
        Block {
            name: None,
            pos: Pos::start(Path::new("pb.yml")),
            has_rescue,
            parent,
        }
    }

    fn step(chain: &[(usize, BlockPart)]) -> Step {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pb.yml");
        std::fs::write(&path, "- hosts: all\n  steps:\n    - debug: { msg: x }\n").unwrap();
        let pb = crate::playbook::load_checked(&path).unwrap();
        let mut s = pb.plays[0].steps[0].clone();
        s.blocks = chain
            .iter()
            .map(|&(id, part)| BlockAt { id, part })
            .collect();
        s
    }

    /// Outer block 0 (with a rescue) holds inner block 1 (no rescue): a failure in the
    /// inner block's steps skips the rest of it, runs its always, then the outer rescue
    /// handles it.
    #[test]
    fn a_failure_an_inner_block_does_not_rescue_is_the_outer_blocks() {
        use BlockPart::*;
        let blocks = [
            block(true, None),
            block(false, Some(BlockAt { id: 0, part: Body })),
        ];
        let mut w = BlockWalk::new(&blocks);
        let mut active = vec!["h1".to_string(), "h2".to_string()];
        let inner_body = step(&[(0, Body), (1, Body)]);
        assert_eq!(w.hosts_for(&inner_body, &mut active), ["h1", "h2"]);
        w.after(&inner_body, &["h1".to_string()], &mut active);
        assert_eq!(active, ["h2"]);
        assert_eq!(
            w.hosts_for(&inner_body, &mut active),
            ["h2"],
            "h1 skips the rest"
        );
        let inner_always = step(&[(0, Body), (1, Always)]);
        assert_eq!(w.settle(Some(&inner_always)), Settled::default());
        assert_eq!(w.hosts_for(&inner_always, &mut active), ["h2", "h1"]);
        let outer_rescue = step(&[(0, Rescue)]);
        assert_eq!(w.settle(Some(&outer_rescue)), Settled::default());
        assert_eq!(
            w.hosts_for(&outer_rescue, &mut active),
            ["h1"],
            "h2 did not fail"
        );
        let after = step(&[]);
        let settled = w.settle(Some(&after));
        assert_eq!(settled.rescued, [("h1".to_string(), 0)]);
        assert!(settled.failed.is_empty());
        assert_eq!(w.hosts_for(&after, &mut active), ["h2", "h1"]);
    }

    /// Without a rescue anywhere, the failure leaves the outermost block: the host fails.
    #[test]
    fn a_failure_no_block_rescues_fails_the_host_when_it_leaves_them() {
        use BlockPart::*;
        let blocks = [block(false, None)];
        let mut w = BlockWalk::new(&blocks);
        let mut active = vec!["h1".to_string()];
        let body = step(&[(0, Body)]);
        w.hosts_for(&body, &mut active);
        w.after(&body, &["h1".to_string()], &mut active);
        let rescue_free_always = step(&[(0, Always)]);
        assert!(w.settle(Some(&rescue_free_always)).failed.is_empty());
        assert_eq!(w.hosts_for(&rescue_free_always, &mut active), ["h1"]);
        assert_eq!(w.settle(None).failed, ["h1"]);
        assert!(w.idle());
    }
}
