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
    p.write("vars.yml", "cluster_name: wiki-renamed\n");
    // -e sets it for every host; --limit keeps the plan to the app nodes, and the hosts
    // outside the limit must not appear at all.
    let (o, plan) = plan_json(
        &p,
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
    // No plan changed anything on any host.
    let after: Vec<String> = ALL.iter().map(|h| host_state(h)).collect();
    assert_eq!(before, after, "a plan must not write on any host");
    for h in ALL {
        common::lab_ssh(h, &format!("rm -rf {dir}"));
    }
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
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("input changed") && text(&o).contains("a.conf"),
        "{}",
        text(&o)
    );
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
        .contains(&secret));
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
    let inv_path = p.write("inventory.yml", &inv).display().to_string();
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
    let all = all_artifacts(&p, &outputs);
    assert!(
        all.contains("[secret:db_password]"),
        "the marker shows where the secret was"
    );
    for form in [
        secret.as_str(),
        xml_form.as_str(),
        &secret.replace('\'', r"'\''"),
    ] {
        assert!(!all.contains(form), "secret leaked in the form {form:?}");
    }
    common::lab_ssh("app1", &format!("rm -rf {dir}"));
}
