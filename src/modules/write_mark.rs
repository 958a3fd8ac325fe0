//! `write_mark` (read-only): where user data stands at a point of a procedure — the database
//! master's binary log position (GTID and file:position), and the files under trees users
//! write to (an app home's attachments) — journaled with the step's result.
//!
//! A rollback merges snapshots back, which throws away everything written since they were
//! taken. Writes made while the maintenance page was on are the upgrade's own; writes made
//! after the window closed (`point: window_closed`, taken just before the page goes off) are
//! users'. `cutover rollback` compares the current state with that mark ([`since`]) and
//! refuses to discard users' writes unless told to (`--discard-writes-since-window`), and then
//! keeps the current data first.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};

use super::contract::Module;
use super::mysql::{self, Login, LoginArgs, LoginSource, Row};
use super::spec::{arg, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};
use crate::shell::quote;

/// The arguments of a `write_mark` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct WriteMarkArgs {
    #[serde(deserialize_with = "args::required_text")]
    point: String,
    #[serde(default, deserialize_with = "args::flag")]
    mysql: Option<bool>,
    #[serde(default, deserialize_with = "args::str_list")]
    ignore_tables: Vec<String>,
    #[serde(default, deserialize_with = "args::str_list")]
    paths: Vec<String>,
    #[serde(default, deserialize_with = "args::str_list")]
    exclude: Vec<String>,
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

impl LoginSource for WriteMarkArgs {
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

/// The mark that separates the upgrade's writes from users'.
pub const WINDOW_CLOSED: &str = "window_closed";

/// Events read per binary log file at most; beyond it the count is "at least".
const EVENTS_PER_LOG: usize = 500_000;

/// The master's position at the mark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbMark {
    pub gtid: Option<String>,
    pub file: String,
    pub pos: u64,
    /// `db.table` written by the application itself, not by users (a heartbeat).
    #[serde(default)]
    pub ignore_tables: Vec<String>,
    /// Login arguments (never a password: a rollback logs in as the undo does).
    #[serde(default)]
    pub login: Map<String, J>,
}

/// A tree users write to, at the mark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeMark {
    pub path: String,
    /// Regular files under it (excluded subtrees left out).
    pub files: u64,
    /// Subtrees (relative) that the application writes by itself (its logs).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A mark as journaled (the step's result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub point: String,
    /// The host's clock at the mark: seconds since the epoch, with nanoseconds
    /// (`1765087200.123456789`), so a file written earlier in the same second is not taken for
    /// one written after the mark.
    pub time: String,
    #[serde(default)]
    pub mysql: Option<DbMark>,
    #[serde(default)]
    pub paths: Vec<TreeMark>,
}

pub fn probe() -> Probe {
    Probe::no_change(J::Null)
}

/// `find` over a tree's regular files, excluded subtrees pruned; `extra` narrows it.
fn find_files(path: &str, exclude: &[String], extra: &str) -> Result<String> {
    let mut prune = Vec::new();
    for e in exclude {
        if e.is_empty() || e.starts_with('/') || e.split('/').any(|c| c == "..") {
            bail!("exclude `{e}` must be a path relative to the tree, without `..`");
        }
        prune.push(format!(
            "-path {}",
            quote(&format!("./{}", e.trim_end_matches('/')))
        ));
    }
    let prune = if prune.is_empty() {
        String::new()
    } else {
        format!("\\( {} \\) -prune -o ", prune.join(" -o "))
    };
    Ok(format!(
        "cd -- {} && find . -xdev {prune}-type f {extra}-print",
        quote(path)
    ))
}

async fn apply(args: &WriteMarkArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let point = args.point.clone();
    let exclude = &args.exclude;
    let out = ctx.run("date +%s.%N", None).await?;
    let time = out.stdout_text().trim().to_string();
    if !is_epoch(&time) {
        bail!("cannot read the clock of {}: `{time}`", ctx.host.name);
    }
    let mut paths = Vec::new();
    for path in &args.paths {
        let out = ctx
            .run(&format!("{} | wc -l", find_files(path, exclude, "")?), None)
            .await?;
        if !out.ok() {
            bail!("cannot list {path}: {}", out.stderr_text().trim());
        }
        paths.push(TreeMark {
            path: path.clone(),
            files: out.stdout_text().trim().parse().unwrap_or(0),
            exclude: exclude.clone(),
        });
    }
    let mysql = if args.mysql == Some(true) {
        let login = Login::from_args(args, ctx)?;
        let f = mysql::facts(ctx.host, ctx, &login, "").await?;
        let (Some(file), Some(pos)) = (f.binlog_file.clone(), f.binlog_pos) else {
            bail!(
                "{} has no binary log (log_bin off): nothing tells later what users write",
                ctx.host.name
            );
        };
        Some(DbMark {
            gtid: f.gtid_binlog_pos.clone(),
            file,
            pos,
            ignore_tables: args.ignore_tables.clone(),
            login: login.undo_args(),
        })
    } else {
        None
    };
    let mark = Mark {
        point,
        time,
        mysql,
        paths,
    };
    let result = match serde_json::to_value(&mark)? {
        J::Object(m) => m,
        _ => Map::new(),
    };
    Ok(Outcome {
        changed: false,
        result,
        ..Default::default()
    })
}

/// `SECONDS` or `SECONDS.FRACTION`, digits only: safe to put on a command line.
fn is_epoch(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

/// A host's marks of one point, each with the time it was journaled.
pub type HostMarks = Vec<(Mark, String)>;

/// The marks of `point` per host in a run's journal: one per step (a host may have several:
/// its database and its app home, each marked by its own step, on an all-in-one host such as
/// staging), the latest of each step (a resumed run may have taken it twice), in journal order.
pub fn marks_in(events: &[J], point: &str) -> BTreeMap<String, HostMarks> {
    // (host, play, step) → index in the host's list.
    let mut at_step: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut out: BTreeMap<String, HostMarks> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "step_result") {
        let (Some(host), Some(m)) = (e["host"].as_str(), e.get("mark")) else {
            continue;
        };
        let Ok(mark) = serde_json::from_value::<Mark>(m.clone()) else {
            continue;
        };
        if mark.point != point {
            continue;
        }
        let at = crate::controller::clock::event_time(e);
        let list = out.entry(host.to_string()).or_default();
        let key = (
            host.to_string(),
            e["play"].to_string(),
            e["step"].to_string(),
        );
        match at_step.get(&key) {
            Some(&i) => list[i] = (mark, at),
            None => {
                at_step.insert(key, list.len());
                list.push((mark, at));
            }
        }
    }
    out
}

/// What the binary log says was written: transactions touching a table users write,
/// by table; transactions touching only ignored tables are counted apart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbWrites {
    pub transactions: usize,
    pub tables: BTreeMap<String, usize>,
    pub ignored: usize,
    /// A log had more events than were read: the counts are lower bounds.
    pub truncated: bool,
}

/// Read `SHOW BINLOG EVENTS` rows (every log since the mark, in order) into transactions.
pub fn analyse_events(rows: &[&Row], ignore: &[String]) -> DbWrites {
    let ignored = |t: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case(t));
    let mut w = DbWrites::default();
    let mut cur: Option<Vec<String>> = None;
    let flush = |w: &mut DbWrites, tables: Option<Vec<String>>| {
        let Some(tables) = tables.filter(|t| !t.is_empty()) else {
            return;
        };
        let mine: Vec<&String> = tables.iter().filter(|t| !ignored(t)).collect();
        if mine.is_empty() {
            w.ignored += 1;
            return;
        }
        w.transactions += 1;
        let mut seen: Vec<&String> = Vec::new();
        for t in mine {
            if !seen.contains(&t) {
                *w.tables.entry(t.clone()).or_insert(0) += 1;
                seen.push(t);
            }
        }
    };
    for r in rows {
        let kind = r.get("Event_type").map(String::as_str).unwrap_or("");
        let info = r.get("Info").map(String::as_str).unwrap_or("").trim();
        match kind {
            "Gtid" | "Anonymous_Gtid" => {
                flush(&mut w, cur.take());
                cur = Some(Vec::new());
            }
            // `table_id: 33 (wiki.PAGES)`
            "Table_map" => {
                let table = info
                    .rsplit_once('(')
                    .map(|(_, t)| t.trim_end_matches(')').to_string())
                    .unwrap_or_else(|| info.to_string());
                cur.get_or_insert_with(Vec::new).push(table);
            }
            "Query" => {
                let upper = info.to_ascii_uppercase();
                if upper == "BEGIN" || upper.starts_with("XA ") {
                    continue;
                }
                if upper == "COMMIT" {
                    flush(&mut w, cur.take());
                    continue;
                }
                // A statement (DDL, or DML logged as a statement): its tables are not parsed.
                cur.get_or_insert_with(Vec::new)
                    .push("(statements: DDL or statement-logged DML)".to_string());
            }
            "Xid" | "XA_prepare" => flush(&mut w, cur.take()),
            _ => {}
        }
    }
    flush(&mut w, cur.take());
    w
}

impl DbWrites {
    pub fn describe(&self) -> String {
        let tables = self
            .tables
            .iter()
            .map(|(t, n)| format!("{t} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{}{} transaction{} on {tables}{}",
            if self.truncated { "at least " } else { "" },
            self.transactions,
            if self.transactions == 1 { "" } else { "s" },
            if self.ignored > 0 {
                format!(
                    " ({} more only on ignored tables: not user data)",
                    self.ignored
                )
            } else {
                String::new()
            }
        )
    }
}

/// The binary log since the mark, on the master (one round trip). A log file of the mark that
/// is gone (purged) is an error: what was written cannot be told.
async fn db_writes(m: &DbMark, ctx: &ModCtx<'_>) -> Result<DbWrites> {
    let mut args = m.login.clone();
    args.remove("login_password_var");
    let login = Login::from_args(&args, ctx)?;
    let now = mysql::facts(ctx.host, ctx, &login, "").await?;
    if now.binlog_file.as_deref() == Some(m.file.as_str()) && now.binlog_pos == Some(m.pos) {
        return Ok(DbWrites::default());
    }
    let script = format!(
        r#"first={first}; from={from}
logs=$(my -N -B -e 'SHOW BINARY LOGS' | cut -f1) || exit 3
found=0
for f in $logs; do
  case "$f" in *[!A-Za-z0-9._-]*) continue ;; esac
  if [ "$f" = "$first" ]; then found=1; clause=" FROM $from"
  elif [ "$found" = 1 ]; then clause=""
  else continue; fi
  echo cutover_section; echo "$f"
  my -B -e "SHOW BINLOG EVENTS IN '$f'$clause LIMIT {EVENTS_PER_LOG}" || exit 4
done
[ "$found" = 1 ] || {{ echo "the binary log $first of the mark is gone (purged)" >&2; exit 5; }}
"#,
        first = quote(&m.file),
        from = m.pos,
    );
    let out = mysql::run_sql_script(ctx.host, ctx, &login, &script, None, None).await?;
    if !out.ok() {
        bail!(
            "cannot read the binary log since {}:{} on {}: {}",
            m.file,
            m.pos,
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let sections = mysql::parse_sections(&out.stdout_text());
    let rows: Vec<&Row> = sections.values().flatten().collect();
    let mut w = analyse_events(&rows, &m.ignore_tables);
    w.truncated = sections.values().any(|r| r.len() >= EVENTS_PER_LOG);
    Ok(w)
}

/// Files of a tree written (created or modified) since the mark, a sample of their names, and
/// the number of files now (fewer than at the mark: some were removed).
async fn tree_writes(t: &TreeMark, time: &str, ctx: &ModCtx<'_>) -> Result<Option<String>> {
    if !is_epoch(time) {
        bail!("the mark's time `{time}` is not a time");
    }
    let script = format!(
        "n=$({all} | wc -l) || exit 1\nnew=$({newer} | wc -l)\necho \"$n $new\"\n{newer} | head -n 5\n",
        all = find_files(&t.path, &t.exclude, "")?,
        newer = find_files(&t.path, &t.exclude, &format!("-newermt @{time} "))?,
    );
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "cannot list {} on {}: {}",
            t.path,
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let text = out.stdout_text();
    let mut lines = text.lines();
    let counts: Vec<u64> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (now, newer) = (
        counts.first().copied().unwrap_or(0),
        counts.get(1).copied().unwrap_or(0),
    );
    let sample: Vec<&str> = lines.map(|l| l.trim_start_matches("./")).collect();
    let mut what = Vec::new();
    if newer > 0 {
        what.push(format!(
            "{newer} file{} written (e.g. {})",
            if newer == 1 { "" } else { "s" },
            sample.join(", ")
        ));
    }
    if now < t.files {
        what.push(format!("{} file(s) removed", t.files - now));
    }
    Ok((!what.is_empty()).then(|| format!("{}: {}", t.path, what.join("; "))))
}

/// What was written on this host since the mark, one line each (empty: nothing).
pub async fn since(mark: &Mark, ctx: &ModCtx<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(m) = &mark.mysql {
        let w = db_writes(m, ctx).await?;
        if w.transactions > 0 {
            out.push(format!(
                "database: {} (binary log since {}:{}{})",
                w.describe(),
                m.file,
                m.pos,
                m.gtid
                    .as_ref()
                    .map_or(String::new(), |g| format!(", GTID {g}"))
            ));
        }
    }
    for t in &mark.paths {
        if let Some(w) = tree_writes(t, &mark.time, ctx).await? {
            out.push(w);
        }
    }
    Ok(out)
}

/// The `write_mark` module.
pub(crate) struct WriteMark;

impl Module for WriteMark {
    type Args = WriteMarkArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "write_mark",
        args: &[
            ArgSpec {
                name: "point",
                ty: T::Str,
                required: true,
                choices: &["snapshot", "window_closed"],
            },
            arg("mysql", T::Bool),
            arg("ignore_tables", T::StrList),
            arg("paths", T::StrList),
            arg("exclude", T::StrList),
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

    async fn probe(_args: &WriteMarkArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(probe())
    }

    async fn apply(args: &WriteMarkArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, info: &str) -> Row {
        [
            ("Event_type".to_string(), kind.to_string()),
            ("Info".to_string(), info.to_string()),
        ]
        .into_iter()
        .collect()
    }

    /// MariaDB 10.11, ROW format: two heartbeats (CLUSTERSAFETY only), a page written (PAGES
    /// and PAGE_HISTORY in one transaction), a DDL.
    #[test]
    fn transactions_are_counted_by_table_and_heartbeats_ignored() {
        let rows = [
            ev("Gtid_list", "[0-1-56]"),
            ev("Gtid", "BEGIN GTID 0-1-57"),
            ev("Annotate_rows", "UPDATE CLUSTERSAFETY SET ..."),
            ev("Table_map", "table_id: 40 (wiki.CLUSTERSAFETY)"),
            ev("Update_rows_v1", "table_id: 40 flags: STMT_END_F"),
            ev("Xid", "COMMIT /* xid=12 */"),
            ev("Gtid", "BEGIN GTID 0-1-58"),
            ev("Table_map", "table_id: 41 (wiki.PAGES)"),
            ev("Write_rows_v1", "table_id: 41 flags: STMT_END_F"),
            ev("Table_map", "table_id: 42 (wiki.PAGE_HISTORY)"),
            ev("Write_rows_v1", "table_id: 42 flags: STMT_END_F"),
            ev("Table_map", "table_id: 41 (wiki.PAGES)"),
            ev("Update_rows_v1", "table_id: 41 flags: STMT_END_F"),
            ev("Xid", "COMMIT /* xid=13 */"),
            ev("Gtid", "BEGIN GTID 0-1-59"),
            ev("Table_map", "table_id: 40 (wiki.CLUSTERSAFETY)"),
            ev("Xid", "COMMIT /* xid=14 */"),
            ev("Gtid", "GTID 0-1-60"),
            ev("Query", "use `wiki`; CREATE TABLE X (a INT)"),
            ev("Rotate", "mysql-bin.000004;pos=4"),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let w = analyse_events(&refs, &["WIKI.clustersafety".to_string()]);
        assert_eq!(w.transactions, 2);
        assert_eq!(w.ignored, 2);
        assert_eq!(w.tables["wiki.PAGES"], 1, "one transaction, counted once");
        assert_eq!(w.tables["wiki.PAGE_HISTORY"], 1);
        assert_eq!(
            w.describe(),
            "2 transactions on (statements: DDL or statement-logged DML) (1), wiki.PAGES (1), wiki.PAGE_HISTORY (1) (2 more only on ignored tables: not user data)"
        );
        // Without the ignore list the heartbeats count too.
        assert_eq!(analyse_events(&refs, &[]).transactions, 4);
    }

    /// MySQL 8 spells GTIDs differently and wraps DML in BEGIN/COMMIT queries.
    #[test]
    fn mysql_spellings() {
        let rows = [
            ev("Gtid", "SET @@SESSION.GTID_NEXT= 'uuid:5'"),
            ev("Query", "BEGIN"),
            ev("Table_map", "table_id: 90 (shop.orders)"),
            ev("Write_rows", "table_id: 90 flags: STMT_END_F"),
            ev("Query", "COMMIT"),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let w = analyse_events(&refs, &[]);
        assert_eq!((w.transactions, w.tables["shop.orders"]), (1, 1));
        assert_eq!(w.describe(), "1 transaction on shop.orders (1)");
    }

    #[test]
    fn the_latest_window_mark_per_host_is_used() {
        let mark = |pos: u64, point: &str| {
            json!({ "event": "step_result", "host": "db1", "status": "ok", "ts": "2026-12-07T06:00:01.5Z",
                    "mark": { "point": point, "time": format!("{}.5", 100 + pos), "mysql": { "gtid": "0-1-5", "file": "mysql-bin.000001", "pos": pos } } })
        };
        let events = [
            mark(10, "snapshot"),
            mark(20, WINDOW_CLOSED),
            mark(30, WINDOW_CLOSED),
            json!({ "event": "step_result", "host": "app1", "status": "ok", "mark": { "point": WINDOW_CLOSED, "time": "7.000000001", "paths": [{ "path": "/var/lib/wiki", "files": 3 }] } }),
        ];
        let m = marks_in(&events, WINDOW_CLOSED);
        assert_eq!(m.len(), 2);
        assert_eq!(m["db1"].len(), 1, "one step, taken twice: the latest");
        assert_eq!(m["db1"][0].0.mysql.as_ref().unwrap().pos, 30);
        assert_eq!(m["db1"][0].1, "2026-12-07T06:00:01Z");
        assert_eq!(m["app1"][0].0.paths[0].files, 3);
        assert_eq!(marks_in(&events, "snapshot")["db1"][0].0.time, "110.5");
    }

    /// An all-in-one host (staging) marks its database and its app home in two steps: both
    /// count (the later one used to replace the earlier, so the database went unguarded).
    #[test]
    fn every_step_of_a_host_keeps_its_own_mark() {
        let db = json!({ "event": "step_result", "host": "staging", "play": 0, "step": 7, "status": "ok",
                         "mark": { "point": WINDOW_CLOSED, "time": "1.5", "mysql": { "file": "mysql-bin.000012", "pos": 342 } } });
        let home = json!({ "event": "step_result", "host": "staging", "play": 0, "step": 8, "status": "ok",
                           "mark": { "point": WINDOW_CLOSED, "time": "1.6", "paths": [{ "path": "/var/lib/wiki", "files": 1 }] } });
        let m = marks_in(&[db.clone(), home.clone(), db], WINDOW_CLOSED);
        let staging = &m["staging"];
        assert_eq!(staging.len(), 2, "{staging:?}");
        assert_eq!(staging[0].0.mysql.as_ref().unwrap().pos, 342);
        assert_eq!(staging[1].0.paths[0].path, "/var/lib/wiki");
    }

    #[test]
    fn excludes_are_pruned_and_must_stay_inside_the_tree() {
        let s = find_files("/var/lib/wiki", &["logs".into()], "").unwrap();
        assert_eq!(
            s,
            "cd -- /var/lib/wiki && find . -xdev \\( -path ./logs \\) -prune -o -type f -print"
        );
        assert!(find_files("/x", &["../etc".into()], "").is_err());
        assert!(is_epoch("1765087200.123456789") && is_epoch("1765087200"));
        for bad in ["", "1.", ".5", "1;rm", "1.2.3", "$(x)"] {
            assert!(!is_epoch(bad), "{bad}");
        }
        assert!(find_files("/x", &["/etc".into()], "").is_err());
    }

    fn mark_args(v: J) -> Result<WriteMarkArgs> {
        args::parse("write_mark", v.as_object().expect("a map"))
    }

    /// Lists, the switch and the login read as the map readers had them; the login reaches
    /// `mysql::Login` as given (the password only as the step gave it, a port as a number).
    #[test]
    fn a_step_reads_its_arguments_as_before() {
        let a = mark_args(
            json!({"point": "snapshot", "paths": "/var/lib/wiki", "exclude": "",
                                 "ignore_tables": ["wiki.CLUSTERSAFETY", 3], "mysql": "true"}),
        )
        .unwrap();
        assert_eq!((a.point.as_str(), a.mysql), ("snapshot", Some(true)));
        assert_eq!(a.paths, ["/var/lib/wiki"]);
        assert!(a.exclude.is_empty());
        assert_eq!(a.ignore_tables, ["wiki.CLUSTERSAFETY"]);
        let none = a.login_args().unwrap();
        assert!(
            none.login_user.is_none() && none.login_port.is_none() && none.login_host.is_none()
        );
        let login = mark_args(json!({"point": "snapshot", "login_user": "cutover",
                                     "login_password_var": "db_pass", "login_port": "3307",
                                     "login_host": 5}))
        .unwrap()
        .login_args()
        .unwrap();
        assert_eq!(login.login_user.as_deref(), Some("cutover"));
        assert_eq!(login.login_password_var.as_deref(), Some("db_pass"));
        assert_eq!(login.login_port, Some(3307));
        assert_eq!(
            (
                login.login_host,
                login.login_password,
                login.login_unix_socket
            ),
            (None, None, None)
        );
        assert_eq!(
            mark_args(json!({"point": "snapshot", "login_port": "x"}))
                .err()
                .unwrap()
                .to_string(),
            "`login_port` must be a non-negative integer, not `x`"
        );
    }
}
