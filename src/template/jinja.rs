//! What to write instead, for Jinja2/Ansible habits that tera does not take as they are.
//!
//! The template is never rewritten: tera parses what the user wrote, and where that fails the
//! error (at tera's line and column) carries one of these hints.

use super::scan::Kind;

/// The argument names of filters and functions, in Jinja2's positional order.
const ARG_NAMES: &[(&str, &[&str])] = &[
    ("default", &["value", "boolean"]),
    ("d", &["value", "boolean"]),
    ("join", &["sep"]),
    ("replace", &["from", "to"]),
    ("truncate", &["length", "end"]),
    ("split", &["pat"]),
    ("indent", &["width"]),
    ("round", &["precision", "method"]),
    ("nth", &["n"]),
    ("get", &["key", "default"]),
    ("map", &["filter"]),
    ("select", &["test", "value"]),
    ("reject", &["test", "value"]),
    ("ternary", &["yes", "no", "none"]),
    ("regex_replace", &["pattern", "replacement"]),
    ("regex_search", &["pattern"]),
    ("hash", &["algo"]),
    ("mandatory", &["msg"]),
    ("trim", &["pat"]),
    ("to_nice_json", &["indent"]),
    ("dict2items", &["key_name", "value_name"]),
    ("items2dict", &["key_name", "value_name"]),
    ("sort", &["attribute"]),
    ("match", &["pat"]),
    ("search", &["pat"]),
    ("starting_with", &["pat"]),
    ("ending_with", &["pat"]),
    ("containing", &["pat"]),
    ("divisible_by", &["divisor"]),
    ("range", &["end"]),
];

/// For a syntax error at `offset`: the Jinja2 habit it looks like, and what to write.
pub fn hint_at(text: &str, offset: usize) -> Option<String> {
    if let Some(h) = escape_hint(&text[offset.min(text.len())..]) {
        return Some(h);
    }
    let before = text.get(..offset)?;
    let trimmed = before.trim_end();
    // A positional argument: `name(` right before the bad token.
    if let Some(call) = trimmed.strip_suffix('(') {
        let name = trailing_ident(call)?;
        return Some(positional(text, offset, name));
    }
    let word = leading_ident(&text[offset..]);
    match word {
        "macro" | "call" | "import" | "from" => Some(
            "tera 2 has no macros: define a component `{% component name(arg) %}…{% endcomponent name %}` and call it as `{{ <name arg={value} /> }}` (docs/templates.md)".into(),
        ),
        "with" | "do" => Some(format!("tera has no `{{% {word} %}}`: use `{{% set name = value %}}`")),
        _ if trimmed.ends_with('.')
            && !word.is_empty()
            && text[offset + word.len()..].trim_start().starts_with('(') =>
        {
            let method = word;
            Some(format!(
                "tera has no Python methods: write a filter, e.g. `x | {}`",
                match method {
                    "startswith" => "starting_with(pat=…)` (a test: `x is starting_with(pat=\"a\")`",
                    "endswith" => "ending_with(pat=…)` (a test: `x is ending_with(pat=\"a\")`",
                    "split" => "split(pat=\",\")",
                    "strip" => "trim",
                    "items" => "pairs",
                    other => other,
                }
            ))
        }
        _ => None,
    }
}

/// A string literal with a backslash tera does not take (`'\d+'`, written for a regex as in
/// Python): the same literal with that backslash doubled.
fn escape_hint(rest: &str) -> Option<String> {
    let q = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let mut fixed = String::from(q);
    let mut chars = rest[1..].chars();
    let mut bad = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('"' | '\'' | '/' | '\\' | 'n' | 't' | 'r')) => {
                    fixed.push('\\');
                    fixed.push(n);
                }
                Some(n) => {
                    bad = true;
                    fixed.push_str("\\\\");
                    fixed.push(n);
                }
                None => return None,
            },
            c if c == q => {
                fixed.push(c);
                break;
            }
            c => fixed.push(c),
        }
    }
    bad.then(|| {
        format!("tera strings take only \\\\, \\n, \\t, \\r and quote escapes: write {fixed} (a regex's `\\d` is `\\\\d` here)")
    })
}

/// `default('x')` → `default(value='x')`.
fn positional(text: &str, offset: usize, name: &str) -> String {
    let args = call_args(&text[offset..]);
    let names = ARG_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, a)| *a);
    let mut positional = names.iter();
    let written: Vec<String> = args
        .iter()
        .map(|a| {
            if is_named(a) {
                a.clone()
            } else {
                match positional.next() {
                    Some(n) => format!("{n}={a}"),
                    None => format!("…={a}"),
                }
            }
        })
        .collect();
    if let (true, Some(h)) = (names.is_empty(), instead(Kind::Filter, name)) {
        return format!("`{name}` is not a tera filter: {h}");
    }
    if names.is_empty() {
        format!(
            "tera takes named arguments only: write `{name}(name=value)` (see docs/templates.md for `{name}`)"
        )
    } else {
        format!(
            "tera takes named arguments only: write `{name}({})`",
            written.join(", ")
        )
    }
}

/// The arguments of a call, from just after `(` to the matching `)`, split at top-level commas.
fn call_args(rest: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut cur = String::new();
    for c in rest.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'' | '`') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '(' | '[' | '{') => {
                depth += 1;
                cur.push(c);
            }
            (None, ')') if depth == 0 => break,
            (None, ')' | ']' | '}') => {
                depth -= 1;
                cur.push(c);
            }
            (None, ',') if depth == 0 => args.push(std::mem::take(&mut cur)),
            (None, c) => cur.push(c),
        }
    }
    args.push(cur);
    args.into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

fn is_named(arg: &str) -> bool {
    let ident = leading_ident(arg);
    !ident.is_empty() && {
        let rest = arg[ident.len()..].trim_start();
        rest.starts_with('=') && !rest.starts_with("==")
    }
}

fn trailing_ident(s: &str) -> Option<&str> {
    let start = s
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let id = &s[start..];
    (!id.is_empty()).then_some(id)
}

fn leading_ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// For a filter, test or function tera does not know: the cutover way, when there is one.
pub fn instead(kind: Kind, name: &str) -> Option<String> {
    let s = match (kind, name) {
        (Kind::Filter, "d") => "write `default(value=…)`",
        (Kind::Filter, "selectattr") => "write `select(attribute=\"name\", value=…)`",
        (Kind::Filter, "rejectattr") => "write `reject(attribute=\"name\", value=…)`",
        (Kind::Filter, "list") => "a filter's list result is already a list: drop `| list`",
        (Kind::Filter, "items" | "dictsort") => "write `pairs` (or `dict2items`)",
        (Kind::Filter, "format") => "join text with `~`: `\"port \" ~ port`",
        (Kind::Filter, "combine") => "set the merged value in the inventory or the play's vars",
        (Kind::Filter, "regex_findall") => "write `regex_search(pattern=…)` for the first match",
        (Kind::Filter, "to_nice_yaml" | "from_json" | "from_yaml") => {
            "parse data in the inventory, not in templates"
        }
        (Kind::Filter, "password_hash") => {
            "hash passwords before they reach the inventory (cutover keeps them as secrets)"
        }
        (Kind::Filter, "e") => "write `escape` (HTML) or `xml_escape`",
        (Kind::Function, "lookup" | "query" | "q") => {
            "cutover has no lookups: pass the value as a variable (inventory, play vars or -e)"
        }
        (Kind::Function, "super") => return None,
        (Kind::Test, "equalto" | "sameas") => "compare with `==`",
        (Kind::Test, "in") => "write `x in list`",
        _ => return None,
    };
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_arguments_get_their_names() {
        let t = "{{ x | default('a', true) }}";
        let at = t.find("'a'").unwrap();
        assert_eq!(
            hint_at(t, at).unwrap(),
            "tera takes named arguments only: write `default(value='a', boolean=true)`"
        );
        let t = "{{ s | replace('a', to='b') }}";
        assert_eq!(
            hint_at(t, t.find("'a'").unwrap()).unwrap(),
            "tera takes named arguments only: write `replace(from='a', to='b')`"
        );
    }
}
