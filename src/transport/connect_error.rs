//! Why a connection failed, in a sentence an admin can act on (asking a jump host again when
//! the hop is what failed).

use std::process::Stdio;
use std::time::Duration;

use anyhow::anyhow;

use crate::inventory::Connection;

/// `[user@]host[:port]` (the last hop of `-J a,b`), as an `ssh://` destination, and the hops
/// before it.
fn jump_hop(jump: &str) -> (String, Option<String>) {
    let (before, last) = match jump.rsplit_once(',') {
        Some((b, l)) => (Some(b.trim().to_string()), l.trim()),
        None => (None, jump.trim()),
    };
    let dest = if last.starts_with("ssh://") {
        last.to_string()
    } else {
        format!("ssh://{last}")
    };
    (dest, before)
}

/// After a failed connection through a jump host: run the hop as ssh itself does (`ssh -F
/// CONFIG -W HOST:PORT HOP`) and, if the hop is what failed, say so. None when the hop is fine
/// or says nothing recognisable.
pub(super) async fn diagnose_jump(
    name: &str,
    c: &Connection,
    jump: &str,
    config: &std::path::Path,
) -> Option<anyhow::Error> {
    let (hop, before) = jump_hop(jump);
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-F").arg(config);
    if let Some(b) = &before {
        cmd.arg("-J").arg(b);
    }
    let target = if c.address.contains(':') {
        format!("[{}]:{}", c.address, c.port)
    } else {
        format!("{}:{}", c.address, c.port)
    };
    cmd.arg("-W")
        .arg(target)
        .arg("--")
        .arg(&hop)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .ok()?
        .ok()?;
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let lower = said.to_lowercase();
    let known = c
        .known_hosts_file
        .as_ref()
        .map_or("known_hosts".to_string(), |k| k.display().to_string());
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("no matching host key")
    {
        return Some(anyhow!(
            "{name} ({}): the jump host {jump} was refused: its host key is unknown or has changed (host key verification failed on the hop); nothing was run on {name}. Check the jump host's key and add it to {known} (or allow new keys with accept_new_host_keys: true). ssh said: {said}",
            c.address
        ));
    }
    if lower.contains("open failed") || lower.contains("stdio forwarding failed") {
        return Some(anyhow!(
            "{name} ({}) is unreachable from the jump host {jump}: {said}",
            c.address
        ));
    }
    if lower.contains("permission denied") {
        return Some(anyhow!(
            "{name} ({}): ssh authentication to the jump host {jump} failed (permission denied): {said}",
            c.address
        ));
    }
    if lower.contains("timed out")
        || lower.contains("no route")
        || lower.contains("connection refused")
        || lower.contains("could not resolve")
    {
        return Some(anyhow!(
            "{name} ({}): the jump host {jump} is unreachable: {said}",
            c.address
        ));
    }
    None
}

/// Turn ssh's failure into a sentence an admin can act on.
pub(super) fn explain_connect_error(name: &str, address: &str, e: openssh::Error) -> anyhow::Error {
    let text = format!("{:#}", anyhow::Error::from(e));
    let lower = text.to_lowercase();
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("no matching host key")
    {
        return anyhow!(
            "{name} ({address}): host key verification failed — the host's key is unknown or has changed; nothing was run on it. Check the key and add it to known_hosts (or allow new keys with accept_new_host_keys: true). ssh said: {}",
            text.trim()
        );
    }
    if lower.contains("permission denied") {
        return anyhow!(
            "{name} ({address}): ssh authentication failed (permission denied): {}",
            text.trim()
        );
    }
    if lower.contains("timed out")
        || lower.contains("no route")
        || lower.contains("connection refused")
        || lower.contains("could not resolve")
    {
        return anyhow!("{name} ({address}) is unreachable: {}", text.trim());
    }
    anyhow!("{name} ({address}): cannot connect: {}", text.trim())
}
