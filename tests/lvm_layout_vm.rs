//! `lvm_layout` for real, in the lab's LVM VM `lvm1` (lab/vm; the host kernel has no
//! device-mapper), through cutover itself and the lab inventory: plan changes nothing, apply
//! creates tagged LVs with file systems, mounts and fstab lines, a second apply changes
//! nothing, a grow keeps the data, a shrink and an LV cutover did not create are refused before
//! anything changes, a failure after the layout step unwinds it, `cutover rollback` removes
//! what a finished run created, an xfs volume is made and grown online, and a plan after a step
//! that edits fstab says the layout is unknown (not "no change").
//!
//! Takes about 2 min under TCG (measured 109 s; plus the wait for the lab lock).
//!
//! Needs the lab up (`lab/lab.sh up`, which starts the VM). Its volumes are `lt_*` under
//! /mnt/layout-test (not the inventory's own layout, which site.yml keeps); the test removes
//! them before and after (also when it fails), so it leaves the VM as it found it.
//!
//!     cargo test --test lvm_layout_vm -- --nocapture

mod common;

use common::lvm1_run as vm;
use common::project::{text, Project};
use std::time::Instant;

fn vm_ok(script: &str) -> String {
    let (code, out, err) = vm(&format!("set -euo pipefail; {script}"));
    assert_eq!(code, 0, "in lvm1: {script}\n{out}{err}");
    out
}

/// Remove whatever this test made: mounts under /mnt/layout-test, `lt_*` fstab lines and LVs.
const RESTORE: &str = r#"
for m in $(findmnt -rn -o TARGET | grep '^/mnt/layout-test' | sort -r); do umount "$m"; done
if grep -q '^/dev/vg0/lt_' /etc/fstab; then
    grep -v '^/dev/vg0/lt_' /etc/fstab > /etc/fstab.lt && cat /etc/fstab.lt > /etc/fstab && rm /etc/fstab.lt
fi
for lv in $(lvs --noheadings -o lv_name vg0 | tr -d ' ' | grep '^lt_'); do lvremove -y "vg0/$lv" >/dev/null; done
rm -rf /mnt/layout-test
"#;

/// The fstab backups cutover keeps next to it (`/etc/fstab.cutover-RUN-SHA~`).
fn fstab_backups() -> String {
    vm_ok("ls /etc/fstab.cutover-*~ 2>/dev/null || true")
}

/// Puts lvm1 back when the test ends, also when it panics: the test's volumes, and the fstab
/// backups its runs left (not the ones that were there before, `keep`).
struct Restore {
    keep: String,
}
impl Drop for Restore {
    fn drop(&mut self) {
        let (code, out, err) = vm(RESTORE);
        if code != 0 {
            eprintln!("WARNING: restoring lvm1 failed: {out}{err}");
        }
        let keep: Vec<&str> = self.keep.lines().collect();
        for b in fstab_backups().lines().filter(|b| !keep.contains(b)) {
            vm(&format!("rm -f -- '{b}'"));
        }
    }
}

/// What the test compares before and after: vg0's LVs (name, size, tags) and fstab.
fn lvm_and_fstab() -> String {
    vm_ok("lvs --noheadings --units b -o lv_name,lv_size,lv_tags vg0; echo ---; cat /etc/fstab")
}

fn layout_playbook(volumes: &str, after: &str) -> String {
    format!(
        r#"- name: layout test
  hosts: lvm1
  on_failure: unwind
  steps:
    - name: Layout
      lvm_layout:
        vg: vg0
        volumes:
{volumes}
{after}"#
    )
}

const A16: &str = "          - { name: lt_a, size: 16M, mount: /mnt/layout-test/a }";
const B: &str =
    "          - { name: lt_b, size: 8M, mount: /mnt/layout-test/b, mode: \"0750\", mount_options: \"noatime,nodev\" }";

fn tag_of(lv: &str) -> String {
    vm_ok(&format!("lvs --noheadings -o lv_tags vg0/{lv}"))
        .trim()
        .to_string()
}

fn size_of(lv: &str) -> u64 {
    vm_ok(&format!(
        "lvs --noheadings --units b --nosuffix -o lv_size vg0/{lv}"
    ))
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn a_layout_is_planned_applied_kept_grown_refused_and_unwound_in_the_vm() {
    common::require_lab();
    let t0 = Instant::now();
    vm_ok(RESTORE);
    let _restore = Restore {
        keep: fstab_backups(),
    };
    let initial = lvm_and_fstab();
    let p = Project::new();
    let two = layout_playbook(&format!("{A16}\n{B}"), "");
    plan_changes_nothing_then_apply_lays_out(&p, &two, &initial);
    again_no_change_then_grow_keeps_the_data(&p, &two);
    shrink_and_untagged_lv_are_refused_untouched(&p, &two);
    a_failure_after_the_layout_unwinds_it_and_rollback_removes_it(&p);
    xfs_is_made_and_grown_online(&p);
    vm_ok(RESTORE);
    assert_eq!(
        lvm_and_fstab(),
        initial,
        "the VM is not as the test found it"
    );
    eprintln!(
        "measured: the lvm_layout VM test took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Plan: every action and the fstab diff, nothing changed; apply: tagged LVs, ext4, mounted
/// with the options, fstab lines, the root's mode.
fn plan_changes_nothing_then_apply_lays_out(p: &Project, two: &str, initial: &str) {
    let o = p.run_text("plan", two);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}");
    for want in [
        "lay out vg0: create lt_a (16777216 bytes (16.0 MiB), ext4, /mnt/layout-test/a); create lt_b",
        "+ lvcreate vg0/lt_a 16777216 bytes (16.0 MiB) (tag cutover-layout)",
        "+ mkdir /mnt/layout-test",
        "+ mount /dev/vg0/lt_b on /mnt/layout-test/b (noatime,nodev)",
        "+/dev/vg0/lt_a /mnt/layout-test/a ext4 defaults 0 2",
        "+/dev/vg0/lt_b /mnt/layout-test/b ext4 noatime,nodev 0 2",
    ] {
        assert!(plan.contains(want), "plan lacks `{want}`:\n{plan}");
    }
    assert_eq!(lvm_and_fstab(), initial, "plan changed the VM");
    // After a step that edits fstab, the plan cannot know what the layout will find there.
    let edited_first = two.replace(
        "  steps:\n",
        "  steps:\n    - lineinfile: { path: /etc/fstab, line: \"# a comment\" }\n",
    );
    let plan = text(&p.run_text("plan", &edited_first));
    assert!(
        plan.contains("1 to change, 1 unknown")
            && plan.contains("changes /etc/fstab or a mount point of the layout first"),
        "{plan}"
    );
    assert_eq!(lvm_and_fstab(), initial, "plan changed the VM");

    let out = p.apply_text_ok(two);
    assert_eq!(tag_of("lt_a"), "cutover-layout", "{out}");
    assert_eq!(tag_of("lt_b"), "cutover-layout");
    assert_eq!(
        vm_ok("findmnt -rn -o SOURCE,FSTYPE /mnt/layout-test/a").trim(),
        "/dev/mapper/vg0-lt_a ext4"
    );
    let opts = vm_ok("findmnt -rn -o OPTIONS /mnt/layout-test/b");
    assert!(opts.contains("noatime") && opts.contains("nodev"), "{opts}");
    assert_eq!(vm_ok("stat -c %a /mnt/layout-test/b").trim(), "750");
    let fstab = vm_ok("cat /etc/fstab");
    assert!(
        fstab.contains("/dev/vg0/lt_a /mnt/layout-test/a ext4 defaults 0 2\n")
            && fstab.contains("/dev/vg0/lt_b /mnt/layout-test/b ext4 noatime,nodev 0 2\n"),
        "{fstab}"
    );
    vm_ok("echo kept > /mnt/layout-test/a/data.txt && sync");
}

/// A second apply changes nothing; a grow of lt_a keeps its data, and its plan says there is
/// no way back.
fn again_no_change_then_grow_keeps_the_data(p: &Project, two: &str) {
    let out = p.apply_text_ok(two);
    assert!(
        out.contains("changed=0"),
        "second apply changed something:\n{out}"
    );
    let grown = layout_playbook(&format!("{}\n{B}", A16.replace("16M", "24M")), "");
    let plan = text(&p.run_text("plan", &grown));
    assert!(
        plan.contains(
            "grow lt_a 16777216 bytes (16.0 MiB) → 25165824 bytes (24.0 MiB) (irreversible)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("1 IRREVERSIBLE step") && plan.contains("(irreversible) [irreversible]"),
        "{plan}"
    );
    p.apply_text_ok(&grown);
    assert_eq!(size_of("lt_a"), 24 << 20);
    assert_eq!(vm_ok("cat /mnt/layout-test/a/data.txt").trim(), "kept");
    let fs_mib: u64 = vm_ok("df -B1M --output=size /mnt/layout-test/a | tail -1")
        .trim()
        .parse()
        .unwrap();
    assert!(fs_mib > 16, "the file system did not grow: {fs_mib} MiB");
}

/// A shrink, and an LV cutover did not create (no tag): refused, nothing changed.
fn shrink_and_untagged_lv_are_refused_untouched(p: &Project, two: &str) {
    let before = lvm_and_fstab();
    let o = p.apply_text(two);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("volume `lt_a` (vg0/lt_a at /mnt/layout-test/a): it is 25165824 bytes (24.0 MiB), the layout asks for 16777216 bytes (16.0 MiB): shrinking a volume that holds data is refused"),
        "{out}"
    );
    assert_eq!(lvm_and_fstab(), before, "a refused shrink changed the VM");

    vm_ok("lvcreate -y -n lt_c -L 8M vg0 >/dev/null");
    let before = lvm_and_fstab();
    let c = "          - { name: lt_c, size: 8M, mount: /mnt/layout-test/c }";
    let o = p.apply_text(&layout_playbook(c, ""));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("volume `lt_c` (vg0/lt_c at /mnt/layout-test/c): the LV exists and was not created by cutover (it has no tag `cutover-layout`): it is left untouched"),
        "{out}"
    );
    assert_eq!(lvm_and_fstab(), before, "an untagged LV was touched");
    assert_eq!(vm("mountpoint -q /mnt/layout-test/c").0, 1);
    vm_ok("lvremove -y vg0/lt_c >/dev/null");
}

/// A failure after the layout step unwinds it (lt_d gone, fstab as before, lt_a kept);
/// `cutover rollback` of a finished run removes what it created.
fn a_failure_after_the_layout_unwinds_it_and_rollback_removes_it(p: &Project) {
    let before = lvm_and_fstab();
    let backups = fstab_backups();
    let d = "          - { name: lt_d, size: 8M, mount: /mnt/layout-test/d/deep }";
    let failing = layout_playbook(
        d,
        "    - name: The next step fails\n      assert: { that: [\"false\"] }\n",
    );
    let o = p.apply_text(&failing);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert_eq!(lvm_and_fstab(), before, "the unwind left something:\n{out}");
    assert_eq!(vm("test -e /mnt/layout-test/d").0, 1, "mount point left");
    assert_eq!(fstab_backups(), backups, "the unwind left its fstab backup");
    assert_eq!(vm_ok("cat /mnt/layout-test/a/data.txt").trim(), "kept");

    let p2 = Project::new();
    let e = "          - { name: lt_e, size: 8M, mount: /mnt/layout-test/e }";
    p2.apply_text_ok(&layout_playbook(e, ""));
    assert_eq!(tag_of("lt_e"), "cutover-layout");
    let id = p2.only_run_id();
    let inv = common::project::lab_inventory().display().to_string();
    let o = p2.run(&["rollback", "-i", &inv, &id, "--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(lvm_and_fstab(), before, "rollback left lt_e:\n{}", text(&o));
    assert_eq!(
        fstab_backups(),
        backups,
        "the rollback left its fstab backup"
    );
}

/// An xfs volume (300M, mkfs.xfs's least) is made, then grown mounted (`xfs_growfs`), its
/// data kept.
fn xfs_is_made_and_grown_online(p: &Project) {
    let x = |size: &str| {
        layout_playbook(
            &format!(
                "          - {{ name: lt_x, size: {size}, fs: xfs, mount: /mnt/layout-test/x }}"
            ),
            "",
        )
    };
    p.apply_text_ok(&x("300M"));
    assert_eq!(
        vm_ok("findmnt -rn -o FSTYPE /mnt/layout-test/x").trim(),
        "xfs"
    );
    vm_ok("echo kept > /mnt/layout-test/x/data.txt && sync");
    let size = || -> u64 {
        vm_ok("df -B1M --output=size /mnt/layout-test/x | tail -1")
            .trim()
            .parse()
            .unwrap()
    };
    let before = size();
    p.apply_text_ok(&x("320M"));
    assert_eq!(size_of("lt_x"), 320 << 20);
    assert!(size() > before, "xfs did not grow: {} MiB", size());
    assert_eq!(vm_ok("cat /mnt/layout-test/x/data.txt").trim(), "kept");
}
