//! Templates (tera) for config files and for `{{ }}` in playbook values.
//!
//! A template sees the host's resolved variables at top level, plus:
//! - `inventory_hostname`: the host's name; `host`: `{name, address, groups}`;
//! - `groups`: every group's host names (`groups.app_nodes`);
//! - `hostvars`: every host's variables and `address` (`hostvars.db1.address`).
//!
//! Undefined variables are errors, reported with the template, line, column and name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::diag::{Diagnostic, Pos};
use crate::inventory::vars::{self, Layers, Resolved};
use crate::inventory::Inventory;

/// The names the engine itself puts into a step's context, next to the host's variables.
/// Every place that inserts one uses these constants, and `RESERVED` lists them all, so a
/// `register:` (which the engine inserts after them) cannot silently replace one.
pub mod names {
    pub const INVENTORY_HOSTNAME: &str = "inventory_hostname";
    pub const HOST: &str = "host";
    pub const GROUPS: &str = "groups";
    pub const HOSTVARS: &str = "hostvars";
    /// `run.id`: the run's id (engine, plan).
    pub const RUN: &str = "run";
    /// Gathered facts, when a step refers to them (engine, plan).
    pub const FACTS: &str = "facts";
    /// The step's own result, in `changed_when`, `failed_when` and `until`.
    pub const RESULT: &str = "result";
    pub const RESERVED: &[&str] = &[
        INVENTORY_HOSTNAME,
        HOST,
        GROUPS,
        HOSTVARS,
        RUN,
        FACTS,
        RESULT,
    ];
}

/// Everything a template can see for one host.
pub fn host_context(
    inv: &Inventory,
    host: &str,
    resolved: &Resolved,
    everyone: &BTreeMap<String, Resolved>,
) -> tera::Context {
    host_context_with(inv, host, resolved, &Shared::new(inv, everyone))
}

/// What every host's context shares in a play: `groups` and `hostvars`. Building them costs
/// O(hosts × groups), so a run builds them once per play, not once per step and host.
pub struct Shared {
    groups: J,
    hostvars: J,
}

impl Shared {
    pub fn new(inv: &Inventory, everyone: &BTreeMap<String, Resolved>) -> Shared {
        Shared {
            groups: groups_json(inv),
            hostvars: hostvars(inv, everyone),
        }
    }
}

/// `groups`: each group's hosts.
fn groups_json(inv: &Inventory) -> J {
    J::Object(
        inv.groups
            .keys()
            .map(|g| {
                let hosts: Vec<J> = inv.group_hosts(g).into_iter().map(J::from).collect();
                (g.clone(), J::from(hosts))
            })
            .collect(),
    )
}

/// Variables whose values are templates (`url: "http://{{ host.address }}:{{ port }}"`) are
/// rendered against the host's other variables, as deep as they nest. A value that reads
/// what exists only while the run goes (registered results, facts, `run`) is left as it is;
/// the step using it renders it again then (`render_args`).
pub fn expand_var_templates(
    inv: &Inventory,
    host: &str,
    resolved: &mut Resolved,
    groups: &J,
) -> Result<(), Diagnostic> {
    const DEPTH: usize = 10;
    if !resolved.vars.values().any(|(v, _)| holds_template(v)) {
        return Ok(());
    }
    for _ in 0..DEPTH {
        let ctx = own_context(inv, host, resolved, groups);
        let mut changed = false;
        for (v, origin) in resolved.vars.values_mut() {
            if !holds_template(v) {
                continue;
            }
            match render_json_strings(v, &ctx, origin.pos()) {
                Ok(new) if new != *v => {
                    *v = new;
                    changed = true;
                }
                Ok(_) => {}
                // Not known before the run (a registered result, facts): left for the step.
                Err(d) if d.message.contains("undefined variable") => {}
                Err(d) => return Err(d),
            }
        }
        if !changed {
            return Ok(());
        }
    }
    let names: Vec<&str> = resolved
        .vars
        .iter()
        .filter(|(_, (v, _))| holds_template(v))
        .map(|(k, _)| k.as_str())
        .collect();
    let pos = resolved
        .vars
        .values()
        .find(|(v, _)| holds_template(v))
        .map(|(_, o)| o.pos().clone())
        .expect("a templated variable");
    Err(Diagnostic::new(
        pos,
        format!(
            "variables of {host} refer to each other in a loop or nest more than {DEPTH} levels deep: {}",
            names.join(", ")
        ),
    ))
}

/// Render, in a step's context, the variables `expand_var_templates` had to leave because
/// they read registered results or facts; a value that still cannot be rendered stays as
/// written (it may be meant literally, for the host).
pub fn expand_deferred(ctx: &mut tera::Context, resolved: &Resolved) {
    let deferred: Vec<(&String, &J, &Pos)> = resolved
        .vars
        .iter()
        .filter(|(_, (v, _))| holds_template(v))
        // A registered result of the same name overrides the variable: left alone.
        .filter(|(k, (v, _))| ctx.get(k.as_str()) == Some(v))
        .map(|(k, (v, o))| (k, v, o.pos()))
        .collect();
    for _ in 0..deferred.len().min(10) {
        let mut changed = false;
        for (k, v, pos) in &deferred {
            let current = ctx.get(k.as_str()).cloned().unwrap_or_else(|| (*v).clone());
            if let Ok(new) = render_json_strings(&current, ctx, pos) {
                if new != current {
                    ctx.insert(k.as_str(), &new);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// Render every string of a value (inside lists and mappings too).
pub fn render_json_strings(v: &J, ctx: &tera::Context, pos: &Pos) -> Result<J, Diagnostic> {
    Ok(match v {
        J::String(s) if s.contains("{{") || s.contains("{%") => render_value(s, ctx, pos)?,
        J::Array(items) => J::Array(
            items
                .iter()
                .map(|i| render_json_strings(i, ctx, pos))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_json_strings(v, ctx, pos)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// A host's variables, `inventory_hostname`, `host` and `groups` (not `hostvars`).
fn own_context(inv: &Inventory, host: &str, resolved: &Resolved, groups: &J) -> tera::Context {
    let mut ctx = tera::Context::new();
    for (k, (v, _)) in &resolved.vars {
        ctx.insert(k.as_str(), v);
    }
    let address = inv
        .host(host)
        .map(|h| h.connection.address.clone())
        .unwrap_or_default();
    ctx.insert(names::INVENTORY_HOSTNAME, host);
    ctx.insert(
        names::HOST,
        &serde_json::json!({ "name": host, "address": address, "groups": inv.groups_of(host) }),
    );
    ctx.insert(names::GROUPS, groups);
    ctx
}

/// Does a value (or a string inside it) hold template syntax?
fn holds_template(v: &J) -> bool {
    match v {
        J::String(s) => s.contains("{{") || s.contains("{%"),
        J::Array(items) => items.iter().any(holds_template),
        J::Object(m) => m.values().any(holds_template),
        _ => false,
    }
}

/// A host's context, with the play's shared part already built.
pub fn host_context_with(
    inv: &Inventory,
    host: &str,
    resolved: &Resolved,
    shared: &Shared,
) -> tera::Context {
    let mut ctx = own_context(inv, host, resolved, &shared.groups);
    ctx.insert(names::HOSTVARS, &shared.hostvars);
    ctx
}

/// `hostvars`: each host's variables plus its `address`.
pub fn hostvars(inv: &Inventory, everyone: &BTreeMap<String, Resolved>) -> J {
    let mut all = serde_json::Map::new();
    for h in &inv.hosts {
        let mut m = everyone
            .get(&h.name)
            .map(Resolved::to_json)
            .unwrap_or_default();
        m.insert("address".into(), J::String(h.connection.address.clone()));
        m.insert("inventory_hostname".into(), J::String(h.name.clone()));
        all.insert(h.name.clone(), J::Object(m));
    }
    J::Object(all)
}

/// Resolve the variables of every host once (for `hostvars`), with the same play layers.
pub fn resolve_all(
    inv: &Inventory,
    layers: Layers<'_>,
) -> Result<BTreeMap<String, Resolved>, crate::diag::Diagnostics> {
    let mut out = BTreeMap::new();
    let mut diags = crate::diag::Diagnostics::default();
    let groups = groups_json(inv);
    for h in &inv.hosts {
        let resolved = vars::resolve(inv, &h.name, layers).and_then(|mut r| {
            expand_var_templates(inv, &h.name, &mut r, &groups).map_err(|d| {
                let mut ds = crate::diag::Diagnostics::default();
                ds.push(d);
                ds
            })?;
            Ok(r)
        });
        match resolved {
            Ok(r) => {
                // Values of variables declared secret are hidden from all output from now on.
                for name in &inv.secret_vars {
                    if let Some(v) = r.get(name) {
                        crate::secrets::register(
                            name,
                            v.as_str()
                                .map_or_else(|| v.to_string(), str::to_string)
                                .as_str(),
                        );
                    }
                }
                out.insert(h.name.clone(), r);
            }
            Err(d) => diags.extend(d),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// The templates of a project, loaded once with cutover's filters.
pub struct Templates {
    pub dir: PathBuf,
    tera: tera::Tera,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Load every file under `dir`. Syntax errors come back as diagnostics with positions.
    /// No templates (for commands that need none, like `cutover rollback`).
    pub fn empty() -> Templates {
        Templates {
            dir: PathBuf::new(),
            tera: new_tera(),
        }
    }

    pub fn load(dir: &Path) -> Result<Templates, Vec<Diagnostic>> {
        let mut tera = new_tera();
        let files = if dir.is_dir() {
            template_files(dir)
        } else {
            Vec::new()
        };
        let mut diags = Vec::new();
        for (name, path) in &files {
            match read_template(path) {
                Ok(text) => {
                    if let Err(e) = tera.add_raw_template(name, &text) {
                        diags.push(syntax_error(path, &text, &e));
                    }
                }
                Err(e) => diags.push(Diagnostic::file_error(path, format!("template: {e}"))),
            }
        }
        if diags.is_empty() {
            Ok(Templates {
                dir: dir.to_path_buf(),
                tera,
            })
        } else {
            Err(diags)
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|n| n == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tera.get_template_names()
    }

    /// Render a template for a host. An undefined variable names the template line and column.
    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, Diagnostic> {
        self.tera.render(name, ctx).map_err(|e| {
            let path = self.dir.join(name);
            let source = read_template(&path).unwrap_or_default();
            render_error(&path, &source, &e)
        })
    }
}

/// A template parse error as a diagnostic. tera reports a block left open (`{% if %}` without
/// `{% endif %}`) at the end of the file, past the last line, as "expected tag or some
/// content"; point at the opening tag instead and say what is missing.
fn syntax_error(path: &Path, text: &str, e: &tera::Error) -> Diagnostic {
    let (line, col, msg) = parse_error_position(e);
    let lines = text.lines().count().max(1) as u32;
    if line > lines
        || (line == lines && col > text.lines().last().map_or(0, |l| l.chars().count()) as u32)
    {
        if let Some((tag, l, c)) = unclosed_block(text) {
            return Diagnostic::new(
                Pos::new(path, l, c),
                format!("template syntax error: `{{% {tag} %}}` is never closed"),
            )
            .with_help(format!("add `{{% end{tag} %}}` where the block ends"));
        }
        let last = text.lines().last().map_or(0, |l| l.chars().count()) as u32;
        return Diagnostic::new(
            Pos::new(path, lines, last + 1),
            format!("template syntax error at end of file: {msg}"),
        );
    }
    Diagnostic::new(
        Pos::new(path, line, col),
        format!("template syntax error: {msg}"),
    )
}

/// The innermost block tag (`if`, `for`, …) opened and not closed, with its line and column.
fn unclosed_block(text: &str) -> Option<(String, u32, u32)> {
    const BLOCKS: &[&str] = &["if", "for", "block", "macro", "filter", "raw"];
    let mut stack: Vec<(String, u32, u32)> = Vec::new();
    for (li, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(start) = rest.find("{%") {
            let tag_text = &rest[start + 2..];
            let word: String = tag_text
                .trim_start_matches(['-', ' ', '\t'])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let col = line[..offset + start].chars().count() as u32 + 1;
            if BLOCKS.contains(&word.as_str()) {
                stack.push((word, li as u32 + 1, col));
            } else if let Some(opened) = word.strip_prefix("end") {
                if let Some(i) = stack.iter().rposition(|(w, _, _)| w == opened) {
                    stack.truncate(i);
                }
            }
            offset += start + 2;
            rest = &rest[start + 2..];
        }
    }
    stack.pop()
}

/// A template file's text: a regular file of at most `input::MAX_INPUT_BYTES`, UTF-8.
fn read_template(path: &Path) -> Result<String, String> {
    let bytes =
        crate::input::read(path, crate::input::MAX_INPUT_BYTES).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "file is not UTF-8 text".to_string())
}

/// Every file under a templates directory, by name relative to it, in name order. A
/// symlinked directory is followed, but no real directory twice: two links back to `.` would
/// otherwise make the walk exponential.
pub fn template_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    collect_files(dir, dir, &mut std::collections::BTreeSet::new(), &mut out);
    out
}

fn collect_files(
    root: &Path,
    dir: &Path,
    seen: &mut std::collections::BTreeSet<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) {
    let fresh = std::fs::canonicalize(dir).is_ok_and(|real| seen.insert(real));
    if !fresh {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect_files(root, &p, seen, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push((rel.to_string_lossy().into_owned(), p.clone()));
        }
    }
}

/// Render a `{{ }}` string from a playbook value.
pub fn render_str(text: &str, ctx: &tera::Context, pos: &Pos) -> Result<String, Diagnostic> {
    let mut tera = new_tera();
    tera.add_raw_template("value", text).map_err(|e| {
        Diagnostic::new(
            pos.clone(),
            format!("invalid template: {}", parse_error_position(&e).2),
        )
    })?;
    tera.render("value", ctx).map_err(|e| {
        let d = render_error(&pos.file, text, &e);
        // The value lives in a playbook, not in a template file: don't say "in template …".
        let message = match undefined_variable(&error_chain(&e)) {
            Some(var) => format!("undefined variable `{var}` in this value"),
            None => d.message,
        };
        Diagnostic {
            pos: pos.clone(),
            message,
            ..d
        }
    })
}

/// Render a playbook value. A value that is one `{{ expression }}` yielding a list or a mapping
/// keeps that structure, as a reader expects of `volumes: "{{ volumes }}"`; everything else
/// renders to text (modules read numbers and booleans from text too).
pub fn render_value(text: &str, ctx: &tera::Context, pos: &Pos) -> Result<J, Diagnostic> {
    let t = text.trim();
    let single = t.starts_with("{{")
        && t.ends_with("}}")
        && t[2..].find("{{").is_none()
        && t[..t.len() - 2].rfind("}}").is_none();
    if single {
        let inner = t[2..t.len() - 2].trim();
        let json = render_str(&format!("{{{{ {inner} | json_encode() }}}}"), ctx, pos)?;
        if let Ok(v @ (J::Array(_) | J::Object(_))) = serde_json::from_str::<J>(&json) {
            return Ok(v);
        }
    }
    render_str(text, ctx, pos).map(J::String)
}

/// Evaluate an expression (`when:`) to true or false.
pub fn eval_bool(expr: &str, ctx: &tera::Context, pos: &Pos) -> Result<bool, Diagnostic> {
    let out = render_str(
        &format!("{{% if {expr} %}}true{{% else %}}false{{% endif %}}"),
        ctx,
        pos,
    )?;
    Ok(out == "true")
}

/// The variables an expression (`when:`) reads, by root name, in order of first use.
///
/// tera treats an undefined name as false in `{% if x %}` / `not x` instead of failing, so
/// `check` looks each one up itself. Attribute names (`a.b`), filters (`| lower`), tests
/// (`is defined`), function calls, keyword arguments and string literals are not variables.
pub fn expression_variables(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "and", "or", "not", "in", "is", "true", "false", "True", "False", "none", "None",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut prev_sym: Option<char> = None;
    let mut prev_words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i += 1;
            prev_sym = Some(c);
            prev_words.clear();
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            prev_sym = Some('0');
            prev_words.clear();
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            let is_call = next == Some('(');
            let is_kwarg = next == Some('=') && chars.get(j + 1) != Some(&'=');
            let last = prev_words.last().map(String::as_str);
            let is_test = last == Some("is")
                || (last == Some("not")
                    && prev_words.len() >= 2
                    && prev_words[prev_words.len() - 2] == "is");
            let skip = KEYWORDS.contains(&word.as_str())
                || prev_sym == Some('.')
                || prev_sym == Some('|')
                || is_test
                || is_call
                || is_kwarg;
            if !skip && !out.contains(&word) {
                out.push(word.clone());
            }
            prev_words.push(word);
            prev_sym = Some('a');
            continue;
        }
        if !c.is_whitespace() {
            prev_sym = Some(c);
            prev_words.clear();
        }
        i += 1;
    }
    out
}

/// Check that a string is valid template syntax, without rendering.
pub fn check_syntax(text: &str) -> Result<(), String> {
    let mut tera = new_tera();
    tera.add_raw_template("value", text)
        .map(|_| ())
        .map_err(|e| parse_error_position(&e).2)
}

/// Check that a string is a valid expression (the body of `{% if … %}`).
pub fn check_expression(expr: &str) -> Result<(), String> {
    if expr.contains("%}") || expr.contains("{%") || expr.contains("{{") {
        return Err("an expression cannot contain template tags".into());
    }
    check_syntax(&format!("{{% if {expr} %}}{{% endif %}}"))
}

fn new_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    // Config files are not HTML: never escape by default.
    tera.autoescape_on(vec![]);
    tera.register_filter("xml_escape", xml_escape);
    tera.register_filter("shell_quote", shell_quote);
    tera.register_filter("hostvar", hostvar_filter);
    tera
}

fn string_arg(value: &J, filter: &str) -> tera::Result<String> {
    match value {
        J::String(s) => Ok(s.clone()),
        J::Number(n) => Ok(n.to_string()),
        J::Bool(b) => Ok(b.to_string()),
        other => Err(tera::Error::msg(format!(
            "filter `{filter}` expects text, found {other}"
        ))),
    }
}

/// `{{ password | xml_escape }}`: safe inside XML text and attribute values.
fn xml_escape(value: &J, _: &std::collections::HashMap<String, J>) -> tera::Result<J> {
    let s = string_arg(value, "xml_escape")?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Ok(J::String(out))
}

/// `{{ path | shell_quote }}`: one shell word, whatever the value holds.
fn shell_quote(value: &J, _: &std::collections::HashMap<String, J>) -> tera::Result<J> {
    Ok(J::String(crate::shell::quote(&string_arg(
        value,
        "shell_quote",
    )?)))
}

/// `{{ groups.app_nodes | hostvar(name="address", hostvars=hostvars) | join(sep=",") }}`:
/// one variable of each host in a list of host names.
fn hostvar_filter(value: &J, args: &std::collections::HashMap<String, J>) -> tera::Result<J> {
    let name = args
        .get("name")
        .and_then(J::as_str)
        .ok_or_else(|| tera::Error::msg("filter `hostvar` needs name=\"variable\""))?;
    let all = args
        .get("hostvars")
        .ok_or_else(|| tera::Error::msg("filter `hostvar` needs hostvars=hostvars"))?;
    let hosts = value
        .as_array()
        .ok_or_else(|| tera::Error::msg("filter `hostvar` applies to a list of host names"))?;
    let mut out = Vec::new();
    for h in hosts {
        let h = h
            .as_str()
            .ok_or_else(|| tera::Error::msg("filter `hostvar` applies to a list of host names"))?;
        let v = all
            .get(h)
            .and_then(|vars| vars.get(name))
            .ok_or_else(|| tera::Error::msg(format!("host `{h}` has no variable `{name}`")))?;
        out.push(v.clone());
    }
    Ok(J::Array(out))
}

/// tera's parse errors carry ` --> line:col` in their text; lift it out.
fn parse_error_position(e: &tera::Error) -> (u32, u32, String) {
    let full = error_chain(e);
    let mut line = 1;
    let mut col = 1;
    for l in full.lines() {
        if let Some(rest) = l.trim().strip_prefix("--> ") {
            let mut it = rest.split(':');
            line = it.next().and_then(|x| x.trim().parse().ok()).unwrap_or(1);
            col = it.next().and_then(|x| x.trim().parse().ok()).unwrap_or(1);
        }
    }
    let msg = full
        .lines()
        .find_map(|l| l.trim().strip_prefix("= ").map(str::to_string))
        .unwrap_or_else(|| full.lines().last().unwrap_or("").trim().to_string());
    (line, col, msg)
}

fn error_chain(e: &tera::Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push('\n');
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Turn a render error into a diagnostic; for an undefined variable, find where the template
/// uses it (tera does not say), so the admin sees the line and column.
fn render_error(path: &Path, source: &str, e: &tera::Error) -> Diagnostic {
    let chain = error_chain(e);
    if let Some(var) = undefined_variable(&chain) {
        let (line, col) = locate_identifier(source, &var).unwrap_or((1, 1));
        let root = var.split(['.', '[']).next().unwrap_or(&var).to_string();
        return Diagnostic::new(
            Pos::new(path, line, col),
            format!("undefined variable `{var}` in template {}", path.display()),
        )
        .with_help(format!(
            "define `{root}` in the inventory, the play's vars or with -e"
        ));
    }
    let msg = chain.lines().last().unwrap_or("render failed").to_string();
    Diagnostic::new(
        Pos::new(path, 0, 0),
        format!("cannot render template: {msg}"),
    )
}

fn undefined_variable(chain: &str) -> Option<String> {
    for line in chain.lines() {
        if let Some(rest) = line.split("Variable `").nth(1) {
            if line.contains("not found in context") {
                return rest.split('`').next().map(str::to_string);
            }
        }
    }
    None
}

/// First use of `name` (a dotted path's root is enough) inside a `{{ }}` or `{% %}` tag.
pub fn locate_identifier(source: &str, name: &str) -> Option<(u32, u32)> {
    let root = name.split(['.', '[']).next().unwrap_or(name);
    let mut in_tag = false;
    for (li, line) in source.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !in_tag
                && i + 1 < chars.len()
                && chars[i] == '{'
                && (chars[i + 1] == '{' || chars[i + 1] == '%')
            {
                in_tag = true;
                i += 2;
                continue;
            }
            if in_tag
                && i + 1 < chars.len()
                && (chars[i] == '}' || chars[i] == '%')
                && chars[i + 1] == '}'
            {
                in_tag = false;
                i += 2;
                continue;
            }
            if in_tag && (chars[i].is_alphabetic() || chars[i] == '_') {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let after_dot = start > 0 && chars[start - 1] == '.';
                if word == root && !after_dot {
                    return Some((li as u32 + 1, start as u32 + 1));
                }
                continue;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_variable_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.conf"),
            "port = {{ port }}\nhost = {{ db_host }}\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("port", &3306);
        let e = t.render("a.conf", &ctx).unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 11), "{e}");
        assert!(e.message.contains("undefined variable `db_host`"), "{e}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.conf"), "ok\n{% if x %}\nno end\n").unwrap();
        let e = Templates::load(dir.path()).unwrap_err();
        assert!(
            e[0].pos.line >= 1 && e[0].message.contains("syntax"),
            "{:?}",
            e
        );
    }

    #[test]
    fn unclosed_block_points_at_its_tag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.conf"),
            "a\n  {% if x %}\n{% for i in l %}{% endfor %}\nb\n",
        )
        .unwrap();
        let e = Templates::load(dir.path()).unwrap_err();
        assert_eq!((e[0].pos.line, e[0].pos.col), (2, 3), "{:?}", e);
        assert!(
            e[0].message.contains("`{% if %}` is never closed"),
            "{:?}",
            e
        );
    }

    #[test]
    fn filters_escape_for_config_files() {
        let mut ctx = tera::Context::new();
        ctx.insert("p", "a&b<'\"");
        ctx.insert("s", "it's; rm -rf /");
        let pos = Pos::cli("t");
        assert_eq!(
            render_str("{{ p | xml_escape }}", &ctx, &pos).unwrap(),
            "a&amp;b&lt;&apos;&quot;"
        );
        assert_eq!(
            render_str("{{ s | shell_quote }}", &ctx, &pos).unwrap(),
            r#"'it'\''s; rm -rf /'"#
        );
        // no HTML autoescaping in config files
        assert_eq!(render_str("{{ p }}", &ctx, &pos).unwrap(), "a&b<'\"");
    }

    #[test]
    fn variables_of_expressions() {
        assert_eq!(
            expression_variables("role == 'master' and not frozen"),
            ["role", "frozen"]
        );
        assert_eq!(
            expression_variables("x is defined and y is not none"),
            ["x", "y"]
        );
        assert_eq!(
            expression_variables("hostvars.db1.address | lower == \"a b\""),
            ["hostvars"]
        );
        assert_eq!(
            expression_variables("groups['app'] | length > 1 and range(end=3) and v.0"),
            ["groups", "v"]
        );
        assert!(expression_variables("1.5 > 0.5 and true").is_empty());
    }

    fn inventory(text: &str) -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yml");
        std::fs::write(&path, text).unwrap();
        let mut d = crate::diag::Diagnostics::default();
        crate::inventory::load(&path, &mut d).unwrap_or_else(|| panic!("{d:?}"))
    }

    #[test]
    fn variables_holding_templates_are_rendered_as_deep_as_they_nest() {
        let inv = inventory(
            "hosts:\n  a:\n    address: 10.0.0.1\n    vars:\n      port: 8009\n      base: \"/srv/{{ inventory_hostname }}\"\n      url: \"http://{{ host.address }}:{{ port }}{{ path }}\"\n      path: \"{{ base }}/x\"\n      list: [\"{{ port }}\", { k: \"{{ base }}\" }]\n      later: \"{{ out.stdout }} in {{ base }}\"\n",
        );
        let all = resolve_all(&inv, Layers::default()).unwrap();
        let r = &all["a"];
        assert_eq!(r.get("url").unwrap(), "http://10.0.0.1:8009/srv/a/x");
        assert_eq!(
            r.get("list").unwrap(),
            &serde_json::json!(["8009", { "k": "/srv/a" }])
        );
        // Reads a registered result: left for the step, which renders it then.
        assert_eq!(r.get("later").unwrap(), "{{ out.stdout }} in {{ base }}");
        let mut ctx = host_context(&inv, "a", r, &all);
        ctx.insert("out", &serde_json::json!({ "stdout": "hello" }));
        expand_deferred(&mut ctx, r);
        assert_eq!(
            ctx.get("later").unwrap(),
            &serde_json::json!("hello in /srv/a")
        );
    }

    #[test]
    fn variables_referring_to_each_other_in_a_loop_are_an_error_with_a_position() {
        let inv = inventory(
            "hosts:\n  a:\n    address: x\n    vars:\n      one: \"{{ two }}\"\n      two: \"x{{ one }}\"\n",
        );
        let e = resolve_all(&inv, Layers::default()).unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains("refer to each other in a loop"), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
    }

    #[test]
    fn a_lone_expression_keeps_its_type() {
        let mut ctx = tera::Context::new();
        ctx.insert("vols", &serde_json::json!([{ "name": "app" }]));
        ctx.insert("port", &8009);
        let pos = Pos::cli("t");
        assert_eq!(
            render_value("{{ vols }}", &ctx, &pos).unwrap(),
            serde_json::json!([{ "name": "app" }])
        );
        assert_eq!(
            render_value("{{ port }}", &ctx, &pos).unwrap(),
            serde_json::json!("8009")
        );
        assert_eq!(
            render_value("port {{ port }}", &ctx, &pos).unwrap(),
            serde_json::json!("port 8009")
        );
        assert_eq!(
            render_value("{{ port }}:{{ port }}", &ctx, &pos).unwrap(),
            serde_json::json!("8009:8009")
        );
    }

    #[test]
    fn expressions() {
        let mut ctx = tera::Context::new();
        ctx.insert("role", "master");
        let pos = Pos::cli("t");
        assert!(eval_bool("role == 'master'", &ctx, &pos).unwrap());
        assert!(!eval_bool("role != 'master'", &ctx, &pos).unwrap());
        assert!(check_expression("role ==").is_err());
        assert!(check_expression("a and b").is_ok());
    }
}
