//! `git_overlay` against the lab (issue #17 item 5): the customizations repository the lab's
//! repo host serves (`http://repo:8080/customizations.git`, built by lab/lib/repo.sh, two
//! commits), pinned in inventory/lab.yml, laid over an install dir on app1.
//!
//! The install dir here is a scratch one under /tmp on app1 (release 1.0.0's
//! `conf/logging.properties` and `bin/setenv.sh`, from its bundle), so the test neither depends
//! on nor changes what `site.yml` left in /opt/wiki. One test, in order: the plan shows the diffs and writes
//! nothing; the apply lays the pinned tree (content, owner, mode on the host), not the newer
//! commit's; a second apply changes nothing; a failure after the step unwinds it (replaced
//! file back, added files and directories gone), both from a bare install dir and from one at
//! the older commit; an unknown commit fails before anything changes.

mod common;

use std::process::Output;

use common::project::{text, Project};
use common::{lab_ssh_ok, lab_state, repo_root, require_lab};
use serde_json::Value as J;

const HOST: &str = "app1";
/// The commit inventory/lab.yml pins, and the newer one on the repository's main branch.
const PINNED: &str = "f71622737a3b15c88f2e9a273dc148ebfbaa6d1d";
const NEWER: &str = "f2b07a62b86f21077da0664104559cd9931174f4";
const REPO_URL: &str = "http://repo:8080/customizations.git";

fn inventory() -> String {
    repo_root().join("inventory/lab.yml").display().to_string()
}

/// The step under test, laying the inventory's pinned commit over `dest` (a run may override
/// `customizations_version` with `-e`); `after` is what follows it in the play.
fn playbook(dest: &str, after: &str) -> String {
    format!(
        r#"- name: Customizations on a scratch install dir
  hosts: {HOST}
  on_failure: unwind
  steps:
    - name: Customizations
      git_overlay:
        repo: "{{{{ customizations_repo }}}}"
        version: "{{{{ customizations_version }}}}"
        dest: {dest}
        owner: root
        group: wiki
        mode: "0640"
        directory_mode: "0750"
{after}"#
    )
}

const FAIL_AFTER: &str =
    "    - name: Something later fails\n      fail: { msg: later step failed }\n";

/// A scratch install dir on app1 with two files of release 1.0.0 as its bundle has them (not
/// as /opt/wiki has them: `site.yml` lays the customizations there): one the customizations
/// replace, one they leave alone.
fn fresh_install(dest: &str) {
    lab_ssh_ok(
        HOST,
        &format!(
            "set -e; rm -rf {dest}; mkdir -p {dest}; \
             tar -xzf /opt/wiki/dist/wiki-1.0.0.tar.gz -C {dest} --strip-components=1 \
             wiki-1.0.0/conf/logging.properties wiki-1.0.0/bin/setenv.sh"
        ),
    );
}

/// Every path under `dest` with its type, owner, group, mode and (files) SHA-256.
fn host_tree(dest: &str) -> String {
    lab_ssh_ok(
        HOST,
        &format!(
            "cd {dest} && find . -printf '%p %y %u:%g %m\\n' | LC_ALL=C sort && \
             find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"
        ),
    )
}

/// SHA-256 of a file of a commit of the lab's repository, read on the controller.
fn sha_in_commit(commit: &str, path: &str) -> String {
    let repo = lab_state().join("www/customizations.git");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git --git-dir={} show {commit}:{path} | sha256sum",
            repo.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

fn apply(p: &Project, pb: &str, extra: &[&str]) -> Output {
    let inv = inventory();
    let t = p.templates();
    let path = p.path(pb).display().to_string();
    let mut args = vec![
        "apply",
        "-i",
        &inv,
        "--templates",
        &t,
        "--output",
        "json",
        &path,
    ];
    args.extend(extra);
    p.run(&args)
}

/// `cutover plan` of lay.yml as JSON.
fn plan(p: &Project, extra: &[&str]) -> (Output, J) {
    let inv = inventory();
    let t = p.templates();
    let pb = p.path("lay.yml").display().to_string();
    let mut args = vec![
        "plan",
        "-i",
        &inv,
        "--templates",
        &t,
        &pb,
        "--format",
        "json",
    ];
    args.extend(extra);
    let o = p.run(&args);
    let j = serde_json::from_slice(&o.stdout).unwrap_or(J::Null);
    (o, j)
}

/// The recap's `changed` count of app1.
fn changed(o: &Output) -> u64 {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|e| e["event"] == "recap")
        .and_then(|r| r["hosts"][HOST]["changed"].as_u64())
        .unwrap_or_else(|| panic!("no recap: {}", text(o)))
}

#[test]
fn customizations_are_laid_from_the_pinned_commit_shown_first_and_undone() {
    require_lab();
    let served = lab_state().join("www/customizations.git/info/refs");
    assert!(
        served.exists(),
        "{} missing: run lab/lab.sh up (it builds the customizations repository)",
        served.display()
    );
    let t0 = std::time::Instant::now();
    let p = Project::new();
    let dest = format!("/tmp/cutover-customizations-{}", std::process::id());
    fresh_install(&dest);
    p.write("lay.yml", &playbook(&dest, ""));
    p.write("lay-then-fail.yml", &playbook(&dest, FAIL_AFTER));

    plan_shows_the_diffs_and_writes_nothing(&p, &dest);
    apply_lays_the_pinned_tree_then_changes_nothing(&p, &dest);
    a_newer_commit_is_shown_as_its_diff_and_unwound(&p, &dest);
    a_failure_after_a_first_lay_leaves_the_bare_install(&p, &dest);
    an_unknown_commit_fails_before_anything_changes(&p, &dest);

    lab_ssh_ok(HOST, &format!("rm -rf {dest}"));
    eprintln!(
        "customizations lab test: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn plan_shows_the_diffs_and_writes_nothing(p: &Project, dest: &str) {
    let before = host_tree(dest);
    let (o, plan) = plan(p, &[]);
    assert_eq!(o.status.code(), Some(2), "changes pending: {}", text(&o));
    let e = &plan["entries"][0];
    assert_eq!(e["outcome"], "change", "{e:#}");
    assert_eq!(
        e["summary"],
        format!(
            "lay commit {} over {dest} (2 added, 1 replaced, 3 new directories)",
            &PINNED[..12]
        )
    );
    let diff = e["diff"].as_str().unwrap();
    for line in [
        format!("--- {HOST}:{dest}/conf/logging.properties (before)"),
        "-1catalina.org.apache.juli.AsyncFileHandler.maxDays = 14".into(),
        "+1catalina.org.apache.juli.AsyncFileHandler.maxDays = 30".into(),
        format!("+++ {HOST}:{dest}/webapps/ROOT/custom/banner.html (after)"),
        "+<p class=\"banner\">Lab wiki: customizations v1</p>".into(),
        format!("{HOST}:{dest}/webapps/ROOT/custom/: new directory"),
        "+exec curl -fsS --max-time 5 -o /dev/null http://localhost:8080/status".into(),
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "no line `{line}` in:\n{diff}"
        );
    }
    // The pinned commit's tree, not main's newer one.
    assert!(
        !diff.contains("contact.txt") && !diff.contains("v2"),
        "{diff}"
    );
    // Reversible: the plan does not mark it as a step with no way back.
    assert_eq!(e["irreversible"], false, "{e:#}");
    assert_eq!(host_tree(dest), before, "a plan wrote to the host");
}

fn apply_lays_the_pinned_tree_then_changes_nothing(p: &Project, dest: &str) {
    let o = apply(p, "lay.yml", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(changed(&o), 1);
    let attrs = lab_ssh_ok(
        HOST,
        &format!(
            "cd {dest} && stat -c '%n %U:%G %a' conf/logging.properties bin/setenv.sh \
             bin/wiki-healthcheck.sh webapps webapps/ROOT webapps/ROOT/custom \
             webapps/ROOT/custom/banner.html; test ! -e webapps/ROOT/custom/contact.txt && echo no-contact"
        ),
    );
    assert_eq!(
        attrs.trim(),
        format!(
            "conf/logging.properties root:wiki 640\n\
             bin/setenv.sh root:root 755\n\
             bin/wiki-healthcheck.sh root:wiki 750\n\
             webapps root:wiki 750\n\
             webapps/ROOT root:wiki 750\n\
             webapps/ROOT/custom root:wiki 750\n\
             webapps/ROOT/custom/banner.html root:wiki 640\n\
             no-contact"
        )
    );
    for f in [
        "conf/logging.properties",
        "bin/wiki-healthcheck.sh",
        "webapps/ROOT/custom/banner.html",
    ] {
        let on_host = lab_ssh_ok(HOST, &format!("sha256sum < {dest}/{f}"));
        assert_eq!(&on_host[..64], sha_in_commit(PINNED, f), "{f}");
    }
    // The controller keeps the fetched repository in the run state (one bare cache per URL).
    let caches: Vec<_> = std::fs::read_dir(p.state().join("git")).unwrap().collect();
    assert!(!caches.is_empty());
    let again = apply(p, "lay.yml", &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        changed(&again),
        0,
        "a second apply changed something: {}",
        text(&again)
    );
}

fn a_newer_commit_is_shown_as_its_diff_and_unwound(p: &Project, dest: &str) {
    let at_pinned = host_tree(dest);
    let newer = format!("customizations_version={NEWER}");
    let (o, plan) = plan(p, &["-e", &newer]);
    assert_eq!(o.status.code(), Some(2), "changes pending: {}", text(&o));
    let e = &plan["entries"][0];
    assert_eq!(
        e["summary"],
        format!(
            "lay commit {} over {dest} (1 added, 1 replaced)",
            &NEWER[..12]
        )
    );
    let diff = e["diff"].as_str().unwrap();
    assert!(diff.contains("\n-<p class=\"banner\">Lab wiki: customizations v1</p>\n+<p class=\"banner\">Lab wiki: customizations v2</p>\n"), "{diff}");
    assert!(diff.contains("+Wiki operations: ops@lab.invalid"), "{diff}");
    // Applied, then a later step fails: the v1 banner is back, the contact page gone.
    let o = apply(p, "lay-then-fail.yml", &["-e", &newer]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("later step failed"), "{}", text(&o));
    assert_eq!(
        host_tree(dest),
        at_pinned,
        "the unwind left the newer commit's files"
    );
}

fn a_failure_after_a_first_lay_leaves_the_bare_install(p: &Project, dest: &str) {
    fresh_install(dest);
    let bare = host_tree(dest);
    let o = apply(p, "lay-then-fail.yml", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The journal has the step's way back; the unwind ran it: the release's file is back,
    // everything the tree added is gone, with the directories it made, and no backup is left.
    assert_eq!(
        host_tree(dest),
        bare,
        "the unwind did not restore the install dir"
    );
}

fn an_unknown_commit_fails_before_anything_changes(p: &Project, dest: &str) {
    let before = host_tree(dest);
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let o = apply(
        p,
        "lay.yml",
        &["-e", &format!("customizations_version={unknown}")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "commit {unknown} is not in {REPO_URL} (fetched its branches and tags; pin a commit that one of them contains)"
        )),
        "{}",
        text(&o)
    );
    assert_eq!(changed(&o), 0);
    assert_eq!(host_tree(dest), before);
    // A branch name is refused by the validation, before any host or repository is read.
    let o = apply(p, "lay.yml", &["-e", "customizations_version=main"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("`git_overlay.version` as rendered: `main` is not a commit id"),
        "{}",
        text(&o)
    );
}
