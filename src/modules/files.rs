//! Files on a host: `copy` and `template` (content), `file` (directory, link, absent, touch,
//! owner, mode).
//!
//! Change detection is by SHA-256 on the host, so unchanged content is never re-sent. Writes are
//! atomic (temporary file in the same directory, then rename), and the previous file is kept as
//! a backup next to it so the change can be undone.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value as J};
use sha2::{Digest, Sha256};

use super::{arg_bool, arg_str, required, ModCtx, Outcome, Probe, UndoAction};
use crate::shell::quote;
use crate::transport::Input;

/// Files larger than this are summarised in plans instead of diffed.
const DIFF_LIMIT: u64 = 1024 * 1024;

/// What `stat` says of a path on the host.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    pub kind: String,
    pub owner: String,
    pub group: String,
    pub mode: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
}

/// Stat a path; metadata comes back on stderr and (small regular files) content on stdout,
/// so one round trip gives both.
pub(crate) async fn stat(
    ctx: &ModCtx<'_>,
    path: &str,
    want_content: bool,
) -> Result<(Option<Stat>, Option<Vec<u8>>)> {
    let script = format!(
        r#"p={p}
if [ -L "$p" ] || [ -e "$p" ]; then
  m=$(stat -c '%F|%U|%G|%a|%s' -- "$p") || exit 1
  printf '%s\n' "$m" >&2
  if [ -L "$p" ]; then printf 'link|%s\n' "$(readlink -- "$p")" >&2; fi
  if [ -f "$p" ] && [ ! -L "$p" ]; then
    set -- $(sha256sum -- "$p") && printf 'sha|%s\n' "$1" >&2
    {content}
  fi
else
  echo absent >&2
fi"#,
        p = quote(path),
        content = if want_content {
            // Small files only (the size is the last field of the stat line).
            format!(r#"if [ "${{m##*|}}" -le {DIFF_LIMIT} ]; then cat -- "$p"; fi"#)
        } else {
            String::new()
        }
    );
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!("cannot inspect {path}: {}", out.stderr_text().trim());
    }
    let meta = out.stderr_text();
    let mut lines = meta.lines();
    let first = lines.next().unwrap_or("absent");
    if first == "absent" {
        return Ok((None, None));
    }
    let f: Vec<&str> = first.split('|').collect();
    if f.len() < 5 {
        bail!("unexpected stat output for {path}: {first}");
    }
    let mut st = Stat {
        kind: f[0].to_string(),
        owner: f[1].to_string(),
        group: f[2].to_string(),
        mode: format!("{:04o}", u32::from_str_radix(f[3], 8).unwrap_or(0)),
        size: f[4].parse().unwrap_or(0),
        sha256: None,
        link_target: None,
    };
    for l in lines {
        if let Some(s) = l.strip_prefix("sha|") {
            st.sha256 = Some(s.to_string());
        } else if let Some(t) = l.strip_prefix("link|") {
            st.link_target = Some(t.to_string());
        }
    }
    let content =
        (want_content && st.sha256.is_some() && st.size <= DIFF_LIMIT).then_some(out.stdout);
    Ok((Some(st), content))
}

fn normalize_mode(mode: &str) -> Option<String> {
    u32::from_str_radix(mode, 8)
        .ok()
        .map(|m| format!("{m:04o}"))
}

/// Attribute changes (owner, group, mode) a step asks for, compared with the host.
pub(crate) fn attr_changes(args: &Map<String, J>, st: Option<&Stat>) -> Vec<String> {
    let mut out = Vec::new();
    let (owner, group, mode) = (
        arg_str(args, "owner"),
        arg_str(args, "group"),
        arg_str(args, "mode"),
    );
    if let Some(o) = owner {
        if st.is_none_or(|s| s.owner != o) {
            out.push(format!(
                "owner {} → {o}",
                st.map_or("-", |s| s.owner.as_str())
            ));
        }
    }
    if let Some(g) = group {
        if st.is_none_or(|s| s.group != g) {
            out.push(format!(
                "group {} → {g}",
                st.map_or("-", |s| s.group.as_str())
            ));
        }
    }
    if let Some(m) = mode {
        let want = normalize_mode(m).unwrap_or_else(|| m.to_string());
        if st.is_none_or(|s| s.mode != want) {
            out.push(format!(
                "mode {} → {want}",
                st.map_or("-", |s| s.mode.as_str())
            ));
        }
    }
    out
}

fn attr_script(args: &Map<String, J>, target: &str) -> String {
    let mut s = String::new();
    match (arg_str(args, "owner"), arg_str(args, "group")) {
        (Some(o), Some(g)) => s.push_str(&format!("chown -- {}:{} {target}\n", quote(o), quote(g))),
        (Some(o), None) => s.push_str(&format!("chown -- {} {target}\n", quote(o))),
        (None, Some(g)) => s.push_str(&format!("chgrp -- {} {target}\n", quote(g))),
        (None, None) => {}
    }
    if let Some(m) = arg_str(args, "mode") {
        s.push_str(&format!("chmod -- {} {target}\n", quote(m)));
    }
    s
}

/// What a `copy` or `template` step wants on the host: bytes in memory, or — a large `src:` of
/// a copy — a file on the controller, hashed and sent in pieces, never read into memory whole.
enum Wanted {
    Bytes(Vec<u8>),
    File {
        path: std::path::PathBuf,
        len: u64,
        sha: String,
    },
}

impl Wanted {
    fn sha(&self) -> String {
        match self {
            Wanted::Bytes(b) => sha256_hex(b),
            Wanted::File { sha, .. } => sha.clone(),
        }
    }
    fn input(&self) -> Input<'_> {
        match self {
            Wanted::Bytes(b) => Input::Bytes(b),
            Wanted::File { path, .. } => Input::File(path),
        }
    }
}

/// The content a `copy` or `template` step wants on the host.
fn desired_content(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Wanted> {
    if module == "copy" && arg_str(args, "content").is_none() {
        let src = required(args, "src")?;
        let len = std::fs::metadata(src)
            .with_context(|| format!("cannot read {src} on the controller"))?
            .len();
        if len > DIFF_LIMIT {
            let sha = sha256_file(std::path::Path::new(src))
                .with_context(|| format!("cannot read {src} on the controller"))?;
            return Ok(Wanted::File {
                path: src.into(),
                len,
                sha,
            });
        }
    }
    small_content(module, args, ctx).map(Wanted::Bytes)
}

/// SHA-256 of a file on the controller, read in pieces.
fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn small_content(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Vec<u8>> {
    if module == "template" {
        let src = required(args, "src")?;
        let mut vars = ctx.vars.clone();
        if let Some(J::Object(extra)) = args.get("vars") {
            for (k, v) in extra {
                vars.insert(k.as_str(), v);
            }
        }
        return ctx
            .templates
            .render(src, &vars)
            .map(String::into_bytes)
            .map_err(|d| anyhow::anyhow!("{d}"));
    }
    if let Some(c) = arg_str(args, "content") {
        return Ok(c.as_bytes().to_vec());
    }
    let src = required(args, "src")?;
    std::fs::read(src).with_context(|| format!("cannot read {src} on the controller"))
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A unified diff, or a one-line summary for binary and large files.
pub fn content_diff(
    label: &str,
    before: Option<&[u8]>,
    before_stat: Option<&Stat>,
    after: &[u8],
) -> String {
    let old = match (before, before_stat) {
        (Some(b), _) => std::str::from_utf8(b).ok().map(str::to_string),
        (None, None) => Some(String::new()),
        (None, Some(_)) => None,
    };
    let new = std::str::from_utf8(after).ok();
    match (old, new) {
        (Some(o), Some(n)) if after.len() as u64 <= DIFF_LIMIT => {
            similar::TextDiff::from_lines(o.as_str(), n)
                .unified_diff()
                .context_radius(3)
                .header(&format!("{label} (before)"), &format!("{label} (after)"))
                .to_string()
        }
        _ => large_content_summary(label, before_stat, after.len() as u64, &sha256_hex(after)),
    }
}

/// The one line a plan shows for binary and large content instead of a diff.
fn large_content_summary(
    label: &str,
    before_stat: Option<&Stat>,
    after_len: u64,
    after_sha: &str,
) -> String {
    format!(
        "{label}: binary or large content changes ({} → {after_len} bytes, sha256 {} → {})\n",
        before_stat.map_or(0, |s| s.size),
        before_stat
            .and_then(|s| s.sha256.as_deref())
            .map_or("-", |s| &s[..12.min(s.len())]),
        &after_sha[..12.min(after_sha.len())]
    )
}

/// `ignore_lines:` of a template step: regular expressions of lines to leave out of the
/// comparison.
fn ignore_patterns(args: &Map<String, J>) -> Result<Option<Vec<regex::Regex>>> {
    let list: Vec<String> = match args.get("ignore_lines") {
        Some(J::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(J::String(s)) => vec![s.clone()],
        _ => return Ok(None),
    };
    let compiled = list
        .iter()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| {
                anyhow::anyhow!("ignore_lines: `{p}` is not a regular expression: {e}")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(compiled))
}

pub async fn probe_content(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let dest = required(args, "dest")?;
    let want = desired_content(module, args, ctx)?;
    let want_sha = want.sha();
    let (st, old) = stat(ctx, dest, true).await?;
    if let Some(s) = &st {
        if s.kind != "regular file" && s.kind != "regular empty file" {
            bail!(
                "{dest} is a {} on {}, not a regular file",
                s.kind,
                ctx.host.name
            );
        }
    }
    let mut content_changes =
        st.as_ref().and_then(|s| s.sha256.as_deref()) != Some(want_sha.as_str());
    // Lines the app rewrites itself (timestamps, build numbers) don't count as a change.
    if let (true, Wanted::Bytes(want)) = (content_changes, &want) {
        if let (Some(patterns), Some(old)) = (ignore_patterns(args)?, old.as_deref()) {
            let keep = |text: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(text)
                    .lines()
                    .filter(|l| !patterns.iter().any(|p| p.is_match(l)))
                    .map(str::to_string)
                    .collect()
            };
            content_changes = keep(old) != keep(want);
        }
    }
    let attrs = attr_changes(args, st.as_ref());
    let state = json!({ "stat": st, "content_changes": content_changes, "sha256": want_sha });
    if !content_changes && attrs.is_empty() {
        return Ok(Probe::no_change(state));
    }
    let label = format!("{}:{dest}", ctx.host.name);
    let diff = content_changes.then(|| match &want {
        Wanted::Bytes(want) => content_diff(&label, old.as_deref(), st.as_ref(), want),
        Wanted::File { len, sha, .. } => large_content_summary(&label, st.as_ref(), *len, sha),
    });
    let mut summary = match (&st, content_changes) {
        (None, _) => format!("create {dest}"),
        (Some(_), true) => format!("update {dest}"),
        (Some(_), false) => format!("change attributes of {dest}"),
    };
    if !attrs.is_empty() {
        summary.push_str(&format!(" ({})", attrs.join(", ")));
    }
    Ok(Probe::change(summary, diff, state))
}

pub async fn apply_content(
    module: &str,
    args: &Map<String, J>,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        return Ok(Outcome::default());
    }
    let dest = required(args, "dest")?;
    let existed: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    let content_changes = probe.state["content_changes"].as_bool().unwrap_or(true);
    let want = if content_changes {
        Some(desired_content(module, args, ctx)?)
    } else {
        None
    };
    // What is written must be what was probed (and, from a saved plan, reviewed).
    let probed_sha = probe.state["sha256"].as_str().unwrap_or_default();
    let content = want.as_ref().map(|w| (w.input(), probed_sha));
    let undo = write_file(ctx, args, dest, content, existed.as_ref(), None).await?;
    let mut result = Map::new();
    result.insert("dest".into(), J::String(dest.to_string()));
    result.insert("sha256".into(), probe.state["sha256"].clone());
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(undo),
        failed: None,
    })
}

/// How a write of `dest` is undone (`content_changes`: new content; else only attributes), from
/// what the probe saw. Known before the write starts, so it is journaled with the intent: the
/// backup is made before the file is replaced, and the undo of a write that was cut off skips
/// a backup that was never made (`UndoAction::run_partial`).
pub(crate) fn write_undo(
    dest: &str,
    content_changes: bool,
    existed: Option<&Stat>,
    run_id: &str,
) -> Option<UndoAction> {
    Some(match (content_changes, existed) {
        (true, Some(_)) => UndoAction::RestoreFile {
            path: dest.to_string(),
            backup: format!("{dest}.cutover-{run_id}~"),
        },
        (true, None) => UndoAction::RemovePath {
            path: dest.to_string(),
        },
        (false, Some(st)) => UndoAction::SetAttrs {
            path: dest.to_string(),
            owner: st.owner.clone(),
            group: st.group.clone(),
            mode: st.mode.clone(),
        },
        (false, None) => return None,
    })
}

/// The way back of a `copy`/`template`/`lineinfile` step, known before it writes.
pub(crate) fn pending_content_undo(
    module: &str,
    args: &Map<String, J>,
    probe: &Probe,
    run_id: &str,
) -> Option<UndoAction> {
    if probe.decision == super::Decision::NoChange {
        return None;
    }
    let existed: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    let (dest, content_changes) = if module == "lineinfile" {
        (
            required(args, "path").ok()?,
            probe.state["content"].is_string(),
        )
    } else {
        (
            required(args, "dest").ok()?,
            probe.state["content_changes"].as_bool().unwrap_or(true),
        )
    };
    write_undo(dest, content_changes, existed.as_ref(), run_id)
}

/// Write `content` (its input and the SHA-256 it must have) to `dest` atomically (temporary
/// file in the same directory, checked against the SHA-256, then renamed), keeping the
/// previous file as a backup named after the run; with `content` None, only apply the
/// owner/group/mode arguments. `expect_sha` guards against a change on the host since the
/// probe read the file. Returns how to undo the write.
pub(crate) async fn write_file(
    ctx: &ModCtx<'_>,
    args: &Map<String, J>,
    dest: &str,
    content: Option<(Input<'_>, &str)>,
    existed: Option<&Stat>,
    expect_sha: Option<&str>,
) -> Result<UndoAction> {
    let backup = format!("{dest}.cutover-{}~", ctx.run_id);
    let guard = match expect_sha {
        Some(sha) => format!(
            "if [ -e \"$p\" ] && [ \"$(sha256sum -- \"$p\" | cut -d' ' -f1)\" != {} ]; then echo \"$p changed on the host since it was probed; nothing written\" >&2; exit 3; fi\n",
            quote(sha)
        ),
        None => String::new(),
    };
    let (script, undo) = if let Some((_, sha)) = content {
        let keep_attrs = if existed.is_some() {
            r#"chown --reference="$p" -- "$tmp" 2>/dev/null || true; chmod --reference="$p" -- "$tmp""#
        } else {
            // mktemp makes 0600; a new file gets the mode the umask gives (mode: overrides).
            r#"chmod -- "$(printf '%o' $((0666 & ~0$(umask))))" "$tmp""#
        };
        let script = format!(
            r#"set -e
p={p}
{guard}tmp=$(mktemp -- "$(dirname -- "$p")/.cutover.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
set -- $(sha256sum -- "$tmp")
[ "$1" = {sha} ] || {{ echo "the content of $p arrived incomplete or changed on the way (sha256 $1, expected {sha}); nothing written" >&2; exit 4; }}
{keep_attrs}
{attrs}{backup_cmd}
mv -f -- "$tmp" "$p"
trap - EXIT"#,
            p = quote(dest),
            sha = quote(sha),
            attrs = attr_script(args, "\"$tmp\""),
            backup_cmd = if existed.is_some() {
                format!("cp -p -- \"$p\" {}", quote(&backup))
            } else {
                String::new()
            },
        );
        let undo = write_undo(dest, true, existed, ctx.run_id).context("no way back")?;
        (script, undo)
    } else {
        existed.context("attribute change on a missing file")?;
        let script = format!("set -e\np={}\n{}", quote(dest), attr_script(args, "\"$p\""));
        let undo = write_undo(dest, false, existed, ctx.run_id).context("no way back")?;
        (script, undo)
    };
    let out = ctx
        .run_input(&script, content.map(|(input, _)| input))
        .await?;
    if !out.ok() {
        bail!("writing {dest} failed: {}", out.stderr_text().trim());
    }
    Ok(undo)
}

pub async fn probe_file(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let path = required(args, "path")?;
    let state = arg_str(args, "state").unwrap_or("file");
    let (st, _) = stat(ctx, path, false).await?;
    let saw = json!({ "stat": st });
    let attrs = attr_changes(args, st.as_ref());
    let with_attrs = |s: String| {
        if attrs.is_empty() {
            s
        } else {
            format!("{s} ({})", attrs.join(", "))
        }
    };
    if arg_bool(args, "recurse") == Some(true) && st.as_ref().is_some_and(|s| s.kind == "directory")
    {
        if let Some(what) = recursive_attr_changes(args, path, ctx).await? {
            return Ok(Probe::change(
                format!("{what} below {path}"),
                None,
                json!({ "stat": st, "recurse": true }),
            ));
        }
    }
    let decision = match (state, &st) {
        ("absent", None) => None,
        ("absent", Some(s)) => Some(format!("remove {} {path} (kept as backup for undo)", s.kind)),
        ("directory", Some(s)) if s.kind == "directory" => (!attrs.is_empty()).then(|| with_attrs(format!("change attributes of {path}"))),
        ("directory", None) => Some(with_attrs(format!("create directory {path}"))),
        ("directory", Some(s)) => bail!("{path} is a {} on {}, not a directory", s.kind, ctx.host.name),
        ("link", Some(s)) if s.link_target.as_deref() == arg_str(args, "src") => None,
        ("link", _) => Some(format!(
            "link {path} → {} (was {})",
            required(args, "src")?,
            st.as_ref().map_or("absent".into(), |s| s.link_target.clone().map_or(s.kind.clone(), |t| format!("→ {t}")))
        )),
        ("touch", None) | ("file", None) if state == "touch" => Some(with_attrs(format!("create empty file {path}"))),
        ("file", None) => bail!("{path} does not exist on {} (state: file only changes attributes; use touch to create)", ctx.host.name),
        (_, Some(_)) => (!attrs.is_empty()).then(|| with_attrs(format!("change attributes of {path}"))),
        (other, _) => bail!("unknown file state `{other}`"),
    };
    Ok(match decision {
        None => Probe::no_change(saw),
        Some(summary) => Probe::change(summary, None, saw),
    })
}

/// With `recurse: true`: does anything below the directory have another owner, group or mode?
async fn recursive_attr_changes(
    args: &Map<String, J>,
    path: &str,
    ctx: &ModCtx<'_>,
) -> Result<Option<String>> {
    let mut tests = Vec::new();
    if let Some(o) = arg_str(args, "owner") {
        tests.push(format!("! -user {}", quote(o)));
    }
    if let Some(g) = arg_str(args, "group") {
        tests.push(format!("! -group {}", quote(g)));
    }
    if let Some(m) = arg_str(args, "mode").filter(|m| m.chars().all(|c| c.is_ascii_digit())) {
        tests.push(format!("! -perm {}", quote(m)));
    }
    if tests.is_empty() {
        return Ok(None);
    }
    let script = format!(
        "find {} \\( {} \\) -print | head -n 1 | wc -l",
        quote(path),
        tests.join(" -o ")
    );
    let out = ctx.run(&script, None).await?;
    Ok((out.stdout_text().trim() != "0").then(|| {
        let mut what = Vec::new();
        if let Some(o) = arg_str(args, "owner") {
            what.push(format!("owner {o}"));
        }
        if let Some(g) = arg_str(args, "group") {
            what.push(format!("group {g}"));
        }
        if let Some(m) = arg_str(args, "mode") {
            what.push(format!("mode {m}"));
        }
        format!("set {}", what.join(", "))
    }))
}

/// How a `file` step is undone, from what the probe saw (`before`); known before it starts.
/// Recursive attribute changes have none.
fn file_undo(path: &str, state: &str, before: Option<&Stat>, run_id: &str) -> Option<UndoAction> {
    let backup = format!("{path}.cutover-{run_id}~");
    let path = path.to_string();
    Some(match (state, before) {
        ("absent", _) => UndoAction::MovePath {
            from: backup,
            to: path,
        },
        ("directory", None) => UndoAction::RemoveDir { path },
        ("link", None) | ("touch", None) => UndoAction::RemovePath { path },
        (
            "link",
            Some(Stat {
                link_target: Some(t),
                ..
            }),
        ) => UndoAction::Link {
            path,
            target: t.clone(),
        },
        ("link", Some(_)) => UndoAction::MovePath {
            from: backup,
            to: path,
        },
        (_, Some(st)) => UndoAction::SetAttrs {
            path,
            owner: st.owner.clone(),
            group: st.group.clone(),
            mode: st.mode.clone(),
        },
        (_, None) => return None,
    })
}

/// The way back of a `file` step, known before it changes anything.
pub(crate) fn pending_file_undo(
    args: &Map<String, J>,
    probe: &Probe,
    run_id: &str,
) -> Option<UndoAction> {
    if probe.decision == super::Decision::NoChange || probe.state["recurse"] == true {
        return None;
    }
    let before: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    file_undo(
        required(args, "path").ok()?,
        arg_str(args, "state").unwrap_or("file"),
        before.as_ref(),
        run_id,
    )
}

pub async fn apply_file(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        return Ok(Outcome::default());
    }
    // Recursive attributes: applied to the whole tree. There is no per-file record of the old
    // owners and modes, so this change has no automatic way back.
    if probe.state["recurse"] == true {
        let path = quote(required(args, "path")?);
        let mut script = String::from("set -e\n");
        match (arg_str(args, "owner"), arg_str(args, "group")) {
            (Some(o), Some(g)) => {
                script.push_str(&format!("chown -R -- {}:{} {path}\n", quote(o), quote(g)))
            }
            (Some(o), None) => script.push_str(&format!("chown -R -- {} {path}\n", quote(o))),
            (None, Some(g)) => script.push_str(&format!("chgrp -R -- {} {path}\n", quote(g))),
            (None, None) => {}
        }
        if let Some(m) = arg_str(args, "mode") {
            script.push_str(&format!("chmod -R -- {} {path}\n", quote(m)));
        }
        let out = ctx.run(&script, None).await?;
        if !out.ok() {
            bail!("recursive attributes failed: {}", out.stderr_text().trim());
        }
        return Ok(Outcome {
            changed: true,
            ..Default::default()
        });
    }
    let path = required(args, "path")?;
    let state = arg_str(args, "state").unwrap_or("file");
    let before: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    let p = quote(path);
    let backup = format!("{path}.cutover-{}~", ctx.run_id);
    let script = match state {
        "absent" => format!("mv -f -- {p} {}", quote(&backup)),
        "directory" if before.is_none() => {
            format!("set -e\nmkdir -p -- {p}\n{}", attr_script(args, &p))
        }
        "link" => {
            let src = required(args, "src")?;
            let save = if before.as_ref().is_some_and(|s| s.link_target.is_none()) {
                format!("mv -f -- {p} {}\n", quote(&backup))
            } else {
                String::new()
            };
            format!("set -e\n{save}ln -sfn -- {} {p}", quote(src))
        }
        "touch" if before.is_none() => {
            format!("set -e\ntouch -- {p}\n{}", attr_script(args, &p))
        }
        _ => {
            before
                .as_ref()
                .context("attribute change on a missing path")?;
            format!("set -e\n{}", attr_script(args, &p))
        }
    };
    let undo = file_undo(path, state, before.as_ref(), ctx.run_id)
        .context("attribute change on a missing path")?;
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!("file {path} ({state}) failed: {}", out.stderr_text().trim());
    }
    Ok(Outcome {
        changed: true,
        result: Map::new(),
        undo: Some(undo),
        failed: None,
    })
}
