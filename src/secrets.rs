//! Secrets: variables kept encrypted in the repository (age format, like ansible-vault but with
//! a standard tool), decrypted at run time with a key from the environment or a file, and
//! masked in everything cutover prints or writes — logs, plans, diffs, journals, JSON, JUnit,
//! error messages — while the real value still reaches the host.
//!
//! Masking is done where output leaves the program (each sink calls [`redact`]), not where
//! values are used, so a secret that ends up inside a rendered template, an error message or a
//! command's output is caught as well.

use std::borrow::Cow;
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
        (_, Ok(f), _) => {
            std::fs::read_to_string(&f).with_context(|| format!("cannot read key file {f}"))?
        }
        (_, _, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read key file {}", f.display()))?,
        _ => bail!("no key to decrypt it: set CUTOVER_SECRETS_KEY_FILE (or CUTOVER_SECRETS_KEY)"),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| anyhow!("the key is not an age secret key (AGE-SECRET-KEY-…)"))?;
    age::x25519::Identity::from_str(line).map_err(|e| anyhow!("invalid age key: {e}"))
}

/// Decrypt a secrets file: a YAML mapping of variable names to values.
pub fn decrypt_file(path: &Path) -> Result<String> {
    decrypt_file_with(path, None)
}

pub fn decrypt_file_with(path: &Path, fallback_key: Option<&Path>) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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
    fn encrypt_then_decrypt_round_trips() {
        let id = age::x25519::Identity::generate();
        let armored = encrypt("db_password: x\n", &id.to_public().to_string()).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("db_password"));
        let plain = age::decrypt(&id, armored.as_bytes()).unwrap();
        assert_eq!(plain, b"db_password: x\n");
    }
}
