use super::args::{Layout, LayoutArgs};
use super::decide::{decide, fstab_line, Work};
use super::state::{parse_state, probe_script, HostState};
use super::*;
use crate::modules::args::parse;

use serde_json::json;

const MIB: u64 = 1 << 20;
const RUN: &str = "20261207-190000-ab12";

fn layout(volumes: serde_json::Value) -> Result<Layout> {
    let a: LayoutArgs = parse(
        "lvm_layout",
        &json!({"vg": "vg0", "volumes": volumes})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )?;
    Layout::of(&a)
}

/// The lab inventory's layout for lvm1 (inventory/lab.yml).
fn lab_layout() -> Layout {
    layout(json!([
        {"name": "app_install", "size": "32M", "mount": "/opt/wiki", "mount_options": "defaults,nofail"},
        {"name": "app_home", "size": "32M", "mount": "/var/lib/wiki", "mode": "0750", "mount_options": "defaults,nofail"},
        {"name": "mysql", "size": "32M", "mount": "/var/lib/mysql", "mount_options": "defaults,nofail"},
    ]))
    .expect("a valid layout")
}

/// The probe's output on lvm1 (lab/vm: bookworm, lvm2 2.03.16, util-linux 2.38), captured
/// 2026-12-07 with `lab/vm/vm.sh ssh` running `probe_script(&lab_layout())`: before site.yml's
/// layout (vg0 with `data` mounted at /srv/data and `scratch`; /opt/wiki, /var/lib/wiki,
/// /var/lib/mysql missing) …
const LVM1_BEFORE: &str = include_str!("testdata/lvm1_before.txt");
/// … and after it (the three LVs tagged, mounted, in fstab).
const LVM1_AFTER: &str = include_str!("testdata/lvm1_after.txt");

fn before() -> HostState {
    parse_state(LVM1_BEFORE, "vg0").expect("parse the captured probe output")
}

#[test]
fn the_probe_output_captured_on_lvm1_parses() {
    let st = before();
    assert_eq!(
        st.lvs
            .iter()
            .map(|l| l.lv_name.as_str())
            .collect::<Vec<_>>(),
        ["data", "scratch"]
    );
    assert_eq!(st.lv("data").map(|l| l.size()), Some(256 * MIB));
    let vg = st.vg.as_ref().expect("vg0");
    assert_eq!(vg.vg_extent_size, (4 * MIB).to_string());
    assert!(st.mounts.iter().any(|m| m.target == "/srv/data"
        && m.source == "/dev/mapper/vg0-data"
        && m.fstype == "ext4"));
    assert!(st.fstab.contains("/srv/data"), "{}", st.fstab);
    assert_eq!(st.paths["/opt/wiki"].missing, ["/opt/wiki"]);
    assert_eq!(st.paths["/var/lib/mysql"].missing, ["/var/lib/mysql"]);
    assert!(st.fs.is_empty(), "{:?}", st.fs);
    let after = parse_state(LVM1_AFTER, "vg0").expect("parse");
    assert_eq!(after.fs["app_home"], "ext4");
    assert_eq!(
        after.lv("mysql").map(|l| l.lv_tags.as_str()),
        Some("cutover-layout")
    );
    assert_eq!(
        after.paths["/var/lib/wiki"].attrs,
        Some(("root".into(), "root".into(), "0750".into()))
    );
}

#[test]
fn a_fresh_host_gets_every_volume_created_mounted_and_in_fstab() {
    let l = lab_layout();
    let w = decide(&l, &before()).expect("no refusal");
    assert!(w.changes());
    let creates: Vec<_> = w
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.create))
        .collect();
    assert_eq!(
        creates,
        [
            ("app_install", Some(32 * MIB)),
            ("app_home", Some(32 * MIB)),
            ("mysql", Some(32 * MIB))
        ]
    );
    assert!(w.volumes.iter().all(|v| v.mkfs && v.mount_it));
    assert_eq!(w.volumes[0].dirs, ["/opt/wiki"]);
    assert!(w.fstab_after.starts_with(&w.fstab_before));
    assert!(w.fstab_after.ends_with(
        "/dev/vg0/app_install /opt/wiki ext4 defaults,nofail 0 2\n\
         /dev/vg0/app_home /var/lib/wiki ext4 defaults,nofail 0 2\n\
         /dev/vg0/mysql /var/lib/mysql ext4 defaults,nofail 0 2\n"
    ));
    let d = details(&l, &w);
    for want in [
        "+ lvcreate vg0/mysql 33554432 bytes (32.0 MiB) (tag cutover-layout)\n+ mkfs.ext4 /dev/vg0/mysql\n+ mkdir /var/lib/mysql\n+ mount /dev/vg0/mysql on /var/lib/mysql (defaults,nofail)\n",
        "~ /var/lib/wiki mode 0750",
        "+/dev/vg0/app_install /opt/wiki ext4 defaults,nofail 0 2",
    ] {
        assert!(d.contains(want), "{want}\n{d}");
    }
    // The way back removes the three, newest first, with the directories made for them.
    let Some(UndoAction::RemoveLayout(u)) = undo_of(&l, &w, RUN) else {
        panic!("no way back");
    };
    assert!(u
        .volumes
        .iter()
        .all(|v| v.remove_lv && v.unmount && v.fstab_line));
    let script = u.script();
    let mysql = script.find("m=/var/lib/mysql").expect("mysql undone");
    let opt = script.find("m=/opt/wiki").expect("app_install undone");
    assert!(mysql < opt, "{script}");
    assert!(script.contains("rmdir -- /opt/wiki"), "{script}");
    assert!(script.contains("lvremove -y -- vg0/app_home"), "{script}");
    let backup = u.fstab_backup.as_deref().unwrap_or_default();
    assert!(
        backup.starts_with("/etc/fstab.cutover-20261207-190000-ab12-"),
        "{backup}"
    );
    assert!(
        script.ends_with(&format!("rm -f -- {}\n", crate::shell::quote(backup))),
        "{script}"
    );
}

/// Sizes are whole extents (as lvcreate rounds them); a directory two mount points share is
/// made, and removed, once.
#[test]
fn sizes_round_up_to_extents_and_shared_directories_are_made_once() {
    let l = layout(json!([
        {"name": "a", "size": "30M", "mount": "/mnt/t/a"},
        {"name": "b", "size": "1", "mount": "/mnt/t/b"},
    ]))
    .unwrap();
    let mut st = before();
    for m in ["/mnt/t/a", "/mnt/t/b"] {
        st.paths.insert(
            m.into(),
            state::MountPath {
                missing: vec![m.into(), "/mnt/t".into()],
                ..Default::default()
            },
        );
    }
    let w = decide(&l, &st).unwrap();
    assert_eq!(w.volumes[0].create, Some(32 * MIB));
    assert_eq!(w.volumes[1].create, Some(4 * MIB));
    assert_eq!(w.volumes[0].dirs, ["/mnt/t/a", "/mnt/t"]);
    assert_eq!(w.volumes[1].dirs, ["/mnt/t/b"]);
}

#[test]
fn the_layout_in_place_is_no_change() {
    let st = parse_state(LVM1_AFTER, "vg0").expect("parse");
    let w = decide(&lab_layout(), &st).expect("no refusal");
    assert!(!w.changes(), "{w:#?}");
    assert_eq!(w.fstab_after, w.fstab_before);
}

fn refusal(l: &Layout, st: &HostState) -> String {
    match decide(l, st) {
        Ok(w) => panic!("not refused: {w:#?}"),
        Err(why) => why.join("\n"),
    }
}

#[test]
fn an_lv_cutover_did_not_create_is_refused_and_named() {
    let mut st = before();
    let mut lv = st.lv("data").cloned().expect("data");
    lv.lv_name = "mysql".into();
    st.lvs.push(lv);
    let why = refusal(&lab_layout(), &st);
    assert!(
        why.contains("volume `mysql` (vg0/mysql at /var/lib/mysql): the LV exists and was not created by cutover (it has no tag `cutover-layout`): it is left untouched"),
        "{why}"
    );
}

fn after_with(f: impl Fn(&mut HostState)) -> HostState {
    let mut st = parse_state(LVM1_AFTER, "vg0").expect("parse");
    f(&mut st);
    st
}

#[test]
fn a_shrink_is_refused_a_grow_is_planned_and_irreversible() {
    let small = layout(json!([
        {"name": "app_install", "size": "16M", "mount": "/opt/wiki", "mount_options": "defaults,nofail"},
    ]))
    .unwrap();
    let why = refusal(&small, &after_with(|_| {}));
    assert!(
        why.contains("it is 33554432 bytes (32.0 MiB), the layout asks for 16777216 bytes (16.0 MiB): shrinking a volume that holds data is refused"),
        "{why}"
    );
    let big = layout(json!([
        {"name": "app_install", "size": "48M", "mount": "/opt/wiki", "mount_options": "defaults,nofail"},
    ]))
    .unwrap();
    let w = decide(&big, &after_with(|_| {})).expect("a grow");
    assert_eq!(w.volumes[0].grow, Some((32 * MIB, 48 * MIB)));
    assert!(!w.volumes[0].mount_it && w.volumes[0].create.is_none());
    // A grow alone has no way back.
    assert_eq!(undo_of(&big, &w, RUN), None);
    assert!(summary(&big, &w).contains(
        "grow app_install 33554432 bytes (32.0 MiB) → 50331648 bytes (48.0 MiB) (irreversible)"
    ));
}

#[test]
fn another_file_system_on_a_volume_is_refused() {
    let xfs =
        layout(json!([{"name": "app_install", "size": "300M", "fs": "xfs", "mount": "/opt/wiki", "mount_options": "defaults,nofail"}])).unwrap();
    let why = refusal(&xfs, &after_with(|_| {}));
    assert!(
        why.contains("it holds a ext4 file system, the layout asks for xfs: reformatting a volume that holds data is refused"),
        "{why}"
    );
    // A tagged LV left without a file system (a run cut off after lvcreate) gets one.
    let w = decide(
        &lab_layout(),
        &after_with(|st| {
            st.fs.insert("app_install".into(), String::new());
        }),
    )
    .unwrap();
    assert!(w.volumes[0].mkfs && w.volumes[0].create.is_none());
}

#[test]
fn a_mount_point_taken_or_with_files_is_refused() {
    let mut st = before();
    st.mounts.push(state::Mounted {
        target: "/opt/wiki".into(),
        source: "/dev/vdc1".into(),
        fstype: "ext4".into(),
    });
    let why = refusal(&lab_layout(), &st);
    assert!(
        why.contains("/opt/wiki is already mounted from /dev/vdc1 (ext4)"),
        "{why}"
    );
    let mut st = before();
    st.paths.get_mut("/opt/wiki").unwrap().has_files = true;
    let why = refusal(&lab_layout(), &st);
    assert!(
        why.contains("/opt/wiki has files in it that mounting the volume over it would hide"),
        "{why}"
    );
    let mut st = before();
    st.fstab.push_str("UUID=1234 /opt/wiki ext4 defaults 0 2\n");
    let why = refusal(&lab_layout(), &st);
    assert!(why.contains("mounts UUID=1234 at /opt/wiki"), "{why}");
}

#[test]
fn not_enough_free_space_is_refused_with_the_numbers() {
    let l = layout(json!([
        {"name": "app_install", "size": "1G", "mount": "/opt/wiki"},
        {"name": "big", "size": "1G", "mount": "/srv/big"},
    ]))
    .unwrap();
    let st = before();
    let free: u64 = st.vg.as_ref().unwrap().vg_free.parse().unwrap();
    let why = refusal(&l, &st);
    assert!(
        why.contains(&format!(
            "volume group vg0 has {} free; the layout needs 2147483648 bytes (2.00 GiB) (app_install 1073741824 bytes (1.00 GiB), big 1073741824 bytes (1.00 GiB))",
            human(free)
        )),
        "{why}"
    );
}

#[test]
fn an_fstab_line_is_added_to_a_file_without_a_final_newline() {
    assert_eq!(decide::fstab_with("a b c", &["x".into()]), "a b c\nx\n");
    assert_eq!(decide::fstab_with("", &["x".into()]), "x\n");
    assert_eq!(decide::fstab_with("a\n", &[]), "a\n");
    let l = lab_layout();
    assert_eq!(
        fstab_line("vg0", &l.volumes[1]),
        "/dev/vg0/app_home /var/lib/wiki ext4 defaults,nofail 0 2"
    );
    let x = layout(json!([{"name": "x", "size": "1G", "fs": "xfs", "mount": "/x"}])).unwrap();
    assert_eq!(
        fstab_line("vg0", &x.volumes[0]),
        "/dev/vg0/x /x xfs defaults 0 0"
    );
}

#[test]
fn arguments_are_checked_at_run_time_too() {
    let err = |v: serde_json::Value| {
        layout(v)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    assert!(
        err(json!([{"name": "a", "size": "50%FREE", "mount": "/a"}])).contains(
            "volume 1 of `volumes`, `size`: size `50%FREE`: a layout takes absolute sizes"
        )
    );
    assert!(err(json!([{"name": "a", "size": "1G", "mount": "/"}]))
        .contains("`mount`: the root file system `/` is the installed system's"));
    assert!(err(json!([{"name": "a", "size": "1G", "mount": "/a b"}]))
        .contains("which an fstab line cannot hold"));
    assert!(err(json!([{"name": "-a", "size": "1G", "mount": "/a"}]))
        .contains("`name`: LV name `-a` must be"));
    assert!(
        err(json!([{"name": "a", "size": "1G", "mount": "/a", "size2": 1}]))
            .contains("unknown field `size2`")
    );
    assert!(err(json!([{"name": "a", "size": "0M", "mount": "/a"}])).contains("size `0M` is zero"));
    assert!(err(json!([{"name": "a", "size": "1G", "mount": "/a", "mode": "755"}])).is_empty());
    assert!(
        err(json!([{"name": "a", "size": "1G", "mount": "/a", "mode": "rwx"}]))
            .contains("not an octal mode")
    );
    assert!(err(json!([])).contains("the list is empty"));
    assert!(
        err(json!([{"name": "a", "size": "299M", "fs": "xfs", "mount": "/a"}]))
            .contains("`size`: size `299M` is too small for xfs: mkfs.xfs makes 300M or more")
    );
    assert!(err(json!([{"name": "a", "size": "300M", "fs": "xfs", "mount": "/a"}])).is_empty());
    // From a variable: the rendered JSON.
    let l = layout(json!(
        "[{\"name\": \"a\", \"size\": \"8M\", \"mount\": \"/a\"}]"
    ))
    .unwrap();
    assert_eq!(l.volumes[0].bytes(), 8 * MIB);
    assert_eq!(l.tag, "cutover-layout");
}

#[test]
fn the_probe_reads_every_volume_in_one_script() {
    let s = probe_script(&lab_layout());
    assert!(s.contains("lvs --reportformat json"));
    assert!(s.contains("findmnt -J -l -o TARGET,SOURCE,FSTYPE"));
    assert!(s.contains("d=/dev/vg0/app_home;"));
    assert!(s.contains("m=/var/lib/wiki;"));
}

#[test]
fn the_work_survives_the_journal() {
    let w = decide(&lab_layout(), &before()).unwrap();
    let back: Work = serde_json::from_value(json!(w)).unwrap();
    assert_eq!(back, w);
    let u = undo_of(&lab_layout(), &w, RUN).unwrap();
    let j = serde_json::to_value(&u).unwrap();
    assert_eq!(j["undo"], "remove_layout");
    assert_eq!(serde_json::from_value::<UndoAction>(j).unwrap(), u);
}
