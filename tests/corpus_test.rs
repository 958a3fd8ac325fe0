//! The broken-input corpus: every case in `tests/corpus/expected.tsv` is run through the real
//! binary and must fail validation (exit 1, never a panic) with an error at the expected
//! `FILE:LINE:COL`, carrying the expected message (and help) fragments. Adding a case is one
//! line in that file plus the broken input itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn cutover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir)
        .env_remove("CUTOVER_INVENTORY")
        .args(args)
        .output()
        .expect("run the cutover binary")
}

/// One line of the manifest.
#[derive(Debug)]
struct Case {
    line: usize,
    kind: String,
    case: String,
    position: String,
    message: String,
    help: Option<String>,
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(corpus_dir().join("expected.tsv")).expect("read expected.tsv");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cols.len(),
            5,
            "expected.tsv:{}: want 5 tab-separated columns, got {:?}",
            i + 1,
            cols
        );
        assert!(
            ["inv", "pb", "tpl"].contains(&cols[0]),
            "expected.tsv:{}: unknown kind `{}`",
            i + 1,
            cols[0]
        );
        let position_ok = cols[2]
            .rsplitn(3, ':')
            .take(2)
            .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0));
        assert!(
            position_ok,
            "expected.tsv:{}: position `{}` is not FILE:LINE:COL",
            i + 1,
            cols[2]
        );
        out.push(Case {
            line: i + 1,
            kind: cols[0].to_string(),
            case: cols[1].to_string(),
            position: cols[2].to_string(),
            message: cols[3].to_string(),
            help: (cols[4] != "-").then(|| cols[4].to_string()),
        });
    }
    out
}

fn args_for(case: &Case) -> Vec<&str> {
    match case.kind.as_str() {
        "inv" => vec!["check", "-i", &case.case, "noop.yml"],
        "pb" => vec![
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            &case.case,
        ],
        "tpl" => vec![
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            &case.case,
            "noop.yml",
        ],
        other => unreachable!("kind {other}"),
    }
}

/// One rendered diagnostic: `error: MESSAGE`, `  --> POSITION`, snippet, `  = help: HELP`.
#[derive(Debug, Default)]
struct Reported {
    message: String,
    position: String,
    help: Option<String>,
}

fn parse_stderr(stderr: &str) -> Vec<Reported> {
    let mut out: Vec<Reported> = Vec::new();
    for line in stderr.lines() {
        if let Some(m) = line.strip_prefix("error: ") {
            out.push(Reported {
                message: m.to_string(),
                ..Default::default()
            });
        } else if let (Some(p), Some(last)) = (line.strip_prefix("  --> "), out.last_mut()) {
            last.position = p.to_string();
        } else if let (Some(h), Some(last)) = (line.strip_prefix("  = help: "), out.last_mut()) {
            last.help = Some(h.to_string());
        }
    }
    out
}

/// Exit 1, no panic, nothing on stdout claiming success, and a correct error count line.
fn check_failure_shape(out: &Output) -> Result<Vec<Reported>, String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") || out.status.code() == Some(101) {
        return Err("the binary panicked".into());
    }
    if out.status.code() != Some(1) {
        return Err(format!("exit code {:?}, want 1", out.status.code()));
    }
    if String::from_utf8_lossy(&out.stdout).contains("ok:") {
        return Err("stdout claims success".into());
    }
    let reported = parse_stderr(&stderr);
    let n = reported.len();
    let count_line = format!(
        "{n} error{} found; nothing was run on any host",
        if n == 1 { "" } else { "s" }
    );
    if n == 0 || stderr.lines().last() != Some(count_line.as_str()) {
        return Err(format!(
            "want {n} diagnostics and a last line `{count_line}`"
        ));
    }
    if let Some(r) = reported
        .iter()
        .find(|r| r.message.trim().is_empty() || r.position.is_empty())
    {
        return Err(format!("a diagnostic without message or position: {r:?}"));
    }
    Ok(reported)
}

#[test]
fn every_corpus_case_fails_where_and_how_expected() {
    let dir = corpus_dir();
    let cases = cases();
    assert!(
        cases.len() >= 45,
        "the corpus should hold at least 45 cases, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let out = cutover(&dir, &args_for(case));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let verdict = check_failure_shape(&out).and_then(|reported| {
            let found = reported.iter().any(|r| {
                r.position == case.position
                    && r.message.contains(&case.message)
                    && case
                        .help
                        .as_ref()
                        .is_none_or(|h| r.help.as_deref().is_some_and(|rh| rh.contains(h.as_str())))
            });
            if found {
                Ok(())
            } else {
                Err(format!(
                    "no error at `{}` with message containing `{}`{}",
                    case.position,
                    case.message,
                    case.help
                        .as_ref()
                        .map_or(String::new(), |h| format!(" and help containing `{h}`"))
                ))
            }
        });
        if let Err(why) = verdict {
            failures.push(format!(
                "expected.tsv:{} {} {}: {why}\n--- stderr:\n{stderr}",
                case.line, case.kind, case.case
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Every broken input on disk is listed in the manifest, so none sits there untested.
#[test]
fn every_corpus_file_has_a_manifest_line() {
    let dir = corpus_dir();
    let listed: Vec<String> = cases().into_iter().map(|c| c.case).collect();
    let mut on_disk = Vec::new();
    for sub in ["inventory", "playbooks"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            on_disk.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    for e in std::fs::read_dir(dir.join("templates_bad"))
        .unwrap()
        .flatten()
    {
        on_disk.push(format!("templates_bad/{}", e.file_name().to_string_lossy()));
    }
    // many_errors.yml has a test of its own (all_independent_errors_of_a_file_are_reported).
    let missing: Vec<&String> = on_disk
        .iter()
        .filter(|f| !listed.contains(f) && *f != "playbooks/many_errors.yml")
        .collect();
    assert!(
        missing.is_empty(),
        "corpus files with no line in expected.tsv: {missing:?}"
    );
}

/// The valid half of the corpus really is valid, so each broken case fails for its own reason.
#[test]
fn valid_corpus_files_pass() {
    let out = cutover(
        &corpus_dir(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            "site.yml",
            "noop.yml",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: inventory inventory.yml (4 hosts"),
        "{out:?}"
    );
}

/// The shipped inventories (with the shipped playbooks and templates, if any) pass `check`.
#[test]
fn shipped_files_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for inv in [
        "inventory/production.yml",
        "inventory/lab.yml",
        "inventory/lab-lvm.yml",
    ] {
        let out = cutover(root, &["check", "-i", inv]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cutover check -i {inv}:\n{stderr}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("ok: inventory {inv}")));
    }
}

/// The plugins pinned per release (`app_plugins`, README "Plugins") are checked by `check` in
/// every shipped procedure that reads them, before any host is touched: a release mapped to
/// something that is not a list, an entry without a version, a name that is not a plain word
/// (it reaches a shell and a URL), an unquoted version (YAML reads 1.10 as the number 1.1).
/// Each is refused (exit 1) with the entry as found, at the playbook line that reads it, naming
/// the host.
#[test]
fn shipped_procedures_refuse_bad_plugin_pins() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "\"2.0.0\": calendar",
            "is a list of { name, version }; found \"calendar\"",
        ),
        (
            "\"2.0.0\": [{ name: calendar }]",
            "found {\"name\": \"calendar\"}",
        ),
        (
            "\"2.0.0\": [{ name: \"x; rm -rf /\", version: \"1.0\" }]",
            "found {\"name\": \"x; rm -rf /\", \"version\": \"1.0\"}",
        ),
        (
            "\"2.0.0\": [{ name: Calendar, version: \"2.0\" }]",
            "found {\"name\": \"Calendar\", \"version\": \"2.0\"}",
        ),
        (
            "\"2.0.0\": [{ name: calendar, version: 1.10 }]",
            "found {\"name\": \"calendar\", \"version\": 1.1}",
        ),
    ];
    // Where each procedure first reads the pins: its guard of the list, then of each entry
    // (site.yml: only per item of its loop), and the host it is checked for first.
    let guards = [
        ("playbooks/upgrade.yml", "app1"),
        ("playbooks/rehearse.yml", "app2"),
        ("playbooks/site.yml", "staging"),
    ];
    for (i, (pins, found)) in cases.iter().enumerate() {
        let vars = tmp.path().join(format!("pins{i}.yml"));
        std::fs::write(&vars, format!("app_plugins:\n  {pins}\n")).unwrap();
        let vars = format!("@{}", vars.display());
        for (playbook, host) in guards {
            let guard = if i == 0 {
                "{% if pins is not array %}"
            } else {
                "{% if plugin is not map"
            };
            let out = cutover(
                root,
                &[
                    "check",
                    "-i",
                    "inventory/lab.yml",
                    "-e",
                    &vars,
                    "-e",
                    "app_release=2.0.0",
                    playbook,
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{playbook} {pins}:\n{err}");
            assert!(err.contains("nothing was run on any host"), "{err}");
            let text = std::fs::read_to_string(root.join(playbook)).unwrap();
            let line_of = |what: &str| {
                1 + text
                    .lines()
                    .position(|l| l.contains(what))
                    .unwrap_or_else(|| panic!("{what} in {playbook}"))
            };
            // site.yml's loop refuses a non-list itself, at `loop:`, just above its guard.
            let at = if playbook.ends_with("site.yml") && i == 0 {
                let loop_line = line_of("loop: \"{{ app_plugins[app_release]");
                assert!(err.contains("`loop:` takes a list"), "{err}");
                format!("--> {playbook}:{loop_line}:")
            } else if playbook.ends_with("site.yml") && i == 1 {
                // The item's label reads plugin.version first: undefined, at the label.
                assert!(err.contains("undefined variable `plugin.version`"), "{err}");
                format!("--> {playbook}:{}:", line_of(guard) - 3)
            } else {
                assert!(err.contains(found), "{playbook} {pins}: {found}\n{err}");
                assert!(err.contains("app_plugins[\"2.0.0\"]"), "{err}");
                format!("--> {playbook}:{}:", line_of(guard))
            };
            assert!(err.contains(&at), "{playbook} {pins}: at {at}\n{err}");
            assert!(err.contains(&format!("(host {host}, play ")), "{err}");
        }
    }
}

/// One file with several independent mistakes: every one is reported, each at its place.
#[test]
fn all_independent_errors_of_a_file_are_reported() {
    let out = cutover(
        &corpus_dir(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            "playbooks/many_errors.yml",
        ],
    );
    let reported = check_failure_shape(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let f = "playbooks/many_errors.yml";
    let expected = [
        (format!("{f}:3:3"), "unknown key `serail` in play"),
        (format!("{f}:5:7"), "unknown key `servce` in step"),
        (format!("{f}:6:37"), "`copy.mode` is the number 644"),
        (
            format!("{f}:8:17"),
            "for `run_once`, found the string \"yes\"",
        ),
        (format!("{f}:10:3"), "`tasks` is not a cutover key"),
        (format!("{f}:13:15"), "`notify: nobody` names no handler"),
    ];
    for (pos, msg) in &expected {
        assert!(
            reported
                .iter()
                .any(|r| &r.position == pos && r.message.contains(msg)),
            "missing `{msg}` at {pos}; reported: {reported:#?}"
        );
    }
    assert_eq!(
        reported.len(),
        expected.len(),
        "one error per mistake: {reported:#?}"
    );
}

/// A 10 MB file is refused before parsing, as inventory and as playbook, naming the file.
#[test]
fn ten_megabyte_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.yml");
    let mut text = String::from("hosts:\n");
    let mut i = 0;
    while text.len() < 10 * 1024 * 1024 {
        text.push_str(&format!(
            "  host{i}: {{address: 10.{}.{}.{}}}\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256
        ));
        i += 1;
    }
    std::fs::write(&big, &text).unwrap();
    let corpus = corpus_dir();
    let big_s = big.to_str().unwrap();
    let runs = [
        cutover(&corpus, &["check", "-i", big_s, "noop.yml"]),
        cutover(
            &corpus,
            &[
                "check",
                "-i",
                "inventory.yml",
                "--templates",
                "templates",
                big_s,
            ],
        ),
    ];
    for out in runs {
        let reported = check_failure_shape(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert!(
            reported.iter().any(|r| r.position == big_s
                && r.message.contains("cutover reads files of at most 4 MiB")),
            "{reported:#?}"
        );
    }
}

/// Usage errors are not validation errors: exit 64.
#[test]
fn usage_errors_exit_64() {
    let out = cutover(&corpus_dir(), &["check", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let out = cutover(&corpus_dir(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

/// What the ssh and sudo checks must keep accepting (issue 15, class 4): the escape hatch for
/// a risky keyword it names, keywords in any case, `jump_host: none` for the bastion itself
/// when `connection:` names it, jump chains with users and ports, IPv6 addresses, sudo's
/// `#UID`, ssh's `-`/`+` algorithm list syntax and multi-word values where ssh takes them.
#[test]
fn valid_ssh_settings_pass() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yml");
    std::fs::write(
        &inv,
        r##"connection:
  user: deploy
  jump_host: admin@bastion.example:2222
  become: true
  become_user: "#0"
  ssh_options:
    connecttimeout: 5
    KexAlgorithms: "-diffie-hellman-group1-sha1,+curve25519-sha256"
    IPQoS: af21 cs1
hosts:
  bastion:
    address: bastion.example
    jump_host: none
  app1:
    address: "fe80::1%eth0"
    jump_host: "ssh://admin@bastion.example:2222,[2001:db8::1]:22"
  app2:
    allow_unsafe_ssh_options: [ProxyCommand]
    ssh_options:
      ProxyCommand: "ssh -W %h:%p -l admin bastion.example"
"##,
    )
    .unwrap();
    let out = cutover(
        &corpus_dir(),
        &["check", "-i", inv.to_str().unwrap(), "noop.yml"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plan` and `apply` validate exactly as `check` does: a hostile ssh setting (issue 15,
/// class 4) and a semantic error (class 7) stop both before any host is touched.
#[test]
fn plan_and_apply_refuse_what_check_refuses() {
    let state = tempfile::tempdir().unwrap();
    let cases = [
        (
            "inventory/ssh_option_proxycommand.yml",
            "noop.yml",
            "inventory/ssh_option_proxycommand.yml:4:5",
        ),
        (
            "inventory/jump_host_loop.yml",
            "noop.yml",
            "inventory/jump_host_loop.yml:4:16",
        ),
        (
            "inventory.yml",
            "playbooks/handler_same_name.yml",
            "playbooks/handler_same_name.yml:9:13",
        ),
    ];
    for (inv, pb, position) in cases {
        for cmd in ["plan", "apply"] {
            let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
                .current_dir(corpus_dir())
                .env_remove("CUTOVER_INVENTORY")
                .env("CUTOVER_STATE_DIR", state.path())
                .args([cmd, pb, "-i", inv, "--templates", "templates"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} {pb} -i {inv}:\n{stderr}");
            assert!(
                stderr.contains(&format!("  --> {position}\n")),
                "{cmd} {pb} -i {inv}: want an error at {position}:\n{stderr}"
            );
        }
    }
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "a refused run left state behind"
    );
}
