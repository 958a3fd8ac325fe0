//! MySQL / MariaDB: `mysql_facts` (read-only), `mysql_replication` (replica threads, in-sync
//! waits, read_only, setting up and forgetting replication) and `mysql_query` (SQL or an SQL
//! file).
//!
//! Flavour and version come from `SELECT VERSION()` (MariaDB's contains `MariaDB`), and the
//! statements follow from them (DOMAIN.md 2.1): `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`,
//! `SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS`, `STOP/START SLAVE|REPLICA`, … Replication
//! status is parsed **by column name**, accepting MySQL 8's (`Replica_IO_Running`,
//! `Source_*`) and MariaDB's (`Slave_IO_Running`, `Master_*`) spellings.
//!
//! "In sync" never looks at `Seconds_Behind_Master`: the master's position (GTID, else binary
//! log file and position) is read on the master and waited for on the slave with
//! `MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET` / `MASTER_POS_WAIT` / `SOURCE_POS_WAIT`, in
//! short slices so a replica that stops during the wait is reported at once.
//!
//! Credentials: without `login_*` arguments the client uses the host's default (Debian: root
//! through the unix socket). With them, an option file is written on the host by the script
//! itself from its standard input (umask 077, `mktemp`), passed as `--defaults-extra-file` and
//! removed when the script exits: a password is never in argv nor in the environment. SQL that
//! carries a secret (`CHANGE MASTER TO … MASTER_PASSWORD`) goes on standard input as well.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, choice, ArgType as T, ModuleSpec, Reversibility};
use super::{arg_bool, arg_str, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::plan::overlay::Planned;
use crate::plan::overlay::{Effect, ReplicationState, Val};
use crate::shell::quote;
use crate::transport::HostConn;

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

/// How to log in. Serialised into undo actions without the password: a password is only ever
/// referred to by the name of the variable holding it (`login_password_var`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_var: Option<String>,
    pub host: Option<String>,
    pub port: Option<u64>,
    pub socket: Option<String>,
}

pub(crate) fn arg_u64(args: &Map<String, J>, key: &str) -> Result<Option<u64>> {
    match args.get(key) {
        None | Some(J::Null) => Ok(None),
        Some(J::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| anyhow!("`{key}` must be a non-negative integer")),
        Some(J::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("`{key}` must be a non-negative integer, not `{s}`")),
        Some(other) => bail!("`{key}` must be an integer, not {other}"),
    }
}

impl Login {
    pub fn from_args(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Login> {
        let password_var = arg_str(args, "login_password_var").map(str::to_string);
        let mut password = arg_str(args, "login_password").map(str::to_string);
        if password.is_none() {
            if let Some(v) = &password_var {
                match ctx.vars.get(v) {
                    Some(J::String(s)) => password = Some(s.clone()),
                    _ => bail!("login_password_var: variable `{v}` is not set (or not a string)"),
                }
            }
        }
        Ok(Login {
            user: arg_str(args, "login_user").map(str::to_string),
            password,
            password_var,
            host: arg_str(args, "login_host").map(str::to_string),
            port: arg_u64(args, "login_port")?,
            socket: arg_str(args, "login_unix_socket").map(str::to_string),
        })
    }

    /// The login arguments an undo step may carry (never the password itself).
    pub fn undo_args(&self) -> Map<String, J> {
        let mut m = Map::new();
        if let Some(u) = &self.user {
            m.insert("login_user".into(), json!(u));
        }
        if let Some(v) = &self.password_var {
            m.insert("login_password_var".into(), json!(v));
        }
        if let Some(h) = &self.host {
            m.insert("login_host".into(), json!(h));
        }
        if let Some(p) = self.port {
            m.insert("login_port".into(), json!(p));
        }
        if let Some(s) = &self.socket {
            m.insert("login_unix_socket".into(), json!(s));
        }
        m
    }

    /// The `[client]` option file, or None when the defaults are used.
    pub fn option_file(&self) -> Result<Option<String>> {
        if self.user.is_none()
            && self.password.is_none()
            && self.host.is_none()
            && self.port.is_none()
            && self.socket.is_none()
        {
            return Ok(None);
        }
        let mut s = String::from("[client]\n");
        let mut add = |k: &str, v: &str| -> Result<()> {
            if v.contains(['\n', '\r', '\0']) {
                bail!("login {k} contains a line break, which an option file cannot hold");
            }
            s.push_str(&format!("{k}=\"{}\"\n", option_escape(v)));
            Ok(())
        };
        if let Some(u) = &self.user {
            add("user", u)?;
        }
        if let Some(p) = &self.password {
            add("password", p)?;
        }
        if let Some(h) = &self.host {
            add("host", h)?;
        }
        if let Some(p) = self.port {
            add("port", &p.to_string())?;
        }
        if let Some(so) = &self.socket {
            add("socket", so)?;
        }
        Ok(Some(s))
    }

    /// A script prelude defining the shell function `my` (the mysql client logged in), and
    /// the bytes that must come first on the script's standard input.
    pub fn prelude(&self) -> Result<(String, Vec<u8>)> {
        match self.option_file()? {
            None => Ok(("my() { mysql \"$@\"; }\n".to_string(), Vec::new())),
            Some(text) => {
                let lines = text.lines().count();
                let script = format!(
                    r#"umask 077
cutover_my_cnf=$(mktemp "${{TMPDIR:-/tmp}}/.cutover-my.XXXXXX") || exit 70
trap 'rm -f "$cutover_my_cnf"' EXIT
trap 'exit 130' INT TERM HUP
i=0
while [ "$i" -lt {lines} ]; do IFS= read -r l || break; printf '%s\n' "$l" >> "$cutover_my_cnf"; i=$((i+1)); done
unset l
my() {{ mysql --defaults-extra-file="$cutover_my_cnf" "$@"; }}
"#
                );
                Ok((script, text.into_bytes()))
            }
        }
    }
}

/// A `src:` SQL file on the controller: a regular file only (a FIFO would block the run).
fn read_controller_file(src: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let (mut f, _) =
        crate::input::open_regular(std::path::Path::new(src)).map_err(std::io::Error::other)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(data)
}

/// A value inside double quotes in a MySQL option file.
fn option_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// An SQL string literal (works with and without NO_BACKSLASH_ESCAPES… as long as the value
/// has no backslash; with one, the default mode is assumed).
pub(crate) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Run `body` (which calls `my …`) on `conn` with the login prelude; `stdin` follows the
/// option file on standard input.
pub(crate) async fn run_sql_script(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    login: &Login,
    body: &str,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<crate::transport::Output> {
    let (prelude, mut input) = login.prelude()?;
    if let Some(s) = stdin {
        input.extend_from_slice(s);
    }
    let script = format!("{prelude}{body}");
    conn.run(
        &script,
        (!input.is_empty()).then_some(&input[..]),
        ctx.become_,
        timeout.or(ctx.timeout),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

pub type Row = BTreeMap<String, String>;

/// Undo mysql --batch escaping (\n \t \\ \0).
fn unescape_batch(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o)
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `mysql --batch` output of one result set (header line, then rows) into rows by column.
pub fn parse_batch(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<String> = header.split('\t').map(unescape_batch).collect();
    lines
        .filter(|l| !l.is_empty() || cols.len() == 1)
        .map(|l| {
            cols.iter()
                .cloned()
                .zip(l.split('\t').map(unescape_batch))
                .collect()
        })
        .collect()
}

/// Vertical (`\G`) output into rows by column.
pub fn parse_vertical(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut cur: Option<Row> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("***") && t.ends_with("***") && t.contains(". row") {
            if let Some(r) = cur.take() {
                rows.push(r);
            }
            cur = Some(Row::new());
            continue;
        }
        if let Some(r) = cur.as_mut() {
            if let Some((k, v)) = t.split_once(':') {
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    r.insert(k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
        }
    }
    if let Some(r) = cur {
        rows.push(r);
    }
    rows
}

/// Several result sets, each preceded by `SELECT 'NAME' AS cutover_section`.
pub fn parse_sections(text: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut cols: Option<Vec<String>> = None;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l == "cutover_section" {
            if let Some(n) = lines.next() {
                name = Some(n.to_string());
                out.entry(n.to_string()).or_default();
                cols = None;
            }
            continue;
        }
        let Some(n) = &name else { continue };
        match &cols {
            None => cols = Some(l.split('\t').map(unescape_batch).collect()),
            Some(c) => {
                let row: Row = c
                    .iter()
                    .cloned()
                    .zip(l.split('\t').map(unescape_batch))
                    .collect();
                out.entry(n.clone()).or_default().push(row);
            }
        }
    }
    out
}

/// The first of several column spellings present in a row.
fn col<'a>(row: &'a Row, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| row.get(*n))
        .map(String::as_str)
        .filter(|v| *v != "NULL")
}

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

/// The statements of a flavour and version (DOMAIN.md 2.1).
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

const CANNOT_READ: &str = "cannot read the database server's state";

/// Read a server's facts (one round trip). `extra` adds `check_*` sections.
pub(crate) async fn facts(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    login: &Login,
    extra: &str,
) -> Result<Facts> {
    // In a plan: a server that earlier steps stop cannot be read as it will be then.
    if let Some(ov) = ctx.overlay_of(&conn.name) {
        use crate::plan::overlay::{not_derivable, Planned, Val};
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
        use crate::plan::overlay::{not_derivable, Val};
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
pub const DB_UNITS: [&str; 3] = ["mariadb", "mysql", "mysqld"];

/// What a `mysql_replication` change leaves for a plan's later steps.
fn replication_after(args: &Map<String, J>) -> Vec<crate::plan::overlay::Effect> {
    use crate::plan::overlay::{Effect, ReplicationState, Val};
    let set = |b: Option<bool>| b.map_or(Val::Host, Val::Set);
    let (io, sql) = match arg_str(args, "state") {
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
        read_only: set(arg_bool(args, "read_only")),
        reconfigured: matches!(arg_str(args, "state"), Some("configured" | "detached")),
    })]
}

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

// ---------------------------------------------------------------------------------------------
// GTID positions (MariaDB domain-server-seq lists)
// ---------------------------------------------------------------------------------------------

/// domain → seq_no of a MariaDB GTID position ("0-1-20,1-2-5").
pub fn mariadb_gtid(pos: &str) -> BTreeMap<u64, u64> {
    pos.split(',')
        .filter_map(|g| {
            let mut p = g.trim().split('-');
            let d = p.next()?.parse().ok()?;
            let _server: u64 = p.next()?.parse().ok()?;
            let seq = p.next()?.parse().ok()?;
            Some((d, seq))
        })
        .collect()
}

/// Has `have` (the slave's gtid_slave_pos) reached `want` (the master's gtid_binlog_pos)?
pub fn mariadb_gtid_reached(have: &str, want: &str) -> bool {
    let h = mariadb_gtid(have);
    mariadb_gtid(want)
        .iter()
        .all(|(d, s)| h.get(d).is_some_and(|hs| hs >= s))
}

/// Has the slave's IO thread already received the master's point into its relay log (so the
/// SQL thread can reach it with the IO thread stopped)? None: cannot tell.
pub fn relay_log_holds(slave: &Facts, master: &MasterPos) -> Option<bool> {
    let r = slave.replica.as_ref()?;
    if r.gtid() {
        return match (&master.gtid, slave.flavour) {
            (Some(g), Flavour::Mariadb) => Some(mariadb_gtid_reached(&r.gtid_io_pos, g)),
            _ => None,
        };
    }
    match (&master.file, master.pos) {
        (Some(f), Some(p)) => Some(
            r.source_log_file.as_str() > f.as_str()
                || (r.source_log_file == *f && r.read_source_log_pos >= p),
        ),
        _ => None,
    }
}

/// The master's current point, read on the master.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MasterPos {
    pub gtid: Option<String>,
    pub file: Option<String>,
    pub pos: Option<u64>,
}

impl MasterPos {
    fn describe(&self) -> String {
        match (&self.gtid, &self.file, self.pos) {
            (Some(g), _, _) => format!("GTID {g}"),
            (None, Some(f), Some(p)) => format!("{f}:{p}"),
            _ => "an unknown position".into(),
        }
    }
}

/// Does the slave already have the master's point? None: cannot tell without asking the
/// server (MySQL GTID sets: the `check_subset` section answers that).
pub fn slave_reached(slave: &Facts, master: &MasterPos) -> Option<bool> {
    let r = slave.replica.as_ref()?;
    if r.gtid() {
        if let Some(g) = &master.gtid {
            return match slave.flavour {
                Flavour::Mariadb => Some(mariadb_gtid_reached(
                    slave.gtid_slave_pos.as_deref().unwrap_or(""),
                    g,
                )),
                Flavour::Mysql => slave.checks.get("subset").map(|v| v == "1"),
            };
        }
    }
    match (&master.file, master.pos) {
        (Some(f), Some(p)) => Some(r.relay_source_log_file == *f && r.exec_source_log_pos >= p)
            .map(|b| b || r.relay_source_log_file.as_str() > f.as_str()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// mysql_facts
// ---------------------------------------------------------------------------------------------

pub async fn probe_facts(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
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

// ---------------------------------------------------------------------------------------------
// mysql_replication
// ---------------------------------------------------------------------------------------------

fn threads_arg(args: &Map<String, J>) -> Result<&str> {
    match arg_str(args, "threads").unwrap_or("all") {
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

pub async fn probe_replication(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
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

async fn probe_replication_inner(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let login = Login::from_args(args, ctx)?;
    let state = arg_str(args, "state");
    let want_ro = arg_bool(args, "read_only");
    let host = &ctx.host.name;
    let (f, master) = if state == Some("synced") {
        let mname = arg_str(args, "master")
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
        Some("configured") => {
            let want_host = super::required(args, "source_host")?;
            let want_port = arg_u64(args, "source_port")?.unwrap_or(3306);
            let want_user = super::required(args, "source_user")?;
            match r {
                Some(r)
                    if r.source_host == want_host
                        && r.source_port == want_port
                        && r.source_user == want_user => {}
                Some(r) => changes.push(format!(
                    "{host}: replicate from {want_user}@{want_host}:{want_port} (now {}@{}:{})",
                    r.source_user, r.source_host, r.source_port
                )),
                None => changes.push(format!(
                    "{host}: set up replication from {want_user}@{want_host}:{want_port} and start it"
                )),
            }
        }
        Some("detached") => {
            if let Some(r) = r {
                changes.push(format!(
                    "{host}: stop replication from {} ({}) and forget it (RESET SLAVE ALL)",
                    r.source_host,
                    r.describe()
                ));
            }
        }
        Some(other) => bail!("unknown mysql_replication state `{other}`"),
    }
    if let Some(ro) = want_ro {
        if ro != f.read_only {
            changes.push(format!("{host}: read_only {} → {ro}", f.read_only));
        }
    }
    saw["running"] = json!(true);
    Ok(if changes.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(changes.join("; "), None, saw)
    })
}

/// What each thread should be: `state` + `threads`, or (undo) `state: restore` + `io`/`sql`.
fn thread_targets(args: &Map<String, J>) -> Result<(Option<bool>, Option<bool>)> {
    match arg_str(args, "state") {
        Some("restore") => Ok((arg_bool(args, "io"), arg_bool(args, "sql"))),
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

async fn exec_sql(ctx: &ModCtx<'_>, login: &Login, sql: &str) -> Result<()> {
    let out = run_sql_script(
        ctx.host,
        ctx,
        login,
        "my --batch\n",
        Some(format!("{sql}\n").as_bytes()),
        None,
    )
    .await?;
    if !out.ok() {
        bail!(
            "SQL failed on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    Ok(())
}

fn undo_step(
    args: &Map<String, J>,
    login: &Login,
    extra: &[(&str, J)],
    what: String,
) -> UndoAction {
    let mut a = login.undo_args();
    for (k, v) in extra {
        a.insert((*k).into(), v.clone());
    }
    if let Some(t) = args.get("wait_timeout") {
        a.insert("wait_timeout".into(), t.clone());
    }
    UndoAction::Rerun {
        module: "mysql_replication".into(),
        args: a,
        what,
    }
}

/// The way back of a thread or read_only change, from the probe (the same as the one `apply`
/// records; known before the change, so it is journaled with the intent). Restoring thread
/// states and read_only is safe whether or not the change happened.
pub(crate) fn pending_undo_replication(
    args: &Map<String, J>,
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
        arg_str(args, "state"),
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
    if let (Some(want), Some(was)) = (arg_bool(args, "read_only"), facts["read_only"].as_bool()) {
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

pub async fn apply_replication(
    args: &Map<String, J>,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let state = arg_str(args, "state");
    let host = ctx.host.name.clone();
    let limit = Duration::from_secs(arg_u64(args, "wait_timeout")?.unwrap_or(300));
    let mut result = Map::new();
    if probe.decision == Decision::NoChange && state != Some("synced") {
        result.insert("facts".into(), probe.state["facts"].clone());
        return Ok(Outcome {
            result,
            ..Default::default()
        });
    }
    // The probe may be old (a plan, a retry): decide again on fresh facts where it matters.
    // (Only `detached` may find the server down: it starts it.)
    let before: Option<Facts> =
        if state == Some("detached") && probe.state["running"] != json!(true) {
            None
        } else {
            Some(facts(ctx.host, ctx, &login, "").await?)
        };
    let mut undo = None;
    let mut changed = false;
    let mut failed = None;
    match state {
        Some("stopped") | Some("started") | Some("restore") => {
            let f = before
                .as_ref()
                .ok_or_else(|| anyhow!("the database server on {host} is not running"))?;
            let d = dialect(f.flavour, &f.version);
            let r = f
                .replica
                .as_ref()
                .ok_or_else(|| anyhow!("replication is not configured on {host}"))?;
            let (io, sql) = thread_targets(args)?;
            let sql_text = thread_statements(&d, r, io, sql);
            if !sql_text.is_empty() {
                exec_sql(ctx, &login, &sql_text).await?;
                changed = true;
                match poll_threads(ctx, &login, io, sql, limit).await {
                    Ok(now) => {
                        result.insert("facts".into(), serde_json::to_value(&now)?);
                    }
                    Err(e) => failed = Some(e.to_string()),
                }
                undo = Some(undo_step(
                    args,
                    &login,
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
            }
        }
        Some("synced") => {
            let mname = super::required(args, "master")?;
            let mconn = master_of(ctx, mname)?;
            let m = facts(mconn, ctx, &login, "").await?;
            let f = facts(ctx.host, ctx, &login, &subset_check(&m)).await?;
            let r = f.replica.clone().ok_or_else(|| {
                anyhow!("{host} does not replicate: no replication is configured")
            })?;
            let mp = master_pos(&m, r.gtid());
            result.insert("master".into(), serde_json::to_value(&mp)?);
            let waited = wait_synced(ctx, &login, &f, &mp, mname, limit).await;
            match waited {
                Ok(after) => {
                    result.insert("facts".into(), serde_json::to_value(&after)?);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        Some("configured") => {
            let f = before
                .as_ref()
                .ok_or_else(|| anyhow!("the database server on {host} is not running"))?;
            let d = dialect(f.flavour, &f.version);
            let sh = super::required(args, "source_host")?;
            let sp = arg_u64(args, "source_port")?.unwrap_or(3306);
            let su = super::required(args, "source_user")?;
            let pw = arg_str(args, "source_password").unwrap_or("");
            let retry = arg_u64(args, "connect_retry")?.unwrap_or(10);
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
            let gtid = match (f.flavour, arg_str(args, "use_gtid").unwrap_or("slave_pos")) {
                (Flavour::Mariadb, "no") => ", MASTER_USE_GTID = no".to_string(),
                (Flavour::Mariadb, g @ ("slave_pos" | "current_pos")) => {
                    format!(", MASTER_USE_GTID = {g}")
                }
                (Flavour::Mysql, "no") => String::new(),
                (Flavour::Mysql, _) if mysql8 => ", SOURCE_AUTO_POSITION = 1".into(),
                (Flavour::Mysql, _) => ", MASTER_AUTO_POSITION = 1".into(),
                (_, other) => bail!("use_gtid must be slave_pos, current_pos or no, not `{other}`"),
            };
            let sql = format!(
                "{stop};\n{change} {k_host} = {h}, {k_port} = {sp}, {k_user} = {u}, {k_pw} = {p}, {k_retry} = {retry}{gtid};\n{start};",
                stop = d.stop,
                change = d.change,
                start = d.start,
                h = sql_str(sh),
                u = sql_str(su),
                p = sql_str(pw),
            );
            exec_sql(ctx, &login, &sql).await?;
            changed = true;
            match poll_threads(ctx, &login, Some(true), Some(true), limit).await {
                Ok(now) => {
                    result.insert("facts".into(), serde_json::to_value(&now)?);
                }
                Err(e) => failed = Some(e.to_string()),
            }
            if f.replica.is_none() {
                undo = Some(undo_step(
                    args,
                    &login,
                    &[("state", json!("detached"))],
                    format!("forget the replication set up on {host} (RESET SLAVE ALL)"),
                ));
            }
        }
        Some("detached") => {
            let flavour_hint = before.as_ref().map(|f| (f.flavour, f.version.clone()));
            let service = arg_str(args, "service").unwrap_or("mariadb");
            let conf = arg_str(args, "config_file")
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
            let body = format!(
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
            );
            let out = run_sql_script(ctx.host, ctx, &login, &body, None, None).await?;
            if !out.ok() {
                bail!(
                    "detaching the database server on {host} failed: {}",
                    out.stderr_text().trim()
                );
            }
            changed = true;
            let now = facts(ctx.host, ctx, &login, "").await?;
            if now.replica.is_some() {
                failed = Some(format!(
                    "{host} still has replication configured after RESET SLAVE ALL"
                ));
            }
            result.insert("facts".into(), serde_json::to_value(&now)?);
        }
        None => {}
        Some(other) => bail!("unknown mysql_replication state `{other}`"),
    }
    if let Some(ro) = arg_bool(args, "read_only") {
        let f = facts(ctx.host, ctx, &login, "").await?;
        if f.read_only != ro {
            exec_sql(
                ctx,
                &login,
                &format!("SET GLOBAL read_only = {};", if ro { "ON" } else { "OFF" }),
            )
            .await?;
            let now = facts(ctx.host, ctx, &login, "").await?;
            if now.read_only != ro {
                failed = Some(format!("read_only on {host} is still {}", now.read_only));
            }
            changed = true;
            result.insert("facts".into(), serde_json::to_value(&now)?);
            let ro_undo = undo_step(
                args,
                &login,
                &[("read_only", json!(f.read_only))],
                format!("read_only on {host} back to {}", f.read_only),
            );
            // Both changed in one step: the state undo first is not expressible in one action;
            // read_only is the one that matters to writers, so it wins.
            undo = Some(match undo {
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
        }
    }
    Ok(Outcome {
        changed,
        result,
        undo,
        failed,
    })
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

// ---------------------------------------------------------------------------------------------
// mysql_query
// ---------------------------------------------------------------------------------------------

pub async fn probe_query(args: &Map<String, J>, _ctx: &ModCtx<'_>) -> Result<Probe> {
    let what = if let Some(p) = arg_str(args, "path") {
        format!("run the SQL file {p}")
    } else if let Some(p) = arg_str(args, "src") {
        format!("run the SQL file {p} (from the controller)")
    } else {
        "run SQL".to_string()
    };
    if arg_bool(args, "read_only") == Some(true) {
        return Ok(Probe::no_change(json!({ "what": what })));
    }
    Ok(Probe::unknown(
        format!("{what}: its effect is not known in advance (changed_when: decides)"),
        json!({ "what": what }),
    ))
}

pub async fn apply_query(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let db = arg_str(args, "database");
    let mut opts = String::from("--batch");
    if let Some(d) = db {
        opts.push_str(&format!(" --database={}", quote(d)));
    }
    let (body, stdin) = if let Some(p) = arg_str(args, "path") {
        (format!("my {opts} < {}\n", quote(p)), None)
    } else if let Some(src) = arg_str(args, "src") {
        let data = read_controller_file(src)
            .map_err(|e| anyhow!("cannot read {src} on the controller: {e}"))?;
        (format!("my {opts}\n"), Some(data))
    } else {
        let sql = super::required(args, "sql")?;
        (
            format!("my {opts}\n"),
            Some(format!("{sql}\n").into_bytes()),
        )
    };
    let out = run_sql_script(ctx.host, ctx, &login, &body, stdin.as_deref(), None).await?;
    let stdout = out.stdout_text();
    let mut result = Map::new();
    result.insert("rc".into(), json!(out.rc));
    result.insert("stdout".into(), json!(stdout));
    result.insert("stderr".into(), json!(out.stderr_text()));
    result.insert(
        "rows".into(),
        serde_json::to_value(parse_batch(&stdout)).unwrap_or(J::Null),
    );
    let failed = (!out.ok()).then(|| {
        format!(
            "SQL failed on {} (rc {}): {}",
            ctx.host.name,
            out.rc,
            out.stderr_text().trim()
        )
    });
    Ok(Outcome {
        changed: arg_bool(args, "read_only") != Some(true),
        result,
        undo: None,
        failed,
    })
}

/// What `mysql_replication` may change: the replica's threads and read-only flag, and its
/// source when it (re)configures or detaches.
fn replication_touched(args: &Map<String, J>) -> Effect {
    Effect::Replication(ReplicationState {
        io_running: Val::Unknown,
        sql_running: Val::Unknown,
        read_only: Val::Unknown,
        reconfigured: matches!(arg_str(args, "state"), Some("configured" | "detached")),
    })
}

/// The `mysql_facts` module.
pub(crate) struct MysqlFacts;

impl Module for MysqlFacts {
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
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_facts(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let _ = (args, ctx);
        apply_facts(probe).await
    }
}

/// The `mysql_replication` module.
pub(crate) struct MysqlReplication;

impl Module for MysqlReplication {
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
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_replication(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_replication(args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_undo_replication(args, probe, ctx)
    }

    fn changes_nothing(args: &Map<String, J>) -> bool {
        arg_str(args, "state") == Some("synced") && !args.contains_key("read_only")
    }

    fn peer_hosts(args: &Map<String, J>) -> Vec<String> {
        arg_str(args, "master")
            .map(str::to_string)
            .into_iter()
            .collect()
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        vec![replication_touched(args)]
    }
}

/// The `mysql_query` module.
pub(crate) struct MysqlQuery;

impl Module for MysqlQuery {
    const SPEC: ModuleSpec = ModuleSpec {
        name: "mysql_query",
        args: &[
            arg("sql", T::Str),
            arg("src", T::Path),
            arg("path", T::Path),
            arg("database", T::Str),
            arg("read_only", T::Bool),
            arg("login_user", T::Str),
            arg("login_password", T::Str),
            arg("login_password_var", T::Str),
            arg("login_host", T::Str),
            arg("login_port", T::Int),
            arg("login_unix_socket", T::Path),
        ],
        free_form: Some("sql"),
        one_of: &[&["sql", "src", "path"]],
        reversibility: Reversibility::Irreversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_query(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let _ = probe;
        apply_query(args, ctx).await
    }

    fn changes_nothing(args: &Map<String, J>) -> bool {
        arg_bool(args, "read_only") == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on the lab's db2 (MariaDB 10.11, `SHOW SLAVE STATUS\G`).
    const MARIADB_VERTICAL: &str = r#"*************************** 1. row ***************************
                Slave_IO_State: Waiting for master to send event
                   Master_Host: 10.77.0.21
                   Master_User: repl
                   Master_Port: 3306
                 Connect_Retry: 10
               Master_Log_File: mysql-bin.000001
           Read_Master_Log_Pos: 5715
                Relay_Log_File: relay-bin.000002
                 Relay_Log_Pos: 6014
         Relay_Master_Log_File: mysql-bin.000001
              Slave_IO_Running: Yes
             Slave_SQL_Running: Yes
                    Last_Errno: 0
                    Last_Error: 
           Exec_Master_Log_Pos: 5715
         Seconds_Behind_Master: 0
                 Last_IO_Errno: 0
                 Last_IO_Error: 
                Last_SQL_Errno: 0
                Last_SQL_Error: 
              Master_Server_Id: 1
                    Using_Gtid: Slave_Pos
                   Gtid_IO_Pos: 0-1-20
       Slave_SQL_Running_State: Slave has read all relay log; waiting for more updates
"#;

    /// MySQL 8.0.36 `SHOW REPLICA STATUS\G` (shape and names from the MySQL manual), with a
    /// stopped SQL thread and an error.
    const MYSQL8_VERTICAL: &str = r#"*************************** 1. row ***************************
             Replica_IO_State: Waiting for source to send event
                  Source_Host: 10.0.0.21
                  Source_User: repl
                  Source_Port: 3306
                Connect_Retry: 60
              Source_Log_File: binlog.000012
          Read_Source_Log_Pos: 1307
               Relay_Log_File: replica-relay-bin.000003
                Relay_Log_Pos: 1523
        Relay_Source_Log_File: binlog.000012
           Replica_IO_Running: Yes
          Replica_SQL_Running: No
                   Last_Errno: 1062
                   Last_Error: Could not execute Write_rows event on table wiki.PAGES; Duplicate entry
          Exec_Source_Log_Pos: 1107
        Seconds_Behind_Source: NULL
                Last_IO_Errno: 0
                Last_IO_Error: 
               Last_SQL_Errno: 1062
               Last_SQL_Error: Could not execute Write_rows event on table wiki.PAGES; Duplicate entry
             Source_Server_Id: 1
                  Source_UUID: 3e11fa47-71ca-11e1-9e33-c80aa9429562
    Replica_SQL_Running_State: 
           Retrieved_Gtid_Set: 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5
            Executed_Gtid_Set: 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4
                Auto_Position: 1
"#;

    #[test]
    fn replica_status_by_column_name_both_flavours() {
        let m = ReplicaStatus::from_row(&parse_vertical(MARIADB_VERTICAL)[0]);
        assert_eq!(m.io_running, "Yes");
        assert_eq!(m.sql_running, "Yes");
        assert_eq!(m.source_host, "10.77.0.21");
        assert_eq!(m.source_port, 3306);
        assert_eq!(m.relay_source_log_file, "mysql-bin.000001");
        assert_eq!(m.exec_source_log_pos, 5715);
        assert_eq!(m.seconds_behind, Some(0));
        assert!(m.gtid() && m.io() && m.sql());
        assert_eq!(m.gtid_io_pos, "0-1-20");
        assert_eq!(m.describe(), "IO thread Yes, SQL thread Yes");

        let y = ReplicaStatus::from_row(&parse_vertical(MYSQL8_VERTICAL)[0]);
        assert_eq!(y.io_running, "Yes");
        assert_eq!(y.sql_running, "No");
        assert_eq!(y.source_host, "10.0.0.21");
        assert_eq!(y.source_log_file, "binlog.000012");
        assert_eq!(y.read_source_log_pos, 1307);
        assert_eq!(y.relay_source_log_file, "binlog.000012");
        assert_eq!(y.exec_source_log_pos, 1107);
        assert_eq!(y.seconds_behind, None, "NULL is no number");
        assert_eq!(y.last_sql_errno, 1062);
        assert!(y.gtid() && !y.sql());
        assert!(y
            .describe()
            .contains("last SQL error 1062: Could not execute"));
    }

    #[test]
    fn batch_sections_and_facts() {
        // `mysql -B --force -e …` as facts_body runs it against MariaDB (db1, a master).
        let master = "cutover_section\nvars\nversion\tread_only\tserver_id\tlog_bin\n10.11.19-MariaDB-0+deb12u1-log\t0\t1\t1\ncutover_section\nreplica\ncutover_section\nbinlog\nFile\tPosition\tBinlog_Do_DB\tBinlog_Ignore_DB\nmysql-bin.000001\t5715\t\t\ncutover_section\ngtid\ngtid_binlog_pos\tgtid_slave_pos\n0-1-20\t\ncutover_section\ndumps\nreplicas\n1\n";
        let f = facts_from_sections(&parse_sections(master)).unwrap();
        assert_eq!(f.flavour, Flavour::Mariadb);
        assert_eq!(f.role, "master");
        assert!(!f.read_only && f.log_bin);
        assert_eq!(f.binlog_file.as_deref(), Some("mysql-bin.000001"));
        assert_eq!(f.binlog_pos, Some(5715));
        assert_eq!(f.gtid_binlog_pos.as_deref(), Some("0-1-20"));
        assert_eq!(f.replicas, 1);
        assert!(f.replica.is_none());

        // MySQL 8.4 replica, batch format with escaped tab/newline in an error.
        let slave = "cutover_section\nvars\nversion\tread_only\tserver_id\tlog_bin\n8.4.3\t1\t2\t1\ncutover_section\nreplica\nReplica_IO_State\tSource_Host\tSource_User\tSource_Port\tSource_Log_File\tRead_Source_Log_Pos\tRelay_Source_Log_File\tReplica_IO_Running\tReplica_SQL_Running\tExec_Source_Log_Pos\tSeconds_Behind_Source\tLast_SQL_Errno\tLast_SQL_Error\tAuto_Position\n\tdb1\trepl\t3306\tbinlog.000003\t900\tbinlog.000003\tConnecting\tNo\t800\tNULL\t1\tline1\\nline2\\twith tab\t0\ncutover_section\nbinlog\nFile\tPosition\tBinlog_Do_DB\tBinlog_Ignore_DB\tExecuted_Gtid_Set\nbinlog.000001\t157\t\t\t\ncutover_section\ngtid\ngtid_executed\n\ncutover_section\ndumps\nreplicas\n0\ncutover_section\ncheck_subset\ns\n0\n";
        let f = facts_from_sections(&parse_sections(slave)).unwrap();
        assert_eq!(f.flavour, Flavour::Mysql);
        assert_eq!(f.role, "slave");
        assert!(f.read_only);
        let r = f.replica.as_ref().unwrap();
        assert_eq!(r.io_running, "Connecting");
        assert!(r.io() && !r.sql() && !r.gtid());
        assert_eq!(r.last_sql_error, "line1\nline2\twith tab");
        assert_eq!(f.checks.get("subset").map(String::as_str), Some("0"));
        let mp = MasterPos {
            gtid: None,
            file: Some("binlog.000003".into()),
            pos: Some(900),
        };
        assert_eq!(slave_reached(&f, &mp), Some(false));
        let mp = MasterPos {
            gtid: None,
            file: Some("binlog.000003".into()),
            pos: Some(800),
        };
        assert_eq!(slave_reached(&f, &mp), Some(true));
        let mp = MasterPos {
            gtid: None,
            file: Some("binlog.000002".into()),
            pos: Some(9000),
        };
        assert_eq!(slave_reached(&f, &mp), Some(true), "a later file is past");
        // What the IO thread received (read position 900 of binlog.000003).
        let at = |file: &str, pos: u64| MasterPos {
            gtid: None,
            file: Some(file.into()),
            pos: Some(pos),
        };
        assert_eq!(relay_log_holds(&f, &at("binlog.000003", 900)), Some(true));
        assert_eq!(relay_log_holds(&f, &at("binlog.000003", 901)), Some(false));
        assert_eq!(relay_log_holds(&f, &at("binlog.000004", 4)), Some(false));
        assert_eq!(relay_log_holds(&f, &at("binlog.000002", 9000)), Some(true));
        // MariaDB with GTID: Gtid_IO_Pos against the master's GTID.
        let mut g = f.clone();
        g.flavour = Flavour::Mariadb;
        let r = g.replica.as_mut().unwrap();
        r.using_gtid = "Slave_Pos".into();
        r.gtid_io_pos = "0-1-20".into();
        let gtid = |g: &str| MasterPos {
            gtid: Some(g.into()),
            file: None,
            pos: None,
        };
        assert_eq!(relay_log_holds(&g, &gtid("0-1-20")), Some(true));
        assert_eq!(relay_log_holds(&g, &gtid("0-1-21")), Some(false));
    }

    #[test]
    fn gtid_positions() {
        assert!(mariadb_gtid_reached("0-1-20", "0-1-20"));
        assert!(mariadb_gtid_reached("0-1-21,1-2-3", "0-1-20"));
        assert!(!mariadb_gtid_reached("0-1-19", "0-1-20"));
        assert!(!mariadb_gtid_reached("0-1-30", "0-1-20,1-1-1"));
        assert!(mariadb_gtid_reached("0-1-3", ""));
        assert_eq!(mariadb_gtid("0-1-20, 2-5-7").get(&2), Some(&7));
    }

    #[test]
    fn statements_follow_flavour_and_version() {
        let m = dialect(Flavour::Mariadb, "10.11.19-MariaDB-0+deb12u1-log");
        assert_eq!(m.replica_status, "SHOW SLAVE STATUS");
        assert_eq!(m.pos_wait, "MASTER_POS_WAIT");
        assert_eq!(m.change, "CHANGE MASTER TO");
        let old = dialect(Flavour::Mysql, "8.0.21");
        assert_eq!(old.stop, "STOP SLAVE");
        let mid = dialect(Flavour::Mysql, "8.0.23-log");
        assert_eq!(mid.stop, "STOP REPLICA");
        assert_eq!(mid.change, "CHANGE REPLICATION SOURCE TO");
        assert_eq!(mid.pos_wait, "MASTER_POS_WAIT");
        let new = dialect(Flavour::Mysql, "8.4.3");
        assert_eq!(new.reset_all, "RESET REPLICA ALL");
        assert_eq!(new.pos_wait, "SOURCE_POS_WAIT");
        assert_eq!(new.skip_start_option, "skip-replica-start");
    }

    #[test]
    fn option_file_keeps_the_password_out_of_argv() {
        let l = Login {
            user: Some("root".into()),
            password: Some(r#"p"w\'&<x>"#.into()),
            ..Default::default()
        };
        let (script, stdin) = l.prelude().unwrap();
        assert!(!script.contains("p\"w"), "{script}");
        assert_eq!(
            String::from_utf8(stdin).unwrap(),
            "[client]\nuser=\"root\"\npassword=\"p\\\"w\\\\'&<x>\"\n"
        );
        assert!(script.contains("umask 077"));
        assert!(!l.undo_args().contains_key("login_password"));
        let bad = Login {
            password: Some("a\nb".into()),
            ..Default::default()
        };
        assert!(bad.prelude().is_err());
        assert_eq!(
            Login::default().prelude().unwrap(),
            ("my() { mysql \"$@\"; }\n".to_string(), Vec::new())
        );
    }

    #[test]
    fn the_option_file_is_read_from_stdin_line_by_line() {
        // The prelude must consume exactly the option file's lines, leaving the SQL on stdin.
        let l = Login {
            user: Some("u".into()),
            password: Some("pw 'x".into()),
            ..Default::default()
        };
        let (prelude, mut input) = l.prelude().unwrap();
        input.extend_from_slice(b"SELECT 1;\n");
        let script = format!(
            "{}cat \"$cutover_my_cnf\"; echo ---; cat; ls -l \"$cutover_my_cnf\" | cut -c1-10",
            prelude.replace("my() {", "unused() {")
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text,
            "[client]\nuser=\"u\"\npassword=\"pw 'x\"\n---\nSELECT 1;\n-rw-------\n"
        );
    }

    #[test]
    fn sql_strings() {
        assert_eq!(sql_str("a'b\\c"), "'a''b\\\\c'");
    }
}
