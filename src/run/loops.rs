//! Looped steps (`loop:`), expanded before the run into one step per item on each host. The
//! items are known before any host is touched (`check` refuses a loop over what only the run
//! knows), so a plan and the run that applies it expand the same items; each item is then
//! planned, journaled, undone and resumed as a step of its own.

use std::collections::BTreeMap;

use serde_json::Value as J;

use crate::diag::Diagnostics;
use crate::inventory::vars::Resolved;
use crate::inventory::Inventory;
use crate::playbook::{self, Play, Step};
use crate::template;

/// One item of a looped step on a host: its value and the label output shows for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub value: J,
    pub label: String,
}

/// A play's looped steps: by step index, each host's items.
pub type PlayLoops = BTreeMap<usize, BTreeMap<String, Vec<Item>>>;

/// The items of every looped step of a play, on each of its hosts.
pub fn expand(
    inv: &Inventory,
    play: &Play,
    hosts: &[String],
    everyone: &BTreeMap<String, Resolved>,
    shared: &template::Shared,
) -> Result<PlayLoops, Diagnostics> {
    let mut out = PlayLoops::new();
    let mut diags = Diagnostics::default();
    for (index, step) in play.steps.iter().enumerate() {
        let Some(lp) = &step.loop_ else {
            continue;
        };
        let by_host = out.entry(index).or_default();
        for host in hosts {
            let Some(resolved) = everyone.get(host) else {
                continue;
            };
            let mut ctx = template::host_context_with(inv, host, resolved, shared);
            let items = crate::playbook::bind_scope(step, &mut ctx, resolved)
                .and_then(|()| host_items(lp, &ctx));
            match items {
                Ok(items) => {
                    by_host.insert(host.clone(), items);
                }
                Err(d) => diags.push(d),
            }
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

fn host_items(
    lp: &playbook::Loop,
    ctx: &template::Vars,
) -> Result<Vec<Item>, crate::diag::Diagnostic> {
    let values = playbook::items_for(lp, ctx)?;
    values
        .into_iter()
        .map(|value| {
            let mut ctx = ctx.clone();
            ctx.insert(lp.var.as_str(), &value);
            let label = playbook::item_label(lp, &ctx)?;
            Ok(Item { value, label })
        })
        .collect()
}

/// The step for item `index` of `count`: named after the item, with the item bound.
pub fn item_step(step: &Step, index: usize, count: usize, item: &Item) -> Step {
    let var = step.loop_.as_ref().map_or("item", |l| l.var.as_str());
    let mut s = step.clone();
    s.name = Some(format!(
        "{} (item {}/{count}: {})",
        step.display_name(),
        index + 1,
        item.label
    ));
    s.item = Some((var.to_string(), item.value.clone()));
    s.loop_ = None;
    s
}
