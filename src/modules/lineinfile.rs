//! `lineinfile`: make sure one line is in a file (or is not), replacing the line a regexp
//! matches or inserting after/before an anchor.
//!
//! The probe fetches the file and computes the new content on the controller, so the plan shows
//! the exact diff; apply writes that content atomically with a backup (files::write_file), and
//! refuses if the file changed on the host in between.

use anyhow::{bail, Context as _, Result};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::unknown_path;
use super::contract::Module;
use super::files::{self, Stat, WantedAttrs};
use super::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use super::UndoAction;
use super::{args, Decision, ModCtx, Outcome, Probe};
use crate::overlay::Effect;
use crate::transport::Input;

/// The arguments of a `lineinfile` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct LineInFileArgs {
    #[serde(deserialize_with = "args::required_text")]
    path: String,
    #[serde(default, deserialize_with = "args::text")]
    line: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    regexp: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    insertafter: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    insertbefore: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    create: Option<bool>,
    #[serde(default, deserialize_with = "args::text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    mode: Option<String>,
}

impl LineInFileArgs {
    /// `state:`, `present` when not given.
    fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("present")
    }

    /// The owner, group and mode asked for.
    fn attrs(&self) -> WantedAttrs<'_> {
        WantedAttrs {
            owner: self.owner.as_deref(),
            group: self.group.as_deref(),
            mode: self.mode.as_deref(),
        }
    }
}

/// Where a missing line goes.
#[derive(Debug)]
enum Anchor {
    Eof,
    Bof,
    After(Regex),
    Before(Regex),
}

fn compile(what: &str, re: &str) -> Result<Regex> {
    Regex::new(re).with_context(|| format!("`{what}` is not a valid regular expression"))
}

fn anchor(args: &LineInFileArgs) -> Result<Anchor> {
    match (args.insertafter.as_deref(), args.insertbefore.as_deref()) {
        (Some(_), Some(_)) => bail!("give `insertafter` or `insertbefore`, not both"),
        (Some("EOF") | None, None) => Ok(Anchor::Eof),
        (Some(a), None) => Ok(Anchor::After(compile("insertafter", a)?)),
        (None, Some("BOF")) => Ok(Anchor::Bof),
        (None, Some(b)) => Ok(Anchor::Before(compile("insertbefore", b)?)),
    }
}

/// The file's content after the edit. Lines are compared without their line ending; a file
/// without a final newline gets one when a line is appended after it.
fn edit(old: &str, args: &LineInFileArgs) -> Result<String> {
    let state = args.state();
    let line = args.line.as_deref();
    let regexp = args
        .regexp
        .as_deref()
        .map(|r| compile("regexp", r))
        .transpose()?;
    let mut lines: Vec<&str> = old.lines().collect();
    let trailing_newline = old.is_empty() || old.ends_with('\n');
    let matches = |l: &str| match &regexp {
        Some(re) => re.is_match(l),
        None => Some(l) == line,
    };
    match state {
        "absent" => {
            if regexp.is_none() && line.is_none() {
                bail!("state: absent needs `regexp` or `line`");
            }
            lines.retain(|l| !matches(l));
        }
        "present" => {
            let line = line.context("state: present needs `line`")?;
            // Like Ansible: the last line the regexp matches is replaced; without a match (or
            // without a regexp) an identical line anywhere means nothing to do.
            let hit = regexp
                .as_ref()
                .and_then(|re| lines.iter().rposition(|l| re.is_match(l)));
            if let Some(i) = hit {
                lines[i] = line;
            } else if !lines.contains(&line) {
                let at = match anchor(args)? {
                    Anchor::Eof => lines.len(),
                    Anchor::Bof => 0,
                    Anchor::After(re) => lines
                        .iter()
                        .rposition(|l| re.is_match(l))
                        .map_or(lines.len(), |i| i + 1),
                    Anchor::Before(re) => lines
                        .iter()
                        .rposition(|l| re.is_match(l))
                        .unwrap_or(lines.len()),
                };
                lines.insert(at, line);
            }
        }
        other => bail!("unknown lineinfile state `{other}`"),
    }
    let mut new = lines.join("\n");
    // Keep a missing final newline missing unless the last line is a new one.
    if !new.is_empty() && (trailing_newline || !old.ends_with(lines.last().unwrap_or(&""))) {
        new.push('\n');
    }
    Ok(new)
}

async fn probe(args: &LineInFileArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let path = args.path.as_str();
    let state = args.state();
    let files::Looked {
        stat: st,
        content,
        parent_dir,
    } = files::look(ctx, path, true).await?;
    let label = format!("{}:{path}", ctx.host.name);
    let Some(st) = st else {
        let saw = json!({ "stat": null });
        if state == "absent" {
            return Ok(Probe::no_change(saw));
        }
        if args.create != Some(true) {
            return Ok(Probe::unknown(
                format!(
                    "{path} does not exist on {} (no earlier step of the plan is known to create it; create: true would)",
                    ctx.host.name
                ),
                saw,
            ));
        }
        if !parent_dir {
            return Ok(Probe::unknown(
                format!(
                    "the directory of {path} does not exist on {} (no earlier step of the plan is known to create it)",
                    ctx.host.name
                ),
                saw,
            ));
        }
        let new = edit("", args)?;
        let diff = files::content_diff(&label, None, None, new.as_bytes());
        let mut summary = format!("create {path}");
        let attrs = files::attr_changes(args.attrs(), path, None)?;
        if !attrs.is_empty() {
            summary.push_str(&format!(" ({})", attrs.join(", ")));
        }
        let after = files::file_written(path, Some(new.clone().into_bytes()), args.attrs(), false);
        return Ok(
            Probe::change(summary, Some(diff), json!({ "stat": null, "content": new }))
                .with_after(vec![after]),
        );
    };
    if st.kind != "regular file" && st.kind != "regular empty file" {
        bail!(
            "{path} is a {} on {}, not a regular file",
            st.kind,
            ctx.host.name
        );
    }
    let old = match &content {
        Some(c) => std::str::from_utf8(c)
            .with_context(|| format!("{path} on {} is not UTF-8 text", ctx.host.name))?,
        // Empty files send no content; larger ones than the diff limit are not edited here.
        None if st.size == 0 => "",
        None => bail!(
            "{path} on {} is too large for lineinfile ({} bytes)",
            ctx.host.name,
            st.size
        ),
    };
    let new = edit(old, args)?;
    let content_changes = new != old;
    let attrs = files::attr_changes(args.attrs(), path, Some(&st))?;
    let saw = json!({ "stat": st, "content": content_changes.then_some(&new) });
    if !content_changes && attrs.is_empty() {
        return Ok(Probe::no_change(saw));
    }
    let diff = content_changes
        .then(|| files::content_diff(&label, Some(old.as_bytes()), Some(&st), new.as_bytes()));
    let mut summary = if content_changes {
        let (before, after) = (old.lines().count(), new.lines().count());
        match after.cmp(&before) {
            std::cmp::Ordering::Greater => format!("add line to {path}"),
            std::cmp::Ordering::Less => format!("remove {} line(s) from {path}", before - after),
            std::cmp::Ordering::Equal => format!("replace line in {path}"),
        }
    } else {
        format!("change attributes of {path}")
    };
    if !attrs.is_empty() {
        summary.push_str(&format!(" ({})", attrs.join(", ")));
    }
    let after = files::file_written(
        path,
        content_changes.then(|| new.clone().into_bytes()),
        args.attrs(),
        true,
    );
    Ok(Probe::change(summary, diff, saw).with_after(vec![after]))
}

async fn apply(args: &LineInFileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let path = args.path.as_str();
    match &probe.decision {
        Decision::NoChange => return Ok(Outcome::default()),
        Decision::Unknown { reason } => bail!("{reason}"),
        Decision::Change { .. } => {}
    }
    let existed: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    let content = probe.state["content"].as_str().map(str::as_bytes);
    let sha = content.map(crate::controller::hash::sha256_hex);
    let content = content
        .zip(sha.as_deref())
        .map(|(c, sha)| (Input::Bytes(c), sha));
    let expect = existed.as_ref().and_then(|s| s.sha256.as_deref());
    let undo =
        files::write_file(ctx, args.attrs(), path, content, existed.as_ref(), expect).await?;
    let mut result = Map::new();
    result.insert("path".into(), J::String(path.to_string()));
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(undo),
        failed: None,
    })
}

/// The `lineinfile` module.
pub(crate) struct LineInFile;

impl Module for LineInFile {
    type Args = LineInFileArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "lineinfile",
        args: &[
            req("path", T::Path),
            arg("line", T::Str),
            arg("regexp", T::Str),
            choice("state", &["present", "absent"]),
            arg("insertafter", T::Str),
            arg("insertbefore", T::Str),
            arg("create", T::Bool),
            arg("owner", T::Str),
            arg("group", T::Str),
            arg("mode", T::Mode),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &LineInFileArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &LineInFileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &LineInFileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        // The probe keeps the new content only when the content changes.
        let content_changes = probe.state["content"].is_string();
        files::pending_content_undo(&args.path, content_changes, probe, ctx.run_id)
    }

    fn touches(args: &LineInFileArgs) -> Vec<Effect> {
        vec![unknown_path(&args.path)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: J) -> LineInFileArgs {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.insert("path".into(), json!("/etc/x.conf"));
        args::parse("lineinfile", &m).unwrap()
    }

    #[test]
    fn appends_replaces_and_removes() {
        let a = args(json!({"line": "x=1"}));
        assert_eq!(edit("a\nb\n", &a).unwrap(), "a\nb\nx=1\n");
        assert_eq!(edit("a\nx=1\nb\n", &a).unwrap(), "a\nx=1\nb\n");
        assert_eq!(edit("a", &a).unwrap(), "a\nx=1\n");
        assert_eq!(edit("", &a).unwrap(), "x=1\n");
        let r = args(json!({"line": "x=2", "regexp": "^x="}));
        assert_eq!(edit("x=1\ny\nx=3\n", &r).unwrap(), "x=1\ny\nx=2\n");
        let gone = args(json!({"regexp": "^x=", "state": "absent"}));
        assert_eq!(edit("x=1\ny\nx=3\n", &gone).unwrap(), "y\n");
        assert_eq!(edit("x=1\n", &gone).unwrap(), "");
        let keep = args(json!({"line": "y", "state": "absent"}));
        assert_eq!(edit("a\nb", &keep).unwrap(), "a\nb");
    }

    #[test]
    fn anchors() {
        let after = args(json!({"line": "new", "insertafter": "^\\[main\\]"}));
        assert_eq!(
            edit("[main]\na\n[other]\n", &after).unwrap(),
            "[main]\nnew\na\n[other]\n"
        );
        let before = args(json!({"line": "new", "insertbefore": "^\\[other\\]"}));
        assert_eq!(
            edit("[main]\na\n[other]\n", &before).unwrap(),
            "[main]\na\nnew\n[other]\n"
        );
        let bof = args(json!({"line": "#!/bin/sh", "insertbefore": "BOF"}));
        assert_eq!(edit("echo\n", &bof).unwrap(), "#!/bin/sh\necho\n");
        let missing = args(json!({"line": "new", "insertafter": "^nope"}));
        assert_eq!(edit("a\n", &missing).unwrap(), "a\nnew\n");
    }

    #[test]
    fn a_step_reads_its_arguments_as_before() {
        let a = args(json!({"line": "x=1", "create": "true", "mode": "0600", "owner": 0}));
        assert_eq!((a.state(), a.create), ("present", Some(true)));
        assert_eq!((a.attrs().mode, a.attrs().owner), (Some("0600"), None));
        // Rendered values that read as nothing: not given, as the map readers had it.
        assert_eq!(args(json!({"create": "yes"})).create, None);
        let no_line = args(json!({"line": 5}));
        assert_eq!(
            edit("a\n", &no_line).unwrap_err().to_string(),
            "state: present needs `line`"
        );
        let both = args(json!({"line": "n", "insertafter": "a", "insertbefore": "b"}));
        assert_eq!(
            edit("a\n", &both).unwrap_err().to_string(),
            "give `insertafter` or `insertbefore`, not both"
        );
        let bad = args(json!({"line": "n", "regexp": "("}));
        assert_eq!(
            edit("a\n", &bad).unwrap_err().to_string(),
            "`regexp` is not a valid regular expression"
        );
        assert_eq!(
            edit("a\n", &args(json!({"line": "n", "state": "gone"})))
                .unwrap_err()
                .to_string(),
            "unknown lineinfile state `gone`"
        );
    }
}
