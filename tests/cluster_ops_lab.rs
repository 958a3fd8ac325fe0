//! The cluster modules against the provisioned lab (`playbooks/site.yml` applied):
//! `mysql_replication` / `mysql_query` / `mysql_facts`, `lb_member`, `maintenance`,
//! `http_check`, `cluster_safety`, and a plan of them that changes nothing.
//!
//! Every test puts back what it changed (also when it fails). They share the lab's hosts, so
//! they run one at a time within this binary, and wait while another binary's run holds a
//! host's lock.

mod common;

use common::project::{text, Project};

use std::sync::Mutex;
use std::time::{Duration, Instant};

static HOSTS: Mutex<()> = Mutex::new(());

/// ssh to a lab host; a failed connection (exit 255: other tests' ssh load) is retried.
fn ssh(host: &str, cmd: &str) -> String {
    let mut o = common::lab_ssh(host, cmd);
    for _ in 0..3 {
        if o.status.code() != Some(255) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        o = common::lab_ssh(host, cmd);
    }
    assert!(o.status.success(), "ssh {host} {cmd}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// curl from the controller namespace (an admin address of the lab's vhost).
fn curl(args: &[&str]) -> String {
    let o = common::in_controller("curl", args);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn guard() -> std::sync::MutexGuard<'static, ()> {
    common::require_lab();
    HOSTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f`, then `cleanup` whatever happened, then re-raise a failure.
fn with_cleanup(f: impl FnOnce(), cleanup: impl FnOnce()) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    cleanup();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

fn slave_threads() -> String {
    ssh(
        "db2",
        "mysql -e 'SHOW SLAVE STATUS\\G' | grep -E '^ *Slave_(IO|SQL)_Running:' | tr -s ' '",
    )
}

// ---------------------------------------------------------------------------------------------

#[test]
fn synced_waits_for_a_slave_behind_and_a_stopped_replica_fails_at_once() {
    let _g = guard();
    let db = format!("cutover_ops_{}", std::process::id());
    let p = Project::new();
    with_cleanup(
        || {
            a_stopped_sql_thread_is_reported_at_once(&p, &db);
            synced_waits_for_a_delayed_slave(&p, &db);
        },
        || restore_replication_and_drop(&db),
    );
}

/// The line of step `step` in the plain output, and the seconds it took (`… (1.2s)`).
fn step_secs<'a>(out: &'a str, step: &str) -> (&'a str, Option<f64>) {
    let line = out.lines().find(|l| l.contains(step)).unwrap();
    let secs = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok());
    (line, secs)
}

fn a_stopped_sql_thread_is_reported_at_once(p: &Project, db: &str) {
    // 1. SQL thread stopped, a write on the master: `synced` reports it at once.
    let o = p.apply_text(&format!(
                r#"- name: behind
  hosts: db2
  steps:
    - name: stop the SQL thread
      mysql_replication: {{ state: stopped, threads: sql }}
    - name: write on the master
      mysql_query: {{ sql: "CREATE DATABASE {db}; CREATE TABLE {db}.t (i INT PRIMARY KEY); INSERT INTO {db}.t VALUES (1);" }}
      delegate_to: db1
    - name: wait for the master's position
      mysql_replication: {{ state: synced, master: db1, wait_timeout: 120 }}
"#
            ));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("db2 is behind db1") && out.contains("SQL thread No"),
        "{out}"
    );
    assert!(out.contains("start it first"), "{out}");
    // Reported at once, not after the 120 s timeout.
    let (line, secs) = step_secs(&out, "wait for the master's position");
    let secs = secs.unwrap_or(999.0);
    assert!(secs < 10.0, "{line}");
    assert!(slave_threads().contains("Slave_SQL_Running: No"));
}

fn synced_waits_for_a_delayed_slave(p: &Project, db: &str) {
    // 2. A running slave that applies 5 s late (MASTER_DELAY): `synced` blocks until the
    //    write is there, and the row is on db2 the moment it returns.
    ssh(
        "db2",
        "mysql -e 'STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 5; START SLAVE;'",
    );
    let o = p.apply_text(&format!(
                r#"- name: lagging
  hosts: db2
  steps:
    - name: write on the master
      mysql_query: {{ sql: "INSERT INTO {db}.t VALUES (2);" }}
      delegate_to: db1
    - name: wait for the master's position
      mysql_replication: {{ state: synced, master: db1, wait_timeout: 60 }}
    - name: the row is there
      mysql_query: {{ sql: "SELECT COUNT(*) AS n FROM {db}.t WHERE i = 2", read_only: true }}
      register: n
    - name: check
      assert: {{ that: ["n.rows[0].n == '1'"] }}
    - name: facts with a login option file (root through the socket)
      mysql_facts: {{ login_user: root }}
      register: f
    - name: facts are by column name
      assert: {{ that: ["f.flavour == 'mariadb'", "f.role == 'slave'", "f.replica.sql_running == 'Yes'", "f.read_only"] }}
"#
            ));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let (line, secs) = step_secs(&out, "wait for the master's position");
    assert!(line.contains("changed") || line.contains("ok"), "{line}");
    let secs = secs.unwrap_or(0.0);
    assert!(
        secs >= 2.0,
        "synced returned before the delayed event: {line}"
    );
    // No option file left behind on the host.
    assert_eq!(
        ssh("db2", "ls /tmp/.cutover-my.* 2>/dev/null | wc -l").trim(),
        "0"
    );
}

/// Both threads back without delay, the test database dropped and gone from db2.
fn restore_replication_and_drop(db: &str) {
    let _ = common::lab_ssh(
        "db2",
        "mysql -e 'STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE;'",
    );
    let _ = common::lab_ssh("db1", &format!("mysql -e 'DROP DATABASE IF EXISTS {db}'"));
    // Both threads back, and db2 caught up (the DROP replicated).
    for _ in 0..30 {
        let s = slave_threads();
        let gone = ssh(
                    "db2",
                    &format!("mysql -N -e \"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'\""),
                );
        if s.contains("Slave_IO_Running: Yes")
            && s.contains("Slave_SQL_Running: Yes")
            && gone.trim() == "0"
        {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("replication on db2 did not come back: {}", slave_threads());
}

#[test]
fn replication_stop_start_and_read_only_are_undone_by_unwind() {
    let _g = guard();
    let p = Project::new();
    with_cleanup(
        || {
            let o = p.apply_text(
                r#"- name: change and fail
  hosts: db2
  on_failure: unwind
  steps:
    - name: stop replication
      mysql_replication: { state: stopped }
    - name: writable
      mysql_replication: { read_only: false }
    - name: check
      mysql_facts: {}
      register: f
    - name: stopped and writable
      assert: { that: ["f.replica.io_running == 'No'", "f.replica.sql_running == 'No'", "not f.read_only"] }
    - name: later step breaks
      fail: { msg: broken }
"#,
            );
            let out = text(&o);
            assert!(!o.status.success() && out.contains("UNWIND"), "{out}");
            assert!(out.contains("read_only on db2 back to true"), "{out}");
            assert!(
                out.contains("replication on db2 back to IO and SQL threads running"),
                "{out}"
            );
            let s = slave_threads();
            assert!(
                s.contains("Slave_IO_Running: Yes") && s.contains("Slave_SQL_Running: Yes"),
                "{s}"
            );
            assert_eq!(ssh("db2", "mysql -N -e 'SELECT @@read_only'").trim(), "1");
        },
        || {
            let _ = common::lab_ssh("db2", "mysql -e 'START SLAVE; SET GLOBAL read_only = ON;'");
        },
    );
}

// ---------------------------------------------------------------------------------------------

/// A new session's node (`/session` through the lb), keeping its cookie in `jar`.
fn session_node(jar: &str, new: bool) -> String {
    let mut args = vec!["-sS", "--max-time", "10", "-b", jar, "-c", jar];
    if new {
        args = vec!["-sS", "--max-time", "10", "-c", jar];
    }
    args.push("http://lb/session");
    let body = curl(&args);
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    v["node"].as_str().unwrap_or(&body).to_string()
}

fn jk_activation(member: &str) -> (String, String) {
    let runtime = ssh(
        "lb",
        &format!("curl -s 'http://localhost/jkstatus?cmd=show&mime=prop&w=wiki_lb' | sed -n 's/^worker.{member}.activation=//p'"),
    );
    let file = ssh(
        "lb",
        &format!(
            "sed -n 's/^worker.{member}.activation=//p' /etc/libapache2-mod-jk/workers.properties"
        ),
    );
    (runtime.trim().to_string(), file.trim().to_string())
}

fn restart_apache() {
    ssh("lb", "systemctl restart apache2");
    for _ in 0..30 {
        if curl(&["-s", "--max-time", "5", "http://lb/status"]).contains("RUNNING") {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the lb does not answer after the Apache restart");
}

fn member_play(activation: &str) -> String {
    format!(
        r#"- name: lb member
  hosts: lb
  steps:
    - name: node1 {activation}
      lb_member: {{ lb: "{{{{ lb_worker }}}}", member: node1, activation: {activation} }}
"#
    )
}

#[test]
fn drained_member_keeps_its_sessions_stopped_gets_none_and_both_survive_an_apache_restart() {
    let _g = guard();
    let p = Project::new();
    let dir = tempfile::tempdir().unwrap();
    let jar = |n: &str| dir.path().join(n).display().to_string();
    // Backups of workers.properties that exist already (other runs' undo data) are kept.
    let backups_before = ssh(
        "lb",
        "ls /etc/libapache2-mod-jk/ | grep '^workers.properties.cutover-' || true",
    );
    with_cleanup(
        || {
            // A session on node1 (round robin: a few new sessions reach it).
            let sticky = jar("sticky");
            let mut on1 = false;
            // Round robin gives node1 every other new session; allow for a node restarting
            // under another test for up to a minute.
            for _ in 0..60 {
                if session_node(&sticky, true) == "node1" {
                    on1 = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            assert!(on1, "no new session reached node1");

            // Drain node1.
            let o = p.apply_text(&member_play("disabled"));
            let out = text(&o);
            assert!(o.status.success() && out.contains("changed=1"), "{out}");
            assert!(out.contains("active → disabled"), "{out}");
            assert_eq!(jk_activation("node1"), ("DIS".into(), "Disabled".into()));
            let check_drained = |when: &str| {
                for _ in 0..4 {
                    assert_eq!(
                        session_node(&sticky, false),
                        "node1",
                        "sticky session {when}"
                    );
                }
                for i in 0..4 {
                    assert_eq!(
                        session_node(&jar(&format!("new-d-{when}-{i}")), true),
                        "node2",
                        "new session {when}"
                    );
                }
            };
            check_drained("after drain");
            restart_apache();
            check_drained("after the Apache restart");
            // Idempotent: the persisted state is what the probe reads after the restart.
            let o = p.apply_text(&member_play("disabled"));
            assert!(text(&o).contains("changed=0"), "{}", text(&o));

            // Stop node1: no request at all, even for its sticky session.
            let o = p.apply_text(&member_play("stopped"));
            assert!(o.status.success(), "{}", text(&o));
            assert_eq!(jk_activation("node1"), ("STP".into(), "Stopped".into()));
            let check_stopped = |when: &str| {
                let fresh = jar(&format!("sticky-{when}"));
                std::fs::copy(&sticky, &fresh).unwrap();
                assert_eq!(session_node(&fresh, false), "node2", "old session {when}");
                for i in 0..4 {
                    assert_eq!(
                        session_node(&jar(&format!("new-s-{when}-{i}")), true),
                        "node2",
                        "new session {when}"
                    );
                }
            };
            check_stopped("after stop");
            restart_apache();
            check_stopped("after the Apache restart");

            // Active again: node1 serves new sessions.
            let o = p.apply_text(&member_play("active"));
            assert!(o.status.success(), "{}", text(&o));
            assert_eq!(jk_activation("node1"), ("ACT".into(), "Active".into()));
            let nodes: Vec<String> = (0..6)
                .map(|i| session_node(&jar(&format!("new-a-{i}")), true))
                .collect();
            assert!(nodes.iter().any(|n| n == "node1"), "{nodes:?}");
        },
        || {
            // Whatever happened: node1 active at run time and in the file.
            let _ = common::lab_ssh(
                "lb",
                "sed -i -E 's/^worker\\.node1\\.activation=.*/worker.node1.activation=Active/' /etc/libapache2-mod-jk/workers.properties; curl -s 'http://localhost/jkstatus?cmd=update&mime=prop&w=wiki_lb&sw=node1&vwa=a' >/dev/null",
            );
            // The backups this test's runs made (their undo data), not older ones.
            let now = ssh(
                "lb",
                "ls /etc/libapache2-mod-jk/ | grep '^workers.properties.cutover-' || true",
            );
            for f in now
                .lines()
                .filter(|f| !backups_before.lines().any(|b| b == *f))
            {
                let _ = common::lab_ssh("lb", &format!("rm -f '/etc/libapache2-mod-jk/{f}'"));
            }
        },
    );
}

fn jk_state(member: &str) -> String {
    ssh(
        "lb",
        &format!("curl -s 'http://localhost/jkstatus?cmd=show&mime=prop&w=wiki_lb' | sed -n 's/^worker.{member}.state=//p'"),
    )
    .trim()
    .to_string()
}

/// The node that answered a request through the lb (its X-Wiki-Node header).
fn node_via_lb() -> String {
    let h = curl(&[
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "http://lb/status",
    ]);
    h.lines()
        .find(|l| l.to_lowercase().starts_with("x-wiki-node:"))
        .map(|l| l[12..].trim().to_string())
        .unwrap_or_default()
}

fn app1_running() -> bool {
    common::lab_ssh("app1", "curl -s --max-time 3 http://127.0.0.1:8080/status")
        .stdout
        .windows(9)
        .any(|w| w == b"\"RUNNING\"")
}

/// A member in mod_jk's error state (a request failed on it while its app was down) gets no
/// requests until the lb's recover_time (60 s) passes; `lb_member ... activation: active`
/// recovers it at once (status worker cmd=recover), and the plan says so first.
#[test]
fn an_active_member_in_the_error_state_is_recovered_at_once() {
    let _g = guard();
    let p = Project::new();
    with_cleanup(
        || {
            // node1's app down: a request that mod_jk sends to node1 fails over, node1 → ERR.
            ssh("app1", "systemctl stop wiki");
            let mut tries = 0;
            while jk_state("node1") != "ERR" {
                tries += 1;
                assert!(
                    tries < 40,
                    "node1 never went into the error state: {}",
                    jk_state("node1")
                );
                let _ = node_via_lb();
            }
            let failed_at = Instant::now();
            // The app back up: mod_jk still holds node1 in ERR.
            ssh("app1", "systemctl start wiki");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !app1_running() {
                assert!(Instant::now() < deadline, "app1 did not come back");
                std::thread::sleep(Duration::from_millis(300));
            }
            assert_eq!(jk_state("node1"), "ERR");
            for _ in 0..4 {
                assert_eq!(node_via_lb(), "node2", "node1 is in ERR: no requests");
            }

            // The plan shows the recovery; applying does it.
            let pb = p
                .write("pb.yml", &member_play("active"))
                .display()
                .to_string();
            let inv = common::project::lab_inventory().display().to_string();
            let templates = p.templates();
            let o = p.run(&["plan", "-i", &inv, "--templates", &templates, &pb]);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(2), "{out}");
            assert!(out.contains("state ERR → recover now"), "{out}");
            let o = p.apply_text(&member_play("active"));
            let out = text(&o);
            assert!(o.status.success() && out.contains("changed=1"), "{out}");
            assert!(out.contains("recover now"), "{out}");
            let state = jk_state("node1");
            assert!(state == "ERR/REC" || state.starts_with("OK"), "{state}");
            // node1 serves again within a few requests, long before recover_time.
            let nodes: Vec<String> = (0..6).map(|_| node_via_lb()).collect();
            assert!(nodes.iter().any(|n| n == "node1"), "{nodes:?}");
            assert!(
                failed_at.elapsed() < Duration::from_secs(55),
                "too slow to prove anything: {:?}",
                failed_at.elapsed()
            );
            assert!(jk_state("node1").starts_with("OK"), "{}", jk_state("node1"));
            // Nothing left to do.
            let o = p.apply_text(&member_play("active"));
            assert!(text(&o).contains("changed=0"), "{}", text(&o));
            assert_eq!(jk_activation("node1"), ("ACT".into(), "Active".into()));
        },
        || {
            let _ = common::lab_ssh("app1", "systemctl start wiki");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !app1_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
            }
            let _ = common::lab_ssh(
                "lb",
                "curl -s 'http://localhost/jkstatus?cmd=recover&mime=prop&w=wiki_lb&sw=node1' >/dev/null",
            );
        },
    );
}

// ---------------------------------------------------------------------------------------------

const FLAG: &str = "/var/www/maintenance/ENABLED";

/// status and Retry-After of `url`, fetched on a lab host (not an admin address).
fn http_from(host: &str, url: &str) -> (String, bool, String) {
    let out = ssh(host, &format!("curl -s -i --max-time 10 {url}"));
    let status = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let retry = out
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("retry-after:"));
    (status, retry, out)
}

#[test]
fn maintenance_page_on_gives_503_with_retry_after_and_off_gives_the_app_back() {
    let _g = guard();
    let p = Project::new();
    with_cleanup(
        || {
            let play = |state: &str| {
                format!(
                    r#"- name: maintenance
  hosts: lb
  steps:
    - name: maintenance {state}
      maintenance:
        path: "{{{{ maintenance_flag }}}}"
        state: "{state}"
        url: http://lb/pages
        admin_url: http://lb/status
        page_match: "(?i)maintenance"
"#
                )
            };
            let o = p.apply_text(&play("on"));
            let out = text(&o);
            assert!(o.status.success() && out.contains("changed=1"), "{out}");
            assert!(out.contains("maintenance page off → on"), "{out}");
            // From app1 (not an admin address): 503 + Retry-After and the page.
            let (status, retry, page) = http_from("app1", "http://lb/pages");
            assert_eq!(status, "503", "{page}");
            assert!(retry, "{page}");
            assert!(page.to_lowercase().contains("maintenance"), "{page}");
            // The controller is an admin address: it still gets through.
            assert!(curl(&["-s", "http://lb/status"]).contains("RUNNING"));
            // Again: nothing to do.
            assert!(text(&p.apply_text(&play("on"))).contains("changed=0"));

            let o = p.apply_text(&play("off"));
            let out = text(&o);
            assert!(o.status.success() && out.contains("changed=1"), "{out}");
            let (status, _, page) = http_from("app1", "http://lb/pages");
            assert_eq!(status, "200", "{page}");
            assert_eq!(
                ssh("lb", &format!("test -e {FLAG} && echo on || echo off")).trim(),
                "off"
            );
        },
        || {
            let _ = common::lab_ssh("lb", &format!("rm -f {FLAG}"));
        },
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn http_check_positive_and_negative() {
    let _g = guard();
    let p = Project::new();
    let o = p.apply_text(
        r#"- name: checks
  hosts: app1
  steps:
    - name: lb says RUNNING
      http_check: { url: "http://lb/status", json: { state: RUNNING }, headers: { X-Wiki-Node: "^node[12]$" } }
      register: s
    - name: node's own port, from the host
      http_check: { url: "http://127.0.0.1:8080/status", from_host: true, regex: '"node":"node1"' }
    - name: no panic in the log
      http_check: { file: /var/lib/wiki/logs/wiki.log, absent: ClusterPanicListener }
    - name: the log says it started
      http_check: { file: /var/lib/wiki/logs/wiki.log, regex: "Wiki .* started" }
    - name: registered
      assert: { that: ["s.status == 200", "s.json.state == 'RUNNING'"] }
"#,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("changed=0"), "{out}");

    // Negative: a pattern that must be absent but is there, and a state never reached.
    let started = Instant::now();
    let o = p.apply_text(
        r#"- name: checks
  hosts: app1
  steps:
    - name: RUNNING must not be on the page
      http_check: { url: "http://lb/status", absent: RUNNING, timeout: 3, interval: 1 }
      failed_when: false
      register: a
    - name: it failed with the reason
      assert: { that: ["'is present' in a.msg"] }
    - name: never ERROR
      http_check: { url: "http://lb/status", json: { state: ERROR }, timeout: 3, interval: 1 }
"#,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains(r#"state is "RUNNING" (want "ERROR")"#),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{out}");
}

#[test]
fn cluster_safety_checks() {
    let _g = guard();
    let p = Project::new();
    let o = p.apply_text(
        r#"- name: safety
  hosts: db1
  steps:
    - name: no app on the databases
      cluster_safety: { check: no_app_running, hosts: [db1, db2] }
    - name: same version on the app nodes
      cluster_safety: { check: same_version, hosts: [app1, app2] }
      register: v
    - name: one writer
      cluster_safety:
        check: single_writer
        cluster_name: wiki-production
        clients: [10.77.0.11, 10.77.0.12]
        wait: 40
      register: w
    - name: results
      assert: { that: ["v.versions.app1 == v.versions.app2", "w.moved"] }
    - name: the app runs on app1 (the process, not the service)
      cluster_safety: { check: no_app_running, hosts: [app1] }
"#,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("app1: 1 process still running"), "{out}");
    assert!(out.contains("ok=4"), "{out}");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_plan_of_the_cluster_modules_shows_before_and_after_and_changes_nothing() {
    let _g = guard();
    let p = Project::new();
    let before = (
        jk_activation("node1"),
        slave_threads(),
        ssh("db2", "mysql -N -e 'SELECT @@read_only'"),
    );
    let o = p.run_text(
        "plan",
        r#"- name: drain and freeze
  hosts: lb
  steps:
    - name: drain node1
      lb_member: { lb: wiki_lb, member: node1, activation: disabled }
    - name: maintenance page
      maintenance: { path: "{{ maintenance_flag }}", state: "on", url: http://lb/ }
    - name: check
      http_check: { url: http://lb/status, json: { state: RUNNING } }
- name: database
  hosts: db2
  steps:
    - name: slave in sync
      mysql_replication: { state: synced, master: db1 }
    - name: stop replication
      mysql_replication: { state: stopped }
    - name: writable
      mysql_replication: { read_only: false }
"#,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for want in [
        "wiki_lb/node1: active → disabled",
        "workers.properties: activation Active → Disabled",
        "maintenance page off → on",
        "db2: replication IO thread Yes, SQL thread Yes → IO and SQL threads stopped",
        "db2: read_only true → false",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    assert!(out.contains(" 0 unknown"), "{out}");
    let after = (
        jk_activation("node1"),
        slave_threads(),
        ssh("db2", "mysql -N -e 'SELECT @@read_only'"),
    );
    assert_eq!(before, after);
    assert_eq!(
        ssh("lb", &format!("test -e {FLAG} && echo on || echo off")).trim(),
        "off"
    );
}

#[test]
fn login_with_a_hostile_password_goes_through_an_option_file() {
    let _g = guard();
    let p = Project::new();
    with_cleanup(
        || {
            let o = common::lab_ssh(
                "db1",
                r#"mysql <<'SQL'
DROP USER IF EXISTS 'cutover_t'@'localhost';
CREATE USER 'cutover_t'@'localhost' IDENTIFIED BY 'p"w''\\x&<y> #z';
GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'cutover_t'@'localhost';
SQL"#,
            );
            assert!(o.status.success(), "{}", text(&o));
            let o = p.apply_text(
                r#"- name: login
  hosts: db1
  vars: { pw: "p\"w'\\x&<y> #z" }
  steps:
    - name: facts as cutover_t
      mysql_facts: { login_user: cutover_t, login_password: "{{ pw }}" }
      register: f
    - name: master
      assert: { that: ["f.role == 'master'", "f.replicas >= 1"] }
    - name: a wrong password is refused
      mysql_query: { sql: "SELECT 1", login_user: cutover_t, login_password: "{{ pw }}-", read_only: true }
      register: q
      failed_when: false
    - name: refused
      assert: { that: ["'Access denied' in q.msg"] }
"#,
            );
            let out = text(&o);
            assert!(o.status.success(), "{out}");
            assert_eq!(
                ssh("db1", "ls /tmp/.cutover-my.* 2>/dev/null | wc -l").trim(),
                "0",
                "option files are removed"
            );
        },
        || {
            let _ = common::lab_ssh(
                "db1",
                "mysql -e \"DROP USER IF EXISTS 'cutover_t'@'localhost'\"",
            );
        },
    );
}

#[test]
fn replication_set_up_towards_an_unreachable_master_fails_and_unwinds_to_detached() {
    let _g = guard();
    let p = Project::new();
    let conf = "/etc/mysql/mariadb.conf.d/99-cutover-detached.cnf";
    with_cleanup(
        || {
            // 10.77.0.99 is no host: the IO thread never connects. (Never production's master:
            // staging must not replay production's binary log.)
            let o = p.apply_text(
                r#"- name: staging
  hosts: staging
  on_failure: unwind
  steps:
    - name: set up replication
      mysql_replication:
        state: configured
        source_host: 10.77.0.99
        source_user: repl
        source_password: "not-a-secret"
        wait_timeout: 4
"#,
            );
            let out = text(&o);
            assert_eq!(o.status.code(), Some(3), "{out}");
            assert!(
                out.contains("did not reach IO and SQL threads running"),
                "{out}"
            );
            assert!(out.contains("UNWIND"), "{out}");
            assert!(
                out.contains("forget the replication set up on staging"),
                "{out}"
            );
            assert_eq!(
                ssh("staging", "mysql -e 'SHOW SLAVE STATUS\\G' | wc -l").trim(),
                "0",
                "replication forgotten"
            );
            assert!(ssh("staging", &format!("cat {conf}")).contains("skip-slave-start"));
            // The password never reached the journal (undo arguments carry no secret).
            let journal = std::process::Command::new("grep")
                .args(["-r", "-l", "not-a-secret"])
                .arg(p.path("state"))
                .output()
                .unwrap();
            let files = String::from_utf8_lossy(&journal.stdout);
            assert!(files.trim().is_empty(), "the password is in {files}");
        },
        || {
            let _ = common::lab_ssh(
                "staging",
                &format!("mysql -e 'STOP SLAVE; RESET SLAVE ALL;'; rm -f {conf}"),
            );
        },
    );
}

#[test]
fn jdbc_ping_rows_match_the_live_instances_and_zombies_are_reported() {
    let _g = guard();
    let p = Project::new();
    let db = format!("cutover_ping_{}", std::process::id());
    // A Keycloak 26 style table (JDBC_PING2 columns) with one row per live member.
    ssh(
        "db1",
        &format!(
            "mysql -e \"CREATE DATABASE {db}; CREATE TABLE {db}.JGROUPS_PING (address VARCHAR(200) PRIMARY KEY, name VARCHAR(200), cluster_name VARCHAR(200), ip VARCHAR(200), coord BOOLEAN); \
             INSERT INTO {db}.JGROUPS_PING VALUES ('uuid://1','app1','kc','10.77.0.11:7800',1),('uuid://2','app2','kc','10.77.0.12:7800',0);\""
        ),
    );
    let play = |hosts: &str| {
        format!(
            "- hosts: db1\n  steps:\n    - name: ping table\n      cluster_safety: {{ check: jdbc_ping, database: {db}, cluster_name: kc, hosts: [{hosts}] }}\n"
        )
    };
    with_cleanup(
        || {
            let o = p.apply_text(&play("app1, app2"));
            assert!(o.status.success(), "{}", text(&o));
            // A member that died without leaving: one row too many.
            ssh("db1", &format!("mysql -e \"INSERT INTO {db}.JGROUPS_PING VALUES ('uuid://3','old','kc','10.77.0.13:7800',0)\""));
            let o = p.apply_text(&play("app1, app2"));
            assert_eq!(o.status.code(), Some(3), "{}", text(&o));
            assert!(text(&o).contains("zombies"), "{}", text(&o));
            // Two coordinators: a split brain.
            ssh("db1", &format!("mysql -e \"DELETE FROM {db}.JGROUPS_PING WHERE name='old'; UPDATE {db}.JGROUPS_PING SET coord=1\""));
            let o = p.apply_text(&play("app1, app2"));
            assert_eq!(o.status.code(), Some(3), "{}", text(&o));
            assert!(text(&o).contains("2 coordinator rows"), "{}", text(&o));
        },
        || {
            ssh("db1", &format!("mysql -e 'DROP DATABASE IF EXISTS {db}'"));
        },
    );
}
