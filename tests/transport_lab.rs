//! The ssh transport against the lab: jump hosts. Needs `lab/lab.sh up`.
//!
//! The host under test is `lb` reached as `127.0.0.1` *through* `lb` as jump host: that
//! address means lb only from lb itself (the controller namespace has no sshd), so a command
//! that answers `lb` ran through the hop. The hop must use the inventory's identity, known_hosts
//! file and strict host-key checking, as the connection to the host does (ssh passes none of
//! its `-o`/`-i` options to the hop).

mod common;

use common::project::{text, Project};
use serde_json::Value as J;

const LB: &str = "10.77.0.31";

/// lb's host key line (`TYPE KEY`) from the lab's known_hosts.
fn lb_key() -> String {
    let kh = std::fs::read_to_string(common::lab_state().join("ssh/known_hosts")).unwrap();
    kh.lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|names| names.split(',').any(|n| n == LB))
        })
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .expect("lb in the lab's known_hosts")
}

/// An inventory with one host, `behind`, at `address` (optionally through `jump`), whose
/// known_hosts file holds lb's key under the names given.
fn inventory(p: &Project, address: &str, jump: Option<&str>, known_as: &[&str]) -> String {
    let key = lb_key();
    let kh: String = known_as.iter().map(|n| format!("{n} {key}\n")).collect();
    let kh = p.write("known_hosts", &kh);
    let jump = jump.map_or(String::new(), |j| format!("    jump_host: {j}\n"));
    p.write(
        "inv.yml",
        &format!(
            r#"connection:
  user: root
  identity_file: {id}
  known_hosts_file: {kh}
  ssh_options: {{ ConnectTimeout: 5 }}
hosts:
  behind:
    address: {address}
{jump}"#,
            id = common::lab_state().join("ssh/id_ed25519").display(),
            kh = kh.display()
        ),
    )
    .display()
    .to_string()
}

fn apply(p: &Project, inv: &str, pb: &str) -> std::process::Output {
    let pb = p.write("pb.yml", pb).display().to_string();
    p.run(&["apply", "-i", inv, &pb, "--output", "plain"])
}

fn results(p: &Project) -> Vec<J> {
    p.journal()
        .into_iter()
        .filter(|e| e["event"] == "step_result")
        .collect()
}

#[test]
fn a_host_behind_a_jump_host_is_reached_with_the_inventory_keys_on_the_hop() {
    common::require_lab();
    let marker = format!("/var/tmp/cutover-jump-{}", std::process::id());
    let pb = format!(
        r#"- hosts: behind
  steps:
    - name: where
      command: hostname
      register: where
      changed_when: false
    - name: marker
      copy: {{ content: "through the hop\n", dest: "{marker}" }}
"#
    );
    let p = Project::new();
    let inv = inventory(
        &p,
        "127.0.0.1",
        Some(&format!("root@{LB}")),
        &[LB, "127.0.0.1"],
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let o = apply(&p, &inv, &pb);
        assert!(o.status.success(), "{}", text(&o));
        let rs = results(&p);
        let where_ = rs.iter().find(|e| e["name"] == "where").expect("where ran");
        assert_eq!(
            where_["registered"]["stdout"].as_str().map(str::trim),
            Some("lb"),
            "{where_}"
        );
        assert_eq!(
            common::lab_ssh_ok("lb", &format!("cat {marker}")),
            "through the hop\n"
        );
        // Second run: nothing to change, still through the hop.
        let o = apply(&p, &inv, &pb);
        assert!(
            o.status.success() && text(&o).contains("changed=0"),
            "{}",
            text(&o)
        );

        // Without the jump host, 127.0.0.1 is the controller's own loopback: nothing answers.
        let direct = Project::new();
        let inv = inventory(&direct, "127.0.0.1", None, &[LB, "127.0.0.1"]);
        let o = apply(&direct, &inv, &pb);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(results(&direct).is_empty());
    }));
    let _ = common::lab_ssh("lb", &format!("rm -f {marker}"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn an_unknown_jump_host_key_refuses_the_host_with_a_clear_message() {
    common::require_lab();
    let marker = format!("/var/tmp/cutover-jump-refused-{}", std::process::id());
    let pb =
        format!("- hosts: behind\n  steps:\n    - name: marker\n      command: touch {marker}\n");
    // The host's own key is known (as 127.0.0.1), the jump host's (10.77.0.31) is not.
    let p = Project::new();
    let inv = inventory(&p, "127.0.0.1", Some(&format!("root@{LB}")), &["127.0.0.1"]);
    let o = apply(&p, &inv, &pb);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains(&format!("the jump host root@{LB} was refused"))
            && out.contains("host key verification failed on the hop")
            && out.contains("nothing was run on behind"),
        "{out}"
    );
    assert!(results(&p).is_empty(), "nothing ran");
    let o = common::lab_ssh("lb", &format!("test -e {marker}"));
    assert!(!o.status.success(), "the command must not have run on lb");
    // A known but *changed* jump-host key is refused too, even when new keys are accepted.
    let p = Project::new();
    let inv = inventory(&p, "127.0.0.1", Some(&format!("root@{LB}")), &["127.0.0.1"]);
    let kh = p.path("known_hosts");
    let fake = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEaUmaT5JNhPrDuokCQrhK4PQQsXghx0Em6hebUZcte0";
    let mut t = std::fs::read_to_string(&kh).unwrap();
    t.push_str(&format!("{LB} {fake}\n"));
    std::fs::write(&kh, t).unwrap();
    let pbp = p.write("pb.yml", &pb).display().to_string();
    let o = p.run(&[
        "apply",
        "-i",
        &inv,
        &pbp,
        "--output",
        "plain",
        "--accept-new-host-keys",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("host key verification failed on the hop"),
        "{out}"
    );
    assert!(results(&p).is_empty(), "nothing ran");
}
