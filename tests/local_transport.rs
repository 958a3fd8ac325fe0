//! `address: local`: steps run on the controller itself, no ssh. Needs no lab: a playbook writes
//! into a temporary directory of this machine, and a second run changes nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::local::{command, cutover, one_at_a_time};
use common::project::text;

use serde_json::Value as J;

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("state/runs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The step results of the one run started since `before`.
fn step_results(dir: &Path, before: &[String]) -> Vec<J> {
    let new: Vec<String> = runs(dir)
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    std::fs::read_to_string(dir.join("state/runs").join(&new[0]).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .filter(|e| e["event"] == "step_result")
        .collect()
}

#[test]
fn a_playbook_runs_on_the_controller_itself_and_a_second_run_changes_nothing() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("templates/app.conf"),
        "host={{ inventory_hostname }}\naddress={{ host.address }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  controller:\n    address: local\n    vars: { greeting: hello }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- name: on the controller
  hosts: controller
  vars: {{ out: "{out}" }}
  steps:
    - name: directory
      file: {{ path: "{{{{ out }}}}/conf", state: directory, mode: "0750" }}
    - name: copy
      copy: {{ content: "{{{{ greeting }}}}, world\n", dest: "{{{{ out }}}}/conf/hello.txt", mode: "0640" }}
    - name: template
      template: {{ src: app.conf, dest: "{{{{ out }}}}/conf/app.conf" }}
    - name: link
      file: {{ path: "{{{{ out }}}}/current", state: link, src: "{{{{ out }}}}/conf" }}
    - name: command with creates
      command: {{ cmd: "sh -c 'echo $PPID > {{{{ out }}}}/stamp'", creates: "{{{{ out }}}}/stamp" }}
    - name: read back
      command: cat {{{{ out }}}}/current/hello.txt
      register: back
      changed_when: false
    - assert: {{ that: ["back.stdout == 'hello, world'"] }}
"#,
            out = out.display()
        ),
    )
    .unwrap();
    let args = ["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"];

    let o = cutover(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("changed=5"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("conf/hello.txt")).unwrap(),
        "hello, world\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("conf/app.conf")).unwrap(),
        "host=controller\naddress=local\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("current")).unwrap(),
        out.join("conf")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out.join("conf")), 0o750);
    assert_eq!(mode(&out.join("conf/hello.txt")), 0o640);
    let stamp = std::fs::read_to_string(out.join("stamp")).unwrap();
    assert!(!stamp.trim().is_empty());
    // The host lock of the run was the controller's own, and it is released.
    assert!(
        !std::fs::read_to_string("/var/tmp/cutover.lock")
            .unwrap_or_default()
            .contains(&format!("\"pid\":{}", std::process::id())),
        "lock left behind"
    );

    // Second run: every step finds its work done.
    let before = runs(d);
    let o = cutover(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("changed=0"), "{}", text(&o));
    let rs = step_results(d, &before);
    assert_eq!(rs.len(), 7, "{rs:#?}");
    assert!(
        rs.iter().all(|r| r["status"] == "ok"),
        "second run: {rs:#?}"
    );
    assert_eq!(std::fs::read_to_string(out.join("stamp")).unwrap(), stamp);

    // A change on disk is seen and put back; the plan (a dry run) says so first.
    std::fs::write(out.join("conf/hello.txt"), "tampered\n").unwrap();
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("+hello, world"), "{}", text(&o));
    let o = cutover(d, &args);
    assert!(
        o.status.success() && text(&o).contains("changed=1"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("conf/hello.txt")).unwrap(),
        "hello, world\n"
    );
}

/// The journal of a run, event by event.
fn journal(dir: &Path, id: &str) -> Vec<J> {
    std::fs::read_to_string(dir.join("state/runs").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .collect()
}

/// Issue 21, item 1: a run killed after a `run_once` check passed on one host and a later step
/// changed what the check looks at. The resume must not run the check again on the other host
/// (it has no record of the step, but the step is finished for the play): it would fail and
/// lose the run. What the check registered stands for both hosts after the resume too.
#[test]
fn a_resume_does_not_repeat_a_run_once_step_another_host_finished() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  n1: { address: local }\n  n2: { address: local }\ngroups:\n  nodes: { hosts: [n1, n2] }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- name: nodes
  hosts: nodes
  vars: {{ out: "{out}" }}
  steps:
    - name: No node started anywhere
      shell: "! ls {{{{ out }}}}/started-* >/dev/null 2>&1"
      run_once: true
      register: none_started
      changed_when: false
    - name: Start the node
      command: touch {{{{ out }}}}/started-{{{{ inventory_hostname }}}}
    - name: The check stands for every node
      assert: {{ that: ["none_started.rc == 0"] }}
"#,
            out = out.display()
        ),
    )
    .unwrap();
    let before = runs(d);
    let mut killed = None;
    for _ in 0..60 {
        let o = command(
            d,
            &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
        )
        .env("CUTOVER_TEST_FAULT", "kill-after-step=1:Start the node")
        .output()
        .unwrap();
        if o.status.code() == Some(5) {
            // Another local run holds the controller's host lock: wait for it.
            let _ = std::fs::remove_dir_all(d.join("state/runs"));
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        killed = Some(o);
        break;
    }
    let o = killed.expect("the controller stayed locked by another local run");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "killed:\n{}", text(&o));
    let id = runs(d).into_iter().find(|r| !before.contains(r)).unwrap();
    let j = journal(d, &id);
    let check: Vec<&J> = j
        .iter()
        .filter(|e| e["event"] == "step_result" && e["name"] == "No node started anywhere")
        .collect();
    assert_eq!(check.len(), 1, "the check ran once, on one host: {check:?}");
    let ran_on = check[0]["host"].as_str().unwrap().to_string();

    let o = cutover(d, &["resume", "-i", "inv.yml", &id, "--output", "plain"]);
    assert!(
        o.status.success(),
        "the resume completes the run:\n{}",
        text(&o)
    );
    let j = journal(d, &id);
    let checks: Vec<&J> = j
        .iter()
        .filter(|e| e["event"] == "step_result" && e["name"] == "No node started anywhere")
        .collect();
    assert_eq!(
        checks.len(),
        1,
        "the run_once check (finished on {ran_on}) ran again: {checks:?}"
    );
    for h in ["n1", "n2"] {
        assert!(out.join(format!("started-{h}")).exists(), "{h} started");
        assert!(
            j.iter().any(|e| e["event"] == "step_result"
                && e["name"] == "The check stands for every node"
                && e["host"] == h
                && e["status"] == "ok"),
            "{h}: the registered check is there after the resume:\n{}",
            text(&o)
        );
    }
    assert_eq!(
        j.iter()
            .rev()
            .find(|e| e["event"] == "run_finished")
            .unwrap()["status"],
        "ok"
    );
}

/// Issue 21, item 5: a step whose probe could not tell beforehand (a command without a check)
/// reports what happened, not the probe's doubt ("unknown: …") as its result.
#[test]
fn a_changed_result_reads_as_what_happened() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - name: Run a command\n      command: \"true\"\n",
    )
    .unwrap();
    let before = runs(d);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let line = text(&o)
        .lines()
        .find(|l| l.contains("Run a command"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains(" changed ") && line.contains("ran, exit 0") && !line.contains("unknown"),
        "{line}\n{}",
        text(&o)
    );
    let rs = step_results(d, &before);
    assert_eq!(rs[0]["status"], "changed");
    assert_eq!(rs[0]["detail"], "ran, exit 0");
}

/// Issue 21, item 5: with `USER` (and `SUDO_USER`) unset, as under cron or `env -i`, the lock
/// still names the real user of the process, not "unknown".
#[test]
fn the_lock_owner_is_the_real_user_of_the_process_without_user_set() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - name: Read the lock\n      command: cat /var/tmp/cutover.lock\n      register: lock\n      changed_when: false\n",
    )
    .unwrap();
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let me = me.trim();
    let o = command(
        d,
        &[
            "apply", "-i", "inv.yml", "pb.yml", "--output", "plain", "-v",
        ],
    )
    .env_remove("USER")
    .env_remove("SUDO_USER")
    .env_remove("LOGNAME")
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The host lock, as the run saw it, and the controller lock left on disk.
    let rs = step_results(d, &[]);
    let host_lock: J = serde_json::from_str(
        rs[0]["registered"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim(),
    )
    .unwrap_or(J::Null);
    let controller_lock = std::fs::read_dir(d.join("state/locks"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .next()
        .unwrap();
    let controller_lock: J = serde_json::from_str(&controller_lock).unwrap();
    for (what, lock) in [("host", &host_lock), ("controller", &controller_lock)] {
        assert_eq!(lock["user"], me, "{what} lock: {lock}\n{}", text(&o));
    }
}

/// Issue 21, item 5: a run refused by the controller's lock (another run drives the cluster)
/// leaves its trace, as the README says: its journal records `run_refused`, naming the holder.
/// A resume refused so records it in the run's journal without ending the run.
#[test]
fn a_run_refused_by_the_controller_lock_is_journaled() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - name: Hold\n      command: \"true\"\n",
    )
    .unwrap();
    let run = |fault: Option<&str>, args: &[&str]| {
        let mut c = command(d, args);
        if let Some(f) = fault {
            c.env("CUTOVER_TEST_FAULT", f);
        }
        c
    };
    let apply = ["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"];
    // The first run holds the cluster for 4 s after its step.
    let first = run(Some("pause-after-step=1:4:Hold"), &apply)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let holder = loop {
        let held = runs(d).into_iter().find(|id| {
            journal(d, id)
                .iter()
                .any(|e| e["event"] == "step_result" && e["name"] == "Hold")
        });
        if let Some(id) = held {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let before = runs(d);
    let o = run(None, &apply).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        text(&o).contains(&holder),
        "names the holder:\n{}",
        text(&o)
    );
    let refused: Vec<String> = runs(d)
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "the refused run has a journal: {refused:?}"
    );
    let j = journal(d, &refused[0]);
    let events: Vec<&str> = j.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        events,
        ["run_started", "run_refused", "run_finished"],
        "{j:#?}"
    );
    assert_eq!(j[1]["lock"], "controller");
    assert!(
        j[1]["detail"].as_str().unwrap().contains(&holder),
        "{}",
        j[1]
    );
    assert_eq!(j[2]["status"], "locked");

    // Resuming the holder while it runs: refused, journaled, the run not ended by it.
    let o = run(
        None,
        &["resume", "-i", "inv.yml", &holder, "--output", "plain"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let mut first = first;
    assert!(first.wait().unwrap().success());
    let j = journal(d, &holder);
    let refusal = j
        .iter()
        .position(|e| e["event"] == "run_refused")
        .expect("the refused resume is journaled");
    let finishes: Vec<&J> = j.iter().filter(|e| e["event"] == "run_finished").collect();
    assert_eq!(finishes.len(), 1, "only the run itself ended it: {j:#?}");
    assert_eq!(finishes[0]["status"], "ok");
    assert!(
        j[refusal]["pid"] != j[0]["pid"],
        "the refusal is the resume's: {j:#?}"
    );
}

/// Issue 15 class 5: a value reaches `shell`/`command` strings as one word, never as code.
#[test]
fn interpolations_in_shell_and_command_strings_are_one_word_each() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out dir");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  controller:\n    address: local\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        r#"- name: on the controller
  hosts: controller
  steps:
    - name: shell
      shell: "echo {{ evil }} > {{ out }}/said"
    - name: command
      command: "touch {{ out }}/{{ evil }}"
    - name: argv items are words already
      command: { argv: [touch, "{{ out }}/argv {{ evil }}"] }
    - name: an explicit opt-out
      shell: "{{ script | unquoted }}"
"#,
    )
    .unwrap();
    let evil = "x; touch PWNED";
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "pb.yml",
            "--output",
            "plain",
            "-e",
            &format!("evil={evil}"),
            "-e",
            &format!("out={}", out.display()),
            "-e",
            &format!("script=echo ok > '{}/script'", out.display()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("said")).unwrap(),
        "x; touch PWNED\n"
    );
    assert!(out.join(evil).exists());
    assert!(out.join(format!("argv {evil}")).exists());
    assert_eq!(std::fs::read_to_string(out.join("script")).unwrap(), "ok\n");
    assert!(!d.join("PWNED").exists() && !Path::new("PWNED").exists());
}

/// Issue 16: a run loads the templates its steps name (and what they include): a broken file
/// nobody uses does not stop it; `cutover check` still reports that file, at its position.
#[test]
fn a_broken_template_nobody_uses_does_not_stop_a_run() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(d.join("templates/parts")).unwrap();
    std::fs::write(
        d.join("templates/app.conf"),
        "{% include \"parts/head.conf\" %}name={{ inventory_hostname }}\n",
    )
    .unwrap();
    std::fs::write(d.join("templates/parts/head.conf"), "# head\n").unwrap();
    std::fs::write(
        d.join("templates/old.conf"),
        "x\n{{ a | no_such_filter }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  controller:\n    address: local\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            "- hosts: controller\n  steps:\n    - file: {{ path: \"{o}\", state: directory }}\n    - template: {{ src: app.conf, dest: \"{o}/app.conf\" }}\n",
            o = out.display()
        ),
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("app.conf")).unwrap(),
        "# head\nname=controller\n"
    );
    let o = cutover(d, &["check", "-i", "inv.yml", "pb.yml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("templates/old.conf:2:8"), "{}", text(&o));
    assert!(
        text(&o).contains("unknown filter `no_such_filter`"),
        "{}",
        text(&o)
    );
}
