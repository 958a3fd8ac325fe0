//! Values derived from secrets stay secret, through any filter or expression.
//!
//! cutover masks secrets where output leaves the program, by looking for their text (and its
//! XML, shell and JSON forms). A secret that went through a filter (`upper`, `urlencode`,
//! `b64encode`, `truncate`, …) no longer has that text. Filters cannot carry a taint mark
//! through tera (its values have none, and tera's own filters would drop one), so cutover
//! traces the dependency from the outside instead: it renders a second time with every secret
//! replaced by a stand-in of the same shape, and whatever differs between the two outputs —
//! beyond the secrets' own forms, already masked — depends on a secret. That text is
//! registered as a secret in turn, so every sink (render, plans, diffs, journals, logs) masks
//! it. This holds for any filter, expression or control flow, present or future, because it
//! only compares outputs.
//!
//! Limits, by design: a derived text of one or two characters (a secret's `| length`, its first
//! letter) is not registered, since masking every such string everywhere would blank out all
//! output; and a function that gives the same result for the secret and its stand-in (its
//! length) reveals nothing the stand-in does not.

use serde_json::Value as J;

use super::Vars;
use crate::diag::Diagnostic;

/// Shortest derived text registered (see the module's limits).
const MIN_DERIVED: usize = 3;

/// Render with `f`; when the variables hold secrets, render again with stand-ins and register
/// what the secrets changed.
pub fn render(
    vars: &Vars,
    f: impl Fn(&Vars) -> Result<String, Diagnostic>,
) -> Result<String, Diagnostic> {
    let real = f(vars)?;
    let secrets = crate::secrets::values();
    if secrets.is_empty() {
        return Ok(real);
    }
    let stand_ins: Vec<(String, String, String)> = secrets
        .into_iter()
        .map(|(name, value)| {
            let s = stand_in(&value);
            (name, value, s)
        })
        .collect();
    let Some(alt_vars) = substitute(vars, &stand_ins) else {
        return Ok(real);
    };
    match f(&alt_vars) {
        Ok(alt) => register_differences(&real, &alt, &stand_ins),
        // Whether it renders at all depends on a secret: all of it is derived.
        Err(_) => register_lines(&crate::secrets::redact(&real)),
    }
    Ok(real)
}

/// A stand-in of the same shape: letters rotated by 13, digits by 5, the rest kept (so the
/// filters that split or trim behave alike). A secret of punctuation only gets other
/// punctuation.
fn stand_in(secret: &str) -> String {
    let rotated: String = secret
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            '0'..='9' => (((c as u8 - b'0') + 5) % 10 + b'0') as char,
            c => c,
        })
        .collect();
    if rotated != secret {
        return rotated;
    }
    secret
        .chars()
        .map(|c| if c == '#' { '@' } else { '#' })
        .collect()
}

/// The variables with every secret's text replaced by its stand-in; None when none holds one.
fn substitute(vars: &Vars, stand_ins: &[(String, String, String)]) -> Option<Vars> {
    let mut any = false;
    let mut out = Vars::new();
    for (k, v) in vars.iter() {
        let v2 = replace_in(v, stand_ins, &mut any);
        out.map.insert(k.clone(), v2);
    }
    any.then_some(out)
}

fn replace_in(v: &J, stand_ins: &[(String, String, String)], any: &mut bool) -> J {
    match v {
        J::String(s) => {
            let mut out = s.clone();
            for (_, secret, alt) in stand_ins {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), alt);
                    *any = true;
                }
            }
            J::String(out)
        }
        J::Array(items) => J::Array(
            items
                .iter()
                .map(|i| replace_in(i, stand_ins, any))
                .collect(),
        ),
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), replace_in(v, stand_ins, any)))
                .collect(),
        ),
        J::Number(n) => {
            let text = n.to_string();
            match stand_ins.iter().find(|(_, secret, _)| *secret == text) {
                Some((_, _, alt)) => {
                    *any = true;
                    J::String(alt.clone())
                }
                None => v.clone(),
            }
        }
        other => other.clone(),
    }
}

/// Compare the two outputs once both are masked (the real one with the secrets, the other with
/// the stand-ins, under the same markers): what still differs is derived text.
fn register_differences(real: &str, alt: &str, stand_ins: &[(String, String, String)]) {
    let real_masked = crate::secrets::redact(real).into_owned();
    let mut needles: Vec<(String, String)> = stand_ins
        .iter()
        .flat_map(|(name, _, s)| {
            crate::secrets::forms(s)
                .into_iter()
                .map(move |f| (f, name.clone()))
        })
        .collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
    let alt_masked = crate::secrets::redact_with(alt, &needles);
    if real_masked == alt_masked {
        return;
    }
    // Something derived shows. Find it in the real text (masks already registered may cover
    // only part of a derived word), and register what is not entirely masked yet.
    let diff = similar::TextDiff::from_chars(real, alt);
    let chars: Vec<char> = real.chars().collect();
    for op in diff.ops() {
        let range = op.old_range();
        if op.tag() == similar::DiffTag::Equal || range.is_empty() {
            continue;
        }
        if let Some(text) = derived_text(&chars, range.start, range.end) {
            if !only_markers(&crate::secrets::redact(&text)) {
                crate::secrets::register_derived(&text);
            }
        }
    }
}

/// Is this masked text nothing but markers?
fn only_markers(masked: &str) -> bool {
    let mut rest = masked.trim();
    while let Some(after) = rest.strip_prefix("[secret:") {
        match after.split_once(']') {
            Some((_, r)) => rest = r.trim(),
            None => return false,
        }
    }
    rest.is_empty()
}

/// The changed characters `[start, end)` widened to whole words (the stand-in may share a
/// character with the secret by chance), and further when that is too short to mask on its
/// own.
fn derived_text(chars: &[char], start: usize, end: usize) -> Option<String> {
    let word = |c: char| c.is_alphanumeric() || "_%+/".contains(c);
    let (mut s, mut e) = (start, end);
    while s > 0 && word(chars[s - 1]) {
        s -= 1;
    }
    while e < chars.len() && word(chars[e]) {
        e += 1;
    }
    // base64 padding belongs to the word before it.
    while e < chars.len() && chars[e] == '=' && e > s {
        e += 1;
    }
    // Too short to mask on its own: widen to the token (up to white space), then the line.
    for stop in [char::is_whitespace as fn(char) -> bool, |c| c == '\n'] {
        if e - s >= MIN_DERIVED {
            break;
        }
        while s > 0 && !stop(chars[s - 1]) {
            s -= 1;
        }
        while e < chars.len() && !stop(chars[e]) {
            e += 1;
        }
    }
    let text: String = chars[s..e].iter().collect();
    let text = text.trim();
    (text.chars().count() >= MIN_DERIVED).then(|| text.to_string())
}

fn register_lines(masked: &str) {
    for line in masked.lines() {
        for part in line.split("[secret:") {
            let part = part.split_once(']').map_or(part, |(_, rest)| rest).trim();
            if part.chars().count() >= MIN_DERIVED {
                crate::secrets::register_derived(part);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{render_str, Templates, Vars};
    use crate::diag::Pos;
    use crate::secrets::redact;

    /// A secret registered as the inventory would, with a value no other test uses.
    fn secret(name: &str, value: &str) -> Vars {
        crate::secrets::register(name, value);
        let mut v = Vars::new();
        v.insert(name, value);
        v.insert("hostvars", &serde_json::json!({ "db1": { name: value } }));
        v
    }

    #[test]
    fn a_secret_through_any_filter_is_masked_in_output_but_reaches_the_host() {
        let v = secret("t_taint_pw", "Tq9zSecret&Pw/42");
        let cases = [
            "{{ t_taint_pw | upper }}",
            "{{ t_taint_pw | lower }}",
            "{{ t_taint_pw | urlencode }}",
            "{{ t_taint_pw | b64encode }}",
            "{{ t_taint_pw | truncate(length=6) }}",
            "{{ t_taint_pw | replace(from='Secret', to='X') }}",
            "{{ t_taint_pw | hash(algo='sha256') }}",
            "{{ t_taint_pw | reverse }}",
            "{{ t_taint_pw | to_json }}",
            "{{ 'pre-' ~ t_taint_pw ~ '-post' }}",
            "{{ hostvars.db1.t_taint_pw | split(pat='&') | first }}",
            "{% set p = t_taint_pw | title %}p={{ p }}",
            "{{ t_taint_pw[2:9] }}",
        ];
        for case in cases {
            let out = render_str(case, &v, &Pos::cli("t")).unwrap();
            // The host gets the real value: the render is not altered.
            assert!(!out.contains("[secret:"), "{case}: {out}");
            let shown = redact(&out);
            assert!(shown.contains("[secret:"), "{case}: {out} shown as {shown}");
            // Nothing of 3 characters or more derived from the secret shows.
            let plain = shown
                .replace("[secret:derived]", "")
                .replace("[secret:t_taint_pw]", "");
            for frag in ["Tq9", "TQ9", "tq9", "ecret", "ECRET", "VHE5", "SECR", "24/"] {
                assert!(!plain.contains(frag), "{case}: {shown}");
            }
        }
    }

    #[test]
    fn a_template_file_masks_derived_values_and_keeps_the_rest() {
        let v = secret("t_taint_file", "Zx81longpassword");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.conf"),
            "user = app\npass = {{ t_taint_file | b64encode }}\nplain = {{ t_taint_file }}\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let out = t.render("a.conf", &v).unwrap();
        assert!(out.contains("Wng4MWxvbmdwYXNzd29yZA=="), "{out}");
        assert_eq!(
            redact(&out),
            "user = app\npass = [secret:derived]\nplain = [secret:t_taint_file]\n"
        );
    }

    #[test]
    fn without_secrets_there_is_one_render_and_nothing_registered() {
        let mut v = Vars::new();
        v.insert("name", "t_taint_public_value");
        let out = render_str("{{ name | upper }}", &v, &Pos::cli("t")).unwrap();
        assert_eq!(redact(&out), "T_TAINT_PUBLIC_VALUE");
    }
}
