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

/// A unit as a step finds it: what the host reports ([`parse_status`]), with the plan's
/// earlier steps laid over it ([`planned_state`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UnitStatus {
    /// Its unit file was found and read (`LoadState=loaded`; not `not-found`, `masked`, …).
    pub loaded: bool,
    /// Running or on its way (`active`, `reloading`, `activating`).
    pub active: bool,
    /// Started at boot: `None` when enabling does not apply (`static`, `masked`, `transient`, …).
    pub enabled: Option<bool>,
    /// Its `NAME.socket`, when that is active (it would start the unit again).
    pub socket: Option<String>,
}

/// The socket that may activate a unit: `NAME.socket` beside `NAME[.service]`.
fn socket_of(name: &str) -> String {
    format!("{}.socket", name.trim_end_matches(".service"))
}

/// The one read-only command a probe runs: `systemctl show` for the unit, then what
/// `is-enabled` and `is-active` say of it and its socket, as `KEY=VALUE` lines.
/// `is-enabled` rather than `UnitFileState`: for an alias (`mysql` → `mariadb`) it answers
/// `alias`, while `UnitFileState` is the target's, so it would decide differently.
fn status_script(name: &str) -> String {
    let unit = quote(name);
    let sock = quote(&socket_of(name));
    format!(
        "systemctl show -p LoadState -p ActiveState -- {unit} 2>/dev/null\n\
         printf 'IsEnabled=%s\\n' \"$(systemctl is-enabled -- {unit} 2>/dev/null)\"\n\
         printf 'SocketActiveState=%s\\n' \"$(systemctl is-active -- {sock} 2>/dev/null)\"\n"
    )
}

/// What [`status_script`] printed for unit `name`. A line missing (a name systemd
/// refuses prints nothing) reads as not loaded, inactive, not enableable, no socket.
fn parse_status(name: &str, text: &str) -> UnitStatus {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    UnitStatus {
        loaded: value("LoadState") == "loaded",
        active: matches!(value("ActiveState"), "active" | "reloading" | "activating"),
        enabled: match value("IsEnabled") {
            "enabled" | "enabled-runtime" | "alias" => Some(true),
            "disabled" => Some(false),
            _ => None,
        },
        socket: matches!(value("SocketActiveState"), "active" | "listening")
            .then(|| socket_of(name)),
    }
}

async fn state(ctx: &ModCtx<'_>, name: &str) -> Result<UnitStatus> {
    let out = ctx.run(&status_script(name), None).await?;
    Ok(parse_status(name, &out.stdout_text()))
}

/// A unit's state as the step will find it: on the host, or in a plan, after the earlier
/// steps (a unit file an earlier step writes makes the unit loaded; a service step before
/// this one starts, stops or enables it).
async fn planned_state(ctx: &ModCtx<'_>, name: &str) -> Result<UnitStatus> {
    use crate::overlay::{not_derivable, PathState, Planned, Seen, Val};
    let mut st = state(ctx, name).await?;
    let Some(ov) = ctx.overlay() else {
        return Ok(st);
    };
    let unit = crate::overlay::unit_key(name);
    if !st.loaded {
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
                    st = UnitStatus {
                        loaded: true,
                        active: false,
                        socket: None,
                        enabled: has_install_section(&String::from_utf8_lossy(&text))
                            .then_some(false),
                    };
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
            Val::Set(b) => st.loaded = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.active {
            Val::Set(b) => st.active = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.enabled {
            Val::Set(b) => st.enabled = *b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        match &value.socket_active {
            Val::Set(b) => st.socket = b.then(|| socket_of(name)),
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
    }
    Ok(st)
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
    let st = planned_state(ctx, &args.name).await?;
    Ok(decide(args, &st, &ctx.host.name))
}

/// What a `service` step would change on `host`, given the unit's state there.
fn decide(args: &ServiceArgs, st: &UnitStatus, host: &str) -> Probe {
    let name = args.name.as_str();
    let UnitStatus {
        loaded,
        active,
        enabled,
        socket,
    } = st;
    let saw = json!({ "active": active, "enabled": enabled, "socket": socket, "loaded": loaded });
    if !loaded {
        return Probe::unknown(
            format!("unit {name} is not installed on {host} (an earlier step may install it)"),
            saw,
        );
    }
    let mut changes = Vec::new();
    match args.state.as_deref() {
        Some("started") if !active => changes.push(format!("{name}: stopped → started")),
        Some("stopped") if *active || socket.is_some() => changes.push(format!(
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
        if *enabled != Some(want) {
            changes.push(format!(
                "{name}: {} at boot",
                if want { "enabled" } else { "disabled" }
            ));
        }
    }
    if changes.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(changes.join("; "), None, saw).with_after(after(args, name))
    }
}

pub async fn apply(args: &ServiceArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        return Ok(Outcome::default());
    }
    let script = apply_script(args, &seen(probe));
    let out = ctx.run(&format!("set -e\n{script}"), None).await?;
    if !out.ok() {
        bail!(
            "systemctl failed for {}: {}",
            args.name,
            out.stderr_text().trim()
        );
    }
    Ok(Outcome {
        changed: true,
        result: Map::new(),
        undo: undo_of(args, probe),
        failed: None,
    })
}

/// The unit's state as the probe recorded it (see [`decide`]).
fn seen(probe: &Probe) -> UnitStatus {
    UnitStatus {
        loaded: probe.state["loaded"].as_bool().unwrap_or(false),
        active: probe.state["active"].as_bool().unwrap_or(false),
        enabled: probe.state["enabled"].as_bool(),
        socket: probe.state["socket"].as_str().map(str::to_string),
    }
}

/// The `systemctl` commands that take the unit from `was` to what the step asks.
fn apply_script(args: &ServiceArgs, was: &UnitStatus) -> String {
    let unit = quote(&args.name);
    let mut script = String::new();
    if args.daemon_reload == Some(true) {
        script.push_str("systemctl daemon-reload\n");
    }
    if let Some(want) = args.enabled {
        if was.enabled != Some(want) {
            let verb = if want { "enable" } else { "disable" };
            script.push_str(&format!("systemctl {verb} -- {unit}\n"));
        }
    }
    match args.state.as_deref() {
        Some("started") if !was.active => script.push_str(&format!("systemctl start -- {unit}\n")),
        Some("stopped") => {
            // The socket first, so nothing re-activates the service while it stops.
            if let Some(s) = &was.socket {
                script.push_str(&format!("systemctl stop -- {}\n", quote(s)));
            }
            script.push_str(&format!("systemctl stop -- {unit}\n"));
        }
        Some("restarted") => script.push_str(&format!("systemctl restart -- {unit}\n")),
        Some("reloaded") => script.push_str(&format!("systemctl reload -- {unit}\n")),
        _ => {}
    }
    script
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
    let was = seen(probe);
    match args.state.as_deref() {
        Some("started") | Some("stopped") => Some(UndoAction::Service(ServiceUndo {
            name: args.name.clone(),
            active: was.active,
            enabled: if args.enabled.is_some() {
                was.enabled
            } else {
                None
            },
            socket: was.socket,
        })),
        _ if args.enabled.is_some() => Some(UndoAction::Service(ServiceUndo {
            name: args.name.clone(),
            active: was.active,
            enabled: was.enabled,
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
        any_of: &[],
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
    use crate::modules::Decision;

    // What `status_script` printed on the lab (Debian 12, systemd 252), 2026-12-07.
    /// db1, `mariadb`: running, enabled, its socket stopped.
    const DB1_MARIADB: &str =
        "LoadState=loaded\nActiveState=active\nIsEnabled=enabled\nSocketActiveState=inactive\n";
    /// db1, `mysql`: Debian's alias of `mariadb` (`UnitFileState` would say `enabled`).
    const DB1_MYSQL_ALIAS: &str =
        "LoadState=loaded\nActiveState=active\nIsEnabled=alias\nSocketActiveState=inactive\n";
    /// db1, `nosuch-unit`: no unit file anywhere.
    const DB1_NOT_FOUND: &str =
        "LoadState=not-found\nActiveState=inactive\nIsEnabled=\nSocketActiveState=inactive\n";
    /// db1, `foo@.service`: a template name, which `systemctl show` refuses (prints nothing).
    const DB1_TEMPLATE_NAME: &str = "IsEnabled=\nSocketActiveState=\n";
    /// db1, `rsync`: installed, stopped, disabled.
    const DB1_RSYNC_DISABLED: &str =
        "LoadState=loaded\nActiveState=inactive\nIsEnabled=disabled\nSocketActiveState=inactive\n";
    /// app1, `e2scrub_reap`: masked (linked to /dev/null).
    const APP1_MASKED: &str =
        "LoadState=masked\nActiveState=inactive\nIsEnabled=masked\nSocketActiveState=inactive\n";
    /// app1, `dbus`: static (no [Install]), running, its socket listening.
    const APP1_DBUS_SOCKET: &str =
        "LoadState=loaded\nActiveState=active\nIsEnabled=static\nSocketActiveState=active\n";
    /// staging, `systemd-run --unit=cutover-capture-failed /bin/false`: failed.
    const STAGING_FAILED: &str =
        "LoadState=loaded\nActiveState=failed\nIsEnabled=transient\nSocketActiveState=inactive\n";
    /// staging, `systemd-run --no-block -p Type=oneshot /bin/sleep 30`: activating (SubState=start).
    const STAGING_ACTIVATING: &str = "LoadState=loaded\nActiveState=activating\nIsEnabled=transient\nSocketActiveState=inactive\n";

    fn status(
        loaded: bool,
        active: bool,
        enabled: Option<bool>,
        socket: Option<&str>,
    ) -> UnitStatus {
        UnitStatus {
            loaded,
            active,
            enabled,
            socket: socket.map(str::to_string),
        }
    }

    fn service_args(v: serde_json::Value) -> ServiceArgs {
        args::parse("service", v.as_object().unwrap()).unwrap()
    }

    fn summary(p: &Probe) -> &str {
        match &p.decision {
            Decision::Change {
                summary,
                diff: None,
            } => summary,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn the_status_script_quotes_the_unit_and_its_socket() {
        let s = status_script("a b';x.service");
        assert_eq!(
            s,
            format!(
                "systemctl show -p LoadState -p ActiveState -- {u} 2>/dev/null\n\
                 printf 'IsEnabled=%s\\n' \"$(systemctl is-enabled -- {u} 2>/dev/null)\"\n\
                 printf 'SocketActiveState=%s\\n' \"$(systemctl is-active -- {k} 2>/dev/null)\"\n",
                u = quote("a b';x.service"),
                k = quote("a b';x.socket"),
            )
        );
        assert_eq!(socket_of("mariadb"), "mariadb.socket");
        assert_eq!(socket_of("mariadb.service"), "mariadb.socket");
    }

    #[test]
    fn parses_captured_states() {
        let cases = [
            ("mariadb", DB1_MARIADB, status(true, true, Some(true), None)),
            (
                "mysql",
                DB1_MYSQL_ALIAS,
                status(true, true, Some(true), None),
            ),
            (
                "nosuch-unit",
                DB1_NOT_FOUND,
                status(false, false, None, None),
            ),
            (
                "foo@.service",
                DB1_TEMPLATE_NAME,
                status(false, false, None, None),
            ),
            (
                "rsync",
                DB1_RSYNC_DISABLED,
                status(true, false, Some(false), None),
            ),
            (
                "e2scrub_reap",
                APP1_MASKED,
                status(false, false, None, None),
            ),
            (
                "dbus",
                APP1_DBUS_SOCKET,
                status(true, true, None, Some("dbus.socket")),
            ),
            ("x", STAGING_FAILED, status(true, false, None, None)),
            ("x", STAGING_ACTIVATING, status(true, true, None, None)),
            ("x", "", status(false, false, None, None)),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse_status(name, text), want, "{name}: {text:?}");
        }
    }

    #[test]
    fn parse_reads_keys_not_positions() {
        // `systemctl show` prints properties in its own order, not the order asked.
        let text = "SocketActiveState=active\nActiveState=reloading\nIsEnabled=enabled-runtime\nLoadState=loaded\n";
        assert_eq!(
            parse_status("web.service", text),
            status(true, true, Some(true), Some("web.socket"))
        );
        // A value is never taken from a longer key that ends like a shorter one.
        let text = "LoadState=loaded\nSocketActiveState=active\nIsEnabled=disabled\n";
        assert_eq!(
            parse_status("web", text),
            status(true, false, Some(false), Some("web.socket"))
        );
    }

    #[test]
    fn a_unit_not_installed_is_unknown_with_what_was_seen() {
        let args = service_args(json!({"name": "nosuch-unit", "state": "started"}));
        for text in [DB1_NOT_FOUND, APP1_MASKED, DB1_TEMPLATE_NAME] {
            let p = decide(&args, &parse_status("nosuch-unit", text), "db1");
            assert_eq!(
                p.decision,
                Decision::Unknown {
                    reason:
                        "unit nosuch-unit is not installed on db1 (an earlier step may install it)"
                            .into()
                }
            );
            assert_eq!(
                p.state,
                json!({"active": false, "enabled": null, "socket": null, "loaded": false})
            );
            assert!(p.after.is_empty());
        }
    }

    #[test]
    fn start_decisions_from_captured_states() {
        let args = service_args(json!({"name": "x", "state": "started"}));
        // A failed unit is not running: starting it is a change.
        let p = decide(&args, &parse_status("x", STAGING_FAILED), "staging");
        assert_eq!(summary(&p), "x: stopped → started");
        assert_eq!(
            p.state,
            json!({"active": false, "enabled": null, "socket": null, "loaded": true})
        );
        assert_eq!(after(&args, "x"), p.after);
        // One on its way up counts as started.
        let p = decide(&args, &parse_status("x", STAGING_ACTIVATING), "staging");
        assert_eq!(p.decision, Decision::NoChange);
        assert!(p.after.is_empty());
    }

    #[test]
    fn stop_decisions_include_an_active_socket() {
        let args = service_args(json!({"name": "dbus", "state": "stopped"}));
        let p = decide(&args, &parse_status("dbus", APP1_DBUS_SOCKET), "app1");
        assert_eq!(summary(&p), "dbus: running → stopped (and its socket)");
        assert_eq!(p.state["socket"], json!("dbus.socket"));
        // A stopped unit whose socket listens is still to stop: the socket would start it.
        let st = status(true, false, Some(false), Some("dbus.socket"));
        assert_eq!(
            summary(&decide(&args, &st, "app1")),
            "dbus: running → stopped (and its socket)"
        );
        let args = service_args(json!({"name": "mariadb", "state": "stopped"}));
        let p = decide(&args, &parse_status("mariadb", DB1_MARIADB), "db1");
        assert_eq!(summary(&p), "mariadb: running → stopped");
        let p = decide(&args, &parse_status("rsync", DB1_RSYNC_DISABLED), "db1");
        assert_eq!(p.decision, Decision::NoChange);
    }

    #[test]
    fn enable_decisions_from_captured_states() {
        let args = service_args(json!({"name": "mysql", "enabled": true}));
        // An alias counts as enabled, as `is-enabled` says.
        let p = decide(&args, &parse_status("mysql", DB1_MYSQL_ALIAS), "db1");
        assert_eq!(p.decision, Decision::NoChange);
        let p = decide(&args, &parse_status("rsync", DB1_RSYNC_DISABLED), "db1");
        assert_eq!(summary(&p), "mysql: enabled at boot");
        // A static unit is neither: asking for either is a change (as before the parser).
        let p = decide(&args, &parse_status("dbus", APP1_DBUS_SOCKET), "app1");
        assert_eq!(summary(&p), "mysql: enabled at boot");
        let args = service_args(json!({"name": "mariadb", "state": "restarted", "enabled": false}));
        let p = decide(&args, &parse_status("mariadb", DB1_MARIADB), "db1");
        assert_eq!(summary(&p), "mariadb: restart; mariadb: disabled at boot");
        let args = service_args(json!({"name": "mariadb", "state": "reloaded"}));
        let p = decide(&args, &parse_status("mariadb", DB1_MARIADB), "db1");
        assert_eq!(summary(&p), "mariadb: reload");
    }

    #[test]
    fn apply_scripts_follow_what_the_probe_saw() {
        let args = service_args(
            json!({"name": "mariadb", "state": "stopped", "enabled": false, "daemon_reload": true}),
        );
        let p = decide(&args, &parse_status("mariadb", APP1_DBUS_SOCKET), "db1");
        assert_eq!(seen(&p), parse_status("mariadb", APP1_DBUS_SOCKET));
        assert_eq!(
            apply_script(&args, &seen(&p)),
            "systemctl daemon-reload\nsystemctl disable -- mariadb\n\
             systemctl stop -- mariadb.socket\nsystemctl stop -- mariadb\n"
        );
        let args = service_args(json!({"name": "x", "state": "started", "enabled": true}));
        let p = decide(&args, &parse_status("x", STAGING_FAILED), "staging");
        assert_eq!(
            apply_script(&args, &seen(&p)),
            "systemctl enable -- x\nsystemctl start -- x\n"
        );
        match undo_of(&args, &p) {
            Some(UndoAction::Service(u)) => assert_eq!(
                u,
                ServiceUndo {
                    name: "x".into(),
                    active: false,
                    enabled: None,
                    socket: None
                }
            ),
            other => panic!("{other:?}"),
        }
    }

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
