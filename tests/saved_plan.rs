//! `cutover apply PLAN.json` refuses, before any host is contacted (no lock, no journal, no
//! connection), a plan that cannot be applied as it was reviewed, and a drifted plan's refusal
//! shows what drifted. Needs no lab: the reachable host is `address: local` (a temporary
//! directory of this machine), the unreachable one a closed port on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// An inventory with `loc` (local) and `dead` (nothing listens), a playbook writing one
    /// file for `loc`, a template directory and a -e file.
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let p = Project { dir };
        p.write(
            "inv.yml",
            "hosts:\n  loc: { address: local }\n  dead: { address: 127.0.0.1, port: 1, ssh_options: { ConnectTimeout: 1 } }\n",
        );
        let out = p.path("out.txt");
        p.write(
            "pb.yml",
            &format!(
                "- hosts: loc\n  steps:\n    - name: write the file\n      copy: {{ dest: {}, content: \"line1\\nLINE2\\nline3\\n\" }}\n    - name: and its copy\n      template: {{ src: t.j2, dest: {}.copy }}\n      tags: [copies]\n",
                out.display(),
                out.display()
            ),
        );
        p.write("templates/t.j2", "v={{ v }}\n");
        p.write("vars.yml", "v: 1\n");
        p.write("out.txt", "line1\nline2\nline3\n");
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn cutover(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CUTOVER_INVENTORY")
            .env("CUTOVER_STATE_DIR", self.path("state"))
            .env("XDG_RUNTIME_DIR", self.path("runtime"))
            .output()
            .unwrap()
    }

    /// `cutover plan … --out plan.json` for the playbook `pb`; its exit code.
    fn plan(&self, pb: &str, extra: &[&str]) -> Option<i32> {
        let mut args = vec![
            "plan",
            "-i",
            "inv.yml",
            "-e",
            "@vars.yml",
            pb,
            "--out",
            "plan.json",
        ];
        args.extend_from_slice(extra);
        let o = self.cutover(&args);
        assert!(self.path("plan.json").exists(), "{o:?}");
        o.status.code()
    }

    /// Nothing was started: no journal, no lock, and the local host's file is untouched.
    fn assert_untouched(&self) {
        assert!(!self.path("state").exists(), "a run was started");
        assert_eq!(
            std::fs::read_to_string(self.path("out.txt")).unwrap(),
            "line1\nline2\nline3\n"
        );
        assert!(!self.path("out.txt.copy").exists());
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit `code`, an error whose message holds `message` at `position` (`--> position`).
fn assert_refused(o: &Output, code: i32, position: &str, message: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let found = lines.windows(2).any(|w| {
        w[0].starts_with("error: ") && w[0].contains(message) && w[1] == format!("  --> {position}")
    });
    assert!(found, "no `{message}` at {position}:\n{err}");
}

fn line_of(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", file.display()))
        + 1
}

#[test]
fn a_plan_format_this_cutover_does_not_know_is_refused_naming_it() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    let text = std::fs::read_to_string(p.path("plan.json")).unwrap();
    p.write(
        "plan.json",
        &text.replace("cutover.plan/v1", "cutover.plan/v9"),
    );
    let o = p.cutover(&["apply", "-i", "inv.yml", "-e", "@vars.yml", "plan.json"]);
    let at = line_of(&p.path("plan.json"), "\"schema\"");
    assert_refused(
        &o,
        1,
        &format!("plan.json:{at}:3"),
        "plan.json is a plan in format `cutover.plan/v9`, which this cutover does not know (it reads `cutover.plan/v1`)",
    );
    p.assert_untouched();
    // Broken JSON, and JSON that is no plan: refused where they are broken.
    p.write(
        "plan.json",
        "{\n  \"schema\": \"cutover.plan/v1\",\n  \"hosts\": [\n}\n",
    );
    let o = p.cutover(&["apply", "-i", "inv.yml", "plan.json"]);
    assert_refused(&o, 1, "plan.json:4:1", "plan.json is not valid JSON");
    p.write(
        "plan.json",
        "{\n  \"schema\": \"cutover.plan/v1\",\n  \"hosts\": 3\n}\n",
    );
    let o = p.cutover(&["apply", "-i", "inv.yml", "plan.json"]);
    assert_refused(
        &o,
        1,
        "plan.json:3:12",
        "is not a valid `cutover.plan/v1` plan",
    );
    p.write("plan.json", "{ \"steps\": [] }\n");
    let o = p.cutover(&["apply", "-i", "inv.yml", "plan.json"]);
    assert_refused(
        &o,
        1,
        "plan.json:1:1",
        "plan.json is JSON but no cutover plan",
    );
    p.assert_untouched();
}

#[test]
fn a_plan_with_a_host_unreachable_when_planned_is_refused_before_connecting() {
    let p = Project::new();
    p.write(
        "all.yml",
        &std::fs::read_to_string(p.path("pb.yml"))
            .unwrap()
            .replace("hosts: loc", "hosts: all"),
    );
    assert_eq!(p.plan("all.yml", &[]), Some(1));
    let at = line_of(&p.path("plan.json"), "\"host\": \"dead\"");
    let o = p.cutover(&["apply", "-i", "inv.yml", "-e", "@vars.yml", "plan.json"]);
    assert_refused(
        &o,
        1,
        &format!("plan.json:{at}:7"),
        "plan.json: host `dead` was unreachable when the plan was made",
    );
    assert!(stderr(&o).contains("nothing was reviewed for it"));
    p.assert_untouched();
}

#[test]
fn a_plan_made_from_other_inputs_says_which_file_before_connecting() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    let plan = p.path("plan.json");
    let cases: [(&str, &str, &str); 4] = [
        ("pb.yml", "# edited\n", "playbook `pb.yml` differs"),
        ("inv.yml", "# edited\n", "inventory `inv.yml` differs"),
        (
            "templates/t.j2",
            "edited\n",
            "template `templates/t.j2` differs",
        ),
        ("vars.yml", "w: 2\n", "-e file `vars.yml` differs"),
    ];
    for (file, appended, message) in cases {
        let before = std::fs::read_to_string(p.path(file)).unwrap();
        p.write(file, &format!("{before}{appended}"));
        let o = p.cutover(&["apply", "-i", "inv.yml", "-e", "@vars.yml", "plan.json"]);
        let key = serde_json::to_string(file).unwrap();
        let at = line_of(&plan, &format!("{key}:"));
        assert_refused(&o, 1, &format!("plan.json:{at}:5"), message);
        p.write(file, &before);
    }
    // An input the plan was not made from, and one it was made from that is missing.
    let o = p.cutover(&[
        "apply",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "-e",
        "x=1",
        "plan.json",
    ]);
    let at = line_of(&plan, "\"inputs\":");
    assert_refused(
        &o,
        1,
        &format!("plan.json:{at}:3"),
        "variable `-e x` is an input of this run but not of the plan",
    );
    let o = p.cutover(&["apply", "-i", "inv.yml", "plan.json"]);
    let at = line_of(&plan, "\"vars.yml\":");
    assert_refused(
        &o,
        1,
        &format!("plan.json:{at}:5"),
        "`vars.yml` was an input of the plan and is not one of this run",
    );
    p.assert_untouched();
}

#[test]
fn options_that_name_nothing_are_refused_with_a_suggestion_before_connecting() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    for target in ["pb.yml", "plan.json"] {
        let o = p.cutover(&[
            "apply",
            "-i",
            "inv.yml",
            "-e",
            "@vars.yml",
            target,
            "--start-at-step",
            "write teh file",
            "--tags",
            "copis",
            "--skip-tags",
            "copy",
            "--approve",
            "upgrade",
        ]);
        assert_refused(
            &o,
            1,
            "<--start-at-step>",
            "--start-at-step `write teh file` names no step of pb.yml",
        );
        assert_refused(&o, 1, "<--tags>", "--tags `copis` names no tag of pb.yml");
        assert_refused(
            &o,
            1,
            "<--skip-tags>",
            "--skip-tags `copy` names no tag of pb.yml",
        );
        assert_refused(
            &o,
            1,
            "<--approve>",
            "--approve `upgrade` names no approve stage",
        );
        let err = stderr(&o);
        assert!(
            err.contains("= help: did you mean `write the file`?"),
            "{err}"
        );
        assert!(err.contains("= help: did you mean `copies`?"), "{err}");
        assert!(
            err.ends_with("4 errors found; nothing was run on any host\n"),
            "{err}"
        );
    }
    p.assert_untouched();
}

#[test]
fn options_that_would_apply_other_than_the_plan_are_a_usage_error() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    let o = p.cutover(&[
        "apply",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "plan.json",
        "--limit",
        "loc",
        "--start-at-step",
        "and its copy",
        "--tags",
        "copies",
    ]);
    assert_refused(
        &o,
        64,
        "<--limit>",
        "--limit loc: plan.json was made without --limit",
    );
    assert_refused(
        &o,
        64,
        "<--start-at-step>",
        "--start-at-step and its copy: plan.json is applied whole",
    );
    assert_refused(
        &o,
        64,
        "<--tags>",
        "--tags copies: plan.json was made with --tags []",
    );
    p.assert_untouched();
}

#[test]
fn a_drifted_plan_shows_what_the_host_has_now() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    p.write("out.txt", "line1\nline2-edited\nline3\n");
    let o = p.cutover(&["apply", "-i", "inv.yml", "-e", "@vars.yml", "plan.json"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "error: plan.json no longer matches the hosts or the inputs; nothing was applied:\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("  - loc: step \"write the file\" was planned as change (update "),
        "{err}"
    );
    let diff = "      --- on the host when planned\n      +++ on the host now\n      @@ -1,3 +1,3 @@\n       line1\n      -line2\n      +line2-edited\n       line3\n";
    assert!(err.contains(diff), "want the content that drifted:\n{err}");
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt")).unwrap(),
        "line1\nline2-edited\nline3\n",
        "nothing applied"
    );
}

#[test]
fn a_plan_with_an_unreachable_host_never_says_no_changes() {
    let p = Project::new();
    p.write("out.txt.copy", "v=1\n");
    p.write("out.txt", "line1\nLINE2\nline3\n");
    p.write(
        "all.yml",
        &std::fs::read_to_string(p.path("pb.yml"))
            .unwrap()
            .replace("hosts: loc", "hosts: all"),
    );
    let o = p.cutover(&["plan", "-i", "inv.yml", "-e", "@vars.yml", "all.yml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(!out.contains("No changes"), "{out}");
    assert!(
        out.ends_with("Incomplete: 1 host was unreachable and not probed (dead); nothing is known about it.\n"),
        "{out}"
    );
    let o = p.cutover(&[
        "plan",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "all.yml",
        "--format",
        "markdown",
    ]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("## `dead`\n\nUnreachable: not probed, nothing is known.\n"),
        "{md}"
    );
    // With every host reachable and nothing to do, it still says so.
    let o = p.cutover(&["plan", "-i", "inv.yml", "-e", "@vars.yml", "pb.yml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.ends_with("No changes: the hosts already match the playbook.\n"),
        "{out}"
    );
}

#[test]
fn output_files_need_a_directory_before_any_host_is_touched() {
    let p = Project::new();
    let o = p.cutover(&[
        "apply",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "pb.yml",
        "--junit",
        "no/such/r.xml",
    ]);
    assert_refused(
        &o,
        1,
        "<--junit>",
        "--junit no/such/r.xml: directory no/such does not exist",
    );
    let o = p.cutover(&[
        "plan",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "pb.yml",
        "--out",
        "gone/plan.json",
    ]);
    assert_refused(
        &o,
        1,
        "<--out>",
        "--out gone/plan.json: directory gone does not exist",
    );
    assert!(o.stdout.is_empty(), "no host was probed");
    p.assert_untouched();
}

/// A plan made from the same inputs, hosts unchanged, applies exactly (with a -e file, a
/// template and `--tags`/`--limit` repeating the plan's).
#[test]
fn an_unchanged_plan_applies() {
    let p = Project::new();
    assert_eq!(
        p.plan("pb.yml", &["--limit", "loc", "--tags", "copies"]),
        Some(2)
    );
    let args = [
        "apply",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "plan.json",
        "--limit",
        "loc",
        "--tags",
        "copies",
        "--output",
        "plain",
    ];
    let o = apply_waiting_for_the_local_lock(&p, &args);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt.copy")).unwrap(),
        "v=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt")).unwrap(),
        "line1\nline2\nline3\n",
        "only the tagged step, as planned"
    );
}

/// The host lock of `address: local` is the controller's own: another local run is waited for.
fn apply_waiting_for_the_local_lock(p: &Project, args: &[&str]) -> Output {
    let mut o = p.cutover(args);
    for _ in 0..60 {
        if o.status.code() != Some(5) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        o = p.cutover(args);
    }
    o
}

/// Valid options still run as before: `--start-at-step` naming a step starts there.
#[test]
fn start_at_step_naming_a_step_starts_there() {
    let p = Project::new();
    let args = [
        "apply",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "pb.yml",
        "--start-at-step",
        "and its copy",
        "--output",
        "plain",
    ];
    let o = apply_waiting_for_the_local_lock(&p, &args);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt")).unwrap(),
        "line1\nline2\nline3\n",
        "the step before it did not run"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt.copy")).unwrap(),
        "v=1\n"
    );
}

/// Nothing in a saved plan is derived from a secret: neither the value nor a plain hash of
/// it (or of a file around it, whose rest a reader knows) that could be brute-forced.
#[test]
fn a_saved_plan_holds_no_hash_of_a_secret() {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let p = Project::new();
    p.write(
        "inv.yml",
        "secret_vars: [db_password]\nhosts:\n  loc: { address: local }\n",
    );
    p.write("vars.yml", "v: 1\ndb_password: s3cret-Pw-42\n");
    p.write("templates/t.j2", "v={{ v }} pw={{ db_password }}\n");
    let o = p.cutover(&[
        "plan",
        "-i",
        "inv.yml",
        "-e",
        "@vars.yml",
        "-e",
        "api_token=tok-Value-77",
        "pb.yml",
        "--out",
        "plan.json",
    ]);
    assert!(p.path("plan.json").exists(), "{o:?}");
    let plan = std::fs::read_to_string(p.path("plan.json")).unwrap();
    let vars = std::fs::read(p.path("vars.yml")).unwrap();
    for derived in [
        "s3cret-Pw-42".to_string(),
        hex(b"s3cret-Pw-42"),
        hex(b"\"s3cret-Pw-42\""),
        hex(&vars),
    ] {
        assert!(!plan.contains(&derived), "the plan holds {derived}");
    }
    // A change of a non-secret value of the -e file is still a changed input.
    p.write("vars.yml", "v: 2\ndb_password: s3cret-Pw-42\n");
    let o = p.cutover(&[
        "apply",
        "plan.json",
        "-e",
        "@vars.yml",
        "-e",
        "api_token=tok-Value-77",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("vars.yml"),
        "{o:?}"
    );
}

/// The hosts a plan says it covers are what a reviewer reads first: a plan edited to name
/// other hosts (or none) is refused before any host is contacted, naming both lists.
#[test]
fn a_plan_naming_other_hosts_than_the_run_covers_is_refused_before_connecting() {
    let p = Project::new();
    assert_eq!(p.plan("pb.yml", &[]), Some(2));
    let text = std::fs::read_to_string(p.path("plan.json")).unwrap();
    let mut plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan["hosts"], serde_json::json!(["loc"]));
    for (hosts, named) in [
        (serde_json::json!(["dead"]), "dead"),
        (serde_json::json!([]), "no host"),
    ] {
        plan["hosts"] = hosts;
        p.write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
        let o = p.cutover(&["apply", "-i", "inv.yml", "-e", "@vars.yml", "plan.json"]);
        let at = line_of(&p.path("plan.json"), "\"hosts\"");
        assert_refused(
            &o,
            1,
            &format!("plan.json:{at}:3"),
            &format!("plan.json: the plan covers {named}, but this run would cover loc"),
        );
        p.assert_untouched();
    }
}
