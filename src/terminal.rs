//! Reading a secret from the terminal with echo off.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;

use anyhow::{bail, Result};

pub fn read_password(prompt: &str) -> Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty");
    let Ok(mut tty) = tty else {
        bail!("no terminal to ask for the password on; use --become-password-file or CUTOVER_BECOME_PASSWORD")
    };
    let fd = tty.as_raw_fd();
    // SAFETY: termios calls on a file descriptor we own; the struct is plain data.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            bail!("cannot read terminal settings");
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        saved
    };
    let _ = write!(tty, "{prompt}");
    let _ = tty.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings saved above on the same descriptor.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    let _ = writeln!(tty);
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
