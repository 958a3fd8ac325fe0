//! Reaching a host: one ssh master connection per host (openssh, native mux), reused for every
//! command of the run, or the controller itself for `local`.
//!
//! Every command is a POSIX shell script run as `/bin/sh -c SCRIPT`, so the remote user's
//! login shell only parses one quoted word; values are quoted by the callers (`crate::shell`).
//!
//! The pieces: opening and closing a connection (`connect`, why it failed: `connect_error`,
//! the ssh config written for it: `ssh_config`, the masters' control sockets: `control`),
//! running a script (`run`: in the session shell, `session`, or on a channel, `exec`), and
//! streaming between hosts (`pipe`).

mod connect;
mod connect_error;
mod control;
mod exec;
mod pipe;
mod run;
mod session;
mod ssh_config;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::session_shell::SessionShell;

pub use control::{close_all, reap_stale_masters, remove_own_control_dir};
pub use exec::Input;
pub use pipe::pipe;

/// What a command produced.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
    pub timed_out: bool,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.rc == 0 && !self.timed_out
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Running as another user through sudo.
#[derive(Clone, Debug, Default)]
pub struct Become {
    pub user: Option<String>,
}

/// Options from the command line that apply to every connection.
#[derive(Clone, Debug, Default)]
pub struct TransportOptions {
    /// `--accept-new-host-keys`: like the inventory option, for every host.
    pub accept_new_host_keys: bool,
    pub connect_timeout: Option<Duration>,
    /// The sudo password, if any (from a prompt, `CUTOVER_BECOME_PASSWORD` or a file).
    pub become_password: Option<Arc<String>>,
}

#[derive(Clone)]
enum Kind {
    Ssh(Arc<openssh::Session>),
    Local,
}

/// The session shell for one sudo user (or none) on a host: started on first use, dropped
/// when a command on it fails or is cancelled (the next command starts a new one).
#[derive(Default)]
struct ShellSlot {
    shell: Option<SessionShell>,
    /// It could not be started here (no `head`, sudo refuses…): use a channel per command.
    unavailable: bool,
}

/// A connected host.
pub struct HostConn {
    pub name: String,
    /// Behind a lock: `reconnect` puts a new master in its place (after a reboot).
    kind: std::sync::RwLock<Kind>,
    /// How this connection was made, for `reconnect` (`None`: the controller itself).
    made_with: Option<(crate::inventory::Connection, TransportOptions)>,
    channels: Arc<Semaphore>,
    become_password: Option<Arc<String>>,
    /// Does sudo need the password on this host? Asked once (`sudo -n true`), then remembered.
    sudo_needs_password: tokio::sync::OnceCell<bool>,
    /// Generated ssh config for this host (inventory ssh_options + the user's own config).
    /// Every master's, kept while the connection lives (`reconnect` adds one).
    _config: std::sync::Mutex<Vec<tempfile::NamedTempFile>>,
    /// Long-lived shells, by sudo user ("" = the login user); see `crate::session_shell`.
    shells: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<ShellSlot>>>>,
    use_session_shell: bool,
}
