//! The ssh_config(5) file written for one host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::TransportOptions;
use crate::inventory::Connection;

/// A config file for one host. ssh takes the first value it reads, and passes this file (`-F`)
/// to the ssh it starts for a `ProxyJump` hop, but none of its own `-o`/`-i` options (OpenSSH
/// ssh.c builds the hop's command from `-l`, `-p`, `-J`, `-F` and `-v` only). So the host-key
/// policy, known_hosts file and identity are written here too, first, so the hop checks keys
/// exactly like the connection to the host itself; then the inventory's `ssh_options`, then
/// the user's and the system's own config, so both are honoured.
pub(super) fn ssh_config_for(
    c: &Connection,
    opts: &TransportOptions,
) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix("cutover-ssh-")
        .tempfile()
        .context("cannot write ssh config")?;
    let accept_new = c.accept_new_host_keys || opts.accept_new_host_keys;
    writeln!(
        f,
        "StrictHostKeyChecking {}",
        if accept_new { "accept-new" } else { "yes" }
    )?;
    if let Some(k) = &c.known_hosts_file {
        writeln!(f, "UserKnownHostsFile {}", config_path(k))?;
    }
    if let Some(k) = &c.identity_file {
        writeln!(f, "IdentityFile {}", config_path(k))?;
        writeln!(f, "IdentitiesOnly yes")?;
    }
    writeln!(f, "BatchMode yes")?;
    if !c.ssh_options.contains_key("ConnectTimeout") {
        let t = opts.connect_timeout.unwrap_or(Duration::from_secs(10));
        writeln!(f, "ConnectTimeout {}", t.as_secs().max(1))?;
    }
    for (k, v) in &c.ssh_options {
        writeln!(f, "{k} {v}")?;
    }
    if !c.ssh_options.contains_key("ServerAliveInterval") {
        writeln!(f, "ServerAliveInterval 15")?;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let user = PathBuf::from(home).join(".ssh/config");
        if user.is_file() {
            writeln!(f, "Include {}", user.display())?;
        }
    }
    if std::path::Path::new("/etc/ssh/ssh_config").is_file() {
        writeln!(f, "Include /etc/ssh/ssh_config")?;
    }
    f.flush()?;
    Ok(f)
}

/// A path as an ssh_config value: `%` is ssh's token character, and blanks need quotes.
fn config_path(p: &std::path::Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s
    }
}
