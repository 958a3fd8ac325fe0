//! What a step sees beyond its host's variables: the `vars:` of the `include_steps:` around it
//! and, for an item of a looped step, the item. Bound the same way for `check`, `plan` and
//! `apply`, so all three render a step alike.

use crate::diag::Diagnostic;
use crate::inventory::vars::{Origin, Resolved};
use crate::playbook::Step;
use crate::template;

/// Bind the step's include variables (outermost first, each rendered with what is bound
/// before it) and its loop item. `-e` still wins over an include's value, as in Ansible.
pub fn bind(step: &Step, ctx: &mut template::Vars, resolved: &Resolved) -> Result<(), Diagnostic> {
    for var in &step.scope_vars {
        let from_command_line = matches!(
            resolved.vars.get(&var.name),
            Some((_, Origin::CommandLine(_)))
        );
        if from_command_line {
            continue;
        }
        let value = template::render_json_strings(&var.value, ctx, &var.pos)?;
        ctx.insert(var.name.as_str(), &value);
    }
    bind_item(step, ctx);
    Ok(())
}

/// Bind a looped step's item in its template context.
fn bind_item(step: &Step, ctx: &mut template::Vars) {
    if let Some((var, value)) = &step.item {
        ctx.insert(var.as_str(), value);
    }
}
