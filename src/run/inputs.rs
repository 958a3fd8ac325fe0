//! What a plan or a run reads, loaded and checked once: the inventory, the playbook, the
//! templates its steps use, each play's variables resolved for every host, and the hosts
//! `--limit` selects. `check`, `plan` and `apply` share this one model; nothing is read or
//! resolved again after it is built.

use std::collections::BTreeSet;
use std::path::Path;

use super::walk::Plays;
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::inventory::{pattern, Inventory, Var};
use crate::playbook::Play;
use crate::template::Templates;

/// Where the inputs are and the options that name things in them.
pub struct Request<'a> {
    pub inventory: &'a Path,
    pub playbook: &'a Path,
    pub templates_dir: &'a Path,
    pub extra_vars: &'a [Var],
    pub limit: Option<&'a str>,
    pub tags: &'a [String],
    pub skip_tags: &'a [String],
    pub start_at_step: Option<&'a str>,
    pub approvals: &'a [String],
}

/// The inputs of one playbook run or plan, checked.
pub struct Inputs {
    pub inv: Inventory,
    pub templates: Templates,
    /// The playbook's plays with their variables and hosts.
    pub plays: Plays,
    /// The hosts `--limit` selects (None: no limit).
    pub limited: Option<BTreeSet<String>>,
}

impl Inputs {
    /// Load and check everything; invalid input (or an option naming nothing in the
    /// playbook) is refused before any host is touched.
    pub fn load(req: &Request<'_>) -> Result<Inputs, Diagnostics> {
        let checked = crate::check::load(&crate::check::CheckInput {
            inventory: req.inventory,
            playbooks: &[req.playbook.to_path_buf()],
            templates_dir: req.templates_dir,
            extra_vars: req.extra_vars,
            every_template: false,
        })?;
        let crate::check::Checked {
            inventory: inv,
            mut playbooks,
            templates,
            ..
        } = checked;
        let crate::check::CheckedPlaybook {
            playbook,
            play_vars,
            play_shared,
        } = playbooks.pop().ok_or_else(|| {
            // A playbook that does not load is a diagnostic, so this is never reached.
            let mut d = Diagnostics::default();
            d.push(Diagnostic::new(
                Pos::cli("playbook"),
                format!("{}: not loaded", req.playbook.display()),
            ));
            d
        })?;
        let wrong_options =
            playbook.check_run_options(req.start_at_step, req.tags, req.skip_tags, req.approvals);
        if !wrong_options.is_empty() {
            return Err(wrong_options);
        }
        let limited = match req.limit {
            Some(p) => Some(limit_hosts(&inv, p)?),
            None => None,
        };
        let hosts: Vec<Vec<String>> = playbook
            .plays
            .iter()
            .map(|play| play_hosts(&inv, play, limited.as_ref()))
            .collect();
        let loops = playbook
            .plays
            .iter()
            .enumerate()
            .map(|(i, play)| {
                crate::run::loops::expand(&inv, play, &hosts[i], &play_vars[i], &play_shared[i])
            })
            .collect::<Result<_, _>>()?;
        Ok(Inputs {
            inv,
            templates,
            plays: Plays {
                playbook,
                vars: play_vars,
                shared: play_shared,
                hosts,
                loops,
            },
            limited,
        })
    }
}

/// The hosts a play selects, within `--limit`, in inventory order.
fn play_hosts(inv: &Inventory, play: &Play, limited: Option<&BTreeSet<String>>) -> Vec<String> {
    pattern::select(inv, &play.hosts)
        .unwrap_or_default()
        .into_iter()
        .filter(|h| limited.is_none_or(|l| l.contains(*h)))
        .map(str::to_string)
        .collect()
}

fn limit_hosts(inv: &Inventory, pattern_text: &str) -> Result<BTreeSet<String>, Diagnostics> {
    let selected = pattern::select(inv, pattern_text).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(Diagnostic::new(
            Pos::cli("--limit"),
            format!("--limit {pattern_text}: {e}"),
        ));
        d
    })?;
    Ok(selected.into_iter().map(str::to_string).collect())
}
