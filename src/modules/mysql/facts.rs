//! A server's facts (flavour, version, replica status, binary log position, read_only) from
//! one round trip, the statements of each flavour and version, and the `mysql_facts` module.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use serde_json::{Map, Value as J};

use super::output::col;
use super::{parse_sections, run_sql_script, Login, LoginArgs, Row};
use crate::modules::contract::Module;
use crate::modules::spec::{arg, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{Decision, ModCtx, Outcome, Probe};
use crate::overlay::Planned;
use crate::shell::quote;
use crate::transport::HostConn;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Mariadb,
    Mysql,
}

/// One replica's status, whatever the server called its columns.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReplicaStatus {
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: String,
    pub source_host: String,
    pub source_port: u64,
    pub source_user: String,
    pub source_log_file: String,
    pub read_source_log_pos: u64,
    pub relay_source_log_file: String,
    pub exec_source_log_pos: u64,
    /// Informational only: never the "in sync" test.
    pub seconds_behind: Option<u64>,
    pub last_io_errno: i64,
    pub last_io_error: String,
    pub last_sql_errno: i64,
    pub last_sql_error: String,
    /// MariaDB `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`); MySQL `Auto_Position` (0/1).
    pub using_gtid: String,
    pub gtid_io_pos: String,
    pub sql_state: String,
}

impl ReplicaStatus {
    pub fn from_row(r: &Row) -> ReplicaStatus {
        let s = |names: &[&str]| col(r, names).unwrap_or("").to_string();
        let n = |names: &[&str]| col(r, names).and_then(|v| v.trim().parse().ok());
        ReplicaStatus {
            io_running: s(&["Slave_IO_Running", "Replica_IO_Running"]),
            sql_running: s(&["Slave_SQL_Running", "Replica_SQL_Running"]),
            source_host: s(&["Master_Host", "Source_Host"]),
            source_port: n(&["Master_Port", "Source_Port"]).unwrap_or(0),
            source_user: s(&["Master_User", "Source_User"]),
            source_log_file: s(&["Master_Log_File", "Source_Log_File"]),
            read_source_log_pos: n(&["Read_Master_Log_Pos", "Read_Source_Log_Pos"]).unwrap_or(0),
            relay_source_log_file: s(&["Relay_Master_Log_File", "Relay_Source_Log_File"]),
            exec_source_log_pos: n(&["Exec_Master_Log_Pos", "Exec_Source_Log_Pos"]).unwrap_or(0),
            seconds_behind: n(&["Seconds_Behind_Master", "Seconds_Behind_Source"]),
            last_io_errno: n(&["Last_IO_Errno"]).unwrap_or(0) as i64,
            last_io_error: s(&["Last_IO_Error"]),
            last_sql_errno: n(&["Last_SQL_Errno", "Last_Errno"]).unwrap_or(0) as i64,
            last_sql_error: s(&["Last_SQL_Error", "Last_Error"]),
            using_gtid: s(&["Using_Gtid", "Auto_Position"]),
            gtid_io_pos: s(&["Gtid_IO_Pos", "Retrieved_Gtid_Set"]),
            sql_state: s(&["Slave_SQL_Running_State", "Replica_SQL_Running_State"]),
        }
    }
    pub fn io(&self) -> bool {
        self.io_running == "Yes" || self.io_running == "Connecting"
    }
    pub fn sql(&self) -> bool {
        self.sql_running == "Yes"
    }
    pub fn gtid(&self) -> bool {
        !matches!(self.using_gtid.as_str(), "" | "No" | "0")
    }
    /// A one-line health summary, with the errors if any.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "IO thread {}, SQL thread {}",
            or_dash(&self.io_running),
            or_dash(&self.sql_running)
        );
        if self.last_io_errno != 0 {
            s.push_str(&format!(
                "; last IO error {}: {}",
                self.last_io_errno, self.last_io_error
            ));
        }
        if self.last_sql_errno != 0 {
            s.push_str(&format!(
                "; last SQL error {}: {}",
                self.last_sql_errno, self.last_sql_error
            ));
        }
        s
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// What `mysql_facts` reports about a server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Facts {
    pub flavour: Flavour,
    pub version: String,
    /// `slave` (replication configured), `master` (binary log on, not a slave), `standalone`.
    pub role: String,
    pub read_only: bool,
    pub server_id: u64,
    pub log_bin: bool,
    pub replica: Option<ReplicaStatus>,
    /// `SHOW MASTER STATUS` File / Position.
    pub binlog_file: Option<String>,
    pub binlog_pos: Option<u64>,
    /// MariaDB `@@gtid_binlog_pos` / MySQL `@@gtid_executed`.
    pub gtid_binlog_pos: Option<String>,
    /// MariaDB `@@gtid_slave_pos` (MySQL: = gtid_executed).
    pub gtid_slave_pos: Option<String>,
    /// Connected replicas (Binlog Dump threads).
    pub replicas: u64,
    /// Extra checks requested by the caller (`check_*` sections).
    pub checks: BTreeMap<String, String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1") | Some("ON") | Some("on") | Some("Yes"))
}

pub fn facts_from_sections(s: &BTreeMap<String, Vec<Row>>) -> Result<Facts> {
    let vars = s
        .get("vars")
        .and_then(|r| r.first())
        .ok_or_else(|| anyhow!("the server answered without its variables"))?;
    let version = col(vars, &["version"]).unwrap_or("").to_string();
    let flavour = if version.contains("MariaDB") {
        Flavour::Mariadb
    } else {
        Flavour::Mysql
    };
    let replica = s
        .get("replica")
        .and_then(|r| r.first())
        .map(ReplicaStatus::from_row)
        .filter(|r| !r.source_host.is_empty());
    let binlog = s.get("binlog").and_then(|r| r.first());
    let gtid = s.get("gtid").and_then(|r| r.first());
    let log_bin = truthy(col(vars, &["log_bin"]));
    let (gtid_binlog_pos, gtid_slave_pos) = match (flavour, gtid) {
        (Flavour::Mariadb, Some(g)) => (
            col(g, &["gtid_binlog_pos"]).map(str::to_string),
            col(g, &["gtid_slave_pos"]).map(str::to_string),
        ),
        (Flavour::Mysql, Some(g)) => {
            let e = col(g, &["gtid_executed"]).map(|v| v.replace('\n', ""));
            (e.clone(), e)
        }
        _ => (None, None),
    };
    let role = if replica.is_some() {
        "slave"
    } else if log_bin {
        "master"
    } else {
        "standalone"
    };
    let checks = s
        .iter()
        .filter(|(k, _)| k.starts_with("check_"))
        .filter_map(|(k, rows)| {
            let v = rows.first()?.values().next()?.clone();
            Some((k.trim_start_matches("check_").to_string(), v))
        })
        .collect();
    Ok(Facts {
        flavour,
        role: role.into(),
        read_only: truthy(col(vars, &["read_only"])),
        server_id: col(vars, &["server_id"])
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        log_bin,
        replica,
        binlog_file: binlog.and_then(|b| col(b, &["File"])).map(str::to_string),
        binlog_pos: binlog
            .and_then(|b| col(b, &["Position"]))
            .and_then(|v| v.parse().ok()),
        gtid_binlog_pos: gtid_binlog_pos.filter(|g| !g.is_empty()),
        gtid_slave_pos: gtid_slave_pos.filter(|g| !g.is_empty()),
        replicas: s
            .get("dumps")
            .and_then(|r| r.first())
            .and_then(|r| col(r, &["replicas"]))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        checks,
        version,
    })
}

/// (major, minor, patch) of a version string.
fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The statements of a flavour and version. MySQL added the REPLICA / SOURCE / BINARY LOG forms
/// in 8.0.22–8.2 and removed the SLAVE / MASTER ones in 8.4.0
/// (https://dev.mysql.com/doc/relnotes/mysql/8.4/en/news-8-4-0.html); MariaDB keeps them, with
/// REPLICA aliases from 10.5.1 (https://mariadb.com/kb/en/show-replica-status/).
#[derive(Debug, PartialEq)]
pub struct Dialect {
    pub replica_status: &'static str,
    pub stop: &'static str,
    pub start: &'static str,
    pub reset_all: &'static str,
    pub change: &'static str,
    pub pos_wait: &'static str,
    pub skip_start_option: &'static str,
}

pub fn dialect(flavour: Flavour, version: &str) -> Dialect {
    let v = version_tuple(version);
    let new_names = flavour == Flavour::Mysql && v >= (8, 0, 22);
    Dialect {
        replica_status: if new_names {
            "SHOW REPLICA STATUS"
        } else {
            "SHOW SLAVE STATUS"
        },
        stop: if new_names {
            "STOP REPLICA"
        } else {
            "STOP SLAVE"
        },
        start: if new_names {
            "START REPLICA"
        } else {
            "START SLAVE"
        },
        reset_all: if new_names {
            "RESET REPLICA ALL"
        } else {
            "RESET SLAVE ALL"
        },
        change: if flavour == Flavour::Mysql && v >= (8, 0, 23) {
            "CHANGE REPLICATION SOURCE TO"
        } else {
            "CHANGE MASTER TO"
        },
        pos_wait: if flavour == Flavour::Mysql && v >= (8, 0, 26) {
            "SOURCE_POS_WAIT"
        } else {
            "MASTER_POS_WAIT"
        },
        skip_start_option: if flavour == Flavour::Mysql && v >= (8, 0, 26) {
            "skip-replica-start"
        } else {
            "skip-slave-start"
        },
    }
}

/// The facts query: the flavour is asked first, then every statement matches it. `extra` is
/// appended SQL (sections named `check_*`).
fn facts_body(extra: &str) -> String {
    format!(
        r#"v=$(my -N -B -e 'SELECT VERSION()') || {{ echo "cannot connect to the database server" >&2; exit 3; }}
case "$v" in
  *MariaDB*) rs='SHOW SLAVE STATUS'; ms='SHOW MASTER STATUS'; g='SELECT @@global.gtid_binlog_pos AS gtid_binlog_pos, @@global.gtid_slave_pos AS gtid_slave_pos' ;;
  [0-7].*|8.0.[0-9]|8.0.[0-9][!0-9]*|8.0.1[0-9]*|8.0.2[01]*) rs='SHOW SLAVE STATUS'; ms='SHOW MASTER STATUS'; g='SELECT @@global.gtid_executed AS gtid_executed' ;;
  8.0.*|8.1.*) rs='SHOW REPLICA STATUS'; ms='SHOW MASTER STATUS'; g='SELECT @@global.gtid_executed AS gtid_executed' ;;
  *) rs='SHOW REPLICA STATUS'; ms='SHOW BINARY LOG STATUS'; g='SELECT @@global.gtid_executed AS gtid_executed' ;;
esac
my -B --force -e "SELECT 'vars' AS cutover_section; SELECT VERSION() AS version, @@global.read_only AS read_only, @@global.server_id AS server_id, @@global.log_bin AS log_bin; SELECT 'replica' AS cutover_section; $rs; SELECT 'binlog' AS cutover_section; $ms; SELECT 'gtid' AS cutover_section; $g; SELECT 'dumps' AS cutover_section; SELECT COUNT(*) AS replicas FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%';"{extra}
"#,
        extra = if extra.is_empty() {
            String::new()
        } else {
            format!("\nmy -B --force -e {}", quote(extra))
        }
    )
}

pub(super) const CANNOT_READ: &str = "cannot read the database server's state";

/// Read a server's facts (one round trip). `extra` adds `check_*` sections.
pub(crate) async fn facts(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    login: &Login,
    extra: &str,
) -> Result<Facts> {
    // In a plan: a server that earlier steps stop cannot be read as it will be then.
    if let Some(ov) = ctx.overlay_of(&conn.name) {
        use crate::overlay::{not_derivable, Planned, Val};
        for unit in DB_UNITS {
            if let Some(Planned { value, by }) = ov.unit(unit) {
                match value.active {
                    Val::Set(false) => {
                        return Err(not_derivable(format!(
                            "the database server on {} is stopped by {by}; its state is known only when the run gets there",
                            conn.name
                        )))
                    }
                    Val::Unknown => {
                        return Err(not_derivable(format!(
                            "the database server on {} is changed by {by}; its state after that is known only when it runs",
                            conn.name
                        )))
                    }
                    _ => {}
                }
            }
        }
    }
    let mut f = facts_on_host(conn, ctx, login, extra).await?;
    if let Some(Planned { value, by }) = ctx.overlay_of(&conn.name).and_then(|o| o.replication()) {
        use crate::overlay::{not_derivable, Val};
        let unknown = || {
            not_derivable(format!(
                "the replication state of the database server on {} (threads, read_only, binary log position) after {by} is known only when it runs",
                conn.name
            ))
        };
        if value.reconfigured {
            return Err(unknown());
        }
        match value.read_only {
            Val::Set(b) => f.read_only = b,
            Val::Unknown => return Err(unknown()),
            Val::Host => {}
        }
        if let Some(r) = f.replica.as_mut() {
            for (v, field) in [
                (&value.io_running, &mut r.io_running),
                (&value.sql_running, &mut r.sql_running),
            ] {
                match v {
                    Val::Set(b) => *field = if *b { "Yes" } else { "No" }.to_string(),
                    Val::Unknown => return Err(unknown()),
                    Val::Host => {}
                }
            }
        }
    }
    Ok(f)
}

/// The systemd units a database server runs as (Debian's MariaDB, MySQL).
pub use crate::overlay::DB_UNITS;

async fn facts_on_host(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    login: &Login,
    extra: &str,
) -> Result<Facts> {
    let out = run_sql_script(conn, ctx, login, &facts_body(extra), None, None).await?;
    if out.rc == 3 || out.stdout.is_empty() {
        bail!(
            "{CANNOT_READ} on {}: {}",
            conn.name,
            out.stderr_text()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    facts_from_sections(&parse_sections(&out.stdout_text()))
        .map_err(|e| anyhow!("{}: {e}", conn.name))
}

pub async fn probe_facts(args: &LoginArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let login = Login::from_args(args, ctx)?;
    match facts(ctx.host, ctx, &login, "").await {
        Ok(f) => Ok(Probe::no_change(serde_json::to_value(&f)?)),
        // Not installed or not running yet (an earlier step may start it).
        Err(e) => Ok(Probe::unknown(format!("{e:#}"), J::Null)),
    }
}

pub async fn apply_facts(probe: &Probe) -> Result<Outcome> {
    if let Decision::Unknown { reason } = &probe.decision {
        bail!("{reason}");
    }
    let result = match &probe.state {
        J::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(Outcome {
        changed: false,
        result,
        ..Default::default()
    })
}

/// The `mysql_facts` module.
pub(crate) struct MysqlFacts;

impl Module for MysqlFacts {
    type Args = LoginArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "mysql_facts",
        args: &[
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

    async fn probe(args: &LoginArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_facts(args, ctx).await
    }

    async fn apply(_args: &LoginArgs, probe: &Probe, _ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_facts(probe).await
    }
}
