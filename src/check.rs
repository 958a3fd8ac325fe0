//! `cutover check`: validate inventory, playbooks and templates together, touching no host.
//!
//! What needs more than one file is checked here: host patterns against the inventory,
//! `delegate_to` hosts, template files named by steps, and undefined variables in templates
//! and `{{ }}` values, rendered for every host a play targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::inventory::vars::{Layers, Resolved};
use crate::inventory::{pattern, Inventory, Var};
use crate::playbook::{Play, Playbook, Step};
use crate::template::{self, Templates};

/// What `check` was asked to look at.
pub struct CheckInput<'a> {
    pub inventory: &'a Path,
    pub playbooks: &'a [PathBuf],
    pub templates_dir: &'a Path,
    pub extra_vars: &'a [Var],
    /// Validate every file under `templates_dir` (`cutover check`), not only the ones the
    /// playbooks use (a run or a plan: a broken file nobody uses does not stop them).
    pub every_template: bool,
}

/// Summary of a successful check, for the "ok" line.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub hosts: usize,
    pub groups: usize,
    pub playbooks: usize,
    pub plays: usize,
    pub steps: usize,
    pub templates: usize,
    /// Things that are allowed but likely wrong (they do not change the exit code).
    pub warnings: Vec<Diagnostic>,
}

pub fn check(input: &CheckInput<'_>) -> Result<CheckReport, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut report = CheckReport::default();

    let inventory = crate::inventory::load(input.inventory, &mut diags);
    if let Some(inv) = &inventory {
        report.hosts = inv.hosts.len();
        report.groups = inv.groups.len();
        if let Err(d) = template::resolve_all(
            inv,
            Layers {
                extra: input.extra_vars,
                ..Default::default()
            },
        ) {
            diags.extend(d);
        }
    }
    let mut playbooks = Vec::new();
    for path in input.playbooks {
        let before = diags.len();
        let Some(pb) = crate::playbook::load(path, &mut diags) else {
            continue;
        };
        report.playbooks += 1;
        report.plays += pb.plays.len();
        report.steps += pb
            .plays
            .iter()
            .map(|p| p.steps.len() + p.handlers.len())
            .sum::<usize>();
        // Cross-file checks only make sense on a playbook that parsed cleanly.
        playbooks.push((pb, diags.len() == before));
    }
    let used = (!input.every_template)
        .then(|| template::used_by(playbooks.iter().map(|(pb, _)| pb)))
        .flatten();
    let loaded = match &used {
        Some(names) => Templates::load_used(input.templates_dir, names.iter().map(String::as_str)),
        None => Templates::load(input.templates_dir),
    };
    let templates = match loaded {
        Ok(t) => {
            report.templates = t.names().count();
            Some(t)
        }
        Err(errs) => {
            for e in errs {
                diags.push(e);
            }
            None
        }
    };
    for (pb, clean) in &playbooks {
        if let (true, Some(inv)) = (clean, &inventory) {
            check_playbook(pb, inv, templates.as_ref(), input.extra_vars, &mut diags);
        }
        report.warnings.extend(command_warnings(pb));
    }
    if diags.is_empty() {
        Ok(report)
    } else {
        Err(diags)
    }
}

fn check_playbook(
    pb: &Playbook,
    inv: &Inventory,
    templates: Option<&Templates>,
    extra: &[Var],
    diags: &mut Diagnostics,
) {
    // Names only known at run time: registered results and gathered facts.
    let runtime: Vec<String> = pb
        .plays
        .iter()
        .flat_map(|p| p.steps.iter().chain(&p.handlers))
        .filter_map(|s| s.register.clone())
        .chain(["facts".to_string(), "run".to_string()])
        .collect();
    for play in &pb.plays {
        let hosts = match pattern::select(inv, &play.hosts) {
            Ok(h) => h,
            Err(e) => {
                let mut d = Diagnostic::new(
                    play.hosts_pos.clone(),
                    format!("`hosts: {}`: {e}", play.hosts),
                );
                if matches!(e, pattern::PatternError::NoMatch) {
                    d = d.with_help(format!(
                        "inventory {} has no host matching it",
                        inv.path.display()
                    ));
                }
                diags.push(d);
                continue;
            }
        };
        let layers = Layers {
            play_defaults: &play.defaults,
            play_vars: &play.vars,
            extra,
        };
        let everyone = match template::resolve_all(inv, layers) {
            Ok(e) => e,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        for step in play.steps.iter().chain(&play.handlers) {
            check_step(
                step, play, inv, &hosts, &everyone, templates, &runtime, diags,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_step(
    step: &Step,
    play: &Play,
    inv: &Inventory,
    hosts: &[&str],
    everyone: &BTreeMap<String, Resolved>,
    templates: Option<&Templates>,
    runtime: &[String],
    diags: &mut Diagnostics,
) {
    if let Some((target, pos)) = &step.delegate_to {
        if !target.contains("{{") && inv.host(target).is_none() {
            diags.push(
                Diagnostic::new(
                    pos.clone(),
                    format!("`delegate_to: {target}` names no host of the inventory"),
                )
                .suggest(target, inv.host_names()),
            );
        }
    }
    let template_src = (step.action.module == "template")
        .then(|| step.action.args.get("src").and_then(|v| v.as_str()))
        .flatten()
        .filter(|s| !s.contains("{{"));
    if let (Some(src), Some(t)) = (template_src, templates) {
        if !t.exists(src) {
            let pos = arg_pos(step, "src");
            diags.push(
                Diagnostic::new(
                    pos,
                    format!("template `{src}` not found in {}", t.dir.display()),
                )
                .suggest(src, t.names()),
            );
            return;
        }
    }
    // Render per host: undefined variables are found for the host that lacks them.
    for host in hosts {
        let Some(resolved) = everyone.get(*host) else {
            continue;
        };
        let ctx = template::host_context(inv, host, resolved, everyone);
        let mut problems: Vec<Diagnostic> = Vec::new();
        if let (Some(src), Some(t)) = (template_src, templates) {
            if let Err(d) = t.render(src, &ctx) {
                problems.push(d);
            }
        }
        for (name, value) in &step.action.args {
            for s in strings_in(value) {
                if s.contains("{{") || s.contains("{%") {
                    if let Err(d) = template::render_str(s, &ctx, &arg_pos(step, name)) {
                        problems.push(d);
                    }
                }
            }
        }
        if let Some(w) = &step.when {
            // tera reads an undefined name as false in `when: x` or `not x`: look names up first.
            let undefined: Vec<String> = template::expression_variables(&w.text)
                .into_iter()
                .filter(|v| !ctx.contains_key(v))
                .collect();
            for var in &undefined {
                problems.push(
                    Diagnostic::new(
                        w.pos.clone(),
                        format!("undefined variable `{var}` in `when:`"),
                    )
                    .with_help(format!(
                        "define `{var}` in the inventory, the play's vars or with -e"
                    )),
                );
            }
            if undefined.is_empty() {
                if let Err(d) = template::eval_bool(&w.text, &ctx, &w.pos) {
                    problems.push(d);
                }
            }
        }
        for d in problems {
            if is_runtime_variable(&d, runtime) {
                continue;
            }
            let d = Diagnostic {
                message: format!("{} (host {host}, play \"{}\")", d.message, play.name),
                ..d
            };
            diags.push(d);
        }
    }
}

/// Interpolations in `shell`/`command` strings that escape cutover's quoting.
fn command_warnings(pb: &Playbook) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for play in &pb.plays {
        let from_play = |name: &str| {
            play.vars
                .iter()
                .chain(&play.defaults)
                .any(|v| v.name == name)
        };
        for step in play.steps.iter().chain(&play.handlers) {
            for (arg, value) in &step.action.args {
                if !template::is_command_string(&step.action.module, arg) {
                    continue;
                }
                if let Some(text) = value.as_str().filter(|t| t.contains("{{")) {
                    out.extend(template::command_warnings(
                        text,
                        &arg_pos(step, arg),
                        &from_play,
                    ));
                }
            }
        }
    }
    out
}

fn arg_pos(step: &Step, name: &str) -> Pos {
    step.action
        .arg_pos
        .iter()
        .find(|(n, _)| n == name)
        .map_or(step.action.pos.clone(), |(_, p)| p.clone())
}

fn strings_in(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings_in).collect(),
        serde_json::Value::Object(m) => m.values().flat_map(strings_in).collect(),
        _ => vec![],
    }
}

/// Registered results and facts exist only at run time; an "undefined" one is not an error.
fn is_runtime_variable(d: &Diagnostic, runtime: &[String]) -> bool {
    let Some(rest) = d.message.strip_prefix("undefined variable `") else {
        return false;
    };
    let var = rest.split('`').next().unwrap_or("");
    let root = var.split(['.', '[']).next().unwrap_or(var);
    runtime.iter().any(|r| r == root)
}

/// The playbooks `check` looks at when none are named: every `*.yml` in `playbooks/`.
pub fn default_playbooks(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
