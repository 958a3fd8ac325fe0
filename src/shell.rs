//! Quoting for POSIX shells. Every value cutover puts on a remote command line goes through
//! here, so a variable, host name or path can never become shell syntax.

/// One shell word: wrapped in single quotes, with embedded single quotes closed and escaped.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
        && !s.starts_with('-')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `bytes` random bytes as hex (getrandom(2)): for names and markers no one can guess.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: the buffer is valid for `bytes` bytes; getrandom(2) fills at most that many.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n as usize, bytes, "getrandom(2) failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A command line from words, each quoted.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_one_word() {
        // Run the quoted words through a real shell and check they come back unchanged.
        let hostile = [
            "plain",
            "",
            "a b",
            "$(touch /tmp/x)",
            "`id`",
            "a'b",
            "-rf",
            "x;y",
            "line\nbreak",
            "\"q\"",
            "*",
            "~",
        ];
        let script = format!("printf '%s\\0' {}", join(&hostile));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let mut words: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(
            words.pop().as_deref(),
            Some(""),
            "output ends with the last NUL"
        );
        assert_eq!(words, hostile);
        assert_eq!(quote(""), "''");
        assert_eq!(quote("-n"), "'-n'");
    }
}
