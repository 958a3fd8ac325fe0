//! Typed reading of the YAML tree with one diagnostic per problem.
//!
//! Every reader returns `None` after recording a diagnostic, so the caller can keep going
//! and find the next problem in the same file.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::yaml::{Node, Value};

/// A mapping whose keys are checked against a fixed list: unknown and duplicate keys are
/// reported once, here, with a suggestion for near misses.
pub struct Fields<'a> {
    pub node: &'a Node,
    entries: Vec<(&'a Node, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// `what` names the thing for messages ("play", "host `app1`"); `allowed` its keys.
    pub fn new(
        node: &'a Node,
        what: &str,
        allowed: &[&str],
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        let entries = mapping(node, what, diags)?;
        let mut kept: Vec<(&Node, &Node)> = Vec::new();
        for (k, v) in entries {
            let key = k.key_text();
            if !allowed.contains(&key.as_str()) {
                diags.push(
                    Diagnostic::new(
                        k.pos.clone(),
                        format!(
                            "unknown key `{key}` in {what}; expected one of: {}",
                            allowed.join(", ")
                        ),
                    )
                    .suggest(&key, allowed.iter().copied()),
                );
                continue;
            }
            kept.push((k, v));
        }
        Some(Fields {
            node,
            entries: kept,
        })
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Report a key that must be present.
    pub fn require(&self, key: &str, what: &str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let found = self.get(key);
        if found.is_none() {
            diags.push(Diagnostic::new(
                self.node.pos.clone(),
                format!("{what} is missing required key `{key}`"),
            ));
        }
        found
    }

    pub fn str(&self, key: &str, diags: &mut Diagnostics) -> Option<String> {
        self.get(key).and_then(|n| string(n, key, diags))
    }
    pub fn bool(&self, key: &str, diags: &mut Diagnostics) -> Option<bool> {
        self.get(key).and_then(|n| boolean(n, key, diags))
    }
    pub fn int(&self, key: &str, min: i64, max: i64, diags: &mut Diagnostics) -> Option<i64> {
        self.get(key).and_then(|n| integer(n, key, min, max, diags))
    }
    pub fn str_list(&self, key: &str, diags: &mut Diagnostics) -> Option<Vec<(String, Pos)>> {
        self.get(key).and_then(|n| string_list(n, key, diags))
    }
}

/// The entries of a mapping; reports a non-mapping and duplicate keys.
pub fn mapping<'a>(
    node: &'a Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Vec<(&'a Node, &'a Node)>> {
    match &node.value {
        Value::Map(entries) => {
            let mut seen: Vec<(String, &Pos)> = Vec::new();
            let mut out = Vec::new();
            for (k, v) in entries {
                let key = k.key_text();
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == key) {
                    diags.push(
                        Diagnostic::new(k.pos.clone(), format!("duplicate key `{key}` in {what}"))
                            .with_help(format!(
                                "`{key}` is already set at line {}; remove one of them",
                                first.line
                            )),
                    );
                    continue;
                }
                seen.push((key, &k.pos));
                out.push((k, v));
            }
            Some(out)
        }
        // `key:` with nothing after it is an empty mapping in practice; accept it.
        Value::Null => Some(Vec::new()),
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("expected a mapping for {what}, found {}", other.kind()),
            ));
            None
        }
    }
}

pub fn sequence<'a>(node: &'a Node, what: &str, diags: &mut Diagnostics) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("expected a list for `{what}`, found {}", other.kind()),
            ));
            None
        }
    }
}

pub fn string(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("expected a string for `{what}`, found {}", other.kind()),
            ));
            None
        }
    }
}

/// Booleans are `true`/`false` only. YAML 1.1's `yes`/`no`/`on`/`off` arrive here as strings and
/// are refused with a hint, instead of silently meaning something.
pub fn boolean(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) => {
            let d = Diagnostic::new(
                node.pos.clone(),
                format!(
                    "expected a boolean (true or false) for `{what}`, found the string \"{s}\""
                ),
            );
            let lower = s.to_ascii_lowercase();
            let d = match lower.as_str() {
                "yes" | "on" | "y" => {
                    d.with_help("write `true`; `yes`/`on` are strings in cutover's YAML")
                }
                "no" | "off" | "n" => {
                    d.with_help("write `false`; `no`/`off` are strings in cutover's YAML")
                }
                _ => d,
            };
            diags.push(d);
            None
        }
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!(
                    "expected a boolean (true or false) for `{what}`, found {}",
                    other.kind()
                ),
            ));
            None
        }
    }
}

pub fn integer(
    node: &Node,
    what: &str,
    min: i64,
    max: i64,
    diags: &mut Diagnostics,
) -> Option<i64> {
    match &node.value {
        Value::Int(i) if (*i >= min && *i <= max) => Some(*i),
        Value::Int(i) => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("`{what}` must be between {min} and {max}, found {i}"),
            ));
            None
        }
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("expected an integer for `{what}`, found {}", other.kind()),
            ));
            None
        }
    }
}

/// A list of strings; a single string is accepted as a list of one (for `tags: upgrade`).
pub fn string_list(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Vec<(String, Pos)>> {
    match &node.value {
        Value::Str(s) => Some(vec![(s.clone(), node.pos.clone())]),
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for item in items {
                match string(item, what, diags) {
                    Some(s) => out.push((s, item.pos.clone())),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        other => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!(
                    "expected a list of strings for `{what}`, found {}",
                    other.kind()
                ),
            ));
            None
        }
    }
}

/// A variables mapping (`vars:`): names must be identifiers usable in templates.
pub fn variables(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, serde_json::Value, Pos)> {
    let Some(entries) = mapping(node, what, diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let name = k.key_text();
        if !is_identifier(&name) {
            diags.push(
                Diagnostic::new(
                    k.pos.clone(),
                    format!("variable name `{name}` is not usable in templates"),
                )
                .with_help(
                    "use letters, digits and underscores, starting with a letter or underscore",
                ),
            );
            continue;
        }
        if let Some(d) = reserved_variable(&name, &k.pos) {
            diags.push(d);
            continue;
        }
        let value = v.to_json();
        crate::secrets::note_variable(&name, &value);
        out.push((name, value, k.pos.clone()));
    }
    out
}

/// A variable named like one cutover sets itself for every step (`context_names`) would
/// never be seen: the engine's value hides it.
pub fn reserved_variable(name: &str, pos: &Pos) -> Option<Diagnostic> {
    use crate::context_names::RESERVED;
    RESERVED.contains(&name).then(|| {
        Diagnostic::new(
            pos.clone(),
            format!("variable `{name}` is set by cutover itself; this value would never be seen"),
        )
        .with_help(format!(
            "reserved: {}; rename the variable",
            RESERVED.join(", ")
        ))
    })
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
