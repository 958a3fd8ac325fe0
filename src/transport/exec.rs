//! One command on one channel (or one local process): its input streamed in, its output
//! collected, a refused channel retried.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{HostConn, Kind, Output};

impl HostConn {
    /// One command on one channel, with retries when the server refuses a channel. `prefix`
    /// (a sudo password line) is written before the input.
    pub(super) async fn exec(
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
            let result = match self.kind() {
                Kind::Local => exec_local(command, input).await,
                Kind::Ssh(s) => exec_ssh(&s, command, input).await,
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

pub(super) type BoxedReader<'a> = Box<dyn AsyncRead + Unpin + Send + 'a>;

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
    pub(super) async fn open_or_empty(input: Option<Input<'a>>) -> Result<(u64, BoxedReader<'a>)> {
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

fn is_channel_refusal(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("open failed")
        || text.contains("administratively prohibited")
        || text.contains("Session open refused")
}
