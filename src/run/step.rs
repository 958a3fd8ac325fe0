//! One step made concrete for one host, the same in plan and apply: its arguments rendered,
//! the host it runs on (`delegate_to`), its sudo, and the templates the run loads.

use anyhow::{anyhow, Result};
use serde_json::{Map, Value as J};

use crate::inventory::Inventory;
use crate::playbook::Step;
use crate::template;
use crate::transport::Become;

/// Where a step runs: its `delegate_to` — rendered, so `"{{ groups.db_master[0] }}"` works —
/// else the host itself.
pub fn delegate_target(
    inv: &crate::inventory::Inventory,
    step: &Step,
    host: &str,
    ctx: &template::Vars,
) -> Result<String> {
    let Some((text, pos)) = &step.delegate_to else {
        return Ok(host.to_string());
    };
    let name = if text.contains("{{") || text.contains("{%") {
        template::render_str(text, ctx, pos)
            .map_err(|d| anyhow!("{d}"))?
            .trim()
            .to_string()
    } else {
        text.clone()
    };
    if inv.host(&name).is_none() {
        return Err(anyhow!(
            "{pos}: `delegate_to` is {name:?} here, which names no host of the inventory"
        ));
    }
    Ok(name)
}

/// sudo for a step: the step's setting, else the play's, else the host's connection's.
pub fn become_for(
    inv: &Inventory,
    play_become: Option<bool>,
    play_user: Option<&str>,
    step: &Step,
    host: &str,
) -> Option<Become> {
    let conn = inv.host(host).map(|h| &h.connection);
    let on = step
        .become_root
        .or(play_become)
        .unwrap_or_else(|| conn.is_some_and(|c| c.become_root));
    on.then(|| Become {
        user: step
            .become_user
            .clone()
            .or_else(|| play_user.map(str::to_string))
            .or_else(|| conn.and_then(|c| c.become_user.clone())),
    })
}

/// Render every `{{ }}` string in a step's arguments for this host.
pub fn render_args(
    module: &str,
    args: &Map<String, J>,
    ctx: &template::Vars,
    step: &Step,
) -> Result<Map<String, J>> {
    fn render(v: &J, ctx: &template::Vars, pos: &crate::diag::Pos, shell: bool) -> Result<J> {
        Ok(match v {
            J::String(s) if s.contains("{{") || s.contains("{%") => if shell {
                template::render_command_value(s, ctx, pos)
            } else {
                template::render_value(s, ctx, pos)
            }
            .map_err(|d| anyhow!("{d}"))?,
            J::Array(items) => J::Array(
                items
                    .iter()
                    .map(|i| render(i, ctx, pos, false))
                    .collect::<Result<_>>()?,
            ),
            J::Object(m) => J::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), render(v, ctx, pos, false)?)))
                    .collect::<Result<_>>()?,
            ),
            other => other.clone(),
        })
    }
    args.iter()
        .map(|(k, v)| {
            let pos = step
                .action
                .arg_pos
                .iter()
                .find(|(n, _)| n == k)
                .map_or(step.action.pos.clone(), |(_, p)| p.clone());
            Ok((
                k.clone(),
                render(v, ctx, &pos, template::is_command_string(module, k))?,
            ))
        })
        .collect()
}
