use super::look::*;

use crate::overlay::{NotDerivable, Val};

fn owner(o: &str) -> WantedAttrs<'_> {
    WantedAttrs {
        owner: Some(o),
        ..WantedAttrs::default()
    }
}

fn mode(m: &str) -> WantedAttrs<'_> {
    WantedAttrs {
        mode: Some(m),
        ..WantedAttrs::default()
    }
}

fn planned_stat(owner: &str, mode: &str) -> Stat {
    Stat {
        kind: "regular file".into(),
        owner: owner.into(),
        group: "root".into(),
        mode: mode.into(),
        size: 3,
        sha256: None,
        link_target: None,
        planned_by: Some("step 2 (conf)".into()),
    }
}

#[test]
fn attributes_left_to_the_host_are_not_derivable() {
    let st = planned_stat(UNKNOWN_ATTR, "0640");
    // Asked for: the owner nobody planned.
    let e = attr_changes(owner("wiki"), "/srv/a", Some(&st)).unwrap_err();
    let nd = e.downcast_ref::<NotDerivable>().expect("not derivable");
    assert!(nd.0.contains("owner of /srv/a after step 2 (conf)"), "{nd}");
    // Not asked for: no matter.
    assert_eq!(
        attr_changes(mode("640"), "/srv/a", Some(&st)).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        attr_changes(mode("0600"), "/srv/a", Some(&st)).unwrap(),
        ["mode 0640 → 0600"]
    );
    assert_eq!(
        attr_changes(owner("wiki"), "/srv/a", None).unwrap(),
        ["owner - → wiki"]
    );
}

#[test]
fn planned_attributes() {
    let wiki_640 = WantedAttrs {
        mode: Some("640"),
        ..owner("wiki")
    };
    let a = planned_attrs(wiki_640, false);
    assert_eq!(a.owner, Val::Set("wiki".into()));
    assert_eq!(a.mode, Val::Set("0640".into()));
    // A new file's group is whatever the host gives it; an existing one keeps its own.
    assert_eq!(a.group, Val::Unknown);
    assert_eq!(planned_attrs(WantedAttrs::default(), true).group, Val::Host);
    // Numeric owners and symbolic modes are not derived.
    let numeric = WantedAttrs {
        mode: Some("u+x"),
        ..owner("1000")
    };
    let b = planned_attrs(numeric, true);
    assert_eq!((b.owner, b.mode), (Val::Unknown, Val::Unknown));
}

#[test]
fn parents() {
    assert_eq!(parent_of("/srv/a/b.conf"), "/srv/a");
    assert_eq!(parent_of("/srv/a/"), "/srv");
    assert_eq!(parent_of("/srv"), "/");
}
