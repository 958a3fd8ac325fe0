//! The `file` module: a path's kind (directory, file, link, absent, touch) and attributes.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value as J};

use super::look::{attr_script, planned_attrs, stat};
use super::{attr_changes, Stat, WantedAttrs};
use crate::modules::contract::Module;
use crate::modules::contract::{unknown_path, unknown_tree};
use crate::modules::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{arg_bool, arg_str, required, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

/// `recurse: true` on a directory: the change of what is below it, if anything there has
/// another owner, group or mode.
async fn probe_below(
    args: &Map<String, J>,
    path: &str,
    st: &Option<Stat>,
    ctx: &ModCtx<'_>,
) -> Result<Option<Probe>> {
    use crate::overlay::TreeState;
    // What earlier steps of a plan put below it is not on the host to be searched.
    if let Some(by) = ctx.overlay().and_then(|o| o.anything_within(path)) {
        return Err(crate::overlay::not_derivable(format!(
            "{by} changes what is below {path}; the owners and modes there are known only when it runs"
        )));
    }
    let Some(what) = recursive_attr_changes(args, path, ctx).await? else {
        return Ok(None);
    };
    Ok(Some(
        Probe::change(
            format!("{what} below {path}"),
            None,
            json!({ "stat": st, "recurse": true }),
        )
        .with_after(vec![Effect::Tree {
            path: path.to_string(),
            state: TreeState::Attrs(planned_attrs(WantedAttrs::from_map(args), true)),
        }]),
    ))
}

pub async fn probe_file(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    use crate::overlay::{Effect, PathState, TreeState, Val};
    let path = required(args, "path")?;
    let state = arg_str(args, "state").unwrap_or("file");
    let (st, _) = stat(ctx, path, false).await?;
    let saw = json!({ "stat": st });
    let attrs = attr_changes(WantedAttrs::from_map(args), path, st.as_ref())?;
    let with_attrs = |s: String| {
        if attrs.is_empty() {
            s
        } else {
            format!("{s} ({})", attrs.join(", "))
        }
    };
    if arg_bool(args, "recurse") == Some(true) && st.as_ref().is_some_and(|s| s.kind == "directory")
    {
        if let Some(p) = probe_below(args, path, &st, ctx).await? {
            return Ok(p);
        }
    }
    let at = |state: PathState| Effect::Path {
        path: path.to_string(),
        state,
    };
    let attrs_only = |s: &Stat| match s.kind.as_str() {
        "directory" => at(PathState::Dir {
            attrs: planned_attrs(WantedAttrs::from_map(args), true),
        }),
        "regular file" | "regular empty file" => at(PathState::File {
            content: Val::Host,
            attrs: planned_attrs(WantedAttrs::from_map(args), true),
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
                attrs: planned_attrs(WantedAttrs::from_map(args), false),
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
                attrs: planned_attrs(WantedAttrs::from_map(args), false),
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
    if probe.decision == crate::modules::Decision::NoChange || probe.state["recurse"] == true {
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
    if probe.decision == crate::modules::Decision::NoChange {
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
            format!(
                "set -e\nmkdir -p -- {p}\n{}",
                attr_script(WantedAttrs::from_map(args), &p)
            )
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
            format!(
                "set -e\ntouch -- {p}\n{}",
                attr_script(WantedAttrs::from_map(args), &p)
            )
        }
        _ => {
            before
                .as_ref()
                .context("attribute change on a missing path")?;
            format!("set -e\n{}", attr_script(WantedAttrs::from_map(args), &p))
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

/// The `file` module: a path's kind and attributes.
pub(crate) struct File;

impl Module for File {
    type Args = crate::modules::contract::RawArgs;

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
