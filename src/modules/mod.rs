//! Modules: what a step does on a host, each as probe → plan → apply (→ undo).
//!
//! `probe` reads the host without changing it and decides: no change, a change (with a
//! diff or a before → after), or unknown (with the reason). `apply` makes the change and
//! returns how to undo it, as an [`UndoAction`] the journal records before the next action.

pub mod spec;

mod cluster_safety;
mod command;
mod control;
mod files;
mod group;
pub mod http_check;
pub mod lb_member;
mod lineinfile;
mod maintenance;
pub mod mysql;
mod package;
mod service;
pub mod snapshot;
pub mod sync;
pub mod undo;
mod user;
mod wait_for;
pub mod write_mark;

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{Map, Value as J};

use crate::overlay::{Effect, HostOverlay, Overlay, PathState, TreeState, UnitState};
use crate::template::Templates;
use crate::transport::{Become, HostConn};

pub use undo::UndoAction;

/// Everything a module may use on one host for one step.
pub struct ModCtx<'a> {
    pub host: &'a HostConn,
    pub become_: Option<&'a Become>,
    pub timeout: Option<Duration>,
    pub templates: &'a Templates,
    /// The host's template context (variables, groups, hostvars).
    pub vars: &'a crate::template::Vars,
    /// Used to name backups so an undo can find them.
    pub run_id: &'a str,
    /// Approvals given on the command line (`--approve STAGE`).
    pub approvals: &'a [String],
    pub interactive: bool,
    /// Other hosts' connections, for modules that read from a second host (`sync`'s
    /// `src_host`); empty when unwinding.
    pub peers: &'a std::collections::HashMap<String, std::sync::Arc<HostConn>>,
    /// In a plan: what the earlier steps of the plan leave on every host, for probes to
    /// compare with instead of the host as it is now. `None` when a run applies steps (the
    /// host then *is* what the earlier steps left).
    pub planned: Option<&'a Overlay>,
}

impl ModCtx<'_> {
    /// The planned state of this host (plan mode only).
    pub fn overlay(&self) -> Option<&HostOverlay> {
        self.planned.and_then(|p| p.host(&self.host.name))
    }

    /// The planned state of another host (plan mode only).
    pub fn overlay_of(&self, host: &str) -> Option<&HostOverlay> {
        self.planned.and_then(|p| p.host(host))
    }

    /// Run a script on the host with the step's become and timeout.
    pub async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
    ) -> Result<crate::transport::Output> {
        self.host
            .run(script, stdin, self.become_, self.timeout)
            .await
    }

    /// Write `input` to a new file on the host, then run a script that works on it (see
    /// [`HostConn::run_put`](crate::transport::HostConn::run_put)).
    pub async fn run_put(
        &self,
        script: &str,
        input: crate::transport::Input<'_>,
        put: crate::session_shell::Put<'_>,
    ) -> Result<crate::transport::Output> {
        self.host
            .run_put(script, input, put, self.become_, self.timeout)
            .await
    }

    /// As `run`, with the input as bytes or a controller file streamed to the host.
    pub async fn run_input(
        &self,
        script: &str,
        stdin: Option<crate::transport::Input<'_>>,
    ) -> Result<crate::transport::Output> {
        self.host
            .run_input(script, stdin, self.become_, self.timeout)
            .await
    }
}

/// What a probe concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    NoChange,
    Change {
        summary: String,
        diff: Option<String>,
    },
    Unknown {
        reason: String,
    },
}

/// The probe's decision plus what it saw, for `apply` to use.
#[derive(Clone, Debug)]
pub struct Probe {
    pub decision: Decision,
    pub state: J,
    /// For a change: what the host looks like after it (as far as the probe can derive it),
    /// so that a plan shows later steps against it. Empty: not modelled; the plan then takes
    /// what the step touches ([`touches`]) as unknown after it.
    pub after: Vec<Effect>,
    /// What this change destroys with no way back, though the step is otherwise reversible
    /// (a snapshot set replaced: the older rollback point is gone). The plan marks the step
    /// irreversible on this host.
    pub loses: Option<String>,
}

impl Probe {
    pub fn no_change(state: J) -> Probe {
        Probe {
            decision: Decision::NoChange,
            state,
            after: Vec::new(),
            loses: None,
        }
    }
    pub fn change(summary: impl Into<String>, diff: Option<String>, state: J) -> Probe {
        Probe {
            decision: Decision::Change {
                summary: summary.into(),
                diff,
            },
            state,
            after: Vec::new(),
            loses: None,
        }
    }
    pub fn unknown(reason: impl Into<String>, state: J) -> Probe {
        Probe {
            decision: Decision::Unknown {
                reason: reason.into(),
            },
            state,
            after: Vec::new(),
            loses: None,
        }
    }
    /// A change that destroys `what` with no way back.
    pub fn losing(mut self, what: impl Into<String>) -> Probe {
        self.loses = Some(what.into());
        self
    }
    /// With what the host looks like after the change.
    pub fn with_after(mut self, after: Vec<Effect>) -> Probe {
        self.after = after;
        self
    }
}

/// What `apply` did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub changed: bool,
    /// Registered as the step's result (`register:`): rc, stdout, stderr, …
    pub result: Map<String, J>,
    pub undo: Option<UndoAction>,
    /// The module's own verdict that the step failed, with why.
    pub failed: Option<String>,
}

pub async fn probe(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    match module {
        "command" | "shell" => command::probe(module, args, ctx).await,
        "copy" | "template" => files::probe_content(module, args, ctx).await,
        "file" => files::probe_file(args, ctx).await,
        "service" => service::probe(args, ctx).await,
        "lineinfile" => lineinfile::probe(args, ctx).await,
        "package" => package::probe(args, ctx).await,
        "user" => user::probe(args, ctx).await,
        "group" => group::probe(args, ctx).await,
        "wait_for" => Ok(wait_for::probe()),
        "debug" | "assert" | "fail" | "approve" => control::probe(module, args, ctx),
        "snapshot" => snapshot::probe(args, ctx).await,
        "snapshot_usage" => snapshot::probe_usage(args, ctx).await,
        "sync" => sync::probe(args, ctx).await,
        "mysql_facts" => mysql::probe_facts(args, ctx).await,
        "mysql_replication" => mysql::probe_replication(args, ctx).await,
        "mysql_query" => mysql::probe_query(args, ctx).await,
        "lb_member" => lb_member::probe(args, ctx).await,
        "maintenance" => maintenance::probe(args, ctx).await,
        "http_check" => Ok(http_check::probe()),
        "cluster_safety" => Ok(cluster_safety::probe()),
        "write_mark" => Ok(write_mark::probe()),
        other => bail!("module `{other}` is not implemented by the engine yet"),
    }
}

pub async fn apply(
    module: &str,
    args: &Map<String, J>,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    match module {
        "command" | "shell" => command::apply(module, args, probe, ctx).await,
        "copy" | "template" => files::apply_content(module, args, probe, ctx).await,
        "file" => files::apply_file(args, probe, ctx).await,
        "service" => service::apply(args, probe, ctx).await,
        "lineinfile" => lineinfile::apply(args, probe, ctx).await,
        "package" => package::apply(args, probe, ctx).await,
        "user" => user::apply(args, probe, ctx).await,
        "group" => group::apply(args, probe, ctx).await,
        "wait_for" => wait_for::apply(args, ctx).await,
        "debug" | "assert" | "fail" | "approve" => control::apply(module, args, ctx).await,
        "snapshot" => snapshot::apply(args, probe, ctx).await,
        "snapshot_usage" => snapshot::apply_usage(args, probe, ctx).await,
        "sync" => sync::apply(args, probe, ctx).await,
        "mysql_facts" => mysql::apply_facts(probe).await,
        "mysql_replication" => mysql::apply_replication(args, probe, ctx).await,
        "mysql_query" => mysql::apply_query(args, ctx).await,
        "lb_member" => lb_member::apply(args, probe, ctx).await,
        "maintenance" => maintenance::apply(args, probe, ctx).await,
        "http_check" => http_check::apply(args, ctx).await,
        "cluster_safety" => cluster_safety::apply(args, ctx).await,
        "write_mark" => write_mark::apply(args, ctx).await,
        other => bail!("module `{other}` is not implemented by the engine yet"),
    }
}

/// The way back a step will record if its change completes, computed from the probe before
/// the change starts, so the engine can journal it with the intent (`step_applying`): a
/// controller killed in the middle of the change still leaves a way back. Every action returned
/// here is safe to run when the change was only partly made or not at all (run with
/// [`UndoAction::run_partial`]). `None`: the module keeps no way back (or cannot know it before
/// it acts: packages, users, groups, sync, commands).
pub fn pending_undo(
    module: &str,
    args: &Map<String, J>,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Option<UndoAction> {
    match module {
        "snapshot" => snapshot::pending_undo(args, probe),
        "copy" | "template" | "lineinfile" => {
            files::pending_content_undo(module, args, probe, ctx.run_id)
        }
        "file" => files::pending_file_undo(args, probe, ctx.run_id),
        "service" => service::undo_of(args, probe),
        "lb_member" => lb_member::undo_of(args, probe, ctx.run_id),
        "maintenance" if probe.decision != Decision::NoChange => maintenance::undo_of(args),
        "mysql_replication" => mysql::pending_undo_replication(args, probe, ctx),
        _ => None,
    }
}

/// What a step did, told from its result, for a step whose probe could not say beforehand
/// (an `unknown` decision): its result line must read as what happened, not as the doubt the
/// probe had. `None` where the module's result says nothing more than "changed".
pub fn describe_done(module: &str, result: &Map<String, J>) -> Option<String> {
    match module {
        "package" => package::describe_done(result),
        "command" | "shell" => result
            .get("rc")
            .and_then(J::as_i64)
            .map(|rc| format!("ran, exit {rc}")),
        _ => None,
    }
}

/// Does this module, with these arguments, only read (though its probe cannot say "no change"
/// in advance: a wait for the replica, a read-only query)? Such a step cut off by a kill left
/// nothing half done.
pub fn changes_nothing(module: &str, args: &Map<String, J>) -> bool {
    match module {
        "mysql_replication" => {
            arg_str(args, "state") == Some("synced") && !args.contains_key("read_only")
        }
        "mysql_query" => arg_bool(args, "read_only") == Some(true),
        _ => false,
    }
}

/// Other hosts a step's module reads besides its own, by inventory name (`sync`'s
/// `src_host`, `mysql_replication`'s `master`, `cluster_safety`'s `hosts`): the engine and
/// plans connect to them and pass them in [`ModCtx::peers`].
pub fn peer_hosts(module: &str, args: &Map<String, J>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = arg_str(args, "src_host") {
        out.push(s.to_string());
    }
    match module {
        "mysql_replication" => out.extend(arg_str(args, "master").map(str::to_string)),
        "cluster_safety" => match args.get("hosts") {
            Some(J::Array(a)) => {
                out.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            Some(J::String(s)) => out.push(s.clone()),
            _ => {}
        },
        _ => {}
    }
    out
}

/// What a step may change on its host, none of it known in advance: for a plan, the state
/// after a step whose outcome is unknown (or whose module does not derive it). `{by}` in a
/// reason is replaced by the step's name when it is recorded.
pub fn touches(module: &str, args: &Map<String, J>) -> Vec<Effect> {
    let path = |p: &str| Effect::Path {
        path: p.to_string(),
        state: PathState::Unknown {
            why: format!(
                "{{by}} may change {p}; what it looks like after that is known only when it runs"
            ),
        },
    };
    let tree = |p: &str| Effect::Tree {
        path: p.to_string(),
        state: TreeState::Unknown {
            why: format!("{{by}} may change {p} and what is below it; known only when it runs"),
        },
    };
    let mut out = Vec::new();
    match module {
        "copy" | "template" => out.extend(arg_str(args, "dest").map(path)),
        "lineinfile" | "maintenance" => out.extend(arg_str(args, "path").map(path)),
        "file" => {
            if let Some(p) = arg_str(args, "path") {
                out.push(path(p));
                if arg_str(args, "state") == Some("absent")
                    || arg_bool(args, "recurse") == Some(true)
                {
                    out.push(tree(p));
                }
            }
        }
        "command" | "shell" => {
            out.extend(command::effects(args));
        }
        "sync" => out.extend(arg_str(args, "dest").map(tree)),
        "service" => {
            if let Some(n) = arg_str(args, "name") {
                out.push(Effect::Unit {
                    name: n.to_string(),
                    state: UnitState::unknown(),
                });
            }
        }
        "user" => {
            for p in ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"] {
                out.push(path(p));
            }
            out.extend(arg_str(args, "home").map(tree));
        }
        "group" => {
            for p in ["/etc/group", "/etc/gshadow"] {
                out.push(path(p));
            }
        }
        "lb_member" => {
            if let (Some(lb), Some(member)) = (arg_str(args, "lb"), arg_str(args, "member")) {
                out.push(Effect::LbMember {
                    lb: lb.to_string(),
                    member: member.to_string(),
                    activation: None,
                    workers_file: arg_str(args, "workers_file")
                        .unwrap_or(lb_member::DEFAULT_WORKERS_FILE)
                        .to_string(),
                });
            }
        }
        "mysql_replication" => out.push(Effect::Replication(crate::overlay::ReplicationState {
            io_running: crate::overlay::Val::Unknown,
            sql_running: crate::overlay::Val::Unknown,
            read_only: crate::overlay::Val::Unknown,
            reconfigured: matches!(arg_str(args, "state"), Some("configured" | "detached")),
        })),
        "snapshot" if arg_str(args, "state") == Some("merged") => {
            if let Some(J::Array(vols)) = args.get("volumes") {
                for v in vols {
                    if let Some(m) = v.get("mount").and_then(J::as_str) {
                        out.push(tree(m));
                    }
                }
            }
            if let Some(J::Array(services)) = args.get("services") {
                for s in services.iter().filter_map(J::as_str) {
                    out.push(Effect::Unit {
                        name: s.to_string(),
                        state: UnitState::unknown(),
                    });
                }
            }
        }
        _ => {}
    }
    out
}

/// A list argument: a YAML list of strings, or one non-empty string as a list of one.
pub(crate) fn arg_str_list(args: &Map<String, J>, key: &str) -> Vec<String> {
    match args.get(key) {
        Some(J::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(J::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Argument helpers (arguments were type-checked by validation; these only convert).
pub(crate) fn arg_str<'a>(args: &'a Map<String, J>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(J::as_str)
}

pub(crate) fn arg_bool(args: &Map<String, J>, key: &str) -> Option<bool> {
    match args.get(key) {
        Some(J::Bool(b)) => Some(*b),
        Some(J::String(s)) if s == "true" => Some(true),
        Some(J::String(s)) if s == "false" => Some(false),
        _ => None,
    }
}

pub(crate) fn required<'a>(args: &'a Map<String, J>, key: &str) -> Result<&'a str> {
    match arg_str(args, key) {
        Some(s) => Ok(s),
        None => bail!("argument `{key}` is missing or not a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_steps_touch_when_their_outcome_is_unknown() {
        let args = |v: J| v.as_object().cloned().unwrap_or_default();
        let t = touches("file", &args(json!({"path": "/srv/x", "state": "absent"})));
        assert!(
            matches!(&t[..], [Effect::Path { .. }, Effect::Tree { .. }]),
            "{t:?}"
        );
        let t = touches(
            "template",
            &args(json!({"src": "a", "dest": "/etc/a.conf"})),
        );
        assert!(
            matches!(&t[..], [Effect::Path { path, state: PathState::Unknown { why } }]
                if path == "/etc/a.conf" && why.contains("{by}")),
            "{t:?}"
        );
        // A command: the paths it names, then what it promises to create.
        let t = touches(
            "shell",
            &args(json!({"cmd": "tar xf /tmp/r.tgz -C /opt/app", "creates": "/opt/app/bin"})),
        );
        match &t[..] {
            [Effect::Command { text }, Effect::Path { path, .. }] => {
                assert!(text.contains("/opt/app"));
                assert_eq!(path, "/opt/app/bin");
            }
            other => panic!("{other:?}"),
        }
        assert!(touches("debug", &args(json!({"msg": "/etc/passwd"}))).is_empty());
    }
}
