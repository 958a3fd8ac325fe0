//! The shipped procedures (playbooks/upgrade.yml, rehearse.yml) against the lab's real cluster:
//! a v1 → v2 upgrade with its maintenance window, a broken v3 rolled back by itself, a controller
//! killed mid-upgrade then resumed or rolled back, and a rehearsal that never touches production.
//!
//! Needs the lab up and provisioned at v1 (playbooks/site.yml). Every test leaves it at v1:
//! an upgrade is undone with `cutover rollback` (the snapshots bring the database back too — the
//! app refuses a schema newer than its own); where a test commits an upgrade, it first takes a
//! restore point by running upgrade.yml to the release already installed.

mod common;

use common::project::{repo_file, text, Project};

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share one cluster: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn upgrade_args(release: &str, build: u32, set: &str) -> Vec<String> {
    vec![
        "apply".into(),
        "-i".into(),
        repo_file("inventory/lab.yml"),
        "-e".into(),
        format!("app_release={release}"),
        "-e".into(),
        format!("app_build_number={build}"),
        "-e".into(),
        format!("snapshot_set={set}"),
        "--templates".into(),
        repo_file("templates"),
        "--approve".into(),
        "upgrade".into(),
        "--output".into(),
        "plain".into(),
        repo_file(&format!("playbooks/{}", "upgrade.yml")),
    ]
}

/// Run upgrade.yml; returns its output and run id.
fn upgrade(p: &Project, release: &str, build: u32, set: &str) -> (Output, String) {
    let before = p.run_ids();
    let o = p.run_cluster(&upgrade_args(release, build, set));
    let id = p.new_run(&before);
    (o, id)
}

fn after_args(verb: &str, id: &str, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        verb.to_string(),
        "-i".into(),
        repo_file("inventory/lab.yml"),
        "--templates".into(),
        repo_file("templates"),
    ];
    a.extend(extra.iter().cloned());
    a.extend([id.to_string(), "--output".into(), "plain".into()]);
    a
}

fn rollback(p: &Project, id: &str) {
    let o = p.run_cluster(&after_args("rollback", id, &[]));
    assert!(o.status.success(), "rollback {id}:\n{}", text(&o));
}

fn ssh(host: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&common::lab_ssh(host, cmd).stdout).into_owned()
}

/// From the controller (an admin network: it passes the maintenance page).
fn curl(args: &[&str]) -> String {
    String::from_utf8_lossy(&common::in_controller("curl", args).stdout).into_owned()
}

fn unique(tag: &str) -> String {
    format!(
        "t{}-{}-{}",
        std::process::id(),
        tag,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 100000
    )
}

/// Pages written through the load balancer: name → body.
fn write_pages(tag: &str) -> BTreeMap<String, String> {
    let mut pages = BTreeMap::new();
    for i in 0..3 {
        let name = format!("{}-{i}", unique(tag));
        let body = format!("page {i} of {tag}: ünïcode & <xml> 'quotes'");
        let code = curl(&[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--data-binary",
            &body,
            &format!("http://lb/pages/{name}"),
        ]);
        assert_eq!(code, "201", "PUT /pages/{name}");
        pages.insert(name, body);
    }
    pages
}

fn assert_pages(pages: &BTreeMap<String, String>) {
    for (name, body) in pages {
        let got = curl(&["-sS", &format!("http://lb/pages/{name}")]);
        assert_eq!(&got, body, "page {name} after the run");
    }
}

/// `CHECKSUM TABLE` of every table of the wiki database on `host` (CLUSTERSAFETY's row is
/// rewritten every 10 s by the running nodes, so only its presence is compared).
fn checksums(host: &str) -> BTreeMap<String, String> {
    let tables = ssh(host, "mysql -NB -e 'SHOW TABLES FROM wiki'");
    let mut out = BTreeMap::new();
    for t in tables.split_whitespace() {
        if t == "CLUSTERSAFETY" {
            out.insert(t.to_string(), "(present)".to_string());
            continue;
        }
        let c = ssh(host, &format!("mysql -NB -e 'CHECKSUM TABLE wiki.`{t}`'"));
        let sum = c.split_whitespace().nth(1).unwrap_or("?").to_string();
        out.insert(t.to_string(), sum);
    }
    assert!(
        out.contains_key("PAGES"),
        "no PAGES table on {host}: {out:?}"
    );
    out
}

fn db_checksums() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    wait_replication_in_sync();
    (checksums("db1"), checksums("db2"))
}

fn status(host: &str) -> String {
    ssh(
        host,
        "curl -sS --max-time 5 http://127.0.0.1:8080/status 2>&1",
    )
}

/// Replication runs (both threads) and the slave has applied all the master wrote.
fn wait_replication_in_sync() {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = ssh("db2", "mysql -e 'SHOW SLAVE STATUS\\G'");
        let running = st.contains("Slave_IO_Running: Yes") && st.contains("Slave_SQL_Running: Yes");
        let master = ssh("db1", "mysql -NB -e 'SELECT @@global.gtid_binlog_pos'");
        let slave = ssh("db2", "mysql -NB -e 'SELECT @@global.gtid_slave_pos'");
        if running && master.trim() == slave.trim() && !master.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replication not running or not in sync: master {master} slave {slave}\n{st}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The whole cluster serves `version` (schema `schema`): both nodes, through the load balancer,
/// maintenance page off, members active, replication in sync, sticky sessions.
fn assert_cluster_serves(version: &str, schema: u32) {
    let want = format!("\"state\":\"RUNNING\",\"version\":\"{version}\",\"schema\":{schema},");
    for h in ["app1", "app2"] {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = status(h);
            if s.contains(&want) {
                break;
            }
            assert!(Instant::now() < deadline, "{h}: /status {s}, wanted {want}");
            std::thread::sleep(Duration::from_secs(1));
        }
        let panic = ssh(
            h,
            "grep -c ClusterPanicListener /var/lib/wiki/logs/wiki.log",
        );
        assert_eq!(panic.trim(), "0", "{h}: cluster panic in wiki.log");
        let pages = ssh(
            h,
            "curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/pages",
        );
        assert_eq!(pages, "200", "{h}: GET /pages");
    }
    // Maintenance page off: a client outside the admin networks (the lb itself) gets the wiki.
    assert_eq!(
        ssh(
            "lb",
            "test -e /var/www/maintenance/ENABLED && echo on || echo off"
        )
        .trim(),
        "off"
    );
    let code = ssh(
        "lb",
        "curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1/pages",
    );
    assert_eq!(
        code, "200",
        "GET /pages through the lb from a non-admin address"
    );
    // Members active, at run time and in workers.properties.
    let show = ssh(
        "lb",
        "curl -sS 'http://127.0.0.1/jkstatus?cmd=show&mime=prop&w=wiki_lb'",
    );
    for n in ["node1", "node2"] {
        assert!(
            show.contains(&format!("worker.{n}.activation=ACT")),
            "{n} not active:\n{show}"
        );
    }
    let persisted = ssh(
        "lb",
        "grep -c '^worker.node[12].activation=Active$' /etc/libapache2-mod-jk/workers.properties",
    );
    assert_eq!(persisted.trim(), "2", "workers.properties: members Active");
    // Both nodes serve through the lb, and a session sticks to its node. A member whose node
    // was still starting when it got requests again (an unwind starts the old release and
    // puts the member back at once) is in mod_jk's error state, where it would get none until
    // the lb's recover_time (60 s) passes: `lb_member` recovers it at once instead.
    recover_members_in_error();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 && Instant::now() < deadline {
        let h = curl(&["-sS", "-o", "/dev/null", "-D", "-", "http://lb/status"]);
        if let Some(l) = h
            .lines()
            .find(|l| l.to_lowercase().starts_with("x-wiki-node:"))
        {
            seen.insert(l[12..].trim().to_string());
        }
        let v = curl(&["-sS", "-D", "-", "-o", "/dev/null", "http://lb/status"]);
        assert!(
            v.contains(&format!("X-Wiki-Version: {version}")),
            "through the lb: {v}"
        );
        if seen.len() < 2 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert_eq!(seen.len(), 2, "both nodes serve through the lb: {seen:?}");
    let jar = format!("/tmp/cutover-procedures-{}.jar", std::process::id());
    let _ = std::fs::remove_file(&jar);
    let mut node = String::new();
    for i in 1..=6 {
        let s = curl(&["-sS", "-c", &jar, "-b", &jar, "http://lb/session"]);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_else(|_| panic!("{s}"));
        if i == 1 {
            node = v["node"].as_str().unwrap().to_string();
        }
        assert_eq!(
            v["node"],
            node.as_str(),
            "session moved to another node: {s}"
        );
        assert_eq!(v["count"], i, "session counter: {s}");
    }
    let _ = std::fs::remove_file(&jar);
    wait_replication_in_sync();
}

/// `lb_member ... activation: active` for every member the jk status worker shows in the error
/// state.
fn recover_members_in_error() {
    let show = ssh(
        "lb",
        "curl -sS 'http://127.0.0.1/jkstatus?cmd=show&mime=prop&w=wiki_lb'",
    );
    let in_error: Vec<&str> = ["node1", "node2"]
        .into_iter()
        .filter(|n| show.contains(&format!("worker.{n}.state=ERR\n")))
        .collect();
    if in_error.is_empty() {
        return;
    }
    let steps: String = in_error
        .iter()
        .map(|n| {
            format!(
                "    - name: {n} recovered\n      lb_member: {{ lb: wiki_lb, member: {n}, activation: active }}\n"
            )
        })
        .collect();
    let p = Project::new();
    let out = p.apply_text_ok(&format!("- hosts: lb\n  steps:\n{steps}"));
    assert!(out.contains("recover now"), "{out}");
}

fn snapshots_of(set: &str) -> String {
    let mut all = String::new();
    for h in ["app1", "app2", "db1", "db2"] {
        all.push_str(&ssh(
            h,
            &format!("ls /srv/vol/.snapshots 2>/dev/null | grep '^{set}-' | sed 's/^/{h}:/'"),
        ));
    }
    all
}

fn require_v1() {
    common::require_lab();
    for h in ["app1", "app2"] {
        let s = status(h);
        assert!(
            s.contains("\"version\":\"1.0.0\"") && s.contains("\"schema\":1"),
            "{h} is not at v1 ({s}): provision the lab with playbooks/site.yml first"
        );
    }
}

fn maintenance_seconds(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.contains("MAINTENANCE WINDOW:"))
        .unwrap_or_else(|| panic!("no maintenance window printed:\n{out}"));
    let n: u64 = line
        .split("MAINTENANCE WINDOW:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("measured: {line}");
    n
}

#[test]
fn upgrade_v1_to_v2_then_commit_removes_the_snapshots() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    // Restore point: upgrade.yml to the release already installed (v1) — a complete run with
    // snapshots, rolled back at the end to bring the cluster back to v1 after the commit.
    let restore_set = unique("restore");
    let (o, restore) = upgrade(&p, "1.0.0", 1, &restore_set);
    assert!(o.status.success(), "restore point:\n{}", text(&o));

    let pages = write_pages("v2");
    let set = unique("v2");
    let (o, id) = upgrade(&p, "2.0.0", 2, &set);
    let out = text(&o);
    assert!(o.status.success(), "upgrade to 2.0.0:\n{out}");
    let secs = maintenance_seconds(&out);
    assert!(secs > 0 && secs < 600, "maintenance window {secs} s");

    assert_cluster_serves("2.0.0", 2);
    assert_pages(&pages);
    // The pages written before carry the upgrade task's mark (schema 2 really migrated them).
    let h = curl(&[
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://lb/pages/{}", pages.keys().next().unwrap()),
    ]);
    assert!(h.contains("X-Wiki-Updated-By: upgrade-task-2"), "{h}");
    let (m, s) = db_checksums();
    assert_eq!(m, s, "master and slave hold the same data");
    assert!(m.contains_key("PAGE_HISTORY"), "schema 2 tables: {m:?}");

    // Snapshots until commit, none after.
    let snaps = snapshots_of(&set);
    for h in ["app1:", "app2:", "db1:", "db2:"] {
        assert!(
            snaps.contains(h),
            "no snapshot of set {set} on {h}\n{snaps}"
        );
    }
    let o = p.run_cluster(&after_args("commit", &id, &[]));
    assert!(o.status.success(), "commit:\n{}", text(&o));
    assert_eq!(
        snapshots_of(&set),
        "",
        "commit removed every snapshot of {set}"
    );
    let o = p.run_cluster(&after_args("rollback", &id, &[]));
    assert!(
        !o.status.success() && text(&o).contains("was committed"),
        "{}",
        text(&o)
    );

    // Back to v1 through the restore point (its snapshots predate the upgrade).
    rollback(&p, &restore);
    assert_cluster_serves("1.0.0", 1);
    assert_eq!(snapshots_of(&restore_set), "");
}

#[test]
fn upgrade_to_broken_v3_rolls_back_by_itself() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("v3");
    let (m0, s0) = db_checksums();
    assert_eq!(m0, s0);

    let set = unique("v3");
    let (o, id) = upgrade(&p, "3.0.0", 3, &set);
    let out = text(&o);
    assert!(!o.status.success(), "the broken release must fail:\n{out}");
    assert!(out.contains("UNWIND"), "the run unwound itself:\n{out}");
    assert!(
        p.journal_text(&id)
            .contains("\"event\":\"unwind_finished\""),
        "unwind recorded"
    );

    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 identical to before the upgrade (every table)");
    assert_eq!(s1, s0, "db2 identical to before the upgrade (every table)");
    assert!(!m1.contains_key("PAGE_LABELS"), "no schema-3 table left");
    assert_eq!(
        snapshots_of(&set),
        "",
        "the rollback consumed the snapshots"
    );
    // Nothing left to roll back.
    let o = p.run_cluster(&after_args("rollback", &id, &[]));
    assert!(
        o.status.success() && text(&o).contains("nothing to roll back"),
        "{}",
        text(&o)
    );
}

/// Start upgrade.yml and SIGKILL the controller once `step` has a result in the journal.
/// A start refused because another test binary's run holds the cluster is retried.
fn start_and_kill(p: &Project, args: &[String], step: &str) -> String {
    let marker = format!("\"name\":\"{step}\"");
    for _ in 0..90 {
        let before = p.run_ids();
        let (mut child, log) = p.spawn_logged(p.command_strings(args));
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut ended = None;
        let id = loop {
            std::thread::sleep(Duration::from_millis(50));
            let hit = p
                .run_ids()
                .into_iter()
                .filter(|i| !before.contains(i))
                .find(|i| p.journal_text(i).contains(&marker));
            if let Some(id) = hit {
                break Some(id);
            }
            if let Ok(Some(st)) = child.try_wait() {
                ended = Some(st);
                break None;
            }
            assert!(Instant::now() < deadline, "step `{step}` never came");
        };
        if let Some(id) = id {
            Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .unwrap();
            let _ = child.wait();
            assert!(
                !p.journal_text(&id).contains("\"event\":\"run_finished\""),
                "the run was killed before it finished"
            );
            return id;
        }
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            err.contains("locked by run"),
            "the run ended ({ended:?}) before step `{step}`:\n{err}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("the cluster stayed locked by other runs for 3 minutes");
}

#[test]
fn killed_after_the_snapshots_then_resumed_finishes_the_upgrade() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("resume");
    let (m0, _) = db_checksums();
    let set = unique("resume");
    let args = upgrade_args("2.0.0", 2, &set);
    // Killed once every snapshot is journaled (the master's start comes right after them). A
    // kill in the middle of the snapshot step itself leaves a set the journal does not know:
    // the resumed step then finds it and records no undo (reported as an engine gap).
    let id = start_and_kill(&p, &args, "Start the master");

    let extra: Vec<String> = vec![
        "-e".into(),
        "app_release=2.0.0".into(),
        "-e".into(),
        "app_build_number=2".into(),
        "-e".into(),
        format!("snapshot_set={set}"),
        "--approve".into(),
        "upgrade".into(),
    ];
    let o = p.run_cluster(&after_args("resume", &id, &extra));
    let out = text(&o);
    assert!(o.status.success(), "resume {id}:\n{out}");
    maintenance_seconds(&out);
    assert_cluster_serves("2.0.0", 2);
    assert_pages(&pages);

    // The resumed run is one run: rolling it back restores v1 and the data from before.
    rollback(&p, &id);
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 back to exactly before the upgrade");
    assert_eq!(s1, m0, "db2 back to exactly before the upgrade");
    assert_eq!(snapshots_of(&set), "", "the rollback merged every snapshot");
}

#[test]
fn killed_while_node1_starts_then_rolled_back_restores_v1() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("kill");
    let (m0, s0) = db_checksums();
    let set = unique("kill");
    let args = upgrade_args("2.0.0", 2, &set);
    let id = start_and_kill(&p, &args, "Start the node alone (it migrates the schema)");
    // Killed while node 1 starts on 2.0.0 (and migrates the schema): maintenance page on.
    assert_eq!(
        ssh(
            "lb",
            "test -e /var/www/maintenance/ENABLED && echo on || echo off"
        )
        .trim(),
        "on"
    );

    rollback(&p, &id);
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 identical to before the upgrade");
    assert_eq!(s1, s0, "db2 identical to before the upgrade");
    assert_eq!(snapshots_of(&set), "");
}

#[test]
fn rehearsal_on_staging_never_touches_production() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("rehearsal");
    let (m0, s0) = db_checksums();
    // Every connection to the production master is logged while the rehearsal runs.
    let glog = "/var/lib/mysql/cutover-rehearsal-general.log";
    ssh(
        "db1",
        &format!("rm -f {glog}; mysql -e \"SET GLOBAL general_log_file='{glog}'; SET GLOBAL general_log=ON\""),
    );

    let before = p.run_ids();
    let o = p.run_cluster(&[
        "apply".into(),
        "-i".into(),
        repo_file("inventory/lab.yml"),
        "-e".into(),
        "app_release=2.0.0".into(),
        "-e".into(),
        "app_build_number=2".into(),
        "-e".into(),
        format!("snapshot_set={}", unique("rehearsal")),
        "--templates".into(),
        repo_file("templates"),
        "--output".into(),
        "plain".into(),
        repo_file(&format!("playbooks/{}", "rehearse.yml")),
    ]);
    let id = p.new_run(&before);
    let out = text(&o);
    ssh("db1", "mysql -e 'SET GLOBAL general_log=OFF'");
    let general = ssh("db1", &format!("cat {glog}; rm -f {glog}"));
    assert!(o.status.success(), "rehearsal:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("PREDICTED MAINTENANCE WINDOW:"))
        .unwrap_or_else(|| panic!("no predicted window printed:\n{out}"));
    eprintln!("measured: {line}");

    // Staging runs the new release on its own copy of production's data.
    let st = status("staging");
    assert!(
        st.contains(
            "\"state\":\"RUNNING\",\"version\":\"2.0.0\",\"schema\":2,\"node\":\"staging\""
        ),
        "staging: {st}"
    );
    let name = pages.keys().next().unwrap();
    assert_eq!(
        &ssh(
            "staging",
            &format!("curl -sS http://127.0.0.1:8080/pages/{name}")
        ),
        &pages[name],
        "staging serves production's pages"
    );
    // Staging never connected to production: not in db1's general log, not in its
    // configuration, no replication configured, and CLUSTERSAFETY untouched by it.
    assert!(
        !general.contains("10.77.0.41"),
        "staging connected to db1:\n{general}"
    );
    assert!(
        general.contains("Connect"),
        "the general log recorded connections:\n{general}"
    );
    let cfg = ssh("staging", "cat /var/lib/wiki/wiki.cfg.xml");
    assert!(cfg.contains("jdbc:mariadb://localhost:3306/wiki"), "{cfg}");
    assert!(
        cfg.contains("<property name=\"cluster.name\">wiki-staging</property>"),
        "{cfg}"
    );
    assert!(
        cfg.contains("<property name=\"mail.enabled\">false</property>"),
        "{cfg}"
    );
    for a in ["10.77.0.11", "10.77.0.12", "10.77.0.21", "10.77.0.22"] {
        assert!(
            !cfg.contains(a),
            "staging config names production {a}:\n{cfg}"
        );
    }
    assert_eq!(ssh("staging", "mysql -e 'SHOW SLAVE STATUS\\G'").trim(), "");
    let safety = ssh(
        "db1",
        "mysql -NB -e 'SELECT CLUSTER_NAME FROM wiki.CLUSTERSAFETY'",
    );
    assert_eq!(safety.trim(), "wiki-production");

    // Production: still v1, serving, data unchanged, nothing written by the rehearsal.
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "production master unchanged");
    assert_eq!(s1, s0, "production slave unchanged");

    // Staging back as it was.
    rollback(&p, &id);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status("staging");
        if st.contains(
            "\"state\":\"RUNNING\",\"version\":\"1.0.0\",\"schema\":1,\"node\":\"staging\"",
        ) {
            break;
        }
        assert!(Instant::now() < deadline, "staging after rollback: {st}");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_cluster_serves("1.0.0", 1);
}
