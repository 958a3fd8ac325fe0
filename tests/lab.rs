//! Checks against the running lab (lab/lab.sh up): ssh with strict host key
//! checking, systemd in every container, the local apt repository, btrfs
//! snapshots, name resolution, the app bundles. See lab/README.md.

mod common;

use common::{in_controller, lab_ssh, lab_ssh_as, lab_ssh_ok, lab_state, require_lab, LAB_HOSTS};
use std::time::{Duration, Instant};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ssh_with_strict_host_key_checking_reaches_every_host() {
    require_lab();
    for (host, addr) in LAB_HOSTS {
        // By short name, NAME.lab and address: all three are in known_hosts.
        for target in [host.to_string(), format!("{host}.lab"), addr.to_string()] {
            let out = lab_ssh(&target, "hostname");
            assert!(
                out.status.success(),
                "ssh {target} failed: {}",
                text(&out.stderr)
            );
            assert_eq!(
                text(&out.stdout).trim(),
                host,
                "ssh {target} reached the wrong host"
            );
        }
    }
}

#[test]
fn ssh_refuses_a_wrong_or_missing_host_key() {
    require_lab();
    let state = lab_state();
    let known = std::fs::read_to_string(state.join("ssh/known_hosts")).expect("read known_hosts");
    let key_of = |host: &str| -> String {
        known
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.split(',').any(|x| x == host))
            })
            .unwrap_or_else(|| panic!("no known_hosts line for {host}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (app1, db1) = (key_of("app1"), key_of("db1"));
    assert_ne!(app1, db1, "two hosts share a host key");

    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("known_hosts_wrong");
    std::fs::write(&wrong, format!("app1,app1.lab,10.77.0.11 {db1}\n")).unwrap();
    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let config = state.join("ssh/config");
    for (file, why) in [(&wrong, "another host's key"), (&empty, "no key at all")] {
        let opt = format!("UserKnownHostsFile={}", file.display());
        let out = in_controller(
            "ssh",
            &[
                "-F",
                config.to_str().unwrap(),
                "-o",
                &opt,
                "app1",
                "echo REACHED",
            ],
        );
        assert!(
            !out.status.success(),
            "ssh app1 accepted {why} in known_hosts"
        );
        assert!(
            !text(&out.stdout).contains("REACHED"),
            "command ran despite {why}"
        );
        assert!(
            text(&out.stderr).contains("Host key verification failed"),
            "unexpected refusal message for {why}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn systemd_is_running_in_every_container() {
    require_lab();
    let deadline = Instant::now() + Duration::from_secs(90);
    for (host, _) in LAB_HOSTS {
        loop {
            let out = lab_ssh(host, "systemctl is-system-running");
            let state = text(&out.stdout).trim().to_string();
            if state == "running" {
                break;
            }
            let settled = state == "degraded" || state == "maintenance" || state == "stopping";
            if settled || Instant::now() > deadline {
                let failed = lab_ssh(host, "systemctl --failed --no-legend --plain");
                panic!(
                    "{host}: systemd is {state:?} (stderr {}); failed units:\n{}",
                    text(&out.stderr),
                    text(&failed.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn users_admin_and_operator_can_become_root() {
    require_lab();
    let password = std::fs::read_to_string(lab_state().join("secrets/operator-sudo-password"))
        .expect("read secrets/operator-sudo-password");
    let password = password.trim();
    assert!(password.len() >= 12, "operator password is too short");
    for (host, _) in LAB_HOSTS {
        let out = lab_ssh_as("admin", host, "sudo -n id -u");
        assert!(
            out.status.success(),
            "{host}: admin sudo -n failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), "0");

        let out = lab_ssh_as("operator", host, "sudo -n id -u");
        assert!(
            !out.status.success(),
            "{host}: operator became root without a password"
        );

        let cmd = format!("echo '{password}' | sudo -S -p '' id -u");
        let out = lab_ssh_as("operator", host, &cmd);
        assert!(
            out.status.success(),
            "{host}: operator sudo with password failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), "0");

        let out = lab_ssh_as(
            "operator",
            host,
            "echo wrong-password | sudo -S -p '' id -u",
        );
        assert!(
            !out.status.success(),
            "{host}: operator sudo accepted a wrong password"
        );
    }
}

/// Removes the test package even when an assertion fails half-way.
struct Purge(&'static str);
impl Drop for Purge {
    fn drop(&mut self) {
        let _ = lab_ssh(
            self.0,
            "apt-get -o DPkg::Lock::Timeout=120 purge -y -q lab-release-notes",
        );
    }
}

#[test]
fn local_apt_repo_installs_and_upgrades_the_two_version_package() {
    require_lab();
    let host = "staging";
    // Sources point only at the lab repository.
    lab_ssh_ok(host, "apt-get -o DPkg::Lock::Timeout=120 update -q");
    let uris = lab_ssh_ok(
        host,
        "apt-get indextargets --format '$(URI)' | sed 's,/[^/]*$,,' | sort -u",
    );
    assert!(!uris.trim().is_empty(), "{host} has no apt index targets");
    for uri in uris.lines() {
        assert!(
            uri.starts_with("http://repo:8080/debian"),
            "{host} has an apt source outside the lab: {uri}"
        );
    }
    let _purge = Purge(host);
    lab_ssh_ok(
        host,
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -q lab-release-notes=1.0",
    );
    let v = lab_ssh_ok(host, "dpkg-query -W -f '${Version}' lab-release-notes");
    assert_eq!(v.trim(), "1.0");
    let policy = lab_ssh_ok(host, "apt-cache policy lab-release-notes");
    assert!(policy.contains("Installed: 1.0"), "policy: {policy}");
    assert!(
        policy.contains("Candidate: 1.1"),
        "1.1 is not the upgrade candidate: {policy}"
    );
    let upgradable = lab_ssh_ok(host, "apt list --upgradable 2>/dev/null");
    assert!(
        upgradable
            .lines()
            .any(|l| l.starts_with("lab-release-notes/") && l.contains("1.1")),
        "apt list --upgradable does not offer lab-release-notes 1.1:\n{upgradable}"
    );
    lab_ssh_ok(
        host,
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -q --only-upgrade lab-release-notes",
    );
    let notes = lab_ssh_ok(host, "cat /usr/share/lab-release-notes/VERSION");
    assert!(notes.contains("version 1.1"), "after upgrade: {notes}");
    lab_ssh_ok(
        host,
        "apt-get -o DPkg::Lock::Timeout=120 purge -y -q lab-release-notes",
    );
    let out = lab_ssh(host, "dpkg-query -W -f '${Status}' lab-release-notes");
    assert!(
        !out.status.success() || !text(&out.stdout).contains("installed"),
        "lab-release-notes still installed: {}",
        text(&out.stdout)
    );
}

#[test]
fn local_apt_repo_holds_the_whole_cluster_closure() {
    require_lab();
    // A bare host can resolve every package the playbooks install, from the lab repo alone.
    let host = "lb";
    lab_ssh_ok(host, "apt-get -o DPkg::Lock::Timeout=120 update -q");
    let pkgs = "mariadb-server mariadb-client apache2 libapache2-mod-jk tomcat10 tomcat10-common \
                libtomcat10-java default-jre-headless libmariadb-java rsync curl";
    let sim = lab_ssh_ok(host, &format!("apt-get install -s -q {pkgs}"));
    assert!(
        sim.contains("Inst mariadb-server"),
        "simulation did not plan mariadb-server:\n{sim}"
    );
    // And every .deb the index names is really served.
    let out = in_controller(
        "sh",
        &["-c", "curl -fsS http://repo:8080/debian/Packages | awk '/^Filename:/ {print $2}' | head -n 400 | \
                 while read -r f; do curl -fsS -o /dev/null -I http://repo:8080/debian/$f || echo MISSING $f; done"],
    );
    assert!(out.status.success(), "curl failed: {}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("MISSING"),
        "repo index names missing files:\n{}",
        text(&out.stdout)
    );
}

#[test]
fn btrfs_volumes_are_mounted_and_snapshots_work_from_inside() {
    require_lab();
    let expect: [(&str, &[(&str, &str)]); 5] = [
        ("app1", &[("/opt/wiki", "app"), ("/var/lib/wiki", "home")]),
        ("app2", &[("/opt/wiki", "app"), ("/var/lib/wiki", "home")]),
        ("db1", &[("/var/lib/mysql", "mysql")]),
        ("db2", &[("/var/lib/mysql", "mysql")]),
        (
            "staging",
            &[
                ("/opt/wiki", "app"),
                ("/var/lib/wiki", "home"),
                ("/var/lib/mysql", "mysql"),
            ],
        ),
    ];
    for (host, mounts) in expect {
        for (target, vol) in mounts {
            let fs = lab_ssh_ok(host, &format!("findmnt -n -o FSTYPE,FSROOT {target}"));
            assert_eq!(
                fs.split_whitespace().collect::<Vec<_>>(),
                ["btrfs", &format!("/{host}/{vol}")],
                "{host}: {target} is not the btrfs subvolume {vol}"
            );
            let fstab = lab_ssh_ok(host, "cat /etc/fstab");
            assert!(
                fstab
                    .lines()
                    .any(|l| l.starts_with(&format!("/srv/vol/{vol}")) && l.contains(target)),
                "{host}: {target} is not in /etc/fstab (would not come back at boot)"
            );
        }
    }
    // Snapshot, see it, delete it, from inside db1.
    let snap = format!("/srv/vol/.snapshots/labtest-{}", std::process::id());
    lab_ssh_ok("db1", &format!("echo marker > /var/lib/mysql/labtest-marker && btrfs subvolume snapshot -r /srv/vol/mysql {snap}"));
    let show = lab_ssh_ok(
        "db1",
        &format!("btrfs subvolume show {snap}; cat {snap}/labtest-marker"),
    );
    assert!(
        show.contains("Flags:") && show.contains("readonly"),
        "not a readonly snapshot:\n{show}"
    );
    assert!(
        show.contains("marker"),
        "snapshot does not hold the volume's data:\n{show}"
    );
    lab_ssh_ok(
        "db1",
        &format!("btrfs subvolume delete {snap} && rm -f /var/lib/mysql/labtest-marker"),
    );
    let out = lab_ssh("db1", &format!("test -e {snap}"));
    assert!(
        !out.status.success(),
        "snapshot {snap} still exists after delete"
    );
}

#[test]
fn names_resolve_between_hosts_and_nothing_routes_outside() {
    require_lab();
    let mut expected: Vec<(String, String)> = vec![
        ("repo".into(), "10.77.0.1".into()),
        ("controller".into(), "10.77.0.1".into()),
        ("lvm1".into(), "10.77.0.51".into()),
    ];
    for (h, a) in LAB_HOSTS {
        expected.push((h.into(), a.into()));
        expected.push((format!("{h}.lab"), a.into()));
    }
    let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let query = format!(
        "for n in {}; do getent hosts $n | awk -v n=$n '{{print n, $1}}'; done",
        names.join(" ")
    );
    for from in ["app1", "db2"] {
        let got = lab_ssh_ok(from, &query);
        for (name, addr) in &expected {
            assert!(
                got.lines().any(|l| l == format!("{name} {addr}")),
                "{from}: {name} does not resolve to {addr}; got:\n{got}"
            );
        }
    }
    // The controller namespace too.
    let out = in_controller("sh", &["-c", &query]);
    let got = text(&out.stdout);
    for (name, addr) in &expected {
        assert!(
            got.lines().any(|l| l == format!("{name} {addr}")),
            "controller: {name} -> {addr} missing:\n{got}"
        );
    }
    // Host to host by name (sshd port), and no default route anywhere.
    lab_ssh_ok("app1", "timeout 3 bash -c 'exec 3<>/dev/tcp/db1/22'");
    lab_ssh_ok("db1", "timeout 3 bash -c 'exec 3<>/dev/tcp/app2.lab/22'");
    for (host, _) in LAB_HOSTS {
        let routes = lab_ssh_ok(host, "ip -4 route show default; ip -6 route show default");
        assert!(
            routes.trim().is_empty(),
            "{host} has a default route: {routes}"
        );
    }
    let out = in_controller("ip", &["route", "show", "default"]);
    assert!(
        text(&out.stdout).trim().is_empty(),
        "controller has a default route"
    );
}

#[test]
fn repo_serves_the_three_app_bundles_with_matching_sha256() {
    require_lab();
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        let url = format!("http://repo:8080/releases/wiki-{v}.tar.gz");
        let script = format!(
            "code=$(curl -s -o /tmp/lab-bundle.$$ -w '%{{http_code}}' {url}); \
             sum=$(curl -fsS {url}.sha256 | awk '{{print $1}}'); \
             got=$(sha256sum /tmp/lab-bundle.$$ | awk '{{print $1}}'); \
             gzip -t /tmp/lab-bundle.$$ && gz=ok || gz=bad; rm -f /tmp/lab-bundle.$$; \
             echo \"$code\" \"x$sum\" \"x$got\" $gz"
        );
        let out = in_controller("sh", &["-c", &script]);
        let words: Vec<String> = text(&out.stdout)
            .split_whitespace()
            .map(|w| w.trim_start_matches('x').to_string())
            .collect();
        assert_eq!(
            words.len(),
            4,
            "{url}: unexpected output {:?} {}",
            words,
            text(&out.stderr)
        );
        assert_eq!(
            words[0], "200",
            "{url}: HTTP {} (has lab/app/build.sh landed? rerun lab/lab.sh up)",
            words[0]
        );
        assert_eq!(
            words[1].len(),
            64,
            "{url}.sha256 is not a sha256: {}",
            words[1]
        );
        assert_eq!(words[1], words[2], "{url}: sha256 mismatch");
        assert_eq!(words[3], "ok", "{url}: not a valid gzip file");
    }
}
