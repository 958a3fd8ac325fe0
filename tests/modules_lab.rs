//! The lineinfile, package, user, group and wait_for modules against the real lab hosts
//! (lab/README.md): each applied twice through the `cutover` binary (changed, then nothing to
//! do), the change checked on the host over ssh, and undone by `on_failure: unwind`.
//!
//! Tests run in parallel but a host takes one run at a time (cutover's host lock), so each
//! test holds its host's mutex while it runs playbooks there.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::project::Project;
use common::{lab_ssh, lab_ssh_ok, repo_root, require_lab};
use serde_json::Value as J;

fn host_lock(host: &str) -> MutexGuard<'static, ()> {
    static LOCKS: OnceLock<HashMap<&'static str, Mutex<()>>> = OnceLock::new();
    let locks = LOCKS.get_or_init(|| {
        common::LAB_HOSTS
            .iter()
            .map(|(h, _)| (*h, Mutex::new(())))
            .collect()
    });
    locks[host].lock().unwrap_or_else(|e| e.into_inner())
}

/// What one `cutover apply --output json` run said.
struct Run {
    ok: bool,
    events: Vec<J>,
    stderr: String,
}

impl Run {
    fn recap(&self, host: &str) -> &J {
        let r = self
            .events
            .iter()
            .find(|e| e["event"] == "recap")
            .unwrap_or_else(|| panic!("no recap event; stderr: {}", self.stderr));
        &r["hosts"][host]
    }
    fn changed(&self, host: &str) -> u64 {
        self.recap(host)["changed"].as_u64().unwrap_or(u64::MAX)
    }
    fn failed(&self, host: &str) -> u64 {
        self.recap(host)["failed"].as_u64().unwrap_or(u64::MAX)
    }
    /// The result event of the step named `step`.
    fn step(&self, step: &str) -> &J {
        self.events
            .iter()
            .find(|e| e["event"] == "step_result" && e["step"] == step)
            .unwrap_or_else(|| panic!("no result for step `{step}`: {:#?}", self.events))
    }
    fn dump(&self) -> String {
        format!(
            "events:\n{}\nstderr:\n{}",
            self.events
                .iter()
                .map(J::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            self.stderr
        )
    }
}

/// Apply `playbook` (YAML text) with the lab inventory, in a fresh project (empty templates
/// directory, its own state directory; outputs kept with the test's artifacts). A run refused
/// because another run (another test binary) holds the cluster or the host is retried for a
/// while.
fn apply(playbook: &str) -> Run {
    let p = Project::new();
    let pb = p.write("playbook.yml", playbook).display().to_string();
    let inventory = repo_root().join("inventory/lab.yml").display().to_string();
    let templates = p.templates();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = p.output(p.command(&[
            "apply",
            "-i",
            &inventory,
            "--templates",
            &templates,
            "--output",
            "json",
            &pb,
        ]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let run = Run {
            ok: out.status.success(),
            events: stdout
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let all = format!("{stdout}{}", run.stderr);
        let busy = all.contains("another run is driving") || all.contains("locked by");
        if busy && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(3));
            continue;
        }
        return run;
    }
}

fn ssh_text(host: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&lab_ssh(host, cmd).stdout)
        .trim()
        .to_string()
}

/// Installed version of a package on a host, or "" when it is not installed.
fn installed(host: &str, pkg: &str) -> String {
    ssh_text(
        host,
        &format!("dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}' {pkg} 2>/dev/null | sed -n 's/^.i.|//p'"),
    )
}

/// Remove the test package (however a test ended) so the lab is left as it was.
fn purge(host: &str, pkg: &str) {
    lab_ssh(
        host,
        &format!("DEBIAN_FRONTEND=noninteractive apt-get -y -o DPkg::Lock::Timeout=120 purge {pkg} >/dev/null 2>&1; true"),
    );
}

const PKG: &str = "lab-release-notes";

#[test]
fn lineinfile_edits_once_then_nothing() {
    require_lab();
    let host = "app1";
    let _g = host_lock(host);
    let path = format!("/tmp/cutover-lif-{}", std::process::id());
    lab_ssh_ok(
        host,
        &format!("printf 'a=1\\nb=2\\n' > {path}; chmod 0640 {path}"),
    );
    let pb = format!(
        r#"- hosts: {host}
  steps:
    - name: replace b
      lineinfile: {{ path: {path}, regexp: '^b=', line: 'b=3' }}
    - name: add c after a
      lineinfile: {{ path: {path}, line: 'c=4', insertafter: '^a=' }}
    - name: drop a
      lineinfile: {{ path: {path}, regexp: '^a=', state: absent }}
    - name: create new
      lineinfile: {{ path: {path}.new, line: 'hello', create: true, mode: '0600' }}
"#
    );
    let first = apply(&pb);
    assert!(first.ok, "{}", first.dump());
    for step in ["replace b", "add c after a", "drop a", "create new"] {
        assert_eq!(first.step(step)["status"], "changed", "{}", first.dump());
    }
    assert_eq!(first.changed(host), 4, "{}", first.dump());
    assert_eq!(ssh_text(host, &format!("cat {path}")), "c=4\nb=3");
    // Attributes of the edited file are kept; the new one has the mode asked for.
    assert_eq!(
        ssh_text(host, &format!("stat -c %a {path} {path}.new")),
        "640\n600"
    );
    assert_eq!(ssh_text(host, &format!("cat {path}.new")), "hello");
    let second = apply(&pb);
    assert!(second.ok, "{}", second.dump());
    assert_eq!(second.changed(host), 0, "{}", second.dump());
    lab_ssh(host, &format!("rm -f {path} {path}.new {path}.cutover-*"));
}

#[test]
fn lineinfile_is_undone_by_unwind() {
    require_lab();
    let host = "app1";
    let _g = host_lock(host);
    let path = format!("/tmp/cutover-lif-undo-{}", std::process::id());
    lab_ssh_ok(host, &format!("printf 'keep=1\\n' > {path}"));
    let pb = format!(
        r#"- hosts: {host}
  on_failure: unwind
  steps:
    - name: add line
      lineinfile: {{ path: {path}, line: 'added=1' }}
    - name: create file
      lineinfile: {{ path: {path}.new, line: 'x', create: true }}
    - fail: {{ msg: boom }}
"#
    );
    let run = apply(&pb);
    assert!(!run.ok, "{}", run.dump());
    assert_eq!(run.step("add line")["status"], "changed", "{}", run.dump());
    assert_eq!(ssh_text(host, &format!("cat {path}")), "keep=1");
    assert_eq!(
        ssh_text(host, &format!("ls {path}* | wc -l")),
        "1",
        "the created file and the backup are gone"
    );
    lab_ssh(host, &format!("rm -f {path} {path}.new {path}.cutover-*"));
}

#[test]
fn package_installs_once_then_nothing_and_pins() {
    require_lab();
    let host = "db1";
    let _g = host_lock(host);
    purge(host, PKG);
    let pb = format!(
        r#"- hosts: {host}
  steps:
    - name: latest notes
      package: {{ name: {PKG}, state: latest, update_cache: true }}
"#
    );
    let first = apply(&pb);
    let v = installed(host, PKG);
    let second = apply(&pb);
    let pin = apply(&format!(
        r#"- hosts: {host}
  steps:
    - name: pin notes
      package: {{ name: [{PKG}], version: "1.0" }}
"#
    ));
    let pinned = installed(host, PKG);
    purge(host, PKG);
    assert!(first.ok, "{}", first.dump());
    assert_eq!(first.step("latest notes")["status"], "changed");
    // A host that never fetched its package lists cannot say before apply updates them.
    let detail = first.step("latest notes")["detail"].as_str().unwrap_or("");
    assert!(
        detail == format!("{PKG}: absent → 1.1")
            || detail.starts_with("unknown: package lists may be stale"),
        "{detail}"
    );
    assert_eq!(v, "1.1");
    assert!(second.ok, "{}", second.dump());
    assert_eq!(second.changed(host), 0, "{}", second.dump());
    assert!(pin.ok, "{}", pin.dump());
    assert_eq!(pin.step("pin notes")["detail"], format!("{PKG}: 1.1 → 1.0"));
    assert_eq!(pinned, "1.0");
}

#[test]
fn package_is_undone_by_unwind() {
    require_lab();
    let host = "db2";
    let _g = host_lock(host);
    purge(host, PKG);
    // From absent: unwind purges what the step installed.
    let fresh = apply(&format!(
        r#"- hosts: {host}
  on_failure: unwind
  steps:
    - name: install notes
      package: {{ name: {PKG}, update_cache: true }}
    - fail: {{ msg: boom }}
"#
    ));
    let after_fresh = installed(host, PKG);
    // From 1.0: unwind downgrades back to the old version.
    lab_ssh_ok(
        host,
        &format!("DEBIAN_FRONTEND=noninteractive apt-get -y -o DPkg::Lock::Timeout=120 install {PKG}=1.0 >/dev/null"),
    );
    let upgrade = apply(&format!(
        r#"- hosts: {host}
  on_failure: unwind
  steps:
    - name: upgrade notes
      package: {{ name: {PKG}, state: latest }}
    - fail: {{ msg: boom }}
"#
    ));
    let after_upgrade = installed(host, PKG);
    purge(host, PKG);
    assert!(!fresh.ok, "{}", fresh.dump());
    assert_eq!(
        fresh.step("install notes")["status"],
        "changed",
        "{}",
        fresh.dump()
    );
    assert_eq!(
        after_fresh,
        "",
        "unwind purged the new package: {}",
        fresh.dump()
    );
    assert_eq!(
        upgrade.step("upgrade notes")["detail"],
        format!("{PKG}: 1.0 → 1.1")
    );
    assert_eq!(
        after_upgrade,
        "1.0",
        "unwind downgraded: {}",
        upgrade.dump()
    );
}

#[test]
fn user_creates_once_then_nothing() {
    require_lab();
    let host = "app2";
    let _g = host_lock(host);
    let name = "cotest_user1";
    let pb = format!(
        r#"- hosts: {host}
  steps:
    - name: make user
      user: {{ name: {name}, uid: 45001, shell: /bin/bash, groups: [adm] }}
"#
    );
    let first = apply(&pb);
    let entry = ssh_text(
        host,
        &format!("getent passwd {name}; id -nG {name}; test -d /home/{name} && echo home"),
    );
    let second = apply(&pb);
    let change = apply(&format!(
        r#"- hosts: {host}
  steps:
    - name: change shell
      user: {{ name: {name}, shell: /bin/sh }}
"#
    ));
    let shell = ssh_text(host, &format!("getent passwd {name} | cut -d: -f7"));
    lab_ssh(host, &format!("userdel -r {name} 2>/dev/null; true"));
    assert!(first.ok, "{}", first.dump());
    assert_eq!(first.step("make user")["status"], "changed");
    assert_eq!(
        entry,
        format!("{name}:x:45001:45001::/home/{name}:/bin/bash\n{name} adm\nhome")
    );
    assert!(second.ok, "{}", second.dump());
    assert_eq!(second.changed(host), 0, "{}", second.dump());
    assert_eq!(
        change.step("change shell")["detail"],
        format!("user {name}: shell /bin/bash → /bin/sh")
    );
    assert_eq!(shell, "/bin/sh");
}

#[test]
fn user_is_undone_by_unwind() {
    require_lab();
    let host = "app2";
    let _g = host_lock(host);
    let name = "cotest_user2";
    let existing = "cotest_user3";
    lab_ssh_ok(host, &format!("useradd -m -u 45003 -s /bin/sh {existing}"));
    let run = apply(&format!(
        r#"- hosts: {host}
  on_failure: unwind
  steps:
    - name: make user
      user: {{ name: {name}, uid: 45002 }}
    - name: change other
      user: {{ name: {existing}, shell: /bin/bash, groups: [adm] }}
    - name: remove other
      user: {{ name: {existing}, state: absent }}
    - fail: {{ msg: boom }}
"#
    ));
    let gone = ssh_text(
        host,
        &format!("getent passwd {name}; test -e /home/{name} && echo home-left; true"),
    );
    let back = ssh_text(
        host,
        &format!("getent passwd {existing}; id -nG {existing}"),
    );
    lab_ssh(
        host,
        &format!("userdel -r {name} 2>/dev/null; userdel -r {existing} 2>/dev/null; true"),
    );
    assert!(!run.ok, "{}", run.dump());
    assert_eq!(run.step("make user")["status"], "changed", "{}", run.dump());
    assert_eq!(
        run.step("remove other")["status"],
        "changed",
        "{}",
        run.dump()
    );
    assert_eq!(
        gone,
        "",
        "the created user and its home are gone: {}",
        run.dump()
    );
    assert_eq!(
        back,
        format!("{existing}:x:45003:45003::/home/{existing}:/bin/sh\n{existing}"),
        "{}",
        run.dump()
    );
}

#[test]
fn group_creates_once_then_nothing_and_is_undone() {
    require_lab();
    let host = "lb";
    let _g = host_lock(host);
    let name = "cotest_grp1";
    let pb = format!(
        r#"- hosts: {host}
  steps:
    - name: make group
      group: {{ name: {name}, gid: 45101 }}
"#
    );
    let first = apply(&pb);
    let entry = ssh_text(host, &format!("getent group {name}"));
    let second = apply(&pb);
    lab_ssh(host, &format!("groupdel {name} 2>/dev/null; true"));
    let undone = apply(&format!(
        r#"- hosts: {host}
  on_failure: unwind
  steps:
    - name: make group
      group: {{ name: {name}, gid: 45101 }}
    - fail: {{ msg: boom }}
"#
    ));
    let after = ssh_text(host, &format!("getent group {name}; true"));
    lab_ssh(host, &format!("groupdel {name} 2>/dev/null; true"));
    assert!(first.ok, "{}", first.dump());
    assert_eq!(first.step("make group")["status"], "changed");
    assert_eq!(entry, format!("{name}:x:45101:"));
    assert!(second.ok, "{}", second.dump());
    assert_eq!(second.changed(host), 0, "{}", second.dump());
    assert!(!undone.ok);
    assert_eq!(undone.step("make group")["status"], "changed");
    assert_eq!(after, "", "unwind removed the group: {}", undone.dump());
}

#[test]
fn wait_for_open_port_passes_and_closed_port_times_out() {
    require_lab();
    let host = "staging";
    let _g = host_lock(host);
    let started = Instant::now();
    let open = apply(&format!(
        r#"- hosts: {host}
  steps:
    - name: sshd listens
      wait_for: {{ port: 22, host: 127.0.0.1, timeout: 10 }}
    - name: os-release has a name
      wait_for: {{ path: /etc/os-release, search: 'NAME=', timeout: 5 }}
"#
    ));
    assert!(open.ok, "{}", open.dump());
    assert_eq!(open.step("sshd listens")["status"], "ok");
    assert_eq!(open.failed(host), 0);
    assert!(started.elapsed() < Duration::from_secs(20));
    // Twice (no change either time: wait_for never changes a host).
    let again = apply(&format!(
        r#"- hosts: {host}
  steps:
    - name: sshd listens
      wait_for: {{ port: 22, timeout: 10 }}
"#
    ));
    assert!(again.ok, "{}", again.dump());
    assert_eq!(again.changed(host), 0);

    let started = Instant::now();
    let closed = apply(&format!(
        r#"- hosts: {host}
  steps:
    - name: nothing listens
      wait_for: {{ port: 9, host: 127.0.0.1, timeout: 3 }}
"#
    ));
    let took = started.elapsed();
    assert!(!closed.ok, "{}", closed.dump());
    let step = closed.step("nothing listens");
    assert_eq!(step["status"], "failed");
    let detail = step["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("timed out after 3s waiting for port 127.0.0.1:9 to be open"),
        "{detail}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "{took:?}"
    );
}
