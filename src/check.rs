//! `cutover check`: validate inventory, playbooks and templates together, touching no host.
//!
//! What needs more than one file is checked here: host patterns against the inventory,
//! `delegate_to` hosts, template files named by steps, and undefined variables in templates
//! and `{{ }}` values, rendered for every host a play targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::inventory::vars::{Layers, Resolved};
use crate::inventory::{pattern, Inventory, Var};
use crate::playbook::{Action, Loop, Play, Playbook, Step, Undo};
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

/// The inputs as checked, loaded once for whoever goes on to plan or run them: nothing is read
/// or resolved again after the check.
pub struct Checked {
    pub inventory: Inventory,
    pub playbooks: Vec<CheckedPlaybook>,
    /// The templates the playbooks use (all of them with `every_template`).
    pub templates: Templates,
    pub report: CheckReport,
}

/// A playbook as checked, with each play's variables resolved for every host (by play index).
pub struct CheckedPlaybook {
    pub playbook: Playbook,
    pub play_vars: Vec<Arc<BTreeMap<String, Resolved>>>,
    /// Each play's `groups` and `hostvars`, what every host's template context shares.
    pub play_shared: Vec<Arc<template::Shared>>,
}

/// Validate, keeping only the summary (`cutover check`).
pub fn check(input: &CheckInput<'_>) -> Result<CheckReport, Diagnostics> {
    load(input).map(|c| c.report)
}

/// Validate inventory, playbooks and templates together and keep what was loaded.
pub fn load(input: &CheckInput<'_>) -> Result<Checked, Diagnostics> {
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
    let templates = load_templates(input, &playbooks, &mut report, &mut diags);
    let mut checked = Vec::new();
    for (pb, clean) in playbooks {
        report.warnings.extend(command_warnings(&pb));
        if let (true, Some(inv)) = (clean, &inventory) {
            let (play_vars, play_shared) =
                check_playbook(&pb, inv, templates.as_ref(), input.extra_vars, &mut diags)
                    .into_iter()
                    .unzip();
            checked.push(CheckedPlaybook {
                playbook: pb,
                play_vars,
                play_shared,
            });
        }
    }
    match (inventory, templates) {
        (Some(inventory), Some(templates)) if diags.is_empty() => Ok(Checked {
            inventory,
            playbooks: checked,
            templates,
            report,
        }),
        _ => Err(diags),
    }
}

/// The templates the playbooks use (every one under the directory for `cutover check`).
fn load_templates(
    input: &CheckInput<'_>,
    playbooks: &[(Playbook, bool)],
    report: &mut CheckReport,
    diags: &mut Diagnostics,
) -> Option<Templates> {
    let used = (!input.every_template)
        .then(|| crate::playbook::templates_used_by(playbooks.iter().map(|(pb, _)| pb)))
        .flatten();
    let loaded = match &used {
        Some(names) => Templates::load_used(input.templates_dir, names.iter().map(String::as_str)),
        None => Templates::load(input.templates_dir),
    };
    match loaded {
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
    }
}

/// A play's variables for every host.
type EveryHost = Arc<BTreeMap<String, Resolved>>;

/// Check a playbook against the inventory; each play's resolved variables and shared template
/// context (those of a play
/// that could not be resolved are left out, with the diagnostics saying why).
fn check_playbook(
    pb: &Playbook,
    inv: &Inventory,
    templates: Option<&Templates>,
    extra: &[Var],
    diags: &mut Diagnostics,
) -> Vec<(EveryHost, Arc<template::Shared>)> {
    let mut plays = Vec::new();
    // Names only known at run time: registered results, gathered facts, the run, and the
    // prediction (from the state directory's rehearsals, which `check` does not read).
    let runtime: Vec<String> = pb
        .plays
        .iter()
        .flat_map(|p| p.steps.iter().chain(&p.handlers))
        .filter_map(|s| s.register.clone())
        .chain(
            [
                crate::context_names::FACTS,
                crate::context_names::RUN,
                crate::context_names::WINDOW_PREDICTION,
            ]
            .map(String::from),
        )
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
            play_vars_files: &play.file_vars,
            extra,
        };
        let everyone = match template::resolve_all(inv, layers) {
            Ok(e) => Arc::new(e),
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        // Each host's context is built once per play, not once per step.
        let shared = Arc::new(template::Shared::new(inv, &everyone));
        let contexts: Vec<(&str, template::Vars)> = hosts
            .iter()
            .filter_map(|h| {
                let resolved = everyone.get(*h)?;
                Some((*h, template::host_context_with(inv, h, resolved, &shared)))
            })
            .collect();
        let at = PlayCheck {
            play,
            inv,
            everyone: &everyone,
            contexts: &contexts,
            templates,
            runtime: &runtime,
        };
        for step in play.steps.iter().chain(&play.handlers) {
            check_step(step, at, diags);
        }
        plays.push((everyone, shared));
    }
    plays
}

/// What every step of a play is checked against.
#[derive(Clone, Copy)]
struct PlayCheck<'a> {
    play: &'a Play,
    inv: &'a Inventory,
    everyone: &'a BTreeMap<String, Resolved>,
    /// Each host of the play, with what its templates see.
    contexts: &'a [(&'a str, template::Vars)],
    templates: Option<&'a Templates>,
    /// Names known only at run time (registered results, facts, run).
    runtime: &'a [String],
}

fn check_step(step: &Step, at: PlayCheck<'_>, diags: &mut Diagnostics) {
    let PlayCheck {
        play,
        inv,
        everyone,
        contexts,
        templates,
        runtime,
    } = at;
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
    if let Some(d) = controller_source_problem(step) {
        diags.push(d);
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
    for (host, ctx) in contexts {
        let scoped;
        let ctx = match scope_context(step, ctx, everyone.get(*host)) {
            Ok(None) => ctx,
            Ok(Some(c)) => {
                scoped = c;
                &scoped
            }
            // An include variable made of what only the run registers: known then.
            Err(d) if is_runtime_variable(&d, runtime) => continue,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let problems = match &step.loop_ {
            None => host_problems(step, at, template_src, ctx),
            Some(lp) => loop_problems(step, lp, at, template_src, ctx),
        };
        for d in problems {
            if is_runtime_variable(&d, runtime) {
                continue;
            }
            let included = match step.included_from.last() {
                Some(at) => format!(", included at {at}"),
                None => String::new(),
            };
            let d = Diagnostic {
                message: format!(
                    "{} (host {host}, play \"{}\"{included})",
                    d.message, play.name
                ),
                ..d
            };
            diags.push(d);
        }
    }
}

/// A host's context with the step's include variables bound; None when it has none (the
/// play's context serves as it is).
fn scope_context(
    step: &Step,
    ctx: &template::Vars,
    resolved: Option<&Resolved>,
) -> Result<Option<template::Vars>, Diagnostic> {
    let (false, Some(resolved)) = (step.scope_vars.is_empty(), resolved) else {
        return Ok(None);
    };
    let mut ctx = ctx.clone();
    crate::playbook::bind_scope(step, &mut ctx, resolved)?;
    Ok(Some(ctx))
}

/// A step's problems on one host, rendered with what the host's templates see.
fn host_problems(
    step: &Step,
    at: PlayCheck<'_>,
    template_src: Option<&str>,
    ctx: &template::Vars,
) -> Vec<Diagnostic> {
    let mut problems: Vec<Diagnostic> = Vec::new();
    problems.extend(delegate_problem(step, at.inv, ctx));
    if let (Some(src), Some(t)) = (template_src, at.templates) {
        problems.extend(t.render(src, ctx).err());
    }
    // A step whose `when:` (on inventory values only) is false for this host never runs
    // there: its arguments may use what only the hosts it runs on define
    // (`when: lvm_layout is defined`).
    if !never_runs_on(step, ctx, at.runtime) {
        problems.extend(arg_problems(&step.action, ctx));
        problems.extend(rendered_layout_problem(&step.action, ctx));
    }
    // The way back runs at unwind time, the worst moment to find a typo in it.
    if let Undo::Custom(undo) = &step.undo {
        problems.extend(arg_problems(undo, ctx));
    }
    problems.extend(expression_problems(step, ctx));
    problems
}

/// A looped step on one host: its items must be a list known before the run (plan and apply
/// expand the same items), and the step is checked with each item bound, as `when:` is
/// evaluated per item. One report per problem, not one per item.
fn loop_problems(
    step: &Step,
    lp: &Loop,
    at: PlayCheck<'_>,
    template_src: Option<&str>,
    ctx: &template::Vars,
) -> Vec<Diagnostic> {
    let items = match crate::playbook::items_for(lp, ctx) {
        Ok(items) => items,
        Err(d) => match undefined_name(&d).filter(|v| at.runtime.iter().any(|r| r == v)) {
            Some(v) => {
                let d = Diagnostic::new(
                    lp.pos.clone(),
                    format!("`loop:` must be known before the run: `{v}` is set only while it runs"),
                )
                .with_help("loop over inventory or play variables, so that plan and apply expand the same items");
                return vec![d];
            }
            None => return vec![d],
        },
    };
    let mut out: Vec<Diagnostic> = Vec::new();
    for item in &items {
        let mut ctx = ctx.clone();
        ctx.insert(lp.var.as_str(), item);
        let mut found = host_problems(step, at, template_src, &ctx);
        found.extend(crate::playbook::item_label(lp, &ctx).err());
        for mut d in found {
            if undefined_name(&d) == Some(lp.var.as_str()) {
                d.help = Some(format!(
                    "`{}` is the loop's item here: an item of `loop:` at line {} lacks what this reads",
                    lp.var, lp.pos.line
                ));
            }
            if !out.iter().any(|o| o.message == d.message && o.pos == d.pos) {
                out.push(d);
            }
        }
    }
    out
}

/// `{{ }}` values of a module's arguments rendered for one host.
/// An argument whose type has a form (a pinned commit id, an octal mode) is checked as rendered
/// too: a branch name in the inventory is found by `check`, not in the maintenance window.
fn arg_problems(action: &Action, ctx: &template::Vars) -> Vec<Diagnostic> {
    let spec = crate::modules::spec::find(&action.module);
    let mut out = Vec::new();
    for (name, value) in &action.args {
        let ty = spec
            .and_then(|m| m.args.iter().find(|a| a.name == name))
            .map(|a| a.ty);
        for s in strings_in(value) {
            if !(s.contains("{{") || s.contains("{%")) {
                continue;
            }
            let pos = action_arg_pos(action, name);
            match template::render_str(s, ctx, &pos) {
                Err(d) => out.push(d),
                Ok(rendered) => {
                    if let Some(why) = ty.and_then(|t| t.text_problem(rendered.trim())) {
                        out.push(Diagnostic::new(
                            pos,
                            format!("`{}.{name}` as rendered: {why}", action.module),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A step's expressions: `when:` and `assert`'s `that:` before the module runs;
/// `changed_when:`, `failed_when:` and `until:` after it, when `result` and the step's own
/// registered name exist too. tera reads an undefined name as false in `when: x` or `not x`,
/// so names are looked up first.
fn expression_problems(step: &Step, ctx: &template::Vars) -> Vec<Diagnostic> {
    let mut exprs: Vec<(&str, Pos, &str, bool)> = Vec::new();
    for w in step.conditions() {
        exprs.push((&w.text, w.pos.clone(), "when", false));
    }
    for (e, key) in [
        (&step.changed_when, "changed_when"),
        (&step.failed_when, "failed_when"),
        (&step.until, "until"),
    ] {
        if let Some(e) = e {
            exprs.push((&e.text, e.pos.clone(), key, true));
        }
    }
    if step.action.module == "assert" {
        if let Some(that) = step.action.args.get("that") {
            let pos = action_arg_pos(&step.action, "that");
            for t in strings_in(that) {
                exprs.push((t, pos.clone(), "that", false));
            }
        }
    }
    let mut out = Vec::new();
    for (text, pos, key, after) in exprs {
        let known = |v: &String| {
            ctx.contains_key(v)
                || (after
                    && (v == crate::context_names::RESULT || step.register.as_ref() == Some(v)))
        };
        let undefined: Vec<String> = template::expression_variables(text)
            .into_iter()
            .filter(|v| !known(v) && !asks_if_defined(text, v))
            .collect();
        for var in &undefined {
            out.push(
                Diagnostic::new(
                    pos.clone(),
                    format!("undefined variable `{var}` in `{key}:`"),
                )
                .with_help(format!(
                    "define `{var}` in the inventory, the play's vars or with -e"
                )),
            );
        }
        if undefined.is_empty() && !after {
            out.extend(template::eval_bool(text, ctx, &pos).err());
        }
    }
    out
}

/// An `lvm_layout` step's `volumes` from a variable (`"{{ x.volumes | json_encode() }}"`),
/// rendered for the host and checked by the rules `check` applies to a written list.
fn rendered_layout_problem(action: &Action, ctx: &template::Vars) -> Option<Diagnostic> {
    if action.module != "lvm_layout" {
        return None;
    }
    let text = action.args.get("volumes")?.as_str()?;
    if !text.contains("{{") {
        return None;
    }
    let pos = action_arg_pos(action, "volumes");
    let rendered = template::render_str(text, ctx, &pos).ok()?;
    let why = crate::modules::layout_volumes_problem(&rendered)?;
    Some(Diagnostic::new(
        pos,
        format!("`lvm_layout.volumes` as rendered: {why}"),
    ))
}

/// Is the step's `when:` false for this host, from the inventory's values alone (no name a
/// run registers or sets: those are known only when it runs)?
fn never_runs_on(step: &Step, ctx: &template::Vars, runtime: &[String]) -> bool {
    step.conditions().any(|w| {
        let vars = template::expression_variables(&w.text);
        !vars.iter().any(|v| runtime.contains(v))
            && template::eval_bool(&w.text, ctx, &w.pos) == Ok(false)
    })
}

/// Does the expression ask whether `var` is defined (`var is defined`, `var.x is not
/// defined`, `var is undefined`)? Then its being undefined is the point, not a mistake.
fn asks_if_defined(text: &str, var: &str) -> bool {
    let pattern = format!(
        r"(^|[^\w.]){}(\.\w+)*\s+is\s+(not\s+)?(un)?defined\b",
        regex::escape(var)
    );
    regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(text))
}

/// Modules whose `src:` is a file on the controller.
const CONTROLLER_SOURCE_MODULES: &[&str] = &["copy", "mysql_query"];

/// A literal controller `src:` that exists but is no regular file (a FIFO would block the
/// run, a device never end). A missing one may be made by an earlier step: left to the run.
fn controller_source_problem(step: &Step) -> Option<Diagnostic> {
    if !CONTROLLER_SOURCE_MODULES.contains(&step.action.module.as_str()) {
        return None;
    }
    let src = step.action.args.get("src")?.as_str()?;
    if src.contains("{{") || std::fs::symlink_metadata(src).is_err() {
        return None;
    }
    match crate::input::open_regular(Path::new(src)) {
        Err(
            e @ (crate::input::InputError::NotRegular(_) | crate::input::InputError::Directory),
        ) => Some(Diagnostic::new(
            arg_pos(step, "src"),
            format!("`src: {src}` on the controller {e}"),
        )),
        _ => None,
    }
}

/// A templated `delegate_to:` rendered for one host: an undefined variable, or a result that
/// names no host of the inventory. (A literal one is checked once, above.)
fn delegate_problem(step: &Step, inv: &Inventory, ctx: &template::Vars) -> Option<Diagnostic> {
    let (text, pos) = step.delegate_to.as_ref()?;
    if !(text.contains("{{") || text.contains("{%")) {
        return None;
    }
    match template::render_str(text, ctx, pos) {
        Err(d) => Some(d),
        Ok(name) if inv.host(name.trim()).is_none() => Some(
            Diagnostic::new(
                pos.clone(),
                format!(
                    "`delegate_to: {text}` is `{}` here, which names no host of the inventory",
                    name.trim()
                ),
            )
            .suggest(name.trim(), inv.host_names()),
        ),
        Ok(_) => None,
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
    action_arg_pos(&step.action, name)
}

fn action_arg_pos(action: &Action, name: &str) -> Pos {
    action
        .arg_pos
        .iter()
        .find(|(n, _)| n == name)
        .map_or(action.pos.clone(), |(_, p)| p.clone())
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
    undefined_name(d).is_some_and(|root| runtime.iter().any(|r| r == root))
}

/// The variable an "undefined variable `x.y`" error is about (`x`).
fn undefined_name(d: &Diagnostic) -> Option<&str> {
    let rest = d.message.strip_prefix("undefined variable `")?;
    let var = rest.split('`').next().unwrap_or("");
    var.split(['.', '[']).next()
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

#[cfg(test)]
mod tests {
    use super::asks_if_defined;

    #[test]
    fn a_definedness_test_is_not_an_undefined_variable() {
        assert!(asks_if_defined("foo is defined", "foo"));
        assert!(asks_if_defined("x and foo.bar is not defined", "foo"));
        assert!(asks_if_defined("(foo is undefined)", "foo"));
        assert!(!asks_if_defined("foo == 1", "foo"));
        assert!(!asks_if_defined("xfoo is defined", "foo"));
        assert!(!asks_if_defined("a.foo is defined", "foo"));
    }
}
