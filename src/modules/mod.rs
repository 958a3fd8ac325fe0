//! Modules: what a step does on a host, each as probe → plan → apply (→ undo).
//!
//! `probe` reads the host without changing it and decides: no change, a change (with a
//! diff or a before → after), or unknown (with the reason). `apply` makes the change and
//! returns how to undo it, as an [`UndoAction`] the journal records before the next action.

pub mod spec;

mod args;
mod contract;

mod announce;
mod cluster_safety;
mod command;
mod control;
mod files;
mod git_overlay;
mod group;
pub mod http_check;
pub mod lb_member;
mod lineinfile;
mod lvm_layout;
mod maintenance;
pub mod mysql;
mod package;
pub(crate) mod reboot;
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

use crate::overlay::{Effect, HostOverlay, Overlay};
use crate::template::Templates;
use crate::transport::{Become, HostConn};

use contract::{registry, Module};
pub use files::sha256_hex;
pub(crate) use lvm_layout::{check_volumes, layout_volumes_problem};
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

registry! {
    command::Command,
    command::Shell,
    files::Copy,
    files::Template,
    files::File,
    git_overlay::GitOverlay,
    lineinfile::LineInFile,
    package::Package,
    service::Service,
    user::User,
    group::Group,
    wait_for::WaitFor,
    control::Assert,
    control::Fail,
    control::Debug,
    control::Approve,
    snapshot::Snapshot,
    snapshot::SnapshotUsage,
    lvm_layout::LvmLayout,
    sync::TreeSync,
    mysql::MysqlFacts,
    write_mark::WriteMark,
    mysql::MysqlReplication,
    mysql::MysqlQuery,
    lb_member::LbMember,
    maintenance::Maintenance,
    http_check::HttpCheck,
    cluster_safety::ClusterSafety,
    announce::Announce,
    reboot::Reboot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::PathState;
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

    #[test]
    fn every_typed_module_s_args_struct_agrees_with_its_spec() {
        let results = args_agree_with_specs();
        let typed: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r == &Ok(true))
            .map(|(n, _)| *n)
            .collect();
        let drift: Vec<&String> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        assert!(drift.is_empty(), "{drift:#?}");
        // The modules moved onto an `Args` struct so far (src/modules/README.md lists them).
        assert_eq!(typed, TYPED);
    }

    /// The modules whose arguments are a struct, in registry order.
    const TYPED: &[&str] = &[
        "command",
        "shell",
        "copy",
        "template",
        "file",
        "git_overlay",
        "lineinfile",
        "package",
        "service",
        "user",
        "group",
        "wait_for",
        "assert",
        "fail",
        "debug",
        "approve",
        "snapshot",
        "snapshot_usage",
        "lvm_layout",
        "sync",
        "mysql_facts",
        "write_mark",
        "mysql_replication",
        "mysql_query",
        "lb_member",
        "maintenance",
        "http_check",
        "cluster_safety",
        "announce",
        "reboot",
    ];

    #[test]
    fn every_module_is_registered_once_and_dispatched_by_its_name() {
        let names: Vec<&str> = spec::names().collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 30);
        assert_eq!(names[..3], ["command", "shell", "copy"]);
        assert_eq!(
            spec::find("mysql_query").map(|s| s.free_form),
            Some(Some("sql"))
        );
        assert!(spec::find("nope").is_none());
    }

    #[test]
    fn peer_hosts_and_read_only_steps_come_from_their_module() {
        let args = |v: J| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            peer_hosts(
                "sync",
                &args(json!({"src_host": "db1", "src": "/srv/a", "dest": "/srv/a"}))
            ),
            ["db1"]
        );
        assert_eq!(
            peer_hosts("mysql_replication", &args(json!({"master": "db1"}))),
            ["db1"]
        );
        assert_eq!(
            peer_hosts(
                "cluster_safety",
                &args(json!({"check": "same_version", "hosts": ["app1", "app2"]}))
            ),
            ["app1", "app2"]
        );
        assert_eq!(
            peer_hosts(
                "cluster_safety",
                &args(json!({"check": "same_version", "hosts": "app1"}))
            ),
            ["app1"]
        );
        assert!(peer_hosts("debug", &args(json!({"msg": "x"}))).is_empty());
        assert!(changes_nothing(
            "mysql_replication",
            &args(json!({"state": "synced"}))
        ));
        assert!(!changes_nothing(
            "mysql_replication",
            &args(json!({"state": "synced", "read_only": true}))
        ));
        assert!(changes_nothing(
            "mysql_query",
            &args(json!({"read_only": "true"}))
        ));
        assert!(!changes_nothing("command", &args(json!({"cmd": "true"}))));
        assert_eq!(
            describe_done("shell", &args(json!({"rc": 3}))).as_deref(),
            Some("ran, exit 3")
        );
        assert!(describe_done("copy", &args(json!({"rc": 3}))).is_none());
    }
}
