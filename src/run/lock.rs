//! One run at a time per cluster: a lock on the controller (flock, released by the kernel if
//! cutover dies) and a lock file on every target host naming its owner. A second run is
//! refused with the owner's details; a lock left by a dead run is reported as stale and broken
//! only with `--break-lock`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::controller::clock::now_rfc3339;
use crate::controller::hash::sha256_hex;
use crate::controller::process::process_alive;
use crate::controller::user::{controller_name, current_user};
use crate::shell::quote;
use crate::transport::HostConn;

/// Where the lock lives on each host: on disk (not /run), so it survives a reboot that an LVM
/// merge may need in the middle of a run, and in a directory every login user can write (the
/// sticky bit keeps one user from deleting another's lock), so runs as root and as an admin
/// account with sudo exclude each other.
pub const HOST_LOCK: &str = "/var/tmp/cutover.lock";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub run_id: String,
    pub user: String,
    pub controller: String,
    pub pid: u32,
    pub started: String,
}

impl Owner {
    pub fn me(run_id: &str) -> Owner {
        Owner {
            run_id: run_id.to_string(),
            user: current_user(),
            controller: controller_name(),
            pid: std::process::id(),
            started: now_rfc3339(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "run {} by {} on {} (pid {}, started {})",
            self.run_id, self.user, self.controller, self.pid, self.started
        )
    }

    /// Is the owning process gone? Only answerable on the owner's own controller.
    pub fn liveness(&self) -> Liveness {
        if self.controller != controller_name() {
            return Liveness::Unknown;
        }
        if process_alive(self.pid) {
            Liveness::Alive
        } else {
            Liveness::Dead
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Liveness {
    Alive,
    Dead,
    /// The owner ran on another controller; we cannot see its processes.
    Unknown,
}

/// The controller-side lock, held for the life of the run.
pub struct ControllerLock {
    _file: File,
}

/// Take the controller lock for a cluster (keyed by the inventory file).
pub fn lock_controller(
    state_dir: &Path,
    inventory: &Path,
    owner: &Owner,
) -> Result<ControllerLock> {
    let canonical = std::fs::canonicalize(inventory).unwrap_or_else(|_| inventory.to_path_buf());
    let key = sha256_hex(canonical.to_string_lossy().as_bytes());
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.lock", &key[..16]));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let held = serde_json::from_str::<Owner>(&text)
            .map(|o| o.describe())
            .unwrap_or_else(|_| "another run".into());
        bail!("another run is driving this cluster: {held}. Wait for it to finish (cutover runs).");
    }
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(serde_json::to_string(owner)?.as_bytes())?;
    file.sync_data()?;
    Ok(ControllerLock { _file: file })
}

/// What happened when taking a host's lock.
#[derive(Debug)]
pub enum HostLockError {
    Held(Owner),
    Stale(Owner),
    Other(String),
}

impl std::fmt::Display for HostLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostLockError::Held(o) => write!(f, "locked by {}", o.describe()),
            HostLockError::Stale(o) => write!(
                f,
                "stale lock left by {} (that process is gone); break it with --break-lock",
                o.describe()
            ),
            HostLockError::Other(e) => write!(f, "cannot take the lock: {e}"),
        }
    }
}

/// Take the lock file on a host. `break_lock` removes a stale lock, or one whose owner ran on
/// another controller (we cannot tell if it lives); never one held by a live local process.
pub async fn lock_host(
    host: &HostConn,
    owner: &Owner,
    break_lock: bool,
) -> std::result::Result<(), HostLockError> {
    let me = serde_json::to_string(owner).map_err(|e| HostLockError::Other(e.to_string()))?;
    // noclobber makes the redirection an O_EXCL create: atomic against a concurrent run.
    let script = format!(
        "(umask 022; set -C; printf '%s\\n' {me} > {lock}) 2>/dev/null && echo taken || {{ echo held; cat {lock}; }}",
        me = quote(&me),
        lock = quote(HOST_LOCK)
    );
    for _ in 0..2 {
        let out = host
            .run(&script, None, None, None)
            .await
            .map_err(|e| HostLockError::Other(format!("{e:#}")))?;
        let text = out.stdout_text();
        let mut lines = text.lines();
        match lines.next() {
            Some("taken") => return Ok(()),
            Some("held") => {
                let existing: Owner = match serde_json::from_str(lines.next().unwrap_or("")) {
                    Ok(o) => o,
                    Err(_) => {
                        return Err(HostLockError::Other(format!(
                            "{HOST_LOCK} exists but is not a cutover lock; inspect it"
                        )))
                    }
                };
                if existing.run_id == owner.run_id {
                    return Ok(()); // our own run (resume): take it over
                }
                let breakable = match existing.liveness() {
                    Liveness::Alive => false,
                    Liveness::Dead | Liveness::Unknown => break_lock,
                };
                if !breakable {
                    return Err(if existing.liveness() == Liveness::Dead {
                        HostLockError::Stale(existing)
                    } else {
                        HostLockError::Held(existing)
                    });
                }
                let rm = format!("rm -f -- {}", quote(HOST_LOCK));
                host.run(&rm, None, None, None)
                    .await
                    .map_err(|e| HostLockError::Other(format!("{e:#}")))?;
            }
            _ => return Err(HostLockError::Other(out.stderr_text().trim().to_string())),
        }
    }
    Err(HostLockError::Other(
        "lock changed hands while breaking it".into(),
    ))
}

/// Release our lock on a host (only if it is still ours).
pub async fn unlock_host(host: &HostConn, run_id: &str) {
    // The lock is one line: read by the shell itself (a `grep` would be one more process).
    let script = format!(
        "IFS= read -r l < {lock} 2>/dev/null || exit 0\ncase $l in *{id}*) rm -f -- {lock} ;; esac",
        id = quote(&format!("\"run_id\":\"{run_id}\"")),
        lock = quote(HOST_LOCK)
    );
    let _ = host.run(&script, None, None, None).await;
}
