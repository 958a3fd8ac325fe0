//! Steps that may change something with no way back, listed once each in a plan.

use std::collections::BTreeMap;

use super::{Entry, Outcome};
use crate::modules;
use crate::modules::spec::Reversibility;
use crate::playbook::{Step, Undo};

/// A step that may change something with no way back, and the hosts where it would.
#[derive(Clone, Debug, PartialEq)]
pub struct IrreversibleStep<'a> {
    pub play_name: &'a str,
    pub step: usize,
    pub handler: bool,
    pub name: &'a str,
    pub hosts: Vec<&'a str>,
}

/// The plan's irreversible steps, each once (with every host it would run on), in plan order.
/// Steps that change nothing (no change, skipped) are left out.
pub fn irreversible_steps(entries: &[Entry]) -> Vec<IrreversibleStep<'_>> {
    let mut out: Vec<IrreversibleStep<'_>> = Vec::new();
    let mut index: BTreeMap<(usize, usize, bool), usize> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.irreversible && matches!(e.outcome, Outcome::Change | Outcome::Unknown))
    {
        let key = (e.play, e.step, e.handler);
        match index.get(&key) {
            Some(&i) => out[i].hosts.push(&e.host),
            None => {
                index.insert(key, out.len());
                out.push(IrreversibleStep {
                    play_name: &e.play_name,
                    step: e.step,
                    handler: e.handler,
                    name: &e.name,
                    hosts: vec![&e.host],
                });
            }
        }
    }
    out
}

/// Does a step change something with no way back? A step that only reads — a read-only
/// module (checks, waits, facts), a read-only query, a wait for the replica, a step declared
/// `changed_when: false` — is never irreversible, whatever its `undo:` says: there is nothing
/// to go back from. Nor is a step whose module needs no undo (a message sent: `announce`).
pub fn irreversible(step: &Step) -> bool {
    let spec = modules::spec::find(&step.action.module);
    let reads_only = step.declared_read_only()
        || spec.is_some_and(|s| {
            matches!(
                s.reversibility,
                Reversibility::ReadOnly | Reversibility::NoUndoNeeded
            )
        })
        || modules::changes_nothing(&step.action.module, &step.action.args);
    !reads_only
        && match &step.undo {
            Undo::Irreversible(_) => true,
            Undo::Custom(_) => false,
            Undo::Module => spec.is_some_and(|s| s.reversibility == Reversibility::Irreversible),
        }
}

#[cfg(test)]
mod irreversible_tests {
    use super::*;
    use crate::diag::Diagnostics;
    use crate::plan::{render_markdown, render_text, Outcome, Plan, Summary, SCHEMA};

    fn steps_of(yaml: &str) -> Vec<Step> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pb.yml");
        std::fs::write(&path, yaml).unwrap();
        let mut diags = Diagnostics::default();
        let pb = crate::playbook::load(&path, &mut diags).unwrap();
        assert!(diags.is_empty(), "{diags:?}");
        pb.plays.into_iter().flat_map(|p| p.steps).collect()
    }

    fn named(steps: &[Step], name: &str) -> bool {
        irreversible(
            steps
                .iter()
                .find(|s| s.name.as_deref() == Some(name))
                .unwrap(),
        )
    }

    #[test]
    fn read_only_steps_are_never_irreversible() {
        let steps = steps_of(
            r#"
- name: p
  hosts: all
  steps:
    - { name: check declared read-only, command: "date +%s", changed_when: false }
    - { name: read-only but undo irreversible, shell: "cat /etc/hostname", changed_when: false, undo: irreversible }
    - { name: http check, http_check: { url: "http://x/status" } }
    - { name: cluster check, cluster_safety: { check: no_app_running, hosts: [a] } }
    - { name: wait, wait_for: { port: 22 }, undo: irreversible }
    - { name: query, mysql_query: { sql: "SELECT 1", read_only: true } }
    - { name: replica synced, mysql_replication: { state: synced, master: db1 } }
    - { name: migrate, command: /opt/migrate }
    - { name: declared irreversible, file: { path: /x, state: absent }, undo: irreversible }
    - { name: write query, mysql_query: { sql: "DELETE FROM t" } }
    - { name: command with a way back, command: /opt/migrate, undo: { command: /opt/unmigrate } }
"#,
        );
        for read_only in [
            "check declared read-only",
            "read-only but undo irreversible",
            "http check",
            "cluster check",
            "wait",
            "query",
            "replica synced",
            "command with a way back",
        ] {
            assert!(!named(&steps, read_only), "{read_only} marked irreversible");
        }
        for irr in ["migrate", "declared irreversible", "write query"] {
            assert!(named(&steps, irr), "{irr} not marked irreversible");
        }
    }

    fn entry(play: usize, play_name: &str, step: usize, name: &str, host: &str) -> Entry {
        Entry {
            play,
            play_name: play_name.into(),
            step,
            handler: false,
            item: None,
            name: name.into(),
            at: None,
            module: "command".into(),
            host: host.into(),
            outcome: Outcome::Unknown,
            summary: String::new(),
            diff: None,
            reason: Some("a command without a check".into()),
            irreversible: true,
            undo: None,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn the_irreversible_list_names_each_step_once_with_its_play_and_hosts() {
        let mut entries = vec![
            entry(0, "Nodes", 2, "Migrate", "app1"),
            entry(0, "Nodes", 2, "Migrate", "app2"),
            entry(3, "Verify", 1, "Migrate", "app1"),
            entry(3, "Verify", 4, "Cleanup", "lb"),
        ];
        let mut unchanged = entry(3, "Verify", 5, "Nothing to do", "lb");
        unchanged.outcome = Outcome::NoChange;
        entries.push(unchanged);
        let steps = irreversible_steps(&entries);
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].hosts, ["app1", "app2"]);
        let plan = Plan {
            schema: SCHEMA.into(),
            created: String::new(),
            playbook: "pb.yml".into(),
            inventory: "inv.yml".into(),
            limit: None,
            tags: vec![],
            skip_tags: vec![],
            inputs: BTreeMap::new(),
            hosts: vec!["app1".into(), "app2".into(), "lb".into()],
            unreachable: vec![],
            summary: Summary {
                hosts: 3,
                unknown: 4,
                no_change: 1,
                irreversible: steps.len(),
                ..Summary::default()
            },
            entries,
            maintenance_window: None,
            after_run: vec![],
        };
        let text = render_text(&plan, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("; 3 IRREVERSIBLE steps"), "{}", lines[0]);
        assert_eq!(lines[1], "Irreversible steps (no automatic way back):");
        assert_eq!(lines[2], "  - PLAY Nodes / step 3: Migrate on app1, app2");
        assert_eq!(lines[3], "  - PLAY Verify / step 2: Migrate on app1");
        assert_eq!(lines[4], "  - PLAY Verify / step 5: Cleanup on lb");
        assert_eq!(lines[5], "");
        assert!(!text.contains("Nothing to do on"));
        let md = render_markdown(&plan);
        assert!(md.contains("- play _Nodes_, step 3: **Migrate** on `app1`, `app2`\n"));
        assert_eq!(md.matches("**Migrate** on").count(), 2);
    }
}
