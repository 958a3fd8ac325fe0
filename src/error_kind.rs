//! The kinds of error that code decides on; every other error is only reported, as it is.
//! One enum and one place that tells the kinds apart, so a caller matches on a kind instead of
//! downcasting or reading message text itself.

use crate::overlay::NotDerivable;

#[derive(Debug, PartialEq)]
pub enum ErrorKind<'a> {
    /// A plan's probe needed a planned state that cannot be known before the run: the plan
    /// shows the step as unknown with this reason.
    NotDerivable(&'a str),
    /// The connection to the host went away during a step: the host is unreachable, not failed.
    ConnectionLost,
    /// Any other failure.
    Other,
}

impl<'a> ErrorKind<'a> {
    pub fn of(e: &'a anyhow::Error) -> ErrorKind<'a> {
        if let Some(n) = e.downcast_ref::<NotDerivable>() {
            ErrorKind::NotDerivable(&n.0)
        } else if connection_lost(&format!("{e:#}")) {
            ErrorKind::ConnectionLost
        } else {
            ErrorKind::Other
        }
    }
}

/// ssh and the openssh crate say that a connection went away only in words (their errors
/// carry no kind for it), so this is the one place that reads them.
fn connection_lost(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("disconnected")
        || m.contains("connection closed")
        || m.contains("broken pipe")
        || m.contains("connection reset")
        || m.contains("mux")
        || m.contains("terminated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn a_not_derivable_reason_is_found_under_context() {
        let e = Err::<(), _>(crate::overlay::not_derivable(
            "step 3 (sync) replaces /srv/a",
        ))
        .context("probing")
        .unwrap_err();
        assert_eq!(
            ErrorKind::of(&e),
            ErrorKind::NotDerivable("step 3 (sync) replaces /srv/a")
        );
    }

    #[test]
    fn a_lost_connection_is_told_from_a_failure() {
        for text in [
            "db1: ssh: Connection closed by remote host",
            "write: Broken pipe",
            "mux_client_request_session: read from master failed",
            "the master process terminated",
        ] {
            assert_eq!(
                ErrorKind::of(&anyhow::anyhow!("{text}")),
                ErrorKind::ConnectionLost,
                "{text}"
            );
        }
        let failed = anyhow::anyhow!("apt-get install exited 100: unable to locate package");
        assert_eq!(ErrorKind::of(&failed), ErrorKind::Other);
    }
}
