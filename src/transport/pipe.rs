//! Streaming one host's output into another host's input through the controller.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::BoxedReader;
use super::run::wrap_script;
use super::{Become, HostConn, Kind, Output};

impl HostConn {
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
        let mut spawned = match self.kind() {
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
