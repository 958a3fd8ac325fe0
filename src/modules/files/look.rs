//! What a path is on a host (kind, owner, group, mode, checksum, content when small) read in one
//! round trip, and the attribute changes a step asks for.

use anyhow::{bail, Result};

use super::content::DIFF_LIMIT;
use crate::modules::ModCtx;
use crate::shell::quote;

/// The owner, group and mode a step asks a path to have (`owner:`, `group:`, `mode:`), each
/// optional: what `copy`, `template`, `lineinfile` and `file` share.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WantedAttrs<'a> {
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mode: Option<&'a str>,
}

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
/// plan leave it (an error [`NotDerivable`](crate::overlay::NotDerivable) when that
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
    use crate::overlay::{not_derivable, PathState, Planned, Seen, Val};
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
            let planned = PlannedPath {
                path,
                attrs: &attrs,
                by,
                attrs_by,
            };
            planned_file(ctx, &planned, content, want_content).await
        }
        PathState::Dir { attrs } => {
            let planned = PlannedPath {
                path,
                attrs: &attrs,
                by,
                attrs_by,
            };
            planned_dir(ctx, &planned).await
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
                planned_by: Some(attrs_by),
            }),
            content: None,
            parent_dir: true,
        }),
    }
}

/// A path as earlier steps of a plan leave it: its planned attributes, the step that writes it
/// and the step that left its attributes to the host.
struct PlannedPath<'a> {
    path: &'a str,
    attrs: &'a crate::overlay::Attrs,
    by: String,
    attrs_by: String,
}

/// A planned attribute: set by a step, the host's (`host`, when read), or unknown.
fn planned_attr(v: &crate::overlay::Val<String>, host: Option<&str>) -> String {
    use crate::overlay::Val;
    match v {
        Val::Set(s) => s.clone(),
        Val::Host => host.unwrap_or(UNKNOWN_ATTR).to_string(),
        Val::Unknown => UNKNOWN_ATTR.to_string(),
    }
}

/// A file an earlier step writes (or whose attributes it sets): what is planned, completed with
/// what the host has where the plan leaves parts to it.
async fn planned_file(
    ctx: &ModCtx<'_>,
    p: &PlannedPath<'_>,
    content: crate::overlay::Val<std::sync::Arc<Vec<u8>>>,
    want_content: bool,
) -> Result<Looked> {
    use crate::overlay::Val;
    let attrs = p.attrs;
    let any_host = [&attrs.owner, &attrs.group, &attrs.mode]
        .iter()
        .any(|v| **v == Val::Host);
    let host = if content == Val::Host || any_host {
        // Parts of it are the host's: read them there.
        Some(look_on_host(ctx, p.path, want_content && content == Val::Host, None).await?)
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
            st.owner = planned_attr(&attrs.owner, Some(&st.owner));
            st.group = planned_attr(&attrs.group, Some(&st.group));
            st.mode = planned_attr(&attrs.mode, Some(&st.mode));
            st.planned_by = Some(p.by.clone());
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
        owner: planned_attr(&attrs.owner, hs.as_ref().map(|s| s.owner.as_str())),
        group: planned_attr(&attrs.group, hs.as_ref().map(|s| s.group.as_str())),
        mode: planned_attr(&attrs.mode, hs.as_ref().map(|s| s.mode.as_str())),
        size: data.len() as u64,
        sha256: Some(sha256_hex(&data)),
        link_target: None,
        planned_by: Some(p.attrs_by.clone()),
    };
    let content = (want_content && st.size <= DIFF_LIMIT).then(|| data.to_vec());
    Ok(Looked {
        stat: Some(st),
        content,
        parent_dir: true,
    })
}

/// A directory an earlier step creates: its planned attributes, the host's where left to it.
async fn planned_dir(ctx: &ModCtx<'_>, p: &PlannedPath<'_>) -> Result<Looked> {
    use crate::overlay::Val;
    let attrs = p.attrs;
    let any_host = [&attrs.owner, &attrs.group, &attrs.mode]
        .iter()
        .any(|v| **v == Val::Host);
    let hs = if any_host {
        look_on_host(ctx, p.path, false, None)
            .await?
            .stat
            .filter(|s| s.kind == "directory")
    } else {
        None
    };
    Ok(Looked {
        stat: Some(Stat {
            kind: "directory".into(),
            owner: planned_attr(&attrs.owner, hs.as_ref().map(|s| s.owner.as_str())),
            group: planned_attr(&attrs.group, hs.as_ref().map(|s| s.group.as_str())),
            mode: planned_attr(&attrs.mode, hs.as_ref().map(|s| s.mode.as_str())),
            size: 0,
            sha256: None,
            link_target: None,
            planned_by: Some(p.attrs_by.clone()),
        }),
        content: None,
        parent_dir: true,
    })
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
    use crate::overlay::{not_derivable, PathState, Planned, Seen};
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
    let mut st = parse_stat_line(first)
        .ok_or_else(|| anyhow::anyhow!("unexpected stat output for {path}: {first}"))?;
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

/// `stat -c '%F|%U|%G|%a|%s'` as a [`Stat`] (no checksum, no link target yet).
fn parse_stat_line(line: &str) -> Option<Stat> {
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < 5 {
        return None;
    }
    Some(Stat {
        kind: f[0].to_string(),
        owner: f[1].to_string(),
        group: f[2].to_string(),
        mode: format!("{:04o}", u32::from_str_radix(f[3], 8).unwrap_or(0)),
        size: f[4].parse().unwrap_or(0),
        sha256: None,
        link_target: None,
        planned_by: None,
    })
}

/// One path of [`look_many`]: where, and, for a file whose content is wanted for a diff, the
/// SHA-256 it should have (its content is not sent when it has it already).
pub(crate) struct LookFor<'a> {
    pub path: &'a str,
    pub want_content: bool,
    pub unless_sha: Option<&'a str>,
}

/// As [`look`] for many paths in one round trip (on the host as it is now: in a plan whose
/// earlier steps touch any of these paths or their directories, one by one as `look` sees
/// them). Content comes back
/// base64-encoded, one line per file, so the files' bytes cannot be mistaken for the framing.
pub(crate) async fn look_many(ctx: &ModCtx<'_>, paths: &[LookFor<'_>]) -> Result<Vec<Looked>> {
    use crate::overlay::Seen;
    let planned = ctx.overlay().is_some_and(|o| {
        paths
            .iter()
            .any(|p| o.path(p.path) != Seen::Host || o.path(&parent_of(p.path)) != Seen::Host)
    });
    if planned {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(look_unless(ctx, p.path, p.want_content, p.unless_sha).await?);
        }
        return Ok(out);
    }
    let mut script = String::from(
        r#"look() {
  if [ -L "$2" ] || [ -e "$2" ]; then
    m=$(stat -c '%F|%U|%G|%a|%s' -- "$2") || exit 1
    printf '@%s %s
' "$1" "$m"
    if [ -L "$2" ]; then printf 'link %s
' "$(readlink -- "$2")"; fi
    if [ -f "$2" ] && [ ! -L "$2" ]; then
      set -- "$1" "$2" "$3" "$4" $(sha256sum <"$2")
      printf 'sha %s
' "$5"
      if [ "$3" = 1 ] && [ "$5" != "$4" ] && [ "${m##*|}" -le "#,
    );
    script.push_str(&format!(
        r#"{DIFF_LIMIT} ]; then printf 'data '; base64 -w0 -- "$2"; echo; fi
    fi
  else
    case $2 in */*) d=${{2%/*}} ;; *) d=. ;; esac
    if [ -d "${{d:-/}}" ]; then printf '@%s absent parent-dir
' "$1"; else printf '@%s absent
' "$1"; fi
  fi
}}
"#
    ));
    for (i, p) in paths.iter().enumerate() {
        script.push_str(&format!(
            "look {i} {} {} {}
",
            quote(p.path),
            u8::from(p.want_content),
            quote(p.unless_sha.unwrap_or("-"))
        ));
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "cannot inspect {} paths: {}",
            paths.len(),
            out.stderr_text().trim()
        );
    }
    parse_looks(&out.stdout_text(), paths.len())
}

/// The output of [`look_many`]'s script: one `@INDEX` line per path, then its checksum,
/// link target and content lines.
pub(crate) fn parse_looks(text: &str, n: usize) -> Result<Vec<Looked>> {
    use base64::Engine as _;
    let mut out: Vec<Looked> = Vec::with_capacity(n);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('@') {
            let (i, what) = rest.split_once(' ').unwrap_or((rest, ""));
            if i.parse::<usize>().ok() != Some(out.len()) {
                bail!(
                    "unexpected inspection output (path {i} after {} paths)",
                    out.len()
                );
            }
            out.push(match what.strip_prefix("absent") {
                Some(rest) => Looked {
                    parent_dir: rest.trim() == "parent-dir",
                    ..Looked::default()
                },
                None => Looked {
                    stat: Some(
                        parse_stat_line(what)
                            .ok_or_else(|| anyhow::anyhow!("unexpected stat output: {what}"))?,
                    ),
                    content: None,
                    parent_dir: true,
                },
            });
            continue;
        }
        let Some(st) = out.last_mut().and_then(|l| l.stat.as_mut()) else {
            bail!("unexpected inspection output: {line}");
        };
        if let Some(sha) = line.strip_prefix("sha ") {
            st.sha256 = Some(sha.to_string());
        } else if let Some(t) = line.strip_prefix("link ") {
            st.link_target = Some(t.to_string());
        } else if let Some(d) = line.strip_prefix("data ") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| anyhow::anyhow!("unexpected file content encoding: {e}"))?;
            if let Some(l) = out.last_mut() {
                l.content = Some(bytes);
            }
        }
    }
    if out.len() != n {
        bail!("inspection output ended after {} of {n} paths", out.len());
    }
    Ok(out)
}

fn normalize_mode(mode: &str) -> Option<String> {
    u32::from_str_radix(mode, 8)
        .ok()
        .map(|m| format!("{m:04o}"))
}

/// Attribute changes (owner, group, mode) a step asks for, compared with the host (in a plan:
/// with what earlier steps leave; one they leave to the host is not derivable).
pub(crate) fn attr_changes(
    want: WantedAttrs<'_>,
    path: &str,
    st: Option<&Stat>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let wanted = [
        ("owner", want.owner.map(str::to_string)),
        ("group", want.group.map(str::to_string)),
        (
            "mode",
            want.mode
                .map(|m| normalize_mode(m).unwrap_or_else(|| m.to_string())),
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
            return Err(crate::overlay::not_derivable(format!(
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

/// The owner, group and mode a path has after a step that sets `want` on it:
/// what it asks for; otherwise, for a path that exists, as it was (`Val::Host`), and for a new
/// one, whatever the host gives it (unknown). Only numeric modes and names are derived.
pub(crate) fn planned_attrs(want: WantedAttrs<'_>, existed: bool) -> crate::overlay::Attrs {
    use crate::overlay::Val;
    let keep = || if existed { Val::Host } else { Val::Unknown };
    let name = |asked: Option<&str>| match asked {
        Some(v) if !v.is_empty() && !v.chars().all(|c| c.is_ascii_digit()) => {
            Val::Set(v.to_string())
        }
        Some(_) => Val::Unknown,
        None => keep(),
    };
    crate::overlay::Attrs {
        owner: name(want.owner),
        group: name(want.group),
        mode: match want.mode {
            Some(m) => normalize_mode(m).map_or(Val::Unknown, Val::Set),
            None => keep(),
        },
    }
}

pub(crate) fn attr_script(want: WantedAttrs<'_>, target: &str) -> String {
    let mut s = String::new();
    match (want.owner, want.group) {
        (Some(o), Some(g)) => s.push_str(&format!("chown -- {}:{} {target}\n", quote(o), quote(g))),
        (Some(o), None) => s.push_str(&format!("chown -- {} {target}\n", quote(o))),
        (None, Some(g)) => s.push_str(&format!("chgrp -- {} {target}\n", quote(g))),
        (None, None) => {}
    }
    if let Some(m) = want.mode {
        s.push_str(&format!("chmod -- {} {target}\n", quote(m)));
    }
    s
}

pub use crate::controller::hash::sha256_hex;
