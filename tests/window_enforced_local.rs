//! The agreed maintenance window, enforced (issue #18 item 4), on real runs against the
//! controller itself (`address: local`, no lab): a "rehearsal" whose window is marked by
//! `window: start|end` steps, then a playbook that puts a maintenance page (a flag file) on,
//! refused before anything changed when the window is too short, not started or over, and
//! refused again just before the page step when staging took the time left.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::local::{cutover, one_at_a_time};
use common::project::text;
use serde_json::Value as J;

/// The controller, plus `extra` app nodes that no play touches (they only count for the
/// prediction's scaling: N app nodes start one at a time in production).
fn inventory(d: &Path, extra: usize, window: Option<(i64, i64)>, margin: u32) {
    let mut inv = String::from("hosts:\n  controller:\n    address: local\n");
    let mut nodes = vec!["controller".to_string()];
    for i in 0..extra {
        inv.push_str(&format!("  node{i}:\n    address: 10.255.0.{}\n", i + 1));
        nodes.push(format!("node{i}"));
    }
    inv.push_str(&format!(
        "groups:\n  app_nodes:\n    hosts: [{}]\n",
        nodes.join(", ")
    ));
    if let Some((from, to)) = window {
        inv.push_str(&format!(
            "maintenance_window:\n  start: \"{}\"\n  end: \"{}\"\nmaintenance_window_margin: {margin}\n",
            at(from),
            at(to)
        ));
    }
    std::fs::write(d.join("inv.yml"), inv).unwrap();
}

/// Now plus `secs` (negative: before now), RFC 3339.
fn at(secs: i64) -> String {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A rehearsal: its window (marked, no page) holds a 1.5 s "start of the node alone".
fn rehearsal(d: &Path) {
    std::fs::write(
        d.join("rehearse.yml"),
        r#"- name: rehearsal
  hosts: controller
  steps:
    - name: T0
      command: "true"
      changed_when: false
      window: start
    - name: Start the node alone (it migrates the schema)
      command: sleep 1.5
      changed_when: false
      phase: migration
    - name: T4
      command: "true"
      changed_when: false
      window: end
    - name: A check that fails when asked to
      command: "{{ check_exit | default(value='true') }}"
      changed_when: false
"#,
    )
    .unwrap();
}

/// Production: a change before the page (staging the release, undone by an unwind), the
/// page, the window's variables shown, the page off.
fn production(d: &Path, staging_secs: u32) {
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- name: staging the release
  hosts: controller
  on_failure: unwind
  steps:
    - name: Release staged
      copy: {{ dest: "{www}/staged", content: "2.0.0\n" }}
    - name: Staging takes its time
      command: sleep {staging_secs}
      changed_when: false
- name: under the page
  hosts: controller
  on_failure: unwind
  steps:
    - name: Maintenance page on
      maintenance: {{ path: "{www}/maintenance.on", state: "on" }}
    - name: Announce
      debug: {{ msg: "window ends {{{{ maintenance_window.end }}}}; predicted {{% if window_prediction is defined %}}{{{{ window_prediction.total_s }}}} s from {{{{ window_prediction.run }}}}{{% else %}}none{{% endif %}}" }}
    - name: Maintenance page off
      maintenance: {{ path: "{www}/maintenance.on", state: "off" }}
"#,
            www = www.display()
        ),
    )
    .unwrap();
}

fn runs(d: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(d.join("state/runs"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The one run started since `before` (ids sort by second only).
fn new_run(d: &Path, before: &[String]) -> String {
    let new: Vec<String> = runs(d)
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new[0].clone()
}

fn events(d: &Path, run: &str) -> Vec<J> {
    std::fs::read_to_string(d.join("state/runs").join(run).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn rehearse(d: &Path) -> String {
    rehearse_with(d, "inv.yml", "true")
}

/// A rehearsal with inventory `inv`, its last check exiting by `check` (`true`/`false`).
fn rehearse_with(d: &Path, inv: &str, check: &str) -> String {
    rehearsal(d);
    let before = runs(d);
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            inv,
            "rehearse.yml",
            "--output",
            "plain",
            "-e",
            &format!("check_exit={check}"),
        ],
    );
    if check == "false" {
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        return new_run(d, &before);
    }
    assert!(o.status.success(), "{}", text(&o));
    // The rehearsal's own window is measured from its marks, like a page's.
    assert!(
        text(&o)
            .lines()
            .any(|l| l.starts_with("maintenance window 1.")
                && l.contains("rehearsed: marked by `window:` steps")
                && l.contains("migration 1.")),
        "{}",
        text(&o)
    );
    new_run(d, &before)
}

fn plan_json(d: &Path) -> J {
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn too_short_a_window_refuses_before_anything_changes_and_the_plan_says_so() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    inventory(d, 4, None, 20);
    let rehearsal_run = rehearse(d);

    // 5 app nodes: 1.5 s + 4 × 1.5 s of start/migration/checks, + 100 % margin ≥ 15 s.
    inventory(d, 4, Some((-3600, 10)), 100);
    production(d, 0);
    let plan = plan_json(d);
    let w = &plan["maintenance_window"];
    assert_eq!(w["fit"], "too_short", "{w}");
    assert_eq!(w["prediction"]["run"], rehearsal_run.as_str(), "{w}");
    assert_eq!(w["prediction"]["app_nodes"], 5, "{w}");
    assert_eq!(w["prediction"]["margin_percent"], 100.0, "{w}");
    assert!(w["prediction"]["total_s"].as_u64().unwrap() >= 15, "{w}");
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml"]);
    assert!(
        text(&o).lines().any(
            |l| l.starts_with("Maintenance window: the maintenance window ")
                && l.contains("needed: does NOT fit; the predicted window is ")
                && l.contains(&format!("(rehearsal {rehearsal_run} measured 1."))
                && l.contains("scaled to 5 app nodes")
                && l.ends_with("+ 100 % margin)")
        ),
        "{}",
        text(&o)
    );

    let before = runs(d);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error: refusing to turn the maintenance page on: the maintenance window "),
        "{out}"
    );
    assert!(
        out.contains("left, shorter than the predicted window; the predicted window is "),
        "{out}"
    );
    assert!(
        out.contains(&format!("rehearsal {rehearsal_run} measured")),
        "{out}"
    );
    assert!(out.contains("+ 100 % margin"), "{out}");
    // Nothing touched: not even the step before the page ran.
    assert!(!d.join("www/staged").exists());
    assert!(!d.join("www/maintenance.on").exists());
    let ev = events(d, &new_run(d, &before));
    let kinds: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["run_started", "run_refused", "run_finished"],
        "{ev:?}"
    );
    assert_eq!(ev[1]["why"], "maintenance window");
    assert_eq!(ev[1]["maintenance_window"]["fit"], "too_short");
    assert_eq!(ev[2]["status"], "refused");
    // `cutover show` replays why.
    let o = cutover(d, &["show", ev[0]["run_id"].as_str().unwrap()]);
    assert!(
        text(&o).lines().any(|l| l
            .contains(" REFUSED (maintenance window): refusing to turn the maintenance page on: ")),
        "{}",
        text(&o)
    );

    // A window with room: the plan says it fits, the run goes, the steps see both variables.
    inventory(d, 4, Some((-60, 3600)), 100);
    assert_eq!(plan_json(d)["maintenance_window"]["fit"], "fits");
    let before = runs(d);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("left: fits; the predicted window is "),
        "{out}"
    );
    assert!(
        out.contains(&format!(" s from {rehearsal_run}")) && out.contains("window ends 20"),
        "{out}"
    );
    let ev = events(d, &new_run(d, &before));
    assert!(
        ev.iter()
            .any(|e| e["event"] == "window_checked" && e["fit"] == "fits"),
        "{ev:?}"
    );
    // The production run (a page, not marks) is no rehearsal: the prediction still comes from
    // the rehearsal.
    assert_eq!(
        plan_json(d)["maintenance_window"]["prediction"]["run"],
        rehearsal_run.as_str()
    );
}

#[test]
fn outside_the_window_refuses_and_without_a_rehearsal_the_window_alone_counts() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    production(d, 0);
    for (window, want) in [
        ((3600, 7200), "has not started (starts in "),
        ((-7200, -3600), "is over (ended 1h00m ago)"),
    ] {
        inventory(d, 0, Some(window), 20);
        let o = cutover(
            d,
            &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
        );
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.contains(want), "{want}: {out}");
        assert!(
            out.contains("no rehearsal on record: the window alone is checked"),
            "{out}"
        );
        assert!(!d.join("www/staged").exists());
    }
    // Inside the window, no rehearsal: a warning, and the run goes.
    inventory(d, 0, Some((-60, 60)), 20);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("warning: no rehearsal of this inventory on record"),
        "{out}"
    );
    assert!(out.contains("predicted none"), "{out}");
}

#[test]
fn the_window_is_checked_again_just_before_the_page_and_the_run_unwinds() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    inventory(d, 0, None, 20);
    let rehearsal_run = rehearse(d);
    production(d, 4);
    inventory(d, 0, Some((-60, 3600)), 100);
    let needed = plan_json(d)["maintenance_window"]["prediction"]["total_s"]
        .as_u64()
        .unwrap() as i64;
    // Fits when the run starts; 4 s of staging later it does not.
    inventory(d, 0, Some((-60, needed + 2)), 100);
    let before = runs(d);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("left: fits"), "{out}");
    assert!(
        out.contains("refusing to turn the maintenance page on"),
        "{out}"
    );
    assert!(out.contains(&format!("rehearsal {rehearsal_run}")), "{out}");
    // The page never went on, and the staged release was taken back.
    assert!(!d.join("www/maintenance.on").exists());
    assert!(!d.join("www/staged").exists(), "{out}");
    let ev = events(d, &new_run(d, &before));
    let page = ev
        .iter()
        .find(|e| e["event"] == "step_result" && e["name"] == "Maintenance page on")
        .expect("the page step's result");
    assert_eq!(page["status"], "failed", "{page}");
    assert!(page["detail"].as_str().unwrap().contains("has "), "{page}");
}

#[test]
fn the_newest_successful_rehearsal_of_this_inventory_predicts() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    production(d, 0);
    inventory(d, 0, None, 20);
    let first = rehearse(d);
    // Another inventory file (the same hosts): its rehearsals predict only its own runs.
    std::fs::copy(d.join("inv.yml"), d.join("other.yml")).unwrap();
    rehearse_with(d, "other.yml", "true");
    inventory(d, 0, Some((-60, 3600)), 20);
    let predicted_by = |inv: &str| {
        let o = cutover(d, &["plan", "-i", inv, "pb.yml", "--format", "json"]);
        let plan: J = serde_json::from_slice(&o.stdout).unwrap();
        plan["maintenance_window"]["prediction"]["run"].clone()
    };
    assert_eq!(predicted_by("inv.yml"), first.as_str());
    // `-i ./x/../inv.yml` names the same inventory.
    std::fs::create_dir_all(d.join("x")).unwrap();
    assert_eq!(predicted_by("./x/../inv.yml"), first.as_str());
    let newer = rehearse(d);
    assert_eq!(predicted_by("inv.yml"), newer.as_str());
    // A rehearsal that failed (after its window closed) predicts nothing.
    let failed = rehearse_with(d, "inv.yml", "false");
    assert_ne!(failed, newer);
    assert_eq!(predicted_by("inv.yml"), newer.as_str());
    // other.yml declares no window: its plan shows none.
    let o = cutover(d, &["plan", "-i", "other.yml", "pb.yml"]);
    assert!(!text(&o).contains("Maintenance window:"), "{}", text(&o));
}
