//! Faults against real hosts: a host that drops off the network before or during a step, an
//! sshd killed mid-step, a disk that fills during a write. Each asserts what cutover does,
//! that the host is left in a known state, and that the journal tells the truth.

mod common;

use std::process::{Command, Stdio};

use common::cluster::ssh;
use common::project::{text, Project};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static HOSTS: Mutex<()> = Mutex::new(());

/// A project whose inventory has fast keepalives, so a vanished host is noticed in seconds.
fn project() -> Project {
    let p = Project::new();
    let inv = common::project::lab_inventory_text().replace(
        "    ConnectTimeout: 10\n",
        "    ConnectTimeout: 5\n    ServerAliveInterval: 1\n    ServerAliveCountMax: 3\n",
    );
    p.write("inventory.yml", &inv);
    p
}

/// `cutover apply` of a playbook with that inventory (not run yet).
fn apply(p: &Project, playbook: &str, extra: &[&str]) -> Command {
    let mut args = vec!["--output", "plain"];
    args.extend(extra);
    p.apply_command(&p.path("inventory.yml"), playbook, &args)
}

/// Wait until a step is under way on its host (its intent is journaled just before it runs).
fn wait_for_step(p: &Project, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p
        .journal()
        .iter()
        .any(|e| e["event"] == "step_applying" && e["name"] == name)
    {
        assert!(Instant::now() < deadline, "step {name} never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
}

fn link(host: &str, up: bool) {
    let st = Command::new("ip")
        .args([
            "-n",
            "cutover-ctl",
            "link",
            "set",
            &format!("vl-{host}"),
            if up { "up" } else { "down" },
        ])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Brings a host's link back up however the test ends.
struct LinkGuard(&'static str);
impl Drop for LinkGuard {
    fn drop(&mut self) {
        link(self.0, true);
    }
}

#[test]
fn a_host_unreachable_before_the_run_drops_out_and_the_others_finish() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = project();
    let marker = format!("/tmp/cutover-fault-before-{}", std::process::id());
    std::fs::write(p.path("pb.yml"), format!("- hosts: app_nodes\n  steps:\n    - name: mark\n      copy: {{ content: \"x\\n\", dest: {marker} }}\n")).unwrap();
    let _up = LinkGuard("app2");
    link("app2", false);
    let o = p.output(apply(&p, "pb.yml", &[]));
    link("app2", true);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("app2") && text(&o).contains("unreachable"),
        "{}",
        text(&o)
    );
    assert_eq!(
        ssh("app1", &format!("cat {marker}")),
        "x\n",
        "the reachable host finished"
    );
    assert!(!common::lab_ssh("app2", &format!("test -e {marker}"))
        .status
        .success());
    let j = p.journal();
    assert!(j
        .iter()
        .any(|e| e["event"] == "host_unreachable" && e["host"] == "app2"));
    assert!(j
        .iter()
        .any(|e| e["event"] == "run_finished" && e["status"] == "unreachable"));
    ssh("app1", &format!("rm -f {marker}"));
}

#[test]
fn a_host_lost_during_a_step_is_reported_and_its_lock_is_left_stale() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = project();
    std::fs::write(
        p.path("pb.yml"),
        "- hosts: app2\n  steps:\n    - name: long\n      command: sleep 8\n    - name: after\n      command: 'true'\n",
    )
    .unwrap();
    let _up = LinkGuard("app2");
    let child = apply(&p, "pb.yml", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(&p, "long");
    link("app2", false);
    let started = Instant::now();
    let o = p.wait_logged(&["apply", "pb.yml"], child);
    link("app2", true);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a lost host is noticed by keepalives"
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let j = p.journal();
    let long = j
        .iter()
        .find(|e| e["event"] == "step_result" && e["name"] == "long")
        .expect("journal has the step");
    assert_eq!(long["status"], "unreachable", "{long}");
    assert!(
        !j.iter()
            .any(|e| e["event"] == "step_result" && e["name"] == "after"),
        "nothing ran after the loss"
    );
    // The run could not release the host's lock: the next run says so, and --break-lock frees it.
    std::thread::sleep(Duration::from_millis(500));
    let o = p.output(apply(&p, "pb.yml", &[]));
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("stale lock"), "{}", text(&o));
    let o = p.output(apply(&p, "pb.yml", &["--break-lock"]));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn sshd_killed_mid_step_is_a_lost_host_not_a_hang() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = project();
    std::fs::write(
        p.path("pb.yml"),
        "- hosts: db2\n  steps:\n    - name: long\n      command: sleep 8\n",
    )
    .unwrap();
    let child = apply(&p, "pb.yml", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(&p, "long");
    // Kill the sshd serving cutover's connection (the listener stays, as after a crash of
    // one session). Done from another connection, which it also ends — that's fine.
    let _ = common::lab_ssh("db2", "pkill -9 -f 'sshd: root@' ");
    let started = Instant::now();
    let o = p.wait_logged(&["apply", "pb.yml"], child);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let j = p.journal();
    let long = j
        .iter()
        .find(|e| e["event"] == "step_result" && e["name"] == "long")
        .expect("journal has the step");
    assert_eq!(long["status"], "unreachable", "{long}");
    assert!(
        j.iter().any(|e| e["event"] == "run_finished"),
        "the journal ends with the run's end"
    );
    let o = p.output(apply(&p, "pb.yml", &["--break-lock"]));
    assert!(o.status.success(), "the host is usable again: {}", text(&o));
}

#[test]
fn a_disk_that_fills_during_a_write_leaves_the_old_file_whole() {
    let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let p = project();
    let mnt = format!("/srv/cutover-full-{}", std::process::id());
    ssh("staging", &format!("mkdir -p {mnt} && mount -t tmpfs -o size=256k tmpfs {mnt} && printf 'old\\n' > {mnt}/data"));
    // 1 MiB of content cannot fit in 256 KiB.
    let big = "x".repeat(1024 * 1024);
    std::fs::write(p.path("templates/big.txt"), &big).unwrap();
    std::fs::write(p.path("pb.yml"), format!("- hosts: staging\n  steps:\n    - name: write big\n      template: {{ src: big.txt, dest: {mnt}/data }}\n")).unwrap();
    let o = p.output(apply(&p, "pb.yml", &[]));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("No space left on device"), "{}", text(&o));
    assert_eq!(
        ssh("staging", &format!("cat {mnt}/data; ls -A {mnt}")),
        "old\ndata\n",
        "old file intact, no temporary left"
    );
    let j = p.journal();
    assert!(j.iter().any(|e| e["event"] == "step_result"
        && e["name"] == "write big"
        && e["status"] == "failed"));
    ssh("staging", &format!("umount {mnt} && rmdir {mnt}"));
}
