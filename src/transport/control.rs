//! The ssh masters' control sockets: where they live, and ending the masters of this run and
//! of controllers that died.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::HostConn;

fn control_root() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("cutover")
}

/// Control sockets of this process live in a directory named by its pid, so a later run can
/// tell which masters belong to a controller that is gone.
pub(super) fn control_dir() -> Result<PathBuf> {
    let dir = control_root().join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// End the ssh masters left by cutover processes that died (SIGKILL, power loss of the
/// controller's session), and remove their control directories.
pub fn reap_stale_masters() {
    let Ok(entries) = std::fs::read_dir(control_root()) else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || crate::controller::process::process_alive(pid) {
            continue;
        }
        for socket in sockets_under(&e.path()) {
            tell_master_to_exit(&socket, "cutover-stale-master");
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// Close every connection of a run; masters still shared elsewhere are told to exit through
/// their control socket, so none outlives the run.
pub async fn close_all(conns: impl IntoIterator<Item = Arc<HostConn>>) {
    for c in conns {
        match Arc::try_unwrap(c) {
            Ok(c) => c.close().await,
            Err(shared) => shared.exit_master(),
        }
    }
    remove_own_control_dir();
}

/// `ssh -S SOCKET -O exit`: the master behind a control socket ends (`name` is only what
/// ssh wants as a host argument).
pub(super) fn tell_master_to_exit(socket: &std::path::Path, name: &str) {
    let _ = std::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Remove this process's control directory once every master is closed.
pub fn remove_own_control_dir() {
    let _ = std::fs::remove_dir_all(control_root().join(std::process::id().to_string()));
}

fn sockets_under(dir: &std::path::Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => out.extend(sockets_under(&e.path())),
                Ok(t) if t.is_socket() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}
