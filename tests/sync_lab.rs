//! The `sync` module against the lab: a tree copied from app1 to staging through the
//! controller (the hosts have no ssh keys for each other). Needs `lab/lab.sh up`. Only test
//! paths are touched, and removed afterwards.

mod common;

use common::project::Project;

use std::process::Output;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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

#[test]
fn sync_copies_a_tree_from_app1_to_staging_and_verifies_it() {
    common::require_lab();
    let pid = std::process::id();
    let src = format!("/srv/cutover-sync-{pid}");
    let dest = format!("/srv/cutover-sync-{pid}-dest");
    ssh_ok(
        "app1",
        &format!(
            r#"set -e
mkdir -p {src}/conf {src}/cache {src}/data/deep
printf 'a=1\n' > {src}/conf/app.conf
printf 'secret\n' > {src}/conf/key; chmod 0600 {src}/conf/key
head -c 300000 /dev/urandom > {src}/data/deep/blob.bin
printf 'run\n' > {src}/run.sh; chmod 0750 {src}/run.sh
chown -R daemon:daemon {src}/data; chown nobody:nogroup {src}/run.sh
chmod 2750 {src}/data
ln -s conf/app.conf {src}/current.conf
ln -s /nonexistent {src}/dangling
printf 'log\n' > {src}/app.log; printf 'log\n' > {src}/data/old.log
printf 'c\n' > {src}/cache/c1"#
        ),
    );
    let play = |extra: &str| {
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
      register: copied
{extra}"#
        )
    };
    let p = Project::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let o = p.apply_text(&play(""));
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("changed=1"), "{out}");
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
        assert!(!got.contains(".log") && !got.contains("cache"), "{got}");

        // Second run: the checksums match, nothing to do.
        let o = p.apply_text(&play(""));
        let out = text(&o);
        assert!(o.status.success() && out.contains("changed=0"), "{out}");

        // A change at the source, then a failing step: unwind puts the previous copy back.
        ssh_ok("app1", &format!("printf 'a=2\\n' > {src}/conf/app.conf"));
        let o = p.apply_text(&format!(
            "{}  on_failure: unwind\n",
            play("    - name: fails\n      fail: { msg: later step broke }\n")
        ));
        let out = text(&o);
        assert!(!o.status.success() && out.contains("UNWIND"), "{out}");
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
    }));
    let _ = common::lab_ssh("app1", &format!("rm -rf {src}"));
    let _ = common::lab_ssh("staging", &format!("rm -rf {dest} {dest}.cutover-*"));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
