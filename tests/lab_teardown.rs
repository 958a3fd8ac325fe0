//! `lab/lab.sh down` leaves nothing behind. Not part of a plain `cargo test`
//! (Cargo.toml: test = false): run it with `cargo test --test lab_teardown`.

mod common;

use common::{lab_state, repo_root};
use std::process::Command;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Live (not zombie: PID 1 reaps lazily here) processes whose command line matches.
fn live_processes(matches: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let state = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.chars().next().unwrap_or('?'));
        if matches!(state, Some('Z') | Some('X')) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        if matches(comm.trim(), &cmdline) {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}

#[test]
fn lab_down_leaves_nothing_behind() {
    let state = lab_state();
    let state_str = state.to_str().expect("utf-8 state path").to_string();
    let out = Command::new(repo_root().join("lab/lab.sh"))
        .arg("down")
        .output()
        .expect("run lab/lab.sh down");
    assert!(
        out.status.success(),
        "lab/lab.sh down failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Namespaces.
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left: Vec<String> = text(&ns.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("lab-") || *n == "cutover-ctl")
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "network namespaces left: {left:?}");
    assert!(
        !std::path::Path::new("/etc/netns/cutover-ctl").exists(),
        "/etc/netns/cutover-ctl left"
    );

    // Mounts under the state dir.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let prefix = format!("{state_str}/");
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|m| m.starts_with(&prefix) || m == state_str)
        })
        .collect();
    assert!(left.is_empty(), "mounts left under {state_str}: {left:#?}");

    // Loop devices backed by files of the state dir.
    let loops = Command::new("losetup")
        .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
        .output()
        .expect("losetup");
    let left: Vec<String> = text(&loops.stdout)
        .lines()
        .filter(|l| l.contains(&prefix))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "loop devices left: {left:?}");

    // Processes: containers, VM, repo HTTP server, announcement sink.
    let left = live_processes(|comm, cmd| {
        (comm == "systemd-nspawn" && cmd.contains(&prefix))
            || (comm.starts_with("qemu-system") && cmd.contains(&prefix))
            || (cmd.contains("http.server") && cmd.contains(&prefix))
            || (cmd.contains("announce_sink.py") && cmd.contains(&prefix))
    });
    assert!(left.is_empty(), "lab processes left: {left:#?}");

    // Links in the root namespace (the lab's live only inside its namespaces,
    // so any of these here is a leak).
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let left: Vec<String> = text(&links.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n == "labbr0" || n.starts_with("tap-lvm") || n.starts_with("vl-"))
        .collect();
    assert!(left.is_empty(), "network links left: {left:?}");

    // The running lab's files are gone (the controller key and secrets stay).
    for gone in [
        "hosts",
        "btrfs",
        "btrfs.img",
        "www",
        "run",
        "fleet",
        "announce",
        "ssh/config",
        "ssh/known_hosts",
    ] {
        assert!(
            !state.join(gone).exists(),
            "{} left after down",
            state.join(gone).display()
        );
    }

    // A second down is harmless.
    let again = Command::new(repo_root().join("lab/lab.sh"))
        .arg("down")
        .output()
        .expect("run lab/lab.sh down");
    assert!(
        again.status.success(),
        "second lab/lab.sh down failed: {}",
        text(&again.stderr)
    );
}
