//! The shipped procedures (playbooks/upgrade.yml, rehearse.yml) against the lab's real cluster:
//! a v1 → v2 upgrade with its maintenance window, a broken v3 rolled back by itself, a controller
//! killed mid-upgrade then resumed or rolled back, and a rehearsal that never touches production.
//!
//! Needs the lab up and provisioned at v1 (playbooks/site.yml). Every test leaves it at v1:
//! an upgrade is undone with `cutover rollback` (the snapshots bring the database back too — the
//! app refuses a schema newer than its own); where a test commits an upgrade, it first takes a
//! restore point by running upgrade.yml to the release already installed.

mod common;

use common::cluster::*;
use common::project::{lab_inventory_text, repo_file, text, Project};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share one cluster: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn upgrade_v1_to_v2_then_commit_removes_the_snapshots() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    // Restore point: upgrade.yml to the release already installed (v1) — a complete run with
    // snapshots, rolled back at the end to bring the cluster back to v1 after the commit.
    let restore_set = unique("restore");
    let (o, restore) = upgrade(&p, "1.0.0", 1, &restore_set);
    assert!(o.status.success(), "restore point:\n{}", text(&o));

    let pages = write_pages("v2");
    let set = unique("v2");
    clear_announcements();
    assert_the_plan_shows_the_start_announcement_and_sends_nothing(&p, &set);
    let (o, id) = upgrade(&p, "2.0.0", 2, &set);
    let out = text(&o);
    assert!(o.status.success(), "upgrade to 2.0.0:\n{out}");
    let secs = maintenance_seconds(&out);
    assert!(secs > 0 && secs < 600, "maintenance window {secs} s");
    assert_window_breakdown(&out, secs);
    assert_announced_start_then_success(&id, &out);

    assert_cluster_serves("2.0.0", 2);
    // The plugins pinned for 2.0.0 replaced 1.0.0's on both nodes, enabled without a restart.
    assert_plugins_enabled(PLUGINS_V2);
    assert_pages(&pages);
    // The pages written before carry the upgrade task's mark (schema 2 really migrated them).
    let h = curl(&[
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://lb/pages/{}", pages.keys().next().unwrap()),
    ]);
    assert!(h.contains("X-Wiki-Updated-By: upgrade-task-2"), "{h}");
    let (m, s) = db_checksums();
    assert_eq!(m, s, "master and slave hold the same data");
    assert!(m.contains_key("PAGE_HISTORY"), "schema 2 tables: {m:?}");

    // Snapshots until commit, none after.
    let snaps = snapshots_of(&set);
    for h in ["app1:", "app2:", "db1:", "db2:"] {
        assert!(
            snaps.contains(h),
            "no snapshot of set {set} on {h}\n{snaps}"
        );
    }
    let o = p.run_cluster(&after_args("commit", &id, &[]));
    assert!(o.status.success(), "commit:\n{}", text(&o));
    assert_eq!(
        snapshots_of(&set),
        "",
        "commit removed every snapshot of {set}"
    );
    let o = p.run_cluster(&after_args("rollback", &id, &[]));
    assert!(
        !o.status.success() && text(&o).contains("was committed"),
        "{}",
        text(&o)
    );

    // Back to v1 through the restore point (its snapshots predate the upgrade). Users wrote
    // after the restore point's window (the pages, the v2 upgrade): discarding that is said
    // explicitly, and what is discarded is kept first.
    let o = p.run_cluster(&after_args(
        "rollback",
        &restore,
        &["--discard-writes-since-window".into()],
    ));
    assert!(o.status.success(), "rollback {restore}:\n{}", text(&o));
    assert!(text(&o).contains("kept first"), "{}", text(&o));
    assert_cluster_serves("1.0.0", 1);
    assert_plugins_enabled(PLUGINS_V1);
    assert_eq!(snapshots_of(&restore_set), "");
    remove_kept_sets(&restore_set);
}

/// The sets a rollback with --discard-writes-since-window kept (`kept-SET-…`), on every host.
fn kept_sets(set: &str) -> String {
    let mut all = String::new();
    for h in ["app1", "app2", "db1", "db2"] {
        all.push_str(&ssh(
            h,
            &format!("ls /srv/vol/.snapshots 2>/dev/null | grep '^kept-{set}-' | sed 's/^/{h}:/'"),
        ));
    }
    all
}

fn remove_kept_sets(set: &str) {
    for h in ["app1", "app2", "db1", "db2"] {
        ssh(
            h,
            &format!("for s in /srv/vol/.snapshots/kept-{set}-*; do [ -e \"$s\" ] && btrfs subvolume delete \"$s\" >/dev/null; done; true"),
        );
    }
    assert_eq!(kept_sets(set), "", "kept sets removed");
}

/// Issue 21, item 6: a rollback hours after the window would merge the database snapshot
/// back and silently discard what users wrote since. It is refused, naming what would be lost
/// (transactions by table, files of the app home, since when); `--plan` says the same without
/// changing anything; with `--discard-writes-since-window` it proceeds, but keeps the current
/// data first (a second snapshot set, printed), which holds the pages written after the window.
#[test]
fn a_rollback_that_would_discard_users_writes_is_refused_then_keeps_them() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let set = unique("lost");
    let (o, id) = upgrade(&p, "2.0.0", 2, &set);
    assert!(o.status.success(), "upgrade to 2.0.0:\n{}", text(&o));
    let written = users_write_after_the_window();
    // One cluster-safety interval: the app's own heartbeat writes (not user data) are there too.
    std::thread::sleep(Duration::from_secs(11));
    assert_the_rollback_plan_names_the_loss(&p, &id);
    assert_the_rollback_is_refused_and_changes_nothing(&p, &id, &set);
    // Named explicitly: it proceeds, keeping the current data first.
    let o = p.run_cluster(&after_args(
        "rollback",
        &id,
        &["--discard-writes-since-window".into()],
    ));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("the current data is kept first"), "{out}");
    let kept_db = format!("/srv/vol/.snapshots/kept-{set}-");
    assert!(out.contains(&format!("db1: {kept_db}")), "{out}");
    assert_cluster_serves("1.0.0", 1);
    assert_eq!(snapshots_of(&set), "", "every snapshot merged");
    for name in &written {
        let code = curl(&[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://lb/pages/{name}"),
        ]);
        assert_eq!(code, "404", "{name} was discarded from the live data");
    }
    // ... and is in the kept copy of the master's datadir (stopped cleanly before the merge),
    // as the attachment is in the kept copy of app1's home.
    for name in &written {
        assert_eq!(
            ssh(
                "db1",
                &format!("grep -q -a -- {name} {kept_db}*-mysql/wiki/PAGES.ibd && echo kept")
            )
            .trim(),
            "kept",
            "{name} in the kept datadir"
        );
    }
    assert_eq!(
        ssh(
            "app1",
            &format!("cat {kept_db}*-home/attachments/after-window.pdf")
        ),
        "scan\n"
    );
    assert!(ssh("app1", "ls /var/lib/wiki/attachments 2>&1").contains("No such file"));
    let j = journal_of(&p, &id);
    let kept = j
        .iter()
        .find(|e| e["event"] == "rollback_discarding")
        .expect("the discard is journaled");
    assert!(kept["kept"].to_string().contains(&kept_db), "{kept}");
    let runs = text(&p.run(&["runs"]));
    let line = runs.lines().find(|l| l.starts_with(&id)).unwrap_or("");
    assert!(line.contains("  rolled back at 20"), "{runs}");
    assert_no_host_locks();
    remove_kept_sets(&set);
}

fn assert_the_rollback_is_refused_and_changes_nothing(p: &Project, id: &str, set: &str) {
    // The rollback itself: refused, exit 1, the same loss, nothing changed, journaled.
    let o = p.run_cluster(&after_args("rollback", id, &[]));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("rollback of run {id} refused")),
        "{out}"
    );
    let db_line = out
        .lines()
        .find(|l| l.contains("db1: since the window closed at"))
        .unwrap_or_else(|| panic!("no db1 line:\n{out}"));
    assert!(
        db_line.contains("database: ")
            && db_line.contains(" transactions on ")
            && db_line.contains("wiki.PAGES (2)")
            && db_line.contains("only on ignored tables"),
        "{db_line}"
    );
    assert!(out.contains("--discard-writes-since-window"), "{out}");
    assert_cluster_serves("2.0.0", 2);
    assert!(
        !snapshots_of(set).is_empty(),
        "the snapshots are still there"
    );
    assert_no_host_locks();
    let j = journal_of(p, id);
    assert!(j.iter().any(|e| e["event"] == "rollback_refused"));
    assert!(
        !j.iter().any(|e| e["event"] == "undo_result"),
        "nothing undone"
    );
    let runs = text(&p.run(&["runs"]));
    assert!(runs.contains("ok, rollback refused at 20"), "{runs}");
}

fn assert_the_rollback_plan_names_the_loss(p: &Project, id: &str) {
    // The plan of the rollback: the loss, exit 1, nothing changed.
    let o = p.run_cluster(&after_args("rollback", id, &["--plan".into()]));
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains("would undo") && plan.contains("would be REFUSED"),
        "{plan}"
    );
    assert!(
        plan.contains("db1: since the window closed at 20"),
        "{plan}"
    );
    assert!(plan.contains("wiki.PAGES (2)"), "{plan}");
    assert!(
        plan.contains("app1: since the window closed at 20")
            && plan.contains("/var/lib/wiki: 1 file written (e.g. attachments/after-window.pdf)"),
        "{plan}"
    );
    assert!(
        !plan.contains("app2: since"),
        "nothing written on app2's home: {plan}"
    );
}

fn users_write_after_the_window() -> Vec<String> {
    // Users write again: two pages through the load balancer, an attachment on app1's home.
    let written: Vec<String> = (0..2).map(|i| format!("{}-{i}", unique("after"))).collect();
    for name in &written {
        put_page(name, "written after the window");
    }
    ssh(
        "app1",
        "mkdir -p /var/lib/wiki/attachments && echo scan > /var/lib/wiki/attachments/after-window.pdf",
    );

    written
}

#[test]
fn upgrade_to_broken_v3_rolls_back_by_itself() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("v3");
    let (m0, s0) = db_checksums();
    assert_eq!(m0, s0);

    let set = unique("v3");
    clear_announcements();
    let (o, id) = upgrade(&p, "3.0.0", 3, &set);
    let out = text(&o);
    assert!(!o.status.success(), "the broken release must fail:\n{out}");
    assert!(out.contains("UNWIND"), "the run unwound itself:\n{out}");
    assert_announced_the_rollback(&p, &id, &out);
    assert!(
        p.journal_text(&id)
            .contains("\"event\":\"unwind_finished\""),
        "unwind recorded"
    );

    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 identical to before the upgrade (every table)");
    assert_eq!(s1, s0, "db2 identical to before the upgrade (every table)");
    assert!(!m1.contains_key("PAGE_LABELS"), "no schema-3 table left");
    assert_eq!(
        snapshots_of(&set),
        "",
        "the rollback consumed the snapshots"
    );
    // Nothing left to roll back.
    let o = p.run_cluster(&after_args("rollback", &id, &[]));
    assert!(
        o.status.success() && text(&o).contains("nothing to roll back"),
        "{}",
        text(&o)
    );
}

#[test]
fn killed_after_the_snapshots_then_resumed_finishes_the_upgrade() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("resume");
    let (m0, _) = db_checksums();
    let set = unique("resume");
    let args = upgrade_args("2.0.0", 2, &set);
    // Killed once every snapshot is journaled (the master's start comes right after them). A
    // kill in the middle of the snapshot step itself: faults_upgrade_lab.
    let id = start_and_kill(&p, &args, "Start the master");

    let extra: Vec<String> = vec![
        "-e".into(),
        "app_release=2.0.0".into(),
        "-e".into(),
        "app_build_number=2".into(),
        "-e".into(),
        format!("snapshot_set={set}"),
        "--approve".into(),
        "upgrade".into(),
    ];
    let o = p.run_cluster(&after_args("resume", &id, &extra));
    let out = text(&o);
    assert!(o.status.success(), "resume {id}:\n{out}");
    maintenance_seconds(&out);
    assert_cluster_serves("2.0.0", 2);
    assert_pages(&pages);

    // The resumed run is one run: rolling it back restores v1 and the data from before.
    rollback(&p, &id);
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 back to exactly before the upgrade");
    assert_eq!(s1, m0, "db2 back to exactly before the upgrade");
    assert_eq!(snapshots_of(&set), "", "the rollback merged every snapshot");
}

#[test]
fn killed_while_node1_starts_then_rolled_back_restores_v1() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("kill");
    let (m0, s0) = db_checksums();
    let set = unique("kill");
    let args = upgrade_args("2.0.0", 2, &set);
    let id = start_and_kill(&p, &args, "Start the node alone (it migrates the schema)");
    // Killed while node 1 starts on 2.0.0 (and migrates the schema): maintenance page on.
    assert_eq!(
        ssh(
            "lb",
            "test -e /var/www/maintenance/ENABLED && echo on || echo off"
        )
        .trim(),
        "on"
    );

    rollback(&p, &id);
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "db1 identical to before the upgrade");
    assert_eq!(s1, s0, "db2 identical to before the upgrade");
    assert_eq!(snapshots_of(&set), "");
}

#[test]
fn rehearsal_on_staging_never_touches_production() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pages = write_pages("rehearsal");
    let (m0, s0) = db_checksums();
    // Every connection to the production master is logged while the rehearsal runs.
    let glog = "/var/lib/mysql/cutover-rehearsal-general.log";
    ssh(
        "db1",
        &format!("rm -f {glog}; mysql -e \"SET GLOBAL general_log_file='{glog}'; SET GLOBAL general_log=ON\""),
    );

    // The lab inventory with the team's checks for staging (issue #18 item 2) and an agreed
    // window that has room (a rehearsal puts no page on: it is not held to the window).
    let inv = window_inventory(&p, -3600, 7200);
    let before = p.run_ids();
    let o = p.run_cluster(&[
        "apply".into(),
        "-i".into(),
        inv.clone(),
        "-e".into(),
        "app_release=2.0.0".into(),
        "-e".into(),
        "app_build_number=2".into(),
        "-e".into(),
        format!("snapshot_set={}", unique("rehearsal")),
        "--templates".into(),
        repo_file("templates"),
        "--output".into(),
        "plain".into(),
        repo_file(&format!("playbooks/{}", "rehearse.yml")),
    ]);
    let id = p.new_run(&before);
    let out = text(&o);
    ssh("db1", "mysql -e 'SET GLOBAL general_log=OFF'");
    let general = ssh("db1", &format!("cat {glog}; rm -f {glog}"));
    assert!(o.status.success(), "rehearsal:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("PREDICTED MAINTENANCE WINDOW:"))
        .unwrap_or_else(|| panic!("no predicted window printed:\n{out}"));
    eprintln!("measured: {line}");

    assert_staging_runs_production_data_on_its_own(&pages, &general);
    // Staging got the plugins pinned for 2.0.0, as production would.
    assert_plugins_enabled_on(&["staging"], PLUGINS_V2);
    // Production: still v1, serving, data unchanged, nothing written by the rehearsal.
    assert_cluster_serves("1.0.0", 1);
    assert_pages(&pages);
    let (m1, s1) = db_checksums();
    assert_eq!(m1, m0, "production master unchanged");
    assert_eq!(s1, s0, "production slave unchanged");

    // Where staging's data stood when the rehearsal ended is journaled (issue 21, item 6): a
    // file a tester writes since is named by the rollback's plan (exit 1); once it is gone,
    // nothing is in the way (the app's heartbeat and logs/ do not count).
    // (Checked after the rollback below: a failure here must not leave staging upgraded.)
    let note = "/var/lib/wiki/cutover-rehearsal-tester-note.txt";
    let guard_check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a_tester_file_is_named_by_the_rollback_plan(&p, &id, note);
        the_team_checks_ran_and_a_failing_one_fails_the_rehearsal(&p, &inv, &id);
        the_rehearsal_predicts_the_upgrade_window(&p, &id);
    }));
    ssh("staging", &format!("rm -f {note}"));

    // Staging back as it was.
    rollback(&p, &id);
    wait_for_staging_back_at_v1();
    assert_plugins_enabled_on(&["staging"], PLUGINS_V1);
    assert_cluster_serves("1.0.0", 1);
    if let Err(e) = guard_check {
        std::panic::resume_unwind(e);
    }
}

/// The lab inventory (written in the project) with `rehearsal_checks` on staging and the
/// agreed window from `from` to `to` seconds from now.
fn window_inventory(p: &Project, from: i64, to: i64) -> String {
    let at = |s: i64| {
        let now = std::time::SystemTime::now();
        let t = if s >= 0 {
            now + Duration::from_secs(s as u64)
        } else {
            now - Duration::from_secs(s.unsigned_abs())
        };
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let checks = "      rehearsal_checks: 'echo TEAM-CHECK pages: $(curl -fsS http://127.0.0.1:{{ http_port }}/pages | wc -c) && curl -fsS http://127.0.0.1:{{ http_port }}/status'\n";
    let text = lab_inventory_text().replacen(
        "      node_name: staging\n",
        &format!("      node_name: staging\n{checks}"),
        1,
    );
    assert!(
        text.contains("TEAM-CHECK"),
        "staging's vars in lab.yml moved"
    );
    let text = format!(
        "{text}\nmaintenance_window: {{ start: \"{}\", end: \"{}\" }}\n",
        at(from),
        at(to)
    );
    p.write("inventory.yml", &text).display().to_string()
}

/// The passing check's output is in the rehearsal's journal; a failing check (run alone, from
/// its step, against the upgraded staging) fails the run with its output kept.
fn the_team_checks_ran_and_a_failing_one_fails_the_rehearsal(p: &Project, inv: &str, id: &str) {
    let check = journal_of(p, id)
        .into_iter()
        .find(|e| e["event"] == "step_result" && e["name"] == "The team's rehearsal checks")
        .expect("the team's checks ran");
    assert_eq!(check["host"], "staging", "{check}");
    assert_eq!(check["status"], "ok", "{check}");
    let stdout = check["registered"]["stdout"].as_str().unwrap_or("");
    assert!(
        stdout.contains("TEAM-CHECK pages: ") && stdout.contains("\"version\":\"2.0.0\""),
        "{check}"
    );

    let before = p.run_ids();
    let o = p.run_cluster(&[
        "apply".into(),
        "-i".into(),
        inv.into(),
        "-e".into(),
        "app_release=2.0.0".into(),
        "-e".into(),
        "app_build_number=2".into(),
        "-e".into(),
        // The check prints a secret: its output is journaled masked.
        "rehearsal_checks=echo TEAM-CHECK looking for a page as wiki:{{ db_password | shell_quote }}; curl -fsS http://127.0.0.1:8080/pages/no-such-page-anywhere".into(),
        "--start-at-step".into(),
        "The team's rehearsal checks".into(),
        "--templates".into(),
        repo_file("templates"),
        "--output".into(),
        "plain".into(),
        repo_file("playbooks/rehearse.yml"),
    ]);
    let failed = p.new_run(&before);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("FAILED") && out.contains("The team's rehearsal checks"),
        "{out}"
    );
    let check = journal_of(p, &failed)
        .into_iter()
        .find(|e| e["event"] == "step_result" && e["name"] == "The team's rehearsal checks")
        .expect("the failing check's result");
    assert_eq!(check["status"], "failed", "{check}");
    assert!(
        check["registered"]["stdout"].as_str().is_some_and(
            |s| s.contains("TEAM-CHECK looking for a page as wiki:[secret:db_password]")
        ),
        "{check}"
    );
    assert_ne!(check["registered"]["rc"], 0, "{check}");
}

/// With the rehearsal on record, `apply upgrade.yml` in too short a window refuses before
/// anything changed, naming the window, the prediction and the margin; the plan shows the fit.
fn the_rehearsal_predicts_the_upgrade_window(p: &Project, id: &str) {
    let upgrade_with = |inv: String, verb: &str, extra: &[&str]| {
        let mut args = upgrade_args("2.0.0", 2, &unique("window"));
        args[0] = verb.into();
        args[2] = inv;
        if verb == "plan" {
            args.retain(|a| a != "--approve" && a != "upgrade" && a != "--output" && a != "plain");
        }
        let playbook = args.pop().unwrap();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(playbook);
        args
    };
    // 20 s left: less than the rehearsal alone took.
    let inv = window_inventory(p, -3600, 20);
    let before = p.run_ids();
    let o = p.run_cluster(&upgrade_with(inv, "apply", &[]));
    let refused = p.new_run(&before);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "error: refusing to turn the maintenance page on: the maintenance window ",
        "left, shorter than the predicted window; the predicted window is ",
        &format!("(rehearsal {id} measured "),
        "scaled to 2 app nodes",
        "+ 20 % margin)",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let events = journal_of(p, &refused);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        ["run_started", "run_refused", "run_finished"],
        "nothing ran: {events:?}"
    );
    assert_eq!(events[1]["maintenance_window"]["fit"], "too_short");
    assert!(
        !ssh("lb", "test -e /var/www/maintenance/ENABLED && echo ON").contains("ON"),
        "no maintenance page"
    );

    let inv = window_inventory(p, -3600, 7200);
    let o = p.run_cluster(&upgrade_with(inv, "plan", &["--format", "json"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = &plan["maintenance_window"];
    assert_eq!(w["fit"], "fits", "{w}");
    assert_eq!(w["prediction"]["run"], id, "{w}");
    assert_eq!(w["prediction"]["app_nodes"], 2, "{w}");
    let total = w["prediction"]["total_s"].as_u64().unwrap();
    let measured = w["prediction"]["measured_s"].as_f64().unwrap();
    assert!(total as f64 >= measured * 1.2 && measured > 5.0, "{w}");
    eprintln!("measured rehearsal window {measured} s, predicted upgrade window {total} s");
}

/// rehearse.yml with `-e` values; its output, exit code and run id.
fn rehearse(p: &Project, extra: &[&str]) -> (String, Option<i32>, String) {
    let mut args: Vec<String> = vec!["apply".into(), "-i".into(), repo_file("inventory/lab.yml")];
    for e in extra {
        args.extend(["-e".to_string(), e.to_string()]);
    }
    args.extend([
        "--templates".into(),
        repo_file("templates"),
        "--output".into(),
        "plain".into(),
        repo_file("playbooks/rehearse.yml"),
    ]);
    let before = p.run_ids();
    let o = p.run_cluster(&args);
    let id = p.new_run(&before);
    (text(&o), o.status.code(), id)
}

/// A rehearsal whose target release some installed plugin does not support stops in its first
/// play, before anything changes, naming each such plugin with its version and the releases it
/// supports: diagrams has no version pinned for 3.0.0; with calendar pinned at 1.0 (1.0.0 only)
/// for 2.0.0, calendar is named. Only the check ran (on the source node); nothing changed.
#[test]
fn a_rehearsal_with_an_incompatible_plugin_fails_before_any_change_naming_it() {
    let _g = lock();
    require_v1();
    let p = Project::in_repo();
    let pins = p.write(
        "old-calendar.yml",
        "app_plugins:\n  \"2.0.0\": [{ name: calendar, version: \"1.0\" }, { name: diagrams, version: \"1.1\" }]\n",
    );
    let pins = format!("@{}", pins.display());
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["app_release=3.0.0", "app_build_number=3"],
            "diagrams 1.0 (installed; supports 1.0.0,2.0.0): no version pinned for 3.0.0",
            "calendar",
        ),
        (
            &["app_release=2.0.0", "app_build_number=2", &pins],
            "calendar 1.0 (pinned for 2.0.0; supports 1.0.0)",
            "diagrams",
        ),
    ];
    for (extra, named, compatible) in cases {
        let (out, code, id) = rehearse(&p, extra);
        assert_eq!(code, Some(3), "a host failed:\n{out}");
        let target = extra[0].trim_start_matches("app_release=");
        let msg = format!("plugins incompatible with {target}:");
        let at = out
            .find(&msg)
            .unwrap_or_else(|| panic!("no `{msg}` in:\n{out}"));
        let line = out[at..].lines().next().unwrap_or("");
        assert!(line.contains(named), "{named} named:\n{out}");
        assert!(
            !line.contains(compatible),
            "the compatible {compatible} is not listed:\n{out}"
        );
        // Where: the check's step on the source node.
        let failed = out[..at].lines().last().unwrap_or("");
        assert!(
            failed.starts_with("app2")
                && failed.contains("FAILED      Installed plugins compatible"),
            "{out}"
        );
        let results: Vec<(String, String, bool)> = journal_of(&p, &id)
            .iter()
            .filter(|e| e["event"] == "step_result")
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (f("host"), f("name"), e["changed"] == true)
            })
            .collect();
        let ran: Vec<_> = results.iter().filter(|r| r.0 == "app2").collect();
        assert!(
            ran.len() == 1 && ran[0].1.starts_with("Installed plugins compatible"),
            "only the check ran on the source node: {results:?}"
        );
        assert!(
            results.iter().all(|r| r.0.starts_with("app") && !r.2),
            "nothing changed, nothing ran beyond the first play: {results:?}"
        );
    }
    assert_cluster_serves("1.0.0", 1);
    assert_plugins_enabled(PLUGINS_V1);
}

fn wait_for_staging_back_at_v1() {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status("staging");
        if st.contains(
            "\"state\":\"RUNNING\",\"version\":\"1.0.0\",\"schema\":1,\"node\":\"staging\"",
        ) {
            break;
        }
        assert!(Instant::now() < deadline, "staging after rollback: {st}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// After a rehearsal: staging has two window marks, and a file written since is named by the
/// rollback plan (exit 1).
fn a_tester_file_is_named_by_the_rollback_plan(p: &Project, id: &str, note: &str) {
    let marks: Vec<serde_json::Value> = journal_of(p, id)
        .into_iter()
        .filter(|e| e["event"] == "step_result" && e["mark"]["point"] == "window_closed")
        .collect();
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert!(marks.iter().all(|m| m["host"] == "staging"), "{marks:?}");
    ssh("staging", &format!("echo tested > {note}"));
    let o = p.run_cluster(&after_args("rollback", id, &["--plan".into()]));
    let plan = text(&o);
    ssh("staging", &format!("rm -f {note}"));
    assert_eq!(o.status.code(), Some(1), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.contains("staging: since the window closed at 20")
                && l.ends_with(
                    "/var/lib/wiki: 1 file written (e.g. cutover-rehearsal-tester-note.txt)"
                )),
        "{plan}"
    );
    assert!(!plan.contains("database: "), "{plan}");
}

fn assert_staging_runs_production_data_on_its_own(pages: &BTreeMap<String, String>, general: &str) {
    // Staging runs the new release on its own copy of production's data.
    let st = status("staging");
    assert!(
        st.contains(
            "\"state\":\"RUNNING\",\"version\":\"2.0.0\",\"schema\":2,\"node\":\"staging\""
        ),
        "staging: {st}"
    );
    let name = pages.keys().next().unwrap();
    assert_eq!(
        &ssh(
            "staging",
            &format!("curl -sS http://127.0.0.1:8080/pages/{name}")
        ),
        &pages[name],
        "staging serves production's pages"
    );
    // Staging never connected to production: not in db1's general log, not in its
    // configuration, no replication configured, and CLUSTERSAFETY untouched by it.
    assert!(
        !general.contains("10.77.0.41"),
        "staging connected to db1:\n{general}"
    );
    assert!(
        general.contains("Connect"),
        "the general log recorded connections:\n{general}"
    );
    let cfg = ssh("staging", "cat /var/lib/wiki/wiki.cfg.xml");
    assert_staging_config(&cfg);
    for a in ["10.77.0.11", "10.77.0.12", "10.77.0.21", "10.77.0.22"] {
        assert!(
            !cfg.contains(a),
            "staging config names production {a}:\n{cfg}"
        );
    }
    assert_eq!(ssh("staging", "mysql -e 'SHOW SLAVE STATUS\\G'").trim(), "");
    let safety = ssh(
        "db1",
        "mysql -NB -e 'SELECT CLUSTER_NAME FROM wiki.CLUSTERSAFETY'",
    );
    assert_eq!(safety.trim(), "wiki-production");
}

/// The run's own account of the window under the page (from its journal): every phase of the
/// upgrade is in it, and its total agrees with the playbook's clock (`date +%s` around the
/// page, so whole seconds and a few steps more or less).
fn assert_window_breakdown(out: &str, playbook_secs: u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("maintenance window "))
        .unwrap_or_else(|| panic!("no window breakdown in the run's output:\n{out}"));
    for phase in [
        "stops",
        "snapshots",
        "migration",
        "starts",
        "checks",
        "cutover's own work",
    ] {
        assert!(line.contains(phase), "{phase} missing: {line}");
    }
    // The node migrates after its start returned: the declared phase holds the wait for it.
    let migration = line
        .split("migration ")
        .nth(1)
        .and_then(|r| r.split([',', ';']).next())
        .map(seconds_of)
        .unwrap_or_else(|| panic!("no migration time in {line}"));
    assert!(migration >= 1.0, "the migration took {migration} s: {line}");
    let total = line["maintenance window ".len()..]
        .split(':')
        .next()
        .map(seconds_of)
        .unwrap_or_else(|| panic!("no total in {line}"));
    let diff = (total - playbook_secs as f64).abs();
    assert!(
        diff <= 10.0,
        "window {total} s by the journal, {playbook_secs} s by the playbook: {line}"
    );
}

/// `2m31s`, `58s`, `2.1s`, `340ms` in seconds.
fn seconds_of(text: &str) -> f64 {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.parse::<f64>().unwrap() / 1000.0;
    }
    let t = t
        .strip_suffix('s')
        .unwrap_or_else(|| panic!("not a duration: {t}"));
    match t.split_once('m') {
        Some((m, s)) => m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap(),
        None => t.parse().unwrap(),
    }
}

/// `cutover plan` of the upgrade shows the start announcement — where to, the JSON body — as
/// "would send", not irreversible, and posts nothing to the lab's sink.
fn assert_the_plan_shows_the_start_announcement_and_sends_nothing(p: &Project, set: &str) {
    let mut args = upgrade_args("2.0.0", 2, set);
    args[0] = "plan".into();
    let pb = args.pop().unwrap();
    args.retain(|a| !matches!(a.as_str(), "--approve" | "upgrade" | "--output" | "plain"));
    args.extend(["--format".into(), "json".into(), pb]);
    let o = p.run_cluster(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries: Vec<&serde_json::Value> = plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == "announce")
        .collect();
    assert_eq!(entries.len(), 1, "the start only (run_once): {entries:#?}");
    let e = entries[0];
    assert_eq!(
        e["name"],
        "Announce the start (planned window, the rehearsal's prediction)"
    );
    assert_eq!(e["outcome"], "change");
    assert_eq!(e["irreversible"], false);
    assert_eq!(e["undo"], "none needed: nothing on a host to undo");
    let summary = e["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would send: POST http://repo:8081/… and mail to wiki-admins@lab.example (sendmail on lb): The wiki cluster is being upgraded to 2.0.0 (run "),
        "{summary}"
    );
    let body: serde_json::Value = serde_json::from_str(e["diff"].as_str().unwrap()).unwrap();
    assert_eq!(body["event"], "upgrade_started");
    assert_eq!(body["release"], "2.0.0");
    // The end announcements are listed, not planned (they depend on how the run ends).
    let after: Vec<(&str, &str, &serde_json::Value)> = plan["after_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["when"].as_str().unwrap(),
                &a["steps"],
            )
        })
        .collect();
    let (ok, failed) = (
        serde_json::json!(["Announce the success with the measured window"]),
        serde_json::json!(["Announce the failure, its reason and the rollback"]),
    );
    assert_eq!(
        after,
        [
            ("Announce the end - the upgrade succeeded", "succeeded", &ok),
            ("Announce the end - the upgrade failed", "failed", &failed),
        ]
    );
    assert_eq!(
        announcements(),
        Vec::<serde_json::Value>::new(),
        "a plan sent nothing"
    );
    assert_eq!(
        mails(),
        Vec::<serde_json::Value>::new(),
        "a plan mailed nothing"
    );
}

/// The mails that arrived through lb's msmtp at the lab's mail server say what the webhook
/// got: one per announcement, in order, from cutover@lb to the inventory's recipients, with
/// the same subject, the same text, then the run and the host.
fn assert_mailed_as_posted(posted: &[serde_json::Value]) {
    let got = mails();
    assert_eq!(got.len(), posted.len(), "{got:#?}");
    for (mail, post) in got.iter().zip(posted) {
        let body = &post["body"];
        assert_eq!(mail["mail_from"], "cutover@lb", "{mail:#}");
        assert_eq!(
            mail["rcpt_tos"],
            serde_json::json!(["wiki-admins@lab.example"])
        );
        assert_eq!(mail["headers"]["to"], "wiki-admins@lab.example");
        assert_eq!(mail["subject"], body["subject"]);
        let text = mail["text"].as_str().unwrap();
        let head = format!("{}\n\n", body["text"].as_str().unwrap());
        assert!(text.starts_with(&head), "{text}");
        for line in [
            format!("run: {}\n", body["run"].as_str().unwrap()),
            "host: lb\n".into(),
        ] {
            assert!(text.contains(&line), "{line:?} in {text}");
        }
        let event = format!("event: {}\n", body["event"].as_str().unwrap());
        assert!(text.contains(&event), "{text}");
    }
}

/// The sink got the start (after the approval) and then the success with the window the run
/// measured, as its recap prints it.
fn assert_announced_start_then_success(id: &str, out: &str) {
    let got = announcements();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter()
            .all(|a| a["path"] == "/announce/wiki" && a["content_type"] == "application/json"),
        "{got:#?}"
    );
    let start = announced(&got, "upgrade_started");
    assert_eq!(got[0]["body"], *start, "the start comes first");
    assert_eq!(start["run"], id);
    assert_eq!(start["host"], "lb");
    assert_eq!(start["release"], "2.0.0");
    assert_eq!(start["subject"], "wiki upgrade to 2.0.0: starting");
    assert_eq!(
        start["text"],
        format!("The wiki cluster is being upgraded to 2.0.0 (run {id}); users get the maintenance page until it is done.")
    );
    // The lab's inventory plans no window and no rehearsal ran: both left out.
    assert!(
        start.get("planned_window").is_none() && start.get("prediction").is_none(),
        "{start}"
    );
    let end = announced(&got, "upgrade_succeeded");
    let recap_window = out
        .lines()
        .find(|l| l.starts_with("maintenance window "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(end["subject"], "wiki upgrade to 2.0.0: done");
    assert_eq!(
        end["text"],
        format!("The wiki cluster runs 2.0.0 (run {id}). Measured {recap_window}.")
    );
    let outcome = &end["outcome"];
    assert_eq!(outcome["id"], id);
    assert_eq!(outcome["status"], "ok");
    assert_eq!(outcome["failed"], serde_json::Value::Null);
    assert_eq!(outcome["unwound"], false);
    assert_eq!(outcome["window"]["described"], recap_window);
    assert_eq!(outcome["window"]["still_open"], false);
    let total_ms = outcome["window"]["total_ms"].as_u64().unwrap();
    assert_eq!(outcome["window"]["total_s"], (total_ms + 500) / 1000);
    assert_mailed_as_posted(&got);
}

/// The sink got the start, then the failure: the step that failed, its host and message, and
/// that the run was rolled back — sent after the unwind.
fn assert_announced_the_rollback(p: &Project, id: &str, out: &str) {
    let got = announcements();
    assert_eq!(got.len(), 2, "{got:#?}");
    announced(&got, "upgrade_started");
    let end = announced(&got, "upgrade_failed");
    let journal = journal_of(p, id);
    let failed = journal
        .iter()
        .find(|e| e["event"] == "step_result" && e["status"] == "failed")
        .unwrap_or_else(|| panic!("{out}"));
    let outcome = &end["outcome"];
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["unwound"], true);
    assert_eq!(outcome["unwind_ok"], true);
    assert_eq!(end["rolled_back"], "true");
    assert_eq!(outcome["failed"]["step"], failed["name"]);
    assert_eq!(outcome["failed"]["host"], failed["host"]);
    assert_eq!(outcome["failed"]["message"], failed["detail"]);
    assert_eq!(end["subject"], "wiki upgrade to 3.0.0: FAILED, rolled back");
    let text = end["text"].as_str().unwrap();
    let reason = format!(
        "The upgrade of the wiki cluster to 3.0.0 failed (run {id}): \"{}\" on {}: ",
        failed["name"].as_str().unwrap(),
        failed["host"].as_str().unwrap()
    );
    assert!(text.starts_with(&reason), "{text}");
    assert!(
        text.contains("It was rolled back: the cluster runs the release it ran before."),
        "{text}"
    );
    // Sent once the unwind had finished.
    let at = |k: &str| {
        journal
            .iter()
            .position(|e| e["event"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert!(at("unwind_finished") < at("after_run_started"), "{out}");
    assert_mailed_as_posted(&got);
}
