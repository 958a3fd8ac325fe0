//! `group`: local groups (groupadd/groupmod/groupdel), read with `getent group`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::args;
use super::contract::unknown_path;
use super::contract::Module;
use super::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use super::{Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Entry {
    gid: u32,
    members: Vec<String>,
}

fn parse_entry(text: &str) -> Option<Entry> {
    let line = text.lines().next()?;
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 {
        return None;
    }
    Some(Entry {
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// The arguments of a `group` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct GroupArgs {
    #[serde(deserialize_with = "args::required_text")]
    name: String,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::uint32")]
    gid: Option<u32>,
    #[serde(default, deserialize_with = "args::flag")]
    system: Option<bool>,
}

impl GroupArgs {
    fn present(&self) -> bool {
        self.state.as_deref().unwrap_or("present") == "present"
    }
}

pub async fn probe(args: &GroupArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let name = &args.name;
    let out = ctx
        .run(&format!("getent group -- {} || true", quote(name)), None)
        .await?;
    if !out.ok() {
        bail!(
            "cannot read group {name} on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let entry = parse_entry(&out.stdout_text());
    let saw = json!({ "entry": entry });
    let (present, gid) = (args.present(), args.gid);
    Ok(match (present, &entry) {
        (false, None) => Probe::no_change(saw),
        (false, Some(e)) => {
            Probe::change(format!("remove group {name} (gid {})", e.gid), None, saw)
        }
        (true, None) => Probe::change(
            match gid {
                Some(g) => format!("create group {name} (gid {g})"),
                None => format!("create group {name}"),
            },
            None,
            saw,
        ),
        (true, Some(e)) => match gid {
            Some(g) if g != e.gid => {
                Probe::change(format!("group {name}: gid {} → {g}", e.gid), None, saw)
            }
            _ => Probe::no_change(saw),
        },
    })
}

pub async fn apply(args: &GroupArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let name = &args.name;
    let n = quote(name);
    let before: Option<Entry> = serde_json::from_value(probe.state["entry"].clone())
        .ok()
        .flatten();
    let (present, gid) = (args.present(), args.gid);
    let script = match (&before, present) {
        (None, true) => {
            let mut opts = Vec::new();
            if let Some(g) = gid {
                opts.push(format!("-g {g}"));
            }
            if args.system == Some(true) {
                opts.push("-r".to_string());
            }
            format!("groupadd {} -- {n}", opts.join(" "))
        }
        (Some(_), true) => match gid {
            Some(g) => format!("groupmod -g {g} -- {n}"),
            None => return Ok(Outcome::default()),
        },
        (Some(_), false) => format!("groupdel -- {n}"),
        (None, false) => return Ok(Outcome::default()),
    };
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "group {name} on {} failed: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let undo = match before {
        None => UndoAction::RemoveGroup(RemoveGroup {
            name: name.to_string(),
        }),
        Some(e) => UndoAction::RestoreGroup(RestoreGroup {
            name: name.to_string(),
            gid: e.gid,
            members: e.members,
        }),
    };
    Ok(Outcome {
        changed: true,
        result: Map::new(),
        undo: Some(undo),
        failed: None,
    })
}

/// The way back of a `group` step that created the group: remove it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveGroup {
    pub name: String,
}

impl RemoveGroup {
    pub fn describe(&self) -> String {
        format!("remove group {}", self.name)
    }

    pub fn script(&self) -> String {
        format!(
            "! getent group -- {n} >/dev/null || groupdel -- {n}",
            n = quote(&self.name)
        )
    }
}

/// The way back of a `group` step that changed or removed a group: its gid and members as they
/// were (recreated if the step removed it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreGroup {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

impl RestoreGroup {
    pub fn describe(&self) -> String {
        format!("put back group {} (gid {}, members)", self.name, self.gid)
    }

    pub fn script(&self) -> String {
        format!(
            r#"set -e
if getent group -- {n} >/dev/null; then groupmod -g {gid} -- {n}; else groupadd -g {gid} -- {n}; fi
gpasswd -M {m} {n} >/dev/null"#,
            n = quote(&self.name),
            gid = self.gid,
            m = quote(&self.members.join(",")),
        )
    }
}

/// The `group` module.
pub(crate) struct Group;

impl Module for Group {
    type Args = GroupArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "group",
        args: &[
            req("name", T::Str),
            choice("state", &["present", "absent"]),
            arg("gid", T::Int),
            arg("system", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &GroupArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &GroupArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn touches(_args: &GroupArgs) -> Vec<Effect> {
        ["/etc/group", "/etc/gshadow"]
            .into_iter()
            .map(unknown_path)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry() {
        let e = parse_entry("web:x:1500:alice,bob\n").unwrap();
        assert_eq!(e.gid, 1500);
        assert_eq!(e.members, vec!["alice", "bob"]);
        assert!(parse_entry("")
            .unwrap_or(Entry {
                gid: 0,
                members: vec![]
            })
            .members
            .is_empty());
    }
}
