//! `cluster_safety`: read-only checks against a cluster panic (Confluence's cluster safety
//! mechanism: https://confluence.atlassian.com/confkb/confluence-will-not-start-due-to-fatal-error-in-confluence-cluster-179439771.html).
//!
//! - `check: no_app_running` — on every host of `hosts` (default: this host), no process whose
//!   command line matches `process` (default the Tomcat bootstrap class): the process table,
//!   not the service state. The pattern reaches pgrep on standard input, so the checking shell
//!   never matches itself.
//! - `check: same_version` — `status_url` (default http://127.0.0.1:8080/status, fetched on each
//!   host) reports the same `version` on every host of `hosts` (and `version`, if given).
//! - `check: single_writer` — on the database master (this host): the `CLUSTERSAFETY` value
//!   changes within `wait` seconds (the safety job is alive), every write comes from
//!   `cluster_name` (if given), and the processlist's client hosts are all in `clients`. With
//!   `watch: N` it reads every write of N seconds (one full cycle when N is the job's
//!   interval: every node runs its job once in it), not only the first.
//!   A node's own cycle cannot be told from the table: it holds the last write only, and one
//!   node's write may be overwritten by another's within a second (and Confluence's row
//!   names no node at all).
//! - `check: no_connections` — on the database master (this host): waits up to `wait` seconds
//!   (default 120) until no client session is open but replication's, the server's own and
//!   this check's (and those of `ignore_users`); when it gives up, fails listing each session
//!   left (user, host, command, seconds in it). The runbook's "no open connections" before the
//!   master stops: a session still open may hold writes the snapshot must not split.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::args::{self, TextList};
use super::contract::Module;
use super::http_check::fetch;
use super::mysql::{parse_sections, run_sql_script, sql_str, Login, LoginArgs, LoginSource};
use super::spec::{arg, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{ModCtx, Outcome, Probe};
use crate::transport::HostConn;

pub const DEFAULT_PROCESS: &str = "org.apache.catalina.startup.Bootstrap";

/// The arguments of a `cluster_safety` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct SafetyArgs {
    #[serde(deserialize_with = "args::required_text")]
    check: String,
    /// Inventory names: a list, or one name.
    #[serde(default, deserialize_with = "args::text_list")]
    hosts: TextList,
    #[serde(default, deserialize_with = "args::text")]
    process: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    status_url: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    version: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    database: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    wait: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    cluster_name: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    watch: Option<u64>,
    #[serde(default, deserialize_with = "args::str_list")]
    clients: Vec<String>,
    #[serde(default, deserialize_with = "args::str_list")]
    ignore_users: Vec<String>,
    #[serde(default, deserialize_with = "args::text")]
    table: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    expected: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    login_user: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_password: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_password_var: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_host: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    login_port: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    login_unix_socket: Option<String>,
}

impl LoginSource for SafetyArgs {
    fn login_args(&self) -> Result<LoginArgs> {
        Ok(LoginArgs {
            login_user: self.login_user.clone(),
            login_password: self.login_password.clone(),
            login_password_var: self.login_password_var.clone(),
            login_host: self.login_host.clone(),
            login_port: self.login_port,
            login_unix_socket: self.login_unix_socket.clone(),
        })
    }
}

pub fn probe() -> Probe {
    Probe::no_change(J::Null)
}

fn conns<'a>(args: &SafetyArgs, ctx: &'a ModCtx<'_>) -> Result<Vec<&'a HostConn>> {
    let names = args.hosts.items();
    if names.is_empty() {
        return Ok(vec![ctx.host]);
    }
    names
        .iter()
        .map(|n| {
            if *n == ctx.host.name {
                Ok(ctx.host)
            } else {
                ctx.peers
                    .get(n)
                    .map(|c| &**c)
                    .ok_or_else(|| anyhow!("cluster_safety: no connection to {n}"))
            }
        })
        .collect()
}

fn outcome(result: Map<String, J>, problems: Vec<String>) -> Outcome {
    Outcome {
        changed: false,
        result,
        undo: None,
        failed: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

pub async fn apply(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    match args.check.as_str() {
        "no_app_running" => no_app_running(args, ctx).await,
        "same_version" => same_version(args, ctx).await,
        "single_writer" => single_writer(args, ctx).await,
        "jdbc_ping" => jdbc_ping(args, ctx).await,
        "no_connections" => no_connections(args, ctx).await,
        other => bail!("unknown cluster_safety check `{other}`"),
    }
}

async fn no_app_running(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let pattern = args.process.as_deref().unwrap_or(DEFAULT_PROCESS);
    let hosts = conns(args, ctx)?;
    let script = "IFS= read -r p; pgrep -a -f -- \"$p\"; rc=$?; [ $rc -le 1 ] || exit $rc; exit 0";
    let input = format!("{pattern}\n");
    let runs = hosts.iter().map(|c| {
        let input = input.clone();
        async move {
            let out = c
                .run(script, Some(input.as_bytes()), ctx.become_, ctx.timeout)
                .await;
            (c.name.clone(), out)
        }
    });
    let mut found = Map::new();
    let mut problems = Vec::new();
    for (name, out) in in_order(runs).await {
        let out = out?;
        if !out.ok() {
            bail!("pgrep failed on {name}: {}", out.stderr_text().trim());
        }
        let procs: Vec<String> = out
            .stdout_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.chars().take(200).collect())
            .collect();
        if !procs.is_empty() {
            problems.push(format!(
                "{name}: {} process{} still running ({})",
                procs.len(),
                if procs.len() == 1 { "" } else { "es" },
                procs
                    .iter()
                    .map(|p| p.split_whitespace().next().unwrap_or("").to_string())
                    .map(|pid| format!("pid {pid}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        found.insert(name, json!(procs));
    }
    let mut result = Map::new();
    result.insert("processes".into(), J::Object(found));
    Ok(outcome(result, problems))
}

/// Await futures one after the other (a handful of hosts, one short command each).
async fn in_order<F, T>(it: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    for f in it {
        out.push(f.await);
    }
    out
}

async fn same_version(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let url = args
        .status_url
        .as_deref()
        .unwrap_or("http://127.0.0.1:8080/status");
    let want = args.version.as_deref();
    let mut versions = Map::new();
    let mut problems = Vec::new();
    for c in conns(args, ctx)? {
        let hctx = ModCtx {
            host: c,
            become_: ctx.become_,
            timeout: ctx.timeout,
            templates: ctx.templates,
            vars: ctx.vars,
            run_id: ctx.run_id,
            approvals: ctx.approvals,
            interactive: ctx.interactive,
            peers: ctx.peers,
            planned: ctx.planned,
        };
        let v = match fetch(url, Some(&hctx), &[]).await {
            Ok(r) => serde_json::from_str::<J>(r.body.trim())
                .ok()
                .and_then(|j| j.get("version").and_then(J::as_str).map(str::to_string)),
            Err(e) => {
                problems.push(format!("{}: {e}", c.name));
                None
            }
        };
        versions.insert(c.name.clone(), json!(v));
    }
    let distinct: std::collections::BTreeSet<Option<&str>> =
        versions.values().map(J::as_str).collect();
    if distinct.len() > 1 {
        problems.push(format!(
            "versions differ: {}",
            versions
                .iter()
                .map(|(h, v)| format!("{h} {}", v.as_str().unwrap_or("unknown")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if let Some(w) = want {
        if distinct.iter().next() != Some(&Some(w)) {
            problems.push(format!(
                "version is {} (want {w})",
                distinct
                    .iter()
                    .next()
                    .copied()
                    .flatten()
                    .unwrap_or("unknown")
            ));
        }
    }
    let mut result = Map::new();
    result.insert("versions".into(), J::Object(versions));
    Ok(outcome(result, problems))
}

/// (safety number, cluster, node) and the client hosts, in one round trip.
async fn safety_read(
    ctx: &ModCtx<'_>,
    login: &Login,
    db: &str,
) -> Result<(Vec<(String, String, String)>, Vec<String>)> {
    let sql = format!(
        "SELECT 'safety' AS cutover_section; SELECT SAFETY_NUMBER, CLUSTER_NAME, NODE FROM `{db}`.CLUSTERSAFETY; SELECT 'clients' AS cutover_section; SELECT DISTINCT SUBSTRING_INDEX(HOST, ':', 1) AS client FROM information_schema.PROCESSLIST WHERE COMMAND NOT LIKE 'Binlog Dump%' AND USER NOT IN ('system user', 'event_scheduler') AND HOST NOT IN ('', 'localhost') AND HOST NOT LIKE 'localhost:%' AND HOST NOT LIKE '127.0.0.1:%' AND ID <> CONNECTION_ID() AND (DB = {dbs} OR DB IS NULL);",
        db = db.replace('`', "``"),
        dbs = sql_str(db)
    );
    let out = run_sql_script(
        ctx.host,
        ctx,
        login,
        &format!("my -B -e {}\n", crate::shell::quote(&sql)),
        None,
        None,
    )
    .await?;
    if !out.ok() {
        bail!(
            "cannot read CLUSTERSAFETY on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let s = parse_sections(&out.stdout_text());
    let rows = s
        .get("safety")
        .map(|r| {
            r.iter()
                .map(|row| {
                    let g = |k: &str| row.get(k).cloned().unwrap_or_default();
                    (g("SAFETY_NUMBER"), g("CLUSTER_NAME"), g("NODE"))
                })
                .collect()
        })
        .unwrap_or_default();
    let clients = s
        .get("clients")
        .map(|r| {
            r.iter()
                .filter_map(|row| row.get("client").cloned())
                .collect()
        })
        .unwrap_or_default();
    Ok((rows, clients))
}

async fn single_writer(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let db = args.database.as_deref().unwrap_or("wiki");
    let wait = Duration::from_secs(args.wait.unwrap_or(30));
    let cluster = args.cluster_name.as_deref();
    let allowed = &args.clients;
    let (first, c1) = safety_read(ctx, &login, db).await?;
    let mut problems = Vec::new();
    if first.len() != 1 {
        problems.push(format!(
            "CLUSTERSAFETY has {} rows (want exactly 1)",
            first.len()
        ));
    }
    let mut seen = vec![first.clone()];
    let mut clients: std::collections::BTreeSet<String> = c1.into_iter().collect();
    let started = std::time::Instant::now();
    let mut moved = false;
    // `watch`: every write of that long is read (each node of the cluster runs its job at least
    // once in an interval), not only the first that moves the value.
    let watch = Duration::from_secs(args.watch.unwrap_or(0));
    let limit = wait.max(watch);
    while keep_watching(started.elapsed(), moved, wait, watch) {
        let poll = if watch.is_zero() { 2 } else { 1 };
        tokio::time::sleep(Duration::from_secs(poll).min(limit)).await;
        let (now, c) = safety_read(ctx, &login, db).await?;
        clients.extend(c);
        if now.first().map(|r| &r.0) != seen.last().and_then(|r| r.first()).map(|r| &r.0) {
            seen.push(now);
            moved = true;
        }
    }
    if !moved {
        problems.push(format!(
            "the CLUSTERSAFETY value did not change in {}s: no cluster safety job is running (is the app up?)",
            limit.as_secs()
        ));
    }
    if let Some(c) = cluster {
        for rows in &seen {
            for (_, cl, node) in rows {
                if cl != c {
                    problems.push(format!(
                        "CLUSTERSAFETY was written by node {node} of cluster {cl}, not {c}"
                    ));
                }
            }
        }
    }
    if !allowed.is_empty() {
        let strangers: Vec<&String> = clients.iter().filter(|h| !allowed.contains(h)).collect();
        if !strangers.is_empty() {
            problems.push(format!(
                "unexpected database clients: {}",
                strangers
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    problems.dedup();
    let mut result = Map::new();
    result.insert(
        "writers".into(),
        json!(seen
            .iter()
            .flatten()
            .map(|(_, c, n)| format!("{c}/{n}"))
            .collect::<Vec<_>>()),
    );
    result.insert("clients".into(), json!(clients));
    result.insert("moved".into(), json!(moved));
    Ok(outcome(result, problems))
}

/// Whether `single_writer` reads the table again: until the value moved (within `wait`), and
/// in any case for the whole of `watch`.
fn keep_watching(elapsed: Duration, moved: bool, wait: Duration, watch: Duration) -> bool {
    elapsed < wait.max(watch) && !(moved && elapsed >= watch)
}

/// An open client session on the master.
#[derive(Debug, PartialEq)]
struct Session {
    user: String,
    host: String,
    command: String,
    secs: String,
    db: String,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} ({}, {} s",
            self.user, self.host, self.command, self.secs
        )?;
        if !self.db.is_empty() && self.db != "NULL" {
            write!(f, ", db {}", self.db)?;
        }
        write!(f, ")")
    }
}

/// The sessions a stop would cut: every processlist entry but the server's own threads,
/// replication to slaves (`Binlog Dump`), this session and the users told to ignore.
fn sessions_sql(ignore_users: &[String]) -> String {
    let mut users = vec![sql_str("system user"), sql_str("event_scheduler")];
    users.extend(ignore_users.iter().map(|u| sql_str(u)));
    format!(
        "SELECT 'sessions' AS cutover_section; SELECT USER, HOST, COMMAND, TIME, DB FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND NOT LIKE 'Binlog Dump%' AND COMMAND <> 'Daemon' AND USER NOT IN ({}) ORDER BY TIME DESC;",
        users.join(", ")
    )
}

fn parse_sessions(out: &str) -> Vec<Session> {
    let s = parse_sections(out);
    s.get("sessions")
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let g = |k: &str| row.get(k).cloned().unwrap_or_default();
                    Session {
                        user: g("USER"),
                        host: g("HOST"),
                        command: g("COMMAND"),
                        secs: g("TIME"),
                        db: g("DB"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn no_connections(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let wait = Duration::from_secs(args.wait.unwrap_or(120));
    let script = format!(
        "my -B -e {}\n",
        crate::shell::quote(&sessions_sql(&args.ignore_users))
    );
    let started = std::time::Instant::now();
    loop {
        let out = run_sql_script(ctx.host, ctx, &login, &script, None, None).await?;
        if !out.ok() {
            bail!(
                "cannot read the processlist on {}: {}",
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        let open = parse_sessions(&out.stdout_text());
        if open.is_empty() || started.elapsed() >= wait {
            let mut result = Map::new();
            let listed: Vec<String> = open.iter().map(Session::to_string).collect();
            result.insert("sessions".into(), json!(listed));
            result.insert("waited_s".into(), json!(started.elapsed().as_secs()));
            let problems = if open.is_empty() {
                Vec::new()
            } else {
                vec![format!(
                    "{} client session{} still open on {} after {}s: {}",
                    open.len(),
                    if open.len() == 1 { "" } else { "s" },
                    ctx.host.name,
                    wait.as_secs(),
                    listed.join("; ")
                )]
            };
            return Ok(outcome(result, problems));
        }
        tokio::time::sleep(Duration::from_secs(2).min(wait)).await;
    }
}

/// JGroups JDBC_PING discovery: once the view has settled, the ping table holds one row per
/// live instance of the cluster (JGroups manual, "Removal of zombie files":
/// http://jgroups.org/manual4/index.html#_removal_of_zombie_files). More rows are zombies of
/// members that died without deregistering (they make new members try to join ghosts); fewer
/// mean members missing. With Keycloak 26's JDBC_PING2 schema there must also be exactly one
/// coordinator row.
async fn jdbc_ping(args: &SafetyArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let db = args.database.as_deref().unwrap_or("keycloak");
    // Keycloak 26: JGROUPS_PING (JDBC_PING2 columns, with `coord`); legacy JDBC_PING: JGROUPSPING.
    let table = args.table.as_deref().unwrap_or("JGROUPS_PING");
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("`table: {table}` is not a table name");
    }
    let cluster = args
        .cluster_name
        .as_deref()
        .ok_or_else(|| anyhow!("argument `cluster_name` is missing or not a string"))?;
    let expected = match args.expected {
        Some(n) => n,
        None => args.hosts.items().len() as u64,
    };
    let sql = format!(
        "SELECT 'rows' AS cutover_section; SELECT COUNT(*) AS n FROM `{db}`.`{table}` WHERE cluster_name = {c}; \
         SELECT 'coord' AS cutover_section; SELECT COUNT(*) AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {dbs} AND TABLE_NAME = {ts} AND COLUMN_NAME = 'coord';",
        db = db.replace('`', "``"),
        c = sql_str(cluster),
        dbs = sql_str(db),
        ts = sql_str(table)
    );
    let read = |sql: String| async move {
        run_sql_script(
            ctx.host,
            ctx,
            &login,
            &format!("my -B -e {}\n", crate::shell::quote(&sql)),
            None,
            None,
        )
        .await
    };
    let out = read(sql).await?;
    if !out.ok() {
        bail!(
            "cannot read {db}.{table} on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let s = parse_sections(&out.stdout_text());
    let count = |sec: &str| -> u64 {
        s.get(sec)
            .and_then(|r| r.first())
            .and_then(|row| row.get("n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let rows = count("rows");
    let mut problems = Vec::new();
    if rows > expected {
        problems.push(format!(
            "{rows} rows in {table} for cluster {cluster} but {expected} live instances: zombies of members that died without leaving; clear them (remove_all_data_on_view_change) before starting more nodes"
        ));
    } else if rows < expected {
        problems.push(format!("{rows} rows in {table} for cluster {cluster} but {expected} live instances: members have not registered (yet)"));
    }
    let mut result = Map::new();
    result.insert("rows".into(), json!(rows));
    result.insert("expected".into(), json!(expected));
    if count("coord") > 0 {
        let coord_sql = format!(
            "SELECT 'coord' AS cutover_section; SELECT COUNT(*) AS n FROM `{db}`.`{table}` WHERE cluster_name = {c} AND coord;",
            db = db.replace('`', "``"),
            c = sql_str(cluster)
        );
        let login = Login::from_args(args, ctx)?;
        let out = run_sql_script(
            ctx.host,
            ctx,
            &login,
            &format!("my -B -e {}\n", crate::shell::quote(&coord_sql)),
            None,
            None,
        )
        .await?;
        let s = parse_sections(&out.stdout_text());
        let coords: u64 = s
            .get("coord")
            .and_then(|r| r.first())
            .and_then(|row| row.get("n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        result.insert("coordinators".into(), json!(coords));
        if coords != 1 && expected > 0 {
            problems.push(format!("{coords} coordinator rows for cluster {cluster} (want exactly 1; more suggests a split brain)"));
        }
    }
    Ok(outcome(result, problems))
}

/// The `cluster_safety` module.
pub(crate) struct ClusterSafety;

impl Module for ClusterSafety {
    type Args = SafetyArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "cluster_safety",
        args: &[
            ArgSpec {
                name: "check",
                ty: T::Str,
                required: true,
                choices: &[
                    "no_app_running",
                    "single_writer",
                    "same_version",
                    "jdbc_ping",
                    "no_connections",
                ],
            },
            arg("hosts", T::StrList),
            arg("process", T::Str),
            arg("status_url", T::Str),
            arg("version", T::Str),
            arg("database", T::Str),
            arg("wait", T::Int),
            arg("cluster_name", T::Str),
            arg("watch", T::Int),
            arg("clients", T::StrList),
            arg("ignore_users", T::StrList),
            arg("table", T::Str),
            arg("expected", T::Int),
            arg("login_user", T::Str),
            arg("login_password", T::Str),
            arg("login_password_var", T::Str),
            arg("login_host", T::Str),
            arg("login_port", T::Int),
            arg("login_unix_socket", T::Path),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &SafetyArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(probe())
    }

    async fn apply(args: &SafetyArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, ctx).await
    }

    /// The hosts a check reads: its `hosts` argument, a list or one name (even empty).
    fn peer_hosts(args: &SafetyArgs) -> Vec<String> {
        match &args.hosts {
            TextList::List(l) => l.clone(),
            TextList::One(s) => vec![s.clone()],
            TextList::Absent => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as J};

    use super::*;

    fn parse(v: J) -> Result<SafetyArgs> {
        args::parse("cluster_safety", v.as_object().unwrap())
    }

    /// `hosts` is a list or one name; an empty name is no host to check on, though the step
    /// still names it as a peer (as the map readers did).
    #[test]
    fn hosts_a_list_or_one_name() {
        let peers = |a: &SafetyArgs| ClusterSafety::peer_hosts(a);
        let a = parse(json!({"check": "same_version", "hosts": ["app1", 7, "app2"]})).unwrap();
        assert_eq!(
            (a.hosts.items(), peers(&a)),
            (
                vec!["app1".into(), "app2".into()],
                vec!["app1".into(), "app2".into()]
            )
        );
        let a = parse(json!({"check": "same_version", "hosts": "app1"})).unwrap();
        assert_eq!(a.hosts.items(), ["app1"]);
        let a = parse(json!({"check": "same_version", "hosts": ""})).unwrap();
        assert_eq!((a.hosts.items(), peers(&a)), (vec![], vec![String::new()]));
        let a = parse(json!({"check": "jdbc_ping", "clients": "10.0.0.1"})).unwrap();
        assert_eq!(a.hosts, TextList::Absent);
        assert_eq!(a.clients, ["10.0.0.1"]);
    }

    /// A rendered number that is none is refused when the arguments are parsed, before any
    /// host is read, with the map reader's message; as written (a plan's peers), a template
    /// there does not lose the hosts.
    #[test]
    fn numbers_are_checked_when_parsed() {
        let e = |v: J| parse(v).err().map(|e| e.to_string());
        assert_eq!(
            e(json!({"check": "single_writer", "wait": "30s"})).as_deref(),
            Some("`wait` must be a non-negative integer, not `30s`")
        );
        assert_eq!(
            e(json!({"check": "jdbc_ping", "expected": [2]})).as_deref(),
            Some("`expected` must be an integer, not [2]")
        );
        assert_eq!(
            e(json!({"hosts": ["app1"]})).as_deref(),
            Some("arguments of `cluster_safety`: missing field `check`")
        );
        let written = json!({"check": "jdbc_ping", "hosts": ["kc1", "kc2"], "expected": "{{ n }}"});
        assert_eq!(
            crate::modules::peer_hosts("cluster_safety", written.as_object().unwrap()),
            ["kc1", "kc2"]
        );
    }

    /// The sessions a stop would cut, read from `mysql -B` output as captured on the lab's
    /// master (MariaDB 10.11: a NULL db, an app's pooled session, the admin's console).
    #[test]
    fn open_sessions_are_read_and_named() {
        let out = "cutover_section\nsessions\nUSER\tHOST\tCOMMAND\tTIME\tDB\n\
                   wiki\t10.77.0.11:41822\tSleep\t35\twiki\nroot\tlocalhost\tQuery\t3\tNULL\n";
        let open = parse_sessions(out);
        let listed: Vec<String> = open.iter().map(Session::to_string).collect();
        assert_eq!(
            listed,
            [
                "wiki@10.77.0.11:41822 (Sleep, 35 s, db wiki)",
                "root@localhost (Query, 3 s)"
            ]
        );
        assert!(parse_sessions("cutover_section\nsessions\n").is_empty());
    }

    /// Replication, the server's threads and this session never count; users told to be
    /// ignored are quoted as SQL strings (a quote in a name cannot end the list).
    #[test]
    fn the_sessions_query_leaves_out_what_a_stop_does_not_cut() {
        let sql = sessions_sql(&["monitor".into(), "o'brien".into()]);
        assert!(sql.contains("ID <> CONNECTION_ID()"), "{sql}");
        assert!(sql.contains("COMMAND NOT LIKE 'Binlog Dump%'"), "{sql}");
        assert!(
            sql.contains("USER NOT IN ('system user', 'event_scheduler', 'monitor', 'o''brien')"),
            "{sql}"
        );
    }

    /// Without `watch` the first move ends the wait; with it every write of the whole watch is
    /// read, and a value that never moved fails at the later of the two limits.
    #[test]
    fn a_watch_reads_the_whole_interval() {
        let s = Duration::from_secs;
        assert!(keep_watching(s(3), false, s(30), s(0)));
        assert!(!keep_watching(s(3), true, s(30), s(0)));
        assert!(!keep_watching(s(30), false, s(30), s(0)));
        assert!(keep_watching(s(3), true, s(30), s(12)));
        assert!(!keep_watching(s(12), true, s(30), s(12)));
        assert!(keep_watching(s(20), false, s(5), s(25)));
        assert!(!keep_watching(s(25), false, s(5), s(25)));
    }
}
