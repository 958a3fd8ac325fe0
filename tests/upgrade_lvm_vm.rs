//! The staged upgrade and its rollback with the MariaDB master's datadir on LVM (issue #19 item
//! 2), through `inventory/lab-lvm.yml`: the master is the VM lvm1 (datadir /var/lib/mysql on the
//! LV vg0/mysql), its slave db2, the app nodes app1 and app2 behind lb (containers, btrfs).
//!
//! One test, in order: lvm1 provisioned from scratch as the master with site.yml (apt from the
//! lab repository, the partition layout, MariaDB, db2 replicating from it, the app nodes on
//! it); the plan of upgrade.yml shows the LVM snapshot of the master; an upgrade that fails
//! right after node 1 migrated the schema unwinds — the LV merged back (deferred: the datadir
//! is mounted), every table's `CHECKSUM TABLE` on master and slave as before, replication
//! running and caught up, v1 served; a successful upgrade leaves the snapshot LV (`lvs`), and
//! `cutover commit` prints its fill and removes it.
//!
//! It borrows app1, app2 and db2 from the lab and gives them back as inventory/lab.yml has
//! them: their volumes are kept first (a btrfs snapshot set of its own, through cutover with
//! inventory/lab.yml) and rolled back at the end (also when the test fails), db2's server
//! configuration (outside the volumes) is written back first. db1, lb and staging are not
//! changed (lb's members are drained and returned by the upgrades, as any upgrade does).
//!
//! Measured: 228–245 s with MariaDB already installed in lvm1 (later runs); 380 s when site.yml
//! installs it (and rsync) first, as on a fresh VM (135 s of it under TCG).
//!
//! Needs the lab up and provisioned (playbooks/site.yml; at any release: the app nodes are given
//! back running the one they ran) and lvm1 up. A second run on the
//! same VM starts the master's database from nothing again.
//!
//!     flock -o /tmp/cutover-lab-tests.lock cargo test --test upgrade_lvm_vm -- --nocapture

mod common;

use common::cluster::*;
use common::project::{repo_file, text, Project};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const INVENTORY: &str = "inventory/lab-lvm.yml";
/// The step right after node 1's migration (upgrade.yml): the injected failure comes there.
const AFTER_MIGRATION: &str =
    "Node healthy - /status RUNNING at the new schema, a real page, no cluster panic";

/// A bash script as root in lvm1 (LC_ALL=C: lvm's numbers); panics unless it succeeds.
fn vm(script: &str) -> String {
    let o = common::lvm1_ssh(&format!("export LC_ALL=C; set -euo pipefail; {script}"));
    assert!(o.status.success(), "in lvm1: {script}\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stdout of a command on a lab host or lvm1.
fn on(host: &str, cmd: &str) -> String {
    if host == "lvm1" {
        vm(cmd)
    } else {
        ssh(host, cmd)
    }
}

/// The lab's apt repository and its name for lvm1 (the VM image has neither: lab/vm); dpkg
/// without fsync (a throwaway VM: each `vm.sh up` starts from a fresh overlay), which spares the
/// TCG VM part of MariaDB's install.
const VM_APT: &str = r#"
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/lab-unsafe-io
grep -q ' repo$' /etc/hosts || printf '10.77.0.1\tcontroller repo\n' >> /etc/hosts
cat > /etc/apt/sources.list.d/lab.sources <<'EOF'
Types: deb
URIs: http://repo:8080/debian
Suites: ./
Trusted: yes
EOF
"#;

/// A master left by an earlier run of this test starts from nothing: no wiki database, no
/// users of the cluster, an empty binary log (db2 replays it from its start), no snapshot of
/// the datadir's LV.
const VM_RESET: &str = r#"
for s in $(lvs --noheadings -o lv_name -S 'origin=mysql' vg0 2>/dev/null); do lvremove -y "vg0/$s" >&2; done
if systemctl is-active -q mariadb; then
  { echo 'SET sql_log_bin = 0;'
    mysql -NBe "SELECT CONCAT('DROP USER \`', User, '\`@\`', Host, '\`;') FROM mysql.user WHERE User IN ('wiki', 'repl')"
    echo 'DROP DATABASE IF EXISTS wiki; RESET MASTER;'
  } | mysql
fi
"#;

fn lvm_args(verb: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        verb.into(),
        "-i".into(),
        repo_file(INVENTORY),
        "--templates".into(),
        repo_file("templates"),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// upgrade.yml on the LVM inventory; (output, success, run id).
fn upgrade_lvm(
    p: &Project,
    release: &str,
    build: u32,
    set: &str,
    env: &[(&str, &str)],
) -> (String, bool, String) {
    let mut args = upgrade_args(release, build, set);
    args[2] = repo_file(INVENTORY);
    let before = p.run_ids();
    let o = p.run_cluster_with(&args, env);
    let id = p.new_run(&before);
    (text(&o), o.status.success(), id)
}

/// `CHECKSUM TABLE` of every table of the wiki database on `host` (CLUSTERSAFETY: only there).
fn table_sums(host: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in on(host, "mysql -NB -e 'SHOW TABLES FROM wiki'").split_whitespace() {
        let sum = if t == "CLUSTERSAFETY" {
            "(present)".to_string()
        } else {
            let c = on(host, &format!("mysql -NB -e 'CHECKSUM TABLE wiki.`{t}`'"));
            c.split_whitespace().nth(1).unwrap_or("?").to_string()
        };
        out.insert(t.to_string(), sum);
    }
    assert!(
        out.contains_key("PAGES"),
        "no PAGES table on {host}: {out:?}"
    );
    out
}

/// db2 replicates from lvm1 (both threads) and has applied all lvm1 wrote, within `limit`.
fn wait_slave_of_lvm1(limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let st = ssh("db2", "mysql -e 'SHOW SLAVE STATUS\\G'");
        let master = vm("mysql -NB -e 'SELECT @@global.gtid_binlog_pos'");
        let slave = ssh("db2", "mysql -NB -e 'SELECT @@global.gtid_slave_pos'");
        let running = st.contains("Slave_IO_Running: Yes") && st.contains("Slave_SQL_Running: Yes");
        if running && st.contains("Master_Host: 10.77.0.51") && master.trim() == slave.trim() {
            return master.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "db2 is not a caught-up slave of lvm1: master {master} slave {slave}\n{st}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Snapshot LVs of the datadir's LV in vg0: `name attr origin`, one a line.
fn snapshots_of_datadir() -> String {
    vm("lvs -a --noheadings -o lv_name,lv_attr,origin vg0 | awk '$3 == \"mysql\"'")
}

/// The release and schema both app nodes serve now (the lab's, before the test borrows them).
fn release_served() -> (String, u32) {
    let s = status("app1");
    let v: serde_json::Value =
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("app1 /status: {e}: {s}"));
    let found = (
        v["version"].as_str().unwrap_or("").to_string(),
        v["schema"].as_u64().unwrap_or(0) as u32,
    );
    assert!(
        v["state"] == "RUNNING" && !found.0.is_empty(),
        "app1 does not serve: {s}"
    );
    assert!(
        status("app2").contains(&format!("\"version\":\"{}\"", found.0)),
        "app2 serves another release than app1"
    );
    found
}

/// What the test borrowed, given back when it ends (also when it panics): db2's server
/// configuration, then the keep set's rollback (app1, app2 and db2's volumes as they were,
/// their services stopped around the merge and started again).
struct GiveBack<'a> {
    p: &'a Project,
    keep_run: String,
    db2_cnf: String,
    done: bool,
}

impl GiveBack<'_> {
    fn give_back(&mut self) -> Result<(), String> {
        self.done = true;
        let cnf = "/etc/mysql/mariadb.conf.d/60-cutover.cnf";
        let o = common::lab_ssh(
            "db2",
            &format!(
                "cat > {cnf}.lvm-test <<'EOF'\n{}EOF\nmv {cnf}.lvm-test {cnf}",
                self.db2_cnf
            ),
        );
        if !o.status.success() {
            return Err(format!("db2's {cnf} not written back: {}", text(&o)));
        }
        let o = self
            .p
            .run_cluster(&after_args("rollback", &self.keep_run, &[]));
        if !o.status.success() {
            return Err(format!("rollback {}:\n{}", self.keep_run, text(&o)));
        }
        Ok(())
    }
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.give_back() {
                eprintln!("WARNING: the lab's app nodes and db2 were not given back: {e}");
            }
        }
    }
}

/// Keep app1, app2 and db2 as inventory/lab.yml has them: a btrfs snapshot set of their
/// volumes, through cutover (its rollback puts them back, services stopped around it).
fn keep_the_lab(p: &Project, set: &str) -> String {
    let pb = p.write(
        "keep.yml",
        &format!(
            r#"- name: Keep what the LVM test borrows
  hosts: app_nodes:db_slave
  steps:
    - name: Keep the volumes
      snapshot:
        backend: btrfs
        volumes: "{{{{ volumes }}}}"
        name: {set}
        pool: /srv/vol
        state: present
        services: "{{% if inventory_hostname in groups.databases %}}mariadb{{% else %}}wiki{{% endif %}}"
"#
        ),
    );
    let before = p.run_ids();
    let o = p.run_cluster(&[
        "apply".into(),
        "-i".into(),
        repo_file("inventory/lab.yml"),
        "--output".into(),
        "plain".into(),
        pb.display().to_string(),
    ]);
    assert!(
        o.status.success(),
        "keeping the lab's volumes:\n{}",
        text(&o)
    );
    p.new_run(&before)
}

/// lvm1 the master from scratch, db2 its slave, the app nodes on it (site.yml, lab-lvm.yml).
fn provision_lvm_master(p: &Project) {
    vm(VM_APT);
    vm(VM_RESET);
    // db2 leaves db1 (its volume is kept) and replays lvm1's binary log from its start.
    ssh(
        "db2",
        "mysql -e \"STOP SLAVE; RESET SLAVE ALL; SET GLOBAL gtid_slave_pos = ''; SET sql_log_bin = 0; DROP DATABASE IF EXISTS wiki;\"",
    );
    let t = Instant::now();
    let mut args = lvm_args(
        "apply",
        &["--limit", "lvm1:app_nodes:db2", "--output", "plain"],
    );
    args.push(repo_file("playbooks/site.yml"));
    let o = p.run_cluster(&args);
    assert!(o.status.success(), "site.yml on lab-lvm.yml:\n{}", text(&o));
    eprintln!(
        "measured: site.yml with lvm1 as the master: {:?}",
        t.elapsed()
    );
    let mounts = vm("findmnt -rn -o SOURCE /var/lib/mysql; stat -c %U /var/lib/mysql/mysql");
    assert_eq!(
        mounts, "/dev/mapper/vg0-mysql\nmysql\n",
        "the datadir on the LV"
    );
    wait_slave_of_lvm1(Duration::from_secs(60));
    nodes_serve("1.0.0", 1);
}

#[test]
fn the_master_on_lvm_is_snapshotted_merged_back_on_failure_and_committed() {
    common::require_lab();
    let t0 = Instant::now();
    let found = release_served();
    let p = Project::in_repo();
    let db2_cnf = ssh("db2", "cat /etc/mysql/mariadb.conf.d/60-cutover.cnf");
    assert!(db2_cnf.contains("Slave of db1"), "{db2_cnf}");
    let keep_set = unique("lvmkeep");
    let keep_run = keep_the_lab(&p, &keep_set);
    let mut lab = GiveBack {
        p: &p,
        keep_run,
        db2_cnf,
        done: false,
    };

    provision_lvm_master(&p);
    let t_setup = t0.elapsed();
    let pages = write_pages("lvm");

    let set = unique("lvmfail");
    assert_the_plan_shows_the_lvm_snapshot(&p, &set);
    fail_after_the_migration_then_merge_back(&p, &set, &pages);
    upgrade_then_commit(&p);
    let t_lvm = t0.elapsed();

    // The lab as inventory/lab.yml has it: the release it ran on db1, db2 db1's caught-up slave.
    lab.give_back()
        .unwrap_or_else(|e| panic!("giving the lab back: {e}"));
    assert_cluster_serves(&found.0, found.1);
    let st = ssh("db2", "mysql -e 'SHOW SLAVE STATUS\\G'");
    assert!(
        st.contains("Master_Host: 10.77.0.21"),
        "db2 replicates from db1 again:\n{st}"
    );
    assert_eq!(
        snapshots_of(&keep_set),
        "",
        "the keep set removed by its rollback"
    );
    eprintln!(
        "measured: setup {t_setup:?}, through the commit {t_lvm:?}, with the lab given back {:?}",
        t0.elapsed()
    );
}

/// `cutover plan` of upgrade.yml on lab-lvm.yml names the master's LVM snapshot.
fn assert_the_plan_shows_the_lvm_snapshot(p: &Project, set: &str) {
    // The plan shows the master's LVM snapshot.
    let mut plan = lvm_args(
        "plan",
        &["-e", "app_release=2.0.0", "-e", "app_build_number=2", "-e"],
    );
    plan.extend([
        format!("snapshot_set={set}"),
        repo_file("playbooks/upgrade.yml"),
    ]);
    let o = p.run_cluster(&plan);
    assert_eq!(o.status.code(), Some(2), "plan:\n{}", text(&o));
    assert!(
        text(&o).contains(&format!("create snapshot(s) vg0/{set}-mysql (")),
        "the plan names the LVM snapshot of the master:\n{}",
        text(&o)
    );
}

/// upgrade.yml fails right after node 1 migrated the schema: unwound, the master's LV merged
/// back (deferred: mounted), every table as before on master and slave, replication caught up.
fn fail_after_the_migration_then_merge_back(
    p: &Project,
    set: &str,
    pages: &BTreeMap<String, String>,
) {
    // Fails right after node 1 migrated the schema: unwound, the LV merged back.
    let before = (table_sums("lvm1"), table_sums("db2"));
    assert_eq!(before.0, before.1, "master and slave agree before");
    let fault = format!("fail-after-step={AFTER_MIGRATION}");
    let t = Instant::now();
    let (out, ok, id) = upgrade_lvm(p, "2.0.0", 2, set, &[("CUTOVER_TEST_FAULT", &fault)]);
    eprintln!(
        "measured: failed upgrade with its unwind: {:?}",
        t.elapsed()
    );
    assert!(!ok, "the injected failure fails the run:\n{out}");
    assert!(out.contains("UNWIND"), "the run unwound itself:\n{out}");
    let journal = journal_of(p, &id);
    let made = journal.iter().find(|e| {
        e["event"] == "step_result"
            && e["host"] == "lvm1"
            && e["name"] == "Snapshot every data volume"
    });
    assert!(
        made.is_some_and(|e| e["status"] == "changed"),
        "the master's LV snapshot was taken: {made:?}"
    );
    // Node 1 saw schema 2 on the master before the failure: the migration wrote to the LV.
    let health = journal.iter().find(|e| {
        e["event"] == "step_result" && e["host"] == "app1" && e["name"] == AFTER_MIGRATION
    });
    assert!(
        health.is_some_and(|e| e["registered"]["rc"] == 0
            && e["registered"]["stderr"]
                .as_str()
                .is_some_and(|s| s.contains("\"version\":\"2.0.0\",\"schema\":2"))),
        "node 1 migrated the master's schema before the failure: {health:?}"
    );
    let merged = journal.iter().find(|e| {
        e["event"] == "undo_result"
            && e["host"] == "lvm1"
            && e["step"] == "Snapshot every data volume"
    });
    assert!(
        merged.is_some_and(|e| e["ok"] == true),
        "the unwind merged the master's LV: {merged:?}"
    );
    assert_eq!(
        snapshots_of_datadir(),
        "",
        "no snapshot of vg0/mysql left (merged)"
    );
    let attr = vm("lvs --noheadings -o lv_attr vg0/mysql");
    assert!(
        attr.trim().starts_with('-'),
        "vg0/mysql a plain LV again: {attr}"
    );
    nodes_serve("1.0.0", 1);
    wait_slave_of_lvm1(Duration::from_secs(120));
    assert_eq!(
        table_sums("lvm1"),
        before.0,
        "the master's tables as before the upgrade"
    );
    assert_eq!(
        table_sums("db2"),
        before.1,
        "the slave's tables as before the upgrade"
    );
    assert_pages(pages);
}

/// A successful upgrade leaves the master's snapshot LV; `cutover commit` prints its fill and
/// removes it.
fn upgrade_then_commit(p: &Project) {
    // Succeeds: the snapshot LV stays until the commit, which removes it.
    let set = unique("lvmok");
    let t = Instant::now();
    let (out, ok, id) = upgrade_lvm(p, "2.0.0", 2, &set, &[]);
    eprintln!("measured: successful upgrade: {:?}", t.elapsed());
    assert!(ok, "upgrade to 2.0.0:\n{out}");
    nodes_serve("2.0.0", 2);
    wait_slave_of_lvm1(Duration::from_secs(120));
    let sums = table_sums("lvm1");
    assert!(
        sums.contains_key("PAGE_HISTORY"),
        "schema 2 on the master: {sums:?}"
    );
    assert_eq!(
        table_sums("db2"),
        sums,
        "the slave holds what the master holds"
    );
    let snaps = snapshots_of_datadir();
    let snap = format!("{set}-mysql");
    assert_eq!(
        snaps.split_whitespace().next(),
        Some(snap.as_str()),
        "the master's snapshot LV after the upgrade: {snaps}"
    );
    let mut commit = lvm_args("commit", &[]);
    commit.extend([id.clone(), "--output".into(), "plain".into()]);
    let o = p.run_cluster(&commit);
    let out = text(&o);
    assert!(o.status.success(), "commit:\n{out}");
    assert!(
        out.contains(&format!("/dev/vg0/{snap} ")) && out.contains("% full"),
        "the commit printed the LV's fill:\n{out}"
    );
    assert_eq!(
        snapshots_of_datadir(),
        "",
        "no snapshot LV left after the commit"
    );
}
