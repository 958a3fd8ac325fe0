use super::args::*;
use super::lvm::*;
use crate::modules::args::parse;

use serde_json::json;

#[test]
fn sizes() {
    assert_eq!(parse_size("20%ORIGIN").unwrap(), Size::PercentOrigin(20.0));
    assert_eq!(parse_size("2G").unwrap(), Size::Bytes(2 << 30));
    assert_eq!(parse_size("8M").unwrap(), Size::Bytes(8 << 20));
    assert_eq!(parse_size("512").unwrap(), Size::Bytes(512 << 20));
    assert_eq!(parse_size("1.5g").unwrap(), Size::Bytes(3 << 29));
    assert!(parse_size("0%ORIGIN").is_err());
    assert!(parse_size("3x").is_err());
    let mib = 1u64 << 20;
    // 20% of 256 MiB = 51.2 MiB → 13 extents of 4 MiB.
    assert_eq!(
        cow_need(Size::PercentOrigin(20.0), 256 * mib, 4 * mib),
        52 * mib
    );
    // Larger than the origin: capped like lvcreate does.
    assert_eq!(
        cow_need(Size::Bytes(2 << 30), 128 * mib, 4 * mib),
        136 * mib
    );
}

/// Issue 21, item 2: a set another run made is refused, naming that run; this run's own
/// set (a resume) is recognised by the run recorded with it.
#[test]
fn snapshots_record_the_run_that_made_them() {
    assert_eq!(
        run_tag("20261207-061518-ab12"),
        "cutover-run:20261207-061518-ab12"
    );
    assert_eq!(run_tag("a b$(x)"), "cutover-run:abx");
    assert_eq!(
        run_of_tags("backup,cutover-run:20261207-061518-ab12"),
        Some("20261207-061518-ab12".into())
    );
    assert_eq!(run_of_tags(""), None);
    let lvs =
        r#"{"report":[{"lv":[{"lv_name":"pre-db","vg_name":"vg0","lv_tags":"cutover-run:R1"}]}]}"#;
    let lv = &parse_report(lvs).unwrap().report[0].lv[0];
    assert_eq!(run_of_tags(&lv.lv_tags), Some("R1".into()));

    let a = Args::of(&given(
        json!({ "backend": "btrfs", "name": "pre-rolling", "volumes": [{ "name": "home" }] }),
    ))
    .unwrap();
    assert!(!a.replace_existing);
    let e = made_by_another_run(
        &a,
        "app1",
        "/srv/vol/.snapshots/pre-rolling-home",
        Some("R1"),
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("snapshot set `pre-rolling` exists already on app1: /srv/vol/.snapshots/pre-rolling-home was made by run R1.")
            && msg.contains("replace_existing: true"),
        "{msg}"
    );
    let e = made_by_another_run(&a, "app1", "x", None);
    assert!(e.to_string().contains("made by no recorded run"), "{e}");
    assert_eq!(
        replaced_first(&[json!({ "snapshot": "vg0/pre-db", "made_by": "R1" })]),
        "remove the existing vg0/pre-db (made by run R1) first (replace_existing: that rollback point is gone), then "
    );
    assert_eq!(replaced_first(&[]), "");
    let bad = json!({ "backend": "btrfs", "name": "s", "volumes": [{ "name": "home" }], "replace_existing": "yes" });
    let e = parse::<SnapshotArgs>("snapshot", bad.as_object().unwrap())
        .err()
        .unwrap();
    assert_eq!(
        format!("{e:#}"),
        "`replace_existing` must be true or false, found \"yes\""
    );
}

fn given(v: serde_json::Value) -> SnapshotArgs {
    parse("snapshot", v.as_object().unwrap()).unwrap()
}

/// Every value a template may render wrong is refused with the message the map reader gave,
/// before the probe runs anything (`Args::of` is the probe's first step; the typed fields
/// are read when the step's arguments are parsed).
#[test]
fn bad_rendered_values_are_refused_as_before() {
    let e = |v: serde_json::Value| {
        parse::<SnapshotArgs>("snapshot", v.as_object().unwrap())
            .and_then(|a| Args::of(&a))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    let vols = json!([{ "name": "db", "vg": "vg0", "lv": "db" }]);
    assert_eq!(
        e(json!({ "backend": "zfs", "name": "s", "volumes": vols })),
        "snapshot backend must be lvm or btrfs, found `zfs`"
    );
    assert_eq!(
        e(json!({ "backend": 1, "name": "s", "volumes": vols })),
        "argument `backend` is missing or not a string"
    );
    assert_eq!(
        e(json!({ "backend": "lvm", "name": "a b", "volumes": vols })),
        "snapshot name `a b` must be 1-100 letters, digits or + _ . - (not starting with -)"
    );
    assert_eq!(
        e(json!({ "backend": "lvm", "name": "s", "volumes": "[{\"name\": \"db\"}]" })),
        "volume `db`: the lvm backend needs `vg` and `lv`"
    );
    assert!(
        e(json!({ "backend": "lvm", "name": "s", "volumes": "{{ volumes }}" })).starts_with(
            "`volumes` must be a list of {name, vg, lv, mount} or its JSON, found `{{ volumes }}`"
        )
    );
    assert_eq!(
        e(json!({ "backend": "lvm", "name": "s", "volumes": [{ "mount": "/srv" }] })),
        "`volumes` must be a list of {name, vg, lv, mount}: missing field `name`"
    );
    assert_eq!(
        e(json!({ "backend": "lvm", "name": "s", "volumes": [] })),
        "`volumes` is empty: nothing to snapshot"
    );
    assert_eq!(
        e(json!({ "backend": "lvm", "name": "s", "volumes": 3 })),
        "argument `volumes` is missing or not a list"
    );
    // snapshot_usage: the same set, and its threshold.
    let u = |v: serde_json::Value| {
        parse::<UsageArgs>("snapshot_usage", v.as_object().unwrap())
            .and_then(|a| a.set().map(|_| a.max_usage_percent))
            .map_err(|e| format!("{e:#}"))
    };
    assert_eq!(
        u(json!({ "backend": "lvm", "name": "s", "volumes": vols })),
        Ok(80.0)
    );
    assert_eq!(
        u(json!({ "backend": "lvm", "name": "s", "volumes": vols, "max_usage_percent": "85.5" })),
        Ok(85.5)
    );
    assert_eq!(
        u(json!({ "backend": "lvm", "name": "s", "volumes": vols, "max_usage_percent": "lots" })),
        Err("max_usage_percent `lots` is not a number: invalid float literal".into())
    );
    assert_eq!(
        u(json!({ "backend": "lvm", "name": "s", "volumes": vols, "max_usage_percent": null })),
        Err("max_usage_percent must be a number".into())
    );
    assert_eq!(
        u(json!({ "backend": "lvm", "name": "-s", "volumes": vols })),
        Err(
            "snapshot name `-s` must be 1-100 letters, digits or + _ . - (not starting with -)"
                .into()
        )
    );
}

/// What a merge may change, for a plan: the volumes' mounts and the services, when the
/// services are a list (as before).
#[test]
fn a_merge_touches_the_mounts_and_listed_services() {
    use crate::modules::touches;
    let m = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let vols = json!([{ "name": "db", "vg": "vg0", "lv": "db", "mount": "/var/lib/mysql" }]);
    let t = touches(
        "snapshot",
        &m(
            json!({ "backend": "lvm", "name": "s", "volumes": vols, "state": "merged", "services": ["mariadb"] }),
        ),
    );
    assert_eq!(t.len(), 2, "{t:?}");
    let t = touches(
        "snapshot",
        &m(
            json!({ "backend": "lvm", "name": "s", "volumes": vols, "state": "merged", "services": "mariadb" }),
        ),
    );
    assert_eq!(t.len(), 1, "{t:?}");
    let t = touches(
        "snapshot",
        &m(json!({ "backend": "lvm", "name": "s", "volumes": vols, "services": ["mariadb"] })),
    );
    assert!(t.is_empty(), "{t:?}");
}

#[test]
fn names_are_checked() {
    assert!(check_name("n", "pre-upgrade-20240101T0200").is_ok());
    assert!(check_name("n", "a b").is_err());
    assert!(check_name("n", "-x").is_err());
    assert!(check_name("n", "x;rm").is_err());
}

#[test]
fn lvs_json() {
    let r = parse_report(r#"{"report":[{"lv":[{"lv_name":"[s]","vg_name":"vg0","lv_attr":"Swi-a-s---","origin":"data","lv_size":"8388608","snap_percent":"12.50","lv_merging":"1","lv_snapshot_invalid":"0"}]}]}"#).unwrap();
    let lv = &r.report[0].lv[0];
    assert_eq!(lv.lv_name, "s");
    assert!(lv.merging());
    assert!(!lv.invalid());
    assert_eq!(lv.percent(), Some(12.5));
}
