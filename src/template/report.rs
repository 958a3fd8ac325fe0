//! tera errors as cutover diagnostics: file, line and column, and what to write instead.
//!
//! Positions come from tera 2's structured errors (`ReportError::span`), never from its message
//! text. The few errors tera gives without a span (an unknown filter or included template, an
//! include or extends cycle) are located with [`scan`], which finds the names in the tags.

use tera::{ErrorKind, ReportError};

use super::scan::{self, Kind, Use};
use crate::diag::{Diagnostic, Pos};

/// Where template text comes from: a file under `templates/`, or a string in a playbook.
pub trait Sources {
    /// The text of a template by tera name.
    fn source(&self, name: &str) -> Option<&str>;
    /// Where a position in that template is, for the user.
    fn pos(&self, name: &str, line: u32, col: u32) -> Pos;
    /// How the user calls it in a message: `template a.conf`, `this value`.
    fn label(&self, name: &str) -> String;
    /// Does this template exist (for unknown includes)?
    fn exists(&self, name: &str) -> bool;
    /// Why a template named in an include is missing, when it is known.
    fn missing_help(&self, _name: &str) -> Option<String> {
        None
    }
    /// The template that includes `name` on the way from `top`, with the include's position.
    fn includer(&self, _top: &str, _name: &str) -> Option<(String, u32, u32)> {
        None
    }
}

/// A playbook value rendered on its own: errors point at the value, and say where inside it.
pub struct Value<'a> {
    pub pos: &'a Pos,
    pub text: &'a str,
    /// Characters cutover wrapped around the user's text on its first line (`{% if `).
    pub shift: u32,
}

impl Sources for Value<'_> {
    fn source(&self, _: &str) -> Option<&str> {
        Some(self.text)
    }
    fn pos(&self, _: &str, line: u32, col: u32) -> Pos {
        let col = if line <= 1 {
            col.saturating_sub(self.shift).max(1)
        } else {
            col
        };
        let mut p = self.pos.clone();
        // The value's position is where its text starts (a block scalar's first content line
        // and its indentation): lines count down from there, columns from its indentation.
        if p.line > 0 {
            let quoted = usize::from(opens_quoted_scalar(self.pos)) as u32;
            p.line += line.saturating_sub(1);
            p.col = p.col.max(1) + col.saturating_sub(1) + quoted;
        }
        p
    }
    fn label(&self, _: &str) -> String {
        "this value".into()
    }
    fn exists(&self, _: &str) -> bool {
        false
    }
}

/// Does the YAML value at `pos` start with a quote (its text then starts one column later)?
fn opens_quoted_scalar(pos: &Pos) -> bool {
    let Ok(meta) = std::fs::metadata(&pos.file) else {
        return false;
    };
    if meta.len() > crate::yaml::MAX_INPUT_BYTES {
        return false;
    }
    std::fs::read_to_string(&pos.file)
        .ok()
        .and_then(|t| {
            let line = t.lines().nth(pos.line.saturating_sub(1) as usize)?;
            line.chars().nth(pos.col.saturating_sub(1) as usize)
        })
        .is_some_and(|c| c == '"' || c == '\'')
}

/// What went wrong, as (template name, diagnostic).
pub fn diagnose(
    e: &tera::Error,
    top: &str,
    src: &dyn Sources,
    probe: &dyn Fn(Kind, &str) -> bool,
    vars: &dyn Fn(&str) -> bool,
) -> Vec<(String, Diagnostic)> {
    match e.kind() {
        ErrorKind::SyntaxError(r) => vec![(name_of(r, top), syntax(r, top, src))],
        ErrorKind::RenderingError(r) => vec![(name_of(r, top), rendering(r, top, src, vars))],
        ErrorKind::CircularInclude { tpl, include_chain } => {
            vec![(tpl.clone(), cycle(tpl, include_chain, "include", src))]
        }
        ErrorKind::CircularExtend {
            tpl,
            inheritance_chain,
        } => {
            let mut chain = vec![tpl.clone()];
            chain.extend(inheritance_chain.iter().cloned());
            vec![(tpl.clone(), cycle(tpl, &chain, "extends", src))]
        }
        ErrorKind::MissingParent { current, parent } => {
            let (line, col) = template_use(src, current, parent).unwrap_or((1, 1));
            let d = Diagnostic::new(
                src.pos(current, line, col),
                format!("`{{% extends \"{parent}\" %}}`: no template `{parent}`"),
            );
            let d = match src.missing_help(parent) {
                Some(h) => d.with_help(h),
                None => d,
            };
            vec![(current.clone(), d)]
        }
        _ => unknown_names(e, top, src, probe),
    }
}

/// tera names a one-off (value) template `__tera_one_off`; cutover calls it by its top name.
fn name_of(r: &ReportError, top: &str) -> String {
    if r.filename().is_empty() || r.filename().starts_with("__tera") {
        top.to_string()
    } else {
        r.filename().to_string()
    }
}

fn span_pos(r: &ReportError) -> (u32, u32) {
    (r.span().start_line as u32, r.span().start_col as u32 + 1)
}

fn syntax(r: &ReportError, top: &str, src: &dyn Sources) -> Diagnostic {
    let name = name_of(r, top);
    let text = src.source(&name).unwrap_or("");
    let offset = r.span().range.start.min(text.len());
    if let Some((open, close)) = unclosed_delimiter(text, offset) {
        let (line, col) = scan::line_col(text, open);
        let (el, ec) = span_pos(r);
        return Diagnostic::new(
            src.pos(&name, line, col),
            format!(
                "template syntax error: `{}` opened here is never closed (tera stopped at {}: {})",
                &text[open..open + 2],
                src.pos(&name, el, ec),
                r.message()
            ),
        )
        .with_help(format!("close it with `{close}`"));
    }
    // tera stops at the end of input when a block is left open; say which block.
    if let Some((tag, line, col)) = unclosed_block(text) {
        if (line, col) <= span_pos(r) {
            return Diagnostic::new(
                src.pos(&name, line, col),
                format!("template syntax error: `{{% {tag} %}}` is never closed"),
            )
            .with_help(format!("add `{{% end{tag} %}}` where the block ends"));
        }
    }
    let (line, col) = span_pos(r);
    let d = Diagnostic::new(
        src.pos(&name, line, col),
        format!("template syntax error: {}", r.message()),
    );
    match super::jinja::hint_at(text, offset) {
        Some(h) => d.with_help(h),
        None => d,
    }
}

/// The `{{`/`{%` that opens the tag holding `offset`, when nothing closes it before the next
/// tag opens: a tag left open, whose error tera reports wherever parsing gave up.
fn unclosed_delimiter(text: &str, offset: usize) -> Option<(usize, &'static str)> {
    let before = &text[..offset.min(text.len())];
    let open = match (before.rfind("{{"), before.rfind("{%")) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    let close = if text[open..].starts_with("{{") {
        "}}"
    } else {
        "%}"
    };
    let rest = &text[open + 2..];
    let next_open = [rest.find("{{"), rest.find("{%")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    (!rest[..next_open].contains(close)).then_some((open, close))
}

/// The innermost block tag (`if`, `for`, …) opened and not closed, with its line and column.
fn unclosed_block(text: &str) -> Option<(String, u32, u32)> {
    const BLOCKS: &[&str] = &["if", "for", "block", "component", "filter", "raw"];
    let mut stack: Vec<(String, u32, u32)> = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("{%").map(|s| s + from) {
        let word: String = text[start + 2..]
            .trim_start_matches(['-', ' ', '\t'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let (line, col) = scan::line_col(text, start);
        if BLOCKS.contains(&word.as_str()) {
            stack.push((word, line, col));
        } else if let Some(opened) = word.strip_prefix("end") {
            if let Some(i) = stack.iter().rposition(|(w, _, _)| w == opened) {
                stack.truncate(i);
            }
        }
        from = start + 2;
    }
    stack.pop()
}

fn rendering(
    r: &ReportError,
    top: &str,
    src: &dyn Sources,
    defined: &dyn Fn(&str) -> bool,
) -> Diagnostic {
    let name = name_of(r, top);
    let text = src.source(&name).unwrap_or("");
    let (line, col) = span_pos(r);
    let pos = src.pos(&name, line, col);
    let included = (name != top)
        .then(|| src.includer(top, &name))
        .flatten()
        .map(|(by, l, c)| format!(" (included by {} at {})", by, src.pos(&by, l, c)))
        .unwrap_or_default();
    let spanned = text.get(r.span().range.clone()).unwrap_or("");
    if let Some(path) = undefined_path(text, r.span().range.start, spanned, defined) {
        let root = path.split(['.', '[']).next().unwrap_or(&path).to_string();
        return Diagnostic::new(
            pos,
            format!(
                "undefined variable `{path}` in {}{included}",
                src.label(&name)
            ),
        )
        .with_help(format!(
            "define `{root}` in the inventory, the play's vars or with -e"
        ));
    }
    Diagnostic::new(
        pos,
        format!(
            "cannot render {}{included}: {}",
            src.label(&name),
            crate::secrets::redact(r.message())
        ),
    )
}

/// When tera's span is an undefined name (or a missing field of a defined one), the dotted path
/// of it (`out.stdout`, `db.port`).
fn undefined_path(
    text: &str,
    start: usize,
    spanned: &str,
    defined: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let is_ident = !spanned.is_empty()
        && spanned
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !spanned.starts_with(|c: char| c.is_ascii_digit());
    if !is_ident {
        return None;
    }
    // Walk back over `a.b.` to the root.
    let mut root_start = start;
    let b = text.as_bytes();
    while root_start >= 2 && b[root_start - 1] == b'.' {
        let mut s = root_start - 1;
        while s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
            s -= 1;
        }
        if s == root_start - 1 {
            break;
        }
        root_start = s;
    }
    let path = &text[root_start..start + spanned.len()];
    if root_start == start && defined(spanned) {
        return None;
    }
    Some(path.to_string())
}

fn cycle(tpl: &str, chain: &[String], tag: &str, src: &dyn Sources) -> Diagnostic {
    let next = chain.get(1).map_or(tpl, String::as_str);
    let (line, col) = template_use(src, tpl, next).unwrap_or((1, 1));
    Diagnostic::new(
        src.pos(tpl, line, col),
        format!(
            "`{{% {tag} \"{next}\" %}}` makes a cycle: {}",
            chain.join(" → ")
        ),
    )
    .with_help("a template cannot include or extend itself, directly or through others")
}

/// Where `tpl` names the template `target` in an include or extends tag.
fn template_use(src: &dyn Sources, tpl: &str, target: &str) -> Option<(u32, u32)> {
    scan::uses(src.source(tpl)?)
        .into_iter()
        .find(|u| u.kind == Kind::Template && u.name == target)
        .map(|u| (u.line, u.col))
}

/// tera reports unknown filters, tests, functions and templates without positions: find the
/// names ourselves, and ask tera (through `probe`) which of them it does not know.
fn unknown_names(
    e: &tera::Error,
    top: &str,
    src: &dyn Sources,
    probe: &dyn Fn(Kind, &str) -> bool,
) -> Vec<(String, Diagnostic)> {
    let unknown = unknown_in(top, src, probe);
    if unknown.is_empty() {
        // At render time, tera's only errors without a span are about components (a component
        // calling itself past tera's depth limit): point at the first component call.
        let text = src.source(top).unwrap_or("");
        if let Some(call) = scan::uses(text)
            .into_iter()
            .find(|u| u.kind == Kind::Component)
        {
            return vec![(
                top.to_string(),
                Diagnostic::new(
                    src.pos(top, call.line, call.col),
                    format!(
                        "cannot render {} (component `{}`): {}",
                        src.label(top),
                        call.name,
                        crate::secrets::redact(&e.to_string())
                    ),
                )
                .with_help("a component that calls itself needs a condition that stops it"),
            )];
        }
        return vec![(
            top.to_string(),
            Diagnostic::new(
                src.pos(top, 0, 0),
                format!("template {top}: {}", crate::secrets::redact(&e.to_string())),
            ),
        )];
    }
    unknown
}

/// The filters, tests, functions and templates `name` uses that tera does not know.
pub fn unknown_in(
    name: &str,
    src: &dyn Sources,
    probe: &dyn Fn(Kind, &str) -> bool,
) -> Vec<(String, Diagnostic)> {
    let text = src.source(name).unwrap_or("");
    scan::uses(text)
        .into_iter()
        .filter(|u| match u.kind {
            Kind::Template => !src.exists(&u.name),
            // tera checks components when it loads; a call is no unknown name here.
            Kind::Component => false,
            k => !probe(k, &u.name),
        })
        .map(|u| (name.to_string(), unknown_use(&u, name, src)))
        .collect()
}

fn unknown_use(u: &Use, top: &str, src: &dyn Sources) -> Diagnostic {
    let pos = src.pos(top, u.line, u.col);
    let what = match u.kind {
        Kind::Filter => "filter",
        Kind::Test => "test",
        Kind::Function => "function",
        Kind::Template => "template",
        Kind::Component => "component",
    };
    let d = Diagnostic::new(pos, format!("unknown {what} `{}`", u.name));
    match super::jinja::instead(u.kind, &u.name) {
        Some(h) => d.with_help(h),
        None if u.kind == Kind::Template => d.with_help(
            src.missing_help(&u.name)
                .unwrap_or_else(|| format!("`{}` is not a file under templates/", u.name)),
        ),
        None => d.suggest(&u.name, super::filters::names(u.kind)),
    }
}
