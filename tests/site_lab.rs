//! `playbooks/site.yml` against the lab: provisions the reference topology (MariaDB master and
//! slave, two wiki nodes, the Apache/mod_jk load balancer, staging), then checks it from the
//! outside — pages and sticky sessions through the load balancer, replication, the maintenance
//! page, the locked-down status worker — and that a second run changes nothing.
//!
//! Needs the lab (`lab/lab.sh up`). Slow on bare hosts (a few minutes: packages); about 10 s
//! when the lab is already provisioned. It leaves the lab provisioned.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::project::Project;
use serde_json::Value as J;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cutover ARGS…` in the controller namespace, from the repository root (so `templates/` is
/// found), with the project's run state; the output is kept with the test's artifacts.
fn cutover(p: &Project, args: &[&str]) -> Output {
    p.output(p.command(args))
}

/// Run site.yml with JSON output; returns the exit code, the `recap` event and all output.
fn apply_site(p: &Project) -> (Option<i32>, J, String) {
    let out = cutover(
        p,
        &[
            "apply",
            "-i",
            "inventory/lab.yml",
            "--output",
            "json",
            "playbooks/site.yml",
        ],
    );
    let stdout = text(&out.stdout);
    let all = format!("stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let recap = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|e| e["event"] == "recap")
        .unwrap_or_else(|| panic!("no recap event in the output of cutover apply:\n{all}"));
    (out.status.code(), recap, all)
}

/// The steps that changed something, from a run's JSON output (for failure messages).
fn changed_steps(all: &str) -> Vec<String> {
    all.lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .filter(|e| e["event"] == "step_result" && e["status"] == "changed")
        .map(|e| format!("{} {}: {}", e["host"], e["step"], e["detail"]))
        .collect()
}

/// curl from the controller namespace (the admin address 10.77.0.1); returns (headers, body).
fn curl(args: &[&str]) -> (String, String) {
    let out = common::in_controller(
        "curl",
        &[&["-sS", "--max-time", "10", "-D", "/dev/stderr"], args].concat(),
    );
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        text(&out.stderr)
    );
    (text(&out.stderr), text(&out.stdout))
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn status_code(headers: &str) -> u16 {
    // The last status line (curl prints one per response; there is only one here).
    headers
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[test]
fn site_provisions_the_topology_and_a_second_run_changes_nothing() {
    common::require_lab();
    let p = Project::in_repo();

    // `check` passes with the lab secrets (and, with empty defaults, without them).
    let out = cutover(
        &p,
        &["check", "-i", "inventory/lab.yml", "playbooks/site.yml"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "cutover check: {}",
        text(&out.stderr)
    );

    // First run: provisions what is missing (everything on bare hosts).
    let (code, recap, all) = apply_site(&p);
    assert_eq!(code, Some(0), "first run failed:\n{all}");
    assert_eq!(recap["status"], "ok", "{recap}");
    for h in ["app1", "app2", "db1", "db2", "lb", "staging", "lvm1"] {
        assert_eq!(recap["hosts"][h]["failed"], 0, "{h}: {recap}");
        assert!(
            recap["hosts"][h].is_object(),
            "{h} missing from the recap: {recap}"
        );
    }

    assert_the_partition_layout_on_lvm1();
    let (page, content) = assert_the_lb_serves_pages_and_sessions(&p);
    assert_replication_carries_the_page(&page, &content);
    // Staging: its own cluster on its own database, mail disabled.
    let st = common::lab_ssh_ok("staging", "curl -sS http://127.0.0.1:8080/status");
    assert!(
        st.contains("\"state\":\"RUNNING\"") && st.contains("\"node\":\"staging\""),
        "{st}"
    );
    let cfg = common::lab_ssh_ok("staging", "cat /var/lib/wiki/wiki.cfg.xml");
    common::cluster::assert_staging_config(&cfg);
    // The plugins pinned for 1.0.0, on every node and staging, each enabled.
    common::cluster::assert_plugins_enabled_on(
        &["app1", "app2", "staging"],
        common::cluster::PLUGINS_V1,
    );

    assert_the_security_measures();
    assert_the_maintenance_page_spares_the_admin();
    // Second run: nothing to change anywhere.
    let (code, recap, all) = apply_site(&p);
    assert_eq!(code, Some(0), "second run failed:\n{all}");
    let hosts = recap["hosts"].as_object().expect("recap hosts");
    assert_eq!(hosts.len(), 7, "{recap}");
    for (h, r) in hosts {
        assert_eq!(r["failed"], 0, "{h}: {recap}");
        assert_eq!(
            r["changed"],
            0,
            "second run changed something on {h}: {:#?}",
            changed_steps(&all)
        );
    }
}

/// The inventory's `lvm_layout` on lvm1 (the only host with a volume group): each volume an LV
/// tagged `cutover-layout`, mounted where the layout says, in fstab.
fn assert_the_partition_layout_on_lvm1() {
    let o = common::lvm1_ssh(
        "export LC_ALL=C; lvs --noheadings -o lv_name,lv_tags vg0; findmnt -rn -o TARGET,SOURCE; cat /etc/fstab",
    );
    let out = text(&o.stdout);
    for (lv, mount) in [
        ("app_install", "/opt/wiki"),
        ("app_home", "/var/lib/wiki"),
        ("mysql", "/var/lib/mysql"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [lv, "cutover-layout"]),
            "{lv} not tagged:\n{out}"
        );
        assert!(
            out.contains(&format!("{mount} /dev/mapper/vg0-{lv}\n")),
            "{lv} not mounted at {mount}:\n{out}"
        );
        assert!(
            out.contains(&format!("/dev/vg0/{lv} {mount} ext4 defaults,nofail 0 2\n")),
            "{lv} not in fstab:\n{out}"
        );
    }
}

fn assert_the_maintenance_page_spares_the_admin() {
    // Maintenance page: with the flag, others get 503 + Retry-After, the admin still gets in.
    struct Flag;
    impl Drop for Flag {
        fn drop(&mut self) {
            let _ = common::lab_ssh("lb", "rm -f /var/www/maintenance/ENABLED");
        }
    }
    let flag = Flag;
    common::lab_ssh_ok("lb", "touch /var/www/maintenance/ENABLED");
    let during = common::lab_ssh_ok("lb", "curl -s -D - -o /dev/null http://127.0.0.1/pages");
    assert_eq!(status_code(&during), 503, "{during}");
    assert_eq!(header(&during, "Retry-After"), Some("3600"), "{during}");
    let (h, _) = curl(&["http://lb/pages"]);
    assert_eq!(status_code(&h), 200, "the admin address was refused: {h}");
    drop(flag);
    let after = common::lab_ssh_ok(
        "lb",
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/pages",
    );
    assert_eq!(after, "200");
}

fn assert_the_security_measures() {
    // Security measures: the app runs as wiki, its HTTP connector only on localhost, secret
    // files 0640 root:wiki, no secret on a command line, the status worker only for admins.
    let ps = common::lab_ssh_ok(
        "app1",
        "ps -o user= -p \"$(systemctl show -p MainPID --value wiki)\"; \
         stat -c '%U:%G %a' /var/lib/wiki/wiki.cfg.xml /opt/wiki/current/conf/server.xml; \
         ss -Hltn 'sport = :8080' | awk '{print $4}'; \
         grep -c ajp-lab /proc/$(systemctl show -p MainPID --value wiki)/cmdline || true",
    );
    let lines: Vec<&str> = ps.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "wiki",
            "root:wiki 640",
            "root:wiki 640",
            "[::ffff:127.0.0.1]:8080",
            "0"
        ],
        "app1: {ps}"
    );
    let from_app = common::lab_ssh_ok(
        "app1",
        "curl -s -o /dev/null -w '%{http_code}' http://lb/jkstatus",
    );
    assert_eq!(from_app, "403", "the status worker is open to app1");
    let (h, body) = curl(&["http://lb/jkstatus?mime=prop&cmd=list"]);
    assert_eq!(status_code(&h), 200, "{h}");
    assert!(body.contains("worker.node1.activation=ACT"), "{body}");
}

fn assert_replication_carries_the_page(page: &str, content: &str) {
    // Replication: both threads run on db2, and the page written on db1 arrives there.
    let status = common::lab_ssh_ok("db2", "mysql -e 'SHOW SLAVE STATUS\\G'");
    assert!(status.contains("Slave_IO_Running: Yes"), "{status}");
    assert!(status.contains("Slave_SQL_Running: Yes"), "{status}");
    assert!(status.contains("Using_Gtid: Slave_Pos"), "{status}");
    let query = format!("mysql -N -B -e \"SELECT BODY FROM wiki.PAGES WHERE NAME = '{page}'\"");
    assert_eq!(common::lab_ssh_ok("db1", &query).trim(), content);
    poll(
        "the page to be replicated to db2",
        Duration::from_secs(30),
        || (common::lab_ssh_ok("db2", &query).trim() == content).then_some(()),
    );
    let ro = common::lab_ssh_ok("db2", "mysql -N -B -e 'SELECT @@read_only, @@server_id'");
    assert_eq!(
        ro.split_whitespace().collect::<Vec<_>>(),
        ["1", "2"],
        "db2: {ro}"
    );
}

/// Through the lb: /status, a page written and read back, sticky and balanced sessions; the page's
/// (name, content).
fn assert_the_lb_serves_pages_and_sessions(p: &Project) -> (String, String) {
    // Through the load balancer: /status, then a page written and read back.
    let (h, body) = curl(&["http://lb/status"]);
    assert_eq!(status_code(&h), 200, "{h}{body}");
    assert!(body.contains("\"state\":\"RUNNING\""), "{body}");
    let page = format!("site-lab-{}", unique());
    let content = format!("written through the load balancer {page}");
    let (h, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &content,
        &format!("http://lb/pages/{page}"),
    ]);
    assert_eq!(status_code(&h), 201, "PUT {page}: {h}");
    let (h, body) = curl(&[&format!("http://lb/pages/{page}")]);
    assert_eq!(status_code(&h), 200, "GET {page}: {h}");
    assert_eq!(body, content);

    // Sticky sessions: one cookie jar stays on one node, and the counter goes up.
    let jar = p.path("cookies.txt");
    let jar = jar.to_str().unwrap();
    let mut nodes = BTreeSet::new();
    for i in 1..=5 {
        let (h, body) = curl(&["-c", jar, "-b", jar, "http://lb/session"]);
        assert_eq!(status_code(&h), 200, "{h}{body}");
        nodes.insert(header(&h, "X-Wiki-Node").unwrap_or("?").to_string());
        let s: J = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(s["count"], i, "the session was not kept: {body}");
    }
    assert_eq!(nodes.len(), 1, "one session hit several nodes: {nodes:?}");
    // Fresh sessions are spread over both members (mod_jk balances by requests).
    let mut fresh = BTreeSet::new();
    for _ in 0..20 {
        let (h, _) = curl(&["http://lb/session"]);
        fresh.insert(header(&h, "X-Wiki-Node").unwrap_or("?").to_string());
        if fresh.len() == 2 {
            break;
        }
    }
    let both: BTreeSet<String> = ["node1", "node2"].map(String::from).into();
    assert_eq!(fresh, both, "fresh sessions did not reach both nodes");

    (page, content)
}
