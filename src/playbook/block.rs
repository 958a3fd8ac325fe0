//! Blocks (Ansible's `block:`, `rescue:`, `always:`): steps grouped under one `when:`, `tags:`,
//! `become:`/`become_user:` and `vars:`, with the steps that run on a host where one of the
//! block's steps failed (`rescue:`) and those that run on every host that entered it
//! (`always:`). The steps are flattened into the play, each knowing its blocks and part; the
//! walk (`run::blocks`) decides per host which of them run.

use std::path::Path;

use super::include::{has_key, inherit, Inherited, StepsReader};
use super::{Block, BlockAt, BlockPart, Step};
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics};
use crate::yaml::Node;

const BLOCK_KEYS: &[&str] = &[
    "block",
    "rescue",
    "always",
    "name",
    "vars",
    "when",
    "tags",
    "become",
    "become_user",
];

impl StepsReader {
    /// A `block:` item: its parts' steps, in order, marked with the block.
    pub(super) fn read_block(
        &mut self,
        node: &Node,
        file: &Path,
        diags: &mut Diagnostics,
    ) -> Vec<Step> {
        let Some(f) = Fields::new(node, "block", BLOCK_KEYS, diags) else {
            return Vec::new();
        };
        let inherited = Inherited::read(&f, "block vars", diags);
        let id = self.blocks.len();
        self.blocks.push(Block {
            name: f.str("name", diags),
            pos: node.pos.clone(),
            has_rescue: f.has("rescue"),
            parent: self.open_blocks.last().copied(),
        });
        let mut steps = Vec::new();
        for (key, part) in [
            ("block", BlockPart::Body),
            ("rescue", BlockPart::Rescue),
            ("always", BlockPart::Always),
        ] {
            let Some(n) = f.get(key) else { continue };
            let Some(items) = decode::sequence(n, key, diags) else {
                continue;
            };
            if key == "block" && items.is_empty() {
                diags.push(Diagnostic::new(
                    n.pos.clone(),
                    "`block:` holds no step; a block groups at least one",
                ));
            }
            self.open_blocks.push(BlockAt { id, part });
            steps.extend(self.read_steps(items, file, diags));
            self.open_blocks.pop();
        }
        for step in &mut steps {
            inherit(step, &inherited);
        }
        steps
    }
}

/// `rescue:` or `always:` in a list item without `block:` beside it.
pub(super) fn stray_part(node: &Node) -> Option<Diagnostic> {
    let key = ["rescue", "always"]
        .into_iter()
        .find(|k| has_key(node, k))?;
    let pos = match &node.value {
        crate::yaml::Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map_or(node.pos.clone(), |(k, _)| k.pos.clone()),
        _ => node.pos.clone(),
    };
    Some(
        Diagnostic::new(
            pos,
            format!(
                "`{key}:` without `block:`: it belongs beside the `block:` whose steps it answers"
            ),
        )
        .with_help("write `- block: [steps]` with `rescue:`/`always:` in the same list item"),
    )
}
