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

fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// The `login_*` arguments are read once into `LoginArgs` (every MySQL module's login): a
/// rendered port that is no number is refused when the step's arguments are parsed, before
/// the probe runs anything, with the message `arg_u64` gave.
#[test]
fn login_arguments_are_typed() {
    use super::client::LoginSource;
    use crate::modules::args::parse;
    let a: LoginArgs = parse(
        "mysql_facts",
        &map(serde_json::json!({"login_user": "cutover", "login_port": "3307", "login_host": 7})),
    )
    .unwrap();
    assert_eq!(
        (a.login_user.as_deref(), a.login_port, a.login_host),
        (Some("cutover"), Some(3307), None)
    );
    let err = |v: serde_json::Value| {
        parse::<LoginArgs>("mysql_facts", &map(v))
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        err(serde_json::json!({"login_port": "33o6"})).as_deref(),
        Some("`login_port` must be a non-negative integer, not `33o6`")
    );
    assert_eq!(
        err(serde_json::json!({"login_port": -1})).as_deref(),
        Some("`login_port` must be a non-negative integer")
    );
    // A module still reading the map (write_mark) gets the same login and the same messages.
    let from_map = map(serde_json::json!({"login_port": "x", "mysql": true}));
    assert_eq!(
        from_map
            .login_args()
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("`login_port` must be a non-negative integer, not `x`")
    );
}

/// A read-only query only reads, whatever else the step says; as written (before rendering),
/// a templated port does not make a plan take it for a change with no way back.
#[test]
fn a_read_only_query_changes_nothing_as_written_and_rendered() {
    use crate::modules::changes_nothing;
    let written = map(
        serde_json::json!({"sql": "SELECT 1", "read_only": true, "login_port": "{{ db_port }}"}),
    );
    assert!(changes_nothing("mysql_query", &written));
    assert!(changes_nothing(
        "mysql_query",
        &map(serde_json::json!({"sql": "SELECT 1", "read_only": "true", "login_port": "3306"}))
    ));
    assert!(!changes_nothing(
        "mysql_query",
        &map(serde_json::json!({"sql": "DELETE FROM t", "login_port": "{{ db_port }}"}))
    ));
    let e = crate::modules::args::parse::<super::query::QueryArgs>(
        "mysql_query",
        &map(serde_json::json!({"sql": "SELECT 1", "login_port": "db"})),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("`login_port` must be a non-negative integer, not `db`")
    );
}
