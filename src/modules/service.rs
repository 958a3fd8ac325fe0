//! `service`: systemd units started/stopped/restarted/reloaded, enabled or not.
//!
//! Socket activation is handled: if `NAME.socket` exists and is active, stopping `NAME`
//! stops the socket too (otherwise the next connection starts the service again — Debian's
//! mariadb does exactly that), and starting it starts the socket back.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::contract::Module;
use super::spec::{arg, choice, req, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::{Effect, UnitState};
use crate::shell::quote;

async fn state(ctx: &ModCtx<'_>, name: &str) -> Result<(bool, Option<bool>, Option<String>, bool)> {
    let unit = quote(name);
    let sock = quote(&format!("{}.socket", name.trim_end_matches(".service")));
    let script = format!(
        r#"printf '%s\n' "$(systemctl is-active -- {unit} 2>/dev/null)" "$(systemctl is-enabled -- {unit} 2>/dev/null)" "$(systemctl is-active -- {sock} 2>/dev/null)" "$(systemctl show -p LoadState --value -- {unit} 2>/dev/null)""#
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    let l: Vec<&str> = text.lines().collect();
    let active = l
        .first()
        .is_some_and(|s| *s == "active" || *s == "reloading" || *s == "activating");
    let enabled = match l.get(1).copied() {
        Some("enabled") | Some("enabled-runtime") | Some("alias") => Some(true),
        Some("disabled") => Some(false),
        _ => None,
    };
    let socket_active = l
        .get(2)
        .is_some_and(|s| *s == "active" || *s == "listening");
    let loaded = l.get(3).is_some_and(|s| *s == "loaded");
    let socket = socket_active.then(|| format!("{}.socket", name.trim_end_matches(".service")));
    Ok((active, enabled, socket, loaded))
}

/// A unit's state as the step will find it: on the host, or in a plan, after the earlier
/// steps (a unit file an earlier step writes makes the unit loaded; a service step before
/// this one starts, stops or enables it).
async fn planned_state(
    ctx: &ModCtx<'_>,
    name: &str,
) -> Result<(bool, Option<bool>, Option<String>, bool)> {
    use crate::overlay::{not_derivable, PathState, Planned, Seen, Val};
    let (mut active, mut enabled, mut socket, mut loaded) = state(ctx, name).await?;
    let Some(ov) = ctx.overlay() else {
        return Ok((active, enabled, socket, loaded));
    };
    let unit = crate::overlay::unit_key(name);
    if !loaded {
        for dir in [
            "/etc/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ] {
            let file = format!("{dir}/{unit}.service");
            match ov.path(&file) {
                Seen::Host | Seen::Planned(Planned { value: PathState::Absent, .. }) => continue,
                Seen::NotDerivable(why) => return Err(not_derivable(why)),
                Seen::Planned(Planned { value: PathState::File { content: Val::Set(text), .. }, .. }) => {
                    // A new unit: loaded on first use, inactive, and "disabled" if it can be
                    // enabled at all (an [Install] section), else "static".
                    loaded = true;
                    active = false;
                    socket = None;
                    enabled = has_install_section(&String::from_utf8_lossy(&text)).then_some(false);
                    break;
                }
                Seen::Planned(Planned { by, .. }) => {
                    return Err(not_derivable(format!(
                        "the unit file {file} is written by {by}; what it defines is known only when it runs"
                    )))
                }
            }
        }
    }
    if let Some(Planned { value, by }) = ov.unit(name) {
        let unknown = || {
            not_derivable(format!(
                "unit {name} is changed by {by}; its state after that is known only when it runs"
            ))
        };
        match &value.loaded {
            Val::Set(b) => loaded = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.active {
            Val::Set(b) => active = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.enabled {
            Val::Set(b) => enabled = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.socket_active {
            Val::Set(false) => socket = None,
            Val::Set(true) => {
                socket = Some(format!("{}.socket", name.trim_end_matches(".service")))
            }
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
    }
    Ok((active, enabled, socket, loaded))
}

/// Does a unit file have an `[Install]` section with something in it?
fn has_install_section(text: &str) -> bool {
    let mut in_install = false;
    for l in text.lines().map(str::trim) {
        if l.starts_with('[') {
            in_install = l == "[Install]";
        } else if in_install && !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') {
            return true;
        }
    }
    false
}

/// The arguments of a `service` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct ServiceArgs {
    #[serde(deserialize_with = "args::required_text")]
    name: String,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "args::flag")]
    daemon_reload: Option<bool>,
}

/// What the unit is after the step.
fn after(args: &ServiceArgs, name: &str) -> Vec<crate::overlay::Effect> {
    use crate::overlay::{Effect, UnitState, Val};
    let active = match args.state.as_deref() {
        Some("started") | Some("restarted") => Val::Set(true),
        Some("stopped") => Val::Set(false),
        _ => Val::Host,
    };
    vec![Effect::Unit {
        name: name.to_string(),
        state: UnitState {
            loaded: Val::Host,
            active,
            enabled: args.enabled.map_or(Val::Host, |b| Val::Set(Some(b))),
            socket_active: if args.state.as_deref() == Some("stopped") {
                Val::Set(false)
            } else {
                Val::Host
            },
        },
    }]
}

pub async fn probe(args: &ServiceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let name = args.name.as_str();
    let (active, enabled, socket, loaded) = planned_state(ctx, name).await?;
    let saw = json!({ "active": active, "enabled": enabled, "socket": socket, "loaded": loaded });
    if !loaded {
        return Ok(Probe::unknown(
            format!(
                "unit {name} is not installed on {} (an earlier step may install it)",
                ctx.host.name
            ),
            saw,
        ));
    }
    let mut changes = Vec::new();
    match args.state.as_deref() {
        Some("started") if !active => changes.push(format!("{name}: stopped → started")),
        Some("stopped") if active || socket.is_some() => changes.push(format!(
            "{name}: running → stopped{}",
            if socket.is_some() {
                " (and its socket)"
            } else {
                ""
            }
        )),
        Some("restarted") => changes.push(format!("{name}: restart")),
        Some("reloaded") => changes.push(format!("{name}: reload")),
        _ => {}
    }
    if let Some(want) = args.enabled {
        if enabled != Some(want) {
            changes.push(format!(
                "{name}: {} at boot",
                if want { "enabled" } else { "disabled" }
            ));
        }
    }
    Ok(if changes.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(changes.join("; "), None, saw).with_after(after(args, name))
    })
}

pub async fn apply(args: &ServiceArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        return Ok(Outcome::default());
    }
    let name = args.name.as_str();
    let was_active = probe.state["active"].as_bool().unwrap_or(false);
    let was_enabled = probe.state["enabled"].as_bool();
    let socket = probe.state["socket"].as_str().map(str::to_string);
    let mut script = String::new();
    if args.daemon_reload == Some(true) {
        script.push_str("systemctl daemon-reload\n");
    }
    if let Some(want) = args.enabled {
        if was_enabled != Some(want) {
            script.push_str(&format!(
                "systemctl {} -- {}\n",
                if want { "enable" } else { "disable" },
                quote(name)
            ));
        }
    }
    let unit = quote(name);
    match args.state.as_deref() {
        Some("started") if !was_active => script.push_str(&format!("systemctl start -- {unit}\n")),
        Some("stopped") => {
            // The socket first, so nothing re-activates the service while it stops.
            if let Some(s) = &socket {
                script.push_str(&format!("systemctl stop -- {}\n", quote(s)));
            }
            script.push_str(&format!("systemctl stop -- {unit}\n"));
        }
        Some("restarted") => script.push_str(&format!("systemctl restart -- {unit}\n")),
        Some("reloaded") => script.push_str(&format!("systemctl reload -- {unit}\n")),
        _ => {}
    }
    let out = ctx.run(&format!("set -e\n{script}"), None).await?;
    if !out.ok() {
        bail!("systemctl failed for {name}: {}", out.stderr_text().trim());
    }
    Ok(Outcome {
        changed: true,
        result: Map::new(),
        undo: undo_of(args, probe),
        failed: None,
    })
}

/// The way back of a `service` step: the unit's previous state (and its socket's, stopped or
/// started with it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceUndo {
    pub name: String,
    pub active: bool,
    pub enabled: Option<bool>,
    pub socket: Option<String>,
}

impl ServiceUndo {
    pub fn describe(&self) -> String {
        let state = if self.active { "started" } else { "stopped" };
        format!("{} back to {state}", self.name)
    }

    pub fn script(&self) -> String {
        let name = &self.name;
        let mut s = String::new();
        if let Some(e) = self.enabled {
            s.push_str(&format!(
                "systemctl {} -- {}\n",
                if e { "enable" } else { "disable" },
                quote(name)
            ));
        }
        let verb = if self.active { "start" } else { "stop" };
        s.push_str(&format!("systemctl {verb} -- {}", quote(name)));
        if let Some(sock) = &self.socket {
            s.push_str(&format!(" {}", quote(sock)));
        }
        s
    }
}

/// The unit's previous state, from the probe: the way back, known before the change starts.
pub(crate) fn undo_of(args: &ServiceArgs, probe: &Probe) -> Option<UndoAction> {
    if probe.decision == super::Decision::NoChange {
        return None;
    }
    let name = args.name.as_str();
    let was_active = probe.state["active"].as_bool().unwrap_or(false);
    let was_enabled = probe.state["enabled"].as_bool();
    let socket = probe.state["socket"].as_str().map(str::to_string);
    match args.state.as_deref() {
        Some("started") | Some("stopped") => Some(UndoAction::Service(ServiceUndo {
            name: name.to_string(),
            active: was_active,
            enabled: if args.enabled.is_some() {
                was_enabled
            } else {
                None
            },
            socket,
        })),
        _ if args.enabled.is_some() => Some(UndoAction::Service(ServiceUndo {
            name: name.to_string(),
            active: was_active,
            enabled: was_enabled,
            socket: None,
        })),
        // A restart or reload has nothing to undo.
        _ => None,
    }
}

/// What `service` may change: the unit's state.
fn touches(args: &ServiceArgs) -> Vec<Effect> {
    vec![Effect::Unit {
        name: args.name.clone(),
        state: UnitState::unknown(),
    }]
}

/// The `service` module (systemd units).
pub(crate) struct Service;

impl Module for Service {
    type Args = ServiceArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "service",
        args: &[
            req("name", T::Str),
            choice("state", &["started", "stopped", "restarted", "reloaded"]),
            arg("enabled", T::Bool),
            arg("daemon_reload", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &ServiceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &ServiceArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &ServiceArgs, probe: &Probe, _ctx: &ModCtx<'_>) -> Option<UndoAction> {
        undo_of(args, probe)
    }

    fn touches(args: &ServiceArgs) -> Vec<Effect> {
        touches(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sections() {
        assert!(has_install_section(
            "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
        ));
        assert!(!has_install_section(
            "[Unit]\nDescription=x\n[Install]\n# none\n"
        ));
        assert!(!has_install_section("[Service]\nExecStart=/bin/true\n"));
    }

    #[test]
    fn a_stop_plans_the_unit_and_its_socket_stopped() {
        use crate::overlay::{Effect, Val};
        let args = serde_json::json!({"name": "mariadb", "state": "stopped", "enabled": false});
        let args: ServiceArgs = args::parse("service", args.as_object().unwrap()).unwrap();
        let e = after(&args, "mariadb");
        match &e[..] {
            [Effect::Unit { name, state }] => {
                assert_eq!(name, "mariadb");
                assert_eq!(state.active, Val::Set(false));
                assert_eq!(state.socket_active, Val::Set(false));
                assert_eq!(state.enabled, Val::Set(Some(false)));
                assert_eq!(state.loaded, Val::Host);
            }
            other => panic!("{other:?}"),
        }
    }
}
