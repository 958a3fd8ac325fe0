//! The whole suite's secret sweep: after every test has run (`.ci/run` runs this target
//! explicitly, after `cargo test`, like `lab_teardown`; it is not part of a plain
//! `cargo test`), every artifact the tests kept — each cutover invocation's stdout and stderr,
//! journals, saved plans, JSON and JUnit files, under `target/test-artifacts/` — is grepped for
//! every lab secret (decrypted from `inventory/lab-secrets.age` with the lab key, plus the lab's
//! sudo password and age key) in every form an output could carry it: plain, XML-, JSON- and
//! shell-escaped, URL-encoded, base64, hex. Zero occurrences, and it cannot pass for want of
//! anything to read: no artifacts, or a lab test binary that kept no cutover invocation, fail.
//! `tests/secret_sweep_check.rs` proves the sweep finds what it looks for.

mod common;

use std::path::Path;

/// The test binaries that run cutover through the shared project helper: each must have kept
/// at least one invocation.
fn binaries_using_the_project_helper() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(common::repo_root().join("tests"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        // This file names the helper too, in the search itself.
        let this_sweep = p.file_stem().is_some_and(|s| s == "secret_sweep");
        if p.extension().is_some_and(|x| x == "rs")
            && !this_sweep
            // A file's own `Project` type (one that does not use the shared helper) is not it.
            && text.contains("mod common;")
            && (text.contains("Project::new()") || text.contains("Project::in_repo()"))
            // A plain `cargo test` does not run `#[ignore]`d tests: such a file kept nothing.
            && !every_test_ignored(&text)
        {
            out.push(p.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// Whether each `#[test]` of a test file is followed by an `#[ignore…]` (run only by hand).
fn every_test_ignored(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let tests: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == "#[test]")
        .collect();
    !tests.is_empty()
        && tests
            .iter()
            .all(|&i| lines.get(i + 1).is_some_and(|l| l.starts_with("#[ignore")))
}

fn invocations_under(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += invocations_under(&p);
            } else if p.extension().is_some_and(|x| x == "cmd") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn no_test_artifact_holds_a_lab_secret() {
    let root = common::artifacts::root();
    let secrets = common::sweep::lab_secrets();
    let summary = common::sweep::verdict(&root, &secrets).unwrap_or_else(|why| panic!("{why}"));
    let silent: Vec<String> = binaries_using_the_project_helper()
        .into_iter()
        .filter(|b| invocations_under(&root.join(b)) == 0)
        .collect();
    assert!(
        silent.is_empty(),
        "these test binaries kept no cutover invocation under {} (not run in this suite run, or their outputs were not kept): {silent:?}",
        root.display()
    );
    println!("{summary}");
}
