//! `user`: local accounts (useradd/usermod/userdel).
//!
//! The probe reads the account with `getent passwd` and `id` in one round trip. A removal keeps
//! the home directory (no `userdel -r`), so the undo can recreate the account over it; the
//! password hash is never read, so a recreated account has a locked password.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::contract::{unknown_path, unknown_tree};
use super::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use super::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

/// An account as the host describes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Account {
    uid: u32,
    gid: u32,
    group: String,
    /// Supplementary groups (the primary one left out), sorted.
    groups: Vec<String>,
    home: String,
    shell: String,
    comment: String,
}

fn parse_account(text: &str) -> Option<Account> {
    let mut passwd = None;
    let mut group = String::new();
    let mut groups = Vec::new();
    for l in text.lines() {
        if let Some(p) = l.strip_prefix("passwd|") {
            passwd = Some(p.to_string());
        } else if let Some(g) = l.strip_prefix("group|") {
            group = g.trim().to_string();
        } else if let Some(g) = l.strip_prefix("groups|") {
            groups = g.split_whitespace().map(str::to_string).collect();
        }
    }
    let p = passwd?;
    let f: Vec<&str> = p.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    groups.retain(|g| *g != group);
    groups.sort();
    groups.dedup();
    Some(Account {
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        group,
        groups,
        home: f[5].to_string(),
        shell: f[6].to_string(),
        comment: f[4].to_string(),
    })
}

/// The arguments of a `user` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct UserArgs {
    #[serde(deserialize_with = "args::required_text")]
    name: String,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::uint32")]
    uid: Option<u32>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "wanted_groups")]
    groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "args::text")]
    home: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    shell: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    system: Option<bool>,
    #[serde(default, deserialize_with = "args::flag")]
    create_home: Option<bool>,
}

/// `groups:` as a sorted list without repeats (a list, or one comma-separated string);
/// anything else: not given.
fn wanted_groups<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let mut g: Vec<String> = match J::deserialize(d)? {
        J::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        J::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => return Ok(None),
    };
    g.sort();
    g.dedup();
    Ok(Some(g))
}

/// What differs between the account and the arguments: (summary part, usermod option, value).
fn differences(args: &UserArgs, a: &Account) -> Result<Vec<(String, &'static str, String)>> {
    let mut out = Vec::new();
    if let Some(uid) = args.uid {
        if uid != a.uid {
            out.push((format!("uid {} → {uid}", a.uid), "-u", uid.to_string()));
        }
    }
    if let Some(g) = args.group.as_deref() {
        if g != a.group && g != a.gid.to_string() {
            out.push((format!("group {} → {g}", a.group), "-g", g.to_string()));
        }
    }
    if let Some(gs) = &args.groups {
        let want: Vec<String> = gs.iter().filter(|g| **g != a.group).cloned().collect();
        if want != a.groups {
            out.push((
                format!("groups [{}] → [{}]", a.groups.join(","), want.join(",")),
                "-G",
                want.join(","),
            ));
        }
    }
    if let Some(h) = args.home.as_deref() {
        if h != a.home {
            out.push((format!("home {} → {h}", a.home), "-d", h.to_string()));
        }
    }
    if let Some(s) = args.shell.as_deref() {
        if s != a.shell {
            out.push((format!("shell {} → {s}", a.shell), "-s", s.to_string()));
        }
    }
    Ok(out)
}

pub async fn probe(args: &UserArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let name = args.name.as_str();
    let script = format!(
        r#"n={n}
if e=$(getent passwd -- "$n"); then
  printf 'passwd|%s\n' "$e"
  printf 'group|%s\n' "$(id -gn -- "$n")"
  printf 'groups|%s\n' "$(id -nG -- "$n")"
fi"#,
        n = quote(name)
    );
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "cannot read user {name} on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let account = parse_account(&out.stdout_text());
    let saw = json!({ "account": account });
    let present = args.state.as_deref().unwrap_or("present") == "present";
    Ok(match (present, &account) {
        (false, None) => Probe::no_change(saw),
        (false, Some(a)) => Probe::change(
            format!(
                "remove user {name} (uid {}; home {} is kept)",
                a.uid, a.home
            ),
            None,
            saw,
        ),
        (true, None) => {
            let mut parts = Vec::new();
            if let Some(u) = args.uid {
                parts.push(format!("uid {u}"));
            }
            if let Some(g) = args.group.as_deref() {
                parts.push(format!("group {g}"));
            }
            if let Some(gs) = &args.groups {
                parts.push(format!("groups [{}]", gs.join(",")));
            }
            if let Some(h) = args.home.as_deref() {
                parts.push(format!("home {h}"));
            }
            if let Some(s) = args.shell.as_deref() {
                parts.push(format!("shell {s}"));
            }
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            };
            Probe::change(format!("create user {name}{detail}"), None, saw)
        }
        (true, Some(a)) => {
            let diff = differences(args, a)?;
            if diff.is_empty() {
                Probe::no_change(saw)
            } else {
                let parts: Vec<String> = diff.into_iter().map(|(s, _, _)| s).collect();
                Probe::change(format!("user {name}: {}", parts.join(", ")), None, saw)
            }
        }
    })
}

pub async fn apply(args: &UserArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let name = args.name.as_str();
    let n = quote(name);
    let before: Option<Account> = serde_json::from_value(probe.state["account"].clone())
        .ok()
        .flatten();
    let present = args.state.as_deref().unwrap_or("present") == "present";
    let script = match (&before, present) {
        (None, true) => {
            let mut opts = Vec::new();
            if let Some(u) = args.uid {
                opts.push(format!("-u {u}"));
            }
            if let Some(g) = args.group.as_deref() {
                opts.push(format!("-g {}", quote(g)));
            }
            if let Some(gs) = &args.groups {
                if !gs.is_empty() {
                    opts.push(format!("-G {}", quote(&gs.join(","))));
                }
            }
            if let Some(h) = args.home.as_deref() {
                opts.push(format!("-d {}", quote(h)));
            }
            if let Some(s) = args.shell.as_deref() {
                opts.push(format!("-s {}", quote(s)));
            }
            let system = args.system == Some(true);
            if system {
                opts.push("-r".into());
            }
            // Like Ansible: a home is made unless asked not to (or for a system account).
            let create_home = args.create_home.unwrap_or(!system);
            opts.push(if create_home { "-m" } else { "-M" }.into());
            // The undo removes the home only if this step made it: say whether it existed.
            let home_guess = match args.home.as_deref() {
                Some(h) => quote(h),
                None => format!("\"$(useradd -D | sed -n 's/^HOME=//p')/\"{n}"),
            };
            format!(
                r#"set -e
h={home_guess}
existed=no; [ -e "$h" ] && existed=yes
useradd {opts} -- {n}
if [ "$existed" = no ] && [ -d "$h" ]; then printf 'created_home|%s\n' "$h"; fi"#,
                opts = opts.join(" ")
            )
        }
        (Some(_), false) => format!("userdel -- {n}"),
        (Some(a), true) => {
            let opts: Vec<String> = differences(args, a)?
                .into_iter()
                .map(|(_, o, v)| format!("{o} {}", quote(&v)))
                .collect();
            format!("usermod {} -- {n}", opts.join(" "))
        }
        (None, false) => return Ok(Outcome::default()),
    };
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "user {name} on {} failed: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let undo = match &before {
        None => UndoAction::RemoveUser(RemoveUser {
            name: name.to_string(),
            home: out
                .stdout_text()
                .lines()
                .find_map(|l| l.strip_prefix("created_home|").map(str::to_string)),
        }),
        Some(a) => UndoAction::RestoreUser(RestoreUser {
            name: name.to_string(),
            uid: a.uid,
            gid: a.gid,
            group: a.group.clone(),
            groups: a.groups.clone(),
            home: a.home.clone(),
            shell: a.shell.clone(),
            comment: a.comment.clone(),
        }),
    };
    let mut result = Map::new();
    result.insert("name".into(), J::String(name.to_string()));
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(undo),
        failed: None,
    })
}

/// The way back of a `user` step that created the account: remove it (and the home directory,
/// if the step created it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveUser {
    pub name: String,
    pub home: Option<String>,
}

impl RemoveUser {
    pub fn describe(&self) -> String {
        match &self.home {
            Some(h) => format!("remove user {} and the home {h} it created", self.name),
            None => format!("remove user {}", self.name),
        }
    }

    /// `userdel -r` only for a home this step made: a pre-existing one stays.
    pub fn script(&self) -> String {
        match self.home {
            Some(_) => format!("userdel -r -- {}", quote(&self.name)),
            None => format!("userdel -- {}", quote(&self.name)),
        }
    }
}

/// The way back of a `user` step that changed or removed an account: the account as it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub group: String,
    pub groups: Vec<String>,
    pub home: String,
    pub shell: String,
    pub comment: String,
}

impl RestoreUser {
    pub fn describe(&self) -> String {
        format!(
            "put back user {} (uid {}, groups, home path, shell); if it was removed it is recreated without its password, and its home is whatever the removal kept on disk",
            self.name, self.uid
        )
    }

    pub fn script(&self) -> String {
        let RestoreUser {
            name,
            uid,
            gid,
            group,
            groups,
            home,
            shell,
            comment,
        } = self;
        format!(
            r#"set -e
n={n}
if getent passwd -- "$n" >/dev/null; then
  usermod -u {uid} -g {gid} -G {groups} -d {home} -s {shell} -c {comment} -- "$n"
else
  getent group {gid} >/dev/null || groupadd -g {gid} -- {group}
  useradd -M -N -u {uid} -g {gid} {useradd_groups}-d {home} -s {shell} -c {comment} -- "$n"
fi"#,
            n = quote(name),
            groups = quote(&groups.join(",")),
            // useradd refuses an empty -G.
            useradd_groups = if groups.is_empty() {
                String::new()
            } else {
                format!("-G {} ", quote(&groups.join(",")))
            },
            group = quote(group),
            home = quote(home),
            shell = quote(shell),
            comment = quote(comment),
        )
    }
}

/// What `user` may change: the account databases and the home directory.
fn touches(args: &UserArgs) -> Vec<Effect> {
    let mut out: Vec<Effect> = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"]
        .into_iter()
        .map(unknown_path)
        .collect();
    out.extend(args.home.as_deref().map(unknown_tree));
    out
}

/// The `user` module.
pub(crate) struct User;

impl Module for User {
    type Args = UserArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "user",
        args: &[
            req("name", T::Str),
            choice("state", &["present", "absent"]),
            arg("uid", T::Int),
            arg("group", T::Str),
            arg("groups", T::StrList),
            arg("home", T::Path),
            arg("shell", T::Path),
            arg("system", T::Bool),
            arg("create_home", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &UserArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &UserArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn touches(args: &UserArgs) -> Vec<Effect> {
        touches(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_differences() {
        let a = parse_account(
            "passwd|web:x:1500:1500:Web:/home/web:/bin/sh\ngroup|web\ngroups|web sudo adm\n",
        )
        .unwrap();
        assert_eq!(a.groups, vec!["adm", "sudo"]);
        let args: UserArgs = args::parse(
            "user",
            json!({"name": "web", "shell": "/bin/bash", "groups": ["sudo", "adm"], "uid": 1500})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let d = differences(&args, &a).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "shell /bin/sh → /bin/bash");
        assert!(parse_account("").is_none());
    }
}
