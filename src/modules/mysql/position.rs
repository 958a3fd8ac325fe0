//! Replication positions: MariaDB GTID lists, the master's point, and whether a replica has
//! reached it. Pure functions.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Facts, Flavour};

/// domain → seq_no of a MariaDB GTID position ("0-1-20,1-2-5").
pub fn mariadb_gtid(pos: &str) -> BTreeMap<u64, u64> {
    pos.split(',')
        .filter_map(|g| {
            let mut p = g.trim().split('-');
            let d = p.next()?.parse().ok()?;
            let _server: u64 = p.next()?.parse().ok()?;
            let seq = p.next()?.parse().ok()?;
            Some((d, seq))
        })
        .collect()
}

/// Has `have` (the slave's gtid_slave_pos) reached `want` (the master's gtid_binlog_pos)?
pub fn mariadb_gtid_reached(have: &str, want: &str) -> bool {
    let h = mariadb_gtid(have);
    mariadb_gtid(want)
        .iter()
        .all(|(d, s)| h.get(d).is_some_and(|hs| hs >= s))
}

/// Has the slave's IO thread already received the master's point into its relay log (so the
/// SQL thread can reach it with the IO thread stopped)? None: cannot tell.
pub fn relay_log_holds(slave: &Facts, master: &MasterPos) -> Option<bool> {
    let r = slave.replica.as_ref()?;
    if r.gtid() {
        return match (&master.gtid, slave.flavour) {
            (Some(g), Flavour::Mariadb) => Some(mariadb_gtid_reached(&r.gtid_io_pos, g)),
            _ => None,
        };
    }
    match (&master.file, master.pos) {
        (Some(f), Some(p)) => Some(
            r.source_log_file.as_str() > f.as_str()
                || (r.source_log_file == *f && r.read_source_log_pos >= p),
        ),
        _ => None,
    }
}

/// The master's current point, read on the master.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MasterPos {
    pub gtid: Option<String>,
    pub file: Option<String>,
    pub pos: Option<u64>,
}

impl MasterPos {
    pub(super) fn describe(&self) -> String {
        match (&self.gtid, &self.file, self.pos) {
            (Some(g), _, _) => format!("GTID {g}"),
            (None, Some(f), Some(p)) => format!("{f}:{p}"),
            _ => "an unknown position".into(),
        }
    }
}

/// Does the slave already have the master's point? None: cannot tell without asking the
/// server (MySQL GTID sets: the `check_subset` section answers that).
pub fn slave_reached(slave: &Facts, master: &MasterPos) -> Option<bool> {
    let r = slave.replica.as_ref()?;
    if r.gtid() {
        if let Some(g) = &master.gtid {
            return match slave.flavour {
                Flavour::Mariadb => Some(mariadb_gtid_reached(
                    slave.gtid_slave_pos.as_deref().unwrap_or(""),
                    g,
                )),
                Flavour::Mysql => slave.checks.get("subset").map(|v| v == "1"),
            };
        }
    }
    match (&master.file, master.pos) {
        (Some(f), Some(p)) => Some(r.relay_source_log_file == *f && r.exec_source_log_pos >= p)
            .map(|b| b || r.relay_source_log_file.as_str() > f.as_str()),
        _ => None,
    }
}
