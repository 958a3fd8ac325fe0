//! One long-lived shell per host (and per sudo user) that runs the run's commands one after
//! another, instead of a new ssh channel per command.
//!
//! A channel per command makes sshd fork a session, start the user's login shell and then
//! `/bin/sh`, and (with `become`) start sudo with its PAM stack — for every probe and every
//! write. On a busy host that is most of a step's cost. Here the channel, the login shell
//! and sudo are paid once; each command is a subshell (a fork, no exec) of the driver below.
//!
//! The protocol is line-framed with a random marker per command, so a command's output can
//! never be mistaken for the frame (it cannot know the marker):
//!
//! ```text
//! controller → host:  MARKER LEN[ UMASK PATH]\n SCRIPT\n MARKER\n  then LEN bytes of input, MARKER\n
//! host → controller:  stdout: MARKER<\n OUTPUT MARKER RC\n      stderr: MARKER<\n ERRORS MARKER\n
//! ```
//!
//! The `MARKER<` line the driver prints before each command tells its output from whatever a
//! background process of an earlier command (a daemon that kept the shell's output) wrote in
//! between: bytes before it, or after the end line, are not the command's; they mark the shell
//! as not to be used again (the next command gets a new one). What such a process writes while
//! a command runs cannot be told apart; that is why the shell is not kept once one is seen.
//!
//! A command is given exactly its LEN bytes (`head -c`), and whatever it leaves unread is
//! drained, so the stream stays in step even when a command exits without reading. The marker
//! line after the input says it arrived whole: a connection lost in the middle of it ends the
//! shell instead of running the command on part of its input. Small inputs (up to 1 MiB: file
//! contents, templates) go through one private temporary file of the shell (`mktemp`, emptied
//! after each command, removed when the shell ends), which costs the host two processes fewer
//! than the pipe used for large ones.
//!
//! With `UMASK PATH` (a [`Put`]), the input is not the command's standard input but a new file
//! at PATH (created exclusively, its permissions from UMASK, `-` for the shell's own) that the
//! command then works on — a file write costs the host one process (`head`) instead of a
//! `cat` into place and a `sha256sum` to check it: the controller hashes what it sends and
//! sends the closing marker only when the bytes are the ones expected.

use std::pin::Pin;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The driver run on the host as `/bin/sh -c DRIVER`. Its variables have names no module
/// script uses, and are unset in the subshell that runs the command.
pub const DRIVER: &str = r#"LC_ALL=C; export LC_ALL
if __co_t=$(mktemp -d 2>/dev/null); then __co_f=$__co_t/in; __co_e=$__co_t/err
else __co_t=; __co_f=; __co_e=/dev/null; fi
__co_um=$(umask)
trap '[ -z "$__co_t" ] || rm -rf -- "$__co_t"' EXIT
# The start line of a command's output, printed once its input is whole (printing to a closed
# connection before that would kill the shell before it cleans up); then what the driver's own
# programs said while taking the input (kept in $__co_e until now).
__co_start() {
  printf '%s<\n' "$__co_m"; printf '%s<\n' "$__co_m" >&2; __co_start_done=1
  if [ -s "$__co_e" ]; then
    while IFS= read -r __co_l || [ -n "$__co_l" ]; do printf '%s\n' "$__co_l" >&2; done < "$__co_e"
    : >| "$__co_e"
  fi
}
printf 'cutover-shell-ready\n'; printf 'cutover-shell-ready\n' >&2
while IFS= read -r __co_h; do
  __co_m=${__co_h%% *}; __co_n=${__co_h#* }; __co_p=; __co_in=/dev/null; __co_rc=; __co_start_done=
  case $__co_n in *' '*) __co_p=${__co_n#* }; __co_n=${__co_n%% *}; __co_u=${__co_p%% *}; __co_p=${__co_p#* } ;; esac
  __co_s=
  while IFS= read -r __co_l; do
    [ "$__co_l" = "$__co_m" ] && break
    __co_s="$__co_s$__co_l
"
  done
  __co_w=; __co_d=
  if [ -n "$__co_p" ]; then
    [ "$__co_u" = - ] || umask "$__co_u"
    set -C
    true 2>|"$__co_e" > "$__co_p" && [ -f "$__co_p" ] && __co_w=$__co_p
    set +C; umask "$__co_um"
    if [ -z "$__co_w" ]; then
      __co_rc=125; head -c "$__co_n" > /dev/null
      [ -s "$__co_e" ] || printf 'cannot create %s: not a new regular file\n' "$__co_p" >| "$__co_e"
    elif ! head -c "$__co_n" >> "$__co_p" 2>>"$__co_e"; then __co_rc=126; __co_d=1
    fi
  elif [ "$__co_n" -gt 0 ] && [ "$__co_n" -le 1048576 ] && [ -n "$__co_f" ]; then
    head -c "$__co_n" >| "$__co_f" 2>>"$__co_e" || { __co_rc=126; __co_d=1; }; __co_in=$__co_f
  elif [ "$__co_n" -gt 0 ]; then
    __co_start
    head -c "$__co_n" | { (unset __co_h __co_l __co_n __co_m __co_f __co_p __co_u __co_um __co_in __co_rc __co_w __co_d __co_start_done __co_t __co_e; unset -f __co_start; eval "$__co_s"); __co_rc=$?; cat >/dev/null; exit $__co_rc; }
    __co_rc=$?
  fi
  if [ -n "$__co_d" ]; then
    # Writing the input failed part-way (a full disk): an unknown part of it was read. Nothing
    # follows its end line until this shell answers, so reading up to that line is exact.
    grep -q -- "$__co_m\$" || { [ -z "$__co_w" ] || rm -f -- "$__co_w"; exit 1; }
    __co_start
    printf 'the input could not be written whole to %s on the host\n' "${__co_w:-a temporary file}" >&2
  elif [ "$__co_n" -gt 0 ] && { ! IFS= read -r __co_l || [ "$__co_l" != "$__co_m" ]; }; then
    [ -z "$__co_w" ] || rm -f -- "$__co_w"
    exit 1
  elif [ -z "$__co_start_done" ]; then
    __co_start
  fi
  [ -z "$__co_d" ] || [ -z "$__co_w" ] || rm -f -- "$__co_w"
  if [ -z "$__co_rc" ]; then
    (unset __co_h __co_l __co_n __co_m __co_f __co_p __co_u __co_um __co_in __co_rc __co_w __co_d __co_start_done __co_t __co_e; unset -f __co_start; eval "$__co_s") < "$__co_in"
    __co_rc=$?
  fi
  [ "$__co_in" = /dev/null ] || : >| "$__co_f"
  printf '%s %d\n' "$__co_m" "$__co_rc"
  printf '%s\n' "$__co_m" >&2
done
"#;

/// A command's input written to a new file on the host before the command runs, instead of
/// being its standard input.
#[derive(Clone, Copy, Debug)]
pub struct Put<'a> {
    /// Where: a path that must not exist yet (it is created exclusively; no newline in it).
    pub path: &'a str,
    /// The umask it is created with (`None`: the shell's own).
    pub umask: Option<u32>,
    /// The SHA-256 (hex) the bytes must have; anything else is never completed on the host.
    pub sha256: &'a str,
}

impl Put<'_> {
    /// Can the frame's header line carry the path (no newline or NUL in it)?
    pub fn fits_a_frame(&self) -> bool {
        !self.path.is_empty() && !self.path.contains(['\n', '\0'])
    }
}

const READY: &[u8] = b"cutover-shell-ready\n";

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// What one command produced through the shell.
pub struct Finished {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A started driver. Dropping it closes its channel, which ends the driver on the host.
pub struct SessionShell {
    stdin: Writer,
    stdout: Reader,
    stderr: Reader,
    /// Keeps the channel (or process) open for as long as the shell is in use.
    _keep: Box<dyn Send>,
    /// Output came that no command wrote (see the module doc): do not use this shell again.
    stray: bool,
}

impl SessionShell {
    /// Wrap a started driver's streams; `first_input` (a sudo password line) is written
    /// before waiting for the driver to say it is ready.
    pub async fn start(
        stdin: Writer,
        stdout: Reader,
        stderr: Reader,
        keep: Box<dyn Send>,
        first_input: Option<&[u8]>,
    ) -> Result<SessionShell> {
        let mut shell = SessionShell {
            stdin,
            stdout,
            stderr,
            _keep: keep,
            stray: false,
        };
        if let Some(bytes) = first_input {
            shell.stdin.write_all(bytes).await?;
            shell.stdin.flush().await?;
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.ends_with(READY) {
            let n = shell.stdout.read(&mut buf).await?;
            if n == 0 {
                let mut err = Vec::new();
                let _ = shell.stderr.read_to_end(&mut err).await;
                bail!(
                    "the remote shell did not start: {}",
                    String::from_utf8_lossy(&err).trim()
                );
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.len() > 64 * 1024 {
                bail!("the remote shell did not start: unexpected output before it was ready");
            }
        }
        if seen.len() != READY.len() {
            bail!("the remote shell did not start: unexpected output before it was ready");
        }
        // What came on stderr before the driver (a login script's warning) is not stray output.
        let mut seen = Vec::new();
        while !seen.ends_with(READY) {
            let n = shell.stderr.read(&mut buf).await?;
            if n == 0 {
                bail!("the remote shell did not start: its error output ended");
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.len() > 64 * 1024 {
                seen.drain(..seen.len() - READY.len());
            }
        }
        Ok(shell)
    }

    /// End the shell as a closed connection does: its input ends, it cleans up and exits.
    pub async fn close(self) {
        let SessionShell {
            stdin,
            mut stdout,
            _keep,
            ..
        } = self;
        drop(stdin);
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest).await;
    }

    /// Has output come that no command of this shell wrote (a background process left
    /// holding its output)? Such a shell is not used again: what that process writes while a
    /// later command runs would be taken for that command's output.
    pub fn saw_stray_output(&self) -> bool {
        self.stray
    }

    /// Run one script with the given standard input. An error leaves the shell unusable
    /// (the caller drops it); a command that fails is an `Ok` with its exit code.
    pub async fn run_bytes(&mut self, script: &str, stdin: &[u8]) -> Result<Finished> {
        let mut input = stdin;
        self.run(script, stdin.len() as u64, &mut input).await
    }

    /// Run one script with `len` bytes of standard input streamed from `input` (a large file
    /// is never held in memory). Fewer bytes than promised is an error.
    pub async fn run(
        &mut self,
        script: &str,
        len: u64,
        input: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<Finished> {
        self.run_framed(script, len, input, None).await
    }

    /// Run one script after its `len` bytes of input are written to a new file on the host
    /// (see [`Put`]). The file is completed only if the bytes sent hash to `put.sha256`. If it
    /// cannot be created (exit code 125) or written (126: a full disk; the part written is
    /// removed), the script does not run.
    pub async fn run_put(
        &mut self,
        script: &str,
        len: u64,
        input: &mut (dyn AsyncRead + Unpin + Send),
        put: Put<'_>,
    ) -> Result<Finished> {
        if !put.fits_a_frame() {
            bail!("cannot write {:?} through the session shell", put.path);
        }
        self.run_framed(script, len, input, Some(put)).await
    }

    async fn run_framed(
        &mut self,
        script: &str,
        len: u64,
        input: &mut (dyn AsyncRead + Unpin + Send),
        put: Option<Put<'_>>,
    ) -> Result<Finished> {
        let marker = new_marker();
        let mut frame = Vec::with_capacity(script.len() + 2 * marker.len() + 32);
        frame.extend_from_slice(format!("{marker} {len}").as_bytes());
        if let Some(p) = &put {
            let umask = p.umask.map_or("-".to_string(), |u| format!("{u:04o}"));
            frame.extend_from_slice(format!(" {umask} {}", p.path).as_bytes());
        }
        frame.push(b'\n');
        frame.extend_from_slice(script.as_bytes());
        if !script.ends_with('\n') {
            frame.push(b'\n');
        }
        frame.extend_from_slice(marker.as_bytes());
        frame.push(b'\n');
        let (stdin_pipe, stdout, stderr) = (&mut self.stdin, &mut self.stdout, &mut self.stderr);
        let write = async {
            let io = |e: std::io::Error| {
                anyhow!("connection closed: the remote shell stopped reading ({e})")
            };
            stdin_pipe.write_all(&frame).await.map_err(io)?;
            let mut hashed = HashingReader {
                inner: input.take(len),
                hash: put.map(|_| Sha256::new()),
            };
            let sent = tokio::io::copy(&mut hashed, stdin_pipe).await.map_err(io)?;
            // The host still waits for the missing bytes, or for the line that says they are
            // whole: fail now (the shell is dropped, and the host removes what it wrote).
            if sent != len {
                bail!("the input ended after {sent} of {len} bytes (did the file change while it was sent?)");
            }
            if let (Some(p), Some(h)) = (&put, hashed.hash) {
                let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                if got != p.sha256 {
                    bail!("the content sent for {} has SHA-256 {got}, not the expected {} (did the file change while it was sent?); nothing written", p.path, p.sha256);
                }
            }
            if len > 0 {
                stdin_pipe.write_all(marker.as_bytes()).await.map_err(io)?;
                stdin_pipe.write_all(b"\n").await.map_err(io)?;
            }
            stdin_pipe.flush().await.map_err(io)?;
            Ok(())
        };
        let ((), (stdout, rc, stray_out), (stderr, _, stray_err)) = tokio::try_join!(
            write,
            read_until_marker(stdout, marker.as_bytes(), true),
            read_until_marker(stderr, marker.as_bytes(), false)
        )?;
        self.stray |= stray_out || stray_err;
        Ok(Finished {
            rc: rc.unwrap_or(-1),
            stdout,
            stderr,
        })
    }
}

/// Passes bytes through, hashing them on the way (when asked).
struct HashingReader<R> {
    inner: R,
    hash: Option<Sha256>,
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(())), Some(h)) = (&r, this.hash.as_mut()) {
            h.update(&buf.filled()[before..]);
        }
        r
    }
}

/// Read one command's output from a stream: from the `MARKER<` line to the end line (on
/// stdout the marker and ` RC\n`; on stderr the marker and `\n`). Returns that output, the exit
/// code, and whether other bytes came before the start line or after the end line.
async fn read_until_marker(
    r: &mut Reader,
    marker: &[u8],
    with_rc: bool,
) -> Result<(Vec<u8>, Option<i32>, bool)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let start = [marker, b"<\n"].concat();
    let mut stray = false;
    loop {
        if let Some(at) = find(&buf, &start) {
            stray |= at > 0;
            buf.drain(..at + start.len());
            break;
        }
        // Keep only what could still be the start of the line: the rest is not the command's.
        let keep = buf.len().min(start.len() - 1);
        stray |= buf.len() > keep;
        buf.drain(..buf.len() - keep);
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed: the remote shell ended before the command started");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut searched_to = 0;
    loop {
        if let Some(at) = find(&buf[searched_to..], marker).map(|i| i + searched_to) {
            let tail = &buf[at + marker.len()..];
            if let Some(nl) = tail.iter().position(|b| *b == b'\n') {
                stray |= nl + 1 != tail.len();
                let rc = if with_rc {
                    let text = std::str::from_utf8(&tail[..nl]).unwrap_or("").trim();
                    Some(text.parse::<i32>().map_err(|_| {
                        anyhow!("connection closed: the remote shell sent a garbled exit code")
                    })?)
                } else {
                    None
                };
                buf.truncate(at);
                return Ok((buf, rc, stray));
            }
        } else {
            searched_to = buf.len().saturating_sub(marker.len());
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed: the remote shell ended before the command finished");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A marker no command can guess: 128 random bits.
fn new_marker() -> String {
    format!("__cutover_{}", crate::shell::random_hex(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver run locally by /bin/sh: the same code path as on a host, minus ssh. Its
    /// temporary directory is in one of its own, removed with the shell (a driver killed on
    /// drop cannot remove it itself).
    async fn local_shell() -> SessionShell {
        local_shell_owning("").await
    }

    async fn local_shell_owning(prelude: &str) -> SessionShell {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        local_shell_after(&path, true, prelude, Some(dir)).await
    }

    async fn local_shell_in(tmp: &std::path::Path) -> SessionShell {
        local_shell_with(tmp, true).await
    }

    /// `kill_on_drop: false`: dropping the shell only closes its input, as a lost connection
    /// does, and the driver decides what to do.
    async fn local_shell_with(tmp: &std::path::Path, kill_on_drop: bool) -> SessionShell {
        local_shell_limited(tmp, kill_on_drop, None).await
    }

    /// `max_file_kib`: the shell's limit on the size of a file it writes (`ulimit -f`), to
    /// make a write fail part-way as on a full disk.
    async fn local_shell_limited(
        tmp: &std::path::Path,
        kill_on_drop: bool,
        max_file_kib: Option<u32>,
    ) -> SessionShell {
        let limit = max_file_kib.map_or(String::new(), |k| format!("ulimit -f {}; ", k * 2));
        local_shell_after(tmp, kill_on_drop, &limit, None).await
    }

    /// The driver started by a shell that first runs `prelude` (as a login shell runs its
    /// profile before the command); `owned` is dropped after the driver.
    async fn local_shell_after(
        tmp: &std::path::Path,
        kill_on_drop: bool,
        prelude: &str,
        owned: Option<tempfile::TempDir>,
    ) -> SessionShell {
        let mut child = tokio::process::Command::new("/bin/sh")
            .env("TMPDIR", tmp)
            .arg("-c")
            .arg(format!(
                "{prelude}exec /bin/sh -c {}",
                crate::shell::quote(DRIVER)
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(kill_on_drop)
            .spawn()
            .unwrap();
        let stdin = Box::pin(child.stdin.take().unwrap());
        let stdout = Box::pin(child.stdout.take().unwrap());
        let stderr = Box::pin(child.stderr.take().unwrap());
        SessionShell::start(stdin, stdout, stderr, Box::new((child, owned)), None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn runs_commands_one_after_another_with_their_own_output_and_status() {
        let mut sh = local_shell().await;
        let a = sh
            .run_bytes("echo out; echo err >&2; exit 3", b"")
            .await
            .unwrap();
        assert_eq!(a.rc, 3);
        assert_eq!(a.stdout, b"out\n");
        assert_eq!(a.stderr, b"err\n");
        // Output without a final newline, and state that must not leak into the next command.
        let b = sh
            .run_bytes("printf 'no newline'; cd /; x=1", b"")
            .await
            .unwrap();
        assert_eq!((b.rc, b.stdout.as_slice()), (0, &b"no newline"[..]));
        let c = sh
            .run_bytes("pwd; echo \"[${x-unset}]\"", b"")
            .await
            .unwrap();
        assert_ne!(c.stdout, b"/\n[1]\n", "a command's cd or variable leaked");
        assert!(String::from_utf8_lossy(&c.stdout).ends_with("[unset]\n"));
    }

    #[tokio::test]
    async fn gives_each_command_exactly_its_input_even_when_it_reads_none() {
        let mut sh = local_shell().await;
        // Both ways in: the shell's temporary file (small) and the pipe (over 1 MiB).
        for size in [200_000u32, 3_000_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let r = sh.run_bytes("wc -c; exit 0", &data).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), size.to_string());
            let r = sh.run_bytes("head -c 10 >/dev/null", &data).await.unwrap();
            assert_eq!(r.rc, 0, "a command reading part of its input");
        }
        // A command that ignores its input: the next command still gets its own frame.
        let r = sh
            .run_bytes("exit 0", b"ignored input\nMARK 5\n")
            .await
            .unwrap();
        assert_eq!(r.rc, 0);
        let r = sh.run_bytes("cat", b"second").await.unwrap();
        assert_eq!(r.stdout, b"second");
        // Binary output and a script with quotes, heredocs and blank lines.
        let r = sh
            .run_bytes("cat <<'EOF'\n'a' \"b\" $c\n\nEOF\nprintf '\\000\\001'", b"")
            .await
            .unwrap();
        assert_eq!(r.stdout, b"'a' \"b\" $c\n\n\x00\x01");
    }

    #[tokio::test]
    async fn small_inputs_pass_through_a_private_file_that_is_emptied_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut sh = local_shell_in(dir.path()).await;
        sh.run_bytes("cat >/dev/null", b"secret content")
            .await
            .unwrap();
        let dirs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(dirs.len(), 1, "one temporary directory for the shell");
        let private = dirs[0].path();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "only the shell's user can look inside");
        let input = std::fs::metadata(private.join("in")).unwrap();
        assert_eq!(input.len(), 0, "the input is emptied after the command");
        sh.close().await;
        for _ in 0..50 {
            if std::fs::read_dir(dir.path()).unwrap().next().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the shell's temporary directory outlived it");
    }

    /// Gives `n` bytes, then ends (a connection lost in the middle of an input).
    fn cut_off(n: usize) -> impl AsyncRead + Unpin + Send {
        std::io::Cursor::new(vec![b'x'; n])
    }

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..100 {
            if cond() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    #[tokio::test]
    async fn a_command_whose_input_is_cut_off_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let mut sh = local_shell_with(dir.path(), false).await;
        let script = format!("touch {}", ran.display());
        let e = sh.run(&script, 1000, &mut cut_off(600)).await;
        assert!(e.is_err(), "fewer bytes than promised is an error");
        drop(sh);
        // The driver sees its input end without the closing marker and exits: the shell's
        // own temporary file goes, and the command has not run on its 600 bytes.
        wait_for("the driver to exit", || {
            std::fs::read_dir(dir.path()).unwrap().next().is_none()
        })
        .await;
        assert!(!ran.exists(), "a command ran on a truncated input");
    }

    #[tokio::test]
    async fn a_put_writes_the_file_with_its_umask_before_the_command_runs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut sh = local_shell_in(dir.path()).await;
        for size in [5_000usize, 3_000_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let path = dir.path().join(format!("put-{size} with space"));
            let sha = crate::controller::hash::sha256_hex(&data);
            let put = Put {
                path: path.to_str().unwrap(),
                umask: Some(0o027),
                sha256: &sha,
            };
            let script = format!("wc -c < {}; cat", crate::shell::quote(put.path));
            let r = sh
                .run_put(&script, size as u64, &mut &data[..], put)
                .await
                .unwrap();
            assert_eq!(r.rc, 0, "{}", String::from_utf8_lossy(&r.stderr));
            // Whole when the command runs; its own standard input is empty.
            assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), size.to_string());
            assert_eq!(std::fs::read(&path).unwrap(), data);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "created with the put's umask");
        }
        // The command had no standard input, and the shell's umask is back to what it was.
        let r = sh.run_bytes("cat; umask", b"").await.unwrap();
        assert_ne!(String::from_utf8_lossy(&r.stdout).trim(), "0027");
    }

    #[tokio::test]
    async fn a_put_leaks_no_driver_variable_into_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = local_shell_in(dir.path()).await;
        let path = dir.path().join("f");
        let sha = crate::controller::hash::sha256_hex(b"abc");
        let put = Put {
            path: path.to_str().unwrap(),
            umask: None,
            sha256: &sha,
        };
        let script = format!(
            "cat {}; echo \"[${{__co_p-unset}}${{__co_n-unset}}]\"",
            crate::shell::quote(path.to_str().unwrap())
        );
        let r = sh.run_put(&script, 3, &mut &b"abc"[..], put).await.unwrap();
        assert_eq!(r.stdout, b"abc[unsetunset]\n");
    }

    #[tokio::test]
    async fn a_put_over_an_existing_path_runs_nothing_and_keeps_the_stream_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = local_shell_in(dir.path()).await;
        let path = dir.path().join("exists");
        std::fs::write(&path, b"old").unwrap();
        let ran = dir.path().join("ran");
        let sha = crate::controller::hash::sha256_hex(b"new content");
        let put = Put {
            path: path.to_str().unwrap(),
            umask: None,
            sha256: &sha,
        };
        let script = format!("touch {}", ran.display());
        let r = sh
            .run_put(&script, 11, &mut &b"new content"[..], put)
            .await
            .unwrap();
        assert_eq!(r.rc, 125);
        let why = String::from_utf8_lossy(&r.stderr);
        assert!(
            why.contains(&format!("{}: File exists", path.display())),
            "{why}"
        );
        assert!(
            !sh.saw_stray_output(),
            "the driver's own message is the command's"
        );
        assert!(!ran.exists(), "the command ran without its file");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let r = sh.run_bytes("echo next", b"").await.unwrap();
        assert_eq!(r.stdout, b"next\n");
    }

    #[tokio::test]
    async fn an_input_that_cannot_be_written_whole_runs_nothing_and_keeps_the_stream_in_step() {
        let dir = tempfile::tempdir().unwrap();
        // Files of at most 16 KiB, as a disk that fills up in the middle of a write.
        let mut sh = local_shell_limited(dir.path(), true, Some(16)).await;
        let ran = dir.path().join("ran");
        let script = format!("touch {}", ran.display());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sha = crate::controller::hash::sha256_hex(&data);
        let path = dir.path().join("big");
        let put = Put {
            path: path.to_str().unwrap(),
            umask: None,
            sha256: &sha,
        };
        let r = sh
            .run_put(&script, data.len() as u64, &mut &data[..], put)
            .await
            .unwrap();
        assert_eq!(r.rc, 126, "{}", String::from_utf8_lossy(&r.stderr));
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("could not be written whole"),
            "says why: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(!path.exists(), "the part written is removed");
        assert!(
            !sh.saw_stray_output(),
            "what the write said is the command's"
        );
        // The same through the shell's own input file (a command's standard input).
        let r = sh.run_bytes(&script, &data).await.unwrap();
        assert_eq!(r.rc, 126, "{}", String::from_utf8_lossy(&r.stderr));
        assert!(!ran.exists(), "a command ran without its whole input");
        // In step: the next commands get their own frames and inputs.
        let r = sh.run_bytes("wc -c", b"12345").await.unwrap();
        assert_eq!((r.rc, String::from_utf8_lossy(&r.stdout).trim()), (0, "5"));
        let r = sh.run_bytes("echo next", b"").await.unwrap();
        assert_eq!(r.stdout, b"next\n");
    }

    #[tokio::test]
    async fn a_put_whose_bytes_do_not_hash_as_promised_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = local_shell_with(dir.path(), false).await;
        let path = dir.path().join("f");
        let ran = dir.path().join("ran");
        let put = Put {
            path: path.to_str().unwrap(),
            umask: None,
            sha256: &crate::controller::hash::sha256_hex(b"expected"),
        };
        let script = format!("touch {}", ran.display());
        let e = sh.run_put(&script, 8, &mut &b"changed!"[..], put).await;
        let msg = format!("{:#}", e.err().expect("a wrong hash is an error"));
        assert!(msg.contains("nothing written"), "{msg}");
        drop(sh);
        wait_for("the driver to exit", || {
            std::fs::read_dir(dir.path()).unwrap().next().is_none()
        })
        .await;
        assert!(!path.exists() && !ran.exists());
    }

    #[tokio::test]
    async fn a_command_without_input_does_not_eat_the_next_frame() {
        let mut sh = local_shell().await;
        let r = sh.run_bytes("cat; echo done", b"").await.unwrap();
        assert_eq!(r.stdout, b"done\n");
        let r = sh.run_bytes("echo still here", b"").await.unwrap();
        assert_eq!(r.stdout, b"still here\n");
    }

    #[tokio::test]
    async fn output_left_behind_by_a_background_process_is_not_the_next_commands() {
        let mut sh = local_shell().await;
        let r = sh
            .run_bytes("(sleep 0.2; echo late; echo late >&2) &", b"")
            .await
            .unwrap();
        assert_eq!((&r.stdout[..], &r.stderr[..]), (&b""[..], &b""[..]));
        assert!(!sh.saw_stray_output());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let r = sh.run_bytes("echo next; echo err >&2", b"").await.unwrap();
        assert_eq!(r.stdout, b"next\n");
        assert_eq!(r.stderr, b"err\n");
        assert!(sh.saw_stray_output());
    }

    #[tokio::test]
    async fn what_came_on_stderr_before_the_driver_is_not_stray() {
        let mut sh = local_shell_owning("echo 'a login warning' >&2; ").await;
        let r = sh.run_bytes("echo ok >&2", b"").await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stderr), "ok\n");
        assert!(!sh.saw_stray_output());
    }

    /// Stray output longer than the start line (and than one read) is dropped, not kept. (What
    /// does not fit the pipe is still being written while the next command runs: that part
    /// cannot be told apart, the reason the shell is not kept.)
    #[tokio::test]
    async fn a_long_stray_output_is_dropped_not_kept() {
        let mut sh = local_shell().await;
        sh.run_bytes("(sleep 0.1; head -c 20000 /dev/zero) &", b"")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let r = sh.run_bytes("echo next", b"").await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "next\n");
        assert!(sh.saw_stray_output());
    }

    #[tokio::test]
    async fn a_shell_that_ends_is_an_error_not_a_hang() {
        let mut sh = local_shell().await;
        let e = sh.run_bytes("kill -9 $$; sleep 1", b"").await;
        let msg = format!("{:#}", e.err().expect("the driver was killed"));
        assert!(msg.contains("connection closed"), "{msg}");
    }
}
