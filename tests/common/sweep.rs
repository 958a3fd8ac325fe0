//! The secret sweep: every artifact of a run of the test suite, grepped for every lab secret in
//! every form an output could carry it in. It reports where (file, secret name, form), never
//! the value.

use std::path::{Path, PathBuf};

/// A secret value and its name.
pub struct Secret {
    pub name: String,
    pub value: String,
}

/// The lab's secrets: the variables of `inventory/lab.yml`'s encrypted `secrets_file`
/// (decrypted with the lab key, as cutover does), the values of its `secret_vars`, the lab's
/// other secrets (`/var/lib/cutover-lab/secrets/*`, the sudo password) and the lab's age key.
pub fn lab_secrets() -> Vec<Secret> {
    let inv =
        cutover::inventory::load_checked(&super::project::lab_inventory()).unwrap_or_else(|d| {
            panic!(
                "cannot load the lab inventory and its secrets ({} problems)",
                d.len()
            )
        });
    assert!(
        !inv.secrets.is_empty(),
        "the lab inventory has no secrets: nothing to sweep for"
    );
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out: Vec<Secret> = inv
        .secrets
        .iter()
        .map(|v| Secret {
            name: v.name.clone(),
            value: text(&v.value),
        })
        .collect();
    let elsewhere = inv
        .groups
        .values()
        .flat_map(|g| g.vars.iter())
        .chain(inv.hosts.iter().flat_map(|h| h.vars.iter()));
    for v in elsewhere {
        if inv.secret_vars.contains(&v.name) {
            out.push(Secret {
                name: v.name.clone(),
                value: text(&v.value),
            });
        }
    }
    if let Ok(rd) = std::fs::read_dir(super::lab_state().join("secrets")) {
        for e in rd.flatten() {
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                out.push(Secret {
                    name: format!("lab secrets/{}", e.file_name().to_string_lossy()),
                    value: v.trim().to_string(),
                });
            }
        }
    }
    let key = super::repo_root().join("inventory/lab.key");
    if let Ok(k) = std::fs::read_to_string(&key) {
        for l in k.lines().map(str::trim) {
            if l.starts_with("AGE-SECRET-KEY-") {
                out.push(Secret {
                    name: "the lab's age key".into(),
                    value: l.to_string(),
                });
            }
        }
    }
    out.retain(|s| !s.value.is_empty());
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 text of `value` wherever it sits in a longer base64 stream: for each of the
/// three alignments, the characters that depend on the value's bytes only.
fn base64_cores(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut data = vec![0u8; k];
        data.extend_from_slice(value);
        let enc = base64(&data);
        let start = (k * 8).div_ceil(6);
        let end = (data.len() * 8) / 6;
        if end > start + 4 {
            out.push(enc[start..end].to_string());
        }
    }
    out
}

fn percent(value: &str, upper: bool, plus: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Every form a secret may take in an artifact, each with a name for the report.
pub fn forms(value: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = vec![("plain", value.to_string())];
    out.push((
        "XML-escaped",
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;"),
    ));
    out.push(("shell-quoted", cutover::shell::quote(value)));
    out.push(("shell-quoted ('\\'')", value.replace('\'', r"'\''")));
    out.push(("shell-escaped (\\)", {
        let mut s = String::new();
        for c in value.chars() {
            if !c.is_ascii_alphanumeric() && !"-_./,:@%+=".contains(c) {
                s.push('\\');
            }
            s.push(c);
        }
        s
    }));
    if let Ok(j) = serde_json::to_string(value) {
        out.push(("JSON-escaped", j[1..j.len() - 1].to_string()));
    }
    out.push(("URL-encoded", percent(value, true, false)));
    out.push(("URL-encoded (lowercase hex)", percent(value, false, false)));
    out.push(("URL-encoded (form, +)", percent(value, true, true)));
    out.push(("base64", base64(value.as_bytes())));
    out.push((
        "base64url",
        base64(value.as_bytes())
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string(),
    ));
    for core in base64_cores(value.as_bytes()) {
        out.push(("base64 (inside a longer text)", core.clone()));
        out.push((
            "base64url (inside a longer text)",
            core.replace('+', "-").replace('/', "_"),
        ));
    }
    out.push((
        "hex",
        value
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ));
    // Forms equal to another one are searched once.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|(_, f)| !f.is_empty() && seen.insert(f.clone()));
    out
}

/// One finding: a secret (by name) in a file, in a form.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub file: PathBuf,
    pub secret: String,
    pub form: &'static str,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Regular files read.
    pub files: usize,
    /// Recorded cutover invocations (`*.cmd`).
    pub invocations: usize,
    pub hits: Vec<Hit>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), files);
        } else if t.is_file() {
            files.push(e.path());
        }
    }
}

/// Grep every regular file below `dir` for every form of every secret.
pub fn sweep(dir: &Path, secrets: &[Secret]) -> Report {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let needles: Vec<(&str, &'static str, Vec<u8>)> = secrets
        .iter()
        .flat_map(|s| {
            forms(&s.value)
                .into_iter()
                .map(move |(form, f)| (s.name.as_str(), form, f.into_bytes()))
        })
        .collect();
    let mut report = Report::default();
    for f in &files {
        let Ok(data) = std::fs::read(f) else { continue };
        report.files += 1;
        if f.extension().is_some_and(|e| e == "cmd") {
            report.invocations += 1;
        }
        for (name, form, needle) in &needles {
            if contains(&data, needle) {
                report.hits.push(Hit {
                    file: f.clone(),
                    secret: name.to_string(),
                    form,
                });
            }
        }
    }
    report
}

/// The sweep's verdict: Ok with a summary, or why it fails (no value is ever shown).
pub fn verdict(dir: &Path, secrets: &[Secret]) -> Result<String, String> {
    if secrets.is_empty() {
        return Err("no secrets to look for: the sweep would prove nothing".into());
    }
    let r = sweep(dir, secrets);
    if r.files == 0 {
        return Err(format!(
            "no artifacts at all under {}: the tests kept nothing to check (run the suite first)",
            dir.display()
        ));
    }
    if r.invocations == 0 {
        return Err(format!(
            "{} files under {}, but no recorded cutover invocation (*.cmd): the tests did not keep their outputs",
            r.files,
            dir.display()
        ));
    }
    if !r.hits.is_empty() {
        let list: Vec<String> = r
            .hits
            .iter()
            .map(|h| format!("  {} holds {} ({})", h.file.display(), h.secret, h.form))
            .collect();
        return Err(format!(
            "{} secret occurrence(s) in the test artifacts:\n{}",
            r.hits.len(),
            list.join("\n")
        ));
    }
    Ok(format!(
        "{} files ({} cutover invocations) under {}: none holds any of {} secrets in any of their forms",
        r.files,
        r.invocations,
        dir.display(),
        secrets.len()
    ))
}
