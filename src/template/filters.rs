//! The filters and tests cutover adds to tera's own, for config files and for habits brought
//! from Ansible (`to_json`, `b64encode`, `regex_replace`, `hash`, `dict2items`…).
//!
//! tera takes named arguments only (`join(sep=",")`); each filter here documents its
//! argument names, and `jinja.rs` tells a user who wrote them positionally what to write.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value as J;
use sha2::Digest as _;
use tera::{Kwargs, State, TeraResult, Value};

use super::scan::Kind;

/// tera's own filters (2.4), for suggestions and the reference page.
pub const TERA_FILTERS: &[&str] = &[
    "safe",
    "default",
    "upper",
    "lower",
    "wordcount",
    "escape",
    "escape_html",
    "escape_xml",
    "newlines_to_br",
    "pluralize",
    "trim",
    "trim_start",
    "trim_end",
    "replace",
    "capitalize",
    "title",
    "truncate",
    "indent",
    "str",
    "int",
    "float",
    "length",
    "reverse",
    "split",
    "abs",
    "round",
    "first",
    "last",
    "nth",
    "join",
    "sort",
    "unique",
    "get",
    "values",
    "keys",
    "pairs",
    "group_by",
];

/// cutover's filters.
pub const CUTOVER_FILTERS: &[&str] = &[
    "xml_escape",
    "shell_quote",
    "quote",
    "unquoted",
    "hostvar",
    "json_encode",
    "to_json",
    "to_nice_json",
    "to_yaml",
    "to_nice_yaml",
    "b64encode",
    "b64decode",
    "urlencode",
    "regex_replace",
    "regex_search",
    "mandatory",
    "ternary",
    "basename",
    "dirname",
    "hash",
    "dict2items",
    "items2dict",
    "map",
    "select",
    "reject",
    "string",
    "bool",
];

pub const TERA_TESTS: &[&str] = &[
    "string",
    "number",
    "map",
    "bool",
    "array",
    "integer",
    "float",
    "none",
    "iterable",
    "defined",
    "undefined",
    "odd",
    "even",
    "divisible_by",
    "starting_with",
    "ending_with",
    "containing",
];

pub const CUTOVER_TESTS: &[&str] = &["match", "search"];

/// Every known name of a kind, for "did you mean".
pub fn names(kind: Kind) -> impl Iterator<Item = &'static str> {
    let lists: [&[&'static str]; 2] = match kind {
        Kind::Filter => [TERA_FILTERS, CUTOVER_FILTERS],
        Kind::Test => [TERA_TESTS, CUTOVER_TESTS],
        Kind::Function => [&["range", "throw"], &[]],
        Kind::Template | Kind::Component => [&[], &[]],
    };
    lists.into_iter().flatten().copied()
}

/// Add cutover's filters and tests to a tera instance.
pub fn register(tera: &mut tera::Tera) {
    tera.register_filter("xml_escape", xml_escape);
    tera.register_filter("shell_quote", shell_quote);
    tera.register_filter("quote", shell_quote);
    tera.register_filter("unquoted", unquoted);
    tera.register_filter("hostvar", hostvar);
    tera.register_filter("json_encode", json_encode);
    tera.register_filter("to_json", to_json);
    tera.register_filter("to_nice_json", to_nice_json);
    tera.register_filter("to_yaml", to_yaml);
    tera.register_filter("to_nice_yaml", to_yaml);
    tera.register_filter("b64encode", b64encode);
    tera.register_filter("b64decode", b64decode);
    tera.register_filter("urlencode", urlencode);
    tera.register_filter("regex_replace", regex_replace);
    tera.register_filter("regex_search", regex_search);
    tera.register_filter("mandatory", mandatory);
    tera.register_filter("ternary", ternary);
    tera.register_filter("basename", basename);
    tera.register_filter("dirname", dirname);
    tera.register_filter("hash", hash);
    tera.register_filter("dict2items", dict2items);
    tera.register_filter("items2dict", items2dict);
    tera.register_filter("map", map);
    tera.register_filter("select", |v: Value, k: Kwargs, s: &State| {
        select(v, k, s, true)
    });
    tera.register_filter("reject", |v: Value, k: Kwargs, s: &State| {
        select(v, k, s, false)
    });
    tera.register_filter("string", |v: Value, _: Kwargs, _: &State| text(&v));
    tera.register_filter("group_by", group_by);
    tera.register_filter("bool", to_bool);
    tera.register_test("match", |v: &str, k: Kwargs, _: &State| {
        regex_test(v, k, true)
    });
    tera.register_test("search", |v: &str, k: Kwargs, _: &State| {
        regex_test(v, k, false)
    });
}

fn err(msg: impl std::fmt::Display) -> tera::Error {
    tera::Error::message(msg)
}

/// tera hands undefined values to filters (so that `default` works); every other filter
/// refuses them as tera's own do, as an argument error that tera places on the variable.
fn defined(v: &Value) -> TeraResult<()> {
    if v.is_undefined() {
        return Err(tera::Error::new(tera::ErrorKind::InvalidArgument {
            expected_type: "a defined value".into(),
            actual_type: "undefined".into(),
        }));
    }
    Ok(())
}

pub fn to_j(v: &Value) -> J {
    serde_json::to_value(v).unwrap_or(J::Null)
}

pub fn from_j(v: &J) -> Value {
    Value::from_serializable(v)
}

/// A value as text, as `{{ }}` would print it (strings without quotes).
fn text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

/// `{{ password | xml_escape }}`: safe inside XML text and attribute values.
fn xml_escape(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let s = text(&value);
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
    Ok(out)
}

/// `{{ path | shell_quote }}` (or `quote`): one shell word, whatever the value holds. Marked
/// safe, so a command string does not quote it a second time.
fn shell_quote(value: Value, _: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    Ok(Value::safe_string(&crate::shell::quote(&text(&value))))
}

/// `{{ flags | unquoted }}` in a `shell`/`command` string: inserted as it is, not as one word.
fn unquoted(value: Value, _: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    Ok(Value::safe_string(&text(&value)))
}

/// `{{ groups.app_nodes | hostvar(name="address", hostvars=hostvars) | join(sep=",") }}`:
/// one variable of each host in a list of host names.
fn hostvar(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    let name: &str = kwargs
        .get("name")?
        .ok_or_else(|| err("filter `hostvar` needs name=\"variable\""))?;
    let all: Value = kwargs
        .get("hostvars")?
        .ok_or_else(|| err("filter `hostvar` needs hostvars=hostvars"))?;
    let hosts = value
        .as_array()
        .ok_or_else(|| err("filter `hostvar` applies to a list of host names"))?;
    let all = to_j(&all);
    let mut out = Vec::new();
    for h in hosts {
        let h = h
            .as_str()
            .ok_or_else(|| err("filter `hostvar` applies to a list of host names"))?;
        let v = all
            .get(h)
            .and_then(|vars| vars.get(name))
            .ok_or_else(|| err(format!("host `{h}` has no variable `{name}`")))?;
        out.push(from_j(v));
    }
    Ok(Value::from(out))
}

/// `{{ x | json_encode }}`: compact JSON (tera 1's filter, kept for cutover's own use).
fn json_encode(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    serde_json::to_string(&to_j(&value)).map_err(err)
}

/// `{{ x | to_json }}`: JSON as Ansible's `to_json` writes it (Python's `json.dumps`: `, ` and
/// `: ` separators, non-ASCII as `\uXXXX`); mapping keys in alphabetical order.
fn to_json(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonJson);
    serde::Serialize::serialize(&to_j(&value), &mut ser).map_err(err)?;
    Ok(ascii_only(&String::from_utf8(buf).map_err(err)?))
}

/// `{{ x | to_nice_json }}`: as Ansible's (indent 4, keys sorted; `indent=` to change).
fn to_nice_json(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let indent = kwargs.get::<usize>("indent")?.unwrap_or(4).min(16);
    let pad = " ".repeat(indent);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&to_j(&value), &mut ser).map_err(err)?;
    Ok(ascii_only(&String::from_utf8(buf).map_err(err)?))
}

/// Python's `json.dumps` separators.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// Non-ASCII characters as `\uXXXX` (they only occur inside JSON strings), as Python's
/// `ensure_ascii`.
fn ascii_only(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// `{{ x | to_yaml }}`: block-style YAML ending with a newline, as Ansible's `to_nice_yaml`
/// (Ansible's `to_yaml` may write short lists in flow style; cutover always writes blocks).
fn to_yaml(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    serde_saphyr::to_string(&to_j(&value)).map_err(err)
}

fn b64encode(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(text(&value)))
}

fn b64decode(value: &str, _: Kwargs, _: &State) -> TeraResult<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| err(format!("b64decode: not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| err("b64decode: the decoded bytes are not UTF-8 text"))
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn urlencode(value: Value, _: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let mut out = String::new();
    for b in text(&value).bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn compile(pattern: &str, filter: &str) -> TeraResult<regex::Regex> {
    regex::Regex::new(pattern)
        .map_err(|e| err(format!("{filter}: invalid regular expression: {e}")))
}

/// `regex_replace(pattern='(\w+)', replacement='<\1>')`: Python's `\1` backreferences work
/// as well as Rust's `${1}`.
fn regex_replace(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let pattern: &str = kwargs.must_get("pattern")?;
    let replacement: &str = kwargs.get("replacement")?.unwrap_or("");
    let re = compile(pattern, "regex_replace")?;
    let backref = regex::Regex::new(r"\\(\d+)").expect("static regex");
    let escaped = replacement.replace('$', "$$");
    let replacement = backref.replace_all(&escaped, "$${$1}");
    Ok(re
        .replace_all(&text(&value), replacement.as_ref())
        .into_owned())
}

/// `regex_search(pattern='port=(\d+)')`: the first match (or none), as Ansible.
fn regex_search(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    let pattern: &str = kwargs.must_get("pattern")?;
    let re = compile(pattern, "regex_search")?;
    Ok(re
        .find(&text(&value))
        .map_or_else(Value::none, |m| Value::from(m.as_str())))
}

fn regex_test(value: &str, kwargs: Kwargs, anchored: bool) -> TeraResult<bool> {
    let pat: &str = kwargs.must_get("pat")?;
    let re = compile(pat, if anchored { "match" } else { "search" })?;
    Ok(match re.find(value) {
        Some(m) => !anchored || m.start() == 0,
        None => false,
    })
}

/// `{{ x | mandatory }}`: fails when `x` is undefined (tera already fails on undefined names
/// in `{{ }}`; this gives the template author's message).
fn mandatory(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    if value.is_undefined() {
        let msg: Option<&str> = kwargs.get("msg")?;
        return Err(err(msg.unwrap_or("mandatory variable not defined")));
    }
    Ok(value)
}

/// `{{ enabled | ternary(yes="on", no="off") }}`.
fn ternary(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    if value.is_none() {
        if let Some(v) = kwargs.get::<Value>("none")? {
            return Ok(v);
        }
    }
    let key = if value.is_truthy() { "yes" } else { "no" };
    kwargs.must_get::<Value>(key)
}

fn basename(value: &str, _: Kwargs, _: &State) -> String {
    value.rsplit('/').next().unwrap_or("").to_string()
}

fn dirname(value: &str, _: Kwargs, _: &State) -> String {
    match value.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => value[..i].to_string(),
        None => String::new(),
    }
}

/// `{{ x | hash(algo="sha256") }}`: hex digest (sha224, sha256, sha384, sha512).
fn hash(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<String> {
    defined(&value)?;
    let algo: &str = kwargs.get("algo")?.unwrap_or("sha256");
    let data = text(&value);
    let digest: Vec<u8> = match algo {
        "sha224" => sha2::Sha224::digest(data.as_bytes()).to_vec(),
        "sha256" => sha2::Sha256::digest(data.as_bytes()).to_vec(),
        "sha384" => sha2::Sha384::digest(data.as_bytes()).to_vec(),
        "sha512" => sha2::Sha512::digest(data.as_bytes()).to_vec(),
        other => {
            return Err(err(format!(
                "hash: unknown algorithm `{other}` (sha224, sha256, sha384 or sha512)"
            )))
        }
    };
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// `{{ m | dict2items }}`: `[{key, value}, …]`, keys in order.
fn dict2items(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    let k: &str = kwargs.get("key_name")?.unwrap_or("key");
    let v: &str = kwargs.get("value_name")?.unwrap_or("value");
    let J::Object(m) = to_j(&value) else {
        return Err(err("dict2items applies to a mapping"));
    };
    let items: Vec<J> = m
        .into_iter()
        .map(|(key, val)| serde_json::json!({ k: key, v: val }))
        .collect();
    Ok(from_j(&J::Array(items)))
}

fn items2dict(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    let k: &str = kwargs.get("key_name")?.unwrap_or("key");
    let v: &str = kwargs.get("value_name")?.unwrap_or("value");
    let J::Array(items) = to_j(&value) else {
        return Err(err("items2dict applies to a list of {key, value} mappings"));
    };
    let mut out = serde_json::Map::new();
    for item in items {
        let key = match item.get(k) {
            Some(J::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(err(format!("items2dict: an item has no `{k}`"))),
        };
        out.insert(key, item.get(v).cloned().unwrap_or(J::Null));
    }
    Ok(from_j(&J::Object(out)))
}

/// `group_by(attribute=…)`, replacing tera's: its groups come out of a hash map, in a
/// different order at each run, which would rewrite config files for nothing. Here the groups
/// are in key order (as tera 1 and Jinja2's `groupby`); items without the attribute's value
/// (none) are left out.
fn group_by(value: Value, kwargs: Kwargs, _: &State) -> TeraResult<Value> {
    defined(&value)?;
    let attribute: &str = kwargs.must_get("attribute")?;
    let items = value
        .as_array()
        .ok_or_else(|| err("group_by applies to a list"))?;
    let mut groups: std::collections::BTreeMap<String, Vec<J>> = Default::default();
    for (i, item) in items.iter().enumerate() {
        let key = item
            .get_from_path(attribute)
            .ok_or_else(|| err(format!("group_by: item {i} has no attribute `{attribute}`")))?;
        if key.is_none() {
            continue;
        }
        groups.entry(text(key)).or_default().push(to_j(item));
    }
    let map: serde_json::Map<String, J> =
        groups.into_iter().map(|(k, v)| (k, J::Array(v))).collect();
    Ok(from_j(&J::Object(map)))
}

fn no_kwargs() -> Kwargs {
    Kwargs::new(Arc::new(tera::Map::new()))
}

/// `map(attribute="name")` or `map(filter="upper")`, as Jinja2's `map`.
fn map(value: Value, kwargs: Kwargs, state: &State) -> TeraResult<Vec<Value>> {
    defined(&value)?;
    let items = value
        .as_array()
        .ok_or_else(|| err("map applies to a list"))?;
    let attribute: Option<&str> = kwargs.get("attribute")?;
    let filter: Option<&str> = kwargs.get("filter")?;
    items
        .iter()
        .map(|item| match (attribute, filter) {
            (Some(a), _) => item
                .get_from_path(a)
                .cloned()
                .ok_or_else(|| err(format!("map: an item has no attribute `{a}`"))),
            (None, Some(f)) => state.call_filter(f, item, no_kwargs()),
            (None, None) => Err(err(
                "map needs attribute=\"name\" or filter=\"name\" (as `map(attribute=\"x\")`)",
            )),
        })
        .collect()
}

/// `select(attribute=…, test=…, value=…)`: the items whose attribute (or the item) passes the
/// test: `truthy` (default), `defined`, `none`, `equalto` (with `value`), `match`/`search`
/// (with `value` as the pattern). `reject` keeps the others.
fn select(value: Value, kwargs: Kwargs, _: &State, keep: bool) -> TeraResult<Vec<Value>> {
    let items = value
        .as_array()
        .ok_or_else(|| err("select/reject apply to a list"))?;
    let attribute: Option<&str> = kwargs.get("attribute")?;
    let test: Option<&str> = kwargs.get("test")?;
    let expected: Option<Value> = kwargs.get("value")?;
    let test = test.unwrap_or(if expected.is_some() {
        "equalto"
    } else {
        "truthy"
    });
    let mut out = Vec::new();
    for item in items {
        let v = match attribute {
            Some(a) => item.get_from_path(a).cloned(),
            None => Some(item.clone()),
        };
        let pass = match (test, &v) {
            ("defined", v) => v.is_some(),
            ("undefined", v) => v.is_none(),
            ("none", v) => v.as_ref().is_some_and(Value::is_none),
            ("truthy", v) => v.as_ref().is_some_and(Value::is_truthy),
            ("falsy", v) => !v.as_ref().is_some_and(Value::is_truthy),
            ("equalto", v) => v.is_some() && v.as_ref() == expected.as_ref(),
            (t @ ("match" | "search"), v) => {
                let pat = expected.as_ref().and_then(Value::as_str).unwrap_or("");
                let re = compile(pat, t)?;
                v.as_ref().map(text).is_some_and(|s| match re.find(&s) {
                    Some(m) => t == "search" || m.start() == 0,
                    None => false,
                })
            }
            (other, _) => {
                return Err(err(format!(
                    "select/reject: unknown test `{other}` (truthy, falsy, defined, undefined, none, equalto, match, search)"
                )))
            }
        };
        if pass == keep {
            out.push(item.clone());
        }
    }
    Ok(out)
}

/// `{{ "yes" | bool }}`: Ansible's truth table for strings (yes/on/true/1).
fn to_bool(value: Value, _: Kwargs, _: &State) -> TeraResult<bool> {
    defined(&value)?;
    Ok(match value.as_str() {
        Some(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "true" | "1" | "y"
        ),
        None => value.is_truthy(),
    })
}
