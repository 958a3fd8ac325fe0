//! Who runs cutover, and on which controller: for journals and lock owners.

/// Who runs cutover: the login name of the process's real uid — never `$USER`, which may be
/// unset or say anything. Behind sudo, the admin who ran sudo is named too, as sudo recorded
/// them: `root (sudo from alice)`.
pub fn current_user() -> String {
    // SAFETY: getuid cannot fail and touches no memory.
    let me = user_name(unsafe { libc::getuid() });
    match std::env::var("SUDO_USER") {
        Ok(admin) if !admin.is_empty() && admin != me => format!("{me} (sudo from {admin})"),
        _ => me,
    }
}

/// The login name of a uid from the password database (`getpwuid_r`: thread-safe, unlike
/// `getpwuid`), or `uid N` when it has no entry.
pub fn user_name(uid: libc::uid_t) -> String {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: every pointer refers to live storage of the stated size; the name is copied
        // out of `buf` before it is dropped.
        let (rc, found) = unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
            let name = (rc == 0 && !found.is_null()).then(|| {
                std::ffi::CStr::from_ptr(pw.pw_name)
                    .to_string_lossy()
                    .into_owned()
            });
            (rc, name)
        };
        match found {
            Some(name) => return name,
            None if rc == libc::ERANGE && buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            None => return format!("uid {uid}"),
        }
    }
}

pub fn controller_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_the_password_database() {
        assert_eq!(user_name(0), "root");
        // A uid without an entry is named by its number, not "unknown".
        assert_eq!(user_name(3_999_999_999), "uid 3999999999");
    }
}
