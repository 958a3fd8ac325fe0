//! The `copy` and `template` modules: a file's content, compared by SHA-256 on the host and
//! written atomically with a backup kept for the undo.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};
use sha2::{Digest, Sha256};

use super::look::{attr_script, look_unless, planned_attrs, sha256_hex, WantedAttrs};
use super::{attr_changes, Looked, Stat};
use crate::modules::contract::unknown_path;
use crate::modules::contract::Module;
use crate::modules::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;
use crate::transport::Input;

/// Files larger than this are summarised in plans instead of diffed.
pub(super) const DIFF_LIMIT: u64 = 1024 * 1024;

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

/// The arguments of a `copy` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct CopyArgs {
    #[serde(deserialize_with = "args::required_text")]
    dest: String,
    #[serde(default, deserialize_with = "args::text")]
    src: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    content: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    mode: Option<String>,
}

impl CopyArgs {
    /// The step as the code shared with `template` reads it: `content:`, else the `src:` file.
    fn step(&self) -> Result<ContentStep<'_>> {
        let source = match (&self.content, &self.src) {
            (Some(c), _) => Source::Inline(c),
            (None, src) => Source::Controller(args::needed(src.as_deref(), "src")?),
        };
        Ok(ContentStep {
            dest: &self.dest,
            source,
            attrs: WantedAttrs {
                owner: self.owner.as_deref(),
                group: self.group.as_deref(),
                mode: self.mode.as_deref(),
            },
            ignore_lines: None,
        })
    }
}

/// The arguments of a `template` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct TemplateArgs {
    #[serde(deserialize_with = "args::required_text")]
    src: String,
    #[serde(deserialize_with = "args::required_text")]
    dest: String,
    #[serde(default, deserialize_with = "args::text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    mode: Option<String>,
    #[serde(default, deserialize_with = "args::mapping")]
    vars: Map<String, J>,
    #[serde(default, deserialize_with = "ignore_lines")]
    ignore_lines: Option<Vec<String>>,
}

/// `ignore_lines:` as a list of patterns (a list's strings, or one string); anything else: not
/// given. An empty list is given: lines are then compared without their line endings.
fn ignore_lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        J::String(s) => Some(vec![s]),
        _ => None,
    })
}

impl TemplateArgs {
    /// The step as the code shared with `copy` reads it.
    fn step(&self) -> ContentStep<'_> {
        ContentStep {
            dest: &self.dest,
            source: Source::Template {
                src: &self.src,
                vars: &self.vars,
            },
            attrs: WantedAttrs {
                owner: self.owner.as_deref(),
                group: self.group.as_deref(),
                mode: self.mode.as_deref(),
            },
            ignore_lines: self.ignore_lines.as_deref(),
        }
    }
}

/// What a `copy` or `template` step asks for, as the code both share reads it.
struct ContentStep<'a> {
    dest: &'a str,
    source: Source<'a>,
    attrs: WantedAttrs<'a>,
    /// A template's `ignore_lines:`: patterns of lines left out of the comparison.
    ignore_lines: Option<&'a [String]>,
}

/// Where a step's content comes from.
enum Source<'a> {
    /// A copy's `content:`.
    Inline(&'a str),
    /// A copy's `src:`, a file on the controller.
    Controller(&'a str),
    /// A template, rendered with the host's variables and the step's `vars:`.
    Template {
        src: &'a str,
        vars: &'a Map<String, J>,
    },
}

/// The content a `copy` or `template` step wants on the host.
fn desired_content(step: &ContentStep<'_>, ctx: &ModCtx<'_>) -> Result<Wanted> {
    if let Source::Controller(src) = step.source {
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
    small_content(&step.source, ctx).map(Wanted::Bytes)
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

fn small_content(source: &Source<'_>, ctx: &ModCtx<'_>) -> Result<Vec<u8>> {
    match *source {
        Source::Template { src, vars: extra } => {
            let mut vars = ctx.vars.clone();
            for (k, v) in extra {
                vars.insert(k.as_str(), v);
            }
            ctx.templates
                .render(src, &vars)
                .map(String::into_bytes)
                .map_err(|d| anyhow::anyhow!("{d}"))
        }
        Source::Inline(c) => Ok(c.as_bytes().to_vec()),
        Source::Controller(src) => crate::input::read(std::path::Path::new(src), DIFF_LIMIT)
            .with_context(|| format!("cannot read {src} on the controller")),
    }
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
fn ignore_patterns(list: Option<&[String]>) -> Result<Option<Vec<regex::Regex>>> {
    let Some(list) = list else {
        return Ok(None);
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

async fn probe_content(step: &ContentStep<'_>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let dest = step.dest;
    let want = desired_content(step, ctx)?;
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
        if let (Some(patterns), Some(old)) = (ignore_patterns(step.ignore_lines)?, old.as_deref()) {
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
    let attrs = attr_changes(step.attrs, dest, st.as_ref())?;
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
        (_, false) => file_written(dest, None, step.attrs, st.is_some()),
        (Wanted::Bytes(b), true) => file_written(dest, Some(b), step.attrs, st.is_some()),
        // A large file is not kept in the plan: later steps reading it are not derivable.
        (Wanted::File { .. }, true) => crate::overlay::Effect::Path {
            path: dest.to_string(),
            state: crate::overlay::PathState::File {
                content: crate::overlay::Val::Unknown,
                attrs: planned_attrs(step.attrs, st.is_some()),
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
    attrs: WantedAttrs<'_>,
    existed: bool,
) -> crate::overlay::Effect {
    use crate::overlay::{Effect, PathState, Val};
    Effect::Path {
        path: path.to_string(),
        state: PathState::File {
            content: content.map_or(Val::Host, |c| Val::Set(std::sync::Arc::new(c))),
            attrs: planned_attrs(attrs, existed),
        },
    }
}

async fn apply_content(step: &ContentStep<'_>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let dest = step.dest;
    if probe.decision == crate::modules::Decision::NoChange {
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
        Some(desired_content(step, ctx)?)
    } else {
        None
    };
    // What is written must be what was probed (and, from a saved plan, reviewed).
    let probed_sha = probe.state["sha256"].as_str().unwrap_or_default();
    let content = want.as_ref().map(|w| (w.input(), probed_sha));
    let undo = write_file(ctx, step.attrs, dest, content, existed.as_ref(), None).await?;
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
    backup_name(dest, run_id, old.sha256.as_deref())
}

/// As [`write_backup`], from the old content's SHA-256 (when known).
pub(crate) fn backup_name(dest: &str, run_id: &str, sha: Option<&str>) -> String {
    match sha {
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

/// The way back of a `copy`/`template`/`lineinfile` step writing `dest`, known before it
/// writes; `content_changes`: its probe found new content (else only attributes change).
pub(crate) fn pending_content_undo(
    dest: &str,
    content_changes: bool,
    probe: &Probe,
    run_id: &str,
) -> Option<UndoAction> {
    if probe.decision == crate::modules::Decision::NoChange {
        return None;
    }
    let existed: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    write_undo(dest, content_changes, existed.as_ref(), run_id)
}

/// Did a `copy` or `template` probe find new content (else only attributes change)?
fn content_changes(probe: &Probe) -> bool {
    probe.state["content_changes"].as_bool().unwrap_or(true)
}

/// Write `content` (its input and the SHA-256 it must have) to `dest` atomically (temporary
/// file in the same directory, checked against the SHA-256, then renamed), keeping the
/// previous file as a backup named after the run; with `content` None, only set the owner,
/// group and mode asked for (`attrs`). `expect_sha` guards against a change on the host since the
/// probe read the file. Returns how to undo the write.
pub(crate) async fn write_file(
    ctx: &ModCtx<'_>,
    attrs: WantedAttrs<'_>,
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
        let script = format!(
            "set -e\np={}\n{}",
            quote(dest),
            attr_script(attrs, "\"$p\"")
        );
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
        attrs.owner.is_some() && attrs.group.is_some(),
        attrs.mode.is_some(),
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
    let attrs = attr_script(attrs, "\"$tmp\"");
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

/// The `copy` module: a file's content from the controller or inline.
pub(crate) struct Copy;

impl Module for Copy {
    type Args = CopyArgs;

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
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &CopyArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_content(&args.step()?, ctx).await
    }

    async fn apply(args: &CopyArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_content(&args.step()?, probe, ctx).await
    }

    fn pending_undo(args: &CopyArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_content_undo(&args.dest, content_changes(probe), probe, ctx.run_id)
    }

    fn touches(args: &CopyArgs) -> Vec<Effect> {
        vec![unknown_path(&args.dest)]
    }
}

/// The `template` module: a file rendered from a template.
pub(crate) struct Template;

impl Module for Template {
    type Args = TemplateArgs;

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
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &TemplateArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_content(&args.step(), ctx).await
    }

    async fn apply(args: &TemplateArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_content(&args.step(), probe, ctx).await
    }

    fn pending_undo(args: &TemplateArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_content_undo(&args.dest, content_changes(probe), probe, ctx.run_id)
    }

    fn touches(args: &TemplateArgs) -> Vec<Effect> {
        vec![unknown_path(&args.dest)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<A: serde::de::DeserializeOwned>(module: &str, v: J) -> Result<A> {
        args::parse(module, v.as_object().expect("a map"))
    }

    #[test]
    fn a_copy_takes_its_content_inline_else_from_src() {
        let inline: CopyArgs =
            parse("copy", json!({"dest": "/d", "content": "x", "src": "/s"})).unwrap();
        assert!(matches!(inline.step().unwrap().source, Source::Inline("x")));
        let file: CopyArgs = parse(
            "copy",
            json!({"dest": "/d", "src": "/s", "mode": "0640", "owner": 0}),
        )
        .unwrap();
        let step = file.step().unwrap();
        assert!(matches!(step.source, Source::Controller("/s")));
        assert_eq!(step.dest, "/d");
        assert_eq!((step.attrs.mode, step.attrs.owner), (Some("0640"), None));
        // Content rendered to something else than text: `src` is needed, and said as before.
        let neither: CopyArgs = parse("copy", json!({"dest": "/d", "content": 5})).unwrap();
        assert_eq!(
            neither.step().err().unwrap().to_string(),
            "argument `src` is missing or not a string"
        );
        assert_eq!(
            parse::<CopyArgs>("copy", json!({"dest": 5, "content": "x"}))
                .err()
                .unwrap()
                .to_string(),
            "argument `dest` is missing or not a string"
        );
    }

    #[test]
    fn a_template_s_ignore_lines_and_vars_read_as_before() {
        let ignore = |v: J| {
            let mut m = json!({"src": "a.conf", "dest": "/d"});
            m["ignore_lines"] = v;
            parse::<TemplateArgs>("template", m).unwrap().ignore_lines
        };
        assert_eq!(
            ignore(json!(["^a", 3, "^b"])),
            Some(vec!["^a".to_string(), "^b".to_string()])
        );
        // One string is a list of one, even empty; an empty list still compares by lines.
        assert_eq!(ignore(json!("")), Some(vec![String::new()]));
        assert_eq!(ignore(json!([])), Some(vec![]));
        assert_eq!(ignore(json!(7)), None);
        let t: TemplateArgs = parse(
            "template",
            json!({"src": "a.conf", "dest": "/d", "vars": "x", "group": "g"}),
        )
        .unwrap();
        let step = t.step();
        assert!(matches!(step.source, Source::Template { src: "a.conf", vars } if vars.is_empty()));
        assert_eq!((step.attrs.group, step.ignore_lines), (Some("g"), None));
        assert_eq!(
            parse::<TemplateArgs>("template", json!({"dest": "/d"}))
                .err()
                .unwrap()
                .to_string(),
            "arguments of `template`: missing field `src`"
        );
    }

    #[test]
    fn the_patterns_to_ignore_are_regular_expressions() {
        assert!(ignore_patterns(None).unwrap().is_none());
        let list = ["^stamp=".to_string()];
        assert_eq!(ignore_patterns(Some(&list)).unwrap().unwrap().len(), 1);
        let bad = ["(".to_string()];
        let e = ignore_patterns(Some(&bad)).unwrap_err().to_string();
        assert!(
            e.starts_with("ignore_lines: `(` is not a regular expression: "),
            "{e}"
        );
    }
}
