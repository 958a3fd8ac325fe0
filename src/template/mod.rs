//! Templates (tera) for config files and for `{{ }}` in playbook values.
//!
//! A template sees the host's resolved variables at top level, plus:
//! - `inventory_hostname`: the host's name; `host`: `{name, address, groups}`;
//! - `groups`: every group's host names (`groups.app_nodes`);
//! - `hostvars`: every host's variables and `address` (`hostvars.db1.address`).
//!
//! Undefined variables are errors, reported with the template, line, column and name.
//!
//! The engine is tera 2. What cutover adds around it lives in submodules: the engines
//! (`engine`), the files under `templates/` (`files`), its filters (`filters`), hints for
//! Jinja2 habits (`jinja`), errors as located diagnostics (`report`), a scan of tags for names
//! (`scan`), the masking of values derived from secrets (`taint`) and `check`'s warnings on
//! command strings (`command_lint`).

mod bounded;
mod command_lint;
mod engine;
mod files;
mod filters;
mod jinja;
mod report;
mod scan;
mod taint;

use std::collections::BTreeMap;

use serde_json::Value as J;

use crate::context_names;
use crate::diag::{Diagnostic, Pos};
use crate::inventory::vars::{self, Layers, Resolved};
use crate::inventory::Inventory;

pub use engine::file_engine;
pub use files::{template_files, Templates};
pub use filters::{CUTOVER_FILTERS, CUTOVER_TESTS, TERA_FILTERS, TERA_TESTS};

use engine::{known, value_engine};

/// The variables a template sees, by name. Kept as JSON (cutover's variable model) and turned
/// into tera's context for each render, so the secret masking can read every value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vars {
    map: BTreeMap<String, J>,
}

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }
    pub fn insert<T: serde::Serialize + ?Sized>(&mut self, name: impl Into<String>, value: &T) {
        let v = serde_json::to_value(value).unwrap_or(J::Null);
        self.map.insert(name.into(), v);
    }
    pub fn get(&self, name: &str) -> Option<&J> {
        self.map.get(name)
    }
    pub fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &J)> {
        self.map.iter()
    }
    /// All the variables as one JSON mapping.
    pub fn to_json(&self) -> J {
        J::Object(self.map.clone().into_iter().collect())
    }
    /// tera's context for these variables.
    pub fn to_tera(&self) -> tera::Context {
        let mut ctx = tera::Context::new();
        for (k, v) in &self.map {
            ctx.insert_value(k.clone(), filters::from_j(v));
        }
        ctx
    }
}

/// Everything a template can see for one host.
pub fn host_context(
    inv: &Inventory,
    host: &str,
    resolved: &Resolved,
    everyone: &BTreeMap<String, Resolved>,
) -> Vars {
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
pub fn expand_deferred(ctx: &mut Vars, resolved: &Resolved) {
    let deferred: Vec<(&String, &J, &Pos)> = resolved
        .vars
        .iter()
        .filter(|(_, (v, _))| holds_template(v))
        // A registered result of the same name overrides the variable: left alone.
        .filter(|(k, (v, _))| ctx.get(k) == Some(v))
        .map(|(k, (v, o))| (k, v, o.pos()))
        .collect();
    for _ in 0..deferred.len().min(10) {
        let mut changed = false;
        for (k, v, pos) in &deferred {
            let current = ctx.get(k).cloned().unwrap_or_else(|| (*v).clone());
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
pub fn render_json_strings(v: &J, ctx: &Vars, pos: &Pos) -> Result<J, Diagnostic> {
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
fn own_context(inv: &Inventory, host: &str, resolved: &Resolved, groups: &J) -> Vars {
    let mut ctx = Vars::new();
    for (k, (v, _)) in &resolved.vars {
        ctx.insert(k.as_str(), v);
    }
    let address = inv
        .host(host)
        .map(|h| h.connection.address.clone())
        .unwrap_or_default();
    ctx.insert(context_names::INVENTORY_HOSTNAME, host);
    ctx.insert(
        context_names::HOST,
        &serde_json::json!({ "name": host, "address": address, "groups": inv.groups_of(host) }),
    );
    ctx.insert(context_names::GROUPS, groups);
    for (k, v) in &inv.controller_vars {
        ctx.insert(k.as_str(), v);
    }
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
) -> Vars {
    let mut ctx = own_context(inv, host, resolved, &shared.groups);
    ctx.insert(context_names::HOSTVARS, &shared.hostvars);
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
            // Secrets are known before variables that use them are rendered, so that a value
            // derived from one (`dsn: "…{{ db_password | urlencode }}…"`) is masked too.
            register_secrets(inv, &r);
            expand_var_templates(inv, &h.name, &mut r, &groups).map_err(|d| {
                let mut ds = crate::diag::Diagnostics::default();
                ds.push(d);
                ds
            })?;
            Ok(r)
        });
        match resolved {
            Ok(r) => {
                // A secret whose own value was a template: its rendered value.
                register_secrets(inv, &r);
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

/// Values of variables declared secret are hidden from all output from now on.
fn register_secrets(inv: &Inventory, r: &Resolved) {
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
}

/// Render a `{{ }}` string from a playbook value.
pub fn render_str(text: &str, ctx: &Vars, pos: &Pos) -> Result<String, Diagnostic> {
    render_in(text, ctx, pos, false, 0)
}

/// `check`'s warnings on a command string (interpolations inside quotes, `| unquoted` on a
/// value from outside the play): see `command_lint`.
pub fn command_warnings(
    text: &str,
    pos: &Pos,
    from_play: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    command_lint::warnings(text, pos, from_play)
}

/// Is this argument a command string, whose interpolations are quoted as shell words? The
/// `cmd` of `shell` and `command` (an `argv` item is already one word, left as written).
pub fn is_command_string(module: &str, arg: &str) -> bool {
    matches!(module, "shell" | "command") && arg == "cmd"
}

/// Render a `shell`/`command` string: each `{{ }}` output is quoted as one shell word unless
/// it went through `shell_quote` (already quoted) or `unquoted` (the template's explicit
/// choice).
pub fn render_command(text: &str, ctx: &Vars, pos: &Pos) -> Result<String, Diagnostic> {
    render_in(text, ctx, pos, true, 0)
}

/// `shift`: characters cutover put before the user's text (eval_bool's `{% if `), so that
/// positions still point into what the user wrote.
fn render_in(
    text: &str,
    ctx: &Vars,
    pos: &Pos,
    shell: bool,
    shift: u32,
) -> Result<String, Diagnostic> {
    let src = report::Value { pos, text, shift };
    taint::render(ctx, |v| {
        bounded::render(|out| value_engine().render_str_to(text, &v.to_tera(), shell, out)).map_err(
            |f| match f {
                bounded::Failed::TooLarge => {
                    Diagnostic::new(pos.clone(), bounded::too_large("this value"))
                }
                bounded::Failed::Tera(e) => {
                    let mut ds =
                        report::diagnose(&e, "value", &src, &known, &|n| v.contains_key(n));
                    ds.remove(0).1
                }
            },
        )
    })
}

/// Render a playbook value. A value that is one `{{ expression }}` yielding a list or a mapping
/// keeps that structure, as a reader expects of `volumes: "{{ volumes }}"`; everything else
/// renders to text (modules read numbers and booleans from text too).
pub fn render_value(text: &str, ctx: &Vars, pos: &Pos) -> Result<J, Diagnostic> {
    render_value_in(text, ctx, pos, false)
}

/// As [`render_value`], for a `shell`/`command` string (see [`render_command`]).
pub fn render_command_value(text: &str, ctx: &Vars, pos: &Pos) -> Result<J, Diagnostic> {
    render_value_in(text, ctx, pos, true)
}

fn render_value_in(text: &str, ctx: &Vars, pos: &Pos, shell: bool) -> Result<J, Diagnostic> {
    // Rendered as written first: errors point into the user's text.
    let rendered = render_in(text, ctx, pos, shell, 0)?;
    let t = text.trim();
    let single = t.starts_with("{{")
        && t.ends_with("}}")
        && t[2..].find("{{").is_none()
        && t[..t.len() - 2].rfind("}}").is_none();
    if single && !shell {
        let inner = t[2..t.len() - 2]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-');
        if let Ok(json) = render_in(&format!("{{{{ {inner} | to_json }}}}"), ctx, pos, false, 0) {
            if let Ok(v @ (J::Array(_) | J::Object(_))) = serde_json::from_str::<J>(&json) {
                return Ok(v);
            }
        }
    }
    Ok(J::String(rendered))
}

/// Evaluate an expression (`when:`) to true or false.
pub fn eval_bool(expr: &str, ctx: &Vars, pos: &Pos) -> Result<bool, Diagnostic> {
    const OPEN: &str = "{% if ";
    let out = render_in(
        &format!("{OPEN}{expr} %}}true{{% else %}}false{{% endif %}}"),
        ctx,
        pos,
        false,
        OPEN.len() as u32,
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

/// Check that a string is valid template syntax (and names only known filters), without
/// rendering. The diagnostic points into the value at `pos`.
pub fn check_syntax(text: &str, pos: &Pos) -> Result<(), Diagnostic> {
    check_syntax_in(text, pos, 0)
}

fn check_syntax_in(text: &str, pos: &Pos, shift: u32) -> Result<(), Diagnostic> {
    let mut tera = value_engine().clone();
    tera.add_raw_template("value", text).map_err(|e| {
        let src = report::Value { pos, text, shift };
        let mut ds = report::diagnose(&e, "value", &src, &known, &|_| true);
        ds.remove(0).1
    })
}

/// Check that a string is a valid expression (the body of `{% if … %}`).
pub fn check_expression(expr: &str, pos: &Pos) -> Result<(), Diagnostic> {
    if expr.contains("%}") || expr.contains("{%") || expr.contains("{{") {
        return Err(Diagnostic::new(
            pos.clone(),
            "an expression cannot contain template tags",
        ));
    }
    const OPEN: &str = "{% if ";
    check_syntax_in(
        &format!("{OPEN}{expr} %}}{{% endif %}}"),
        pos,
        OPEN.len() as u32,
    )
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
        let mut ctx = Vars::new();
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
        let mut ctx = Vars::new();
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
        let mut ctx = Vars::new();
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
        let mut ctx = Vars::new();
        ctx.insert("role", "master");
        let pos = Pos::cli("t");
        assert!(eval_bool("role == 'master'", &ctx, &pos).unwrap());
        assert!(!eval_bool("role != 'master'", &ctx, &pos).unwrap());
        assert!(check_expression("role ==", &pos).is_err());
        assert!(check_expression("a and b", &pos).is_ok());
    }
}

#[cfg(test)]
mod error_tests;

#[cfg(test)]
mod command_tests;

#[cfg(test)]
mod jinja_tests;

#[cfg(test)]
mod docs_tests;
