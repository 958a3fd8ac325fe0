//! The `mysql_replication` module: replica threads, in-sync waits, read_only, setting up and
//! forgetting replication.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::client::exec_sql;
use super::facts::CANNOT_READ;
use super::{
    dialect, facts, relay_log_holds, run_sql_script, slave_reached, sql_str, Dialect, Facts,
    Flavour, Login, LoginArgs, LoginSource, MasterPos, ReplicaStatus,
};
use crate::modules::contract::Module;
use crate::modules::spec::{arg, choice, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::{Effect, ReplicationState, Val};
use crate::shell::quote;
use crate::transport::HostConn;

/// The arguments of a `mysql_replication` step (its `SPEC.args`, and the undo's `io`, `sql`
/// with `state: restore`).
#[derive(Deserialize)]
pub(crate) struct ReplArgs {
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    threads: Option<String>,
    /// `Some` when the step gives `read_only` at all (then it may change something, whatever
    /// it renders to); inside, the value.
    #[serde(default, deserialize_with = "given_flag")]
    read_only: Option<Option<bool>>,
    #[serde(default, deserialize_with = "args::text")]
    master: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    wait_timeout: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    source_host: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    source_port: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    source_user: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    source_password: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    use_gtid: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    connect_retry: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    service: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    config_file: Option<String>,
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
    /// Only in the way back (`state: restore`): the IO thread's state to put back.
    #[serde(default, deserialize_with = "args::flag")]
    io: Option<bool>,
    /// Only in the way back (`state: restore`): the SQL thread's state to put back.
    #[serde(default, deserialize_with = "args::flag")]
    sql: Option<bool>,
    /// The step's map as it was given: the way back carries its `wait_timeout` as it was.
    #[serde(skip)]
    written: Map<String, J>,
}

fn given_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<bool>>, D::Error> {
    args::flag(d).map(Some)
}

impl ReplArgs {
    fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The read_only wanted, if the step says.
    fn read_only(&self) -> Option<bool> {
        self.read_only.flatten()
    }

    /// The source asked for (`state: configured`): host, port, user.
    fn source(&self) -> Result<(&str, u64, &str)> {
        let missing = |k: &str| anyhow!("argument `{k}` is missing or not a string");
        let host = self
            .source_host
            .as_deref()
            .ok_or_else(|| missing("source_host"))?;
        let port = self.source_port.unwrap_or(3306);
        let user = self
            .source_user
            .as_deref()
            .ok_or_else(|| missing("source_user"))?;
        Ok((host, port, user))
    }
}

impl LoginSource for ReplArgs {
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

/// What a `mysql_replication` change leaves for a plan's later steps.
fn replication_after(args: &ReplArgs) -> Vec<crate::overlay::Effect> {
    use crate::overlay::{Effect, ReplicationState, Val};
    let set = |b: Option<bool>| b.map_or(Val::Host, Val::Set);
    let (io, sql) = match args.state() {
        Some("started" | "stopped" | "restore") => match thread_targets(args) {
            Ok((io, sql)) => (set(io), set(sql)),
            Err(_) => (Val::Unknown, Val::Unknown),
        },
        Some("configured" | "detached") => (Val::Unknown, Val::Unknown),
        _ => (Val::Host, Val::Host),
    };
    vec![Effect::Replication(ReplicationState {
        io_running: io,
        sql_running: sql,
        read_only: set(args.read_only()),
        reconfigured: matches!(args.state(), Some("configured" | "detached")),
    })]
}

fn threads_arg(args: &ReplArgs) -> Result<&str> {
    match args.threads.as_deref().unwrap_or("all") {
        t @ ("all" | "io" | "sql") => Ok(t),
        other => bail!("threads must be all, io or sql, not `{other}`"),
    }
}

fn master_of<'a>(ctx: &'a ModCtx<'_>, name: &str) -> Result<&'a HostConn> {
    if name == ctx.host.name {
        bail!("mysql_replication: `master` is this very host ({name})");
    }
    ctx.peers.get(name).map(|c| &**c).ok_or_else(|| {
        anyhow!("mysql_replication: no connection to master {name} (is it in the inventory and reachable?)")
    })
}

fn master_pos(m: &Facts, use_gtid: bool) -> MasterPos {
    MasterPos {
        gtid: if use_gtid {
            m.gtid_binlog_pos.clone()
        } else {
            None
        },
        file: m.binlog_file.clone(),
        pos: m.binlog_pos,
    }
}

fn subset_check(master: &Facts) -> String {
    match (&master.flavour, &master.gtid_binlog_pos) {
        (Flavour::Mysql, Some(g)) => format!(
            "SELECT 'check_subset' AS cutover_section; SELECT GTID_SUBSET({}, @@global.gtid_executed) AS s;",
            sql_str(g)
        ),
        _ => String::new(),
    }
}

pub(crate) async fn probe_replication(args: &ReplArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    match probe_replication_inner(args, ctx).await {
        // A server that is not installed or not running yet: an earlier step may start it.
        Err(e) if format!("{e:#}").contains(CANNOT_READ) => Ok(Probe::unknown(
            format!("{e:#}"),
            json!({ "running": false }),
        )),
        Ok(p) if matches!(p.decision, Decision::Change { .. }) => {
            Ok(p.with_after(replication_after(args)))
        }
        other => other,
    }
}

/// `state: configured`: the change of source, if the replica's differs from the one asked for.
fn configured_change(
    args: &ReplArgs,
    host: &str,
    r: Option<&ReplicaStatus>,
) -> Result<Option<String>> {
    let (want_host, want_port, want_user) = args.source()?;
    Ok(match r {
        Some(r)
            if r.source_host == want_host
                && r.source_port == want_port
                && r.source_user == want_user =>
        {
            None
        }
        Some(r) => Some(format!(
            "{host}: replicate from {want_user}@{want_host}:{want_port} (now {}@{}:{})",
            r.source_user, r.source_host, r.source_port
        )),
        None => Some(format!(
            "{host}: set up replication from {want_user}@{want_host}:{want_port} and start it"
        )),
    })
}

async fn probe_replication_inner(args: &ReplArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let login = Login::from_args(args, ctx)?;
    let state = args.state();
    let want_ro = args.read_only();
    let host = &ctx.host.name;
    let (f, master) = if state == Some("synced") {
        let mname = args
            .master
            .as_deref()
            .ok_or_else(|| anyhow!("state: synced needs `master` (the master's inventory name)"))?;
        let mconn = master_of(ctx, mname)?;
        let m = facts(mconn, ctx, &login, "").await?;
        let f = facts(ctx.host, ctx, &login, &subset_check(&m)).await?;
        (f, Some((mname.to_string(), m)))
    } else if state == Some("detached") {
        match facts(ctx.host, ctx, &login, "").await {
            Ok(f) => (f, None),
            Err(e) => {
                let saw = json!({ "running": false, "error": e.to_string() });
                return Ok(Probe::change(
                    format!("{host}: start the database server with replication off (skip-slave-start), then forget any replication settings (RESET SLAVE ALL)"),
                    None,
                    saw,
                ));
            }
        }
    } else {
        (facts(ctx.host, ctx, &login, "").await?, None)
    };
    let mut saw = json!({ "facts": f, "running": true });
    let mut changes = Vec::new();
    let r = f.replica.as_ref();
    match state {
        None => {}
        Some("stopped") | Some("started") | Some("restore") => {
            let Some(r) = r else {
                return Ok(Probe::unknown(
                    format!(
                        "replication is not configured on {host} (an earlier step may set it up)"
                    ),
                    saw,
                ));
            };
            let (io, sql) = thread_targets(args)?;
            if io.is_some_and(|w| w != r.io()) || sql.is_some_and(|w| w != r.sql()) {
                changes.push(format!(
                    "{host}: replication {} → {}",
                    r.describe(),
                    describe_targets(io, sql)
                ));
            }
        }
        Some("synced") => {
            let (mname, m) = master.as_ref().expect("master read above");
            let Some(r) = r else {
                return Ok(Probe::unknown(
                    format!("{host} does not replicate (no replication configured)"),
                    saw,
                ));
            };
            let mp = master_pos(m, r.gtid());
            saw["master"] = serde_json::to_value(&mp)?;
            match slave_reached(&f, &mp) {
                Some(true) => {}
                Some(false) | None if !r.sql() => {
                    return Ok(Probe::unknown(
                        format!("{host} is behind {mname} ({}) and its replication is not running ({}): it cannot catch up unless an earlier step starts it", mp.describe(), r.describe()),
                        saw,
                    ));
                }
                _ => changes.push(format!(
                    "{host}: wait until it has executed {mname}'s {} (now at {})",
                    mp.describe(),
                    if r.gtid() {
                        f.gtid_slave_pos.clone().unwrap_or_default()
                    } else {
                        format!("{}:{}", r.relay_source_log_file, r.exec_source_log_pos)
                    }
                )),
            }
        }
        Some("configured") => changes.extend(configured_change(args, host, r)?),
        Some("detached") => changes.extend(r.map(|r| {
            format!(
                "{host}: stop replication from {} ({}) and forget it (RESET SLAVE ALL)",
                r.source_host,
                r.describe()
            )
        })),
        Some(other) => bail!("unknown mysql_replication state `{other}`"),
    }
    let ro_change = want_ro.filter(|ro| *ro != f.read_only);
    changes.extend(ro_change.map(|ro| format!("{host}: read_only {} → {ro}", f.read_only)));
    saw["running"] = json!(true);
    Ok(if changes.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(changes.join("; "), None, saw)
    })
}

/// What each thread should be: `state` + `threads`, or (undo) `state: restore` + `io`/`sql`.
fn thread_targets(args: &ReplArgs) -> Result<(Option<bool>, Option<bool>)> {
    match args.state() {
        Some("restore") => Ok((args.io, args.sql)),
        Some(s @ ("started" | "stopped")) => {
            let want = s == "started";
            Ok(match threads_arg(args)? {
                "io" => (Some(want), None),
                "sql" => (None, Some(want)),
                _ => (Some(want), Some(want)),
            })
        }
        other => bail!("no replica thread state for {other:?}"),
    }
}

fn describe_targets(io: Option<bool>, sql: Option<bool>) -> String {
    let w = |b: bool| if b { "running" } else { "stopped" };
    match (io, sql) {
        (Some(a), Some(b)) if a == b => format!("IO and SQL threads {}", w(a)),
        (Some(a), Some(b)) => format!("IO thread {}, SQL thread {}", w(a), w(b)),
        (Some(a), None) => format!("IO thread {}", w(a)),
        (None, Some(b)) => format!("SQL thread {}", w(b)),
        (None, None) => "unchanged".into(),
    }
}

/// The statements that bring the threads from `r` to the targets ("" when nothing to do).
fn thread_statements(
    d: &Dialect,
    r: &ReplicaStatus,
    io: Option<bool>,
    sql: Option<bool>,
) -> String {
    let io_do = io.filter(|w| *w != r.io());
    let sql_do = sql.filter(|w| *w != r.sql());
    let verb = |w: bool| if w { d.start } else { d.stop };
    match (io_do, sql_do) {
        (None, None) => String::new(),
        (Some(a), Some(b)) if a == b => format!("{};", verb(a)),
        (a, b) => {
            let mut s = String::new();
            // Stop before start, so a restore never runs both threads needlessly.
            for (w, t) in [(a, " IO_THREAD"), (b, " SQL_THREAD")] {
                if w == Some(false) {
                    s.push_str(&format!("{}{t};", verb(false)));
                }
            }
            for (w, t) in [(a, " IO_THREAD"), (b, " SQL_THREAD")] {
                if w == Some(true) {
                    s.push_str(&format!("{}{t};", verb(true)));
                }
            }
            s
        }
    }
}

async fn poll_threads(
    ctx: &ModCtx<'_>,
    login: &Login,
    io: Option<bool>,
    sql: Option<bool>,
    limit: Duration,
) -> Result<Facts> {
    let started = Instant::now();
    loop {
        let f = facts(ctx.host, ctx, login, "").await?;
        let Some(r) = &f.replica else {
            bail!("replication is not configured on {}", ctx.host.name);
        };
        // A starting IO thread shows "Connecting" until it reached the master: wait for "Yes"
        // (a timeout reports the last IO error, e.g. a master that cannot be reached).
        let io_ok = match io {
            None => true,
            Some(true) => r.io_running == "Yes",
            Some(false) => !r.io(),
        };
        let sql_ok = sql.is_none_or(|w| r.sql() == w);
        if io_ok && sql_ok {
            return Ok(f);
        }
        if sql == Some(true) && !r.sql() && r.last_sql_errno != 0 {
            bail!(
                "replication on {} does not start: {}",
                ctx.host.name,
                r.describe()
            );
        }
        if started.elapsed() >= limit {
            bail!(
                "replication on {} did not reach {} within {}s: {}",
                ctx.host.name,
                describe_targets(io, sql),
                limit.as_secs(),
                r.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn undo_step(args: &ReplArgs, login: &Login, extra: &[(&str, J)], what: String) -> UndoAction {
    let mut a = login.undo_args();
    for (k, v) in extra {
        a.insert((*k).into(), v.clone());
    }
    if let Some(t) = args.written.get("wait_timeout") {
        a.insert("wait_timeout".into(), t.clone());
    }
    UndoAction::Rerun {
        module: MysqlReplication::SPEC.name.into(),
        args: a,
        what,
    }
}

/// The way back of a thread or read_only change, from the probe (the same as the one `apply`
/// records; known before the change, so it is journaled with the intent). Restoring thread
/// states and read_only is safe whether or not the change happened.
pub(crate) fn pending_undo_replication(
    args: &ReplArgs,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Option<UndoAction> {
    if probe.decision == Decision::NoChange {
        return None;
    }
    let login = Login::from_args(args, ctx).ok()?;
    let host = &ctx.host.name;
    let facts = &probe.state["facts"];
    let mut undo = None;
    if matches!(
        args.state(),
        Some("started") | Some("stopped") | Some("restore")
    ) {
        let r = facts.get("replica").filter(|r| r.is_object())?;
        let io = matches!(r["io_running"].as_str(), Some("Yes" | "Connecting"));
        let sql = r["sql_running"].as_str() == Some("Yes");
        undo = Some(undo_step(
            args,
            &login,
            &[
                ("state", json!("restore")),
                ("io", json!(io)),
                ("sql", json!(sql)),
            ],
            format!(
                "replication on {host} back to {}",
                describe_targets(Some(io), Some(sql))
            ),
        ));
    }
    if let (Some(want), Some(was)) = (args.read_only(), facts["read_only"].as_bool()) {
        if want != was {
            undo = Some(match undo {
                Some(UndoAction::Rerun {
                    module,
                    mut args,
                    what,
                }) => {
                    args.insert("read_only".into(), json!(was));
                    UndoAction::Rerun {
                        module,
                        args,
                        what: format!("{what}; read_only back to {was}"),
                    }
                }
                _ => undo_step(
                    args,
                    &login,
                    &[("read_only", json!(was))],
                    format!("read_only on {host} back to {was}"),
                ),
            });
        }
    }
    undo
}

pub(crate) async fn apply_replication(
    args: &ReplArgs,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let state = args.state();
    let limit = Duration::from_secs(args.wait_timeout.unwrap_or(300));
    let mut out = Outcome::default();
    if probe.decision == Decision::NoChange && state != Some("synced") {
        out.result
            .insert("facts".into(), probe.state["facts"].clone());
        return Ok(out);
    }
    // The probe may be old (a plan, a retry): decide again on fresh facts where it matters.
    // (Only `detached` may find the server down: it starts it.)
    let before: Option<Facts> =
        if state == Some("detached") && probe.state["running"] != json!(true) {
            None
        } else {
            Some(facts(ctx.host, ctx, &login, "").await?)
        };
    let running = || {
        before
            .as_ref()
            .ok_or_else(|| anyhow!("the database server on {} is not running", ctx.host.name))
    };
    let run = Run {
        args,
        ctx,
        login: &login,
        limit,
    };
    match state {
        Some("stopped") | Some("started") | Some("restore") => {
            run.threads(running()?, &mut out).await?
        }
        Some("synced") => run.synced(&mut out).await?,
        Some("configured") => run.configured(running()?, &mut out).await?,
        Some("detached") => run.detached(before.as_ref(), &mut out).await?,
        None => {}
        Some(other) => bail!("unknown mysql_replication state `{other}`"),
    }
    if let Some(ro) = args.read_only() {
        run.read_only(ro, &mut out).await?;
    }
    Ok(out)
}

/// What every part of a `mysql_replication` apply works with.
struct Run<'a, 'c> {
    args: &'a ReplArgs,
    ctx: &'a ModCtx<'c>,
    login: &'a Login,
    limit: Duration,
}

impl Run<'_, '_> {
    /// Record the facts read after a change, or why the change did not take.
    fn record(&self, out: &mut Outcome, now: Result<Facts>) -> Result<()> {
        match now {
            Ok(now) => {
                out.result
                    .insert("facts".into(), serde_json::to_value(&now)?);
            }
            Err(e) => out.failed = Some(e.to_string()),
        }
        Ok(())
    }

    /// `stopped`, `started`, `restore`: the replica threads as asked.
    async fn threads(&self, f: &Facts, out: &mut Outcome) -> Result<()> {
        let host = &self.ctx.host.name;
        let d = dialect(f.flavour, &f.version);
        let r = f
            .replica
            .as_ref()
            .ok_or_else(|| anyhow!("replication is not configured on {host}"))?;
        let (io, sql) = thread_targets(self.args)?;
        let sql_text = thread_statements(&d, r, io, sql);
        if sql_text.is_empty() {
            return Ok(());
        }
        exec_sql(self.ctx, self.login, &sql_text).await?;
        out.changed = true;
        let now = poll_threads(self.ctx, self.login, io, sql, self.limit).await;
        self.record(out, now)?;
        out.undo = Some(undo_step(
            self.args,
            self.login,
            &[
                ("state", json!("restore")),
                ("io", json!(r.io())),
                ("sql", json!(r.sql())),
            ],
            format!(
                "replication on {host} back to {}",
                describe_targets(Some(r.io()), Some(r.sql()))
            ),
        ));
        Ok(())
    }

    /// `synced`: wait until the replica has executed the master's current point.
    async fn synced(&self, out: &mut Outcome) -> Result<()> {
        let (ctx, login) = (self.ctx, self.login);
        let host = &ctx.host.name;
        let mname = self
            .args
            .master
            .as_deref()
            .ok_or_else(|| anyhow!("argument `master` is missing or not a string"))?;
        let mconn = master_of(ctx, mname)?;
        let m = facts(mconn, ctx, login, "").await?;
        let f = facts(ctx.host, ctx, login, &subset_check(&m)).await?;
        let r = f
            .replica
            .clone()
            .ok_or_else(|| anyhow!("{host} does not replicate: no replication is configured"))?;
        let mp = master_pos(&m, r.gtid());
        out.result
            .insert("master".into(), serde_json::to_value(&mp)?);
        let waited = wait_synced(ctx, login, &f, &mp, mname, self.limit).await;
        self.record(out, waited)
    }

    /// `configured`: replicate from the source asked for, and start.
    async fn configured(&self, f: &Facts, out: &mut Outcome) -> Result<()> {
        let sql = change_source_sql(self.args, f)?;
        exec_sql(self.ctx, self.login, &sql).await?;
        out.changed = true;
        let now = poll_threads(self.ctx, self.login, Some(true), Some(true), self.limit).await;
        self.record(out, now)?;
        if f.replica.is_none() {
            out.undo = Some(undo_step(
                self.args,
                self.login,
                &[("state", json!("detached"))],
                format!(
                    "forget the replication set up on {} (RESET SLAVE ALL)",
                    self.ctx.host.name
                ),
            ));
        }
        Ok(())
    }

    /// `detached`: a server that never starts replicating by itself, its replication forgotten.
    async fn detached(&self, before: Option<&Facts>, out: &mut Outcome) -> Result<()> {
        let (ctx, login) = (self.ctx, self.login);
        let host = &ctx.host.name;
        let body = detach_script(self.args, before);
        let run = run_sql_script(ctx.host, ctx, login, &body, None, None).await?;
        if !run.ok() {
            bail!(
                "detaching the database server on {host} failed: {}",
                run.stderr_text().trim()
            );
        }
        out.changed = true;
        let now = facts(ctx.host, ctx, login, "").await?;
        if now.replica.is_some() {
            out.failed = Some(format!(
                "{host} still has replication configured after RESET SLAVE ALL"
            ));
        }
        out.result
            .insert("facts".into(), serde_json::to_value(&now)?);
        Ok(())
    }

    /// `read_only`: set it if it differs; its way back joins the state's.
    async fn read_only(&self, ro: bool, out: &mut Outcome) -> Result<()> {
        let (ctx, login) = (self.ctx, self.login);
        let host = &ctx.host.name;
        let f = facts(ctx.host, ctx, login, "").await?;
        if f.read_only == ro {
            return Ok(());
        }
        let set = format!("SET GLOBAL read_only = {};", if ro { "ON" } else { "OFF" });
        exec_sql(ctx, login, &set).await?;
        let now = facts(ctx.host, ctx, login, "").await?;
        if now.read_only != ro {
            out.failed = Some(format!("read_only on {host} is still {}", now.read_only));
        }
        out.changed = true;
        out.result
            .insert("facts".into(), serde_json::to_value(&now)?);
        let ro_undo = undo_step(
            self.args,
            login,
            &[("read_only", json!(f.read_only))],
            format!("read_only on {host} back to {}", f.read_only),
        );
        // Both changed in one step: the state undo first is not expressible in one action;
        // read_only is the one that matters to writers, so it wins.
        out.undo = Some(match out.undo.take() {
            None => ro_undo,
            Some(UndoAction::Rerun {
                module,
                mut args,
                what,
            }) => {
                args.insert("read_only".into(), json!(f.read_only));
                UndoAction::Rerun {
                    module,
                    args,
                    what: format!("{what}; read_only back to {}", f.read_only),
                }
            }
            Some(other) => other,
        });
        Ok(())
    }
}

/// The statements that make a replica replicate from `source_*` (MySQL 8.0.23+ spells them
/// SOURCE_*, older MySQL and MariaDB MASTER_*), with GTID positioning as `use_gtid` asks.
fn change_source_sql(args: &ReplArgs, f: &Facts) -> Result<String> {
    let d = dialect(f.flavour, &f.version);
    let (sh, sp, su) = args.source()?;
    let pw = args.source_password.as_deref().unwrap_or("");
    let retry = args.connect_retry.unwrap_or(10);
    let mysql8 = d.change.starts_with("CHANGE REPLICATION");
    let (k_host, k_port, k_user, k_pw, k_retry) = if mysql8 {
        (
            "SOURCE_HOST",
            "SOURCE_PORT",
            "SOURCE_USER",
            "SOURCE_PASSWORD",
            "SOURCE_CONNECT_RETRY",
        )
    } else {
        (
            "MASTER_HOST",
            "MASTER_PORT",
            "MASTER_USER",
            "MASTER_PASSWORD",
            "MASTER_CONNECT_RETRY",
        )
    };
    let gtid = match (f.flavour, args.use_gtid.as_deref().unwrap_or("slave_pos")) {
        (Flavour::Mariadb, "no") => ", MASTER_USE_GTID = no".to_string(),
        (Flavour::Mariadb, g @ ("slave_pos" | "current_pos")) => {
            format!(", MASTER_USE_GTID = {g}")
        }
        (Flavour::Mysql, "no") => String::new(),
        (Flavour::Mysql, _) if mysql8 => ", SOURCE_AUTO_POSITION = 1".into(),
        (Flavour::Mysql, _) => ", MASTER_AUTO_POSITION = 1".into(),
        (_, other) => bail!("use_gtid must be slave_pos, current_pos or no, not `{other}`"),
    };
    Ok(format!(
        "{stop};\n{change} {k_host} = {h}, {k_port} = {sp}, {k_user} = {u}, {k_pw} = {p}, {k_retry} = {retry}{gtid};\n{start};",
        stop = d.stop,
        change = d.change,
        start = d.start,
        h = sql_str(sh),
        u = sql_str(su),
        p = sql_str(pw),
    ))
}

/// The script that detaches a server: an option file so that it never starts replicating by
/// itself, the server started, replication stopped and forgotten. `before`: the server's facts
/// if it was running (its flavour and version pick the statements).
fn detach_script(args: &ReplArgs, before: Option<&Facts>) -> String {
    let flavour_hint = before.map(|f| (f.flavour, f.version.clone()));
    let service = args.service.as_deref().unwrap_or("mariadb");
    let conf = args
        .config_file
        .as_deref()
        .unwrap_or("/etc/mysql/mariadb.conf.d/99-cutover-detached.cnf");
    let opt = match &flavour_hint {
        Some((fl, v)) => dialect(*fl, v).skip_start_option,
        None => "skip-slave-start",
    };
    let (stop, reset) = match &flavour_hint {
        Some((fl, v)) => {
            let d = dialect(*fl, v);
            (d.stop, d.reset_all)
        }
        None => ("STOP SLAVE", "RESET SLAVE ALL"),
    };
    format!(
        r#"set -e
c={c}
if [ ! -f "$c" ]; then
  mkdir -p -- "$(dirname -- "$c")"
  printf '# Written by cutover: this server never starts replication by itself.\n[mysqld]\n%s\n' {opt} > "$c.tmp.$$"
  chmod 0644 "$c.tmp.$$"; mv -f -- "$c.tmp.$$" "$c"
fi
systemctl start -- {svc}
i=0; until my -N -B -e 'SELECT 1' >/dev/null 2>&1; do i=$((i+1)); [ "$i" -lt 60 ] || {{ echo "the database server does not answer after start" >&2; exit 1; }}; sleep 1; done
my --batch -e {sql}
"#,
        c = quote(conf),
        opt = quote(opt),
        svc = quote(service),
        sql = quote(&format!("{stop}; {reset};")),
    )
}

/// Block until the slave has executed the master's point, in slices of a few seconds, checking
/// between slices that the replica still runs.
async fn wait_synced(
    ctx: &ModCtx<'_>,
    login: &Login,
    first: &Facts,
    mp: &MasterPos,
    mname: &str,
    limit: Duration,
) -> Result<Facts> {
    let host = &ctx.host.name;
    let started = Instant::now();
    let mut f = first.clone();
    loop {
        let r = f
            .replica
            .clone()
            .ok_or_else(|| anyhow!("{host} no longer replicates"))?;
        if slave_reached(&f, mp) == Some(true) {
            return Ok(f);
        }
        if !r.sql() || (!r.io() && r.last_io_errno != 0) {
            bail!(
                "{host} is behind {mname} ({}) and replication is not running ({}): it cannot catch up; start it first",
                mp.describe(),
                r.describe()
            );
        }
        if !r.io() && relay_log_holds(&f, mp) == Some(false) {
            bail!(
                "{host} is behind {mname} ({}) and its IO thread is stopped ({}): what it has not received yet will never arrive; start replication first",
                mp.describe(),
                r.describe()
            );
        }
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            bail!(
                "{host} did not reach {mname}'s {} within {}s ({})",
                mp.describe(),
                limit.as_secs(),
                r.describe()
            );
        }
        let slice = left.as_secs().clamp(1, 5);
        let d = dialect(f.flavour, &f.version);
        let wait = match (&mp.gtid, f.flavour, r.gtid()) {
            (Some(g), Flavour::Mariadb, true) => {
                format!("SELECT MASTER_GTID_WAIT({}, {slice})", sql_str(g))
            }
            (Some(g), Flavour::Mysql, true) => {
                format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {slice})", sql_str(g))
            }
            _ => match (&mp.file, mp.pos) {
                (Some(file), Some(pos)) => {
                    format!("SELECT {}({}, {pos}, {slice})", d.pos_wait, sql_str(file))
                }
                _ => bail!("cannot read {mname}'s binary log position (is log_bin on?)"),
            },
        };
        let out = run_sql_script(
            ctx.host,
            ctx,
            login,
            &format!("my -N -B -e {}\n", quote(&wait)),
            None,
            Some(Duration::from_secs(slice + 30)),
        )
        .await?;
        if !out.ok() {
            bail!("waiting on {host} failed: {}", out.stderr_text().trim());
        }
        let extra = match (&mp.gtid, f.flavour) {
            (Some(g), Flavour::Mysql) => format!(
                "SELECT 'check_subset' AS cutover_section; SELECT GTID_SUBSET({}, @@global.gtid_executed) AS s;",
                sql_str(g)
            ),
            _ => String::new(),
        };
        f = facts(ctx.host, ctx, login, &extra).await?;
    }
}

/// What `mysql_replication` may change: the replica's threads and read-only flag, and its
/// source when it (re)configures or detaches.
fn replication_touched(args: &ReplArgs) -> Effect {
    Effect::Replication(ReplicationState {
        io_running: Val::Unknown,
        sql_running: Val::Unknown,
        read_only: Val::Unknown,
        reconfigured: matches!(args.state(), Some("configured" | "detached")),
    })
}

/// The `mysql_replication` module.
pub(crate) struct MysqlReplication;

impl Module for MysqlReplication {
    type Args = ReplArgs;

    const UNDO_ONLY: &'static [&'static str] = &["io", "sql"];

    const SPEC: ModuleSpec = ModuleSpec {
        name: "mysql_replication",
        args: &[
            choice(
                "state",
                &["started", "stopped", "synced", "configured", "detached"],
            ),
            choice("threads", &["all", "io", "sql"]),
            arg("read_only", T::Bool),
            arg("master", T::Str),
            arg("wait_timeout", T::Int),
            arg("source_host", T::Str),
            arg("source_port", T::Int),
            arg("source_user", T::Str),
            arg("source_password", T::Str),
            choice("use_gtid", &["slave_pos", "current_pos", "no"]),
            arg("connect_retry", T::Int),
            arg("service", T::Str),
            arg("config_file", T::Path),
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
        reversibility: Reversibility::Reversible,
    };

    fn parse_args(map: &Map<String, J>) -> Result<ReplArgs> {
        let mut a: ReplArgs = args::parse(Self::SPEC.name, map)?;
        a.written = map.clone();
        Ok(a)
    }

    async fn probe(args: &ReplArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_replication(args, ctx).await
    }

    async fn apply(args: &ReplArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_replication(args, probe, ctx).await
    }

    fn pending_undo(args: &ReplArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_undo_replication(args, probe, ctx)
    }

    fn changes_nothing(args: &ReplArgs) -> bool {
        args.state() == Some("synced") && args.read_only.is_none()
    }

    fn peer_hosts(args: &ReplArgs) -> Vec<String> {
        args.master.iter().cloned().collect()
    }

    fn touches(args: &ReplArgs) -> Vec<Effect> {
        vec![replication_touched(args)]
    }
}

#[cfg(test)]
#[path = "replication_tests.rs"]
mod tests;
