//! Opening and closing a host's connection: the controller itself, or an ssh master
//! (openssh, native mux) shared by every command of the run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::Semaphore;

use super::connect_error::{diagnose_jump, explain_connect_error};
use super::control::{control_dir, tell_master_to_exit};
use super::ssh_config::ssh_config_for;
use super::{HostConn, Kind, TransportOptions};
use crate::inventory::Connection;

/// Channels opened at once on one master for single commands. With the session shells (one
/// for the login user, one per sudo user, rarely more than two) this stays within sshd's
/// default MaxSessions (10), so a busy host never refuses us.
const CHANNELS_PER_HOST: usize = 7;

impl HostConn {
    /// The controller itself.
    pub fn local(name: &str) -> HostConn {
        HostConn {
            name: name.to_string(),
            kind: std::sync::RwLock::new(Kind::Local),
            made_with: None,
            channels: Arc::new(Semaphore::new(64)),
            become_password: None,
            sudo_needs_password: tokio::sync::OnceCell::new(),
            _config: Default::default(),
            shells: Default::default(),
            use_session_shell: false,
        }
    }

    /// Open the master connection. Host keys are checked strictly unless the inventory or the
    /// command line allows accepting a new key; a changed key is refused in every mode.
    pub async fn connect(name: &str, c: &Connection, opts: &TransportOptions) -> Result<HostConn> {
        if c.address == "local" {
            return Ok(HostConn::local(name));
        }
        // The inventory loader refused these with their positions; never put one on ssh's
        // command line or in its config however the connection was made.
        if let Some(why) = c.problem() {
            return Err(anyhow!("{name}: not connecting: {why}"));
        }
        let config = ssh_config_for(c, opts)?;
        let mut b = openssh::SessionBuilder::default();
        b.known_hosts_check(if c.accept_new_host_keys || opts.accept_new_host_keys {
            openssh::KnownHosts::Add
        } else {
            openssh::KnownHosts::Strict
        })
        .port(c.port)
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)))
        .control_directory(control_dir()?)
        // The master lives as long as the run: a host may sit idle for a long time between
        // its steps (a serial play on other hosts, an approval). Masters of a controller that
        // was killed are ended by the next run (`reap_stale_masters`).
        .control_persist(openssh::ControlPersist::Forever)
        .config_file(config.path());
        // Keepalives find a dead host; the inventory may tune them (ssh reads the first value
        // it sees, and options on ssh's command line come before the config file).
        if !c.ssh_options.contains_key("ServerAliveInterval") {
            b.server_alive_interval(Duration::from_secs(15));
        }
        if let Some(u) = &c.user {
            b.user(u.clone());
        }
        if let Some(k) = &c.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &c.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        if let Some(j) = &c.jump_host {
            b.jump_hosts([j.as_str()]);
        }
        let session = match b.connect_mux(&c.address).await {
            Ok(s) => s,
            Err(e) => {
                // The hop's own messages go to the master's stderr, which is not kept: ask
                // the hop again, the way ssh does, to say why.
                if let Some(j) = &c.jump_host {
                    if let Some(why) = diagnose_jump(name, c, j, config.path()).await {
                        return Err(why);
                    }
                }
                return Err(explain_connect_error(name, &c.address, e));
            }
        };
        Ok(HostConn {
            name: name.to_string(),
            kind: std::sync::RwLock::new(Kind::Ssh(Arc::new(session))),
            made_with: Some((c.clone(), opts.clone())),
            channels: Arc::new(Semaphore::new(CHANNELS_PER_HOST)),
            become_password: opts.become_password.clone(),
            sudo_needs_password: tokio::sync::OnceCell::new(),
            _config: std::sync::Mutex::new(vec![config]),
            shells: Default::default(),
            use_session_shell: !c.channel_per_command,
        })
    }

    /// The current master (or the controller itself).
    pub(super) fn kind(&self) -> Kind {
        self.kind.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ask the master to exit through its control socket, when the session is shared.
    pub(super) fn exit_master(&self) {
        if let Kind::Ssh(s) = self.kind() {
            tell_master_to_exit(s.control_socket(), "cutover-master");
        }
    }

    /// Open a new master the way the first was opened and use it from now on (the host
    /// rebooted: the old master's connection is gone). The old master is told to exit and the
    /// session shells, which ran on it, are dropped.
    pub async fn reconnect(&self) -> Result<()> {
        let Some((c, opts)) = &self.made_with else {
            return Ok(());
        };
        let fresh = HostConn::connect(&self.name, c, opts).await?;
        let HostConn { kind, _config, .. } = fresh;
        let new_kind = kind.into_inner().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(
            &mut *self.kind.write().unwrap_or_else(|e| e.into_inner()),
            new_kind,
        );
        if let Kind::Ssh(s) = old {
            tell_master_to_exit(s.control_socket(), "cutover-master");
        }
        self.shells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let fresh_config = _config.into_inner().unwrap_or_else(|e| e.into_inner());
        self._config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fresh_config);
        Ok(())
    }

    /// Close the master connection (and its control socket).
    pub async fn close(self) {
        // The session shells hold the session too; their channels end first.
        drop(self.shells);
        let kind = self.kind.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Kind::Ssh(s) = kind {
            match Arc::try_unwrap(s) {
                Ok(s) => {
                    let _ = s.close().await;
                }
                Err(shared) => tell_master_to_exit(shared.control_socket(), "cutover-master"),
            }
        }
    }
}
