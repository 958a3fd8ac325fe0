//! Dry-run plans against the lab's real hosts: exact diffs on exactly the affected hosts, no
//! writes anywhere, saved plans refused after drift, and secrets masked everywhere.

mod common;

use std::path::Path;
use std::process::Output;

use common::project::{text, Project};
use std::sync::Mutex;

use serde_json::Value as J;

static HOSTS: Mutex<()> = Mutex::new(());

const ALL: [&str; 6] = ["app1", "app2", "db1", "db2", "lb", "staging"];

fn lab_inventory() -> String {
    common::repo_root()
        .join("inventory/lab.yml")
        .display()
        .to_string()
}

/// A fingerprint of everything a playbook could touch on a host: paths, modes, sizes, times.
fn host_state(host: &str) -> String {
    let o = common::lab_ssh(
        host,
        // The database's own files and systemd's timestamps change by themselves; the lock
        // file a run would leave is in /var/tmp.
        "find /etc /opt /srv /var/lib /var/tmp /root -xdev \\( -path /var/lib/mysql -o -path /var/lib/systemd -o -path /srv/vol/mysql \\) -prune -o -printf '%p %m %s %T@\\n' 2>/dev/null | sort | sha256sum",
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a database server holds and logs: a checksum of every table outside the system
/// schemas (CHECKSUM TABLE … EXTENDED), the binary log position, replication and read_only.
#[derive(Debug, PartialEq)]
struct DbState {
    tables: String,
    binlog_file: String,
    binlog_pos: u64,
    replication: String,
    read_only: String,
}

/// The table the stand-in app rewrites by itself every few seconds (its cluster safety
/// heartbeat): left out of the checksums, and the only table binlog events may touch while a
/// plan runs.
const HEARTBEAT: &str = "`wiki`.`CLUSTERSAFETY`";

fn sql(host: &str, query: &str) -> String {
    common::lab_ssh_ok(host, &format!("mysql -N -B -e {}", shell_quote(query)))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn db_state(host: &str) -> DbState {
    let tables: Vec<String> = sql(
        host,
        "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
         WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
         AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .lines()
    .map(str::to_string)
    .filter(|t| t != HEARTBEAT)
    .collect();
    assert!(
        tables.iter().any(|t| t.starts_with("`wiki`.")),
        "{host}: no tables of the app database (is the lab provisioned?): {tables:?}"
    );
    let sums = sql(
        host,
        &format!("CHECKSUM TABLE {} EXTENDED", tables.join(", ")),
    );
    let master = sql(host, "SHOW MASTER STATUS");
    let mut m = master.split('\t');
    let (file, pos) = (m.next().unwrap_or("").to_string(), m.next().unwrap_or("0"));
    assert!(!file.is_empty(), "{host}: no binary log ({master})");
    let slave = common::lab_ssh_ok(host, "mysql -e 'SHOW SLAVE STATUS\\G'");
    let replication: Vec<&str> = slave
        .lines()
        .map(str::trim)
        .filter(|l| {
            [
                "Slave_IO_Running:",
                "Slave_SQL_Running:",
                "Master_Host:",
                "Master_User:",
                "Using_Gtid:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect();
    DbState {
        tables: format!("{}\n{sums}", tables.join("\n")),
        binlog_file: file,
        binlog_pos: pos.trim().parse().unwrap_or(0),
        replication: replication.join("\n"),
        read_only: sql(host, "SELECT @@global.read_only").trim().to_string(),
    }
}

/// The database on `host` is as `before` says: same table checksums, same replication and
/// read_only, the same binary log, and nothing written to it since but the app's heartbeat.
fn assert_db_unchanged(host: &str, before: &DbState, what: &str) {
    let changes = db_changes(host, before);
    assert!(
        changes.is_empty(),
        "{host}: {what} wrote to the database: {changes:#?}"
    );
}

/// How the database on `host` differs from `before` (apart from the app's heartbeat).
fn db_changes(host: &str, before: &DbState) -> Vec<String> {
    let now = db_state(host);
    let mut out = Vec::new();
    if before.tables != now.tables {
        out.push(format!(
            "tables or their checksums: {} → {}",
            before.tables, now.tables
        ));
    }
    if before.replication != now.replication {
        out.push(format!(
            "replication: {} → {}",
            before.replication, now.replication
        ));
    }
    if before.read_only != now.read_only {
        out.push(format!(
            "read_only: {} → {}",
            before.read_only, now.read_only
        ));
    }
    if before.binlog_file != now.binlog_file {
        out.push(format!(
            "binary log rotated: {} → {}",
            before.binlog_file, now.binlog_file
        ));
        return out;
    }
    let events = common::lab_ssh_ok(
        host,
        &format!(
            "mysqlbinlog --base64-output=decode-rows -v --start-position={} --stop-position={} /var/lib/mysql/{}",
            before.binlog_pos, now.binlog_pos, before.binlog_file
        ),
    );
    for e in foreign_binlog_events(&events) {
        out.push(format!(
            "binary log {} {}..{}: {e}",
            before.binlog_file, before.binlog_pos, now.binlog_pos
        ));
    }
    out
}

/// What a binary log excerpt (mysqlbinlog -v) records besides the app's heartbeat: rows of
/// other tables, and statements (DDL, statement-based DML).
fn foreign_binlog_events(text: &str) -> Vec<String> {
    let table_re = regex::Regex::new(
        r"(Table_map: |### (?:INSERT INTO|UPDATE|DELETE FROM) )(`[^`]*`\.`[^`]*`)",
    )
    .unwrap();
    let mut out = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(c) = table_re.captures(t) {
            if &c[2] != HEARTBEAT {
                out.push(t.to_string());
            }
            continue;
        }
        let ignorable = t.is_empty()
            || t.starts_with('#')
            || t.starts_with("/*")
            || t.starts_with("DELIMITER")
            || t.starts_with("SET ")
            || t.starts_with("use `")
            || t == "ROLLBACK /* added by mysqlbinlog */;"
            || ["BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK"]
                .iter()
                .any(|k| t.trim_end_matches("/*!*/;").trim_end_matches(';') == *k);
        if !ignorable {
            out.push(t.to_string());
        }
    }
    out
}

#[test]
fn binlog_excerpts_are_read_strictly() {
    let heartbeat = "#261124  0:26:46 server id 1  end_log_pos 22657 CRC32 0xa7dda4a5 \tGTID 0-1-211 trans\n/*M!100001 SET @@session.gtid_seq_no=211*//*!*/;\nSTART TRANSACTION\n/*!*/;\n#Q> UPDATE CLUSTERSAFETY SET SAFETY_NUMBER = 1\n#261124 Table_map: `wiki`.`CLUSTERSAFETY` mapped to number 22\n### UPDATE `wiki`.`CLUSTERSAFETY`\n### WHERE\n###   @1=4708468813534962963\nCOMMIT/*!*/;\nDELIMITER ;\nROLLBACK /* added by mysqlbinlog */;\n";
    assert!(foreign_binlog_events(heartbeat).is_empty());
    let insert = "#Q> INSERT INTO PAGES VALUES (1)\n#261124 Table_map: `wiki`.`PAGES` mapped to number 23\n### INSERT INTO `wiki`.`PAGES`\n";
    assert_eq!(foreign_binlog_events(insert).len(), 2);
    let ddl = "use `wiki`/*!*/;\nSET TIMESTAMP=1/*!*/;\nCREATE TABLE t (a int)\n/*!*/;\n";
    assert_eq!(foreign_binlog_events(ddl), ["CREATE TABLE t (a int)"]);
}

fn plan_json(p: &Project, playbook: &str, extra: &[&str]) -> (Output, J) {
    let inv = lab_inventory();
    let mut args = vec!["plan", "-i", &inv, "--templates"];
    let t = p.templates();
    args.push(&t);
    let pb = p.path(playbook).display().to_string();
    args.push(&pb);
    args.extend(["--format", "json"]);
    args.extend(extra);
    let o = p.run(&args);
    let j: J = serde_json::from_slice(&o.stdout).unwrap_or(J::Null);
    (o, j)
}

fn entries<'a>(plan: &'a J, outcome: &str) -> Vec<&'a J> {
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == outcome)
        .collect()
}

#[test]
fn one_variable_changes_exactly_one_diff_on_exactly_its_hosts_and_plans_never_write() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-plan-{}", std::process::id());
    // Removed from every host however the test ends.
    let _clean: Vec<Cleanup> = ALL
        .iter()
        .map(|h| Cleanup(h, format!("rm -rf {dir}")))
        .collect();
    p.write("templates/site.conf", "# managed by cutover\nname = {{ inventory_hostname }}\nrelease = {{ app_release }}\ncluster = {{ cluster_name | default(value='none') }}\n");
    p.write(
        "pb.yml",
        &format!(
            "- hosts: app_nodes:databases:load_balancers:rehearsal\n  steps:\n    - name: dir\n      file: {{ path: {dir}, state: directory }}\n    - name: site.conf\n      template: {{ src: site.conf, dest: {dir}/site.conf }}\n"
        ),
    );
    // Bare hosts: the plan lists every change, on every host.
    let (o, plan) = plan_json(&p, "pb.yml", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(entries(&plan, "change").len(), 12, "{plan:#}");
    assert!(
        !p.path(".cutover").exists() && !p.path("state").exists(),
        "a plan writes nothing on the controller"
    );
    let apply = p.run(&[
        "apply",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        p.path("pb.yml").to_str().unwrap(),
        "--output",
        "plain",
    ]);
    assert!(apply.status.success(), "{}", text(&apply));

    // Nothing to do now: exit 0.
    let (o, plan) = plan_json(&p, "pb.yml", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(entries(&plan, "change").is_empty());

    // One variable, set for the app nodes only: one diff, one line, on app1 and app2 only.
    let before: Vec<String> = ALL.iter().map(|h| host_state(h)).collect();
    let dbs_before: Vec<(&str, DbState)> = ["db1", "db2"]
        .into_iter()
        .map(|h| (h, db_state(h)))
        .collect();
    p.write("vars.yml", "cluster_name: wiki-renamed\n");
    assert_one_diff_line_on_the_app_nodes_only(&p);
    assert_writes_are_shown_not_run(&p);
    // No plan changed anything on any host, in its files or its database.
    let after: Vec<String> = ALL.iter().map(|h| host_state(h)).collect();
    assert_eq!(before, after, "a plan must not write on any host");
    for (h, b) in &dbs_before {
        assert_db_unchanged(h, b, "a plan");
    }
}

fn assert_writes_are_shown_not_run(p: &Project) {
    // A plan of steps that would write to the databases, the load balancer and services: it
    // shows them, and runs none of them.
    p.write(
        "db.yml",
        r#"- hosts: databases
  steps:
    - name: facts
      mysql_facts: {}
      register: f
    - name: a page written by SQL
      mysql_query: { sql: "INSERT INTO wiki.PAGES (NAME, BODY, CREATED_AT, UPDATED_AT) VALUES ('plan-must-not-write', 'x', NOW(), NOW())" }
    - name: a table written by a command
      command: { argv: [mysql, -e, "CREATE TABLE wiki.PLAN_MUST_NOT_WRITE (a int)"] }
- hosts: db_slave
  steps:
    - name: in sync
      mysql_replication: { state: synced, master: db1 }
    - name: replication stopped
      mysql_replication: { state: stopped }
    - name: writable
      mysql_replication: { read_only: false }
    - name: slave shut down
      service: { name: mariadb, state: stopped }
- hosts: db_master
  steps:
    - name: binary log flushed
      mysql_query: { sql: "FLUSH BINARY LOGS" }
- hosts: load_balancers
  steps:
    - name: drained
      lb_member: { lb: wiki_lb, member: node1, activation: disabled }
    - name: maintenance page
      maintenance: { path: "{{ maintenance_flag }}", state: "on" }
"#,
    );
    let (o, plan) = plan_json(p, "db.yml", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let shown = |name: &str, outcome: &str| {
        plan["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name && e["outcome"] == outcome)
    };
    for (name, outcome) in [
        ("a page written by SQL", "unknown"),
        ("a table written by a command", "unknown"),
        ("replication stopped", "change"),
        ("writable", "change"),
        ("slave shut down", "change"),
        ("drained", "change"),
        ("maintenance page", "change"),
    ] {
        assert!(shown(name, outcome), "{name} is not {outcome} in {plan:#}");
    }
}

/// With vars.yml setting cluster_name and --limit app_nodes: one diff line on app1 and app2, in
/// json and markdown.
fn assert_one_diff_line_on_the_app_nodes_only(p: &Project) {
    // -e sets it for every host; --limit keeps the plan to the app nodes, and the hosts
    // outside the limit must not appear at all.
    let (o, plan) = plan_json(
        p,
        "pb.yml",
        &[
            "-e",
            &format!("@{}", p.path("vars.yml").display()),
            "--limit",
            "app_nodes",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let changes = entries(&plan, "change");
    let hosts: Vec<&str> = changes
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["app1", "app2"]);
    for e in &changes {
        let diff = e["diff"].as_str().unwrap();
        let changed: Vec<&str> = diff
            .lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
            })
            .collect();
        assert_eq!(
            changed,
            ["-cluster = wiki-production", "+cluster = wiki-renamed"],
            "{diff}"
        );
    }
    // Markdown and text formats carry the same diff.
    let md = p.run(&[
        "plan",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        p.path("pb.yml").to_str().unwrap(),
        "--format",
        "markdown",
        "-e",
        &format!("@{}", p.path("vars.yml").display()),
        "--limit",
        "app_nodes",
    ]);
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("## `app1`")
            && md.contains("+cluster = wiki-renamed")
            && md.contains("<details>"),
        "{md}"
    );
}

#[test]
fn a_saved_plan_is_refused_after_drift_and_applied_without() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-saved-{}", std::process::id());
    p.write("templates/a.conf", "value = {{ inventory_hostname }}\n");
    p.write(
        "pb.yml",
        &format!("- hosts: app1\n  steps:\n    - file: {{ path: {dir}, state: directory }}\n    - template: {{ src: a.conf, dest: {dir}/a.conf }}\n"),
    );
    let saved = p.path("plan.json").display().to_string();
    let pb = p.path("pb.yml").display().to_string();
    let o = p.run(&[
        "plan",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        &pb,
        "--out",
        &saved,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Drift: someone creates the file on the host after the review.
    common::lab_ssh(
        "app1",
        &format!("mkdir -p {dir} && echo 'value = hand-made' > {dir}/a.conf"),
    );
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        &saved,
        "--output",
        "plain",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no longer matches") && text(&o).contains("nothing was applied"),
        "{}",
        text(&o)
    );
    // What drifted, not only that it did: the file the plan would have created is on the host
    // now, with this content.
    assert!(
        text(&o).contains(
            "      --- on the host when planned\n      +++ on the host now\n      @@ -0,0 +1 @@\n      +value = hand-made\n"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(
        String::from_utf8_lossy(&common::lab_ssh("app1", &format!("cat {dir}/a.conf")).stdout),
        "value = hand-made\n"
    );
    // Back as it was when reviewed: the saved plan applies, exactly.
    common::lab_ssh("app1", &format!("rm -rf {dir}"));
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        &saved,
        "--output",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&common::lab_ssh("app1", &format!("cat {dir}/a.conf")).stdout),
        "value = app1\n"
    );
    // An input edited after the review is drift too.
    p.write(
        "templates/a.conf",
        "value = {{ inventory_hostname }} # edited\n",
    );
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        &saved,
        "--output",
        "plain",
    ]);
    // Found before any host is contacted, naming the file and what it is.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "error: {saved}: template `{}/a.conf` differs from the one the plan was made from",
            p.templates()
        )),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty(), "no run was started: {}", text(&o));
    common::lab_ssh("app1", &format!("rm -rf {dir}"));
}

/// Every artifact a run leaves: stdout, stderr, journals, plans, JSON, JUnit.
fn all_artifacts(p: &Project, outputs: &[Output]) -> String {
    let mut all = String::new();
    for o in outputs {
        all.push_str(&text(o));
    }
    fn walk(dir: &Path, all: &mut String) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), all);
                } else if let Ok(t) = std::fs::read_to_string(e.path()) {
                    all.push_str(&t);
                }
            }
        }
    }
    walk(&p.path("state"), &mut all);
    walk(&p.path("out"), &mut all);
    all
}

#[test]
fn secrets_reach_the_host_and_never_any_output() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-secret-{}", std::process::id());
    // A password with characters that escaping changes, so every escaped form is checked.
    let secret = format!("Pw&<{}>'x\"", std::process::id());
    std::fs::create_dir_all(p.path("out")).unwrap();
    let inv_path = encrypt_the_secret_into_a_lab_inventory(&p, &secret);
    p.write(
        "templates/db.cnf",
        "[client]\nuser = wiki\npassword = {{ db_password }}\n",
    );
    p.write("templates/wiki.cfg.xml", "<property name=\"hibernate.connection.password\">{{ db_password | xml_escape }}</property>\n");
    p.write(
        "pb.yml",
        &format!(
            r#"- hosts: app1
  steps:
    - file: {{ path: {dir}, state: directory }}
    - name: db config
      template: {{ src: db.cnf, dest: {dir}/db.cnf, mode: "0600" }}
    - name: app config
      template: {{ src: wiki.cfg.xml, dest: {dir}/wiki.cfg.xml, mode: "0600" }}
    - name: echo it
      shell: "printf '%s' {{{{ db_password | shell_quote }}}}"
    - name: say it
      debug: {{ msg: "the password is {{{{ db_password }}}}" }}
    - name: fail with it
      fail: {{ msg: "bad password {{{{ db_password }}}}" }}
      ignore_errors: true
"#
        ),
    );
    let pb = p.path("pb.yml").display().to_string();
    let t = p.templates();
    let mut outputs = Vec::new();
    for format in ["text", "markdown", "json"] {
        outputs.push(p.run(&[
            "plan",
            "-i",
            &inv_path,
            "--templates",
            &t,
            &pb,
            "--format",
            format,
            "--out",
            p.path(&format!("out/plan-{format}.json")).to_str().unwrap(),
        ]));
    }
    let plan: J = serde_json::from_slice(&outputs[2].stdout).unwrap();
    let diff = plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "db config")
        .unwrap()["diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(diff.contains("+password = [secret:db_password]"), "{diff}");
    outputs.push(p.run(&[
        "apply",
        "-i",
        &inv_path,
        "--templates",
        &t,
        &pb,
        "--output",
        "json",
        "--junit",
        p.path("out/junit.xml").to_str().unwrap(),
    ]));
    outputs.push(p.run(&[
        "apply",
        "-i",
        &inv_path,
        "--templates",
        &t,
        &pb,
        "--output",
        "plain",
        "-v",
    ]));
    outputs.push(p.run(&["inventory", "-i", &inv_path, "--host", "app1"]));
    outputs.push(p.run(&[
        "render",
        "-i",
        &inv_path,
        "--templates",
        &t,
        "db.cnf",
        "--host",
        "app1",
    ]));
    let run = String::from_utf8_lossy(&outputs[3].stdout).into_owned();
    assert!(
        run.contains("the password is [secret:db_password]"),
        "{run}"
    );
    assert_the_host_has_the_secret_and_no_artifact_has(&p, &dir, &secret, &outputs);
    common::lab_ssh("app1", &format!("rm -rf {dir}"));
}

/// The files in DIR on app1 hold SECRET (plain and XML-escaped); no output or artifact holds it in
/// any form, only its marker.
fn assert_the_host_has_the_secret_and_no_artifact_has(
    p: &Project,
    dir: &str,
    secret: &str,
    outputs: &[Output],
) {
    // The host has the real value.
    let cnf = common::lab_ssh("app1", &format!("cat {dir}/db.cnf; cat {dir}/wiki.cfg.xml"));
    let cnf = String::from_utf8_lossy(&cnf.stdout);
    assert!(cnf.contains(&format!("password = {secret}")), "{cnf}");
    let xml_form = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;");
    assert!(cnf.contains(&xml_form), "{cnf}");
    // …and no artifact has it, in any form.
    let all = all_artifacts(p, outputs);
    assert!(
        all.contains("[secret:db_password]"),
        "the marker shows where the secret was"
    );
    for form in [secret, xml_form.as_str(), &secret.replace('\'', r"'\''")] {
        assert!(!all.contains(form), "secret leaked in the form {form:?}");
    }
}

/// A key, SECRET encrypted to secrets.age as db_password, and the lab inventory using both; its
/// path.
fn encrypt_the_secret_into_a_lab_inventory(p: &Project, secret: &str) -> String {
    let key = p.path("lab.key");
    let o = p.run(&["secrets", "keygen", "-o", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let recipient = String::from_utf8_lossy(&o.stdout).trim().to_string();
    p.write(
        "plain.yml",
        &format!("db_password: {}\n", serde_json::to_string(&secret).unwrap()),
    );
    let o = p.run(&[
        "secrets",
        "encrypt",
        p.path("plain.yml").to_str().unwrap(),
        "-r",
        &recipient,
        "-o",
        p.path("secrets.age").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(p.path("plain.yml")).unwrap();
    assert!(!std::fs::read_to_string(p.path("secrets.age"))
        .unwrap()
        .contains(secret));
    // The lab inventory plus the secrets file, with the key next to it.
    // The lab inventory with this test's secrets file and key instead of the lab's.
    let inv = common::project::lab_inventory_text();
    let inv: String = inv
        .lines()
        .map(|l| {
            if l.starts_with("secrets_file:") {
                "secrets_file: secrets.age".to_string()
            } else if l.starts_with("secrets_key_file:") {
                "secrets_key_file: lab.key".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    p.write("inventory.yml", &inv).display().to_string()
}

/// Removes what a test put on a host, however the test ends.
struct Cleanup(&'static str, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = common::lab_ssh(self.0, &self.1);
    }
}

fn entry<'a>(plan: &'a J, name: &str) -> &'a J {
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry `{name}` in {plan:#}"))
}

/// The changed lines of a unified diff.
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect()
}

#[test]
fn steps_on_one_file_are_planned_against_each_other_and_the_saved_plan_applies_exactly() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let id = std::process::id();
    let dir = format!("/srv/cutover-overlay-{id}");
    let unit = format!("cutover-overlay-{id}");
    let _clean = Cleanup(
        "app1",
        format!("systemctl disable --now {unit} 2>/dev/null; rm -f /etc/systemd/system/{unit}.service; systemctl daemon-reload; rm -rf {dir}"),
    );
    // The host has a hand-made version of the file; the playbook templates it, then edits it
    // twice, then starts a unit whose file it writes first.
    common::lab_ssh_ok(
        "app1",
        &format!(
            "mkdir -p {dir} && printf '# hand-made\\nname = old\\nthreads = 2\\n' > {dir}/app.conf"
        ),
    );
    write_the_overlay_playbook(&p, &dir, &unit);
    let saved = p.path("out/plan.json").display().to_string();
    std::fs::create_dir_all(p.path("out")).unwrap();
    let (o, plan) = plan_json(&p, "pb.yml", &["--out", &saved]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_each_step_is_planned_after_the_earlier_ones(&plan, &dir, &unit);
    // The saved plan applies: every step's probe, just before it runs, matches what the plan
    // derived for it (a wrong derivation is drift, and nothing of that step is applied).
    let o = p.run(&[
        "apply",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        &saved,
        "--output",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        common::lab_ssh_ok("app1", &format!("cat {dir}/app.conf; stat -c %a {dir}/app.conf; cat {dir}/data/seed.txt; systemctl is-active {unit}")),
        "# managed by cutover\nname = app1\nthreads = 8\nmode = normal\nextra = yes\n640\nseed\nactive\n"
    );
}

fn assert_each_step_is_planned_after_the_earlier_ones(plan: &J, dir: &str, unit: &str) {
    // The template against the host's file.
    assert_eq!(
        changed_lines(entry(plan, "conf")["diff"].as_str().unwrap()),
        [
            "-# hand-made",
            "-name = old",
            "-threads = 2",
            "+# managed by cutover",
            "+name = app1",
            "+threads = 4",
            "+mode = normal",
        ]
    );
    // Each edit against what the steps before it leave, not against the host.
    let more = entry(plan, "more threads");
    assert_eq!(more["outcome"], "change", "{more:#}");
    assert_eq!(
        changed_lines(more["diff"].as_str().unwrap()),
        ["-threads = 4", "+threads = 8"],
        "{more:#}"
    );
    let extra = entry(plan, "extra");
    let diff = extra["diff"].as_str().unwrap();
    assert_eq!(changed_lines(diff), ["+extra = yes"], "{diff}");
    assert!(
        diff.contains(" threads = 8\n") && diff.contains(" mode = normal\n"),
        "the combined content around the new line: {diff}"
    );
    // The template's mode is planned: asking for it again changes nothing.
    assert_eq!(
        entry(plan, "mode again")["outcome"],
        "no_change",
        "{plan:#}"
    );
    // A directory created by an earlier step: the copy into it is a create.
    let seed = entry(plan, "seed");
    assert_eq!(seed["outcome"], "change", "{seed:#}");
    assert_eq!(seed["summary"], format!("create {dir}/data/seed.txt"));
    // A unit whose file an earlier step writes: known, stopped, then planned running.
    let run = entry(plan, "unit running");
    assert_eq!(run["outcome"], "change", "{run:#}");
    assert_eq!(
        run["summary"],
        format!("{unit}: stopped → started; {unit}: enabled at boot")
    );
    assert_eq!(entry(plan, "unit running still")["outcome"], "no_change");
}

/// A template of DIR/app.conf, two edits of it, a file in a new directory and a new unit UNIT
/// started.
fn write_the_overlay_playbook(p: &Project, dir: &str, unit: &str) {
    p.write(
        "templates/app.conf",
        "# managed by cutover\nname = {{ inventory_hostname }}\nthreads = 4\nmode = normal\n",
    );
    p.write(
        "pb.yml",
        &format!(
            r#"- hosts: app1
  steps:
    - name: conf
      template: {{ src: app.conf, dest: {dir}/app.conf, mode: "0640" }}
    - name: more threads
      lineinfile: {{ path: {dir}/app.conf, regexp: "^threads", line: "threads = 8" }}
    - name: extra
      lineinfile: {{ path: {dir}/app.conf, line: "extra = yes", insertafter: "^mode" }}
    - name: mode again
      file: {{ path: {dir}/app.conf, mode: "0640" }}
    - name: data dir
      file: {{ path: {dir}/data, state: directory, mode: "0750" }}
    - name: seed
      copy: {{ dest: {dir}/data/seed.txt, content: "seed\n" }}
    - name: unit file
      copy:
        dest: /etc/systemd/system/{unit}.service
        content: "[Service]\nExecStart=/bin/sleep 100000\n[Install]\nWantedBy=multi-user.target\n"
    - name: unit running
      service: {{ name: {unit}, state: started, enabled: true }}
    - name: unit running still
      service: {{ name: {unit}, state: started, enabled: true }}
"#
        ),
    );
}

#[test]
fn a_step_after_one_whose_result_cannot_be_derived_is_unknown_naming_it() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-underivable-{}", std::process::id());
    let _clean = Cleanup("app1", format!("rm -rf {dir}"));
    // On the host, each file is already as the later steps want it: diffed against the host,
    // those steps would be "no change".
    common::lab_ssh_ok(
        "app1",
        &format!("mkdir -p {dir} && printf 'x\\n' > {dir}/data && printf 'a = 1\\n' > {dir}/b.conf && chown root {dir}/b.conf"),
    );
    p.write("templates/b.conf", "a = 1\nb = 2\n");
    p.write(
        "pb.yml",
        &format!(
            r#"- hosts: app1
  steps:
    - name: regenerate data
      shell: "date > {dir}/data"
    - name: data has x
      lineinfile: {{ path: {dir}/data, line: x }}
    - name: new conf
      template: {{ src: b.conf, dest: {dir}/new.conf }}
    - name: new conf owner
      file: {{ path: {dir}/new.conf, owner: root }}
    - name: copy into nowhere
      copy: {{ dest: {dir}/missing/c.txt, content: "c\n" }}
"#
        ),
    );
    let before = host_state("app1");
    let (o, plan) = plan_json(&p, "pb.yml", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(entry(&plan, "regenerate data")["outcome"], "unknown");
    let data = entry(&plan, "data has x");
    assert_eq!(data["outcome"], "unknown", "{data:#}");
    let why = data["reason"].as_str().unwrap();
    assert!(
        why.contains("step 1 (regenerate data)") && why.contains(&format!("{dir}/data")),
        "{why}"
    );
    // A new file's owner is the host's to give: the step asking for one is unknown, naming
    // the step that creates the file.
    assert_eq!(entry(&plan, "new conf")["outcome"], "change");
    let owner = entry(&plan, "new conf owner");
    assert_eq!(owner["outcome"], "unknown", "{owner:#}");
    let why = owner["reason"].as_str().unwrap();
    assert!(
        why.contains("owner") && why.contains("step 3 (new conf)"),
        "{why}"
    );
    let nowhere = entry(&plan, "copy into nowhere");
    assert_eq!(nowhere["outcome"], "unknown", "{nowhere:#}");
    assert!(
        nowhere["reason"].as_str().unwrap().contains(&format!(
            "the directory of {dir}/missing/c.txt does not exist"
        )),
        "{nowhere:#}"
    );
    // The text format says the same, and nothing was written.
    let o = p.run(&[
        "plan",
        "-i",
        &lab_inventory(),
        "--templates",
        &p.templates(),
        p.path("pb.yml").to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(
        out.contains("unknown step 1 (regenerate data) runs a command that names"),
        "{out}"
    );
    assert_eq!(before, host_state("app1"), "a plan must not write");
}

#[test]
fn the_database_check_sees_a_write() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    // What a plan that wrote would leave: a row in a table (replicated to the slave).
    let db = format!("cutover_plan_check_{}", std::process::id());
    let _clean = Cleanup("db1", format!("mysql -e 'DROP DATABASE IF EXISTS {db}'"));
    sql("db1", &format!("CREATE DATABASE {db}"));
    sql("db1", &format!("CREATE TABLE {db}.t (a INT PRIMARY KEY)"));
    // Let the slave have the table before the check starts.
    common::lab_ssh_ok(
        "db2",
        &format!("for i in $(seq 100); do mysql -N -e 'SHOW TABLES FROM {db}' 2>/dev/null | grep -q t && exit 0; sleep 0.1; done; exit 1"),
    );
    let before: Vec<(&str, DbState)> = ["db1", "db2"]
        .into_iter()
        .map(|h| (h, db_state(h)))
        .collect();
    sql("db1", &format!("INSERT INTO {db}.t VALUES (1)"));
    common::lab_ssh_ok(
        "db2",
        &format!("for i in $(seq 100); do [ \"$(mysql -N -e 'SELECT COUNT(*) FROM {db}.t')\" = 1 ] && exit 0; sleep 0.1; done; exit 1"),
    );
    for (h, b) in &before {
        let changes = db_changes(h, b);
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("tables or their checksums")),
            "{h}: the checksums missed the insert: {changes:#?}"
        );
        assert!(
            changes.iter().any(|c| c.contains(&format!("`{db}`.`t`"))),
            "{h}: the binary log check missed the insert: {changes:#?}"
        );
    }
    // A write the checksums cannot see (a table's comment) is seen in the binary log.
    let before = db_state("db1");
    sql(
        "db1",
        &format!("ALTER TABLE {db}.t COMMENT 'written by a plan'"),
    );
    let changes = db_changes("db1", &before);
    assert!(
        !changes.iter().any(|c| c.starts_with("tables"))
            && changes.iter().any(|c| c.contains("ALTER TABLE")),
        "{changes:#?}"
    );
}
