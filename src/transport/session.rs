//! The host's long-lived session shell (one per sudo user, see `crate::session_shell`): a
//! command through it costs no new channel.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::exec::Input;
use super::{Become, HostConn, Kind, Output};
use crate::session_shell::{Put, SessionShell, DRIVER};

/// How long a session shell may take to start before the host falls back to a channel per
/// command.
const SHELL_START_TIMEOUT: Duration = Duration::from_secs(15);

impl HostConn {
    /// The command in the host's session shell for this sudo user, started on first use.
    /// `None` when there is none to use (local host, turned off, could not be started, or
    /// busy with another command of this run): the caller then opens a channel.
    pub(super) async fn via_session_shell(
        &self,
        inner: &str,
        stdin: Option<Input<'_>>,
        put: Option<Put<'_>>,
        become_: Option<&Become>,
    ) -> Option<Result<Output>> {
        let Kind::Ssh(session) = self.kind() else {
            return None;
        };
        if !self.use_session_shell {
            return None;
        }
        let key = become_
            .map(|b| b.user.clone().unwrap_or_else(|| "root".to_string()))
            .unwrap_or_default();
        let slot = self
            .shells
            .lock()
            .expect("shell table")
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.try_lock().ok()?;
        if slot.unavailable {
            return None;
        }
        let mut shell = match slot.shell.take() {
            Some(shell) => shell,
            None => match tokio::time::timeout(
                SHELL_START_TIMEOUT,
                self.start_session_shell(&session, become_),
            )
            .await
            {
                Ok(Ok(shell)) => shell,
                Ok(Err(e)) if is_connection_text(&format!("{e:#}")) => return Some(Err(e)),
                _ => {
                    slot.unavailable = true;
                    return None;
                }
            },
        };
        // On error or cancellation the shell is dropped here, closing its channel.
        let done = async {
            let (len, mut reader) = Input::open_or_empty(stdin).await?;
            match put {
                Some(p) => shell.run_put(inner, len, &mut reader, p).await,
                None => shell.run(inner, len, &mut reader).await,
            }
        }
        .await;
        Some(done.map(|f| {
            if !shell.saw_stray_output() {
                slot.shell = Some(shell);
            }
            Output {
                rc: f.rc,
                stdout: f.stdout,
                stderr: f.stderr,
                ..Default::default()
            }
        }))
    }

    async fn start_session_shell(
        &self,
        session: &Arc<openssh::Session>,
        become_: Option<&Become>,
    ) -> Result<SessionShell> {
        let (command, password_line) = self.command_line(DRIVER, become_).await?;
        let mut child = session
            .clone()
            .arc_raw_command(command)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await?;
        let (Some(i), Some(o), Some(e)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            anyhow::bail!("the session shell's pipes are missing");
        };
        SessionShell::start(
            Box::pin(i),
            Box::pin(o),
            Box::pin(e),
            Box::new(child),
            password_line.as_deref().map(str::as_bytes),
        )
        .await
    }
}

/// Did the connection itself go away (as opposed to the shell not starting)?
fn is_connection_text(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("connection closed") || t.contains("disconnected") || t.contains("broken pipe")
}
