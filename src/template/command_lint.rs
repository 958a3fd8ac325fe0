//! `check`'s warnings on `shell`/`command` strings.
//!
//! Each `{{ }}` in a command string is quoted as one shell word when it renders. Two ways around
//! that remain, and `check` points at both (a warning: the exit code does not change):
//! - an interpolation inside quotes (`'{{ x }}'`, `"{{ x }}"`): the quotes cutover adds close
//!   and reopen the written ones, so the value is no longer one word (and `"…"` still expands
//!   `$(…)` in it);
//! - `| unquoted` on a value that comes from outside the playbook: `-e`, registered results,
//!   facts, inventory variables.

use super::report::{Sources, Value};
use super::scan;
use crate::diag::{Diagnostic, Pos};

/// The warnings for one command string at `pos`. `from_play(name)`: is this variable set by the
/// play itself (its `vars:`/`defaults:`), rather than from outside?
pub fn warnings(text: &str, pos: &Pos, from_play: &dyn Fn(&str) -> bool) -> Vec<Diagnostic> {
    let src = Value {
        pos,
        text,
        shift: 0,
    };
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%' | b'#')) {
            let close = match b[i + 1] {
                b'{' => "}}",
                b'%' => "%}",
                _ => "#}",
            };
            let end = text[i + 2..].find(close).map_or(b.len(), |e| i + 2 + e);
            if b[i + 1] == b'{' {
                let (line, col) = scan::line_col(text, i);
                let tag = &text[i..(end + 2).min(b.len())];
                if let Some(q) = quote {
                    out.push(in_quotes(&src, line, col, q, tag));
                } else if let Some(d) = unquoted_outside(&src, line, col, tag, from_play) {
                    out.push(d);
                }
            }
            i = end + 2;
            continue;
        }
        match (quote, b[i]) {
            (None, b'\\') => i += 1,
            (Some(b'"'), b'\\') => i += 1,
            (None, q @ (b'\'' | b'"')) => quote = Some(q),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        i += 1;
    }
    out
}

fn in_quotes(src: &Value<'_>, line: u32, col: u32, q: u8, tag: &str) -> Diagnostic {
    let q = q as char;
    Diagnostic::new(
        src.pos("value", line, col),
        format!(
            "`{tag}` is inside {q}…{q} in a command string: cutover already quotes it as one shell word, and the surrounding quotes undo that"
        ),
    )
    .with_help("remove the quotes around it (write `{{ x }}`, not `'{{ x }}'`)")
}

/// `{{ x | unquoted }}` where `x` does not come from the play itself.
fn unquoted_outside(
    src: &Value<'_>,
    line: u32,
    col: u32,
    tag: &str,
    from_play: &dyn Fn(&str) -> bool,
) -> Option<Diagnostic> {
    let uses = scan::uses(tag);
    if !uses
        .iter()
        .any(|u| u.kind == scan::Kind::Filter && u.name == "unquoted")
    {
        return None;
    }
    let inner = tag
        .trim_start_matches("{{")
        .trim_start_matches('-')
        .trim_start();
    let root: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if root.is_empty() || from_play(&root) {
        return None;
    }
    Some(
        Diagnostic::new(
            src.pos("value", line, col),
            format!("`{tag}` puts `{root}` into the command without quoting, and its value comes from outside the playbook (inventory, -e, a registered result or facts)"),
        )
        .with_help("drop `| unquoted` unless the value is meant to be several words or shell syntax"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(text: &str) -> Vec<(u32, u32, String)> {
        let pos = Pos::new(std::path::Path::new("p.yml"), 3, 12);
        warnings(text, &pos, &|n| n == "flags")
            .into_iter()
            .map(|d| (d.pos.line, d.pos.col, d.message))
            .collect()
    }

    #[test]
    fn interpolations_inside_quotes_and_unquoted_outside_values_warn() {
        let w =
            lint("echo '{{ a }}' \"x {{ b }}\" {{ c }} {{ flags | unquoted }} {{ d | unquoted }}");
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!((w[0].0, w[0].1), (3, 18));
        assert!(w[0].2.contains("inside '…'"), "{w:?}");
        assert!(w[1].2.contains("inside \"…\""), "{w:?}");
        assert!(
            w[2].2.contains("puts `d` into the command without quoting"),
            "{w:?}"
        );
        // An escaped quote does not open a quoted string.
        assert!(lint("echo it\\'s {{ a }}").is_empty());
    }
}
