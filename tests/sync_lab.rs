//! The `sync` module against the lab: a tree copied from app1 to staging host to host
//! (`via: direct`: rsync pulled by staging with an ephemeral key, removed afterwards) and
//! through the controller (`via: controller`). Needs `lab/lab.sh up` and rsync on the hosts
//! (playbooks/site.yml installs it). Only test paths are touched, and removed afterwards.

mod common;

use common::project::{text, Project};

use std::process::Output;
use std::sync::Mutex;

/// The tests compare app1's authorized_keys before and after their copies: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn ssh_ok(host: &str, cmd: &str) -> String {
    let o = common::lab_ssh(host, cmd);
    assert!(o.status.success(), "ssh {host} {cmd}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Type, mode, owner, size, path, link target and content hash of every entry, sorted; the
/// test's own view, independent of the module's checksum.
fn listing(host: &str, dir: &str, prune: &str) -> String {
    ssh_ok(
        host,
        &format!(
            r#"cd {dir} && find . {prune} \( -type f -printf '%y %m %u:%g %s %p ' -exec sh -c 'sha256sum < "$1" | cut -c1-16' _ {{}} \; -o -printf '%y %m %u:%g %p %l\n' \) | LC_ALL=C sort"#
        ),
    )
}

/// The source tree on app1: modes, owners, setgid, links (one dangling), excluded files.
fn make_tree(src: &str) {
    ssh_ok(
        "app1",
        &format!(
            r#"set -e
mkdir -p {src}/conf {src}/cache {src}/data/deep "{src}/with space"
printf 'a=1\n' > {src}/conf/app.conf
printf 'secret\n' > {src}/conf/key; chmod 0600 {src}/conf/key
head -c 300000 /dev/urandom > {src}/data/deep/blob.bin
ln {src}/data/deep/blob.bin {src}/data/deep/hardlink.bin
printf 'run\n' > {src}/run.sh; chmod 0750 {src}/run.sh
chown -R daemon:daemon {src}/data; chown nobody:nogroup {src}/run.sh
chmod 2750 {src}/data
ln -s conf/app.conf {src}/current.conf
ln -s /nonexistent {src}/dangling
printf 'x\n' > "{src}/with space/a file"
printf 'log\n' > {src}/app.log; printf 'log\n' > {src}/data/old.log
printf 'c\n' > {src}/cache/c1"#
        ),
    );
}

fn play(src: &str, dest: &str, via: &str, extra_args: &str, extra_steps: &str) -> String {
    format!(
        r#"- name: copy to staging
  hosts: staging
  steps:
    - name: sync
      sync:
        src_host: app1
        src: {src}
        dest: {dest}
        exclude: ["*.log", "cache"]
        via: {via}
{extra_args}      register: copied
{extra_steps}"#
    )
}

/// Apply a playbook; its output and the registered result of its `sync` step. (Attempts
/// refused while another test binary's run held a host have no step results.)
fn apply_sync(p: &Project, playbook: &str) -> (Output, serde_json::Value) {
    let before = p.run_ids();
    let o = p.apply_text(playbook);
    let results: Vec<serde_json::Value> = p
        .run_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .flat_map(|id| {
            p.journal_text(&id)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|e| e["event"] == "step_result" && e["name"] == "sync")
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(results.len(), 1, "{}\n{results:#?}", text(&o));
    (o, results[0]["registered"].clone())
}

/// root's authorized_keys on app1 (checksum and cutover lines) and what the copy may leave on
/// staging (key directories, staging directories).
fn traces(dest: &str) -> (String, String, String) {
    let ak = ssh_ok(
        "app1",
        "sha256sum /root/.ssh/authorized_keys; grep -c cutover-sync /root/.ssh/authorized_keys || true",
    );
    let keys = ssh_ok(
        "staging",
        "ls -d /tmp/cutover-sync-key.* 2>/dev/null || true",
    );
    let parent = std::path::Path::new(dest)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let staged = ssh_ok(
        "staging",
        &format!("ls -d {parent}/.cutover-sync.* 2>/dev/null || true"),
    );
    (ak, keys, staged)
}

/// Copy, compare with the test's own listing, copy again (no change), then change the source
/// and fail a later step: the unwind puts the previous copy back.
fn round_trip(via: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let pid = std::process::id();
    let src = format!("/srv/cutover-sync-{via}-{pid}");
    let dest = format!("/srv/cutover-sync-{via}-{pid}-dest");
    make_tree(&src);
    let p = Project::new();
    let before = traces(&dest);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (o, result) = apply_sync(&p, &play(&src, &dest, via, "", ""));
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("changed=1"), "{out}");
        assert_eq!(result["via"], via, "{result}");
        if via == "direct" {
            // The temporary key was limited to the address staging reaches app1 from.
            assert_eq!(result["key_from"], "10.77.0.41", "{result}");
        }
        assert!(result.get("direct_skipped").is_none(), "{result}");
        assert_eq!(result["src_digest"], result["dest_digest"], "{result}");
        let prune = r"\( -name '*.log' -o -name cache \) -prune -o";
        let want = listing("app1", &src, prune);
        let got = listing("staging", &dest, "");
        assert_eq!(got, want);
        assert!(
            want.contains("l 777 root:root ./current.conf conf/app.conf"),
            "{want}"
        );
        assert!(want.contains("f 600 root:root 7 ./conf/key"), "{want}");
        assert!(want.contains("d 2750 daemon:daemon ./data"), "{want}");
        assert!(want.contains("f 750 nobody:nogroup 4 ./run.sh"), "{want}");
        assert!(want.contains("./with space/a file"), "{want}");
        assert!(!got.contains(".log") && !got.contains("cache"), "{got}");
        // Hard links stay hard links.
        assert_eq!(
            ssh_ok(
                "staging",
                &format!("stat -c %h {dest}/data/deep/blob.bin {dest}/data/deep/hardlink.bin")
            ),
            "2\n2\n"
        );
        // Nothing left behind: no key authorised on app1, no key pair or staging dir on staging.
        assert_eq!(traces(&dest), before, "left behind by the copy");

        // Second run: the checksums match, nothing to do.
        let o = p.apply_text(&play(&src, &dest, via, "", ""));
        let out = text(&o);
        assert!(o.status.success() && out.contains("changed=0"), "{out}");

        // A change at the source, then a failing step: unwind puts the previous copy back.
        ssh_ok("app1", &format!("printf 'a=2\\n' > {src}/conf/app.conf"));
        let (o, result) = apply_sync(
            &p,
            &format!(
                "{}  on_failure: unwind\n",
                play(
                    &src,
                    &dest,
                    via,
                    "",
                    "    - name: fails\n      fail: { msg: later step broke }\n"
                )
            ),
        );
        let out = text(&o);
        assert!(!o.status.success() && out.contains("UNWIND"), "{out}");
        assert_eq!(result["via"], via, "{result}");
        assert_eq!(
            ssh_ok("staging", &format!("cat {dest}/conf/app.conf")),
            "a=1\n",
            "{out}"
        );
        assert_eq!(listing("staging", &dest, ""), got);
        assert_eq!(
            ssh_ok("staging", &format!("ls -d {dest}* | wc -l")).trim(),
            "1",
            "no backup left behind"
        );
        assert_eq!(traces(&dest), before, "left behind by the copy");
    }));
    let _ = common::lab_ssh("app1", &format!("rm -rf {src}"));
    let _ = common::lab_ssh("staging", &format!("rm -rf {dest} {dest}.cutover-*"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn sync_copies_a_tree_host_to_host_with_an_ephemeral_key_and_verifies_it() {
    round_trip("direct");
}

#[test]
fn sync_copies_a_tree_through_the_controller_and_verifies_it() {
    round_trip("controller");
}

/// The controller path streams: a tree holding a 160 MiB file goes through the controller
/// without the controller ever holding it (its peak memory stays far below the file's size),
/// and arrives whole.
#[test]
fn sync_through_the_controller_streams_a_large_tree() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let pid = std::process::id();
    let src = format!("/srv/cutover-sync-big-{pid}");
    let dest = format!("/srv/cutover-sync-big-{pid}-dest");
    ssh_ok(
        "app1",
        &format!("set -e; mkdir -p {src}/d; head -c 167772160 /dev/urandom > {src}/d/big.bin; echo small > {src}/s"),
    );
    let p = Project::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pb = p.write("pb.yml", &play(&src, &dest, "controller", "", ""));
        let inv = common::project::lab_inventory().display().to_string();
        let pb = pb.display().to_string();
        let (o, kb) =
            p.output_with_peak_memory(p.command(&["apply", "-i", &inv, &pb, "--output", "plain"]));
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            kb < 160 * 1024 / 3,
            "cutover peaked at {kb} KiB carrying a 160 MiB tree: it was held in memory"
        );
        let a = ssh_ok("app1", &format!("sha256sum < {src}/d/big.bin"));
        let b = ssh_ok("staging", &format!("sha256sum < {dest}/d/big.bin"));
        assert_eq!(a, b, "the large file arrived whole");
    }));
    let _ = common::lab_ssh("app1", &format!("rm -rf {src}"));
    let _ = common::lab_ssh("staging", &format!("rm -rf {dest} {dest}.cutover-*"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// The direct path checks the source's host key strictly (taken over the controller's own
/// connection): pointed at another host's address, the copy is refused (`via: direct`) or
/// falls back to the controller (`via: auto`), and no key is left authorised either way.
#[test]
fn sync_direct_refuses_a_host_with_another_key_and_auto_falls_back() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let pid = std::process::id();
    let src = format!("/srv/cutover-sync-wrongkey-{pid}");
    let dest = format!("/srv/cutover-sync-wrongkey-{pid}-dest");
    make_tree(&src);
    let p = Project::new();
    let before = traces(&dest);
    // app2's address: reachable from staging, but not app1's host key.
    let elsewhere = "        src_address: 10.77.0.12\n";
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let o = p.apply_text(&play(&src, &dest, "direct", elsewhere, ""));
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(
            out.contains("sync via: direct from app1 to staging")
                && out.contains("Host key verification failed")
                && out.contains("nothing was changed"),
            "{out}"
        );
        assert!(
            !common::lab_ssh("staging", &format!("test -e {dest}"))
                .status
                .success(),
            "nothing was written"
        );
        assert_eq!(traces(&dest), before, "left behind by the refused copy");

        let (o, result) = apply_sync(&p, &play(&src, &dest, "auto", elsewhere, ""));
        let out = text(&o);
        assert!(o.status.success() && out.contains("changed=1"), "{out}");
        assert_eq!(result["via"], "controller", "{result}");
        assert!(
            result["direct_skipped"]
                .as_str()
                .is_some_and(|w| w.contains("Host key verification failed")),
            "{result}"
        );
        assert_eq!(result["src_digest"], result["dest_digest"], "{result}");
        assert_eq!(traces(&dest), before, "left behind by the fallback");
    }));
    let _ = common::lab_ssh("app1", &format!("rm -rf {src}"));
    let _ = common::lab_ssh("staging", &format!("rm -rf {dest} {dest}.cutover-*"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// What the ephemeral key may do while it is authorised: only rsync's sending (read-only)
/// server, only from the pulling host. A key with exactly the options `sync` writes is put on
/// app1 for this test: a shell command, rsync receiving (a write), port forwarding and the
/// same key from another address are all refused; rsync reading works.
#[test]
fn the_ephemeral_key_only_lets_rsync_read_from_the_pulling_host() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let pid = std::process::id();
    let marker = format!("cutover-sync-keytest-{pid}");
    let keydir = ssh_ok(
        "staging",
        &format!("k=$(mktemp -d /tmp/cutover-keytest.XXXXXX) && ssh-keygen -q -t ed25519 -N '' -C {marker} -f $k/id && ssh-keyscan -t ed25519 10.77.0.11 2>/dev/null > $k/kh && echo $k"),
    )
    .trim()
    .to_string();
    let public = ssh_ok("staging", &format!("cat {keydir}/id.pub"));
    let options = cutover::modules::sync::key_options(Some("10.77.0.41"), None);
    let line = format!("{options} {}", public.trim());
    let quoted = format!("'{}'", line.replace('\'', r"'\''"));
    let src = format!("/srv/cutover-keytest-{pid}");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ssh_ok(
            "app1",
            &format!("mkdir -p {src} && echo data > {src}/f && printf '%s\\n' {quoted} >> /root/.ssh/authorized_keys"),
        );
        let ssh = format!(
            "ssh -F /dev/null -i {keydir}/id -o IdentitiesOnly=yes -o UserKnownHostsFile={keydir}/kh -o StrictHostKeyChecking=yes -o BatchMode=yes -l root"
        );
        // A shell command: refused by the forced command.
        let o = common::lab_ssh("staging", &format!("{ssh} 10.77.0.11 id"));
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("only rsync --sender is allowed"),
            "{}",
            text(&o)
        );
        // rsync writing to app1 (its receiving server): refused.
        let o = common::lab_ssh(
            "staging",
            &format!("echo x > {keydir}/up && rsync -e '{ssh}' {keydir}/up 10.77.0.11:{src}/up"),
        );
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            !common::lab_ssh("app1", &format!("test -e {src}/up"))
                .status
                .success(),
            "rsync wrote through the key"
        );
        // Port forwarding: refused (restrict).
        let o = common::lab_ssh(
            "staging",
            &format!("timeout 20 {ssh} -W 127.0.0.1:22 10.77.0.11 </dev/null"),
        );
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("administratively prohibited"),
            "{}",
            text(&o)
        );
        // rsync reading: allowed.
        let o = common::lab_ssh(
            "staging",
            &format!("rsync -a -e '{ssh}' 10.77.0.11:{src}/f {keydir}/f && cat {keydir}/f"),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "data\n");
        // The same key from another address (the controller): refused.
        let here = tempfile::tempdir().unwrap();
        let id = here.path().join("id");
        std::fs::write(&id, ssh_ok("staging", &format!("cat {keydir}/id"))).unwrap();
        std::fs::set_permissions(&id, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let kh = common::lab_state().join("ssh/known_hosts");
        let o = common::in_controller(
            "ssh",
            &[
                "-F",
                "/dev/null",
                "-i",
                id.to_str().unwrap(),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                &format!("UserKnownHostsFile={}", kh.display()),
                "-o",
                "BatchMode=yes",
                "-l",
                "root",
                "10.77.0.11",
                "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/hostname",
            ],
        );
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    }));
    let _ = common::lab_ssh(
        "app1",
        &format!("sed -i '/{marker}/d' /root/.ssh/authorized_keys; rm -rf {src}"),
    );
    let _ = common::lab_ssh("staging", &format!("rm -rf {keydir}"));
    let left = ssh_ok(
        "app1",
        &format!("grep -c {marker} /root/.ssh/authorized_keys || true"),
    );
    assert_eq!(left.trim(), "0");
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// A destination that is a mount point (a data volume) cannot be moved aside: the direct copy
/// refills it in place, keeping the previous content as the backup, and an unwind puts that
/// back — still the same mount.
#[test]
fn sync_direct_refills_a_mount_point_in_place_and_unwinds() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let pid = std::process::id();
    let src = format!("/srv/cutover-sync-mnt-{pid}");
    let dest = format!("/srv/cutover-sync-mnt-{pid}-dest");
    make_tree(&src);
    ssh_ok(
        "staging",
        &format!("mkdir -p {dest} && mount -t tmpfs -o size=64m,mode=0711 tmpfs {dest} && printf 'old\\n' > {dest}/previous"),
    );
    let p = Project::new();
    let before = traces(&dest);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (o, result) = apply_sync(&p, &play(&src, &dest, "direct", "", ""));
        let out = text(&o);
        assert!(o.status.success() && out.contains("changed=1"), "{out}");
        assert_eq!(result["via"], "direct", "{result}");
        assert_eq!(result["src_digest"], result["dest_digest"], "{result}");
        let prune = r"\( -name '*.log' -o -name cache \) -prune -o";
        assert_eq!(listing("staging", &dest, ""), listing("app1", &src, prune));
        assert!(
            ssh_ok("staging", &format!("mountpoint {dest}")).contains("is a mountpoint"),
            "still the mount"
        );
        let backup = result["backup"].as_str().expect("a backup").to_string();
        assert_eq!(
            ssh_ok("staging", &format!("cat {backup}/previous")),
            "old\n"
        );
        assert_eq!(traces(&dest), before, "left behind by the copy");

        // Unwind: the previous content is back in the mount, the backup gone.
        ssh_ok("app1", &format!("printf 'a=3\\n' > {src}/conf/app.conf"));
        let (o, _) = apply_sync(
            &p,
            &format!(
                "{}  on_failure: unwind\n",
                play(
                    &src,
                    &dest,
                    "direct",
                    "",
                    "    - name: fails\n      fail: { msg: later step broke }\n"
                )
            ),
        );
        assert!(
            !o.status.success() && text(&o).contains("UNWIND"),
            "{}",
            text(&o)
        );
        assert_eq!(
            ssh_ok("staging", &format!("cat {dest}/conf/app.conf")),
            "a=1\n"
        );
        assert!(
            ssh_ok("staging", &format!("mountpoint {dest}")).contains("is a mountpoint"),
            "still the mount"
        );
    }));
    let _ = common::lab_ssh("app1", &format!("rm -rf {src}"));
    let _ = common::lab_ssh(
        "staging",
        &format!("umount {dest}; rm -rf {dest} {dest}.cutover-*"),
    );
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
