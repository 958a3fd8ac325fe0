//! YAML loading into a tree where every node knows its line and column.
//!
//! serde-saphyr parses (it reports syntax errors with line and column and does not panic on
//! hostile input); its `Spanned` wrapper gives each node its position. We deserialize into this
//! untyped tree rather than straight into typed structs so that validation can report *every*
//! problem in a file (unknown keys, wrong types, duplicates), each at its own position, and
//! suggest fixes — serde's derive stops at the first error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Pos};

/// Inputs larger than this are refused before parsing: no inventory or playbook is this big,
/// and a runaway file should not eat the controller's memory.
pub const MAX_INPUT_BYTES: u64 = crate::input::MAX_INPUT_BYTES;

/// A parsed YAML node with its position in its file.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicates are kept so validation can report them.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What a reader would call this kind of value, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Convert to a JSON value (the variable model shared with tera).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.key_text(), v.to_json());
                }
                J::Object(map)
            }
        }
    }

    /// A mapping key as text (YAML allows `1: x` or `true: x`; we treat keys as names).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".into(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }
}

/// One YAML source file, kept for error snippets.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Read and parse one YAML file. Every failure is a diagnostic naming the file and position.
pub fn load_file(path: &Path) -> Result<(Arc<Source>, Node), Diagnostic> {
    let file = path.to_path_buf();
    let bytes = crate::input::read(path, MAX_INPUT_BYTES).map_err(|e| match e {
        crate::input::InputError::Directory => {
            Diagnostic::file_error(&file, "is a directory, expected a YAML file")
        }
        e => Diagnostic::file_error(&file, e.to_string()),
    })?;
    let source = Arc::new(Source {
        path: file,
        text: String::new(),
    });
    parse_bytes(source, bytes)
}

/// Parse YAML from memory (used by tests and fuzzing, and by `load_file`).
pub fn parse_bytes(source: Arc<Source>, bytes: Vec<u8>) -> Result<(Arc<Source>, Node), Diagnostic> {
    let path = source.path.clone();
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let pos = pos_at_byte(&path, valid);
            let bad = e.as_bytes()[e.utf8_error().valid_up_to()];
            return Err(Diagnostic::new(
                pos,
                format!("file is not UTF-8 text (byte 0x{bad:02x}); expected a YAML text file"),
            ));
        }
    };
    let source = Arc::new(Source {
        path: path.clone(),
        text,
    });
    if source.text.trim().is_empty() || only_comments(&source.text) {
        return Err(Diagnostic::new(
            Pos::start(&path),
            "file is empty: expected a YAML document",
        ));
    }
    if let Some((line, col)) = first_tab_indent(&source.text) {
        return Err(Diagnostic::new(
            Pos::new(&path, line, col),
            "tab character used for indentation; YAML indents with spaces only",
        ));
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        with_snippet: false,
    };
    let parsed: Result<Spanned<RawNode>, _> =
        serde_saphyr::from_str_with_options(&source.text, options);
    match parsed {
        Ok(root) => {
            let node = root.into_node(&path);
            Ok((source, node))
        }
        Err(e) => {
            let (line, col) = e
                .location()
                .filter(|l| l.line() > 0)
                .map_or((1, 1), |l| (l.line() as u32, l.column().max(1) as u32));
            let msg = clean_parser_message(&e.without_snippet().to_string());
            let d = match msg.strip_prefix("budget breached: ") {
                Some(limit) => Diagnostic::new(
                    Pos::new(&path, line, col),
                    format!("invalid YAML: the document is too big to load (parser limit reached: {limit})"),
                )
                .with_help("aliases (`*name`) that repeat other aliases multiply a small file; expand them by hand"),
                None => Diagnostic::new(Pos::new(&path, line, col), format!("invalid YAML: {msg}")),
            };
            Err(match syntax_help(&source.text, line, col, &msg) {
                Some(help) if d.help.is_none() => d.with_help(help),
                _ => d,
            })
        }
    }
}

/// libyaml's messages name what the parser expected, not what the author got wrong; for the
/// common slips say it plainly. An unclosed `[` or `{` is reported where the parser gave up,
/// often lines later, so point back at it.
fn syntax_help(text: &str, line: u32, col: u32, msg: &str) -> Option<String> {
    if let Some((c, l, cl)) = unclosed_flow_bracket(text, line, col) {
        let close = if c == '[' { ']' } else { '}' };
        return Some(format!(
            "the `{c}` at line {l}, column {cl} is never closed with `{close}`"
        ));
    }
    if msg.contains("mapping values are not allowed") {
        return Some(
            "check this line's indentation; a value containing `: ` must be quoted".into(),
        );
    }
    if msg.contains("did not find expected key") {
        return Some("check this line's indentation against the lines above".into());
    }
    None
}

/// The innermost flow collection (`[` or `{`) still open at `line`:`col`, by a light scan that
/// skips comments and quoted strings.
fn unclosed_flow_bracket(text: &str, line: u32, col: u32) -> Option<(char, u32, u32)> {
    let mut stack: Vec<(char, u32, u32)> = Vec::new();
    for (li, l) in text.lines().enumerate() {
        let ln = li as u32 + 1;
        if ln > line {
            break;
        }
        let chars: Vec<char> = l.chars().collect();
        let end = if ln == line {
            (col as usize).saturating_sub(1).min(chars.len())
        } else {
            chars.len()
        };
        let mut quote: Option<char> = None;
        let mut prev: Option<char> = None;
        for (ci, &c) in chars[..end].iter().enumerate() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                continue;
            }
            let starts_value = matches!(prev, None | Some(':' | '-' | ',' | '[' | '{' | '?'));
            match c {
                '#' if ci == 0 || chars[ci - 1].is_whitespace() => break,
                '"' | '\'' if starts_value => quote = Some(c),
                '[' | '{' if starts_value || !stack.is_empty() => {
                    stack.push((c, ln, ci as u32 + 1))
                }
                ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            }
            if !c.is_whitespace() {
                prev = Some(c);
            }
        }
    }
    stack.pop()
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// YAML forbids tabs in indentation; the parser's own message for it is cryptic, so we look
/// first and say it plainly.
fn first_tab_indent(text: &str) -> Option<(u32, u32)> {
    for (i, line) in text.lines().enumerate() {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(col) = indent.find('\t') {
            if line.trim_start_matches([' ', '\t']).is_empty() {
                continue;
            }
            return Some((i as u32 + 1, col as u32 + 1));
        }
    }
    None
}

fn pos_at_byte(path: &Path, valid_prefix: &[u8]) -> Pos {
    let text = String::from_utf8_lossy(valid_prefix);
    let line = text.matches('\n').count() as u32 + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Pos::new(path, line, col)
}

/// The parser's messages sometimes repeat the position; keep only the sentence.
fn clean_parser_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches(':').to_string()
}

/// The shape serde-saphyr hands us before positions are attached to every node.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

trait IntoNode {
    fn into_node(self, path: &Path) -> Node;
}

impl IntoNode for Spanned<RawNode> {
    fn into_node(self, path: &Path) -> Node {
        let pos = Pos::new(
            path,
            self.referenced.line() as u32,
            self.referenced.column() as u32,
        );
        let value = match self.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::Int(i) => Value::Int(i),
            RawNode::Float(f) => Value::Float(f),
            RawNode::Str(s) => Value::Str(s),
            RawNode::Seq(items) => {
                Value::Seq(items.into_iter().map(|n| n.into_node(path)).collect())
            }
            RawNode::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_node(path), v.into_node(path)))
                    .collect(),
            ),
        };
        Node { value, pos }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawNode::Int(i)),
            Err(_) => Ok(RawNode::Float(v as f64)),
        }
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        Ok(i64::try_from(v).map_or(RawNode::Float(v as f64), RawNode::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        Ok(i64::try_from(v).map_or(RawNode::Float(v as f64), RawNode::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, Diagnostic> {
        let src = Arc::new(Source {
            path: "t.yml".into(),
            text: String::new(),
        });
        parse_bytes(src, text.as_bytes().to_vec()).map(|(_, n)| n)
    }

    #[test]
    fn positions_of_keys_and_values() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: yes}\n").unwrap();
        let Value::Map(entries) = &n.value else {
            panic!("map")
        };
        assert_eq!(entries[1].0.pos.line, 2);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("seq")
        };
        assert_eq!((items[0].pos.line, items[0].pos.col), (3, 5));
        let Value::Map(inner) = &items[1].value else {
            panic!("map")
        };
        // strict booleans: `yes` stays a string
        assert!(matches!(inner[0].1.value, Value::Str(ref s) if s == "yes"));
    }

    #[test]
    fn duplicate_keys_are_kept_for_validation() {
        let n = parse("a: 1\na: 2\n").unwrap();
        let Value::Map(entries) = &n.value else {
            panic!("map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0.pos.line, 2);
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    }

    #[test]
    fn unclosed_bracket_is_pointed_at() {
        let e = parse("a:\n  tags: [x, y\n  b: 1\n").unwrap_err();
        assert!(
            e.help.as_deref().unwrap_or("").contains("line 2, column 9"),
            "{e:?}"
        );
        let e = parse("a: {x: 1}\n  b: 'it''s [not'\n c: 2\n").unwrap_err();
        assert!(
            !e.help.as_deref().unwrap_or("").contains("never closed"),
            "{e:?}"
        );
    }

    #[test]
    fn tabs_binary_and_empty_are_named() {
        let e = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 1));
        assert!(e.message.contains("tab"));
        let src = Arc::new(Source {
            path: "t.yml".into(),
            text: String::new(),
        });
        let e = parse_bytes(src, b"a: 1\nb: \xff\xfe\n".to_vec()).unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 4));
        assert!(e.message.contains("UTF-8"));
        let e = parse("# only a comment\n").unwrap_err();
        assert!(e.message.contains("empty"));
    }
}
