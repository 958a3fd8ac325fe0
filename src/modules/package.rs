//! `package`: Debian packages through apt (present, latest, absent, a pinned version, or a
//! whole-system dist-upgrade).
//!
//! The probe is read-only: `dpkg-query` for what is installed, `apt-cache policy` for what the
//! package lists offer, `apt-get -s dist-upgrade` for an upgrade; it never runs `apt-get
//! update` (that belongs to apply, with `update_cache`). Apply records every installed
//! package's version before and after, so the undo puts back exactly what changed — including
//! dependencies pulled in or removed on the way.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, choice, ArgType as T, ModuleSpec, Reversibility};
use super::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::shell::quote;

/// How long apt commands wait for another apt/dpkg to release its locks.
const LOCK_WAIT_SECS: u32 = 300;

/// Shell prelude for every apt command that changes the host: no prompts, keep local config
/// files, and wait (bounded) for the dpkg/apt locks instead of failing at once.
pub(crate) fn apt_prelude() -> String {
    format!(
        r#"export DEBIAN_FRONTEND=noninteractive
APT_OPTS="-y -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef -o DPkg::Lock::Timeout={LOCK_WAIT_SECS}"
# apt fails at once when another apt or dpkg holds a lock it needs: retry until the deadline.
apt_locked() {{
  end=$(( $(date +%s) + {LOCK_WAIT_SECS} ))
  while :; do
    {{ err=$("$@" 2>&1 >&3 3>&-) && rc=0 || rc=$?; }} 3>&1
    [ "$rc" -eq 0 ] && {{ [ -z "$err" ] || printf '%s\n' "$err" >&2; return 0; }}
    case "$err" in
      *"Could not get lock"*|*"Unable to acquire"*|*"Unable to lock"*) ;;
      *) printf '%s\n' "$err" >&2; return "$rc" ;;
    esac
    if [ "$(date +%s)" -ge "$end" ]; then
      printf '%s\n' "$err" >&2
      echo "apt/dpkg lock still held by another process after {LOCK_WAIT_SECS}s" >&2
      return "$rc"
    fi
    sleep 2
  done
}}
"#
    )
}

const UPDATE: &str = "apt_locked apt-get -q -o APT::Update::Error-Mode=any update >&2 || { echo 'apt-get update failed' >&2; exit 1; }\n";

/// Every installed package and its version, one `name|status|version` a line.
const SNAPSHOT: &str =
    "dpkg-query -W -f='${binary:Package}|${db:Status-Abbrev}|${Version}\\n' 2>/dev/null\n";

fn installed_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            // Status-Abbrev: desired, current, error; current `i` is installed.
            (status.as_bytes().get(1) == Some(&b'i'))
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// What `apt-cache policy` says of one package.
#[derive(Debug, Default, Clone, PartialEq)]
struct Policy {
    candidate: Option<String>,
    /// Versions some source still offers (not only /var/lib/dpkg/status).
    available: Vec<String>,
}

fn parse_policy(text: &str) -> BTreeMap<String, Policy> {
    let mut out: BTreeMap<String, Policy> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut version: Option<String> = None;
    for l in text.lines() {
        if !l.starts_with(' ') {
            if let Some(name) = l.strip_suffix(':') {
                current = Some(name.to_string());
                version = None;
                out.entry(name.to_string()).or_default();
            }
            continue;
        }
        let Some(p) = current.as_ref().and_then(|c| out.get_mut(c)) else {
            continue;
        };
        let t = l.trim_start();
        if let Some(c) = t.strip_prefix("Candidate:") {
            let c = c.trim();
            p.candidate = (c != "(none)" && !c.is_empty()).then(|| c.to_string());
        } else if let Some(rest) = l.strip_prefix(" *** ").or_else(|| l.strip_prefix("     ")) {
            if !rest.starts_with(' ') {
                // A version line: `VERSION PRIORITY`.
                version = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(v) = &version {
                // A source line under it.
                if !t.contains("/var/lib/dpkg/status") && !p.available.contains(v) {
                    p.available.push(v.clone());
                }
            }
        }
    }
    out
}

/// Package names and versions go on command lines: accept only what Debian allows.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".+-:".contains(c))
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
}

/// The arguments of a `package` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct PackageArgs {
    #[serde(default, deserialize_with = "names")]
    name: Vec<String>,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    version: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    upgrade_all: Option<bool>,
    #[serde(default, deserialize_with = "args::flag")]
    update_cache: Option<bool>,
}

/// `name:` as a list of packages, or one string of them separated by commas or spaces.
fn names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        J::String(s) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![],
    })
}

/// (name, pinned version) for each requested package; `name=version` pins one package.
fn wanted(args: &PackageArgs) -> Result<Vec<(String, Option<String>)>> {
    let names = &args.name;
    let version = args.version.as_deref();
    if version.is_some() && names.len() > 1 {
        bail!("`version` pins one package; for several, write name=version in `name`");
    }
    names
        .iter()
        .map(|n| {
            let (name, pin) = match n.split_once('=') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (n.clone(), version.map(str::to_string)),
            };
            if !valid_name(&name) {
                bail!("`{name}` is not a valid Debian package name");
            }
            if let Some(v) = &pin {
                if !valid_version(v) {
                    bail!("`{v}` is not a valid Debian version");
                }
            }
            Ok((name, pin))
        })
        .collect()
}

/// One package to change: `to` None means remove.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Change {
    name: String,
    from: Option<String>,
    to: Option<String>,
}

fn describe_change(c: &Change) -> String {
    format!(
        "{}: {} → {}",
        c.name,
        c.from.as_deref().unwrap_or("absent"),
        c.to.as_deref().unwrap_or("absent")
    )
}

/// What an apply did, from its result (`installed`: name → new version, `removed`).
pub fn describe_done(result: &Map<String, J>) -> Option<String> {
    let mut parts: Vec<String> = result
        .get("installed")
        .and_then(J::as_object)
        .map(|m| {
            m.iter()
                .map(|(n, v)| format!("{n} → {}", v.as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    if let Some(removed) = result.get("removed").and_then(J::as_array) {
        parts.extend(
            removed
                .iter()
                .filter_map(J::as_str)
                .map(|n| format!("{n} removed")),
        );
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The decision for named packages from what the host said.
fn decide(
    args: &PackageArgs,
    installed: &BTreeMap<String, String>,
    policy: &BTreeMap<String, Policy>,
) -> Result<(Vec<Change>, Vec<String>)> {
    let state = args.state.as_deref().unwrap_or("present");
    let mut changes = Vec::new();
    let mut unknown = Vec::new();
    for (name, pin) in wanted(args)? {
        let have = installed.get(&name).cloned();
        let pol = policy.get(&name).cloned().unwrap_or_default();
        let target = match (state, &pin) {
            ("absent", _) => None,
            (_, Some(v)) => {
                if have.as_deref() != Some(v.as_str()) && !pol.available.contains(v) {
                    unknown.push(format!("{name}={v} is not in the package lists"));
                    continue;
                }
                Some(v.clone())
            }
            ("present", None) if have.is_some() => have.clone(),
            _ => match &pol.candidate {
                Some(c) => Some(c.clone()),
                None => {
                    unknown.push(format!("no installation candidate for {name}"));
                    continue;
                }
            },
        };
        if target != have {
            changes.push(Change {
                name,
                from: have,
                to: target,
            });
        }
    }
    Ok((changes, unknown))
}

/// Names (and name=version) of the wanted packages, for the probe's query.
fn query_names(args: &PackageArgs) -> Result<String> {
    Ok(wanted(args)?
        .iter()
        .map(|(n, _)| quote(n))
        .collect::<Vec<_>>()
        .join(" "))
}

async fn probe_named(args: &PackageArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let names = query_names(args)?;
    let script = format!(
        "echo '#dpkg'; dpkg-query -W -f='${{Package}}|${{db:Status-Abbrev}}|${{Version}}\\n' {names} 2>/dev/null\necho '#policy'; apt-cache policy {names} 2>/dev/null\necho '#end'"
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    let (dpkg, rest) = text.split_once("#policy\n").unwrap_or((text.as_str(), ""));
    if !rest.contains("#end") {
        bail!(
            "cannot query packages on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let installed = installed_map(dpkg.trim_start_matches("#dpkg\n"));
    let policy = parse_policy(rest);
    let (changes, unknown) = decide(args, &installed, &policy)?;
    let state = json!({ "changes": changes });
    if !unknown.is_empty() {
        return Ok(Probe::unknown(
            format!(
                "package lists may be stale: {}{}",
                unknown.join("; "),
                if args.update_cache == Some(true) {
                    " (update_cache runs in apply)"
                } else {
                    " (update_cache: true would refresh them)"
                }
            ),
            state,
        ));
    }
    if changes.is_empty() {
        return Ok(Probe::no_change(state));
    }
    let summary = changes
        .iter()
        .map(describe_change)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Probe::change(summary, None, state))
}

/// `apt-get -s dist-upgrade` lines: `Inst name [old] (new …)`, `Remv name [old]`.
fn parse_simulation(text: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for l in text.lines() {
        let (kind, rest) = match l.split_once(' ') {
            Some((k @ ("Inst" | "Remv"), r)) => (k, r),
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        let old = rest
            .first()
            .filter(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_string());
        let new = rest
            .iter()
            .find(|w| w.starts_with('('))
            .map(|w| w.trim_start_matches('(').to_string());
        out.push(Change {
            name: name.to_string(),
            from: old,
            to: if kind == "Remv" { None } else { new },
        });
    }
    out
}

async fn probe_upgrade_all(ctx: &ModCtx<'_>) -> Result<Probe> {
    let script = "if ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; then echo '#nolists'; exit 0; fi\napt-get -s -o Debug::NoLocking=1 dist-upgrade";
    let out = ctx.run(script, None).await?;
    let text = out.stdout_text();
    if text.starts_with("#nolists") {
        return Ok(Probe::unknown(
            "package lists may be stale: the host has none (update_cache: true would fetch them)",
            json!({ "changes": [] }),
        ));
    }
    if !out.ok() {
        bail!(
            "apt-get -s dist-upgrade failed on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let changes = parse_simulation(&text);
    let state = json!({ "changes": changes });
    if changes.is_empty() {
        return Ok(Probe::no_change(state));
    }
    let summary = format!(
        "dist-upgrade: {}",
        changes
            .iter()
            .map(describe_change)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Probe::change(summary, None, state))
}

pub async fn probe(args: &PackageArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    if args.upgrade_all == Some(true) {
        probe_upgrade_all(ctx).await
    } else {
        probe_named(args, ctx).await
    }
}

pub async fn apply(args: &PackageArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let upgrade_all = args.upgrade_all == Some(true);
    let update_cache = args.update_cache == Some(true);
    let mut decision = probe.decision.clone();
    let mut state = probe.state.clone();
    if decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    if update_cache {
        let out = ctx.run(&format!("{}{UPDATE}", apt_prelude()), None).await?;
        if !out.ok() {
            bail!(
                "apt-get update failed on {}: {}",
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        // The decision was made on the old lists: make it again on the fresh ones.
        if !upgrade_all {
            let again = probe_named(args, ctx).await?;
            decision = again.decision;
            state = again.state;
        }
        if decision == Decision::NoChange {
            return Ok(Outcome::default());
        }
    }
    if let Decision::Unknown { reason } = &decision {
        if !(upgrade_all && update_cache) {
            bail!("{reason}");
        }
    }
    let action = if upgrade_all {
        "apt_locked apt-get $APT_OPTS dist-upgrade >&2".to_string()
    } else {
        let changes: Vec<Change> = serde_json::from_value(state["changes"].clone())?;
        let specs: Vec<String> = changes
            .iter()
            .map(|c| match &c.to {
                Some(v) => quote(&format!("{}={v}", c.name)),
                None => quote(&format!("{}-", c.name)),
            })
            .collect();
        // Exact versions, so apply installs what the plan showed.
        format!(
            "apt_locked apt-get $APT_OPTS --allow-downgrades install {} >&2",
            specs.join(" ")
        )
    };
    let script = format!(
        "{}echo '#before'\n{SNAPSHOT}{action} || exit 1\necho '#after'\n{SNAPSHOT}",
        apt_prelude()
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    let (before, after) = match text
        .strip_prefix("#before\n")
        .and_then(|t| t.split_once("#after\n"))
    {
        Some((b, a)) if out.ok() => (installed_map(b), installed_map(a)),
        _ => bail!(
            "apt-get failed on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        ),
    };
    let restore: BTreeMap<String, String> = before
        .iter()
        .filter(|(n, v)| after.get(*n) != Some(*v))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let purge: Vec<String> = after
        .keys()
        .filter(|n| !before.contains_key(*n))
        .cloned()
        .collect();
    let changed = !restore.is_empty() || !purge.is_empty();
    let mut result = Map::new();
    let versions: Map<String, J> = after
        .iter()
        .filter(|(n, v)| before.get(*n) != Some(*v))
        .map(|(n, v)| (n.clone(), J::String(v.clone())))
        .collect();
    result.insert("installed".into(), J::Object(versions));
    result.insert(
        "removed".into(),
        J::Array(
            before
                .keys()
                .filter(|n| !after.contains_key(*n))
                .map(|n| J::String(n.clone()))
                .collect(),
        ),
    );
    Ok(Outcome {
        changed,
        result,
        undo: changed.then_some(UndoAction::Packages(PackagesUndo { restore, purge })),
        failed: None,
    })
}

/// The way back of a `package` step: the package versions from before it (reinstalled if the
/// package lists still offer them) and the packages it installed (purged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackagesUndo {
    pub restore: BTreeMap<String, String>,
    pub purge: Vec<String>,
}

impl PackagesUndo {
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .restore
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        parts.extend(self.purge.iter().map(|n| format!("purge {n}")));
        format!("packages back: {}", parts.join(", "))
    }

    pub fn script(&self) -> String {
        undo_script(&self.restore, &self.purge)
    }
}

/// The undo: reinstall the previous versions that the lists still offer and purge what the
/// step installed, in one apt transaction; fails naming what could not be restored.
fn undo_script(restore: &BTreeMap<String, String>, purge: &[String]) -> String {
    let specs: Vec<String> = restore
        .iter()
        .map(|(n, v)| quote(&format!("{n}={v}")))
        .collect();
    let purges: Vec<String> = purge.iter().map(|n| quote(&format!("{n}-"))).collect();
    format!(
        r#"{prelude}install=""
missing=""
for spec in {specs}; do
  if apt-cache show "$spec" >/dev/null 2>&1; then install="$install $spec"; else missing="$missing $spec"; fi
done
set -- $install {purges}
if [ $# -gt 0 ]; then
  apt_locked apt-get $APT_OPTS --allow-downgrades --purge install "$@" >&2 || exit 1
fi
if [ -n "$missing" ]; then
  echo "not restored (no longer offered by the package lists):$missing" >&2
  exit 4
fi"#,
        prelude = apt_prelude(),
        specs = specs.join(" "),
        purges = purges.join(" "),
    )
}

/// The `package` module (apt).
pub(crate) struct Package;

impl Module for Package {
    type Args = PackageArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "package",
        args: &[
            arg("name", T::StrList),
            choice("state", &["present", "latest", "absent"]),
            arg("version", T::Str),
            arg("upgrade_all", T::Bool),
            arg("update_cache", T::Bool),
        ],
        free_form: None,
        one_of: &[&["name", "upgrade_all"]],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &PackageArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &PackageArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn describe_done(result: &Map<String, J>) -> Option<String> {
        describe_done(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21, item 5: `Install rsync` printed "unknown: package lists may be stale" as its
    /// result; the result reads from what apt did.
    #[test]
    fn a_result_says_what_was_installed_and_removed() {
        let result = |v: J| v.as_object().unwrap().clone();
        assert_eq!(
            describe_done(&result(json!({ "installed": { "rsync": "3.2.7-1+deb12u2", "libpopt0": "1.19+dfsg-1" }, "removed": [] }))).as_deref(),
            Some("libpopt0 → 1.19+dfsg-1, rsync → 3.2.7-1+deb12u2")
        );
        assert_eq!(
            describe_done(&result(json!({ "installed": {}, "removed": ["telnet"] }))).as_deref(),
            Some("telnet removed")
        );
        assert_eq!(
            describe_done(&result(json!({ "installed": {}, "removed": [] }))),
            None
        );
    }

    const POLICY: &str = "lab-release-notes:
  Installed: 1.0
  Candidate: 1.1
  Version table:
     1.1 500
        500 http://repo:8080/debian ./ Packages
 *** 1.0 500
        500 http://repo:8080/debian ./ Packages
        100 /var/lib/dpkg/status
gone:
  Installed: 2.0
  Candidate: 2.0
  Version table:
 *** 2.0 100
        100 /var/lib/dpkg/status
";

    #[test]
    fn policy_and_decisions() {
        let p = parse_policy(POLICY);
        assert_eq!(p["lab-release-notes"].candidate.as_deref(), Some("1.1"));
        assert_eq!(p["lab-release-notes"].available, vec!["1.1", "1.0"]);
        assert!(p["gone"].available.is_empty());
        let installed: BTreeMap<String, String> =
            [("lab-release-notes".to_string(), "1.0".to_string())].into();
        let args =
            |v: J| -> PackageArgs { args::parse("package", v.as_object().unwrap()).unwrap() };
        let (c, u) = decide(
            &args(json!({"name": "lab-release-notes", "state": "latest"})),
            &installed,
            &p,
        )
        .unwrap();
        assert!(u.is_empty());
        assert_eq!(describe_change(&c[0]), "lab-release-notes: 1.0 → 1.1");
        let (c, _) = decide(
            &args(json!({"name": ["lab-release-notes"]})),
            &installed,
            &p,
        )
        .unwrap();
        assert!(c.is_empty());
        let (c, _) = decide(
            &args(json!({"name": "lab-release-notes", "state": "absent"})),
            &installed,
            &p,
        )
        .unwrap();
        assert_eq!(describe_change(&c[0]), "lab-release-notes: 1.0 → absent");
        let (_, u) = decide(&args(json!({"name": "nope"})), &installed, &p).unwrap();
        assert_eq!(u.len(), 1);
        assert!(wanted(&args(json!({"name": "$(x)"}))).is_err());
    }

    #[test]
    fn simulation() {
        let s = "Inst libfoo [1.0] (1.1 repo [amd64])\nInst newdep (2.0 repo [all])\nRemv old [3]\nConf libfoo (1.1 repo [amd64])\n";
        let c = parse_simulation(s);
        assert_eq!(c.len(), 3);
        assert_eq!(describe_change(&c[0]), "libfoo: 1.0 → 1.1");
        assert_eq!(describe_change(&c[1]), "newdep: absent → 2.0");
        assert_eq!(describe_change(&c[2]), "old: 3 → absent");
    }
}
