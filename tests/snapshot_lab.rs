//! The `snapshot` and `snapshot_usage` modules against the lab: btrfs in a container (app1, on a
//! test subvolume of its own, never the real app/home/mysql volumes) and real LVM in the VM
//! (lvm1). Needs `lab/lab.sh up`. Every test removes what it made.

mod common;

use common::project::{text, Project};

use std::process::Output;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ssh(host: &str, cmd: &str) -> Output {
    if host == "lvm1" {
        common::lvm1_ssh(cmd)
    } else {
        common::lab_ssh(host, cmd)
    }
}

fn ssh_ok(host: &str, cmd: &str) -> String {
    let o = ssh(host, cmd);
    assert!(o.status.success(), "ssh {host} {cmd}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// btrfs (container app1)

/// A test subvolume bind-mounted at /srv/cutover-test-PID, holding data.txt, used by a tiny
/// unit whose working directory keeps the mount busy (so the merge must stop it to unmount).
struct BtrfsFixture {
    vol: String,
    mount: String,
    unit: String,
}

const BHOST: &str = "app1";

impl BtrfsFixture {
    fn new(tag: &str) -> BtrfsFixture {
        let name = format!("cutover-test-{tag}-{}", std::process::id());
        let f = BtrfsFixture {
            vol: name.clone(),
            mount: format!("/srv/{name}"),
            unit: format!("{name}.service"),
        };
        ssh_ok(
            BHOST,
            &format!(
                r#"set -e
btrfs subvolume create /srv/vol/{v} >/dev/null
mkdir -p {m}
mount --bind /srv/vol/{v} {m}
echo one > {m}/data.txt
mkdir {m}/sub && echo keep > {m}/sub/file && ln -s data.txt {m}/link
cat > /etc/systemd/system/{u} <<EOF
[Service]
WorkingDirectory={m}
ExecStart=/bin/sleep infinity
EOF
systemctl daemon-reload
systemctl start {u}"#,
                v = f.vol,
                m = f.mount,
                u = f.unit
            ),
        );
        f
    }
    fn yaml_volumes(&self) -> String {
        format!("[{{ name: {}, mount: {} }}]", self.vol, self.mount)
    }
    fn snapshot(&self, set: &str) -> String {
        format!("/srv/vol/.snapshots/{set}-{}", self.vol)
    }
    fn play(&self, set: &str, state: &str) -> String {
        format!(
            r#"- name: btrfs snapshot
  hosts: {BHOST}
  steps:
    - name: snapshot {state}
      snapshot:
        backend: btrfs
        volumes: {vols}
        name: {set}
        state: {state}
        services: [{unit}]
"#,
            vols = self.yaml_volumes(),
            unit = self.unit
        )
    }
    fn data(&self) -> String {
        ssh_ok(
            BHOST,
            &format!(
                "cat {m}/data.txt; ls -A {m} | tr '\\n' ' '; readlink {m}/link",
                m = self.mount
            ),
        )
    }
}

impl Drop for BtrfsFixture {
    fn drop(&mut self) {
        let _ = ssh(
            BHOST,
            &format!(
                r#"systemctl stop {u}; rm -f /etc/systemd/system/{u}; systemctl daemon-reload
umount {m} 2>/dev/null; rmdir {m}
for s in /srv/vol/.snapshots/*-{v} /srv/vol/.snapshots/*-{v}.replaced-*; do [ -e "$s" ] && btrfs subvolume delete "$s" >/dev/null; done
btrfs subvolume delete /srv/vol/{v} >/dev/null"#,
                u = self.unit,
                m = self.mount,
                v = self.vol
            ),
        );
    }
}

#[test]
fn btrfs_snapshot_merge_and_commit() {
    let _g = serial();
    common::require_lab();
    let f = BtrfsFixture::new("merge");
    let p = Project::new();
    let before = f.data();
    assert!(before.starts_with("one\n"), "{before}");

    // Create: a read-only snapshot; a second run changes nothing.
    let out = p.apply_text_ok(&f.play("pre", "present"));
    assert!(out.contains("changed") || out.contains("create"), "{out}");
    assert_eq!(
        ssh_ok(
            BHOST,
            &format!("btrfs property get -ts {} ro", f.snapshot("pre"))
        )
        .trim(),
        "ro=true"
    );
    let first = p.run_ids().pop().unwrap();
    let run_file = format!("/srv/vol/.snapshots/.cutover-runs/pre-{}", f.vol);
    assert_eq!(ssh_ok(BHOST, &format!("cat {run_file}")).trim(), first);
    an_existing_set_is_refused_unless_replaced(&p, &f, &first, &run_file);
    // Change the data, then merge (roll back): the data is back exactly, the unit runs again.
    ssh_ok(
        BHOST,
        &format!(
            "echo two > {m}/data.txt; echo new > {m}/new.txt; rm -r {m}/sub; ln -sfn new.txt {m}/link",
            m = f.mount
        ),
    );
    assert_ne!(f.data(), before);
    p.apply_text_ok(&f.play("pre", "merged"));
    assert_eq!(f.data(), before);
    assert_eq!(
        ssh_ok(BHOST, &format!("cat {}/sub/file", f.mount)),
        "keep\n"
    );
    assert_eq!(
        ssh_ok(BHOST, &format!("systemctl is-active {}", f.unit)).trim(),
        "active"
    );
    assert_eq!(
        ssh_ok(BHOST, &format!("mountpoint -q {} && echo m", f.mount)).trim(),
        "m"
    );
    // The merge consumed the snapshot and left no replaced subvolume behind.
    assert_eq!(
        ssh_ok(
            BHOST,
            &format!("ls /srv/vol/.snapshots | grep -c -- '{}' || true", f.vol)
        )
        .trim(),
        "0"
    );
    assert_eq!(
        ssh_ok(
            BHOST,
            &format!("test -e {run_file} && echo left || echo gone")
        )
        .trim(),
        "gone",
        "the merge removed the set's run record"
    );
    // Merging again: nothing to do.
    p.apply_text_ok(&f.play("pre", "merged"));

    // Commit: snapshot, then absent removes it and leaves the data as it is.
    p.apply_text_ok(&f.play("keep", "present"));
    ssh_ok(BHOST, &format!("echo three > {}/data.txt", f.mount));
    p.apply_text_ok(&f.play("keep", "absent"));
    assert_eq!(
        ssh_ok(
            BHOST,
            &format!("test -e {} && echo yes || echo no", f.snapshot("keep"))
        )
        .trim(),
        "no"
    );
    assert!(f.data().starts_with("three\n"));
}

fn an_existing_set_is_refused_unless_replaced(
    p: &Project,
    f: &BtrfsFixture,
    first: &str,
    run_file: &str,
) {
    // A second run finds the set in place: an error naming the run that made it (issue 21,
    // item 2: it was "ok", silently keeping the older rollback point), in the plan and in
    // the run, and the set is left as it was.
    let refused = format!(
        "snapshot set `pre` exists already on {BHOST}: {} was made by run {first}",
        f.snapshot("pre")
    );
    let plan = p.run_text("plan", &f.play("pre", "present"));
    assert!(text(&plan).contains(&refused), "plan:\n{}", text(&plan));
    let again = p.apply_text(&f.play("pre", "present"));
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(text(&again).contains(&refused), "{}", text(&again));
    assert!(
        text(&again).contains("replace_existing: true"),
        "{}",
        text(&again)
    );
    assert_eq!(ssh_ok(BHOST, &format!("cat {run_file}")).trim(), first);
    // replace_existing: true removes it first — the plan says so and whose it was — and the
    // new set records the run that made it.
    let replace = f.play("pre", "present").replace(
        "state: present\n",
        "state: present\n        replace_existing: true\n",
    );
    let plan = p.run_text("plan", &replace);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains(&format!(
            "remove the existing {} (made by run {first}) first (replace_existing: that rollback point is gone), then snapshot",
            f.snapshot("pre")
        )),
        "plan:\n{}",
        text(&plan)
    );
    let out = p.apply_text_ok(&replace);
    assert!(out.contains("changed=1"), "{out}");
    let second = p.run_ids().pop().unwrap();
    assert_ne!(second, first);
    assert_eq!(ssh_ok(BHOST, &format!("cat {run_file}")).trim(), second);
}

#[test]
fn btrfs_unwind_rolls_back_to_the_snapshot() {
    let _g = serial();
    common::require_lab();
    let f = BtrfsFixture::new("unwind");
    let p = Project::new();
    let before = f.data();
    let pb = format!(
        r#"- name: upgrade that fails
  hosts: {BHOST}
  on_failure: unwind
  steps:
    - name: snapshot
      snapshot:
        backend: btrfs
        volumes: {vols}
        name: pre-upgrade
        services: [{unit}]
    - name: change the data
      shell: "echo upgraded > {m}/data.txt && rm {m}/link"
      undo: irreversible
    - name: the upgrade fails
      fail: {{ msg: broken release }}
"#,
        vols = f.yaml_volumes(),
        unit = f.unit,
        m = f.mount
    );
    let o = p.apply_text(&pb);
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("UNWIND"), "{out}");
    assert_eq!(f.data(), before, "{out}");
    assert_eq!(
        ssh_ok(BHOST, &format!("systemctl is-active {}", f.unit)).trim(),
        "active"
    );
    assert_eq!(
        ssh_ok(
            BHOST,
            &format!(
                "test -e {} && echo yes || echo no",
                f.snapshot("pre-upgrade")
            )
        )
        .trim(),
        "no"
    );
}

// ---------------------------------------------------------------------------------------------
// LVM (VM lvm1)

fn lvm_up() -> bool {
    let o = common::lvm1_ssh("vgs vg0 >/dev/null && echo ok");
    if String::from_utf8_lossy(&o.stdout).trim() == "ok" {
        return true;
    }
    // Fail loudly: the VM is part of the lab.
    panic!("lvm1 is not reachable (lab/vm/vm.sh up): {}", text(&o));
}

fn lv_names() -> String {
    ssh_ok(
        "lvm1",
        "lvs -a --noheadings -o lv_name vg0 | tr -d ' ' | sort | tr '\\n' ' '",
    )
}

/// What the test changes on lvm1's data volume: two files' sums and the listing.
fn lvm1_data_state() -> String {
    ssh_ok(
        "lvm1",
        "sha256sum /srv/data/hello.txt /srv/data/app/numbers.txt; ls /srv/data",
    )
}

/// A play of one snapshot step on lvm1: set SET of vg0/data in state ST, stopping UNIT, then
/// the steps EXTRA.
fn lvm_play(set: &str, unit: &str, st: &str, extra: &str) -> String {
    format!(
        r#"- name: lvm snapshot
  hosts: lvm1
  steps:
    - name: snapshot {st}
      snapshot:
        backend: lvm
        volumes: [{{ name: data, vg: vg0, lv: data, mount: /srv/data }}]
        name: {set}
        size: 20%ORIGIN
        state: {st}
        services: [{unit}]
      register: snap
{extra}"#
    )
}

#[test]
fn lvm_snapshot_merge_with_mounted_origin_is_completed() {
    let _g = serial();
    common::require_lab();
    lvm_up();
    let pid = std::process::id();
    let unit = format!("cutover-test-{pid}.service");
    let set = format!("t{pid}");
    let lvs_before = lv_names();
    ssh_ok(
        "lvm1",
        &format!(
            r#"set -e
cat > /etc/systemd/system/{unit} <<EOF
[Service]
WorkingDirectory=/srv/data
ExecStart=/bin/sleep infinity
EOF
systemctl daemon-reload; systemctl start {unit}"#
        ),
    );
    let before = lvm1_data_state();
    let p = Project::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.apply_text_ok(&lvm_play(&set, &unit, "present", ""));
        let attr = ssh_ok(
            "lvm1",
            &format!("lvs --noheadings -o lv_attr,origin vg0/{set}-data"),
        );
        assert!(
            attr.trim().starts_with('s') && attr.contains("data"),
            "{attr}"
        );
        // The snapshot records its run (a tag); another run is refused, naming it (issue 21).
        let first = p.run_ids().pop().unwrap();
        let tags = ssh_ok(
            "lvm1",
            &format!("lvs --noheadings -o lv_tags vg0/{set}-data"),
        );
        assert_eq!(tags.trim(), format!("cutover-run:{first}"));
        let again = p.apply_text(&lvm_play(&set, &unit, "present", ""));
        assert_eq!(again.status.code(), Some(3), "{}", text(&again));
        assert!(
            text(&again).contains(&format!(
                "snapshot set `{set}` exists already on lvm1: vg0/{set}-data was made by run {first}"
            )),
            "{}",
            text(&again)
        );
        ssh_ok(
            "lvm1",
            "echo changed > /srv/data/hello.txt; seq 1 5000 > /srv/data/app/numbers.txt; echo x > /srv/data/cutover-new; sync",
        );
        assert_ne!(lvm1_data_state(), before);
        // /srv/data is mounted and busy: lvconvert defers; the module stops the unit, unmounts,
        // reactivates the LV, waits for the merge and mounts again.
        let out = p.apply_text_ok(&lvm_play(&set, &unit,
            "merged",
            "    - name: it was deferred, then completed\n      assert: { that: [\"snap.deferred\"] }\n",
        ));
        assert_eq!(lvm1_data_state(), before, "{out}");
        let lvs = ssh_ok("lvm1", "lvs -a --noheadings -o lv_name,lv_attr vg0");
        assert!(!lvs.contains(&set), "{lvs}");
        assert!(
            lvs.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["data", "-wi-ao----"]),
            "{lvs}"
        );
        assert_eq!(
            ssh_ok("lvm1", &format!("systemctl is-active {unit}")).trim(),
            "active"
        );
        // Commit path: a new snapshot, removed again with state: absent.
        p.apply_text_ok(&lvm_play(&set, &unit, "present", ""));
        p.apply_text_ok(&lvm_play(&set, &unit, "absent", ""));
        assert_eq!(lv_names(), lvs_before);
    }));
    let _ = ssh(
        "lvm1",
        &format!(
            "systemctl stop {unit}; rm -f /etc/systemd/system/{unit}; systemctl daemon-reload; lvremove -y vg0/{set}-data 2>/dev/null; mountpoint -q /srv/data || mount /srv/data"
        ),
    );
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn lvm_snapshot_set_too_big_is_refused_before_anything_changes() {
    let _g = serial();
    common::require_lab();
    lvm_up();
    let pid = std::process::id();
    let fill = format!("cutover-fill-{pid}");
    // Leave 40 extents (160 MiB) free: data at 50% (128 MiB) or scratch at 50% (64 MiB) would
    // each fit, the set of both (192 MiB) does not.
    let free: u64 = ssh_ok("lvm1", "vgs --noheadings -o vg_free_count vg0")
        .trim()
        .parse()
        .unwrap();
    assert!(free > 40, "vg0 has only {free} free extents");
    ssh_ok(
        "lvm1",
        &format!("lvcreate -y -n {fill} -l {} vg0 >/dev/null", free - 40),
    );
    let before = lv_names();
    let p = Project::new();
    let o = p.apply_text(&format!(
        r#"- name: too big
  hosts: lvm1
  steps:
    - name: snapshot set
      snapshot:
        backend: lvm
        volumes:
          - {{ name: data, vg: vg0, lv: data, mount: /srv/data }}
          - {{ name: scratch, vg: vg0, lv: scratch }}
        name: big{pid}
        size: 50%ORIGIN
"#
    ));
    let after = lv_names();
    let free_after = ssh_ok("lvm1", "vgs --noheadings -o vg_free_count vg0");
    let _ = ssh("lvm1", &format!("lvremove -y vg0/{fill}"));
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("not enough free space in volume group vg0")
            && out.contains("201326592")
            && out.contains("167772160"),
        "{out}"
    );
    assert_eq!(before, after, "no LV may be created");
    assert_eq!(free_after.trim(), "40");
}

#[test]
fn lvm_snapshot_usage_is_caught_before_the_snapshot_is_lost() {
    let _g = serial();
    common::require_lab();
    lvm_up();
    let pid = std::process::id();
    let origin = format!("cutover-u{pid}");
    ssh_ok(
        "lvm1",
        &format!("lvcreate -y -n {origin} -L 64M vg0 >/dev/null"),
    );
    let p = Project::new();
    let play = |module: &str, args: &str| {
        format!(
            r#"- name: usage
  hosts: lvm1
  steps:
    - name: {module}
      {module}:
        backend: lvm
        volumes: [{{ name: u, vg: vg0, lv: {origin} }}]
        name: s
{args}"#
        )
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.apply_text_ok(&play("snapshot", "        size: 8M\n"));
        let check = "        max_usage_percent: 50\n";
        p.apply_text_ok(&play("snapshot_usage", check));
        // 5 MiB written to the origin: the 8 MiB COW is well over half full.
        ssh_ok(
            "lvm1",
            &format!(
                "dd if=/dev/urandom of=/dev/vg0/{origin} bs=1M count=5 oflag=direct status=none"
            ),
        );
        let o = p.apply_text(&play("snapshot_usage", check));
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("full (max 50%)"), "{out}");
        // autoextend grows it instead, before it fills.
        p.apply_text_ok(&play(
            "snapshot_usage",
            "        max_usage_percent: 50\n        autoextend: true\n        extend_by: 16M\n",
        ));
        let size = ssh_ok(
            "lvm1",
            "lvs --noheadings --units b --nosuffix -o lv_size vg0/s-u",
        );
        assert_eq!(size.trim(), "25165824");
        p.apply_text_ok(&play("snapshot_usage", check));
        // Overflow it: the snapshot turns invalid and the check says the rollback point is gone.
        ssh_ok(
            "lvm1",
            &format!("dd if=/dev/urandom of=/dev/vg0/{origin} bs=1M count=40 oflag=direct status=none; sync"),
        );
        let o = p.apply_text(&play("snapshot_usage", check));
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("the rollback point is gone"), "{out}");
        // A merge of it is refused for the same reason; removing it (commit) works.
        let o = p.apply_text(&play("snapshot", "        state: merged\n"));
        assert!(text(&o).contains("rollback point is gone"), "{}", text(&o));
        p.apply_text_ok(&play("snapshot", "        state: absent\n"));
    }));
    let _ = ssh(
        "lvm1",
        &format!("lvremove -y vg0/s-u 2>/dev/null; lvremove -y vg0/{origin}"),
    );
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
