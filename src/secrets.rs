//! Secrets: variables kept encrypted in the repository (age format, like ansible-vault but with
//! a standard tool), decrypted at run time with a key from the environment or a file, and
//! masked in everything cutover prints or writes — logs, plans, diffs, journals, JSON, JUnit,
//! error messages — while the real value still reaches the host.
//!
//! Masking is done where output leaves the program (each sink calls [`redact`]), not where
//! values are used, so a secret that ends up inside a rendered template, an error message or a
//! command's output is caught as well.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::{OnceLock, RwLock};

use age::secrecy::ExposeSecret;
use anyhow::{anyhow, bail, Context as _, Result};

/// The text that replaces a secret's value.
pub fn marker(name: &str) -> String {
    format!("[secret:{name}]")
}

#[derive(Default)]
struct Redactor {
    /// (text to hide, variable name), longest first so an escaped form is hidden whole.
    needles: Vec<(String, String)>,
    /// (variable name, value) as registered, for templates to trace what derives from them.
    values: Vec<(String, String)>,
}

fn redactor() -> &'static RwLock<Redactor> {
    static R: OnceLock<RwLock<Redactor>> = OnceLock::new();
    R.get_or_init(|| RwLock::new(Redactor::default()))
}

/// Hide this value (and the forms it takes in XML, shell and JSON) from all output.
pub fn register(name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    {
        let mut r = redactor().write().unwrap_or_else(|e| e.into_inner());
        if !r.values.iter().any(|(n, v)| n == name && v == value) {
            r.values.push((name.to_string(), value.to_string()));
        }
    }
    add_needles(name, forms(value));
}

/// Hide a text derived from secrets (a secret through a filter, as templates find them):
/// the text itself only, under the name `derived`.
pub fn register_derived(text: &str) {
    if !text.is_empty() {
        add_needles("derived", forms(text));
    }
}

/// The registered secrets, as (variable name, value).
pub fn values() -> Vec<(String, String)> {
    let r = redactor().read().unwrap_or_else(|e| e.into_inner());
    r.values.clone()
}

/// Replace each (text, name) of `needles` (longest first) by the name's marker.
pub fn redact_with(text: &str, needles: &[(String, String)]) -> String {
    replace_needles(text, needles)
}

/// The forms a value takes in output: as is, XML-escaped, shell-quoted, inside JSON text.
pub fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let xml = value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;");
    forms.push(xml);
    forms.push(crate::shell::quote(value));
    forms.push(value.replace('\'', r"'\''"));
    // As written in a single-quoted YAML scalar (the source line an error message quotes).
    forms.push(value.replace('\'', "''"));
    // A multi-line value (a key, a certificate) shows a line at a time in a quoted source
    // line or a diff: each line long enough not to mask ordinary text is hidden on its own.
    forms.extend(
        value
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= 8 && l.len() < value.len())
            .map(str::to_string),
    );
    // Inside JSON text (the journal, plans): the escaped form, without the enclosing quotes.
    if let Ok(j) = serde_json::to_string(value) {
        forms.push(j[1..j.len() - 1].to_string());
    }
    forms
}

fn add_needles(name: &str, forms: Vec<String>) {
    let mut r = redactor().write().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if !f.is_empty() && !r.needles.iter().any(|(n, _)| *n == f) {
            r.needles.push((f, name.to_string()));
        }
    }
    r.needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
}

fn declared() -> &'static RwLock<BTreeSet<String>> {
    static D: OnceLock<RwLock<BTreeSet<String>>> = OnceLock::new();
    D.get_or_init(|| RwLock::new(BTreeSet::new()))
}

/// Declare a variable secret wherever it is set (`secret_vars:`, the secrets file's names).
/// The inventory declares them before any other file is read, so every value read after is
/// known to be secret before an error message could quote it.
pub fn declare(name: &str) {
    let mut d = declared().write().unwrap_or_else(|e| e.into_inner());
    d.insert(name.to_string());
}

/// A variable just read (from any file or the command line): if its name is declared secret,
/// its value is hidden from all output from now on. A value holding a template is hidden once
/// rendered (see `template::resolve_all`); its text as written is not the secret.
pub fn note_variable(name: &str, value: &serde_json::Value) {
    let is_secret = declared()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(name);
    if !is_secret {
        return;
    }
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    if !(text.contains("{{") || text.contains("{%")) {
        register(name, &text);
    }
}

/// Replace every registered secret in `text` by its marker.
pub fn redact(text: &str) -> Cow<'_, str> {
    let r = redactor().read().unwrap_or_else(|e| e.into_inner());
    if r.needles.iter().all(|(n, _)| !text.contains(n.as_str())) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(replace_needles(text, &r.needles))
}

/// One pass over `text`, replacing at each position the longest needle that starts there (the
/// needles are sorted longest first). A marker already written is never searched again, so a
/// short needle cannot match inside one (`[secret:…]`) and garble it.
fn replace_needles(text: &str, needles: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        match needles
            .iter()
            .find(|(n, _)| !n.is_empty() && rest.starts_with(n.as_str()))
        {
            Some((needle, name)) => {
                out.push_str(&marker(name));
                i += needle.len();
            }
            None => {
                let c = rest.chars().next().expect("not at the end");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// As [`redact`], for a line of source with a position in it (a byte offset): returns the
/// masked line and where that position is in it (a marker's start when it fell inside a
/// secret), so a caret under the line still points at the same thing.
pub fn redact_at(line: &str, at: usize) -> (String, usize) {
    let r = redactor().read().unwrap_or_else(|e| e.into_inner());
    let mut out = String::with_capacity(line.len());
    let mut new_at = None;
    let mut i = 0;
    while i < line.len() {
        let hit = r
            .needles
            .iter()
            .find(|(n, _)| line[i..].starts_with(n.as_str()));
        let len = match hit {
            Some((n, name)) => {
                if (i..i + n.len()).contains(&at) {
                    new_at = Some(out.len());
                }
                out.push_str(&marker(name));
                n.len()
            }
            None => {
                let c = line[i..].chars().next().unwrap_or(' ');
                if i == at {
                    new_at = Some(out.len());
                }
                out.push(c);
                c.len_utf8()
            }
        };
        i += len;
    }
    let end = out.len();
    (out, new_at.unwrap_or(end))
}

/// Does a variable name say it holds a secret? For a file that cannot be parsed, whose
/// `secret_vars:` (or the variables of its secrets file) cannot be known.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n != "secret_vars"
        && [
            "password",
            "passwd",
            "secret",
            "token",
            "apikey",
            "api_key",
            "private_key",
            "credential",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// A source line an error quotes may assign a secret whose value was never read, because the
/// file (or the line) does not parse: after `NAME:` or `NAME=`, where NAME is declared secret
/// or looks like one, the rest of the line is hidden. Returns the line and where the byte
/// position `at` is in it (the marker's start when it fell inside what was hidden).
pub fn mask_assignments(line: &str, at: usize) -> (String, usize) {
    let declared = declared().read().unwrap_or_else(|e| e.into_inner());
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A marker already written is not an assignment (`[secret:NAME]`).
        if line[i..].starts_with("[secret:") {
            i += line[i..].find(']').map_or(line.len() - i, |e| e + 1);
            continue;
        }
        if !word(bytes[i]) || (i > 0 && word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !word(bytes[j]))
            .unwrap_or(bytes.len());
        let name = &line[i..end];
        // `NAME:` / `NAME=` / `"NAME":`, then the value (not an empty rest of the line).
        let after_name = line[end..].trim_start_matches(['"', '\'']);
        let value = after_name
            .strip_prefix([':', '='])
            .map(str::trim_start)
            // A value already masked was read: what follows it on the line is not hidden.
            .filter(|v| {
                !v.is_empty() && !v.trim_start_matches(['"', '\'']).starts_with("[secret:")
            });
        if let Some(v) = value {
            if declared.contains(name) || looks_secret(name) {
                let start = line.len() - v.len();
                let masked = format!("{}{}", &line[..start], marker(name));
                return (masked, at.min(start));
            }
        }
        i = end;
    }
    (line.to_string(), at)
}

/// Redact every string inside a JSON value.
pub fn redact_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) => J::String(redact(s).into_owned()),
        J::Array(items) => J::Array(items.iter().map(redact_json).collect()),
        J::Object(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), redact_json(v))).collect()),
        other => other.clone(),
    }
}

/// The age identity that decrypts secrets files: `CUTOVER_SECRETS_KEY` (the key itself) or
/// `CUTOVER_SECRETS_KEY_FILE` (a file holding it, as written by `cutover secrets keygen`).
pub fn identity() -> Result<age::x25519::Identity> {
    identity_or(None)
}

/// As [`identity`], falling back to a key file named by the inventory (`secrets_key_file:`,
/// meant for labs and tests only: a production key stays out of the repository).
pub fn identity_or(fallback: Option<&Path>) -> Result<age::x25519::Identity> {
    let text = match (
        std::env::var("CUTOVER_SECRETS_KEY"),
        std::env::var("CUTOVER_SECRETS_KEY_FILE"),
        fallback,
    ) {
        (Ok(k), _, _) => k,
        (_, Ok(f), _) => read_key_file(Path::new(&f))?,
        (_, _, Some(f)) => read_key_file(f)?,
        _ => bail!("no key to decrypt it: set CUTOVER_SECRETS_KEY_FILE (or CUTOVER_SECRETS_KEY)"),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| anyhow!("the key is not an age secret key (AGE-SECRET-KEY-…)"))?;
    age::x25519::Identity::from_str(line).map_err(|e| anyhow!("invalid age key: {e}"))
}

/// A key file may be a pipe (`CUTOVER_SECRETS_KEY_FILE=<(pass show key)`); it is read bounded.
fn read_key_file(f: &Path) -> Result<String> {
    let bytes = crate::input::read_stream(f, crate::input::MAX_CREDENTIAL_BYTES)
        .with_context(|| format!("cannot read key file {}", f.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow!("key file {} is not text", f.display()))
}

/// The inventory's `secrets_key_file:`, once read: files the playbooks name (`vars_files:`)
/// are decrypted with the same key as the inventory's secrets file.
static INVENTORY_KEY_FILE: RwLock<Option<std::path::PathBuf>> = RwLock::new(None);

pub fn remember_inventory_key_file(path: &Path) {
    *INVENTORY_KEY_FILE
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
}

/// Decrypt a secrets file (a YAML mapping of variable names to values) with the environment's
/// key, else the inventory's key file.
pub fn decrypt_file(path: &Path) -> Result<String> {
    let fallback = INVENTORY_KEY_FILE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    decrypt_file_with(path, fallback.as_deref())
}

pub fn decrypt_file_with(path: &Path, fallback_key: Option<&Path>) -> Result<String> {
    let data = crate::input::read(path, crate::input::MAX_INPUT_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let id = identity_or(fallback_key)?;
    let plain = age::decrypt(&id, &data)
        .map_err(|e| anyhow!("cannot decrypt {}: {e} (wrong key?)", path.display()))?;
    String::from_utf8(plain).map_err(|_| anyhow!("{} does not decrypt to text", path.display()))
}

/// Encrypt text to the given recipients (age public keys), ASCII-armored for review-friendly
/// diffs of "this file changed".
pub fn encrypt(plain: &str, recipient: &str) -> Result<String> {
    let r = age::x25519::Recipient::from_str(recipient.trim())
        .map_err(|e| anyhow!("invalid recipient {recipient}: {e}"))?;
    age::encrypt_and_armor(&r, plain.as_bytes()).map_err(|e| anyhow!("cannot encrypt: {e}"))
}

/// A new key pair: (secret key file text, public key).
pub fn keygen() -> (String, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let secret = id.to_string();
    (
        format!("# public key: {public}\n{}\n", secret.expose_secret()),
        public,
    )
}

/// The public key of the current identity (to re-encrypt after editing).
pub fn own_recipient() -> Result<String> {
    Ok(identity()?.to_public().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_of_a_secret_name_is_hidden_in_a_quoted_line() {
        declare("db_pass_x");
        let (l, at) = mask_assignments("  db_pass_x: \"hunter2 } }", 14);
        assert_eq!(l, "  db_pass_x: [secret:db_pass_x]");
        assert_eq!(at, 13);
        // A name that says it is secret, in a file whose declarations are unknown.
        let (l, _) = mask_assignments("{ api_token=abc, x: 1 }", 0);
        assert_eq!(l, "{ api_token=[secret:api_token]");
        // Other names, markers, and a key without a value on its line stay as they are.
        for line in [
            "  address: 10.0.0.1",
            "  db_password: [secret:db_password], port: 1 }",
            "secret_vars: [db_password]",
            "  db_password:",
        ] {
            assert_eq!(mask_assignments(line, 2).0, line, "{line}");
        }
    }

    #[test]
    fn escaped_forms_are_hidden_too() {
        register("t_pw", "s3cr&t'pw");
        assert_eq!(redact("password=s3cr&t'pw"), "password=[secret:t_pw]");
        assert_eq!(redact("<p>s3cr&amp;t&apos;pw</p>"), "<p>[secret:t_pw]</p>");
        assert_eq!(redact("echo 's3cr&t'\\''pw'"), "echo [secret:t_pw]");
        assert_eq!(redact("nothing here"), "nothing here");
        // A needle that is part of a marker's text does not garble the marker.
        register("t_short", "cret:t_");
        assert_eq!(redact("x s3cr&t'pw y"), "x [secret:t_pw] y");
        register("t_q", "a\"b");
        let json = serde_json::json!({ "d": "x a\"b y" }).to_string();
        let redacted = redact(&json);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&redacted).unwrap()["d"],
            "x [secret:t_q] y"
        );
    }

    #[test]
    fn yaml_quoted_and_multi_line_values_are_hidden_as_written() {
        register("t_yaml", "it's-a-secret");
        assert_eq!(redact("pw: 'it''s-a-secret'"), "pw: '[secret:t_yaml]'");
        register(
            "t_key",
            "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\nshort\n",
        );
        assert_eq!(redact("    AAAAB3NzaC1yc2EAAAADAQAB"), "    [secret:t_key]");
        assert_eq!(redact("short"), "short", "short lines are not hidden alone");
    }

    #[test]
    fn a_masked_line_keeps_its_caret_on_the_same_thing() {
        register("t_caret", "p4ss");
        let line = "a: p4ss, bad: x";
        let at = line.find("bad").unwrap();
        let (masked, new_at) = redact_at(line, at);
        assert_eq!(masked, "a: [secret:t_caret], bad: x");
        assert_eq!(&masked[new_at..new_at + 3], "bad");
        // A position inside the secret points at its marker.
        let (_, inside) = redact_at(line, line.find("ss").unwrap());
        assert_eq!(inside, 3);
        assert_eq!(redact_at("plain", 2), ("plain".to_string(), 2));
    }

    #[test]
    fn declared_names_are_masked_when_read_but_templates_are_not() {
        note_variable("t_undeclared", &serde_json::json!("v4lue-one"));
        assert_eq!(redact("v4lue-one"), "v4lue-one");
        declare("t_declared");
        note_variable("t_declared", &serde_json::json!("v4lue-two"));
        note_variable("t_declared", &serde_json::json!("{{ other }}"));
        assert_eq!(redact("x v4lue-two"), "x [secret:t_declared]");
        assert_eq!(redact("{{ other }}"), "{{ other }}");
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let id = age::x25519::Identity::generate();
        let armored = encrypt("db_password: x\n", &id.to_public().to_string()).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("db_password"));
        let plain = age::decrypt(&id, armored.as_bytes()).unwrap();
        assert_eq!(plain, b"db_password: x\n");
    }
}
