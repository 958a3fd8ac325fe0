//! Files on a host: `copy` and `template` (content), `file` (directory, link, absent, touch,
//! owner, mode).
//!
//! Change detection is by SHA-256 on the host, so unchanged content is never re-sent. Writes are
//! atomic (temporary file in the same directory, then rename), and the previous file is kept as
//! a backup next to it so the change can be undone.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value as J};
use sha2::{Digest, Sha256};

use super::contract::Module;
use super::contract::{unknown_path, unknown_tree};
use super::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use super::{arg_bool, arg_str, required, ModCtx, Outcome, Probe, UndoAction};
use crate::plan::overlay::Effect;
use crate::shell::quote;
use crate::transport::Input;

/// Files larger than this are summarised in plans instead of diffed.
const DIFF_LIMIT: u64 = 1024 * 1024;

/// What `stat` says of a path on the host (or, in a plan, what earlier steps leave there).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    pub kind: String,
    pub owner: String,
    pub group: String,
    pub mode: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
    /// In a plan: the earlier step this state comes from. An owner, group or mode it leaves
    /// to the host (umask, connecting user) is [`UNKNOWN_ATTR`].
    #[serde(skip)]
    pub planned_by: Option<String>,
}

/// An attribute of a planned path that only the run will tell.
pub const UNKNOWN_ATTR: &str = "?";

/// A path as a probe sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Looked {
    pub stat: Option<Stat>,
    /// Content of a small regular file, when asked for.
    pub content: Option<Vec<u8>>,
    /// For a missing path: does its directory exist?
    pub parent_dir: bool,
}

/// Stat a path; metadata comes back on stderr and (small regular files) content on stdout,
/// so one round trip gives both.
pub(crate) async fn stat(
    ctx: &ModCtx<'_>,
    path: &str,
    want_content: bool,
) -> Result<(Option<Stat>, Option<Vec<u8>>)> {
    let l = look(ctx, path, want_content).await?;
    Ok((l.stat, l.content))
}

/// A path as the step will find it: on the host, or in a plan, as the earlier steps of the
/// plan leave it (an error [`NotDerivable`](crate::plan::overlay::NotDerivable) when that
/// cannot be known).
pub(crate) async fn look(ctx: &ModCtx<'_>, path: &str, want_content: bool) -> Result<Looked> {
    look_unless(ctx, path, want_content, None).await
}

/// As `look`; on the host, the content is not sent when the file already has the SHA-256
/// `unless_sha` (there is nothing to diff, so nothing to read).
pub(crate) async fn look_unless(
    ctx: &ModCtx<'_>,
    path: &str,
    want_content: bool,
    unless_sha: Option<&str>,
) -> Result<Looked> {
    use crate::plan::overlay::{not_derivable, PathState, Planned, Seen, Val};
    let seen = ctx.overlay().map_or(Seen::Host, |o| o.path(path));
    let Planned { value, by } = match seen {
        Seen::Host => {
            let mut l = look_on_host(ctx, path, want_content, unless_sha).await?;
            // Not on the host: its directory may be one that an earlier step creates.
            if l.stat.is_none() {
                let parent = parent_of(path);
                if ctx.overlay().is_some_and(|o| o.path(&parent) != Seen::Host) {
                    l.parent_dir = dir_exists(ctx, &parent).await?;
                }
            }
            return Ok(l);
        }
        Seen::NotDerivable(why) => return Err(not_derivable(why)),
        Seen::Planned(p) => p,
    };
    // Reasons about owner, group and mode name the step that left them to the host.
    let attrs_by = ctx
        .overlay()
        .and_then(|o| o.attrs_left_by(path))
        .map_or(by.clone(), str::to_string);
    let attr = |v: &Val<String>, host: Option<&str>| match v {
        Val::Set(s) => s.clone(),
        Val::Host => host.unwrap_or(UNKNOWN_ATTR).to_string(),
        Val::Unknown => UNKNOWN_ATTR.to_string(),
    };
    match value {
        PathState::Absent => Ok(Looked {
            stat: None,
            content: None,
            parent_dir: dir_exists(ctx, &parent_of(path)).await?,
        }),
        PathState::Unknown { why } => Err(not_derivable(why)),
        PathState::File {
            content: Val::Unknown,
            ..
        } => Err(not_derivable(format!(
            "{path} is written by {by}; its content is known only when it runs"
        ))),
        PathState::File { content, attrs } => {
            let any_host = [&attrs.owner, &attrs.group, &attrs.mode]
                .iter()
                .any(|v| **v == Val::Host);
            let host = if content == Val::Host || any_host {
                // Parts of it are the host's: read them there.
                Some(look_on_host(ctx, path, want_content && content == Val::Host, None).await?)
            } else {
                None
            };
            let hs = host.as_ref().and_then(|h| h.stat.clone());
            let data = match content {
                Val::Set(d) => d,
                // Only attributes are planned: a path the host does not have stays absent.
                _ => {
                    let Some(h) = host else {
                        return Ok(Looked::default());
                    };
                    let Some(mut st) = h.stat else {
                        return Ok(h);
                    };
                    st.owner = attr(&attrs.owner, Some(&st.owner));
                    st.group = attr(&attrs.group, Some(&st.group));
                    st.mode = attr(&attrs.mode, Some(&st.mode));
                    st.planned_by = Some(by);
                    return Ok(Looked {
                        stat: Some(st),
                        content: h.content,
                        parent_dir: true,
                    });
                }
            };
            let st = Stat {
                kind: if data.is_empty() {
                    "regular empty file".into()
                } else {
                    "regular file".into()
                },
                owner: attr(&attrs.owner, hs.as_ref().map(|s| s.owner.as_str())),
                group: attr(&attrs.group, hs.as_ref().map(|s| s.group.as_str())),
                mode: attr(&attrs.mode, hs.as_ref().map(|s| s.mode.as_str())),
                size: data.len() as u64,
                sha256: Some(sha256_hex(&data)),
                link_target: None,
                planned_by: Some(attrs_by.clone()),
            };
            let content = (want_content && st.size <= DIFF_LIMIT).then(|| data.to_vec());
            Ok(Looked {
                stat: Some(st),
                content,
                parent_dir: true,
            })
        }
        PathState::Dir { attrs } => {
            let any_host = [&attrs.owner, &attrs.group, &attrs.mode]
                .iter()
                .any(|v| **v == Val::Host);
            let hs = if any_host {
                look_on_host(ctx, path, false, None)
                    .await?
                    .stat
                    .filter(|s| s.kind == "directory")
            } else {
                None
            };
            Ok(Looked {
                stat: Some(Stat {
                    kind: "directory".into(),
                    owner: attr(&attrs.owner, hs.as_ref().map(|s| s.owner.as_str())),
                    group: attr(&attrs.group, hs.as_ref().map(|s| s.group.as_str())),
                    mode: attr(&attrs.mode, hs.as_ref().map(|s| s.mode.as_str())),
                    size: 0,
                    sha256: None,
                    link_target: None,
                    planned_by: Some(attrs_by.clone()),
                }),
                content: None,
                parent_dir: true,
            })
        }
        PathState::Link { target } => Ok(Looked {
            stat: Some(Stat {
                kind: "symbolic link".into(),
                owner: UNKNOWN_ATTR.into(),
                group: UNKNOWN_ATTR.into(),
                mode: UNKNOWN_ATTR.into(),
                size: 0,
                sha256: None,
                link_target: Some(target),
                planned_by: Some(attrs_by.clone()),
            }),
            content: None,
            parent_dir: true,
        }),
    }
}

/// The directory a path is in.
pub(crate) fn parent_of(path: &str) -> String {
    let t = path.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => t[..i].to_string(),
    }
}

/// Is `dir` a directory (as the step will find it)?
pub(crate) async fn dir_exists(ctx: &ModCtx<'_>, dir: &str) -> Result<bool> {
    use crate::plan::overlay::{not_derivable, PathState, Planned, Seen};
    match ctx.overlay().map_or(Seen::Host, |o| o.path(dir)) {
        Seen::Host => {}
        Seen::NotDerivable(why) => return Err(not_derivable(why)),
        Seen::Planned(Planned { value, .. }) => match value {
            PathState::Dir { .. } => return Ok(true),
            PathState::Absent | PathState::File { .. } | PathState::Link { .. } => {
                return Ok(false)
            }
            PathState::Unknown { why } => return Err(not_derivable(why)),
        },
    }
    let out = ctx.run(&format!("test -d {}", quote(dir)), None).await?;
    Ok(out.rc == 0)
}

/// Metadata comes back on stderr and (small regular files) content on stdout, so one round
/// trip gives both; shell built-ins where they do (every external command is a process).
async fn look_on_host(
    ctx: &ModCtx<'_>,
    path: &str,
    want_content: bool,
    unless_sha: Option<&str>,
) -> Result<Looked> {
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
  case $p in */*) d=${{p%/*}} ;; *) d=. ;; esac
  if [ -d "${{d:-/}}" ]; then echo parent-dir >&2; fi
fi"#,
        p = quote(path),
        content = if want_content {
            // Small files only (the size is the last field of the stat line).
            format!(
                r#"if [ "$1" != {unless} ] && [ "${{m##*|}}" -le {DIFF_LIMIT} ]; then cat -- "$p"; fi"#,
                unless = quote(unless_sha.unwrap_or("-"))
            )
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
        return Ok(Looked {
            stat: None,
            content: None,
            parent_dir: lines.any(|l| l == "parent-dir"),
        });
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
        planned_by: None,
    };
    for l in lines {
        if let Some(s) = l.strip_prefix("sha|") {
            st.sha256 = Some(s.to_string());
        } else if let Some(t) = l.strip_prefix("link|") {
            st.link_target = Some(t.to_string());
        }
    }
    let sent = want_content
        && st.sha256.is_some()
        && st.sha256.as_deref() != unless_sha
        && st.size <= DIFF_LIMIT;
    let content = sent.then_some(out.stdout);
    Ok(Looked {
        stat: Some(st),
        content,
        parent_dir: true,
    })
}

fn normalize_mode(mode: &str) -> Option<String> {
    u32::from_str_radix(mode, 8)
        .ok()
        .map(|m| format!("{m:04o}"))
}

/// Attribute changes (owner, group, mode) a step asks for, compared with the host (in a plan:
/// with what earlier steps leave; one they leave to the host is not derivable).
pub(crate) fn attr_changes(
    args: &Map<String, J>,
    path: &str,
    st: Option<&Stat>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let wanted = [
        ("owner", arg_str(args, "owner").map(str::to_string)),
        ("group", arg_str(args, "group").map(str::to_string)),
        (
            "mode",
            arg_str(args, "mode").map(|m| normalize_mode(m).unwrap_or_else(|| m.to_string())),
        ),
    ];
    for (what, want) in wanted {
        let Some(want) = want else { continue };
        let have = st.map(|s| match what {
            "owner" => s.owner.as_str(),
            "group" => s.group.as_str(),
            _ => s.mode.as_str(),
        });
        if have == Some(UNKNOWN_ATTR) {
            return Err(crate::plan::overlay::not_derivable(format!(
                "the {what} of {path} after {} depends on the host (umask, the connecting user); known only when it runs",
                st.and_then(|s| s.planned_by.as_deref()).unwrap_or("an earlier step")
            )));
        }
        if have != Some(want.as_str()) {
            out.push(format!("{what} {} → {want}", have.unwrap_or("-")));
        }
    }
    Ok(out)
}

/// The owner, group and mode a path has after a step that sets `args`' attributes on it:
/// what it asks for; otherwise, for a path that exists, as it was (`Val::Host`), and for a new
/// one, whatever the host gives it (unknown). Only numeric modes and names are derived.
pub(crate) fn planned_attrs(args: &Map<String, J>, existed: bool) -> crate::plan::overlay::Attrs {
    use crate::plan::overlay::Val;
    let keep = || if existed { Val::Host } else { Val::Unknown };
    let name = |key: &str| match arg_str(args, key) {
        Some(v) if !v.is_empty() && !v.chars().all(|c| c.is_ascii_digit()) => {
            Val::Set(v.to_string())
        }
        Some(_) => Val::Unknown,
        None => keep(),
    };
    crate::plan::overlay::Attrs {
        owner: name("owner"),
        group: name("group"),
        mode: match arg_str(args, "mode") {
            Some(m) => normalize_mode(m).map_or(Val::Unknown, Val::Set),
            None => keep(),
        },
    }
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
        // A regular file only: a FIFO or device as `src` would block or never end.
        let (_, meta) = crate::input::open_regular(std::path::Path::new(src))
            .with_context(|| format!("cannot read {src} on the controller"))?;
        let len = meta.len();
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
    let (mut f, _) = crate::input::open_regular(path).map_err(std::io::Error::other)?;
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
    crate::input::read(std::path::Path::new(src), DIFF_LIMIT)
        .with_context(|| format!("cannot read {src} on the controller"))
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
    let Looked {
        stat: st,
        content: old,
        parent_dir,
    } = look_unless(ctx, dest, true, Some(&want_sha)).await?;
    if st.is_none() && !parent_dir {
        return Ok(Probe::unknown(
            format!(
                "the directory of {dest} does not exist on {} (no earlier step of the plan is known to create it)",
                ctx.host.name
            ),
            json!({ "stat": null }),
        ));
    }
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
    let attrs = attr_changes(args, dest, st.as_ref())?;
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
    let after = match (want, content_changes) {
        (_, false) => file_written(dest, None, args, st.is_some()),
        (Wanted::Bytes(b), true) => file_written(dest, Some(b), args, st.is_some()),
        // A large file is not kept in the plan: later steps reading it are not derivable.
        (Wanted::File { .. }, true) => crate::plan::overlay::Effect::Path {
            path: dest.to_string(),
            state: crate::plan::overlay::PathState::File {
                content: crate::plan::overlay::Val::Unknown,
                attrs: planned_attrs(args, st.is_some()),
            },
        },
    };
    Ok(Probe::change(summary, diff, state).with_after(vec![after]))
}

/// What a path is after `write_file`: the new content (None: the same as before), the
/// attributes asked for, the others kept (or, for a new file, the host's).
pub(crate) fn file_written(
    path: &str,
    content: Option<Vec<u8>>,
    args: &Map<String, J>,
    existed: bool,
) -> crate::plan::overlay::Effect {
    use crate::plan::overlay::{Effect, PathState, Val};
    Effect::Path {
        path: path.to_string(),
        state: PathState::File {
            content: content.map_or(Val::Host, |c| Val::Set(std::sync::Arc::new(c))),
            attrs: planned_attrs(args, existed),
        },
    }
}

pub async fn apply_content(
    module: &str,
    args: &Map<String, J>,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    let dest = required(args, "dest")?;
    if probe.decision == super::Decision::NoChange {
        // The same fields as a write's result, so a registered result reads the same.
        let mut result = Map::new();
        result.insert("dest".into(), J::String(dest.to_string()));
        result.insert("sha256".into(), probe.state["sha256"].clone());
        return Ok(Outcome {
            result,
            ..Outcome::default()
        });
    }
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

/// Where a write keeps the file it replaces: named after the run and the old content, so two
/// steps of one run writing the same file keep one backup each (the second does not replace
/// the first's, and the unwind, newest first, ends at the original).
pub(crate) fn write_backup(dest: &str, run_id: &str, old: &Stat) -> String {
    match old.sha256.as_deref() {
        Some(sha) => format!("{dest}.cutover-{run_id}-{}~", &sha[..12.min(sha.len())]),
        None => format!("{dest}.cutover-{run_id}~"),
    }
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
        (true, Some(st)) => UndoAction::RestoreFile {
            path: dest.to_string(),
            backup: write_backup(dest, run_id, st),
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
    let backup = existed.map_or_else(String::new, |st| write_backup(dest, ctx.run_id, st));
    let guard = match expect_sha {
        Some(sha) => format!(
            "if [ -e \"$p\" ]; then set -- $(sha256sum -- \"$p\"); if [ \"$1\" != {} ]; then echo \"$p changed on the host since it was probed; nothing written\" >&2; exit 3; fi; fi\n",
            quote(sha)
        ),
        None => String::new(),
    };
    let Some((input, sha)) = content else {
        existed.context("attribute change on a missing file")?;
        let script = format!("set -e\np={}\n{}", quote(dest), attr_script(args, "\"$p\""));
        let undo = write_undo(dest, false, existed, ctx.run_id).context("no way back")?;
        let out = ctx.run(&script, None).await?;
        if !out.ok() {
            bail!("writing {dest} failed: {}", out.stderr_text().trim());
        }
        return Ok(undo);
    };
    // Each external command is a process on the host, so only the ones needed run: the old
    // file's owner and mode are copied only where the step does not set them. (`mode:` is
    // always a `chmod`: creating the file with a umask that gives the mode would save it, but
    // a directory's default ACL overrides the umask.)
    let (owner_set, mode_set) = (
        arg_str(args, "owner").is_some() && arg_str(args, "group").is_some(),
        arg_str(args, "mode").is_some(),
    );
    let mut keep_attrs = String::new();
    if existed.is_some() {
        if !owner_set {
            keep_attrs.push_str("chown --reference=\"$p\" -- \"$tmp\" 2>/dev/null || true\n");
        }
        if !mode_set {
            keep_attrs.push_str("chmod --reference=\"$p\" -- \"$tmp\"\n");
        }
    }
    // Until its owner and mode are set, the new file is private (0600); a new file without
    // `mode:` gets the mode the umask gives, as any new file.
    let umask = (existed.is_some() || mode_set).then_some(0o077);
    let attrs = attr_script(args, "\"$tmp\"");
    // The new content goes to a random name next to the target (created exclusively: no link
    // planted there is followed), and is renamed over it once complete. (Not `parent_of`: a
    // relative `dest` is relative to the shell's directory, so its temporary file is too.)
    let dir = match dest.rfind('/') {
        Some(0) => "",
        Some(i) => &dest[..i],
        None => ".",
    };
    let tmp = format!("{dir}/.cutover.{}", crate::shell::random_hex(8));
    let script = format!(
        r#"set -e
p={p}
tmp={t}
trap 'rm -f -- "$tmp"' EXIT
{guard}{keep_attrs}{attrs}{backup_cmd}mv -f -- "$tmp" "$p"
trap - EXIT"#,
        p = quote(dest),
        t = quote(&tmp),
        backup_cmd = if existed.is_some() {
            // A hard link keeps the old file as it is (the rename replaces only the name);
            // copied where links are not possible.
            format!(
                "ln -f -- \"$p\" {b} 2>/dev/null || cp -p -- \"$p\" {b}\n",
                b = quote(&backup)
            )
        } else {
            String::new()
        },
    );
    let undo = write_undo(dest, true, existed, ctx.run_id).context("no way back")?;
    let put = crate::session_shell::Put {
        path: &tmp,
        umask,
        sha256: sha,
    };
    let out = ctx.run_put(&script, input, put).await?;
    if !out.ok() {
        bail!("writing {dest} failed: {}", out.stderr_text().trim());
    }
    Ok(undo)
}

pub async fn probe_file(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    use crate::plan::overlay::{Effect, PathState, TreeState, Val};
    let path = required(args, "path")?;
    let state = arg_str(args, "state").unwrap_or("file");
    let (st, _) = stat(ctx, path, false).await?;
    let saw = json!({ "stat": st });
    let attrs = attr_changes(args, path, st.as_ref())?;
    let with_attrs = |s: String| {
        if attrs.is_empty() {
            s
        } else {
            format!("{s} ({})", attrs.join(", "))
        }
    };
    if arg_bool(args, "recurse") == Some(true) && st.as_ref().is_some_and(|s| s.kind == "directory")
    {
        // What earlier steps of a plan put below it is not on the host to be searched.
        if let Some(by) = ctx.overlay().and_then(|o| o.anything_within(path)) {
            return Err(crate::plan::overlay::not_derivable(format!(
                "{by} changes what is below {path}; the owners and modes there are known only when it runs"
            )));
        }
        if let Some(what) = recursive_attr_changes(args, path, ctx).await? {
            return Ok(Probe::change(
                format!("{what} below {path}"),
                None,
                json!({ "stat": st, "recurse": true }),
            )
            .with_after(vec![Effect::Tree {
                path: path.to_string(),
                state: TreeState::Attrs(planned_attrs(args, true)),
            }]));
        }
    }
    let at = |state: PathState| Effect::Path {
        path: path.to_string(),
        state,
    };
    let attrs_only = |s: &Stat| match s.kind.as_str() {
        "directory" => at(PathState::Dir {
            attrs: planned_attrs(args, true),
        }),
        "regular file" | "regular empty file" => at(PathState::File {
            content: Val::Host,
            attrs: planned_attrs(args, true),
        }),
        _ => at(PathState::Unknown {
            why: format!("{{by}} changes the attributes of {path}"),
        }),
    };
    let decision: Option<(String, Vec<Effect>)> = match (state, &st) {
        ("absent", None) => None,
        ("absent", Some(s)) => Some((
            format!("remove {} {path} (kept as backup for undo)", s.kind),
            vec![
                at(PathState::Absent),
                Effect::Tree {
                    path: path.to_string(),
                    state: TreeState::Absent,
                },
            ],
        )),
        ("directory", Some(s)) if s.kind == "directory" => (!attrs.is_empty()).then(|| {
            (
                with_attrs(format!("change attributes of {path}")),
                vec![attrs_only(s)],
            )
        }),
        ("directory", None) => Some((
            with_attrs(format!("create directory {path}")),
            vec![at(PathState::Dir {
                attrs: planned_attrs(args, false),
            })],
        )),
        ("directory", Some(s)) => bail!("{path} is a {} on {}, not a directory", s.kind, ctx.host.name),
        ("link", Some(s)) if s.link_target.as_deref() == arg_str(args, "src") => None,
        ("link", _) => Some((
            format!(
                "link {path} → {} (was {})",
                required(args, "src")?,
                st.as_ref().map_or("absent".into(), |s| s.link_target.clone().map_or(s.kind.clone(), |t| format!("→ {t}")))
            ),
            vec![at(PathState::Link {
                target: required(args, "src")?.to_string(),
            })],
        )),
        ("touch", None) | ("file", None) if state == "touch" => Some((
            with_attrs(format!("create empty file {path}")),
            vec![at(PathState::File {
                content: Val::Set(std::sync::Arc::new(Vec::new())),
                attrs: planned_attrs(args, false),
            })],
        )),
        ("file", None) => bail!("{path} does not exist on {} (state: file only changes attributes; use touch to create)", ctx.host.name),
        (_, Some(s)) => (!attrs.is_empty()).then(|| {
            (
                with_attrs(format!("change attributes of {path}")),
                vec![attrs_only(s)],
            )
        }),
        (other, _) => bail!("unknown file state `{other}`"),
    };
    Ok(match decision {
        None => Probe::no_change(saw),
        Some((summary, after)) => Probe::change(summary, None, saw).with_after(after),
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

/// What `file` may change: the path, and the tree below it when it removes or recurses.
fn file_touches(args: &Map<String, J>) -> Vec<Effect> {
    let mut out = Vec::new();
    if let Some(p) = arg_str(args, "path") {
        out.push(unknown_path(p));
        if arg_str(args, "state") == Some("absent") || arg_bool(args, "recurse") == Some(true) {
            out.push(unknown_tree(p));
        }
    }
    out
}

/// The `copy` module: a file's content from the controller or inline.
pub(crate) struct Copy;

impl Module for Copy {
    const SPEC: ModuleSpec = ModuleSpec {
        name: "copy",
        args: &[
            req("dest", T::Path),
            arg("src", T::Path),
            arg("content", T::Str),
            arg("owner", T::Str),
            arg("group", T::Str),
            arg("mode", T::Mode),
        ],
        free_form: None,
        one_of: &[&["src", "content"]],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_content(Self::SPEC.name, args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_content(Self::SPEC.name, args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_content_undo(Self::SPEC.name, args, probe, ctx.run_id)
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        arg_str(args, "dest")
            .map(unknown_path)
            .into_iter()
            .collect()
    }
}

/// The `template` module: a file rendered from a template.
pub(crate) struct Template;

impl Module for Template {
    const SPEC: ModuleSpec = ModuleSpec {
        name: "template",
        args: &[
            req("src", T::Path),
            req("dest", T::Path),
            arg("owner", T::Str),
            arg("group", T::Str),
            arg("mode", T::Mode),
            arg("vars", T::Map),
            arg("ignore_lines", T::StrList),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_content(Self::SPEC.name, args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_content(Self::SPEC.name, args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_content_undo(Self::SPEC.name, args, probe, ctx.run_id)
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        arg_str(args, "dest")
            .map(unknown_path)
            .into_iter()
            .collect()
    }
}

/// The `file` module: a path's kind and attributes.
pub(crate) struct File;

impl Module for File {
    const SPEC: ModuleSpec = ModuleSpec {
        name: "file",
        args: &[
            req("path", T::Path),
            choice("state", &["directory", "file", "link", "absent", "touch"]),
            arg("src", T::Path),
            arg("owner", T::Str),
            arg("group", T::Str),
            arg("mode", T::Mode),
            arg("recurse", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_file(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_file(args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_file_undo(args, probe, ctx.run_id)
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        file_touches(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::overlay::{NotDerivable, Val};

    fn args(v: J) -> Map<String, J> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn planned_stat(owner: &str, mode: &str) -> Stat {
        Stat {
            kind: "regular file".into(),
            owner: owner.into(),
            group: "root".into(),
            mode: mode.into(),
            size: 3,
            sha256: None,
            link_target: None,
            planned_by: Some("step 2 (conf)".into()),
        }
    }

    #[test]
    fn attributes_left_to_the_host_are_not_derivable() {
        let st = planned_stat(UNKNOWN_ATTR, "0640");
        // Asked for: the owner nobody planned.
        let e = attr_changes(&args(json!({"owner": "wiki"})), "/srv/a", Some(&st)).unwrap_err();
        let nd = e.downcast_ref::<NotDerivable>().expect("not derivable");
        assert!(nd.0.contains("owner of /srv/a after step 2 (conf)"), "{nd}");
        // Not asked for: no matter.
        assert_eq!(
            attr_changes(&args(json!({"mode": "640"})), "/srv/a", Some(&st)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            attr_changes(&args(json!({"mode": "0600"})), "/srv/a", Some(&st)).unwrap(),
            ["mode 0640 → 0600"]
        );
        assert_eq!(
            attr_changes(&args(json!({"owner": "wiki"})), "/srv/a", None).unwrap(),
            ["owner - → wiki"]
        );
    }

    #[test]
    fn planned_attributes() {
        let a = planned_attrs(&args(json!({"owner": "wiki", "mode": "640"})), false);
        assert_eq!(a.owner, Val::Set("wiki".into()));
        assert_eq!(a.mode, Val::Set("0640".into()));
        // A new file's group is whatever the host gives it; an existing one keeps its own.
        assert_eq!(a.group, Val::Unknown);
        assert_eq!(planned_attrs(&args(json!({})), true).group, Val::Host);
        // Numeric owners and symbolic modes are not derived.
        let b = planned_attrs(&args(json!({"owner": "1000", "mode": "u+x"})), true);
        assert_eq!((b.owner, b.mode), (Val::Unknown, Val::Unknown));
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("/srv/a/b.conf"), "/srv/a");
        assert_eq!(parent_of("/srv/a/"), "/srv");
        assert_eq!(parent_of("/srv"), "/");
    }
}
