//! `include_steps:` run against the controller itself (`address: local`): one step file used
//! twice with different `vars:`, nested includes, `when:` and `tags:` beside an include, `-e`
//! over an include's value, and the plan and journal naming each step's own file and line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::local::cutover;
use common::project::text;
use serde_json::Value as J;

/// `pb.yml` makes `data/a` (mode 0750, with `inner` 0755 from a nested include) and, only
/// when `make_b`, `data/b` (0700): the same step file, included twice.
fn project(d: &Path) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("playbooks/steps")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(
        d.join("playbooks/pb.yml"),
        format!(
            r#"- hosts: n1
  vars: {{ base: "{data}", make_b: false }}
  steps:
    - include_steps: steps/dir.yml
      vars: {{ dir: "{{{{ base }}}}/a", mode: "0750" }}
      tags: [a]
    - include_steps: steps/dir.yml
      vars: {{ dir: "{{{{ base }}}}/b", mode: "0700" }}
      when: make_b
"#,
            data = d.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("playbooks/steps/dir.yml"),
        "- name: The directory\n  file: { path: \"{{ dir }}\", state: directory, mode: \"{{ mode }}\" }\n\
         - include_steps: inner.yml\n  vars: { mode: \"0755\" }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("playbooks/steps/inner.yml"),
        "# the inner directory\n- name: The inner directory\n  file: { path: \"{{ dir }}/inner\", state: directory, mode: \"{{ mode }}\" }\n",
    )
    .unwrap();
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[test]
fn a_step_file_runs_once_per_include_with_its_own_vars_and_names_its_file() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let plan = cutover(
        d,
        &[
            "plan",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--format",
            "json",
        ],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let p: J = serde_json::from_slice(&plan.stdout).unwrap();
    let changes: Vec<(&str, &str)> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "change")
        .map(|e| (e["summary"].as_str().unwrap(), e["at"].as_str().unwrap()))
        .collect();
    let a = d.join("data/a");
    assert_eq!(
        changes,
        [
            (
                format!("create directory {} (mode - → 0750)", a.display()).as_str(),
                "playbooks/steps/dir.yml:1"
            ),
            (
                format!("create directory {}/inner (mode - → 0755)", a.display()).as_str(),
                "playbooks/steps/inner.yml:2"
            ),
        ]
    );
    assert_eq!(mode(&a), None, "a plan writes nothing");

    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--output",
            "plain",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(mode(&a), Some(0o750));
    assert_eq!(
        mode(&a.join("inner")),
        Some(0o755),
        "the inner include's mode wins"
    );
    assert_eq!(mode(&d.join("data/b")), None, "`when: make_b` is false");
    let at: Vec<(String, String)> = common::local::latest_journal(d)
        .iter()
        .filter(|e| e["event"] == "step_result")
        .map(|e| {
            (
                e["status"].to_string(),
                e["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            ("\"changed\"", "playbooks/steps/dir.yml:1"),
            ("\"changed\"", "playbooks/steps/inner.yml:2"),
            ("\"skipped\"", "playbooks/steps/dir.yml:1"),
            ("\"skipped\"", "playbooks/steps/inner.yml:2"),
        ]
        .map(|(s, a)| (s.to_string(), a.to_string()))
    );
}

#[test]
fn when_tags_and_the_command_line_reach_the_included_steps() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    // `-e mode=0711` wins over both includes' `mode`; `make_b` lets the second include run.
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--output",
            "plain",
            "-e",
            "make_b=true",
            "-e",
            "mode=0711",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for p in ["a", "a/inner", "b", "b/inner"] {
        assert_eq!(mode(&d.join("data").join(p)), Some(0o711), "{p}");
    }
    // `--tags a` runs the first include's steps only (their tag comes from the include).
    std::fs::remove_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--output",
            "plain",
            "-e",
            "make_b=true",
            "--tags",
            "a",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(mode(&d.join("data/a/inner")), Some(0o755));
    assert_eq!(mode(&d.join("data/b")), None, "{}", text(&o));
}

#[test]
fn a_saved_plan_is_refused_when_a_step_file_changed_since() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let plan = cutover(
        d,
        &[
            "plan",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--out",
            "plan.json",
        ],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let inner = d.join("playbooks/steps/inner.yml");
    let edited = std::fs::read_to_string(&inner)
        .unwrap()
        .replace("/inner", "/other");
    std::fs::write(&inner, edited).unwrap();
    let o = cutover(d, &["apply", "plan.json", "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("playbooks/steps/inner.yml"), "{out}");
    assert_eq!(mode(&d.join("data/a")), None, "nothing applied: {out}");
}

/// A step file whose step retries on its own registered result, included in two plays (one
/// play registers a name once): the second
/// include's `until:` reads that step's new result, not the first one's, so the plan knows it
/// (it is not "unknown until the first runs").
#[test]
fn a_step_reading_its_own_result_again_is_planned_each_time_it_is_included() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("steps")).unwrap();
    std::fs::write(
        d.join("steps/wait.yml"),
        "- name: Wait\n  command: \"true\"\n  register: waited\n  changed_when: false\n  until: waited.rc == 0\n  retries: 3\n  delay: 1\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - include_steps: steps/wait.yml\n- hosts: n1\n  steps:\n    - include_steps: steps/wait.yml\n",
    )
    .unwrap();
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p: J = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<&str> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["no_change", "no_change"], "{p}");
}

/// A step delegated through a template (as the member step files are, to `{{ lb_host }}`): the
/// plan keeps what it would change on the host it renders to, so a later step there is probed
/// against it (the directory is planned once, the second step finds it planned).
#[test]
fn a_templated_delegate_to_is_planned_on_the_host_it_names() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  n1: { address: local, vars: { other: n2 } }\n  n2: { address: local }\n",
    )
    .unwrap();
    let target = d.join("made");
    std::fs::write(
        d.join("pb.yml"),
        format!(
            "- hosts: n1\n  steps:\n    - file: {{ path: \"{t}\", state: directory }}\n      delegate_to: \"{{{{ other }}}}\"\n    - file: {{ path: \"{t}\", state: directory }}\n      delegate_to: n2\n",
            t = target.display()
        ),
    )
    .unwrap();
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let p: J = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<&str> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["change", "no_change"], "{p}");
    assert!(!target.exists(), "a plan writes nothing");
}
