//! The engine against the lab's real hosts: idempotence, hostile values, host keys, Ctrl-C,
//! locks, become, retries/handlers/tags, timeouts and unwinding.
//!
//! Needs the lab (`lab/lab.sh up`). Runs against one host take the host's lock, so the tests of
//! this file take turns (a mutex); they still run against real sshd and systemd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::project::{lab_inventory, text, Project};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as J;

static HOSTS: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    HOSTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_of<'a>(results: &'a [J], step: &str, host: &str) -> &'a str {
    results
        .iter()
        .find(|e| e["name"] == step && e["host"] == host)
        .and_then(|e| e["status"].as_str())
        .unwrap_or_else(|| panic!("no result for step {step:?} on {host}: {results:#?}"))
}

fn ssh_ok(host: &str, cmd: &str) -> String {
    let o = common::lab_ssh(host, cmd);
    assert!(o.status.success(), "ssh {host} {cmd}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn modules_change_once_then_report_no_change() {
    let _g = serial();
    let p = Project::new();
    let dir = format!("/srv/cutover-test-idem-{}", std::process::id());
    p.write("templates/stamped.conf", "built = 0\nkey = value\n");
    p.write("templates/app.conf", "node={{ node_name }}\npeers={{ groups.app_nodes | hostvar(name=\"address\", hostvars=hostvars) | join(sep=\",\") }}\n");
    p.write(
        "pb.yml",
        &format!(
            r#"- name: idempotence
  hosts: app_nodes
  vars: {{ dir: "{dir}" }}
  steps:
    - name: dir
      file: {{ path: "{{{{ dir }}}}", state: directory, mode: "0750" }}
    - name: template
      template: {{ src: app.conf, dest: "{{{{ dir }}}}/app.conf", mode: "0640" }}
    - name: copy
      copy: {{ content: "hello\n", dest: "{{{{ dir }}}}/hello" }}
    - name: link
      file: {{ path: "{{{{ dir }}}}/current", state: link, src: "{{{{ dir }}}}/hello" }}
    - name: touch
      file: {{ path: "{{{{ dir }}}}/marker", state: touch }}
    - name: gone
      file: {{ path: "{{{{ dir }}}}/nothing-here", state: absent }}
    - name: unit
      copy:
        dest: /etc/systemd/system/cutover-idem.service
        content: "[Service]\nExecStart=/bin/sleep infinity\n"
    - name: service
      service: {{ name: cutover-idem, state: started, daemon_reload: true }}
    - name: command with creates
      command: {{ argv: [touch, "{{{{ dir }}}}/created"], creates: "{{{{ dir }}}}/created" }}
    - name: stamped
      template: {{ src: stamped.conf, dest: "{{{{ dir }}}}/stamped.conf", ignore_lines: ["^built = "] }}
    - name: recurse
      file: {{ path: "{{{{ dir }}}}", state: directory, recurse: true, group: daemon }}
"#
        ),
    );
    // A failed earlier run may have left the unit behind: start from a clean host.
    for h in ["app1", "app2"] {
        ssh_ok(h, "systemctl stop cutover-idem 2>/dev/null; rm -f /etc/systemd/system/cutover-idem.service; systemctl daemon-reload");
    }
    let first = p.apply("pb.yml", &["--output", "plain"]);
    assert!(first.status.success(), "{}", text(&first));
    let r = p.last_run_results();
    for step in [
        "dir",
        "template",
        "copy",
        "link",
        "touch",
        "unit",
        "service",
        "command with creates",
    ] {
        for host in ["app1", "app2"] {
            assert_eq!(
                status_of(&r, step, host),
                "changed",
                "first run, {step} on {host}"
            );
        }
    }
    assert_eq!(status_of(&r, "gone", "app1"), "ok");
    assert_eq!(
        ssh_ok("app1", &format!("cat {dir}/app.conf")),
        "node=node1\npeers=10.77.0.11,10.77.0.12\n"
    );
    assert_eq!(
        ssh_ok(
            "app2",
            &format!("stat -c %a {dir} {dir}/app.conf; readlink {dir}/current")
        ),
        format!("750\n640\n{dir}/hello\n")
    );
    assert_eq!(
        ssh_ok("app1", "systemctl is-active cutover-idem").trim(),
        "active"
    );

    assert_eq!(
        ssh_ok("app1", &format!("find {dir} ! -group daemon | wc -l")).trim(),
        "0",
        "recurse reached every file"
    );
    // The app rewrites the ignored line: that is not drift.
    ssh_ok(
        "app1",
        &format!("sed -i 's/^built = 0/built = 42/' {dir}/stamped.conf"),
    );
    let second = p.apply("pb.yml", &["--output", "plain"]);
    assert!(second.status.success(), "{}", text(&second));
    for e in p.last_run_results() {
        assert_eq!(e["status"], "ok", "second run must change nothing: {e}");
    }
    ssh_ok("app1", &format!("systemctl stop cutover-idem; rm -f /etc/systemd/system/cutover-idem.service; systemctl daemon-reload; rm -rf {dir}"));
    ssh_ok("app2", &format!("systemctl stop cutover-idem; rm -f /etc/systemd/system/cutover-idem.service; systemctl daemon-reload; rm -rf {dir}"));
}

/// Values that a careless tool would hand to a shell. None of them may run; each must arrive
/// byte for byte where it was meant to go.
#[test]
fn hostile_values_execute_nothing() {
    let _g = serial();
    let p = Project::new();
    let canary = "/tmp/cutover-canary";
    let base = format!("/srv/cutover-hostile-{}", std::process::id());
    let hostile = [
        format!("$(touch {canary}-1)"),
        format!("`touch {canary}-2`"),
        format!("'; touch {canary}-3; echo '"),
        format!("\"; touch {canary}-4; echo \""),
        format!("a\ntouch {canary}-5"),
        "-rf".to_string(),
        "with space".to_string(),
        format!("x;touch {canary}-6"),
    ];
    ssh_ok("app1", &format!("rm -f {canary}-*; mkdir -p {base}"));
    // Hostile values arrive as extra variables from a file, as an admin's data would.
    let vars: Vec<String> = hostile
        .iter()
        .enumerate()
        .map(|(i, v)| format!("v{i}: {}", serde_json::to_string(v).unwrap()))
        .collect();
    p.write("vars.yml", &(vars.join("\n") + "\n"));
    let mut steps = String::new();
    for i in 0..hostile.len() {
        steps.push_str(&format!(
            r#"    - name: copy {i}
      copy: {{ content: "{{{{ v{i} }}}}", dest: "{base}/{{{{ v{i} | replace(from='/', to='_') }}}}.txt" }}
    - name: argv {i}
      command: {{ argv: [printf, "%s", "{{{{ v{i} }}}}"] }}
      register: out{i}
      changed_when: false
    - name: check {i}
      assert: {{ that: "out{i}.stdout == v{i} | trim_end" }}
    - name: dir {i}
      file: {{ path: "{base}/d-{{{{ v{i} | replace(from='/', to='_') }}}}", state: directory }}
    - name: shell quoted {i}
      shell: "printf '%s' {{{{ v{i} | shell_quote }}}} > {base}/sq-{i}"
"#
        ));
    }
    p.write(
        "pb.yml",
        &format!("- name: hostile\n  hosts: app1\n  steps:\n{steps}"),
    );
    let o = p.apply(
        "pb.yml",
        &[
            "--output",
            "plain",
            "-e",
            &format!("@{}", p.path("vars.yml").display()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let canaries = ssh_ok("app1", &format!("ls {canary}-* 2>/dev/null | wc -l"));
    assert_eq!(canaries.trim(), "0", "a hostile value was executed");
    for (i, v) in hostile.iter().enumerate() {
        let name = v.replace('/', "_");
        let content = common::lab_ssh(
            "app1",
            &format!("cat -- {}", shell_words(&format!("{base}/{name}.txt"))),
        );
        assert_eq!(String::from_utf8_lossy(&content.stdout), *v, "copy {i}");
        let sq = ssh_ok("app1", &format!("cat {base}/sq-{i}"));
        assert_eq!(sq, *v, "shell_quote {i}");
        let d = common::lab_ssh(
            "app1",
            &format!("test -d {}", shell_words(&format!("{base}/d-{name}"))),
        );
        assert!(d.status.success(), "dir {i} ({name:?}) missing");
    }
    ssh_ok("app1", &format!("rm -rf {base}"));
}

fn shell_words(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An inventory like the lab's, but with another known_hosts file.
fn inventory_with_known_hosts(p: &Project, known_hosts: &str) -> PathBuf {
    let kh = p.write("known_hosts", known_hosts);
    let inv = common::project::lab_inventory_text();
    let inv = inv.replace(
        "known_hosts_file: /var/lib/cutover-lab/ssh/known_hosts",
        &format!("known_hosts_file: {}", kh.display()),
    );
    p.write("inventory.yml", &inv)
}

#[test]
fn unknown_or_changed_host_key_refuses_the_host() {
    let _g = serial();
    let p = Project::new();
    let marker = format!("/tmp/cutover-hostkey-{}", std::process::id());
    p.write(
        "pb.yml",
        &format!("- hosts: app1\n  steps:\n    - command: {{ argv: [touch, {marker}] }}\n"),
    );
    // Unknown: an empty known_hosts.
    let inv = inventory_with_known_hosts(&p, "");
    let o = p.apply_with(&inv, "pb.yml", &["--output", "plain"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("host key verification failed"),
        "{}",
        text(&o)
    );
    // Changed: app1's name and address with another host's key.
    let real = std::fs::read_to_string(common::lab_state().join("ssh/known_hosts")).unwrap();
    let db1_key = real
        .lines()
        .find(|l| l.starts_with("db1 ") || l.starts_with("db1,"))
        .expect("db1 in known_hosts");
    let key = db1_key
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let inv = inventory_with_known_hosts(
        &p,
        &format!("app1 {key}\napp1.lab {key}\n10.77.0.11 {key}\n"),
    );
    let o = p.apply_with(&inv, "pb.yml", &["--output", "plain"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("host key verification failed"),
        "{}",
        text(&o)
    );
    let o = common::lab_ssh("app1", &format!("test -e {marker}"));
    assert!(
        !o.status.success(),
        "nothing may run on a host whose key was refused"
    );
}

fn ssh_processes_using(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("Z");
            state != "Z"
                && std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .count()
}

#[test]
fn ctrl_c_stops_at_a_step_boundary_and_leaves_nothing() {
    let _g = serial();
    let p = Project::new();
    p.write(
        "pb.yml",
        "- hosts: app_nodes\n  steps:\n    - name: first\n      command: sleep 2\n    - name: second\n      command: sleep 2\n    - name: third\n      command: sleep 2\n",
    );
    let child = p
        .apply_command(&lab_inventory(), "pb.yml", &["--output", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt while the first step is under way (its intent is journaled before it runs).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p
        .journal()
        .iter()
        .any(|e| e["event"] == "step_applying" && e["name"] == "first")
    {
        assert!(Instant::now() < deadline, "the first step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // ip netns exec execs cutover in place, so the child's pid is cutover's.
    unsafe_kill(child.id(), 2);
    let started = Instant::now();
    let out = p.wait_logged(&["apply", "pb.yml", "(interrupted)"], child);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "it stops after the step in flight"
    );
    let j = p.journal();
    assert!(
        j.iter().any(|e| e["event"] == "run_interrupted"),
        "journal says it was interrupted"
    );
    assert!(j
        .iter()
        .any(|e| e["event"] == "step_result" && e["name"] == "first"));
    assert!(
        !j.iter()
            .any(|e| e["event"] == "step_result" && e["name"] == "third"),
        "no step after the interrupt"
    );
    std::thread::sleep(Duration::from_millis(300));
    let runtime = p.runtime();
    assert_eq!(ssh_processes_using(&runtime), 0, "an ssh master survived");
    let leftovers: Vec<_> = walk(&runtime)
        .into_iter()
        .filter(|f| std::fs::symlink_metadata(f).is_ok_and(|m| !m.is_dir()))
        .collect();
    assert!(leftovers.is_empty(), "control sockets left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

fn unsafe_kill(pid: u32, sig: i32) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn a_second_run_is_refused_and_names_the_owner() {
    let _g = serial();
    let p = Project::new();
    p.write(
        "slow.yml",
        "- hosts: db1\n  steps:\n    - name: hold\n      command: sleep 3\n",
    );
    p.write(
        "quick.yml",
        "- hosts: db1\n  steps:\n    - name: quick\n      command: 'true'\n",
    );
    let first = p
        .apply_command(&lab_inventory(), "slow.yml", &["--output", "plain"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds db1 (its journal says so), however loaded the machine is.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p
        .journal()
        .iter()
        .any(|e| e["event"] == "host_connected" && e["host"] == "db1")
    {
        assert!(Instant::now() < deadline, "the first run never got db1");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Same project: refused by the controller lock (run once: no waiting for the lock).
    let o = p.output(p.apply_command(&lab_inventory(), "quick.yml", &["--output", "plain"]));
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        text(&o).contains("another run is driving this cluster")
            && text(&o).contains(&format!("pid {}", first.id())),
        "{}",
        text(&o)
    );
    // Another project (another working copy): refused by the lock on the host.
    let other = Project::new();
    other.write(
        "quick.yml",
        "- hosts: db1\n  steps:\n    - name: quick\n      command: 'true'\n",
    );
    let o =
        other.output(other.apply_command(&lab_inventory(), "quick.yml", &["--output", "plain"]));
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("locked by run") && text(&o).contains(&format!("pid {}", first.id())),
        "{}",
        text(&o)
    );
    assert!(!other
        .journal()
        .iter()
        .any(|e| e["event"] == "step_result" && e["name"] == "quick"));
    let out = p.wait_logged(&["apply", "slow.yml"], first);
    assert!(out.status.success(), "{}", text(&out));
    // Released: the next run gets through.
    let o = other.apply("quick.yml", &["--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_stale_lock_is_reported_and_broken_only_on_request() {
    let _g = serial();
    let p = Project::new();
    p.write(
        "pb.yml",
        "- hosts: db2\n  steps:\n    - name: quick\n      command: 'true'\n",
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    // A pid that cannot be alive: beyond pid_max.
    let lock = format!(
        r#"{{"run_id":"20200101-000000-dead","user":"ghost","controller":"{host}","pid":4194305,"started":"2020-01-01T00:00:00Z"}}"#
    );
    ssh_ok(
        "db2",
        &format!("printf '%s\\n' '{lock}' > /var/tmp/cutover.lock"),
    );
    let o = p.apply("pb.yml", &["--output", "plain"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("stale lock") && text(&o).contains("20200101-000000-dead"),
        "{}",
        text(&o)
    );
    let o = p.apply("pb.yml", &["--output", "plain", "--break-lock"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = common::lab_ssh("db2", "test -e /var/tmp/cutover.lock");
    assert!(!o.status.success(), "the run releases its lock at the end");
}

#[test]
fn become_with_and_without_a_password() {
    let _g = serial();
    let p = Project::new();
    let password =
        std::fs::read_to_string(common::lab_state().join("secrets/operator-sudo-password"))
            .unwrap();
    let inv =
        common::project::lab_inventory_text().replacen("  user: root\n", "  user: admin\n", 1);
    let admin_inv = p.write("admin.yml", &inv);
    let operator_inv = p.write(
        "operator.yml",
        &inv.replacen("  user: admin\n", "  user: operator\n", 1),
    );
    p.write(
        "pb.yml",
        "- hosts: app1\n  become: true\n  steps:\n    - name: whoami\n      command: id -u\n      register: me\n      changed_when: false\n    - name: root\n      assert: { that: \"me.stdout == '0'\" }\n",
    );
    let o = p.apply_with(&admin_inv, "pb.yml", &["--output", "plain"]);
    assert!(o.status.success(), "admin (NOPASSWD): {}", text(&o));
    // operator needs the password: without it, a clear error.
    let o = p.apply_with(&operator_inv, "pb.yml", &["--output", "plain"]);
    assert!(
        !o.status.success() && text(&o).contains("asks for a password"),
        "{}",
        text(&o)
    );
    // The password file stays out of the kept artifacts (the secret sweep looks for it there).
    let secret_dir = tempfile::tempdir().unwrap();
    let pwfile = secret_dir.path().join("pw");
    std::fs::write(&pwfile, &password).unwrap();
    let o = p.apply_with(
        &operator_inv,
        "pb.yml",
        &[
            "--output",
            "plain",
            "--become-password-file",
            pwfile.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "operator with password: {}", text(&o));
    let pw = password.trim();
    assert!(!text(&o).contains(pw), "password in output");
    for e in p.journal() {
        assert!(!e.to_string().contains(pw), "password in journal: {e}");
    }
}

#[test]
fn control_flow_register_when_retries_handlers_tags_limit() {
    let _g = serial();
    let p = Project::new();
    let dir = format!("/tmp/cutover-flow-{}", std::process::id());
    write_flow_playbook(&p, &dir);
    let o = p.apply("pb.yml", &["--output", "plain", "--skip-tags", "extra"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_flow_ran_as_written(&dir);
    // --limit and --tags: only app2, only the tagged step.
    let o = p.apply(
        "pb.yml",
        &["--output", "plain", "--limit", "app2", "--tags", "extra"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = p.last_run_results();
    assert!(
        r.iter()
            .all(|e| e["host"] == "app2" && e["name"] == "tagged"),
        "{r:#?}"
    );
    for h in ["app1", "app2", "lb"] {
        ssh_ok(
            h,
            &format!(
                "rm -rf {dir} /tmp/cutover-flow-*-{pid} /tmp/cutover-flow-*-{pid}-*",
                pid = std::process::id()
            ),
        );
    }
}

/// What the flow playbook leaves on the hosts (run with --skip-tags extra).
fn assert_flow_ran_as_written(dir: &str) {
    for h in ["app1", "app2"] {
        assert_eq!(
            ssh_ok(h, &format!("wc -l < {dir}/attempts")).trim(),
            "3",
            "retried until the third attempt on {h}"
        );
        assert_eq!(
            ssh_ok(h, &format!("cat {dir}/handler")),
            "handled\n",
            "handler ran on {h}"
        );
        assert!(
            !common::lab_ssh(h, &format!("test -e {dir}/tagged"))
                .status
                .success(),
            "skipped tag ran on {h}"
        );
    }
    assert!(
        common::lab_ssh("app1", &format!("test -e {dir}/only-node1"))
            .status
            .success()
    );
    assert!(
        !common::lab_ssh("app2", &format!("test -e {dir}/only-node1"))
            .status
            .success(),
        "when: false must skip"
    );
    let once: usize = ["app1", "app2"]
        .iter()
        .filter(|h| {
            common::lab_ssh(
                h,
                &format!("test -e /tmp/cutover-flow-once-{}", std::process::id()),
            )
            .status
            .success()
        })
        .count();
    assert_eq!(once, 1, "run_once ran once");
    assert_eq!(
        ssh_ok(
            "lb",
            &format!(
                "cat /tmp/cutover-flow-delegated-{}-app2",
                std::process::id()
            )
        ),
        "from app2\n"
    );
}

/// register, when, retries, run_once, delegate_to, tags and a handler, on app1 and app2.
fn write_flow_playbook(p: &Project, dir: &str) {
    p.write(
        "pb.yml",
        &format!(
            r#"- name: flow
  hosts: app_nodes
  steps:
    - name: prepare
      file: {{ path: {dir}, state: directory }}
      notify: note
    - name: count attempts
      shell: "echo x >> {dir}/attempts; test $(wc -l < {dir}/attempts) -ge 3"
      retries: 5
      delay: 0
      register: tries
    - name: only on node1
      copy: {{ content: "one\n", dest: {dir}/only-node1 }}
      when: "node_name == 'node1'"
    - name: once
      shell: "hostname > /tmp/cutover-flow-once-{pid}"
      run_once: true
    - name: delegated
      copy: {{ content: "from {{{{ inventory_hostname }}}}\n", dest: "/tmp/cutover-flow-delegated-{pid}-{{{{ inventory_hostname }}}}" }}
      delegate_to: lb
    - name: tagged
      copy: {{ content: "t\n", dest: {dir}/tagged }}
      tags: [extra]
  handlers:
    - name: note
      copy: {{ content: "handled\n", dest: {dir}/handler }}
"#,
            pid = std::process::id()
        ),
    );
}

#[test]
fn a_step_timeout_kills_the_remote_command() {
    let _g = serial();
    let p = Project::new();
    // A unique duration makes the remote process findable: `sleep 60.<pid>`.
    let secs = format!("60.{}", std::process::id());
    p.write("pb.yml", &format!("- hosts: app1\n  steps:\n    - name: slow\n      command: sleep {secs}\n      timeout: 2\n"));
    let started = Instant::now();
    let o = p.apply("pb.yml", &["--output", "plain"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(text(&o).contains("timed out"), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(500));
    // `[s]leep` keeps pgrep from matching the shell that runs it.
    let left = ssh_ok("app1", &format!("pgrep -f '[s]leep {secs}' | wc -l"));
    assert_eq!(left.trim(), "0", "the remote command kept running");
}

#[test]
fn a_failure_unwinds_the_run_newest_first() {
    let _g = serial();
    let p = Project::new();
    let dir = format!("/srv/cutover-unwind-{}", std::process::id());
    ssh_ok(
        "app1",
        &format!("mkdir -p {dir} && printf 'original\\n' > {dir}/config && chmod 600 {dir}/config"),
    );
    p.write(
        "pb.yml",
        &format!(
            r#"- name: unwind
  hosts: app1
  on_failure: unwind
  steps:
    - name: new dir
      file: {{ path: {dir}/new, state: directory }}
    - name: new file
      copy: {{ content: "new\n", dest: {dir}/new/file }}
    - name: change config
      copy: {{ content: "changed\n", dest: {dir}/config, mode: "0644" }}
    - name: change config again
      copy: {{ content: "changed again\n", dest: {dir}/config }}
    - name: boom
      fail: {{ msg: boom }}
"#
        ),
    );
    let o = p.apply("pb.yml", &["--output", "plain"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        ssh_ok(
            "app1",
            &format!("cat {dir}/config; stat -c %a {dir}/config")
        ),
        "original\n600\n"
    );
    assert!(
        !common::lab_ssh("app1", &format!("test -e {dir}/new"))
            .status
            .success(),
        "created dir not removed"
    );
    let j = p.journal();
    let undone: Vec<&str> = j
        .iter()
        .filter(|e| e["event"] == "undo_result")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        undone,
        [
            "change config again",
            "change config",
            "new file",
            "new dir"
        ],
        "newest first (a file written twice keeps a backup per write)"
    );
    assert!(j
        .iter()
        .filter(|e| e["event"] == "undo_result")
        .all(|e| e["ok"] == true));
    ssh_ok("app1", &format!("rm -rf {dir}"));
}

#[test]
fn start_at_step_runs_and_show_replays_the_journal() {
    let _g = serial();
    let p = Project::new();
    let f = format!("/tmp/cutover-start-at-{}", std::process::id());
    p.write(
        "pb.yml",
        &format!(
            "- hosts: lb\n  steps:\n    - name: one\n      copy: {{ content: \"1\\n\", dest: {f}-1 }}\n    - name: two\n      copy: {{ content: \"2\\n\", dest: {f}-2 }}\n"
        ),
    );
    let o = p.apply("pb.yml", &["--output", "plain", "--start-at-step", "two"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !common::lab_ssh("lb", &format!("test -e {f}-1"))
            .status
            .success(),
        "step one was skipped"
    );
    assert_eq!(ssh_ok("lb", &format!("cat {f}-2")), "2\n");
    // `runs` lists it; `show` replays it as the admin saw it, with the way back of each change.
    let runs = p.run(&["runs"]);
    let listing = String::from_utf8_lossy(&runs.stdout).into_owned();
    let id = listing.split_whitespace().next().unwrap_or("").to_string();
    assert!(
        listing.contains("pb.yml") && listing.contains(" ok "),
        "{listing}"
    );
    let show = p.run(&["show", &id]);
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        shown.contains("lb")
            && shown.contains("changed")
            && shown.contains("two")
            && shown.contains("[undo: remove"),
        "{shown}"
    );
    assert!(shown.contains("finished: ok"), "{shown}");
    ssh_ok("lb", &format!("rm -f {f}-*"));
}

/// Every command of a run on a host goes through one long-lived shell per sudo user
/// (`src/session_shell.rs`): consecutive steps see the same shell process; `session_shell:
/// false` in the inventory gives each command its own channel and shell again.
#[test]
fn commands_share_one_session_shell_per_host_and_sudo_user() {
    let _g = serial();
    let p = Project::new();
    let inv =
        common::project::lab_inventory_text().replacen("  user: root\n", "  user: admin\n", 1);
    let shared = p.write("shared.yml", &inv);
    let separate = p.write(
        "separate.yml",
        &inv.replacen("connection:\n", "connection:\n  session_shell: false\n", 1),
    );
    p.write(
        "pb.yml",
        r#"- hosts: app1
  steps:
    - { name: a, shell: "echo $$ $(id -u)", register: a, changed_when: false }
    - { name: b, shell: "echo $$ $(id -u)", register: b, changed_when: false }
    - { name: c, shell: "echo $$ $(id -u)", register: c, changed_when: false, become: true }
    - { name: d, shell: "echo $$ $(id -u)", register: d, changed_when: false, become: true }
    - name: same shell per user, one per user
      assert:
        that:
          - "a.stdout == b.stdout"
          - "c.stdout == d.stdout"
          - "a.stdout != c.stdout"
          - "c.stdout is ending_with(pat=' 0')"
          - "a.stdout is not ending_with(pat=' 0')"
"#,
    );
    let o = p.apply_with(&shared, "pb.yml", &["--output", "plain"]);
    assert!(o.status.success(), "session shell: {}", text(&o));
    // The same playbook fails its assertion when every command has its own shell, so the
    // assertion above really tells the two apart.
    let o = p.apply_with(&separate, "pb.yml", &["--output", "plain"]);
    assert!(
        !o.status.success() && text(&o).contains("assertion failed: a.stdout == b.stdout"),
        "a channel per command: {}",
        text(&o)
    );
}

/// A step that leaves a background process holding the shell's output (a daemon started
/// without redirecting it): what that process writes later is not taken for a later step's
/// output, and the shell it wrote into is replaced by a new one after the step that saw it.
#[test]
fn output_of_a_background_process_is_not_a_later_steps() {
    let _g = serial();
    let p = Project::new();
    p.write(
        "pb.yml",
        r#"- hosts: app1
  steps:
    - { name: before, shell: "echo $$", register: before, changed_when: false }
    - name: leaves a writer behind
      shell: "(sleep 0.3; echo stray-out; echo stray-err >&2) &"
      changed_when: false
    # In root's own shell, so nothing runs in the first one while the writer writes.
    - { name: wait, command: sleep 1, become: true, changed_when: false }
    - { name: next, shell: "echo $$; echo err >&2", register: next, changed_when: false }
    - { name: after, shell: "echo $$", register: after, changed_when: false }
    - name: the stray output is in no step, and the shell it went to is not used again
      assert:
        that:
          - "next.stdout == before.stdout"
          - "next.stderr == 'err'"
          - "after.stdout != before.stdout"
"#,
    );
    let o = p.apply("pb.yml", &["--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A file write puts the new content next to the target before the script that renames it
/// runs (`session_shell::Put`): through the session shell the shell itself writes it, with a
/// channel per command a `cat` does and `sha256sum` checks it. Both ways give the same file,
/// owner and mode, under sudo too; a write that cannot create its file fails with the path
/// and the reason, runs nothing further and leaves no temporary file behind.
#[test]
fn file_writes_are_the_same_through_the_session_shell_and_a_channel_per_command() {
    let _g = serial();
    let p = Project::new();
    let inv =
        common::project::lab_inventory_text().replacen("  user: root\n", "  user: admin\n", 1);
    let shared = p.write("shared.yml", &inv);
    let separate = p.write(
        "separate.yml",
        &inv.replacen("connection:\n", "connection:\n  session_shell: false\n", 1),
    );
    let dir = format!("/var/tmp/cutover-put-{}", std::process::id());
    ssh_ok(
        "app1",
        &format!("rm -rf {dir}; mkdir -p {dir}/ro && chown admin {dir} && chmod 0755 {dir}/ro"),
    );
    for (way, inv) in [("session", &shared), ("channel", &separate)] {
        p.write(
            "pb.yml",
            &format!(
                r#"- hosts: app1
  steps:
    - name: as the login user
      copy: {{ content: "plain {way}\n", dest: {dir}/{way}-user.txt, mode: "0640" }}
    - name: as root
      copy: {{ content: "root {way}\n", dest: {dir}/{way}-root.txt, owner: www-data, group: www-data, mode: "0604" }}
      become: true
    - name: replaced as root, keeping owner and mode
      copy: {{ content: "root {way} again\n", dest: {dir}/{way}-root.txt }}
      become: true
"#
            ),
        );
        let o = p.apply_with(inv, "pb.yml", &["--output", "plain"]);
        assert!(o.status.success(), "{way}: {}", text(&o));
        let got = ssh_ok(
            "app1",
            &format!(
                "cd {dir} && for f in {way}-user.txt {way}-root.txt; do stat -c '%n %U:%G %a' $f; cat $f; done"
            ),
        );
        assert_eq!(
            got,
            format!(
                "{way}-user.txt admin:admin 640\nplain {way}\n{way}-root.txt www-data:www-data 604\nroot {way} again\n"
            ),
            "{way}"
        );
        // The login user cannot create files in ro/: the step fails, saying where and why.
        p.write(
            "fail.yml",
            &format!(
                "- hosts: app1\n  steps:\n    - name: denied\n      copy: {{ content: x, dest: {dir}/ro/f.txt }}\n    - name: after\n      command: touch {dir}/after-{way}\n"
            ),
        );
        let o = p.apply_with(inv, "fail.yml", &["--output", "plain"]);
        assert!(!o.status.success(), "{way}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("writing {dir}/ro/f.txt failed"))
                && text(&o).contains("Permission denied"),
            "{way}: {}",
            text(&o)
        );
    }
    let left = ssh_ok("app1", &format!("find {dir} -name '.cutover.*'; ls {dir}"));
    assert!(!left.contains(".cutover."), "temporary files left: {left}");
    assert!(
        !left.contains("after-"),
        "a step ran after the failed write: {left}"
    );
    ssh_ok("app1", &format!("rm -rf {dir}"));
}

/// A copy whose `src:` is larger than the diff limit is hashed and sent in pieces: the
/// controller never holds it whole (its peak memory stays far below the file's size), the
/// host checks the SHA-256 before the rename, the plan summarises it, and a second run sends
/// nothing.
#[test]
fn a_large_copy_is_streamed_not_held_in_memory() {
    let _g = serial();
    let p = Project::new();
    const MIB: usize = 1024 * 1024;
    let size_mib = 160;
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(p.path("big.bin")).unwrap());
        let mut block = vec![0u8; MIB];
        for i in 0..size_mib {
            for (j, b) in block.iter_mut().enumerate() {
                *b = ((i * 31 + j * 7 + j / 251) % 256) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let dest = format!("/var/tmp/cutover-big-{}.bin", std::process::id());
    let src = p.path("big.bin").display().to_string();
    let pb = format!(
        "- hosts: app1\n  steps:\n    - name: big\n      copy: {{ src: {src}, dest: {dest}, mode: \"0640\" }}\n"
    );
    p.write("pb.yml", &pb);
    let inv = common::project::lab_inventory().display().to_string();
    let pb_path = p.path("pb.yml").display().to_string();

    let plan = p.run(&["plan", "-i", &inv, &pb_path]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("binary or large content changes"),
        "{}",
        text(&plan)
    );

    let apply = |p: &Project| {
        p.output_with_peak_memory(p.command(&["apply", "-i", &inv, &pb_path, "--output", "plain"]))
    };
    let (o, kb) = apply(&p);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("changed"), "{}", text(&o));
    assert!(
        kb < (size_mib as u64 * 1024) / 3,
        "cutover peaked at {kb} KiB while sending a {size_mib} MiB file: it was held in memory"
    );
    let want = Command::new("sha256sum").arg(&src).output().unwrap();
    let want = String::from_utf8_lossy(&want.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let got = ssh_ok("app1", &format!("sha256sum {dest}; stat -c %a {dest}"));
    assert!(got.starts_with(&want), "sha on the host {got}, want {want}");
    assert!(got.trim_end().ends_with("640"), "{got}");

    let (o, _) = apply(&p);
    assert!(o.status.success(), "{}", text(&o));
    let results = p.last_run_results();
    assert_eq!(status_of(&results, "big", "app1"), "ok", "{results:#?}");
    ssh_ok("app1", &format!("rm -f {dest} {dest}.cutover-*"));
}

/// Variables holding templates are rendered (nested, and those reading a registered result
/// at the step), and `delegate_to` is rendered too.
#[test]
fn templated_variables_and_delegate_to_are_rendered() {
    let _g = serial();
    let p = Project::new();
    let dir = format!("/tmp/cutover-vt-{}", std::process::id());
    p.write(
        "pb.yml",
        &format!(
            r#"- hosts: app1
  vars:
    base: "{dir}/{{{{ inventory_hostname }}}}"
    file: "{{{{ base }}}}/greeting"
    greeting: "{{{{ out.stdout }}}} from {{{{ inventory_hostname }}}}"
    writer: "{{{{ groups.db_master[0] }}}}"
  steps:
    - {{ name: say, command: echo hello, register: out, changed_when: false }}
    - {{ name: dir, file: {{ path: "{{{{ base }}}}", state: directory }} }}
    - {{ name: write, copy: {{ content: "{{{{ greeting }}}}", dest: "{{{{ file }}}}" }} }}
    - {{ name: where, command: cat /etc/hostname, register: on, changed_when: false, delegate_to: "{{{{ writer }}}}" }}
    - name: checked
      assert:
        that:
          - "on.stdout == 'db1'"
"#
        ),
    );
    let o = p.apply("pb.yml", &["--output", "plain", "-e", "unused=1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        ssh_ok("app1", &format!("cat {dir}/app1/greeting")),
        "hello from app1"
    );
    ssh_ok("app1", &format!("rm -rf {dir}"));
}
