//! Reading and validating playbook files (structure, modules, arguments, expressions,
//! imports). Checks that need the inventory or the templates live in `crate::check`.

use std::path::{Path, PathBuf};

use super::{Action, AfterRun, Batch, Expr, OnFailure, Play, Playbook, Step, Undo};
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::inventory::Var;
use crate::modules::spec::{self, ArgType, ModuleSpec};
use crate::template;
use crate::yaml::{self, Node, Value};

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "serial",
    "max_fail_percentage",
    "defaults",
    "vars",
    "vars_files",
    "steps",
    "handlers",
    "tags",
    "become",
    "become_user",
    "on_failure",
    "after_run",
];
const STEP_KEYS: &[&str] = &[
    "name",
    "when",
    "register",
    "tags",
    "timeout",
    "retries",
    "delay",
    "until",
    "delegate_to",
    "run_once",
    "notify",
    "undo",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "become",
    "become_user",
    "phase",
    "window",
    "loop",
    "loop_control",
];
const HANDLER_EXTRA_KEYS: &[&str] = &["listen"];
/// Ansible habits that mean something else (or nothing) here, with what to write instead.
const ANSIBLE_HINTS: &[(&str, &str)] = &[
    ("tasks", "cutover calls them `steps`"),
    (
        "gather_facts",
        "facts are gathered on demand; remove this key",
    ),
    (
        "roles",
        "cutover has no roles; use `import_playbook` and templates",
    ),
    (
        "include_tasks",
        "write `include_steps: FILE` (a file that is a list of steps)",
    ),
    (
        "import_tasks",
        "write `include_steps: FILE` (a file that is a list of steps)",
    ),
    (
        "with_items",
        "write `loop:` (Ansible's newer keyword): `loop: [a, b]` or `loop: \"{{ items }}\"`",
    ),
    ("hosts_file", "use `hosts:` with a host pattern"),
];

/// Load a playbook and everything it imports. Problems are added to `diags`.
pub fn load(path: &Path, diags: &mut Diagnostics) -> Option<Playbook> {
    let mut plays = Vec::new();
    let mut stack = Vec::new();
    load_into(path, None, &mut plays, &mut stack, diags);
    Some(Playbook {
        path: path.to_path_buf(),
        plays,
    })
}

pub fn load_checked(path: &Path) -> Result<Playbook, Diagnostics> {
    let mut diags = Diagnostics::default();
    let pb = load(path, &mut diags);
    match pb {
        Some(pb) if diags.is_empty() => Ok(pb),
        _ => Err(diags),
    }
}

fn load_into(
    path: &Path,
    imported_at: Option<&Pos>,
    plays: &mut Vec<Play>,
    stack: &mut Vec<PathBuf>,
    diags: &mut Diagnostics,
) {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        let chain: Vec<String> = stack
            .iter()
            .chain([&canonical])
            .map(|p| p.display().to_string())
            .collect();
        let pos = imported_at.cloned().unwrap_or_else(|| Pos::start(path));
        diags.push(Diagnostic::new(
            pos,
            format!("import cycle: {}", chain.join(" → ")),
        ));
        return;
    }
    let root = match yaml::load_file(path) {
        Ok((_, root)) => root,
        Err(d) => {
            diags.push(match imported_at {
                Some(at) if d.pos.line == 0 => Diagnostic::new(
                    at.clone(),
                    format!("cannot import {}: {}", path.display(), d.message),
                ),
                _ => d,
            });
            return;
        }
    };
    let items = match &root.value {
        Value::Seq(items) => items,
        Value::Map(entries) => {
            let keys: Vec<String> = entries.iter().map(|(k, _)| k.key_text()).collect();
            let d = Diagnostic::new(
                root.pos.clone(),
                "expected a playbook (a list of plays), found a mapping",
            );
            diags.push(
                if keys.iter().any(|k| k == "groups") || keys.iter().any(|k| k == "connection") {
                    d.with_help("this looks like an inventory; pass it with -i")
                } else if keys.iter().any(|k| k == "hosts" || k == "steps") {
                    d.with_help("start the play with `- ` to make it an item of the list")
                } else {
                    d
                },
            );
            return;
        }
        other => {
            diags.push(Diagnostic::new(
                root.pos.clone(),
                format!(
                    "expected a playbook (a list of plays), found {}",
                    other.kind()
                ),
            ));
            return;
        }
    };
    stack.push(canonical);
    for item in items {
        if let Value::Map(entries) = &item.value {
            if let Some((k, v)) = entries
                .iter()
                .find(|(k, _)| k.key_text() == "import_playbook")
            {
                if entries.len() > 1 {
                    let other = entries
                        .iter()
                        .find(|(k, _)| k.key_text() != "import_playbook")
                        .map(|(k, _)| k);
                    diags.push(Diagnostic::new(
                        other.map_or(k.pos.clone(), |o| o.pos.clone()),
                        "`import_playbook` stands alone in its list item; put other keys in a play",
                    ));
                }
                if let Some(rel) = decode::string(v, "import_playbook", diags) {
                    let base = path.parent().unwrap_or(Path::new("."));
                    load_into(&base.join(rel), Some(&v.pos), plays, stack, diags);
                }
                continue;
            }
        }
        if let Some(play) = read_play(path, item, diags) {
            plays.push(play);
        }
    }
    stack.pop();
}

/// `after_run: succeeded|failed|always` (see `AfterRun`).
fn read_after_run(n: &Node, diags: &mut Diagnostics) -> Option<AfterRun> {
    let word = n.as_str();
    if let Some(a) = word.and_then(AfterRun::from_word) {
        return Some(a);
    }
    let found = match word {
        Some(w) => format!("`{}`", crate::diag::one_line(w)),
        None => n.value.kind().to_string(),
    };
    let d = Diagnostic::new(
        n.pos.clone(),
        format!("`after_run` is `succeeded`, `failed` or `always` (when the play runs, once the run has ended), not {found}"),
    );
    diags.push(match word {
        Some(w) => d.suggest(w, AfterRun::WORDS.iter().copied()),
        None => d,
    });
    None
}

fn read_play(file: &Path, node: &Node, diags: &mut Diagnostics) -> Option<Play> {
    hint_ansible_keys(node, diags);
    let f = fields_after_hints(node, "play", PLAY_KEYS, diags)?;
    let hosts_node = f.require("hosts", "play", diags);
    let hosts = hosts_node
        .and_then(|n| decode::string(n, "hosts", diags))
        .unwrap_or_default();
    let name = f
        .str("name", diags)
        .unwrap_or_else(|| format!("play on {hosts}"));
    let mut play = Play {
        name,
        pos: node.pos.clone(),
        file: file.to_path_buf(),
        hosts,
        hosts_pos: hosts_node.map_or(node.pos.clone(), |n| n.pos.clone()),
        serial: f
            .get("serial")
            .map(|n| read_serial(n, diags))
            .unwrap_or_default(),
        max_fail_percentage: f
            .int("max_fail_percentage", 0, 100, diags)
            .map(|v| v as u32),
        defaults: f
            .get("defaults")
            .map(|n| vars(n, "play defaults", diags))
            .unwrap_or_default(),
        vars: f
            .get("vars")
            .map(|n| vars(n, "play vars", diags))
            .unwrap_or_default(),
        vars_files: Vec::new(),
        file_vars: Vec::new(),
        steps: Vec::new(),
        blocks: Vec::new(),
        handlers: Vec::new(),
        tags: f
            .str_list("tags", diags)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
        become_root: f.bool("become", diags),
        become_user: become_user(&f, diags),
        on_failure: match f.get("on_failure") {
            None => OnFailure::Stop,
            Some(n) => match n.as_str() {
                Some("stop") => OnFailure::Stop,
                Some("unwind") => OnFailure::Unwind,
                _ => {
                    diags.push(
                        Diagnostic::new(n.pos.clone(), "`on_failure` is `stop` (leave hosts as they are) or `unwind` (undo this run's changes, newest first)"),
                    );
                    OnFailure::Stop
                }
            },
        },
        after_run: f.get("after_run").and_then(|n| read_after_run(n, diags)),
    };
    if let Some(n) = f.get("vars_files") {
        (play.vars_files, play.file_vars) = super::vars_files::read(file, n, diags);
    }
    if let Some(steps) = f.require("steps", "play", diags) {
        let items = decode::sequence(steps, "steps", diags).unwrap_or_default();
        let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let mut reader = super::include::StepsReader::new(canonical, file);
        play.steps = reader.read_steps(items, file, diags);
        play.blocks = reader.blocks;
    }
    if let Some(handlers) = f.get("handlers") {
        play.handlers = read_handlers(handlers, diags);
    }
    check_handler_names(&play, diags);
    check_handler_references(&play, diags);
    check_register_names(&play, diags);
    Some(play)
}

/// A play's `handlers:`: each one named step (no loop, include or block).
fn read_handlers(handlers: &Node, diags: &mut Diagnostics) -> Vec<Step> {
    let mut out = Vec::new();
    for h in decode::sequence(handlers, "handlers", diags).unwrap_or_default() {
        if let Some(key) = ["include_steps", "block", "rescue", "always"]
            .into_iter()
            .find(|k| super::include::has_key(h, k))
        {
            diags.push(Diagnostic::new(
                h.pos.clone(),
                format!("`{key}:` groups steps of a `steps:` list; a handler is one named step"),
            ));
            continue;
        }
        if let Some(step) = read_step(h, true, diags) {
            if let Some(lp) = &step.loop_ {
                diags.push(Diagnostic::new(
                    lp.pos.clone(),
                    "a handler runs once when notified; `loop:` is for steps",
                ));
            }
            if step.name.is_none() {
                diags.push(Diagnostic::new(
                    step.pos.clone(),
                    "a handler needs a `name:` for `notify:` to refer to",
                ));
            }
            out.push(step);
        }
    }
    out
}

pub(super) fn vars(node: &Node, what: &str, diags: &mut Diagnostics) -> Vec<Var> {
    decode::variables(node, what, diags)
        .into_iter()
        .map(|(name, value, pos)| Var { name, value, pos })
        .collect()
}

/// `Fields::new`, minus its "unknown key" report for the Ansible keys `hint_ansible_keys`
/// already explained: one mistake, one error.
fn fields_after_hints<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&str],
    diags: &mut Diagnostics,
) -> Option<Fields<'a>> {
    let mut local = Diagnostics::default();
    let f = Fields::new(node, what, allowed, &mut local);
    for d in local.items {
        let hinted = ANSIBLE_HINTS
            .iter()
            .any(|(k, _)| d.message.starts_with(&format!("unknown key `{k}` ")));
        if !hinted {
            diags.push(d);
        }
    }
    f
}

fn hint_ansible_keys(node: &Node, diags: &mut Diagnostics) {
    if let Value::Map(entries) = &node.value {
        for (k, _) in entries {
            if let Some((_, hint)) = ANSIBLE_HINTS.iter().find(|(key, _)| *key == k.key_text()) {
                diags.push(
                    Diagnostic::new(
                        k.pos.clone(),
                        format!("`{}` is not a cutover key", k.key_text()),
                    )
                    .with_help(*hint),
                );
            }
        }
    }
}

/// `serial: 1`, `serial: "50%"`, or a list of those for growing batches (`[1, "50%", "100%"]`).
fn read_serial(node: &Node, diags: &mut Diagnostics) -> Vec<Batch> {
    let one = |n: &Node, diags: &mut Diagnostics| -> Option<Batch> {
        match &n.value {
            Value::Int(i) if *i >= 1 => Some(Batch::Count(*i as u32)),
            Value::Str(s) if s.ends_with('%') => {
                match s.trim_end_matches('%').trim().parse::<u32>() {
                    Ok(p) if (1..=100).contains(&p) => Some(Batch::Percent(p)),
                    _ => {
                        diags.push(Diagnostic::new(
                            n.pos.clone(),
                            format!("`serial: {s}`: a percentage must be from 1% to 100%"),
                        ));
                        None
                    }
                }
            }
            _ => {
                diags.push(
                    Diagnostic::new(n.pos.clone(), "`serial` takes a positive number of hosts, a percentage like \"50%\", or a list of those")
                        .with_help("for one host at a time write `serial: 1`"),
                );
                None
            }
        }
    };
    match &node.value {
        Value::Seq(items) => items.iter().filter_map(|n| one(n, diags)).collect(),
        _ => one(node, diags).into_iter().collect(),
    }
}

/// The one module key of a step (every other key is a step keyword): an unknown key, no module
/// or two modules are reported.
fn step_module<'a>(
    node: &Node,
    entries: &[(&'a Node, &'a Node)],
    what: &str,
    handler: bool,
    diags: &mut Diagnostics,
) -> Option<(&'a Node, &'a Node)> {
    // Split the step's keys into the common ones and the one module key.
    let mut modules: Vec<(&Node, &Node)> = Vec::new();
    for &(k, v) in entries {
        let key = k.key_text();
        if STEP_KEYS.contains(&key.as_str())
            || (handler && HANDLER_EXTRA_KEYS.contains(&key.as_str()))
        {
            continue;
        }
        if spec::find(&key).is_some() {
            modules.push((k, v));
        } else if !ANSIBLE_HINTS.iter().any(|(h, _)| *h == key) {
            let candidates: Vec<&str> = spec::names().chain(STEP_KEYS.iter().copied()).collect();
            diags.push(
                Diagnostic::new(
                    k.pos.clone(),
                    format!("unknown key `{key}` in {what}: not a module nor a step keyword"),
                )
                .suggest(&key, candidates)
                .with_help_if_none(format!(
                    "modules: {}",
                    spec::names().collect::<Vec<_>>().join(", ")
                )),
            );
            return None;
        }
    }
    match modules.as_slice() {
        [one] => Some(*one),
        [] => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!(
                    "{what} names no module; expected one of: {}",
                    spec::names().collect::<Vec<_>>().join(", ")
                ),
            ));
            None
        }
        [_, second, ..] => {
            diags.push(Diagnostic::new(
                second.0.pos.clone(),
                format!(
                    "{what} names two modules, `{}` and `{}`; a step runs exactly one",
                    modules[0].0.key_text(),
                    second.0.key_text()
                ),
            ));
            None
        }
    }
}

pub(crate) fn read_step(node: &Node, handler: bool, diags: &mut Diagnostics) -> Option<Step> {
    let what = if handler { "handler" } else { "step" };
    hint_ansible_keys(node, diags);
    let entries = decode::mapping(node, what, diags)?;
    let (module_key, module_node) = step_module(node, &entries, what, handler, diags)?;
    let action = read_action(module_key, module_node, diags)?;

    let mut allowed: Vec<&str> = STEP_KEYS.to_vec();
    if handler {
        allowed.extend(HANDLER_EXTRA_KEYS);
    }
    allowed.push(module_key_str(module_key));
    let f = fields_after_hints(node, what, &allowed, diags)?;
    let expr =
        |key: &str, diags: &mut Diagnostics| f.get(key).and_then(|n| read_expr(n, key, diags));
    let undo = match f.get("undo") {
        None => Undo::Module,
        Some(n) => read_undo(n, diags)?,
    };
    let register = f.str("register", diags);
    if let (Some(r), Some(n)) = (&register, f.get("register")) {
        check_register_name(r, &n.pos, diags);
    }
    Some(Step {
        name: f.str("name", diags),
        name_pos: f.get("name").map(|n| n.pos.clone()),
        pos: node.pos.clone(),
        when: expr("when", diags),
        register,
        tags: f
            .str_list("tags", diags)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
        timeout_secs: f.int("timeout", 1, 7 * 24 * 3600, diags).map(|v| v as u64),
        retries: f.int("retries", 0, 10_000, diags).unwrap_or(0) as u32,
        delay_secs: f.int("delay", 0, 3600, diags).unwrap_or(5) as u64,
        until: expr("until", diags),
        delegate_to: f
            .get("delegate_to")
            .and_then(|n| decode::string(n, "delegate_to", diags).map(|s| (s, n.pos.clone()))),
        run_once: f.bool("run_once", diags).unwrap_or(false),
        notify: f.str_list("notify", diags).unwrap_or_default(),
        undo,
        changed_when: expr("changed_when", diags),
        failed_when: expr("failed_when", diags),
        ignore_errors: f.bool("ignore_errors", diags).unwrap_or(false),
        become_root: f.bool("become", diags),
        become_user: become_user(&f, diags),
        phase: window_phase(&f, diags),
        window_mark: window_mark(&f, diags),
        loop_: super::loops::read_loop(&f, diags),
        item: None,
        scope_vars: Vec::new(),
        inherited_when: Vec::new(),
        included_from: Vec::new(),
        blocks: Vec::new(),
        listen: f
            .str_list("listen", diags)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
        action,
    })
}

/// `phase:` names the maintenance-window phase a step counts in (see `engine::window`), for
/// steps the module alone does not tell (a start that migrates the schema).
fn window_phase(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<&'static str> {
    let p = f.str("phase", diags)?;
    let known = super::WINDOW_PHASES;
    match known.iter().find(|k| **k == p) {
        Some(k) => Some(k),
        None => {
            let pos = f.get("phase")?.pos.clone();
            diags.push(
                Diagnostic::new(
                    pos,
                    format!(
                        "`phase: {}` is not a phase of the maintenance window; expected one of: {}",
                        crate::diag::one_line(&p),
                        known.join(", ")
                    ),
                )
                .suggest(&p, known.iter().copied()),
            );
            None
        }
    }
}

/// `window: start|end` marks where a maintenance window starts or ends in a run without a
/// maintenance page (a rehearsal on staging), so its journal is measured as a window too.
fn window_mark(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<&'static str> {
    let m = f.str("window", diags)?;
    match m.as_str() {
        "start" => Some("start"),
        "end" => Some("end"),
        _ => {
            let pos = f.get("window")?.pos.clone();
            diags.push(
                Diagnostic::new(
                    pos,
                    format!(
                        "`window: {}` is not a window mark; expected `start` or `end`",
                        crate::diag::one_line(&m)
                    ),
                )
                .suggest(&m, ["start", "end"]),
            );
            None
        }
    }
}

/// `become_user:` goes to sudo's `-u`: a user name or `#UID` (`ssh_args`), nothing that
/// could read as an option.
pub(super) fn become_user(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<String> {
    let u = f.str("become_user", diags)?;
    match crate::ssh_args::become_user_problem(&u) {
        None => Some(u),
        Some(why) => {
            let pos = f.get("become_user")?.pos.clone();
            diags.push(Diagnostic::new(
                pos,
                format!("`become_user: {}` {why}", crate::diag::one_line(&u)),
            ));
            None
        }
    }
}

/// A registered result becomes a variable of that name; one of the names the engine sets
/// itself (`context_names::RESERVED`) would hide it, or be hidden by it.
fn check_register_name(r: &str, pos: &Pos, diags: &mut Diagnostics) {
    if !decode::is_identifier(r) {
        diags.push(Diagnostic::new(
            pos.clone(),
            format!("`register: {r}` must be a variable name (letters, digits, `_`)"),
        ));
    } else if crate::context_names::RESERVED.contains(&r) {
        diags.push(
            Diagnostic::new(
                pos.clone(),
                format!("`register: {r}` uses a name cutover reserves for its own variables"),
            )
            .with_help(format!(
                "reserved: {}; choose another name, e.g. `{r}_result`",
                crate::context_names::RESERVED.join(", ")
            )),
        );
    }
}

fn module_key_str(k: &Node) -> &'static str {
    spec::find(&k.key_text()).map_or("", |m| m.name)
}

/// `undo: irreversible`, or `undo: { module: {args} }`.
fn read_undo(node: &Node, diags: &mut Diagnostics) -> Option<Undo> {
    match &node.value {
        Value::Str(s) if s == "irreversible" => Some(Undo::Irreversible(node.pos.clone())),
        Value::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            if spec::find(&k.key_text()).is_none() {
                diags.push(
                    Diagnostic::new(
                        k.pos.clone(),
                        format!("`undo:` names unknown module `{}`", k.key_text()),
                    )
                    .suggest(&k.key_text(), spec::names()),
                );
                return None;
            }
            read_action(k, v, diags).map(|a| Undo::Custom(Box::new(a)))
        }
        _ => {
            diags.push(
                Diagnostic::new(
                    node.pos.clone(),
                    "`undo:` takes one module with its arguments, or the word `irreversible`",
                )
                .with_help("for example `undo: { service: { name: wiki, state: started } }`"),
            );
            None
        }
    }
}

pub(super) fn read_expr(node: &Node, key: &str, diags: &mut Diagnostics) -> Option<Expr> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!(
                    "`{key}` takes an expression (a string), found {}",
                    other.kind()
                ),
            ));
            return None;
        }
    };
    let trimmed = text.trim();
    if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
        diags.push(
            Diagnostic::new(
                node.pos.clone(),
                format!("`{key}` is already an expression; it must not be wrapped in {{{{ }}}}"),
            )
            .with_help(format!(
                "write `{key}: {}`",
                trimmed
                    .trim_start_matches("{{")
                    .trim_end_matches("}}")
                    .trim()
            )),
        );
        return None;
    }
    if let Err(d) = template::check_expression(&text, &node.pos) {
        diags.push(Diagnostic {
            message: format!("`{key}` is not a valid expression: {}", d.message),
            ..d
        });
        return None;
    }
    Some(Expr {
        text,
        pos: node.pos.clone(),
    })
}

/// A module's arguments, checked against its spec.
fn read_action(key: &Node, node: &Node, diags: &mut Diagnostics) -> Option<Action> {
    let spec = spec::find(&key.key_text())?;
    let mut action = Action {
        module: spec.name.to_string(),
        pos: key.pos.clone(),
        args: serde_json::Map::new(),
        arg_pos: Vec::new(),
    };
    match (&node.value, spec.free_form) {
        (Value::Str(s), Some(arg)) => {
            check_template_syntax(s, node, diags);
            action
                .args
                .insert(arg.to_string(), serde_json::Value::String(s.clone()));
            action.arg_pos.push((arg.to_string(), node.pos.clone()));
            return Some(action);
        }
        (Value::Map(_), _) | (Value::Null, _) => {}
        (other, _) => {
            let d = Diagnostic::new(
                node.pos.clone(),
                format!(
                    "module `{}` takes a mapping of arguments, found {}",
                    spec.name,
                    other.kind()
                ),
            );
            diags.push(match spec.args.first() {
                Some(a) => d.with_help(format!(
                    "for example `{}: {{ {}: ... }}`",
                    spec.name, a.name
                )),
                None => d,
            });
            return None;
        }
    }
    let names: Vec<&str> = spec.args.iter().map(|a| a.name).collect();
    let f = Fields::new(
        node,
        &format!("arguments of `{}`", spec.name),
        &names,
        diags,
    )?;
    let mut ok = true;
    for a in spec.args {
        match f.get(a.name) {
            None if a.required => {
                diags.push(Diagnostic::new(
                    key.pos.clone(),
                    format!("module `{}` needs argument `{}`", spec.name, a.name),
                ));
                ok = false;
            }
            None => {}
            Some(v) => {
                if check_arg(spec, a.name, a.ty, a.choices, v, diags) {
                    action.args.insert(a.name.to_string(), v.to_json());
                    action.arg_pos.push((a.name.to_string(), v.pos.clone()));
                } else {
                    ok = false;
                }
            }
        }
    }
    let one_of_ok = check_one_of(spec, &f, key, diags);
    (ok && one_of_ok).then_some(action)
}

fn check_one_of(spec: &ModuleSpec, f: &Fields<'_>, key: &Node, diags: &mut Diagnostics) -> bool {
    let mut ok = true;
    for group in spec.one_of {
        let given: Vec<&str> = group.iter().copied().filter(|a| f.has(a)).collect();
        if given.len() > 1 {
            diags.push(Diagnostic::new(
                key.pos.clone(),
                format!(
                    "module `{}` takes only one of {}, found {}",
                    spec.name,
                    group.join(", "),
                    given.join(" and ")
                ),
            ));
            ok = false;
        }
        // `name` of package may be absent when upgrading everything, and the like: zero given is
        // reported only when the spec has no other way to say what to do.
        if given.is_empty() {
            diags.push(Diagnostic::new(
                key.pos.clone(),
                format!("module `{}` needs one of: {}", spec.name, group.join(", ")),
            ));
            ok = false;
        }
    }
    for group in spec.any_of {
        if !group.iter().any(|a| f.has(a)) {
            diags.push(Diagnostic::new(
                key.pos.clone(),
                format!(
                    "module `{}` needs at least one of: {}",
                    spec.name,
                    group.join(", ")
                ),
            ));
            ok = false;
        }
    }
    ok
}

fn check_arg(
    spec: &ModuleSpec,
    name: &str,
    ty: ArgType,
    choices: &[&str],
    v: &Node,
    diags: &mut Diagnostics,
) -> bool {
    let what = format!("{}.{}", spec.name, name);
    if let Value::Str(s) = &v.value {
        if s.contains("{{") || s.contains("{%") {
            return check_template_syntax(s, v, diags);
        }
    }
    let fail = |diags: &mut Diagnostics, expected: &str| {
        diags.push(Diagnostic::new(
            v.pos.clone(),
            format!("`{what}` expects {expected}, found {}", v.value.kind()),
        ));
        false
    };
    match ty {
        ArgType::Str | ArgType::Path => match &v.value {
            Value::Str(s) => {
                if !choices.is_empty() && !choices.contains(&s.as_str()) {
                    diags.push(
                        Diagnostic::new(
                            v.pos.clone(),
                            format!(
                                "`{what}` must be one of: {}; found `{s}`",
                                choices.join(", ")
                            ),
                        )
                        .suggest(s, choices.iter().copied()),
                    );
                    return false;
                }
                if ty == ArgType::Path && s.is_empty() {
                    diags.push(Diagnostic::new(
                        v.pos.clone(),
                        format!("`{what}` is an empty path"),
                    ));
                    return false;
                }
                true
            }
            // Numbers where text is expected (a version `2.0` or a uid) are almost always meant
            // as text; refusing them would only annoy. Choices still have to match.
            Value::Int(_) | Value::Float(_) if choices.is_empty() && ty == ArgType::Str => true,
            _ => fail(diags, "a string"),
        },
        ArgType::Int => match &v.value {
            Value::Int(_) => true,
            _ => fail(diags, "an integer"),
        },
        ArgType::Bool => decode::boolean(v, &what, diags).is_some(),
        ArgType::StrList => decode::string_list(v, &what, diags).is_some(),
        ArgType::MailList => check_formed_items(spec, name, ty, v, diags),
        ArgType::Map => decode::mapping(v, &what, diags).is_some(),
        ArgType::Mode => match &v.value {
            Value::Str(s) if valid_mode(s) => true,
            Value::Str(s) => {
                diags.push(Diagnostic::new(v.pos.clone(), format!("`{what}`: `{s}` is not a file mode; expected octal like \"0644\" or symbolic like \"u=rw,g=r\"")));
                false
            }
            // `mode: 0644` arrives as the float 644.0 (a leading zero is not an integer in
            // YAML 1.2), `mode: 644` as an integer: same mistake, same help.
            Value::Int(_) | Value::Float(_) => {
                let i = match v.value {
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e9 => format!("{}", f as i64),
                    Value::Float(f) => f.to_string(),
                    _ => unreachable!(),
                };
                diags.push(
                    Diagnostic::new(v.pos.clone(), format!("`{what}` is the number {i}, not an octal mode"))
                        .with_help(format!("quote it: mode: \"0{i}\" (unquoted 0644 is the decimal number 644 in YAML 1.2)")),
                );
                false
            }
            _ => fail(diags, "a quoted mode like \"0644\""),
        },
        ArgType::OctalMode
        | ArgType::CommitId
        | ArgType::RepoUrl
        | ArgType::AbsPath
        | ArgType::WebUrl => check_formed_text(spec, name, ty, choices, v, diags),
        ArgType::Address => match &v.value {
            Value::Str(s) => match crate::ssh_args::address_problem(s) {
                None => true,
                Some(why) => {
                    diags.push(Diagnostic::new(
                        v.pos.clone(),
                        format!(
                            "`{what}`: `{}` is not a usable address: it {why}",
                            crate::diag::one_line(s)
                        ),
                    ));
                    false
                }
            },
            _ => fail(diags, "a host name or IP address"),
        },
        ArgType::Expr => read_expr(v, &what, diags).is_some(),
        ArgType::ExprList => match &v.value {
            Value::Seq(items) => items.iter().all(|i| read_expr(i, &what, diags).is_some()),
            _ => read_expr(v, &what, diags).is_some(),
        },
        ArgType::Volumes => crate::modules::check_volumes(v, &what, diags),
        ArgType::Any => true,
    }
}

/// A list of texts with a form, or one (`ArgType::MailList`): each item as one.
fn check_formed_items(
    spec: &ModuleSpec,
    name: &str,
    ty: ArgType,
    v: &Node,
    diags: &mut Diagnostics,
) -> bool {
    match &v.value {
        // Every item checked (each bad one reported), not only up to the first.
        Value::Seq(items) => {
            let oks: Vec<bool> = items
                .iter()
                .map(|i| check_formed_text(spec, name, ty, &[], i, diags))
                .collect();
            oks.into_iter().all(|ok| ok)
        }
        _ => check_formed_text(spec, name, ty, &[], v, diags),
    }
}

/// An argument whose text has a form (`ArgType::text_problem`): an octal mode, a commit id.
fn check_formed_text(
    spec: &ModuleSpec,
    name: &str,
    ty: ArgType,
    choices: &[&str],
    v: &Node,
    diags: &mut Diagnostics,
) -> bool {
    let what = format!("{}.{}", spec.name, name);
    let expected = match ty {
        ArgType::OctalMode => "a quoted octal mode like \"0644\"",
        ArgType::CommitId => "a quoted commit id (40 hexadecimal digits)",
        ArgType::RepoUrl => "a repository URL or path",
        ArgType::WebUrl => "an http:// or https:// URL",
        ArgType::MailList => "a mail address or a list of them",
        _ => "an absolute path",
    };
    match &v.value {
        Value::Str(s) => match ty.text_problem(s) {
            None => true,
            Some(why) => {
                diags.push(Diagnostic::new(v.pos.clone(), format!("`{what}`: {why}")));
                false
            }
        },
        // An unquoted mode is a number: the same help as for `mode:` of the files modules.
        Value::Int(_) | Value::Float(_) if ty == ArgType::OctalMode => {
            check_arg(spec, name, ArgType::Mode, choices, v, diags)
        }
        _ => {
            diags.push(Diagnostic::new(
                v.pos.clone(),
                format!("`{what}` expects {expected}, found {}", v.value.kind()),
            ));
            false
        }
    }
}

fn valid_mode(s: &str) -> bool {
    let octal = (3..=4).contains(&s.len()) && s.chars().all(|c| ('0'..='7').contains(&c));
    let symbolic = !s.is_empty()
        && s.split(',').all(|part| {
            let (who, rest) = part.split_at(part.find(['=', '+', '-']).unwrap_or(part.len()));
            who.chars().all(|c| "ugoa".contains(c))
                && !rest.is_empty()
                && rest[1..].chars().all(|c| "rwxXst".contains(c))
        });
    octal || symbolic
}

fn check_template_syntax(s: &str, v: &Node, diags: &mut Diagnostics) -> bool {
    match template::check_syntax(s, &v.pos) {
        Ok(()) => true,
        Err(d) => {
            diags.push(Diagnostic {
                message: format!("invalid template in value: {}", d.message),
                ..d
            });
            false
        }
    }
}

/// `notify:` runs the handler a name stands for; two handlers with one name would leave that
/// to file order. (Several handlers may `listen:` to one topic: that is what it is for.)
fn check_handler_names(play: &Play, diags: &mut Diagnostics) {
    let mut seen: Vec<(&str, &Pos)> = Vec::new();
    for h in &play.handlers {
        let (Some(name), Some(pos)) = (&h.name, &h.name_pos) else {
            continue;
        };
        match seen.iter().find(|(n, _)| n == name) {
            Some((_, first)) => diags.push(
                Diagnostic::new(
                    pos.clone(),
                    format!("two handlers are named `{name}` in this play"),
                )
                .with_help(format!(
                    "the first is at line {}; rename one, or give both one `listen:` topic",
                    first.line
                )),
            ),
            None => seen.push((name, pos)),
        }
    }
}

fn check_handler_references(play: &Play, diags: &mut Diagnostics) {
    let names: Vec<&str> = play
        .handlers
        .iter()
        .flat_map(|h| {
            h.name
                .iter()
                .map(String::as_str)
                .chain(h.listen.iter().map(String::as_str))
        })
        .collect();
    for step in &play.steps {
        for (n, pos) in &step.notify {
            if !names.contains(&n.as_str()) {
                diags.push(
                    Diagnostic::new(
                        pos.clone(),
                        format!("`notify: {n}` names no handler of this play"),
                    )
                    .suggest(n, names.iter().copied()),
                );
            }
        }
    }
}

/// A registered name that shadows a variable name used for something else is a classic
/// source of confusion; a name registered twice in a play is reported.
fn check_register_names(play: &Play, diags: &mut Diagnostics) {
    let mut seen: Vec<(&str, &Pos)> = Vec::new();
    for step in &play.steps {
        if let Some(r) = &step.register {
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == r) {
                diags.push(
                    Diagnostic::new(
                        step.pos.clone(),
                        format!("`register: {r}` is used twice in this play"),
                    )
                    .with_help(format!(
                        "the first is at line {}; give each result its own name",
                        first.line
                    )),
                );
            }
            seen.push((r, &step.pos));
        }
    }
}
