//! `git_overlay` end to end without the lab: the host is the controller itself (`address:
//! local`), the repository the lab's customizations.git built by lab/lib/repo.sh into a
//! temporary directory (a path, fetched like a URL). The same checks as the lab test
//! (tests/customizations_lab.rs), runnable on any machine with git: the plan writes nothing,
//! the pinned tree lands with its owner and modes, a second run changes nothing, a failure after
//! the step unwinds it, an unknown commit fails before anything is written.

mod common;

use std::path::Path;
use std::process::Output;

use common::local::{cutover, one_at_a_time};
use common::project::text;
use serde_json::Value as J;

const PINNED: &str = "f71622737a3b15c88f2e9a273dc148ebfbaa6d1d";
const NEWER: &str = "f2b07a62b86f21077da0664104559cd9931174f4";

fn sh(script: &str) -> String {
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{script}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every path under `dest`: type, owner, group, mode, and the files' SHA-256.
fn tree(dest: &Path) -> String {
    sh(&format!(
        "cd {} && find . -printf '%p %y %u:%g %m\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum",
        dest.display()
    ))
}

fn setup(d: &Path) -> (String, std::path::PathBuf) {
    let root = env!("CARGO_MANIFEST_DIR");
    let repo = d.join("customizations.git");
    sh(&format!(
        "set -e; source {root}/lab/lib/common.sh; source {root}/lab/lib/repo.sh; build_customizations_repo {}",
        repo.display()
    ));
    let dest = d.join("install");
    std::fs::create_dir_all(dest.join("conf")).unwrap();
    std::fs::write(
        dest.join("conf/logging.properties"),
        "1catalina.org.apache.juli.AsyncFileHandler.maxDays = 14\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(d.join("inv.yml"), format!(
        "hosts:\n  controller:\n    address: local\n    vars:\n      customizations_repo: {}\n      customizations_version: {PINNED}\n",
        repo.display()
    ))
    .unwrap();
    for (name, after) in [
        ("lay.yml", ""),
        ("fail.yml", "    - fail: { msg: later step failed }\n"),
    ] {
        std::fs::write(
            d.join(name),
            format!(
                r#"- hosts: controller
  on_failure: unwind
  steps:
    - name: Customizations
      git_overlay:
        repo: "{{{{ customizations_repo }}}}"
        version: "{{{{ customizations_version }}}}"
        dest: {}
        owner: root
        group: root
        mode: "0640"
        directory_mode: "0750"
{after}"#,
                dest.display()
            ),
        )
        .unwrap();
    }
    (repo.display().to_string(), dest)
}

fn changed(o: &Output) -> u64 {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|e| e["event"] == "recap")
        .and_then(|r| r["hosts"]["controller"]["changed"].as_u64())
        .unwrap_or_else(|| panic!("no recap: {}", text(o)))
}

fn apply(d: &Path, pb: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "-i",
        "inv.yml",
        "--templates",
        "templates",
        "--output",
        "json",
        pb,
    ];
    args.extend(extra);
    cutover(d, &args)
}

#[test]
fn the_pinned_tree_is_planned_laid_kept_and_unwound_on_the_controller_itself() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (repo, dest) = setup(d);
    let bare = tree(&dest);

    // The plan: a diff per file, nothing written.
    let o = cutover(
        d,
        &[
            "plan",
            "-i",
            "inv.yml",
            "--templates",
            "templates",
            "lay.yml",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    for line in [
        "-1catalina.org.apache.juli.AsyncFileHandler.maxDays = 14",
        "+1catalina.org.apache.juli.AsyncFileHandler.maxDays = 30",
        "+<p class=\"banner\">Lab wiki: customizations v1</p>",
    ] {
        assert!(
            plan.lines().any(|l| l.trim_start().ends_with(line)),
            "no `{line}` in:\n{plan}"
        );
    }
    assert!(!plan.contains("contact.txt"), "{plan}");
    assert_eq!(tree(&dest), bare, "the plan wrote");

    // Applied: the pinned commit's files with the asked owner and modes, execute from git.
    let o = apply(d, "lay.yml", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(changed(&o), 1);
    let attrs = sh(&format!(
        "cd {} && stat -c '%n %U:%G %a' conf/logging.properties bin bin/wiki-healthcheck.sh webapps/ROOT/custom webapps/ROOT/custom/banner.html; ls webapps/ROOT/custom",
        dest.display()
    ));
    assert_eq!(
        attrs,
        "conf/logging.properties root:root 640\nbin root:root 750\nbin/wiki-healthcheck.sh root:root 750\nwebapps/ROOT/custom root:root 750\nwebapps/ROOT/custom/banner.html root:root 640\nbanner.html\n"
    );
    let want = sh(&format!(
        "git --git-dir={repo} show {PINNED}:conf/logging.properties"
    ));
    assert_eq!(
        std::fs::read_to_string(dest.join("conf/logging.properties")).unwrap(),
        want
    );
    // `cutover commit` drops the backup of the replaced file, which the run kept for its undo.
    let backups = || sh(&format!("ls {}/conf", dest.display()));
    assert!(
        backups().contains("logging.properties.cutover-"),
        "{}",
        backups()
    );
    let run = std::fs::read_dir(d.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .unwrap();
    let o = cutover(d, &["commit", &run]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed backups"), "{}", text(&o));
    assert_eq!(backups(), "logging.properties\n");
    let laid = tree(&dest);
    let o = apply(d, "lay.yml", &[]);
    assert_eq!(changed(&o), 0, "{}", text(&o));

    // The newer commit, then a failure: back to the pinned tree exactly.
    let newer = format!("customizations_version={NEWER}");
    let o = apply(d, "fail.yml", &["-e", &newer]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(tree(&dest), laid);

    // From the bare install dir, then a failure: the install dir exactly as before.
    sh(&format!("rm -rf {0}/bin {0}/webapps", dest.display()));
    std::fs::write(
        dest.join("conf/logging.properties"),
        "1catalina.org.apache.juli.AsyncFileHandler.maxDays = 14\n",
    )
    .unwrap();
    sh(&format!(
        "chmod 0644 {}/conf/logging.properties",
        dest.display()
    ));
    let o = apply(d, "fail.yml", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(tree(&dest), bare, "the unwind left something");

    // A commit the repository does not have: the step fails, nothing is written.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let o = apply(
        d,
        "lay.yml",
        &["-e", &format!("customizations_version={unknown}")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("commit {unknown} is not in {repo}")),
        "{}",
        text(&o)
    );
    assert_eq!(tree(&dest), bare);
}
