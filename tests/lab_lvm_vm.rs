//! LVM facts that cutover relies on, checked for real in the lab VM `lvm1`
//! (lab/vm/vm.sh; the host kernel has no device-mapper).
//!
//! Needs the VM up: `lab/vm/vm.sh up`. Every test fails with a clear message otherwise.
//! The tests share one VM, so they take a global lock and run one at a time; each one
//! puts the VM back as it found it (no snapshots left, /srv/data mounted, VG free space
//! unchanged), so they can run in any order. The reboot test takes about a minute under TCG.
//! The rollback guard's test runs cutover itself against lvm1 through the lab inventory, so
//! it needs the whole lab up (`lab/lab.sh up`).
//!
//!     cargo test --test lab_lvm_vm -- --nocapture
//!
//! Assertions use lvm's machine-readable reports (`--reportformat json`, LC_ALL=C);
//! lvm2 in bookworm is 2.03.16, which has no `json_std` yet. The only human text checked
//! is lvconvert's "Delaying merge since origin is open" (the deferred merge of lvconvert(8),
//! https://man7.org/linux/man-pages/man8/lvconvert.8.html).

mod common;

use common::project::{text, Project};
use serde_json::Value;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One VM for all tests: serialise them.
static VM: Mutex<()> = Mutex::new(());

const VG: &str = "vg0";

/// Take the VM for one test: lock, check it answers, and bring it to the known state.
fn take_vm() -> MutexGuard<'static, ()> {
    let guard = VM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    require_vm();
    restore_vm();
    guard
}

fn require_vm() {
    let config = common::lvm1_ssh_config();
    assert!(
        config.exists(),
        "the LVM VM lvm1 is not up: {} is missing. Start it with `lab/vm/vm.sh up`.",
        config.display()
    );
    let out = run("true");
    assert!(
        out.code == 0,
        "the LVM VM lvm1 does not answer ssh (exit {}): {}\nStart it with `lab/vm/vm.sh up` \
         (on a running VM that also rewrites its known_hosts lines; status: `lab/vm/vm.sh status`).",
        out.code,
        out.stderr.trim()
    );
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run a bash script as root in the VM (LC_ALL=C so lvm prints numbers with '.').
fn run(script: &str) -> Out {
    let o = common::lvm1_ssh(&format!("export LC_ALL=C; {script}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Run a script that must succeed (`set -e`); return its stdout.
fn ok(script: &str) -> String {
    let o = run(&format!("set -euo pipefail; {script}"));
    assert!(
        o.code == 0,
        "command in lvm1 failed (exit {}):\n$ {script}\n--- stdout\n{}--- stderr\n{}",
        o.code,
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// Undo whatever a (possibly failed) test left: mounts, test LVs, snapshots, test files.
/// A snapshot still merging (deferred) cannot be removed, so its origin is re-activated
/// to let the merge finish.
const RESTORE: &str = r#"
umount /mnt/lab-scratch 2>/dev/null
umount /mnt/lab-kept 2>/dev/null
lvremove -y vg0/filler >/dev/null 2>&1
for s in $(lvs -a --noheadings -o lv_name -S 'lv_attr=~^s' vg0 | tr -d '[] '); do
    lvremove -y "vg0/$s" >/dev/null
done
if lvs -a --noheadings -o lv_attr vg0 | grep -q '^ *S'; then
    echo "restore: finishing a pending merge" >&2
    umount /srv/data 2>/dev/null
    for lv in data scratch; do lvchange -an vg0/$lv && lvchange -ay vg0/$lv; done
    for i in $(seq 1 120); do
        lvs -a --noheadings -o lv_attr vg0 | grep -q '^ *[SO]' || break
        sleep 1
    done
fi
# A test that wrote to the scratch volume's device directly must not break the next one.
blkid -p /dev/vg0/scratch >/dev/null 2>&1 || mkfs.ext4 -q -L scratch /dev/vg0/scratch
mountpoint -q /srv/data || mount /srv/data
rm -rf /srv/data/lab-test
mountpoint -q /srv/data && ! lvs -a --noheadings -o lv_attr vg0 | grep -q '^ *[sSO]'
"#;

fn restore_vm() {
    let o = run(RESTORE);
    assert!(
        o.code == 0,
        "could not bring lvm1 back to its initial state (no snapshots, /srv/data mounted):\n{}{}\n\
         Recreate the VM: lab/vm/vm.sh down && lab/vm/vm.sh up",
        o.stdout,
        o.stderr
    );
}

/// Restores the VM when a test ends, also when it panics.
struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        let o = run(RESTORE);
        if o.code != 0 {
            eprintln!("WARNING: restoring lvm1 failed: {}{}", o.stdout, o.stderr);
        }
    }
}

#[derive(Debug, Clone)]
struct Lv {
    name: String,
    attr: String,
    origin: String,
    size: u64,
}

impl Lv {
    fn kind(&self) -> char {
        self.attr.chars().next().unwrap_or('?')
    }
}

fn report(cmd: &str, key: &str) -> Vec<Value> {
    let out = ok(cmd);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`{cmd}` did not print JSON ({e}):\n{out}"));
    v["report"][0][key]
        .as_array()
        .unwrap_or_else(|| panic!("`{cmd}`: no report[0].{key} array in\n{out}"))
        .clone()
}

fn field(row: &Value, name: &str) -> String {
    row[name].as_str().unwrap_or_default().to_string()
}

fn num(row: &Value, name: &str) -> u64 {
    let s = field(row, name);
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("field {name} = {s:?} is not a number in {row}"))
}

/// All LVs of vg0, hidden ones included (a merging snapshot is hidden: `[snap]`).
fn lvs() -> Vec<Lv> {
    report(
        "lvs -a --reportformat json --units b --nosuffix -o lv_name,lv_attr,origin,lv_size vg0",
        "lv",
    )
    .iter()
    .map(|r| Lv {
        name: field(r, "lv_name")
            .trim_matches(|c| c == '[' || c == ']')
            .to_string(),
        attr: field(r, "lv_attr"),
        origin: field(r, "origin"),
        size: num(r, "lv_size"),
    })
    .collect()
}

fn lv(name: &str) -> Option<Lv> {
    lvs().into_iter().find(|l| l.name == name)
}

struct VgInfo {
    free_bytes: u64,
    free_count: u64,
    extent_size: u64,
}

fn vg() -> VgInfo {
    let rows = report(
        "vgs --reportformat json --units b --nosuffix -o vg_name,vg_free,vg_free_count,vg_extent_size vg0",
        "vg",
    );
    let r = rows
        .iter()
        .find(|r| field(r, "vg_name") == VG)
        .expect("vgs does not list vg0");
    VgInfo {
        free_bytes: num(r, "vg_free"),
        free_count: num(r, "vg_free_count"),
        extent_size: num(r, "vg_extent_size"),
    }
}

/// A fingerprint of every file under a mounted directory (names + contents).
fn digest(dir: &str) -> String {
    ok(&format!(
        "cd {dir} && find . -path ./lost+found -prune -o -type f -print0 | sort -z \
         | xargs -0 sha256sum | sha256sum | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

/// Wait until the merge of `snap` into `origin` is over: the snapshot LV is gone and
/// the origin's attr no longer says 'O' (origin with merging snapshot).
fn wait_merge_done(origin: &str, snap: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let all = lvs();
        let snap_gone = all.iter().all(|l| l.name != snap);
        let origin_lv = all
            .iter()
            .find(|l| l.name == origin)
            .expect("origin LV vanished");
        if snap_gone && origin_lv.kind() != 'O' {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "merge of {snap} into {origin} not finished after {timeout:?}: {all:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Write test data on /srv/data (mounted origin): new files plus the seeded ones.
fn seed_data_files() {
    ok(
        "mkdir -p /srv/data/lab-test && head -c 65536 /dev/urandom > /srv/data/lab-test/blob \
        && date +%s%N > /srv/data/lab-test/marker && sync",
    );
}

/// Change /srv/data in several ways: rewrite, append, delete, create.
fn change_data_files() {
    ok(
        "echo changed > /srv/data/lab-test/marker && seq 1 50 >> /srv/data/app/numbers.txt \
        && rm /srv/data/hello.txt && echo new > /srv/data/lab-test/new-file \
        && echo version=2 > /srv/data/app/VERSION && sync",
    );
}

fn boot_id() -> String {
    ok("cat /proc/sys/kernel/random/boot_id").trim().to_string()
}

// ------------------------------------------------------------------------ tests

/// Test 1: ssh with strict host key checking; vg0 has free extents; LV data is mounted.
#[test]
fn vm_answers_ssh_and_vg0_is_ready() {
    let _vm = take_vm();
    let ssh_dir = common::lab_state().join("ssh");
    let known_hosts = ssh_dir.join("known_hosts");
    let key = ssh_dir.join("id_ed25519");
    let known_hosts_opt = format!("UserKnownHostsFile={}", known_hosts.display());
    let key = key.to_str().unwrap();
    let vm_ip = common::vm_name_and_ip().1;
    let target = format!("root@{vm_ip}");
    let strict = |known: &str, cmd: &str| {
        common::in_controller(
            "ssh",
            &[
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                known,
                "-i",
                key,
                &target,
                cmd,
            ],
        )
    };

    // The exact command other helpers use: by IP, the lab key, the lab known_hosts.
    let o = strict(&known_hosts_opt, "LC_ALL=C vgs --noheadings -o vg_name");
    assert!(
        o.status.success(),
        "strict ssh to {vm_ip} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // vg0 (the data disk) and vgsys (the root disk: the root LV, lab/vm/README.md).
    let vgs: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(vgs, [VG, "vgsys"]);

    // Strictness is real: with an empty known_hosts the same connection is refused.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let o = strict(
        &format!("UserKnownHostsFile={}", empty.path().display()),
        "true",
    );
    assert!(
        !o.status.success(),
        "ssh accepted an unknown host key despite StrictHostKeyChecking=yes"
    );

    let info = vg();
    assert!(info.free_count > 0, "vg0 has no free extents");
    assert!(
        info.free_bytes >= 1024 * 1024 * 1024,
        "vg0 should keep most of its 2 GiB free for snapshots, has {} bytes",
        info.free_bytes
    );
    assert_eq!(info.free_bytes, info.free_count * info.extent_size);

    let data = lv("data").expect("LV vg0/data missing");
    let scratch = lv("scratch").expect("LV vg0/scratch missing");
    assert_eq!(data.size, 256 << 20);
    assert_eq!(scratch.size, 128 << 20);
    assert_eq!(
        &data.attr[5..6],
        "o",
        "vg0/data should be open (mounted): {data:?}"
    );
    assert_eq!(
        &scratch.attr[5..6],
        "-",
        "vg0/scratch should not be open: {scratch:?}"
    );

    let mnt: Value = serde_json::from_str(&ok("findmnt -J -o SOURCE,TARGET,FSTYPE /srv/data"))
        .expect("findmnt -J output");
    let fs = &mnt["filesystems"][0];
    assert_eq!(fs["source"], "/dev/mapper/vg0-data");
    assert_eq!(fs["fstype"], "ext4");
}

/// Test 2: An unmounted origin merges at once: `lvconvert --merge -i 1` returns when done.
#[test]
fn merge_of_unmounted_origin_is_immediate() {
    let _vm = take_vm();
    let _restore = Restore;
    let free_before = vg().free_count;

    ok("mkdir -p /mnt/lab-scratch && mount /dev/vg0/scratch /mnt/lab-scratch \
        && head -c 1048576 /dev/urandom > /mnt/lab-scratch/blob && date +%s%N > /mnt/lab-scratch/marker \
        && rm -f /mnt/lab-scratch/new-file && umount /mnt/lab-scratch");
    ok("mount /dev/vg0/scratch /mnt/lab-scratch");
    let before = digest("/mnt/lab-scratch");
    ok("umount /mnt/lab-scratch");

    ok("lvcreate -y -s -n t2snap -L 64M vg0/scratch");
    let snap = lv("t2snap").expect("snapshot t2snap not created");
    assert_eq!(snap.kind(), 's', "{snap:?}");
    assert_eq!(snap.origin, "scratch");
    assert_eq!(lv("scratch").unwrap().kind(), 'o');

    ok("mount /dev/vg0/scratch /mnt/lab-scratch && echo changed > /mnt/lab-scratch/marker \
        && echo new > /mnt/lab-scratch/new-file && head -c 4096 /dev/urandom >> /mnt/lab-scratch/blob");
    assert_ne!(
        digest("/mnt/lab-scratch"),
        before,
        "change did not change the data"
    );
    ok("umount /mnt/lab-scratch");

    let t0 = Instant::now();
    let out = ok("lvconvert --merge -i 1 vg0/t2snap 2>&1");
    let took = t0.elapsed();
    eprintln!("lvconvert --merge -i 1 (unmounted origin) took {took:?}:\n{out}");
    // Synchronous: when lvconvert returns, the snapshot is gone and the origin is plain.
    assert!(
        lv("t2snap").is_none(),
        "snapshot still there after lvconvert returned"
    );
    assert_eq!(
        lv("scratch").unwrap().kind(),
        '-',
        "origin attr after merge"
    );

    ok("mount /dev/vg0/scratch /mnt/lab-scratch");
    assert_eq!(
        digest("/mnt/lab-scratch"),
        before,
        "data not rolled back by the merge"
    );
    ok("umount /mnt/lab-scratch");
    assert_eq!(
        vg().free_count,
        free_before,
        "snapshot extents not returned to the VG"
    );
}

/// Test 3: A mounted origin: the merge is deferred ("Delaying merge since origin is open",
/// origin attr 'O'), the mounted FS keeps the new data, and umount + re-activation
/// (`lvchange -an` + `-ay`, or `lvchange --refresh`) starts it.
fn deferred_merge_of_mounted_origin(reactivate: &str) {
    let _vm = take_vm();
    let _restore = Restore;
    let free_before = vg().free_count;

    seed_data_files();
    let before = digest("/srv/data");
    ok("lvcreate -y -s -n t3snap -L 64M vg0/data");
    change_data_files();
    let changed = digest("/srv/data");
    assert_ne!(changed, before);

    let o = run("lvconvert --merge -i 1 vg0/t3snap");
    let text = format!("{}{}", o.stdout, o.stderr);
    eprintln!(
        "lvconvert --merge on mounted origin (exit {}):\n{text}",
        o.code
    );
    assert_eq!(o.code, 0, "lvconvert --merge failed: {text}");
    assert!(
        text.contains("Delaying merge since origin is open"),
        "expected a deferred merge, lvconvert said:\n{text}"
    );

    let all = lvs();
    let data = all.iter().find(|l| l.name == "data").unwrap();
    let snap = all
        .iter()
        .find(|l| l.name == "t3snap")
        .expect("merging snapshot must still exist (lvs -a)");
    assert_eq!(data.kind(), 'O', "origin with merging snapshot: {data:?}");
    assert_eq!(snap.kind(), 'S', "merging snapshot: {snap:?}");
    // Deferred: the mounted filesystem still shows the changed data.
    assert_eq!(
        digest("/srv/data"),
        changed,
        "the mounted origin changed before re-activation"
    );

    let o = run("lvremove -y vg0/t3snap");
    assert_ne!(o.code, 0, "a merging snapshot must not be removable");

    ok("umount /srv/data");
    ok(reactivate);
    let took = wait_merge_done("data", "t3snap", Duration::from_secs(120));
    eprintln!("merge after `{reactivate}` finished (snapshot gone) {took:?} after re-activation");

    ok("mount /srv/data");
    assert_eq!(
        digest("/srv/data"),
        before,
        "data not rolled back after `{reactivate}`"
    );
    assert_eq!(
        vg().free_count,
        free_before,
        "snapshot extents not returned to the VG"
    );
}

#[test]
fn deferred_merge_of_mounted_origin_runs_on_reactivation() {
    deferred_merge_of_mounted_origin("lvchange -an vg0/data && lvchange -ay vg0/data");
}

#[test]
fn deferred_merge_of_mounted_origin_runs_on_refresh() {
    deferred_merge_of_mounted_origin("lvchange --refresh vg0/data");
}

/// Test 4: A deferred merge happens at the next boot: data is back after a reboot.
#[test]
fn deferred_merge_happens_at_reboot() {
    let _vm = take_vm();
    let _restore = Restore;
    let free_before = vg().free_count;

    seed_data_files();
    let before = digest("/srv/data");
    ok("lvcreate -y -s -n t4snap -L 64M vg0/data");
    change_data_files();
    assert_ne!(digest("/srv/data"), before);

    let o = run("lvconvert --merge -i 1 vg0/t4snap");
    let text = format!("{}{}", o.stdout, o.stderr);
    assert!(
        text.contains("Delaying merge since origin is open"),
        "lvconvert said:\n{text}"
    );
    assert_eq!(lv("data").unwrap().kind(), 'O');

    let old_boot = boot_id();
    let t0 = Instant::now();
    // The connection may drop while systemd goes down; the exit status means nothing.
    let _ = run("systemctl reboot --no-block");
    let deadline = Duration::from_secs(300);
    loop {
        assert!(
            t0.elapsed() < deadline,
            "lvm1 not back {deadline:?} after reboot"
        );
        std::thread::sleep(Duration::from_secs(2));
        let o = run("mountpoint -q /srv/data && cat /proc/sys/kernel/random/boot_id");
        if o.code == 0 && !o.stdout.trim().is_empty() && o.stdout.trim() != old_boot {
            break;
        }
    }
    eprintln!("reboot: ssh and /srv/data back after {:?}", t0.elapsed());

    let took = wait_merge_done("data", "t4snap", Duration::from_secs(120));
    eprintln!("merge finished (snapshot gone) {took:?} after ssh was back");
    assert_eq!(
        digest("/srv/data"),
        before,
        "data not rolled back by the merge at reboot"
    );
    assert_eq!(vg().free_count, free_before);
}

/// Test 5: A snapshot that does not fit in the VG's free space is refused, and nothing is created.
#[test]
fn snapshot_larger_than_vg_free_space_is_refused() {
    let _vm = take_vm();
    let _restore = Restore;

    // Fill the VG but 4 extents, so a 64 MiB snapshot (less than its 128 MiB origin,
    // hence not capped to the origin size) cannot fit.
    let info = vg();
    let leave = 4;
    assert!(info.free_count > leave);
    ok(&format!(
        "lvcreate -y -n filler -l {} vg0",
        info.free_count - leave
    ));
    let full = vg();
    assert_eq!(full.free_count, leave);
    let names_before: Vec<String> = lvs().into_iter().map(|l| l.name).collect();

    let want = 64u64 << 20;
    assert!(want > full.free_bytes);
    let o = run("lvcreate -y -s -n t5snap -L 64M vg0/scratch");
    eprintln!(
        "lvcreate of a too big snapshot (exit {}): {}{}",
        o.code, o.stdout, o.stderr
    );
    assert_ne!(
        o.code, 0,
        "lvcreate accepted a snapshot bigger than the free space"
    );
    assert!(
        lv("t5snap").is_none(),
        "a refused lvcreate left an LV behind"
    );
    let names_after: Vec<String> = lvs().into_iter().map(|l| l.name).collect();
    assert_eq!(names_after, names_before, "LV list changed");
    assert_eq!(vg().free_count, leave, "free extents changed");
    assert_eq!(
        lv("scratch").unwrap().kind(),
        '-',
        "origin must not have become an origin"
    );
}

/// Test 5b: Asking for more than origin + COW metadata: lvcreate reduces the COW size to
/// what the origin can need ("Reducing COW size ... down to maximum usable size"),
/// as Red Hat's LVM guide says ("Creating a snapshot of the original volume",
/// https://docs.redhat.com/en/documentation/red_hat_enterprise_linux/9/html/configuring_and_managin
/// g_logical_volumes/creating-a-snapshot-of-the-original-volume_snapshot-of-logical-volumes).
/// The reduction comes before the free-space check: a request
/// larger than the VG's free space still succeeds when the reduced size fits.
#[test]
fn snapshot_request_larger_than_origin_is_reduced() {
    let _vm = take_vm();
    let _restore = Restore;
    let info = vg();
    let origin = lv("scratch").unwrap().size;

    for ask in [512u64 << 20, info.free_bytes + (64 << 20)] {
        assert!(ask > origin);
        let o = run(&format!("lvcreate -y -s -n t5big -L {ask}b vg0/scratch"));
        eprintln!(
            "lvcreate -L {ask}b (VG free {} B) for a {origin} B origin: exit {}\n{}{}",
            info.free_bytes, o.code, o.stdout, o.stderr
        );
        assert_eq!(
            o.code, 0,
            "lvcreate refused a request it could reduce: {}",
            o.stderr
        );
        let snap = lv("t5big").expect("snapshot not created");
        assert!(
            snap.size >= origin && snap.size <= origin + origin / 10,
            "COW size should be reduced to about the origin size, got {} B for {ask} B asked",
            snap.size
        );
        ok("lvremove -y vg0/t5big");
        assert_eq!(vg().free_count, info.free_count);
    }
}

/// Test 6 (issue 21, item 6, LVM): a rollback that would discard what users wrote after the
/// window closed is refused; with `--discard-writes-since-window` the current data is first
/// kept as a snapshot `kept-SET-STAMP-VOLUME` (as large as the origin, made before the merge),
/// which still holds the file written after the window, while the origin goes back to the
/// snapshot's content. Runs cutover against lvm1 through the lab inventory.
#[test]
fn rollback_keeps_the_current_lvm_data_before_discarding_writes_since_the_window() {
    let _vm = take_vm();
    let _restore = Restore;
    common::require_lab();
    let free_before = vg().free_count;
    seed_data_files();
    let before = digest("/srv/data");
    let version = ok("cat /srv/data/app/VERSION");
    let set = format!("g{}", std::process::id());
    let p = Project::new();
    let inv = common::project::lab_inventory().display().to_string();
    let templates = p.templates();
    let id = apply_snapshot_then_close_the_window(&p, &set);
    // A user writes after the window closed.
    ok("echo 'written after the window' > /srv/data/lab-test/after-window.txt && sync");
    let after = digest("/srv/data");
    let rollback = |extra: &[&str]| {
        let mut args = vec!["rollback", "-i", &inv, "--templates", &templates];
        args.extend(extra);
        args.extend([id.as_str(), "--output", "plain"]);
        p.run(&args)
    };

    let t0 = Instant::now();
    let o = p.run(&["rollback", "-i", &inv, "--plan", &id]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(1), "{plan}");
    let loss = "/srv/data: 1 file written (e.g. lab-test/after-window.txt)";
    assert!(
        plan.lines()
            .any(|l| l.contains("lvm1: since the window closed at 20") && l.ends_with(loss)),
        "{plan}"
    );
    assert!(plan.contains("would be REFUSED"), "{plan}");

    let o = rollback(&[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("rollback of run {id} refused")) && out.contains(loss),
        "{out}"
    );
    assert!(out.contains("Nothing was changed"), "{out}");
    assert_eq!(
        digest("/srv/data"),
        after,
        "a refused rollback changed the data"
    );
    assert_eq!(
        lv(&format!("{set}-data")).expect("the snapshot").kind(),
        's'
    );
    assert!(
        lvs().iter().all(|l| !l.name.starts_with("kept-")),
        "nothing kept yet: {:?}",
        lvs()
    );

    let o = rollback(&["--discard-writes-since-window"]);
    let out = text(&o);
    eprintln!(
        "measured: plan, refused and discarding rollback on lvm1 took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(o.status.success(), "{out}");
    let kept = assert_kept_copy_and_origin_rolled_back(&out, &set, &before, &version);
    let j = p.journal_text(&id);
    assert!(j.contains("\"event\":\"rollback_refused\""));
    assert!(j.contains(&format!("\"location\":\"vg0/{kept}\"")), "{j}");

    ok(&format!("lvremove -y vg0/{kept}"));
    assert_eq!(
        vg().free_count,
        free_before,
        "every snapshot's extents back"
    );
}

/// After a discarding rollback: the kept copy, printed in OUT, holds the writes since the window,
/// the origin is back; the kept LV's name.
fn assert_kept_copy_and_origin_rolled_back(
    out: &str,
    set: &str,
    before: &str,
    version: &str,
) -> String {
    let kept_prefix = format!("kept-{set}-");
    let kept_line = out
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("lvm1: vg0/{kept_prefix}"))
        })
        .unwrap_or_else(|| panic!("no kept location printed:\n{out}"));
    let kept = kept_line
        .trim()
        .trim_start_matches("lvm1: vg0/")
        .to_string();
    assert!(kept.ends_with("-data"), "{kept}");
    // The kept copy is a snapshot of the origin, as large as it ...
    let all = lvs();
    let k = all
        .iter()
        .find(|l| l.name == kept)
        .unwrap_or_else(|| panic!("{kept} not in lvs: {all:?}"));
    assert_eq!(k.kind(), 's', "{k:?}");
    assert_eq!(k.origin, "data", "{k:?}");
    assert!(k.size >= lv("data").unwrap().size, "{k:?}");
    // ... the rollback's own snapshot was merged (consumed) ...
    assert!(
        all.iter().all(|l| l.name != format!("{set}-data")),
        "{all:?}"
    );
    assert_ne!(lv("data").unwrap().kind(), 'O', "no merge left pending");
    // ... the origin is back to the snapshot's content ...
    assert_eq!(digest("/srv/data"), before, "origin not rolled back");
    // ... and the kept copy holds what was written after the window.
    ok(&format!(
        "mkdir -p /mnt/lab-kept && mount -o ro,noload /dev/vg0/{kept} /mnt/lab-kept"
    ));
    assert_eq!(
        ok("cat /mnt/lab-kept/lab-test/after-window.txt"),
        "written after the window\n"
    );
    // (The upgrade's own change was undone by its own way back first, newest first.)
    assert_eq!(ok("cat /mnt/lab-kept/app/VERSION"), version);
    ok("umount /mnt/lab-kept");
    kept
}

/// Apply: snapshot lvm1's data as SET, the upgrade's change, the window's mark; the run id.
fn apply_snapshot_then_close_the_window(p: &Project, set: &str) -> String {
    let o = p.run_text(
        "apply",
        &format!(
            r#"- name: an upgrade of lvm1's data
  hosts: lvm1
  on_failure: unwind
  steps:
    - name: Snapshot the data volume
      snapshot:
        backend: lvm
        volumes: [{{ name: data, vg: vg0, lv: data, mount: /srv/data }}]
        name: {set}
        size: 100%ORIGIN
        state: present
    - name: The upgrade's own change
      copy: {{ content: "version=2\n", dest: /srv/data/app/VERSION }}
    - name: Window closes
      write_mark: {{ point: window_closed, paths: [/srv/data], exclude: [lost+found] }}
"#
        ),
    );
    assert!(o.status.success(), "apply:\n{}", text(&o));
    let id = p.only_run_id();
    assert_eq!(
        lv(&format!("{set}-data")).expect("the snapshot").kind(),
        's'
    );
    id
}

/// Issue 17, item 6: `cutover commit` of a run that failed is refused and leaves the snapshot;
/// `--force` names it, prints how full it is (lvs Data%: 4 MiB written to the origin, so about
/// 12.5% of a 32 MiB COW space) before deleting it, and journals that fill.
#[test]
fn commit_refuses_a_failed_run_and_forced_prints_the_snapshots_fill() {
    let _vm = take_vm();
    let _restore = Restore;
    common::require_lab();
    let free_before = vg().free_count;
    let set = format!("c{}", std::process::id());
    let p = Project::new();
    let o = p.run_text(
        "apply",
        &format!(
            r#"- hosts: lvm1
  steps:
    - name: Snapshot the scratch volume
      snapshot: {{ backend: lvm, volumes: [{{ name: scratch, vg: vg0, lv: scratch }}], name: {set}, size: 25%ORIGIN, state: present }}
    - name: Write 4 MiB to the origin, through its file system (the other tests mount it)
      shell: {{ cmd: "mkdir -p /mnt/lab-scratch && mount /dev/vg0/scratch /mnt/lab-scratch && dd if=/dev/urandom of=/mnt/lab-scratch/fill bs=1M count=4 oflag=direct status=none && rm /mnt/lab-scratch/fill && umount /mnt/lab-scratch" }}
    - name: Check the new release
      fail: {{ msg: the new release does not start }}
"#
        ),
    );
    assert_eq!(o.status.code(), Some(3), "apply:\n{}", text(&o));
    let id = p.only_run_id();
    let snap = format!("{set}-scratch");
    let inv = common::project::lab_inventory().display().to_string();
    let commit = |force: bool| {
        let mut args = vec!["commit", "-i", &inv, id.as_str(), "--output", "plain"];
        if force {
            args.push("--force");
        }
        p.run(&args)
    };

    let o = commit(false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "commit of run {id} refused: the run is failed at 20"
        )),
        "{out}"
    );
    assert_eq!(lv(&snap).expect("the snapshot is kept").kind(), 's');

    let o = commit(true);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("\n  lvm1: snapshot set {set} (lvm: scratch)")),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("lvm1:/dev/vg0/{snap} ")))
        .unwrap_or_else(|| panic!("no fill line:\n{out}"));
    let percent: f64 = line
        .trim_end_matches("% full")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    assert!((11.0..20.0).contains(&percent), "{line}");
    let removed = out.find("removed snapshot set").expect("removed");
    assert!(out.find(line).unwrap() < removed, "fill said first:\n{out}");
    assert!(lv(&snap).is_none(), "{:?}", lvs());
    let j = p.journal_text(&id);
    let result: Value = j
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "commit_result")
        .unwrap_or_else(|| panic!("{j}"));
    assert_eq!(result["fill"][0]["lv"], format!("/dev/vg0/{snap}"), "{j}");
    // Journaled as lvs said it (11.18), printed to one decimal (11.2).
    let journaled = result["fill"][0]["percent"].as_f64().expect("a percentage");
    assert!(
        (journaled - percent).abs() <= 0.05,
        "{percent} printed\n{j}"
    );
    assert!(j.contains("\"forced\":true"), "{j}");
    assert_eq!(
        vg().free_count,
        free_before,
        "every snapshot's extents back"
    );
}
