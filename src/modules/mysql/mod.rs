//! MySQL / MariaDB: `mysql_facts` (read-only), `mysql_replication` (replica threads, in-sync
//! waits, read_only, setting up and forgetting replication) and `mysql_query` (SQL or an SQL
//! file).
//!
//! Flavour and version come from `SELECT VERSION()` (MariaDB's contains `MariaDB`), and the
//! statements follow from them: `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`,
//! `SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS`, `STOP/START SLAVE|REPLICA`, … Replication
//! status is parsed **by column name**, accepting MySQL 8's (`Replica_IO_Running`,
//! `Source_*`) and MariaDB's (`Slave_IO_Running`, `Master_*`) spellings: MariaDB says the column
//! order changes between versions (https://mariadb.com/kb/en/show-replica-status/; MySQL:
//! https://dev.mysql.com/doc/refman/8.4/en/show-replica-status.html).
//!
//! "In sync" never looks at `Seconds_Behind_Master`: the master's position (GTID, else binary
//! log file and position) is read on the master and waited for on the slave with
//! `MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET` / `MASTER_POS_WAIT` / `SOURCE_POS_WAIT`, in
//! short slices so a replica that stops during the wait is reported at once.
//!
//! Credentials: without `login_*` arguments the client uses the host's default (Debian: root
//! through the unix socket). With them, an option file is written on the host by the script
//! itself from its standard input (umask 077, `mktemp`), passed as `--defaults-extra-file` and
//! removed when the script exits: a password is never in argv nor in the environment. SQL that
//! carries a secret (`CHANGE MASTER TO … MASTER_PASSWORD`) goes on standard input as well.

mod client;
mod facts;
mod output;
mod position;
mod query;
mod replication;
#[cfg(test)]
mod tests;

pub(crate) use client::{run_sql_script, sql_str, Login, LoginArgs, LoginSource};
pub use facts::{dialect, facts_from_sections, Dialect, Facts, Flavour, ReplicaStatus, DB_UNITS};
pub(crate) use facts::{facts, MysqlFacts};
pub use output::{parse_batch, parse_sections, parse_vertical, Row};
pub use position::{mariadb_gtid, mariadb_gtid_reached, relay_log_holds, slave_reached, MasterPos};
pub(crate) use query::MysqlQuery;
pub(crate) use replication::MysqlReplication;
