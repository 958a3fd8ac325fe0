//! The wiki cluster of the lab, as the procedure tests see it: running upgrade.yml and the
//! commands after it, writing and checking data through the load balancer, database
//! checksums, and the "serves version X" check of the whole cluster.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::project::{repo_file, text, Project};

pub fn upgrade_args(release: &str, build: u32, set: &str) -> Vec<String> {
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
pub fn upgrade(p: &Project, release: &str, build: u32, set: &str) -> (Output, String) {
    let before = p.run_ids();
    let o = p.run_cluster(&upgrade_args(release, build, set));
    let id = p.new_run(&before);
    (o, id)
}

pub fn after_args(verb: &str, id: &str, extra: &[String]) -> Vec<String> {
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

pub fn rollback(p: &Project, id: &str) {
    let o = p.run_cluster(&after_args("rollback", id, &[]));
    assert!(o.status.success(), "rollback {id}:\n{}", text(&o));
}

pub fn ssh(host: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&super::lab_ssh(host, cmd).stdout).into_owned()
}

/// From the controller (an admin network: it passes the maintenance page).
pub fn curl(args: &[&str]) -> String {
    String::from_utf8_lossy(&super::in_controller("curl", args).stdout).into_owned()
}

pub fn unique(tag: &str) -> String {
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
pub fn write_pages(tag: &str) -> BTreeMap<String, String> {
    let mut pages = BTreeMap::new();
    for i in 0..3 {
        let name = format!("{}-{i}", unique(tag));
        let body = format!("page {i} of {tag}: ünïcode & <xml> 'quotes'");
        put_page(&name, &body);
        pages.insert(name, body);
    }
    pages
}

/// A page written through the load balancer: created (201).
pub fn put_page(name: &str, body: &str) {
    let code = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "--data-binary",
        body,
        &format!("http://lb/pages/{name}"),
    ]);
    assert_eq!(code, "201", "PUT /pages/{name}");
}

/// Staging's wiki.cfg.xml names its own database and cluster, and mail is off.
pub fn assert_staging_config(cfg: &str) {
    assert!(cfg.contains("jdbc:mariadb://localhost:3306/wiki"), "{cfg}");
    assert!(
        cfg.contains("<property name=\"cluster.name\">wiki-staging</property>"),
        "{cfg}"
    );
    assert!(
        cfg.contains("<property name=\"mail.enabled\">false</property>"),
        "{cfg}"
    );
}

pub fn assert_pages(pages: &BTreeMap<String, String>) {
    for (name, body) in pages {
        let got = curl(&["-sS", &format!("http://lb/pages/{name}")]);
        assert_eq!(&got, body, "page {name} after the run");
    }
}

/// `CHECKSUM TABLE` of every table of the wiki database on `host` (CLUSTERSAFETY's row is
/// rewritten every 10 s by the running nodes, so only its presence is compared).
pub fn checksums(host: &str) -> BTreeMap<String, String> {
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

pub fn db_checksums() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    wait_replication_in_sync();
    (checksums("db1"), checksums("db2"))
}

pub fn status(host: &str) -> String {
    ssh(
        host,
        "curl -sS --max-time 5 http://127.0.0.1:8080/status 2>&1",
    )
}

/// Replication runs (both threads) and the slave has applied all the master wrote, within a
/// minute.
pub fn wait_replication_in_sync() {
    wait_replication_in_sync_within(Duration::from_secs(60));
}

/// Replication runs (both threads) and the slave has applied all the master wrote, within
/// `limit`.
pub fn wait_replication_in_sync_within(limit: Duration) {
    let deadline = Instant::now() + limit;
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

/// Both app nodes serve `version` (schema `schema`) from their own /status, within 2 minutes.
pub fn nodes_serve(version: &str, schema: u32) {
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
    }
}

pub fn assert_cluster_serves(version: &str, schema: u32) {
    nodes_serve(version, schema);
    for h in ["app1", "app2"] {
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
    // was still starting when it got requests again is in mod_jk's error state, where it would
    // get none until the lb's recover_time (60 s) passes: `lb_member` recovers it at once.
    // Every response counts: with two members and method=Request the lb alternates strictly,
    // so looking at only the first of two requests per round would see one node forever (what
    // made this check fail in CI, with both members OK and elected alike).
    let mut seen = std::collections::BTreeSet::new();
    let since = ssh("lb", "date '+%a %b %d %H:%M:%S'");
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 && Instant::now() < deadline {
        recover_members_in_error();
        for _ in 0..2 {
            let h = curl(&["-sS", "-o", "/dev/null", "-D", "-", "http://lb/status"]);
            assert!(
                h.contains(&format!("X-Wiki-Version: {version}")),
                "through the lb: {h}"
            );
            if let Some(l) = h
                .lines()
                .find(|l| l.to_lowercase().starts_with("x-wiki-node:"))
            {
                seen.insert(l[12..].trim().to_string());
            }
        }
        if seen.len() < 2 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    if seen.len() < 2 {
        panic!(
            "both nodes serve through the lb: only {seen:?} in 20 s\n{}",
            lb_diagnostics(since.trim())
        );
    }
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

/// What the lb knew while a check of it failed: the members' run-time state in every Apache
/// process's view (the status worker), mod_jk's and Apache's logs since `since`, and the
/// AJP connections each app node has open.
fn lb_diagnostics(since: &str) -> String {
    let show = ssh(
        "lb",
        "curl -sS 'http://127.0.0.1/jkstatus?cmd=show&mime=prop&w=wiki_lb' | grep -E '^worker\\.(node[12]|wiki_lb)\\.'",
    );
    let logs = ssh(
        "lb",
        &format!(
            "for f in /var/log/apache2/mod_jk.log /var/log/apache2/error.log /var/log/apache2/wiki_error.log; do \
               echo \"== $f\"; awk -v s='[{since}' 'substr($0, 1, length(s)) >= s' $f | tail -n 60; done"
        ),
    );
    let mut ajp = String::new();
    for h in ["app1", "app2"] {
        ajp.push_str(&format!(
            "== {h}: AJP sockets\n{}",
            ssh(h, "ss -tanp 'sport = :8009' 2>&1 | head -n 20")
        ));
    }
    format!("== jkstatus\n{show}\n{logs}\n{ajp}")
}

pub fn snapshots_of(set: &str) -> String {
    let mut all = String::new();
    for h in ["app1", "app2", "db1", "db2"] {
        all.push_str(&ssh(
            h,
            &format!("ls /srv/vol/.snapshots 2>/dev/null | grep '^{set}-' | sed 's/^/{h}:/'"),
        ));
    }
    all
}

/// The plugins the inventory pins for each release (inventory/lab.yml, `app_plugins`).
pub const PLUGINS_V1: &[(&str, &str)] = &[("calendar", "1.0"), ("diagrams", "1.0")];
pub const PLUGINS_V2: &[(&str, &str)] = &[("calendar", "2.0"), ("diagrams", "1.1")];

/// Both app nodes' `GET /plugins` list exactly `want` (name, version), each ENABLED.
pub fn assert_plugins_enabled(want: &[(&str, &str)]) {
    assert_plugins_enabled_on(&["app1", "app2"], want);
}

/// `GET /plugins` of each of `hosts` lists exactly `want` (name, version), each ENABLED.
pub fn assert_plugins_enabled_on(hosts: &[&str], want: &[(&str, &str)]) {
    for &h in hosts {
        let s = ssh(h, "curl -sS --max-time 5 http://127.0.0.1:8080/plugins");
        let v: serde_json::Value =
            serde_json::from_str(&s).unwrap_or_else(|e| panic!("{h}: GET /plugins: {e}: {s}"));
        let got: Vec<(String, String, String)> = v["plugins"]
            .as_array()
            .unwrap_or_else(|| panic!("{h}: no plugins list: {s}"))
            .iter()
            .map(|p| {
                let f = |k: &str| p[k].as_str().unwrap_or("").to_string();
                (f("name"), f("version"), f("state"))
            })
            .collect();
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string(), "ENABLED".to_string()))
            .collect();
        assert_eq!(got, want, "{h}: GET /plugins {s}");
    }
}

pub fn require_v1() {
    super::require_lab();
    for h in ["app1", "app2"] {
        let s = status(h);
        assert!(
            s.contains("\"version\":\"1.0.0\"") && s.contains("\"schema\":1"),
            "{h} is not at v1 ({s}): provision the lab with playbooks/site.yml first"
        );
    }
}

pub fn maintenance_seconds(out: &str) -> u64 {
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

/// Start upgrade.yml and SIGKILL the controller once `step` has a result in the journal.
/// A start refused because another test binary's run holds the cluster is retried.
pub fn start_and_kill(p: &Project, args: &[String], step: &str) -> String {
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

/// `cutover resume RUN` of an upgrade started with `upgrade_args(release, build, set)`: the
/// same `-e` variables (resume refuses other inputs) and the approval.
pub fn resume_args(id: &str, release: &str, build: u32, set: &str) -> Vec<String> {
    let extra: Vec<String> = vec![
        "-e".into(),
        format!("app_release={release}"),
        "-e".into(),
        format!("app_build_number={build}"),
        "-e".into(),
        format!("snapshot_set={set}"),
        "--approve".into(),
        "upgrade".into(),
    ];
    after_args("resume", id, &extra)
}

/// A run's journal, event by event.
pub fn journal_of(p: &Project, id: &str) -> Vec<serde_json::Value> {
    p.journal_text(id)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// No host of the cluster holds a cutover lock (`/var/tmp/cutover.lock`).
pub fn assert_no_host_locks() {
    for h in ["app1", "app2", "db1", "db2", "lb"] {
        let l = ssh(h, "cat /var/tmp/cutover.lock 2>/dev/null");
        assert_eq!(l.trim(), "", "{h} still holds a lock: {l}");
    }
}

/// What the lab's announcement sink recorded (lab/sink/announce_sink.py: one POST a line, as
/// `{path, content_type, headers, body}`), oldest first.
pub fn announcements() -> Vec<serde_json::Value> {
    sink_record("received.jsonl")
}

/// What the lab's mail sink received through the hosts' msmtp (lab/sink/mail_sink.py: one
/// mail a line, as `{mail_from, rcpt_tos, headers, subject, text}`), oldest first.
pub fn mails() -> Vec<serde_json::Value> {
    sink_record("mail.jsonl")
}

fn sink_record(name: &str) -> Vec<serde_json::Value> {
    let path = super::lab_state().join("announce").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {e}: {l}")))
        .collect()
}

/// Empty both sinks' records (before a run whose announcements a test reads).
pub fn clear_announcements() {
    let dir = super::lab_state().join("announce");
    assert!(
        dir.is_dir(),
        "the lab's announcement sinks are not set up ({dir:?}): lab/lab.sh up"
    );
    for name in ["received.jsonl", "mail.jsonl"] {
        std::fs::write(dir.join(name), "").unwrap();
    }
}

/// The body of the one announcement of `event` (the upgrade's `fields.event`) among `got`.
pub fn announced<'a>(got: &'a [serde_json::Value], event: &str) -> &'a serde_json::Value {
    let mut of = got.iter().filter(|a| a["body"]["event"] == event);
    let one = of
        .next()
        .unwrap_or_else(|| panic!("no `{event}` announcement: {got:#?}"));
    assert!(of.next().is_none(), "two `{event}` announcements: {got:#?}");
    &one["body"]
}
