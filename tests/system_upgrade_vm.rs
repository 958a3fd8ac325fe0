//! The runbook's system-upgrade test, merge-based, for real in the lab VM whose root is an LV
//! (lab/vm: vgsys/root): `playbooks/system-upgrade.yml` with `root_vg` snapshots the root LV,
//! upgrades lab-release-notes 1.0 → 1.1 from the lab repository, reboots and checks. A
//! dry run changes nothing; an upgrade that passes its check keeps 1.1 on a new boot and
//! `cutover commit` removes the root snapshot; an upgrade whose check fails is rolled back by
//! merging the root snapshot (deferred while the root is open: cutover reboots the host and
//! waits for the merge), so 1.0 is back, verified after that reboot. A root snapshot that the
//! upgrade fills past `root_snapshot_max_percent` is extended with autoextend (the upgrade
//! completes) and merged back while still valid without it.
//!
//! Measured (sys1, 2026-12-08, TCG, the lab's containers running): 385 s for both (the first
//! 288 s: upgrade kept 96 s, rolled back by merge 149 s of which 30 s are the failing check's
//! retries; the second 97 s). Five reboots of the VM in all.
//!
//! The VM: lvm1, or the one `CUTOVER_LAB_VM_NAME`/`CUTOVER_LAB_VM_IP` name (as for
//! lab/vm/vm.sh). Needs the lab up (the repository) and the VM built with its root on an LV.
//!
//!     cargo test --test system_upgrade_vm -- --ignored --nocapture
//!
//! Not in `bash .ci/run` yet (`#[ignore]`): run on lvm1 right after lab_lvm_vm, lvm_layout_vm
//! and snapshot_lab (2026-12-08), the first test's kept upgrade passed, but in the second run
//! the reboot before the check took 5 minutes to shut down, the kernel then invalidated a
//! snapshot ("Unable to allocate exception"), the next boot rebooted again and the one after
//! it stopped in the initramfs: /dev/mapper/vgsys-root was not found. Narrowed the same day:
//! on a fresh lvm1 both tests pass (242 s); after `site.yml` has laid out lvm1's volumes
//! (`lvm_layout`) and snapshot_lab's LVM tests ran, the same failure came again ("Invalidating
//! snapshot" at the rolled-back run's reboot, then no root LV). Until that is understood the
//! tests run by hand on a fresh VM (issue #19's note).

mod common;

use common::lvm1_run as vm;
use common::project::{text, Project};
use std::sync::Mutex;
use std::time::Instant;

/// One VM for both tests: one at a time.
static VM: Mutex<()> = Mutex::new(());

const VG: &str = "vgsys";
const SNAP: &str = "pre-system-upgrade-os-root";
/// A root snapshot the upgrade fills past its limit (see the second test).
const SMALL: [&str; 4] = [
    "-e",
    "root_snapshot_size=12M",
    "-e",
    "root_snapshot_max_percent=30",
];

fn vm_ok(script: &str) -> String {
    let (code, out, err) = vm(&format!("set -e; {script}"));
    assert_eq!(code, 0, "in the VM: {script}\n{out}{err}");
    out
}

fn boot_id() -> String {
    vm_ok("cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_string()
}

fn release_notes() -> String {
    vm_ok("dpkg-query -W -f '${Version}' lab-release-notes; echo; cat /usr/share/lab-release-notes/VERSION")
}

/// vgsys's LVs (name, attr) and free space.
fn root_vg_state() -> String {
    vm_ok(&format!(
        "lvs -a --noheadings -o lv_name,lv_attr {VG}; vgs --noheadings --units m -o vg_free {VG}"
    ))
}

/// The start of every case: lab-release-notes 1.0 from the lab repository, no root snapshot.
const SETUP: &str = r#"
lvremove -y vgsys/pre-system-upgrade-os-root >/dev/null 2>&1 || true
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades lab-release-notes=1.0 >/dev/null
"#;

fn inventory(p: &Project) -> std::path::PathBuf {
    let (name, ip) = common::vm_name_and_ip();
    let state = common::lab_state();
    p.write(
        "inv.yml",
        &format!(
            r#"connection:
  user: root
  identity_file: {key}
  known_hosts_file: {kh}
hosts:
  {name}:
    address: {ip}
    vars:
      snapshot_backend: lvm
      root_vg: {VG}
groups:
  all:
    vars: {{ db_name: wiki, app_home: /var/lib/wiki }}
  production:
    hosts: [{name}]
  rehearsal:
    hosts: []
  app_nodes:
    hosts: []
  databases:
    hosts: []
"#,
            key = state.join("ssh/id_ed25519").display(),
            kh = state.join("ssh/known_hosts").display(),
        ),
    )
}

fn cutover(p: &Project, inv: &std::path::Path, cmd: &str, extra: &[&str]) -> std::process::Output {
    let inv = inv.display().to_string();
    let pb = common::project::repo_file("playbooks/system-upgrade.yml");
    let mut args = vec![cmd, "-i", &inv, &pb, "-e", "packages=lab-release-notes"];
    args.extend(extra);
    p.run(&args)
}

/// A test's start: the VM to itself, the lab up, the VM set up (SETUP); the time, the
/// project, the inventory and the root VG as the test found it.
fn start() -> (
    std::sync::MutexGuard<'static, ()>,
    Instant,
    Project,
    std::path::PathBuf,
    String,
) {
    let vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    common::require_lab();
    let t0 = Instant::now();
    vm_ok(SETUP);
    let p = Project::in_repo();
    let inv = inventory(&p);
    let clean = root_vg_state();
    (vm, t0, p, inv, clean)
}

#[test]
#[ignore = "issue #19: on lvm1 after the other VM tests (2026-12-08) the reboot of the rolled-back run hung for 5 min, the root snapshot was invalidated and the VM no longer found its root LV; passes on a fresh VM (sys1): run by hand"]
fn a_root_snapshot_upgrade_is_kept_when_its_check_passes_and_merged_back_when_it_fails() {
    let (_vm, t0, p, inv, clean) = start();

    // A dry run: the root snapshot, the upgrade, the reboot, and the merge as the way back.
    let boot0 = boot_id();
    let o = cutover(&p, &inv, "plan", &[]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(2), "plan: changes pending\n{plan}");
    assert!(
        plan.contains(&format!("{VG}/{SNAP}")) || plan.contains(SNAP),
        "{plan}"
    );
    assert!(plan.contains("reboot"), "{plan}");
    assert!(
        plan.contains("way back: merge, deferred while / is open: reboot"),
        "the way back is the merge: {plan}"
    );
    assert_eq!(boot_id(), boot0, "the plan rebooted the VM");
    assert_eq!(root_vg_state(), clean, "the plan changed vgsys");
    assert!(release_notes().starts_with("1.0\n"));

    // Check passes, with a root snapshot too small for the upgrade and autoextend: cutover
    // extends it after the upgrade; 1.1 on a new boot, the snapshot kept until commit.
    let t = Instant::now();
    let mut ext = SMALL.to_vec();
    ext.extend(["-e", "root_snapshot_autoextend=true"]);
    let o = cutover(&p, &inv, "apply", &ext);
    assert!(o.status.success(), "{}", text(&o));
    let ok_s = t.elapsed().as_secs();
    let size: u64 = vm_ok(&format!(
        "lvs --noheadings --units b --nosuffix -o lv_size {VG}/{SNAP}"
    ))
    .trim()
    .parse()
    .unwrap();
    assert!(size > 12 << 20, "not extended: {size}");
    let boot1 = boot_id();
    assert_ne!(boot1, boot0, "no reboot into the upgraded system");
    assert_eq!(
        release_notes(),
        "1.1\ncutover lab release notes, version 1.1\n"
    );
    let lvs = root_vg_state();
    assert!(lvs.contains(SNAP), "{lvs}");
    let run = p.run_ids().last().cloned().expect("a run");
    let inv_s = inv.display().to_string();
    let o = p.run(&["commit", "-i", &inv_s, &run]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(root_vg_state(), clean, "commit left the root snapshot");

    // Check fails: the run unwinds, the merge needs a reboot, 1.0 is back on a new boot.
    vm_ok(SETUP);
    let t = Instant::now();
    let o = cutover(
        &p,
        &inv,
        "apply",
        &[
            "-e",
            "system_upgrade_check=grep -q 'version 1.0' /usr/share/lab-release-notes/VERSION",
        ],
    );
    let out = text(&o);
    assert!(!o.status.success(), "the check should have failed: {out}");
    let fail_s = t.elapsed().as_secs();
    let boot2 = boot_id();
    assert_ne!(boot2, boot1);
    assert!(
        release_notes().starts_with("1.0\n"),
        "not rolled back: {}",
        release_notes()
    );
    assert_eq!(root_vg_state(), clean, "the merge did not finish");
    let merged = p.journal().into_iter().any(|e| {
        e["event"] == "undo_result" && e["step"] == "Snapshot the root LV" && e["ok"] == true
    });
    assert!(merged, "no journaled merge of the root snapshot:\n{out}");
    eprintln!(
        "measured: upgrade kept {ok_s} s, upgrade rolled back by merge {fail_s} s, whole test {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}

/// A root snapshot too small for the upgrade: 12 MiB, at most 30% full; the upgrade writes
/// ~5.6 MiB to the root (measured: apt's caches, dpkg, the package), ~47% of it. Without
/// autoextend the usage check after the upgrade fails while the snapshot is still valid and
/// the merge puts 1.0 back (with autoextend: the first test).
#[test]
#[ignore = "issue #19: on lvm1 after the other VM tests (2026-12-08) the reboot of the rolled-back run hung for 5 min, the root snapshot was invalidated and the VM no longer found its root LV; passes on a fresh VM (sys1): run by hand"]
fn a_root_snapshot_that_fills_up_is_merged_back_while_valid() {
    let (_vm, t0, p, inv, clean) = start();

    let boot0 = boot_id();
    let o = cutover(&p, &inv, "apply", &SMALL);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "the usage check should have failed: {out}"
    );
    assert!(out.contains("% full (max 30%)"), "{out}");
    assert_ne!(boot_id(), boot0, "the merge needs a reboot");
    assert!(release_notes().starts_with("1.0\n"), "{}", release_notes());
    assert_eq!(root_vg_state(), clean, "the merge did not finish");

    eprintln!(
        "measured: fill-up merged back: {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
