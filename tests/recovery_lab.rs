//! A controller killed mid-run: `cutover resume` finishes the run, `cutover rollback` undoes
//! it, and `cutover commit` accepts it — from the journal alone, against real hosts.

mod common;

use std::process::Command;

use common::cluster::ssh;
use common::project::{text, Project};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value as J;

static HOSTS: Mutex<()> = Mutex::new(());

fn journal_of(p: &Project, id: &str) -> Vec<J> {
    std::fs::read_to_string(p.path(&format!("state/runs/{id}/journal.jsonl")))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn inventory() -> String {
    common::repo_root()
        .join("inventory/lab.yml")
        .display()
        .to_string()
}

/// Start the playbook and SIGKILL the controller as soon as the journal has `event` for `step`
/// (`step_result`: the step finished; `step_applying`: its change is under way).
fn start_and_kill(p: &Project, playbook: &str, event: &str, step: &str) -> String {
    let (mut child, _) = p.spawn_logged(p.command(&[
        "apply",
        "-i",
        &inventory(),
        "--templates",
        p.path("templates").to_str().unwrap(),
        p.path(playbook).to_str().unwrap(),
        "--output",
        "plain",
    ]));
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(rd) = std::fs::read_dir(p.path("state/runs")) else {
            continue;
        };
        let done = rd.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("journal.jsonl")).is_ok_and(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<J>(l).ok())
                    .any(|ev| ev["event"] == event && ev["name"] == step)
            })
        });
        if done {
            break;
        }
    }
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    p.only_run_id()
}

fn masters_of_dead_controllers(p: &Project) -> usize {
    let root = p.runtime().join("cutover");
    std::fs::read_dir(root)
        .map(|rd| rd.flatten().count())
        .unwrap_or(0)
}

#[test]
fn a_killed_run_is_resumed_and_finishes() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-resume-{}", std::process::id());
    std::fs::write(
        p.path("pb.yml"),
        format!(
            r#"- hosts: app_nodes
  steps:
    - name: first
      copy: {{ content: "one\n", dest: {dir}-first }}
      register: first
      notify: remember
    - name: slow
      shell: "sleep 3; echo slow >> {dir}-count"
    - name: last
      copy: {{ content: "{{{{ first.dest }}}}\n", dest: {dir}-last }}
  handlers:
    - name: remember
      copy: {{ content: "handled\n", dest: {dir}-handler }}
"#
        ),
    )
    .unwrap();
    // Killed by the controller itself right after the first host's result of `first`: the
    // other host's change may be made but has no result, and no `handler_notified` event is
    // journaled yet — the notifications must survive in the results and intents.
    let mut cmd = p.command(&[
        "apply",
        "-i",
        &inventory(),
        "--templates",
        p.path("templates").to_str().unwrap(),
        p.path("pb.yml").to_str().unwrap(),
        "--output",
        "plain",
    ]);
    cmd.env("CUTOVER_TEST_FAULT", "kill-after-step=1:first");
    let killed = p.output(cmd);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "{}",
        text(&killed)
    );
    let id = p.only_run_id();
    assert!(!journal_of(&p, &id)
        .iter()
        .any(|e| e["event"] == "run_finished"));
    assert_eq!(
        masters_of_dead_controllers(&p),
        1,
        "the killed controller left its ssh masters"
    );
    let o = p.run(&[
        "resume",
        "-i",
        &inventory(),
        "--templates",
        p.path("templates").to_str().unwrap(),
        &id,
        "--output",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j = journal_of(&p, &id);
    assert!(j.iter().any(|e| e["event"] == "run_resumed"));
    assert_eq!(
        j.iter()
            .filter(|e| e["event"] == "step_result" && e["name"] == "first")
            .count(),
        2,
        "first has one result per host: one before the kill, the other host's on resume"
    );
    for h in ["app1", "app2"] {
        // The registered result from before the kill was still known after it.
        assert_eq!(ssh(h, &format!("cat {dir}-last")), format!("{dir}-first\n"));
        assert_eq!(
            ssh(h, &format!("cat {dir}-handler")),
            "handled\n",
            "the handler notified before the kill ran"
        );
    }
    assert_eq!(
        masters_of_dead_controllers(&p),
        0,
        "the dead controller's masters were ended and the resumed run closed its own"
    );
    // A finished run is not resumed again.
    let o = p.run(&[
        "resume",
        "-i",
        &inventory(),
        "--templates",
        p.path("templates").to_str().unwrap(),
        &id,
    ]);
    assert!(
        !o.status.success() && text(&o).contains("already finished"),
        "{}",
        text(&o)
    );
    for h in ["app1", "app2"] {
        ssh(h, &format!("rm -f {dir}-*"));
    }
}

#[test]
fn a_killed_run_is_rolled_back_and_a_committed_one_cannot_be() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::new();
    let dir = format!("/srv/cutover-rollback-{}", std::process::id());
    ssh(
        "db1",
        &format!("mkdir -p {dir} && printf 'before\\n' > {dir}/conf"),
    );
    std::fs::write(
        p.path("pb.yml"),
        format!(
            r#"- hosts: db1
  steps:
    - name: change conf
      copy: {{ content: "after\n", dest: {dir}/conf }}
    - name: new file
      copy: {{ content: "new\n", dest: {dir}/new }}
    - name: slow
      command: sleep 5
    - name: never
      copy: {{ content: "never\n", dest: {dir}/never }}
"#
        ),
    )
    .unwrap();
    let id = start_and_kill(&p, "pb.yml", "step_applying", "slow");
    let o = p.run(&["rollback", "-i", &inventory(), &id, "--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    // The step in flight when the controller died is named: its change may be half done.
    assert!(
        text(&o).contains("\"slow\" was changing db1") && text(&o).contains("half done"),
        "{}",
        text(&o)
    );
    assert_eq!(
        ssh("db1", &format!("cat {dir}/conf; ls {dir}")),
        format!("before\nconf\n")
    );
    assert_runs_and_show_tell_the_rollback(&p, &id);
    // Rolling back twice finds nothing left to undo.
    let o = p.run(&["rollback", "-i", &inventory(), &id, "--output", "plain"]);
    assert!(
        o.status.success() && text(&o).contains("nothing to roll back"),
        "{}",
        text(&o)
    );

    a_committed_run_cannot_be_rolled_back(&dir);
    ssh("db1", &format!("rm -rf {dir}"));
}

fn assert_runs_and_show_tell_the_rollback(p: &Project, id: &str) {
    // `runs` says it was rolled back (not `ok`, not `unfinished`), with the time; `show` tells
    // the story in order: the run, the kill, the rollback and its undos, the state.
    let runs = text(&p.run(&["runs"]));
    let line = runs.lines().find(|l| l.starts_with(id)).unwrap_or("");
    assert!(
        line.contains("  rolled back at 20") && !line.contains("unfinished"),
        "{runs}"
    );
    let show = text(&p.run(&["show", id]));
    let at = |what: &str| {
        show.find(what)
            .unwrap_or_else(|| panic!("`{what}` missing from show:\n{show}"))
    };
    assert!(at("run ") < at("change conf") && at("change conf") < at("CUT OFF"));
    assert!(at("CUT OFF") < at("ROLLBACK of 2 change(s) by "), "{show}");
    assert!(at("ROLLBACK of") < at("undone") && at("undone") < at("\nstate: "));
    assert!(
        show.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("state: rolled back at 20"),
        "{show}"
    );
}

/// A finished run on db1 (a copy into DIR), committed: its backup gone, no rollback any more.
fn a_committed_run_cannot_be_rolled_back(dir: &str) {
    // A finished run, committed: backups gone, no rollback any more.
    let q = Project::new();
    std::fs::write(q.path("pb.yml"), format!("- hosts: db1\n  steps:\n    - copy: {{ content: \"committed\\n\", dest: {dir}/conf }}\n")).unwrap();
    let o = q.run(&[
        "apply",
        "-i",
        &inventory(),
        "--templates",
        q.path("templates").to_str().unwrap(),
        q.path("pb.yml").to_str().unwrap(),
        "--output",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = q.only_run_id();
    assert_eq!(
        ssh("db1", &format!("ls {dir} | grep -c 'cutover-{id}.*~'")).trim(),
        "1",
        "a backup kept for undo"
    );
    let o = q.run(&["commit", "-i", &inventory(), &id, "--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = text(&q.run(&["runs"]));
    assert!(runs.contains("  committed at 20"), "{runs}");
    let show = text(&q.run(&["show", &id]));
    assert!(
        show.contains("COMMIT of 1 change(s) by ")
            && show.contains("committed   removed backup")
            && show.contains("\nstate: committed at 20"),
        "{show}"
    );
    let o = q.run(&["rollback", "-i", &inventory(), &id]);
    assert!(
        !o.status.success() && text(&o).contains("was committed"),
        "{}",
        text(&o)
    );
}
