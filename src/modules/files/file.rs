//! The `file` module: a path's kind (directory, file, link, absent, touch) and attributes.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::{json, Map};

use super::look::{attr_script, planned_attrs, stat};
use super::{attr_changes, Stat, WantedAttrs};
use crate::modules::contract::Module;
use crate::modules::contract::{unknown_path, unknown_tree};
use crate::modules::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

/// The arguments of a `file` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct FileArgs {
    #[serde(deserialize_with = "args::required_text")]
    path: String,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    src: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    mode: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    recurse: Option<bool>,
}

impl FileArgs {
    /// `state:`, `file` (attributes only) when not given.
    fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("file")
    }

    /// The owner, group and mode asked for.
    fn attrs(&self) -> WantedAttrs<'_> {
        WantedAttrs {
            owner: self.owner.as_deref(),
            group: self.group.as_deref(),
            mode: self.mode.as_deref(),
        }
    }

    /// `recurse: true`.
    fn recurse(&self) -> bool {
        self.recurse == Some(true)
    }

    /// A link's target (`src:`), which `state: link` needs.
    fn link_src(&self) -> Result<&str> {
        args::needed(self.src.as_deref(), "src")
    }
}

/// `recurse: true` on a directory: the change of what is below it, if anything there has
/// another owner, group or mode.
async fn probe_below(
    args: &FileArgs,
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
            state: TreeState::Attrs(planned_attrs(args.attrs(), true)),
        }]),
    ))
}

async fn probe_file(args: &FileArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    use crate::overlay::{Effect, PathState, TreeState, Val};
    let path = args.path.as_str();
    let state = args.state();
    let (st, _) = stat(ctx, path, false).await?;
    let saw = json!({ "stat": st });
    let attrs = attr_changes(args.attrs(), path, st.as_ref())?;
    let with_attrs = |s: String| {
        if attrs.is_empty() {
            s
        } else {
            format!("{s} ({})", attrs.join(", "))
        }
    };
    if args.recurse() && st.as_ref().is_some_and(|s| s.kind == "directory") {
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
            attrs: planned_attrs(args.attrs(), true),
        }),
        "regular file" | "regular empty file" => at(PathState::File {
            content: Val::Host,
            attrs: planned_attrs(args.attrs(), true),
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
                attrs: planned_attrs(args.attrs(), false),
            })],
        )),
        ("directory", Some(s)) => bail!("{path} is a {} on {}, not a directory", s.kind, ctx.host.name),
        ("link", Some(s)) if s.link_target.as_deref() == args.src.as_deref() => None,
        ("link", _) => Some((
            format!(
                "link {path} → {} (was {})",
                args.link_src()?,
                st.as_ref().map_or("absent".into(), |s| s.link_target.clone().map_or(s.kind.clone(), |t| format!("→ {t}")))
            ),
            vec![at(PathState::Link {
                target: args.link_src()?.to_string(),
            })],
        )),
        ("touch", None) | ("file", None) if state == "touch" => Some((
            with_attrs(format!("create empty file {path}")),
            vec![at(PathState::File {
                content: Val::Set(std::sync::Arc::new(Vec::new())),
                attrs: planned_attrs(args.attrs(), false),
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
    args: &FileArgs,
    path: &str,
    ctx: &ModCtx<'_>,
) -> Result<Option<String>> {
    let want = args.attrs();
    let mut tests = Vec::new();
    if let Some(o) = want.owner {
        tests.push(format!("! -user {}", quote(o)));
    }
    if let Some(g) = want.group {
        tests.push(format!("! -group {}", quote(g)));
    }
    if let Some(m) = want.mode.filter(|m| m.chars().all(|c| c.is_ascii_digit())) {
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
        if let Some(o) = want.owner {
            what.push(format!("owner {o}"));
        }
        if let Some(g) = want.group {
            what.push(format!("group {g}"));
        }
        if let Some(m) = want.mode {
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
fn pending_file_undo(args: &FileArgs, probe: &Probe, run_id: &str) -> Option<UndoAction> {
    if probe.decision == crate::modules::Decision::NoChange || probe.state["recurse"] == true {
        return None;
    }
    let before: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    file_undo(&args.path, args.state(), before.as_ref(), run_id)
}

async fn apply_file(args: &FileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == crate::modules::Decision::NoChange {
        return Ok(Outcome::default());
    }
    // Recursive attributes: applied to the whole tree. There is no per-file record of the old
    // owners and modes, so this change has no automatic way back.
    if probe.state["recurse"] == true {
        let path = quote(&args.path);
        let want = args.attrs();
        let mut script = String::from("set -e\n");
        match (want.owner, want.group) {
            (Some(o), Some(g)) => {
                script.push_str(&format!("chown -R -- {}:{} {path}\n", quote(o), quote(g)))
            }
            (Some(o), None) => script.push_str(&format!("chown -R -- {} {path}\n", quote(o))),
            (None, Some(g)) => script.push_str(&format!("chgrp -R -- {} {path}\n", quote(g))),
            (None, None) => {}
        }
        if let Some(m) = want.mode {
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
    let path = args.path.as_str();
    let state = args.state();
    let before: Option<Stat> = serde_json::from_value(probe.state["stat"].clone())
        .ok()
        .flatten();
    let p = quote(path);
    let backup = format!("{path}.cutover-{}~", ctx.run_id);
    let script = match state {
        "absent" => format!("mv -f -- {p} {}", quote(&backup)),
        "directory" if before.is_none() => {
            format!("set -e\nmkdir -p -- {p}\n{}", attr_script(args.attrs(), &p))
        }
        "link" => {
            let src = args.link_src()?;
            let save = if before.as_ref().is_some_and(|s| s.link_target.is_none()) {
                format!("mv -f -- {p} {}\n", quote(&backup))
            } else {
                String::new()
            };
            format!("set -e\n{save}ln -sfn -- {} {p}", quote(src))
        }
        "touch" if before.is_none() => {
            format!("set -e\ntouch -- {p}\n{}", attr_script(args.attrs(), &p))
        }
        _ => {
            before
                .as_ref()
                .context("attribute change on a missing path")?;
            format!("set -e\n{}", attr_script(args.attrs(), &p))
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
fn file_touches(args: &FileArgs) -> Vec<Effect> {
    let p = args.path.as_str();
    let mut out = vec![unknown_path(p)];
    if args.state.as_deref() == Some("absent") || args.recurse() {
        out.push(unknown_tree(p));
    }
    out
}

/// The `file` module: a path's kind and attributes.
pub(crate) struct File;

impl Module for File {
    type Args = FileArgs;

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
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &FileArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_file(args, ctx).await
    }

    async fn apply(args: &FileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_file(args, probe, ctx).await
    }

    fn pending_undo(args: &FileArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_file_undo(args, probe, ctx.run_id)
    }

    fn touches(args: &FileArgs) -> Vec<Effect> {
        file_touches(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as J;

    fn file(v: J) -> FileArgs {
        args::parse("file", v.as_object().expect("a map")).unwrap()
    }

    #[test]
    fn a_file_step_reads_its_state_recurse_and_link_target_as_before() {
        let plain = file(json!({"path": "/srv/a", "mode": "0640", "group": 5}));
        assert_eq!(plain.state(), "file");
        let want = plain.attrs();
        assert_eq!(
            (want.owner, want.group, want.mode),
            (None, None, Some("0640"))
        );
        assert!(!plain.recurse());
        // A rendered `recurse:` is a boolean when it reads as one; anything else is not given.
        assert!(file(json!({"path": "/a", "recurse": "true"})).recurse());
        assert!(!file(json!({"path": "/a", "recurse": "yes"})).recurse());
        let link = file(json!({"path": "/a", "state": "link"}));
        assert_eq!(
            link.link_src().unwrap_err().to_string(),
            "argument `src` is missing or not a string"
        );
        assert_eq!(
            file(json!({"path": "/a", "state": "link", "src": "/b"}))
                .link_src()
                .unwrap(),
            "/b"
        );
    }

    #[test]
    fn what_a_file_step_may_change() {
        let trees = |v: J| -> Vec<bool> {
            file_touches(&file(v))
                .iter()
                .map(|e| matches!(e, Effect::Tree { .. }))
                .collect()
        };
        assert_eq!(trees(json!({"path": "/a"})), [false]);
        assert_eq!(
            trees(json!({"path": "/a", "state": "absent"})),
            [false, true]
        );
        assert_eq!(
            trees(json!({"path": "/a", "recurse": "true", "mode": "0755"})),
            [false, true]
        );
    }

    #[test]
    fn the_way_back_of_a_file_step_is_known_from_its_probe() {
        let was = |stat: J| Probe::change("x", None, json!({ "stat": stat }));
        let link = json!({"kind": "symbolic link", "owner": "root", "group": "root", "mode": "0777",
                          "size": 0, "sha256": null, "link_target": "/old"});
        let undo = |v: J, probe: &Probe| {
            pending_file_undo(&file(v), probe, "r1").map(|u| serde_json::to_string(&u).unwrap())
        };
        assert_eq!(
            undo(
                json!({"path": "/a", "state": "link", "src": "/new"}),
                &was(link)
            )
            .as_deref(),
            Some(r#"{"undo":"link","path":"/a","target":"/old"}"#)
        );
        assert_eq!(
            undo(json!({"path": "/a", "state": "absent"}), &was(J::Null)).as_deref(),
            Some(r#"{"undo":"move_path","from":"/a.cutover-r1~","to":"/a"}"#)
        );
        assert_eq!(
            undo(json!({"path": "/a", "state": "directory"}), &was(J::Null)).as_deref(),
            Some(r#"{"undo":"remove_dir","path":"/a"}"#)
        );
        // Attributes on a path that is not there, or set on a whole tree: no way back.
        assert_eq!(
            undo(json!({"path": "/a", "mode": "0600"}), &was(J::Null)),
            None
        );
        let tree = Probe::change("x", None, json!({ "stat": null, "recurse": true }));
        assert_eq!(
            undo(
                json!({"path": "/a", "mode": "0600", "recurse": true}),
                &tree
            ),
            None
        );
    }
}
