//! A declared `undo:` runs a module, and the module may keep what it needs to undo its own
//! change (`file: state: absent` keeps the file as `PATH.cutover-RUN~`). Nothing ever undoes
//! an undo, so that copy must not stay on the host: found on the lab, where every rolled-back
//! upgrade left a copy of the downloaded release bundle behind. Tested without the lab
//! (`address: local`), for an unwind and for `cutover rollback`.

mod common;

use std::path::Path;

use common::local::cutover;
use common::project::text;

/// A run that downloads (writes) `data/bundle.tar.gz`, declared undone by removing it, then
/// fails if `fail`. Returns the apply's output and the run id.
fn download(d: &Path, fail: bool) -> (std::process::Output, String) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let bundle = d.join("data/bundle.tar.gz");
    let failing = if fail {
        "    - name: The new release starts\n      fail: { msg: it does not }\n"
    } else {
        ""
    };
    std::fs::write(
        d.join("pb.yml"),
        format!(
            "- hosts: n1\n  on_failure: unwind\n  steps:\n    - name: Download the bundle\n      command: {{ argv: [sh, -c, 'echo bundle > \"$0\"', \"{b}\"], creates: \"{b}\" }}\n      undo: {{ file: {{ path: \"{b}\", state: absent }} }}\n{failing}",
            b = bundle.display()
        ),
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let id = common::local::latest_run_id(d);
    (o, id)
}

/// What `data/` holds, sorted.
fn data(d: &Path) -> Vec<String> {
    common::local::names_in(&d.join("data"))
}

#[test]
fn an_unwound_declared_undo_keeps_no_copy_of_what_it_removed() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (o, _) = download(d, true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("UNWIND"), "{}", text(&o));
    assert_eq!(data(d), Vec::<String>::new(), "nothing left in data/");
}

#[test]
fn a_rolled_back_declared_undo_keeps_no_copy_of_what_it_removed() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (o, id) = download(d, false);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(data(d), ["bundle.tar.gz"]);
    let o = cutover(d, &["rollback", "-i", "inv.yml", &id, "--output", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(data(d), Vec::<String>::new(), "nothing left in data/");
}
