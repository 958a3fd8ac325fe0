//! A light scan of a template's tags: which filters, tests, functions and other templates it
//! names, and where.
//!
//! tera 2 reports an unknown filter, test, function or included template as one message for
//! the whole set (`ErrorKind::Msg`), without a structured position. Rather than read positions
//! back out of that message, cutover scans the tags itself: it only has to find names, since
//! tera still does all the parsing. Used on the error path, and to know which templates a
//! template includes (to load only those, and to name who included a failing one).

/// What a name in a tag is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filter,
    Test,
    Function,
    /// `{% include "x" %}` or `{% extends "x" %}`.
    Template,
    /// A component call: `{{ <name arg={v} /> }}`.
    Component,
}

/// One name used in a tag, with its 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    pub kind: Kind,
    pub name: String,
    pub line: u32,
    pub col: u32,
}

/// Every filter, test, function and template named in the tags of `source`, in order.
pub fn uses(source: &str) -> Vec<Use> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while let Some(start) = find_open(source, i) {
        let kind = &source[start + 1..start + 2];
        let close = match kind {
            "{" => "}}",
            "%" => "%}",
            _ => "#}",
        };
        let body_start = start + 2;
        let end = find_close(source, body_start, close).unwrap_or(bytes.len());
        if kind != "#" {
            scan_tag(source, body_start, end, kind == "%", &mut out);
        }
        i = (end + close.len()).min(bytes.len());
    }
    out
}

/// The templates a source includes or extends (names only).
pub fn templates_named(source: &str) -> Vec<String> {
    uses(source)
        .into_iter()
        .filter(|u| u.kind == Kind::Template)
        .map(|u| u.name)
        .collect()
}

fn find_open(s: &str, from: usize) -> Option<usize> {
    let b = s.as_bytes();
    (from..b.len().saturating_sub(1))
        .find(|&i| b[i] == b'{' && matches!(b[i + 1], b'{' | b'%' | b'#'))
}

/// The closing delimiter, skipping string literals inside the tag.
fn find_close(s: &str, from: usize, close: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') if close != "#}" => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            _ if s[i..].starts_with(close) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let col = source[line_start..offset].chars().count() as u32 + 1;
    (line, col)
}

fn scan_tag(source: &str, from: usize, to: usize, is_block: bool, out: &mut Vec<Use>) {
    let b = source.as_bytes();
    let mut i = from;
    // What came before the current token: `|`, `is`, `is not`, `.`, a tag keyword, other.
    let mut prev = Prev::Other;
    let mut first_word = is_block;
    while i < to {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            let start = i;
            i += 1;
            while i < to && b[i] != c {
                i += 1;
            }
            if prev == Prev::TemplateTag {
                let (line, col) = line_col(source, start);
                out.push(Use {
                    kind: Kind::Template,
                    name: source[start + 1..i.min(to)].to_string(),
                    line,
                    col,
                });
            }
            i += 1;
            prev = Prev::Other;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < to && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &source[start..i];
            let mut j = i;
            while j < to && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let called = j < to && b[j] == b'(';
            let kind = match prev {
                Prev::Definition => None,
                Prev::Lt => Some(Kind::Component),
                Prev::Pipe => Some(Kind::Filter),
                Prev::Is if word != "not" => Some(Kind::Test),
                Prev::Dot => None,
                _ if called && !first_word => Some(Kind::Function),
                _ => None,
            };
            if let Some(kind) = kind {
                let (line, col) = line_col(source, start);
                out.push(Use {
                    kind,
                    name: word.to_string(),
                    line,
                    col,
                });
            }
            prev = match word {
                "is" => Prev::Is,
                "not" if prev == Prev::Is => Prev::Is,
                "include" | "extends" if first_word => Prev::TemplateTag,
                "component" | "endcomponent" if first_word => Prev::Definition,
                _ => Prev::Other,
            };
            first_word = false;
            continue;
        }
        if !c.is_ascii_whitespace() && c != b'-' && c != b'+' && c != b'~' {
            first_word = false;
        }
        prev = match c {
            b'|' => Prev::Pipe,
            b'.' => Prev::Dot,
            b'<' => Prev::Lt,
            c if c.is_ascii_whitespace() => prev,
            _ => Prev::Other,
        };
        i += 1;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Pipe,
    Is,
    Dot,
    /// `<`: a component call follows (or a comparison, which has no name after it).
    Lt,
    /// The name after `component`: a definition, not a call.
    Definition,
    TemplateTag,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<(Kind, String, u32, u32)> {
        uses(src)
            .into_iter()
            .map(|u| (u.kind, u.name, u.line, u.col))
            .collect()
    }

    #[test]
    fn finds_filters_tests_functions_and_templates_with_positions() {
        let src = "a {{ x | lower | join(sep=\"|\") }}\n{% if y is not defined and range(end=2) %}{% include 'inc/b.conf' %}{% endif %}{# {{ z | nope }} #}";
        assert_eq!(
            names(src),
            [
                (Kind::Filter, "lower".into(), 1, 10),
                (Kind::Filter, "join".into(), 1, 18),
                (Kind::Test, "defined".into(), 2, 16),
                (Kind::Function, "range".into(), 2, 28),
                (Kind::Template, "inc/b.conf".into(), 2, 54),
            ]
        );
    }

    #[test]
    fn components_are_calls_and_definitions_are_not() {
        assert_eq!(
            names("{% component box(n) %}{{ n }}{% endcomponent box %}{{ <box n={1} /> }}"),
            [(Kind::Component, "box".into(), 1, 56)]
        );
    }

    #[test]
    fn a_pipe_inside_a_string_is_not_a_filter() {
        assert!(names("{{ 'a | b' ~ x.y }}").is_empty());
        assert_eq!(templates_named("{%- extends \"base\" -%}"), ["base"]);
    }
}
