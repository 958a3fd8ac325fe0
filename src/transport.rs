//! Reaching a host: one ssh master connection per host (openssh, native mux), reused for every
//! command of the run, or the controller itself for `local`.
//!
//! Every command is a POSIX shell script run as `/bin/sh -c SCRIPT`, so the remote user's
//! login shell only parses one quoted word; values are quoted by the callers (`crate::shell`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::inventory::Connection;
use crate::session_shell::{Put, SessionShell, DRIVER};
use crate::shell::quote;

/// Channels opened at once on one master for single commands. With the session shells (one
/// for the login user, one per sudo user, rarely more than two) this stays within sshd's
/// default MaxSessions (10), so a busy host never refuses us.
const CHANNELS_PER_HOST: usize = 7;

/// How long a session shell may take to start before the host falls back to a channel per
/// command.
const SHELL_START_TIMEOUT: Duration = Duration::from_secs(15);

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
    kind: Kind,
    channels: Arc<Semaphore>,
    become_password: Option<Arc<String>>,
    /// Does sudo need the password on this host? Asked once (`sudo -n true`), then remembered.
    sudo_needs_password: tokio::sync::OnceCell<bool>,
    /// Generated ssh config for this host (inventory ssh_options + the user's own config).
    _config: Option<tempfile::NamedTempFile>,
    /// Long-lived shells, by sudo user ("" = the login user); see `crate::session_shell`.
    shells: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<ShellSlot>>>>,
    use_session_shell: bool,
}

impl HostConn {
    /// The controller itself.
    pub fn local(name: &str) -> HostConn {
        HostConn {
            name: name.to_string(),
            kind: Kind::Local,
            channels: Arc::new(Semaphore::new(64)),
            become_password: None,
            sudo_needs_password: tokio::sync::OnceCell::new(),
            _config: None,
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
            kind: Kind::Ssh(Arc::new(session)),
            channels: Arc::new(Semaphore::new(CHANNELS_PER_HOST)),
            become_password: opts.become_password.clone(),
            sudo_needs_password: tokio::sync::OnceCell::new(),
            _config: Some(config),
            shells: Default::default(),
            use_session_shell: !c.channel_per_command,
        })
    }

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
    async fn command_line(
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

    /// The command in the host's session shell for this sudo user, started on first use.
    /// `None` when there is none to use (local host, turned off, could not be started, or
    /// busy with another command of this run): the caller then opens a channel.
    async fn via_session_shell(
        &self,
        inner: &str,
        stdin: Option<Input<'_>>,
        put: Option<Put<'_>>,
        become_: Option<&Become>,
    ) -> Option<Result<Output>> {
        let Kind::Ssh(session) = &self.kind else {
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
                self.start_session_shell(session, become_),
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

    async fn sudo_password_needed(&self) -> Result<bool> {
        self.sudo_needs_password
            .get_or_try_init(|| async {
                let probe = self.exec("exec sudo -n true", None, None).await?;
                Ok::<bool, anyhow::Error>(!probe.ok())
            })
            .await
            .copied()
    }

    /// One command on one channel, with retries when the server refuses a channel. `prefix`
    /// (a sudo password line) is written before the input.
    async fn exec(
        &self,
        command: &str,
        prefix: Option<&str>,
        stdin: Option<Input<'_>>,
    ) -> Result<Output> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| anyhow!("connection to {} closed", self.name))?;
        let mut attempt = 0;
        loop {
            let input = match (prefix, stdin) {
                (None, None) => None,
                (p, i) => {
                    let (_, reader) = Input::open_or_empty(i).await?;
                    let head: &[u8] = p.map(str::as_bytes).unwrap_or_default();
                    Some(Box::new(head.chain(reader)) as BoxedReader<'_>)
                }
            };
            let result = match &self.kind {
                Kind::Local => exec_local(command, input).await,
                Kind::Ssh(s) => exec_ssh(s, command, input).await,
            };
            match result {
                Err(e) if attempt < 5 && is_channel_refusal(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Start a script on a channel of its own with its streams open, for `pipe`.
    async fn spawn(
        &self,
        script: &str,
        become_: Option<&Become>,
        timeout: Option<Duration>,
    ) -> Result<Spawned> {
        let inner = wrap_script(script, timeout);
        let (command, password_line) = self.command_line(&inner, become_).await?;
        let permit = self
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow!("connection to {} closed", self.name))?;
        let mut spawned = match &self.kind {
            Kind::Local => {
                let mut child = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(&command)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start /bin/sh")?;
                let (i, o, e) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
                Spawned {
                    stdin: i.map(|i| Box::new(i) as _),
                    stdout: o.map(|o| Box::new(o) as _),
                    stderr: e.map(|e| Box::new(e) as _),
                    wait: Box::pin(async move { Ok(child.wait().await?.code().unwrap_or(-1)) }),
                    _permit: permit,
                }
            }
            Kind::Ssh(session) => {
                let mut child = session
                    .clone()
                    .arc_raw_command(&command)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await?;
                let (i, o, e) = (
                    child.stdin().take(),
                    child.stdout().take(),
                    child.stderr().take(),
                );
                Spawned {
                    stdin: i.map(|i| Box::new(i) as _),
                    stdout: o.map(|o| Box::new(o) as _),
                    stderr: e.map(|e| Box::new(e) as _),
                    wait: Box::pin(async move { Ok(child.wait().await?.code().unwrap_or(-1)) }),
                    _permit: permit,
                }
            }
        };
        if let (Some(pw), Some(stdin)) = (password_line, spawned.stdin.as_mut()) {
            stdin.write_all(pw.as_bytes()).await?;
        }
        Ok(spawned)
    }

    /// Ask the master to exit through its control socket, when the session is shared.
    fn exit_master(&self) {
        if let Kind::Ssh(s) = &self.kind {
            tell_master_to_exit(s.control_socket(), "cutover-master");
        }
    }

    /// Close the master connection (and its control socket).
    pub async fn close(self) {
        // The session shells hold the session too; their channels end first.
        drop(self.shells);
        if let Kind::Ssh(s) = self.kind {
            match Arc::try_unwrap(s) {
                Ok(s) => {
                    let _ = s.close().await;
                }
                Err(shared) => tell_master_to_exit(shared.control_socket(), "cutover-master"),
            }
        }
    }
}

async fn exec_local(command: &str, stdin: Option<BoxedReader<'_>>) -> Result<Output> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start /bin/sh")?;
    let feed = feed(stdin, child.stdin.take());
    let (fed, out) = tokio::join!(feed, child.wait_with_output());
    fed?;
    let out = out?;
    Ok(Output {
        rc: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
        ..Default::default()
    })
}

async fn exec_ssh(
    session: &openssh::Session,
    command: &str,
    stdin: Option<BoxedReader<'_>>,
) -> Result<Output> {
    let mut cmd = session.raw_command(command);
    cmd.stdin(if stdin.is_some() {
        openssh::Stdio::piped()
    } else {
        openssh::Stdio::null()
    })
    .stdout(openssh::Stdio::piped())
    .stderr(openssh::Stdio::piped());
    let mut child = cmd.spawn().await?;
    let feed = feed(stdin, child.stdin().take());
    let (fed, out) = tokio::join!(feed, child.wait_with_output());
    fed?;
    let out = out?;
    Ok(Output {
        rc: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
        ..Default::default()
    })
}

/// Stream a command's input into its pipe, then close the pipe. A command that exits without
/// reading all of it is not an error (its exit code says what happened); failing to read the
/// controller's own file is.
async fn feed<W: tokio::io::AsyncWrite + Unpin>(
    input: Option<BoxedReader<'_>>,
    pipe: Option<W>,
) -> Result<()> {
    let (Some(mut input), Some(mut pipe)) = (input, pipe) else {
        return Ok(());
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .await
            .context("cannot read the input on the controller")?;
        if n == 0 || pipe.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    pipe.shutdown().await.ok();
    Ok(())
}

type BoxedReader<'a> = Box<dyn AsyncRead + Unpin + Send + 'a>;

/// What a command reads on its standard input.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    /// A file on the controller, streamed to the host (never read into memory).
    File(&'a std::path::Path),
}

impl<'a> Input<'a> {
    /// Its length and a reader for it (nothing: zero bytes). A file is read up to the length
    /// it had when opened.
    async fn open_or_empty(input: Option<Input<'a>>) -> Result<(u64, BoxedReader<'a>)> {
        match input {
            None => Ok((0, Box::new(tokio::io::empty()))),
            Some(Input::Bytes(b)) => Ok((b.len() as u64, Box::new(b))),
            Some(Input::File(path)) => {
                let f = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("cannot read {} on the controller", path.display()))?;
                let len = f.metadata().await?.len();
                Ok((len, Box::new(f.take(len))))
            }
        }
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
fn wrap_script(script: &str, timeout: Option<Duration>) -> String {
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

/// Stream what a script prints on one host into a script's input on another (or the same)
/// host, through the controller but never held in its memory: each side on a channel of its
/// own. Returns both sides' results (the source's stdout is what went through, so it is
/// empty here) and the number of bytes carried.
pub async fn pipe(
    from: (&HostConn, &str, Option<&Become>),
    to: (&HostConn, &str, Option<&Become>),
    timeout: Option<Duration>,
) -> Result<(Output, Output, u64)> {
    let started = Instant::now();
    let work = async {
        let mut src = from.0.spawn(from.1, from.2, timeout).await?;
        let mut dst = to.0.spawn(to.1, to.2, timeout).await?;
        let (mut src_out, mut dst_in) = (
            src.stdout.take().context("source output")?,
            dst.stdin.take().context("destination input")?,
        );
        let carry = async {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            let mut open = true;
            loop {
                let n = src_out.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                // A destination that stopped reading: the rest is drained, so the source
                // ends too instead of blocking on a full pipe.
                if open && dst_in.write_all(&buf[..n]).await.is_err() {
                    open = false;
                }
                if open {
                    total += n as u64;
                }
            }
            dst_in.shutdown().await.ok();
            drop(dst_in);
            Ok::<u64, std::io::Error>(total)
        };
        let (carried, a, b) = tokio::join!(carry, src.finish(), dst.finish());
        let carried = carried.context("reading the source")?;
        Ok::<_, anyhow::Error>((a?, b?, carried))
    };
    let (mut a, mut b, carried) = match timeout.map(|t| t + Duration::from_secs(15)) {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| anyhow!("the copy did not finish in time"))??,
        None => work.await?,
    };
    a.duration = started.elapsed();
    b.duration = a.duration;
    Ok((a, b, carried))
}

/// A command started on its own channel with its streams open (`HostConn::spawn`).
struct Spawned {
    stdin: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>>,
    stdout: Option<BoxedReader<'static>>,
    stderr: Option<BoxedReader<'static>>,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32>> + Send>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Spawned {
    /// Read what is left of its output and its errors, and wait for its exit.
    async fn finish(mut self) -> Result<Output> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(mut o) = self.stdout.take() {
                o.read_to_end(&mut out).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let read_err = async {
            if let Some(mut e) = self.stderr.take() {
                e.read_to_end(&mut err).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let (a, b) = tokio::join!(read_out, read_err);
        a?;
        b?;
        drop(self.stdin.take());
        let rc = self.wait.await?;
        Ok(Output {
            rc,
            stdout: out,
            stderr: err,
            ..Default::default()
        })
    }
}

/// Did the connection itself go away (as opposed to the shell not starting)?
fn is_connection_text(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("connection closed") || t.contains("disconnected") || t.contains("broken pipe")
}

fn is_channel_refusal(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("open failed")
        || text.contains("administratively prohibited")
        || text.contains("Session open refused")
}

fn control_root() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("cutover")
}

/// Control sockets of this process live in a directory named by its pid, so a later run can
/// tell which masters belong to a controller that is gone.
fn control_dir() -> Result<PathBuf> {
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
fn tell_master_to_exit(socket: &std::path::Path, name: &str) {
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

/// A config file for one host. ssh takes the first value it reads, and passes this file (`-F`)
/// to the ssh it starts for a `ProxyJump` hop, but none of its own `-o`/`-i` options (OpenSSH
/// ssh.c builds the hop's command from `-l`, `-p`, `-J`, `-F` and `-v` only). So the host-key
/// policy, known_hosts file and identity are written here too, first, so the hop checks keys
/// exactly like the connection to the host itself; then the inventory's `ssh_options`, then
/// the user's and the system's own config, so both are honoured.
fn ssh_config_for(c: &Connection, opts: &TransportOptions) -> Result<tempfile::NamedTempFile> {
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
async fn diagnose_jump(
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
fn explain_connect_error(name: &str, address: &str, e: openssh::Error) -> anyhow::Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipe_streams_one_command_into_another_and_reports_both() {
        let (a, b) = (HostConn::local("a"), HostConn::local("b"));
        let (src, dst, _) = pipe(
            (&a, "head -c 50000000 /dev/zero; echo done >&2", None),
            (&b, "wc -c; echo read >&2; exit 3", None),
            None,
        )
        .await
        .unwrap();
        assert_eq!((src.rc, src.stderr_text().trim()), (0, "done"));
        assert_eq!(dst.rc, 3);
        assert_eq!(dst.stdout_text().trim(), "50000000");
        assert_eq!(dst.stderr_text().trim(), "read");
    }

    #[tokio::test]
    async fn a_destination_that_stops_reading_does_not_block_the_source() {
        let (a, b) = (HostConn::local("a"), HostConn::local("b"));
        let (src, dst, _) = pipe(
            (&a, "head -c 20000000 /dev/zero", None),
            (&b, "exit 3", None),
            Some(Duration::from_secs(20)),
        )
        .await
        .unwrap();
        assert_eq!((src.rc, dst.rc), (0, 3));
    }

    #[tokio::test]
    async fn pipe_reports_a_failing_source() {
        let (a, b) = (HostConn::local("a"), HostConn::local("b"));
        let (src, dst, _) = pipe(
            (&a, "printf partial; exit 7", None),
            (&b, "cat", None),
            Some(Duration::from_secs(20)),
        )
        .await
        .unwrap();
        assert_eq!(src.rc, 7);
        assert_eq!(dst.stdout_text(), "partial");
    }
}
