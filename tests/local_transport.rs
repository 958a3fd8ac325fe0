//! `address: local`: steps run on the controller itself, no ssh. Needs no lab: a playbook writes
//! into a temporary directory of this machine, and a second run changes nothing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value as J;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `cutover ARGS` with its own state and control directories. Another local run on this
/// machine (the host lock `/var/tmp/cutover.lock` is the controller's own) is waited for.
fn cutover(dir: &Path, args: &[&str]) -> Output {
    for _ in 0..60 {
        let o = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .env("CUTOVER_STATE_DIR", dir.join("state"))
            .env("XDG_RUNTIME_DIR", dir.join("runtime"))
            .current_dir(dir)
            .output()
            .unwrap();
        if o.status.code() != Some(5) && !text(&o).contains("locked by run") {
            return o;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the controller stayed locked by another local run for a minute");
}

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

/// Issue 15 class 5: a value reaches `shell`/`command` strings as one word, never as code.
#[test]
fn interpolations_in_shell_and_command_strings_are_one_word_each() {
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
