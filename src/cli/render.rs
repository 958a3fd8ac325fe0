//! `cutover render`: a template as it would be written on a host.

use super::inputs::{extra_vars, inventory_path, load_inventory, templates_dir};
use super::{exit, one, Common, Refusal};
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::vars::Layers;
use crate::template::{self, Templates};

pub(super) fn cmd_render(
    common: &Common,
    template_name: &str,
    host: &str,
    show_secrets: bool,
) -> Result<u8, Refusal> {
    let extra = extra_vars(common, inventory_path(common)?, &[])?;
    let inv = load_inventory(common)?;
    if inv.host(host).is_none() {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("--host"),
            format!("no host `{host}` in {}", inv.path.display()),
        )
        .suggest(host, inv.host_names()))
        .into());
    }
    let dir = templates_dir(common, &[]);
    // Only this template and what it includes: a broken file elsewhere does not matter here.
    let templates = Templates::load_used(&dir, [template_name]).map_err(|errs| {
        let mut d = Diagnostics::default();
        errs.into_iter().for_each(|e| d.push(e));
        d
    })?;
    if !templates.exists(template_name) {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("TEMPLATE"),
            format!("no template `{template_name}` in {}", dir.display()),
        )
        .suggest(template_name, templates.names()))
        .into());
    }
    let everyone = template::resolve_all(
        &inv,
        Layers {
            extra: &extra,
            ..Default::default()
        },
    )?;
    let ctx = template::host_context(&inv, host, &everyone[host], &everyone);
    let text = templates.render(template_name, &ctx).map_err(one)?;
    if show_secrets {
        print!("{text}");
    } else {
        print!("{}", crate::secrets::redact(&text));
    }
    Ok(exit::OK)
}
