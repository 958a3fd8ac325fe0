//! Exit codes as documented: a wrong command line is exit 64 (not 1 or clap's 2), whatever the
//! mistake, and nothing is read or run; `--help` carries the README's exit-code table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn cutover(state: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.current_dir(corpus())
        .env_remove("CUTOVER_INVENTORY")
        .env_remove("CUTOVER_BECOME_PASSWORD")
        .env("CUTOVER_STATE_DIR", state)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run the cutover binary")
}

/// The exit-code table of README.md: (code, meaning) per row.
fn readme_table() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("### Exit codes").expect("an exit code section")..];
    section
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cols: Vec<&str> = l.trim_matches('|').splitn(2, '|').collect();
            (cols[0].trim().to_string(), cols[1].trim().to_string())
        })
        .collect()
}

#[test]
fn help_shows_the_readme_exit_code_table() {
    let state = tempfile::tempdir().unwrap();
    let documented = readme_table();
    assert!(documented.len() >= 8, "{documented:?}");
    for args in [
        vec!["--help"],
        vec!["help"],
        vec!["apply", "--help"],
        vec!["plan", "--help"],
        vec!["check", "-h"],
    ] {
        let out = cutover(state.path(), &[], &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        let shown: Vec<(String, String)> = help
            .lines()
            .skip_while(|l| *l != "Exit codes:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| {
                let (code, meaning) = l.trim().split_once(' ').unwrap();
                (code.to_string(), meaning.trim().to_string())
            })
            .collect();
        assert_eq!(shown, documented, "cutover {args:?}:\n{help}");
    }
}

/// A wrong command line: its args, what stderr must say, the position shown (if cutover's own
/// error).
type Case = (Vec<&'static str>, &'static str, Option<&'static str>);

/// Mistakes reported in cutover's own error format, with a position.
fn own_mistakes() -> Vec<Case> {
    vec![
        (
            vec!["check", "noop.yml"],
            "error: no inventory given",
            Some("<command line>"),
        ),
        (
            vec!["apply", "noop.yml"],
            "error: no inventory given",
            Some("<command line>"),
        ),
        (
            vec!["plan", "noop.yml"],
            "error: no inventory given",
            Some("<command line>"),
        ),
        (
            vec!["inventory"],
            "error: no inventory given",
            Some("<command line>"),
        ),
        (
            vec!["render", "x.j2", "--host", "app1"],
            "error: no inventory given",
            Some("<command line>"),
        ),
        (
            vec![
                "check",
                "-i",
                "inventory.yml",
                "-e",
                "a=1",
                "-e",
                "no-equals",
                "noop.yml",
            ],
            "error: `-e no-equals`: expected `name=value` or `@file.yml`",
            Some("<-e #2>"),
        ),
        (
            vec![
                "apply",
                "-i",
                "inventory.yml",
                "-e",
                "bad-name=1",
                "noop.yml",
            ],
            "error: `-e bad-name=1`: expected `name=value`",
            Some("<-e #1>"),
        ),
        (
            vec!["plan", "-i", "inventory.yml", "-e", "@", "noop.yml"],
            "error: `-e @`: expected `name=value` or `@file.yml`",
            Some("<-e #1>"),
        ),
    ]
}

/// Mistakes reported in the argument parser's (clap's) format, without a position.
fn clap_mistakes() -> Vec<Case> {
    vec![
        (
            vec!["apply", "-i", "inventory.yml", "--forks", "0", "noop.yml"],
            "'--forks <FORKS>': `0` is not a number of hosts",
            None,
        ),
        (
            vec!["plan", "-i", "inventory.yml", "-f", "many", "noop.yml"],
            "'--forks <FORKS>': `many` is not a number of hosts",
            None,
        ),
        (
            vec![
                "apply",
                "-i",
                "inventory.yml",
                "-K",
                "--become-password-file",
                "pw",
                "noop.yml",
            ],
            "'--ask-become-pass' cannot be used with '--become-password-file",
            None,
        ),
        (
            vec!["apply", "-i", "inventory.yml", "--no-such-flag", "noop.yml"],
            "unexpected argument '--no-such-flag'",
            None,
        ),
        (
            vec![
                "apply",
                "-i",
                "inventory.yml",
                "--limit",
                "app1:&",
                "noop.yml",
            ],
            "invalid value 'app1:&' for '--limit <PATTERN>': `app1:&` is not a host pattern",
            None,
        ),
        (
            vec!["inventory", "-i", "inventory.yml", "-l", ""],
            "invalid value '' for '--limit <PATTERN>'",
            None,
        ),
        (vec!["frobnicate"], "unrecognized subcommand", None),
        (vec![], "Usage: cutover <COMMAND>", None),
        (
            vec!["render", "-i", "inventory.yml", "x.j2"],
            "--host <NAME>",
            None,
        ),
        (
            vec![
                "plan",
                "-i",
                "inventory.yml",
                "--format",
                "yaml",
                "noop.yml",
            ],
            "invalid value 'yaml' for '--format <FORMAT>'",
            None,
        ),
        (
            vec![
                "apply",
                "-i",
                "inventory.yml",
                "--output",
                "fancy",
                "noop.yml",
            ],
            "invalid value 'fancy' for '--output <OUTPUT>'",
            None,
        ),
    ]
}

#[test]
fn command_line_mistakes_exit_64_and_touch_nothing() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let cases = own_mistakes().into_iter().chain(clap_mistakes());
    for (args, message, position) in cases {
        let out = cutover(s, &[], &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "cutover {args:?}:\n{stderr}");
        assert!(stderr.contains(message), "cutover {args:?}:\n{stderr}");
        if let Some(p) = position {
            assert!(
                stderr.contains(&format!("  --> {p}\n")),
                "cutover {args:?}: no error at {p}:\n{stderr}"
            );
            assert!(
                stderr.ends_with("nothing was run on any host\n"),
                "{stderr}"
            );
        }
    }
    // Nothing was started: no journal, no lock.
    let left: Vec<_> = std::fs::read_dir(s).unwrap().flatten().collect();
    assert!(left.is_empty(), "the state directory holds {left:?}");
}

#[test]
fn the_inventory_from_the_environment_is_no_mistake() {
    let state = tempfile::tempdir().unwrap();
    let out = cutover(
        state.path(),
        &[("CUTOVER_INVENTORY", "inventory.yml")],
        &["check", "--templates", "templates", "noop.yml"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Input that is wrong (not the command line) stays exit 1.
    let out = cutover(
        state.path(),
        &[],
        &["check", "-i", "no-such-inventory.yml", "noop.yml"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// A run id names a run of this controller, nothing else: an unknown one (with the closest
/// known id suggested) and one shaped like a path (`../x`, a hidden name) are refused with
/// exit 1 by every command that takes one, and no file outside the runs is read.
#[test]
fn a_run_id_that_names_no_run_is_refused_with_the_closest_one() {
    let state = tempfile::tempdir().unwrap();
    let runs = state.path().join("runs");
    std::fs::create_dir_all(runs.join("20261207-101010-abcd")).unwrap();
    std::fs::write(runs.join("20261207-101010-abcd/journal.jsonl"), "").unwrap();
    // A journal outside the runs directory that a path-shaped id would reach.
    std::fs::write(
        state.path().join("journal.jsonl"),
        "{\"event\":\"run_started\"}\n",
    )
    .unwrap();
    let inv = corpus().join("inventory.yml");
    let inv = inv.to_str().unwrap();
    for (args, id) in [
        (vec!["show", "20261207-101010-abce"], "20261207-101010-abce"),
        (vec!["show", ".."], ".."),
        (
            vec!["rollback", "-i", inv, "../runs/20261207-101010-abcd"],
            "../runs/20261207-101010-abcd",
        ),
        (vec!["resume", "-i", inv, ".hidden"], ".hidden"),
    ] {
        let o = cutover(state.path(), &[], &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no run `{id}` in ")),
            "{args:?}: {err}"
        );
    }
    let o = cutover(state.path(), &[], &["show", "20261207-101010-abce"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `20261207-101010-abcd`?"));
}
