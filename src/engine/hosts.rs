//! The hosts of a run: which ones it may touch, opening and locking them (all of them before
//! the first step), reporting those that could not be opened, and reaching delegates and peers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value as J};

use super::output::Status;
use super::{tags_allow, Run, RunStatus};
use crate::inventory::pattern;
use crate::modules;
use crate::playbook::Playbook;
use crate::run::lock;
use crate::transport::HostConn;

/// The hosts a run may touch, in inventory order: the hosts of every play it runs (after
/// `--limit` and tags), and the delegates and peer hosts (`sync`'s `src_host`, …) their steps
/// name literally. A name computed by a template is only known when its step runs; such a
/// host is locked when it is first reached.
pub(super) fn hosts_of_run(
    run: &Run,
    pb: &Playbook,
    limited: Option<&BTreeSet<String>>,
) -> Vec<String> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let literal = |name: &str| !name.contains("{{") && run.inv.host(name).is_some();
    for play in &pb.plays {
        if !tags_allow(&run.opts, &play.tags, &[])
            && play
                .steps
                .iter()
                .all(|s| !tags_allow(&run.opts, &play.tags, &s.tags))
        {
            continue;
        }
        let hosts: Vec<String> = pattern::select(&run.inv, &play.hosts)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| limited.is_none_or(|l| l.contains(*h)))
            .map(str::to_string)
            .collect();
        if hosts.is_empty() {
            continue;
        }
        wanted.extend(hosts);
        for step in play.steps.iter().chain(play.handlers.iter()) {
            if let Some((d, _)) = &step.delegate_to {
                if literal(d) {
                    wanted.insert(d.clone());
                }
            }
            for peer in modules::peer_hosts(&step.action.module, &step.action.args) {
                if literal(&peer) {
                    wanted.insert(peer);
                }
            }
        }
    }
    pattern::select(&run.inv, "all")
        .unwrap_or_default()
        .into_iter()
        .filter(|h| wanted.contains(*h))
        .map(str::to_string)
        .collect()
}

/// Connect to and lock every host of the run, in parallel, before anything runs. A host held
/// by another run (or whose lock cannot be taken) refuses the whole run: the locks taken are
/// released by the caller and nothing has changed anywhere. An unreachable host is reported
/// now and left out of the run, as when a batch reaches it.
pub(super) async fn lock_run_hosts(
    run: &Arc<Run>,
    hosts: &[String],
) -> std::result::Result<(), RunStatus> {
    let closed = open_hosts(run, hosts).await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for (h, why) in &closed {
        report_closed(run, h, why).await;
        match why {
            Closed::Lock(lock::HostLockError::Held(_)) => held.push(h.clone()),
            Closed::Lock(_) => refused.push(h.clone()),
            Closed::Unreachable(_) => {
                run.down
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(h.clone());
            }
        }
    }
    if held.is_empty() && refused.is_empty() {
        return Ok(());
    }
    let blocked: Vec<String> = held.iter().chain(refused.iter()).cloned().collect();
    let _ = run
        .journal
        .record(
            "run_refused",
            json!({ "lock": "host", "hosts": blocked, "why": if held.is_empty() { "lock" } else { "locked by another run" } }),
        )
        .await;
    run.reporter.say(&format!(
        "run refused before its first step: {} cannot be locked for this run (see above); nothing was changed on any host",
        blocked.join(", ")
    ));
    Err(if held.is_empty() {
        RunStatus::Refused
    } else {
        RunStatus::Locked
    })
}

/// Why a host could not be opened for the run.
pub(super) enum Closed {
    Unreachable(anyhow::Error),
    Lock(lock::HostLockError),
}

impl From<tokio::task::JoinError> for Closed {
    fn from(e: tokio::task::JoinError) -> Self {
        Closed::Unreachable(anyhow!("internal error opening the host: {e}"))
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Unreachable(e) => write!(f, "{e:#}"),
            Closed::Lock(e) => write!(f, "{e}"),
        }
    }
}

pub(super) async fn report_closed(run: &Arc<Run>, h: &str, why: &Closed) {
    let msg = why.to_string();
    let _ = run
        .journal
        .record("host_unreachable", json!({ "host": h, "error": msg }))
        .await;
    run.reporter.step_result(
        "connect",
        "connect",
        h,
        Status::Unreachable,
        &msg,
        Duration::ZERO,
    );
}

/// Connect (and lock) every host of a batch not yet connected, in parallel. Hosts found
/// unreachable when the run started are not tried again.
pub(super) async fn connect_all(run: &Arc<Run>, hosts: &[String]) -> BTreeSet<String> {
    for (h, why) in open_hosts(run, hosts).await {
        report_closed(run, &h, &why).await;
    }
    let open = run.conns.all().await;
    hosts
        .iter()
        .filter(|h| open.contains_key(*h))
        .cloned()
        .collect()
}

/// Connect to and lock the hosts not yet connected (nor down since the start), in parallel;
/// the ones that could not be opened, and why.
pub(super) async fn open_hosts(run: &Arc<Run>, hosts: &[String]) -> Vec<(String, Closed)> {
    let down = run.down.lock().unwrap_or_else(|e| e.into_inner()).clone();
    run.conns
        .open_missing(hosts, run.opts.forks, |h| {
            (!down.contains(h)).then(|| open_host(run.clone(), h.to_string()))
        })
        .await
}

/// Connect to a host and lock it for the run.
pub(super) async fn open_host(run: Arc<Run>, h: String) -> std::result::Result<HostConn, Closed> {
    let Some(host) = run.inv.host(&h) else {
        return Err(Closed::Unreachable(anyhow!("not in the inventory")));
    };
    let started = Instant::now();
    let conn = HostConn::connect(&h, &host.connection, &run.opts.transport)
        .await
        .map_err(Closed::Unreachable)?;
    if let Err(e) = lock::lock_host(&conn, &lock::Owner::me(&run.id), run.opts.break_lock).await {
        conn.close().await;
        return Err(Closed::Lock(e));
    }
    let _ = run
        .journal
        .record(
            "host_connected",
            json!({ "host": h, "ms": started.elapsed().as_millis() as u64 }),
        )
        .await;
    Ok(conn)
}

/// The connection to where a step runs; a delegate outside the play's hosts is connected now.
pub(super) async fn connection_to(run: &Arc<Run>, target: &str) -> Result<Arc<HostConn>> {
    if let Some(c) = run.conns.get(target).await {
        return Ok(c);
    }
    connect_all(run, &[target.to_string()]).await;
    run.conns
        .get(target)
        .await
        .ok_or_else(|| anyhow!("cannot reach delegate {target}"))
}

/// Modules reading other hosts (`sync`'s `src_host`, …) get their connections.
pub(super) async fn peers_for(
    run: &Arc<Run>,
    module: &str,
    args: &Map<String, J>,
) -> HashMap<String, Arc<HostConn>> {
    let wanted = modules::peer_hosts(module, args);
    if wanted.is_empty() {
        HashMap::new()
    } else {
        connect_all(run, &wanted).await;
        run.conns.all().await
    }
}
