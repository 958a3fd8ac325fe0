//! `service`: systemd units started/stopped/restarted/reloaded, enabled or not.
//!
//! Socket activation is handled: if `NAME.socket` exists and is active, stopping `NAME`
//! stops the socket too (otherwise the next connection starts the service again — Debian's
//! mariadb does exactly that), and starting it starts the socket back.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value as J};

use super::{arg_bool, arg_str, required, ModCtx, Outcome, Probe, UndoAction};
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

pub async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let name = required(args, "name")?;
    let (active, enabled, socket, loaded) = state(ctx, name).await?;
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
    match arg_str(args, "state") {
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
    if let Some(want) = arg_bool(args, "enabled") {
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
        Probe::change(changes.join("; "), None, saw)
    })
}

pub async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        return Ok(Outcome::default());
    }
    let name = required(args, "name")?;
    let was_active = probe.state["active"].as_bool().unwrap_or(false);
    let was_enabled = probe.state["enabled"].as_bool();
    let socket = probe.state["socket"].as_str().map(str::to_string);
    let mut script = String::new();
    if arg_bool(args, "daemon_reload") == Some(true) {
        script.push_str("systemctl daemon-reload\n");
    }
    if let Some(want) = arg_bool(args, "enabled") {
        if was_enabled != Some(want) {
            script.push_str(&format!(
                "systemctl {} -- {}\n",
                if want { "enable" } else { "disable" },
                quote(name)
            ));
        }
    }
    let unit = quote(name);
    match arg_str(args, "state") {
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

/// The unit's previous state, from the probe: the way back, known before the change starts.
pub(crate) fn undo_of(args: &Map<String, J>, probe: &Probe) -> Option<UndoAction> {
    if probe.decision == super::Decision::NoChange {
        return None;
    }
    let name = required(args, "name").ok()?;
    let was_active = probe.state["active"].as_bool().unwrap_or(false);
    let was_enabled = probe.state["enabled"].as_bool();
    let socket = probe.state["socket"].as_str().map(str::to_string);
    match arg_str(args, "state") {
        Some("started") | Some("stopped") => Some(UndoAction::Service {
            name: name.to_string(),
            active: was_active,
            enabled: if arg_bool(args, "enabled").is_some() {
                was_enabled
            } else {
                None
            },
            socket,
        }),
        _ if arg_bool(args, "enabled").is_some() => Some(UndoAction::Service {
            name: name.to_string(),
            active: was_active,
            enabled: was_enabled,
            socket: None,
        }),
        // A restart or reload has nothing to undo.
        _ => None,
    }
}
