//! Files cutover writes when a command is done (`plan --out`, `--junit`, `secrets … -o`).
//! Opening a FIFO for writing waits for a reader, for ever if there is none: a plan that took
//! minutes to probe would then hang at its last step. So the file is opened without waiting
//! (a FIFO nobody reads is an error at once) and then written normally (a pipe with a reader,
//! like `--junit >(…)`, takes the whole text).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Write `bytes` to `path` (created with `mode`, or truncated).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => std::io::Error::other(
                "it is a FIFO that no process reads (cutover does not wait for a reader)",
            ),
            _ => e,
        })?;
    // SAFETY: fcntl on a descriptor this function owns; no memory is passed.
    unsafe {
        let fd = f.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_nobody_reads_is_an_error_at_once_and_a_read_one_gets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        let e = write(&fifo, b"x", 0o644).unwrap_err();
        assert!(e.to_string().contains("no process reads"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // With a reader: more than a pipe's buffer arrives whole.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let big = vec![b'p'; 1 << 20];
        let mut written = false;
        for _ in 0..200 {
            if write(&fifo, &big, 0o644).is_ok() {
                written = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(written);
        assert_eq!(reader.join().unwrap().len(), big.len());
        // A regular file: created, then truncated.
        let f = dir.path().join("plan.json");
        write(&f, b"long text", 0o600).unwrap();
        write(&f, b"short", 0o600).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"short");
    }
}
