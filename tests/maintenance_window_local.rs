//! The maintenance window's breakdown on a real run against the controller itself
//! (`address: local`, no lab): the page is the `maintenance` module's flag file in a temporary
//! directory (no `url:`, so no Apache is needed), the steps under it are a release switch, a
//! "migration" and checks, each taking measurable time.

mod common;

use std::path::Path;

use common::local::{cutover, one_at_a_time};
use common::project::text;
use serde_json::Value as J;

fn journal(dir: &Path) -> (String, Vec<J>) {
    let runs: Vec<String> = std::fs::read_dir(dir.join("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let text = std::fs::read_to_string(dir.join("state/runs").join(&runs[0]).join("journal.jsonl"))
        .unwrap();
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (runs[0].clone(), events)
}

fn playbook(d: &Path, www: &Path) {
    std::fs::create_dir_all(www).unwrap();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  controller:\n    address: local\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- name: before the page
  hosts: controller
  steps:
    - name: not under the page
      command: sleep 1
      changed_when: false
- name: under the page
  hosts: controller
  vars: {{ page_state: "on" }}
  steps:
    # Templated: the page state is read from the way back the step recorded (rendered).
    - name: Maintenance page on
      maintenance: {{ path: "{www}/maintenance.on", state: "{{{{ page_state }}}}" }}
    - name: current -> the new release
      file: {{ path: "{www}/current", state: link, src: "{www}" }}
    - name: Start the node alone (it migrates the schema)
      command: sleep 1.2
      changed_when: false
      phase: migration
    - name: The page is on
      assert: {{ that: ["true"] }}
    - name: Maintenance page off
      maintenance: {{ path: "{www}/maintenance.on", state: "off" }}
"#,
            www = www.display()
        ),
    )
    .unwrap();
}

/// The milliseconds a phase takes in a printed line (`migration 1.2s` → 1200).
fn phase_ms(line: &str, phase: &str) -> u64 {
    let after = line
        .split(&format!("{phase} "))
        .nth(1)
        .unwrap_or_else(|| panic!("{phase} in {line}"));
    let word = after.split([',', ';']).next().unwrap();
    if let Some(ms) = word.strip_suffix("ms") {
        ms.parse().unwrap()
    } else {
        (word.trim_end_matches('s').parse::<f64>().unwrap() * 1000.0) as u64
    }
}

#[test]
fn apply_and_show_print_the_window_split_by_phase() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let www = d.join("www");
    playbook(d, &www);

    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("maintenance window "))
        .unwrap_or_else(|| panic!("no window line in:\n{out}"));
    // The migration (sleep 1.2) is under the page; the sleep 1 before it is not.
    let migration = phase_ms(line, "migration");
    assert!((1100..2500).contains(&migration), "{line}");
    assert!(phase_ms(line, "switch") < 1000, "{line}");
    assert!(phase_ms(line, "checks") < 1000, "{line}");
    assert!(!line.contains("stops"), "{line}");
    assert!(!line.contains("still open"), "{line}");
    assert!(line.contains("cutover's own work"), "{line}");
    assert!(!www.join("maintenance.on").exists());

    // The journal says which step turned the page on and off, and each step's phase.
    let (run, events) = journal(d);
    let results: Vec<&J> = events
        .iter()
        .filter(|e| e["event"] == "step_result")
        .collect();
    let field =
        |name: &str, f: &str| results.iter().find(|e| e["name"] == name).unwrap()[f].clone();
    assert_eq!(field("Maintenance page on", "page"), "on");
    assert_eq!(field("Maintenance page off", "page"), "off");
    assert_eq!(field("Maintenance page on", "module"), "maintenance");
    assert_eq!(field("current -> the new release", "phase"), "switch");
    assert_eq!(field("not under the page", "phase"), "other");

    // `cutover show` prints the same line, from the journal alone.
    let o = cutover(d, &["show", &run]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).lines().any(|l| l == line),
        "{line}\nnot in:\n{}",
        text(&o)
    );
}

#[test]
fn json_output_puts_the_window_in_the_recap_and_a_run_without_the_page_prints_none() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    playbook(d, &d.join("www"));
    // The page is already on: the step changes nothing, and still opens the window.
    std::fs::write(d.join("www/maintenance.on"), "").unwrap();
    let o = cutover(d, &["apply", "-i", "inv.yml", "pb.yml", "--output", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let recap: J = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|e| e["event"] == "recap")
        .expect("a recap event");
    let w = &recap["maintenance_window"];
    let total = w["total_ms"].as_u64().unwrap();
    assert!(total >= 1200, "{w}");
    assert_eq!(
        w["own_ms"].as_u64().unwrap(),
        total - w["remote_ms"].as_u64().unwrap()
    );
    assert!(w["phases_ms"]["migration"].as_u64().unwrap() >= 1100, "{w}");
    assert_eq!(w["still_open"], false);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  controller:\n    address: local\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- name: no page\n  hosts: controller\n  steps:\n    - command: \"true\"\n      changed_when: false\n",
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("maintenance window"), "{}", text(&o));
}
