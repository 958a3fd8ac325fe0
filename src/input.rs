//! Reading the files cutover is given (inventory, playbooks, `-e @file`, templates, secrets
//! and key files, saved plans, controller files of `copy`/`mysql_query`), without blocking and
//! within a size limit.
//!
//! Every one of them goes through here because a path can name something that is not a file:
//! opening a FIFO that has no writer blocks forever, and a device like `/dev/zero` never ends.
//! So a file is opened with `O_NONBLOCK` (which never waits for a writer), its type is taken
//! from the opened descriptor (not from a `stat` that a rename could outdate), and the read
//! itself stops one byte past the limit, so a file that grows after the check is still
//! refused instead of filling memory.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The most cutover reads of one input file (YAML, templates, secrets, plans).
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// The most read from a credential file (sudo password, secrets key).
pub const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// Why an input file was not read.
#[derive(Debug)]
pub enum InputError {
    Io(std::io::Error),
    Directory,
    /// A FIFO, device or socket where a regular file is expected.
    NotRegular(&'static str),
    /// `size` is known for a regular file; a stream (or a file that grew) only got past `limit`.
    TooBig {
        size: Option<u64>,
        limit: u64,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Io(e) => write!(f, "cannot read file: {e}"),
            InputError::Directory => write!(f, "is a directory, expected a file"),
            InputError::NotRegular(kind) => write!(
                f,
                "is a {kind}, not a regular file; cutover reads this input only from a regular file"
            ),
            InputError::TooBig {
                size: Some(size),
                limit,
            } => write!(
                f,
                "file is {} ({size} bytes); cutover reads files of at most {} ({limit} bytes) (is this the right file?)",
                mib(*size),
                mib(*limit)
            ),
            InputError::TooBig { size: None, limit } => write!(
                f,
                "file is larger than {} (reading stopped there); cutover reads files of at most {}",
                mib(*limit),
                mib(*limit)
            ),
        }
    }
}

impl std::error::Error for InputError {}

impl From<std::io::Error> for InputError {
    fn from(e: std::io::Error) -> Self {
        InputError::Io(e)
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Open a regular file for reading, never blocking on the open. No size limit: for controller
/// files that are streamed (a `copy` source of several GiB).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), InputError> {
    let (file, meta) = open_nonblocking(path)?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular(kind_of(&meta)));
    }
    Ok((file, meta))
}

/// A whole regular file, refused when it is larger than `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let (file, meta) = open_regular(path)?;
    if meta.len() > limit {
        return Err(InputError::TooBig {
            size: Some(meta.len()),
            limit,
        });
    }
    read_bounded(file, limit)
}

/// As [`read`], but a pipe or character device is read too, still bounded: a credential may
/// come from process substitution (`--become-password-file <(pass show sudo)`), which is a
/// pipe. A FIFO with no writer reads as empty instead of waiting for one.
pub fn read_stream(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let (file, meta) = open_nonblocking(path)?;
    let t = meta.file_type();
    if !(t.is_file() || t.is_fifo() || t.is_char_device()) {
        return Err(InputError::NotRegular(kind_of(&meta)));
    }
    if t.is_file() && meta.len() > limit {
        return Err(InputError::TooBig {
            size: Some(meta.len()),
            limit,
        });
    }
    read_bounded(file, limit)
}

fn open_nonblocking(path: &Path) -> Result<(File, Metadata), InputError> {
    // A socket cannot be opened at all (ENXIO): name it from the path instead.
    if let Ok(m) = std::fs::metadata(path) {
        if m.file_type().is_socket() {
            return Err(InputError::NotRegular("socket"));
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(InputError::Directory);
    }
    // Reads block normally again: a stream with a writer is waited for, as any reader would.
    // SAFETY: fcntl on a descriptor this function owns; no memory is passed.
    unsafe {
        let fd = file.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok((file, meta))
}

fn read_bounded(file: File, limit: u64) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooBig { size: None, limit });
    }
    Ok(bytes)
}

fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        p
    }

    #[test]
    fn a_fifo_without_writer_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = fifo(dir.path());
        let t = Instant::now();
        let e = read(&p, MAX_INPUT_BYTES).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(
            e.to_string(),
            "is a FIFO (named pipe), not a regular file; cutover reads this input only from a regular file"
        );
        // A credential may be a stream; with no writer it is empty, not a hang.
        assert_eq!(read_stream(&p, 10).unwrap(), b"");
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn an_endless_device_is_refused_or_bounded() {
        let zero = Path::new("/dev/zero");
        assert!(matches!(
            read(zero, 1024),
            Err(InputError::NotRegular("character device"))
        ));
        let e = read_stream(zero, 1024).unwrap_err();
        assert!(matches!(
            e,
            InputError::TooBig {
                size: None,
                limit: 1024
            }
        ));
        assert_eq!(
            e.to_string(),
            "file is larger than 1 KiB (reading stopped there); cutover reads files of at most 1 KiB"
        );
    }

    #[test]
    fn size_and_limit_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'a'; 5 * 1024 * 1024 + 1]).unwrap();
        let e = read(&p, MAX_INPUT_BYTES).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file is 5.0 MiB (5242881 bytes); cutover reads files of at most 4 MiB (4194304 bytes) (is this the right file?)"
        );
        std::fs::write(&p, b"ok").unwrap();
        assert_eq!(read(&p, 2).unwrap(), b"ok");
        assert!(matches!(read(dir.path(), 2), Err(InputError::Directory)));
    }
}
