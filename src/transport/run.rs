//! Running a script on a host: in its session shell when there is one, else on a channel of
//! its own (`/bin/sh -c`, under sudo if asked), with the step's timeout.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::exec::Input;
use super::{Become, HostConn, Output};
use crate::session_shell::Put;
use crate::shell::quote;

impl HostConn {
    /// Run a shell script. `stdin` is written to the script's standard input. A timeout kills
    /// the remote command (coreutils `timeout` on the host, so nothing keeps running there).
    pub async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        become_: Option<&Become>,
        timeout: Option<Duration>,
    ) -> Result<Output> {
        self.run_input(script, stdin.map(Input::Bytes), become_, timeout)
            .await
    }

    /// As `run`, with the standard input given as bytes or as a controller file streamed to
    /// the host (a large file is never held in memory).
    pub async fn run_input(
        &self,
        script: &str,
        stdin: Option<Input<'_>>,
        become_: Option<&Become>,
        timeout: Option<Duration>,
    ) -> Result<Output> {
        let inner = wrap_script(script, timeout);
        let started = Instant::now();
        let fut = async {
            if let Some(done) = self.via_session_shell(&inner, stdin, None, become_).await {
                return done;
            }
            self.via_channel(&inner, stdin, become_).await
        };
        self.timed(fut, started, timeout).await
    }

    /// Run a script that works on a new file: `input` is first written to `put.path` (created
    /// exclusively, with `put.umask`), and kept only if it arrived whole with the SHA-256
    /// `put.sha256`; then `script` runs (with no standard input). When that file cannot be
    /// created (exit code 125) or written (126) the script does not run.
    ///
    /// Through the session shell this costs the host one process; otherwise the same steps run
    /// as a script of their own (`cat` into place and `sha256sum` to check it).
    pub async fn run_put(
        &self,
        script: &str,
        input: Input<'_>,
        put: Put<'_>,
        become_: Option<&Become>,
        timeout: Option<Duration>,
    ) -> Result<Output> {
        let inner = wrap_script(script, timeout);
        let started = Instant::now();
        // A path the frame cannot carry (a newline in it) takes the long way.
        let fut = async {
            if put.fits_a_frame() {
                if let Some(done) = self
                    .via_session_shell(&inner, Some(input), Some(put), become_)
                    .await
                {
                    return done;
                }
            }
            let both = wrap_script(&format!("{}\n{script}", put_script(&put)), timeout);
            self.via_channel(&both, Some(input), become_).await
        };
        self.timed(fut, started, timeout).await
    }

    /// A command's output, with its duration and whether it was stopped by its timeout.
    async fn timed(
        &self,
        fut: impl std::future::Future<Output = Result<Output>>,
        started: Instant,
        timeout: Option<Duration>,
    ) -> Result<Output> {
        let backstop = timeout.map(|t| t + Duration::from_secs(15));
        let mut out = match backstop {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r?,
                Err(_) => Output {
                    rc: 124,
                    timed_out: true,
                    ..Default::default()
                },
            },
            None => fut.await?,
        };
        out.duration = started.elapsed();
        // coreutils timeout exits 124 when it had to stop the command.
        if timeout.is_some() && out.rc == 124 {
            out.timed_out = true;
        }
        Ok(out)
    }

    /// The command on its own channel: `/bin/sh -c` (under sudo if asked).
    async fn via_channel(
        &self,
        inner: &str,
        stdin: Option<Input<'_>>,
        become_: Option<&Become>,
    ) -> Result<Output> {
        let (command, password_line) = self.command_line(inner, become_).await?;
        self.exec(&command, password_line.as_deref(), stdin).await
    }

    /// The remote command line for a script (`/bin/sh -c`, under sudo if asked), and the
    /// sudo password line to write first on its input when sudo needs one.
    pub(super) async fn command_line(
        &self,
        inner: &str,
        become_: Option<&Become>,
    ) -> Result<(String, Option<String>)> {
        let Some(b) = become_ else {
            return Ok((format!("exec /bin/sh -c {}", quote(inner)), None));
        };
        let user = b.user.as_deref().unwrap_or("root");
        // Quoted, after `-u`, before `--`: still, only a user name or `#UID` goes to sudo.
        if let Some(why) = crate::ssh_args::become_user_problem(user) {
            return Err(anyhow!("{}: sudo user `{user}` {why}", self.name));
        }
        if self.sudo_password_needed().await? {
            let pw = self.become_password.as_ref().ok_or_else(|| {
                anyhow!("sudo on {} asks for a password; give it with --ask-become-pass, CUTOVER_BECOME_PASSWORD or --become-password-file", self.name)
            })?;
            Ok((
                format!(
                    "exec sudo -S -p '' -u {} -- /bin/sh -c {}",
                    quote(user),
                    quote(inner)
                ),
                Some(format!("{pw}\n")),
            ))
        } else {
            Ok((
                format!(
                    "exec sudo -n -u {} -- /bin/sh -c {}",
                    quote(user),
                    quote(inner)
                ),
                None,
            ))
        }
    }

    async fn sudo_password_needed(&self) -> Result<bool> {
        self.sudo_needs_password
            .get_or_try_init(|| async {
                let probe = self.exec("exec sudo -n true", None, None).await?;
                Ok::<bool, anyhow::Error>(!probe.ok())
            })
            .await
            .copied()
    }
}

/// A [`Put`] as a script of its own, for a command without the session shell: the input is
/// its standard input, copied into place and checked there.
fn put_script(put: &Put<'_>) -> String {
    let p = quote(put.path);
    let umask = put
        .umask
        .map_or(String::new(), |u| format!("umask {u:04o}; "));
    format!(
        r#"({umask}set -C; true > {p}) || exit 125
cat >> {p} || {{ rm -f -- {p}; exit 126; }}
set -- $(sha256sum -- {p})
if [ "$1" != {sha} ]; then rm -f -- {p}; echo "the content of {p} arrived incomplete or changed on the way (sha256 $1, expected {sha}); nothing written" >&2; exit 4; fi"#,
        sha = quote(put.sha256)
    )
}

/// The script as the host runs it: C locale, and under coreutils `timeout` when the step has
/// one (so the remote command is killed, not only abandoned).
pub(super) fn wrap_script(script: &str, timeout: Option<Duration>) -> String {
    let inner = format!("LC_ALL=C; export LC_ALL\n{script}");
    match timeout {
        Some(t) => format!(
            "exec timeout -k 5 {} /bin/sh -c {}",
            t.as_secs().max(1),
            quote(&inner)
        ),
        None => inner,
    }
}
