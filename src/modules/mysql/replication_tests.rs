//! Tests of `mysql_replication` (a child module of `replication.rs`: they see its private items).

use super::*;

fn parsed(v: J) -> Result<ReplArgs> {
    MysqlReplication::parse_args(v.as_object().unwrap())
}

/// The way back reruns the module with `state: restore` and the threads' states (`io`,
/// `sql`: only a way back passes them), the login without its password and the step's
/// `wait_timeout` as given: the journal's JSON is what it was when the module read the map,
/// and the rerun reads the threads back.
#[test]
fn the_way_back_keeps_the_journal_form() {
    let a = parsed(json!({
        "state": "stopped", "threads": "io", "wait_timeout": "60",
        "login_user": "cutover", "login_password": "secret", "login_port": "3307"
    }))
    .unwrap();
    assert_eq!(thread_targets(&a).unwrap(), (Some(false), None));
    let login = Login {
        user: a.login_user.clone(),
        password: a.login_password.clone(),
        port: a.login_port,
        ..Default::default()
    };
    let undo = undo_step(
        &a,
        &login,
        &[
            ("state", json!("restore")),
            ("io", json!(true)),
            ("sql", json!(true)),
        ],
        "w".into(),
    );
    assert_eq!(
        serde_json::to_string(&undo).unwrap(),
        r#"{"undo":"rerun","module":"mysql_replication","args":{"io":true,"login_port":3307,"login_user":"cutover","sql":true,"state":"restore","wait_timeout":"60"},"what":"w"}"#
    );
    let UndoAction::Rerun { args: back, .. } = undo else {
        panic!()
    };
    let b = MysqlReplication::parse_args(&back).unwrap();
    assert_eq!(thread_targets(&b).unwrap(), (Some(true), Some(true)));
    assert_eq!(b.wait_timeout, Some(60));
}

/// A wait for the replica only reads unless the step gives `read_only` (whatever it renders
/// to); as written, before rendering, a templated number does not change that nor lose the
/// master.
#[test]
fn a_wait_only_reads_and_reads_its_master() {
    let m = |v: J| v.as_object().cloned().unwrap();
    let written = m(json!({"state": "synced", "master": "db1", "wait_timeout": "{{ t }}"}));
    assert!(crate::modules::changes_nothing(
        "mysql_replication",
        &written
    ));
    assert_eq!(
        crate::modules::peer_hosts("mysql_replication", &written),
        ["db1"]
    );
    let ro = m(json!({"state": "synced", "master": "db1", "read_only": "{{ ro }}"}));
    assert!(!crate::modules::changes_nothing("mysql_replication", &ro));
    let ro = m(json!({"state": "synced", "read_only": null}));
    assert!(!crate::modules::changes_nothing("mysql_replication", &ro));
}

/// Values rendered wrong are refused when the arguments are parsed, with the map readers'
/// messages; a source without host or user as before.
#[test]
fn bad_rendered_values_are_refused_as_before() {
    let e = |v: J| parsed(v).err().map(|e| e.to_string());
    assert_eq!(
        e(json!({"state": "configured", "source_host": "db1", "source_user": "r", "source_port": "x"}))
            .as_deref(),
        Some("`source_port` must be a non-negative integer, not `x`")
    );
    assert_eq!(
        e(json!({"state": "synced", "wait_timeout": -5})).as_deref(),
        Some("`wait_timeout` must be a non-negative integer")
    );
    let a = parsed(json!({"state": "configured", "source_user": "r"})).unwrap();
    assert_eq!(
        a.source().unwrap_err().to_string(),
        "argument `source_host` is missing or not a string"
    );
    let a = parsed(json!({"state": "started", "threads": "both"})).unwrap();
    assert_eq!(
        thread_targets(&a).unwrap_err().to_string(),
        "threads must be all, io or sql, not `both`"
    );
}
