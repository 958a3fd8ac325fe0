//! `cutover check`: validate inventory, playbooks and templates without touching any host.

use std::path::{Path, PathBuf};

use super::inputs::{extra_vars, inventory_path, templates_dir};
use super::{exit, Common, Refusal};
use crate::check::{self, CheckInput};

pub(super) fn cmd_check(common: &Common, mut playbooks: Vec<PathBuf>) -> Result<u8, Refusal> {
    let inv = inventory_path(common)?;
    if playbooks.is_empty() {
        playbooks = check::default_playbooks(Path::new("playbooks"));
    }
    let extra = extra_vars(common, inv, &playbooks)?;
    let templates_dir = templates_dir(common, &playbooks);
    let r = check::check(&CheckInput {
        inventory: inv,
        playbooks: &playbooks,
        templates_dir: &templates_dir,
        extra_vars: &extra,
        every_template: true,
    })?;
    for w in &r.warnings {
        eprint!("{}", w.render().replacen("error:", "warning:", 1));
    }
    println!(
        "ok: inventory {} ({} hosts, {} groups); {} playbooks ({} plays, {} steps); {} templates",
        inv.display(),
        r.hosts,
        r.groups,
        r.playbooks,
        r.plays,
        r.steps,
        r.templates
    );
    Ok(exit::OK)
}
