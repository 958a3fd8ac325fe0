//! The mail half of `announce`: the message handed to the step host's own `sendmail`
//! (`sendmail -oi -t`, the interface every MTA and relay client offers: Postfix, Exim, msmtp,
//! nullmailer), on its standard input.
//!
//! Mail goes out **from the host**, not the controller: the controller of a maintenance window
//! rarely has a mail setup, the hosts of a classic cluster usually relay through the site's
//! mail server already (cron mail), and no SMTP password ever passes through cutover. A host
//! without a working `sendmail` sends no mail: the plan says so, the run warns, and the step
//! fails only when it had nothing else to send with (no webhook).
//!
//! The message is built with `lettre`'s builder: addresses are parsed and checked, a subject
//! outside ASCII is encoded as RFC 2047 words, the body is UTF-8 sent as 8-bit (readable as
//! it is; quoted-printable only for a line too long for that). Lines end in LF: local
//! submission's convention (`sendmail` turns them into SMTP's CRLF itself).

use anyhow::{anyhow, bail, Result};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message};
use serde_json::{Map, Value as J};

use super::super::ModCtx;
use crate::shell::quote;

/// Where `sendmail` is on hosts whose PATH over ssh lacks /usr/sbin (Debian's root has it,
/// other users do not), then PATH. Prints the path, or nothing.
const FIND_SENDMAIL: &str = "for s in /usr/sbin/sendmail /usr/lib/sendmail; do \
     if [ -x \"$s\" ]; then echo \"$s\"; exit 0; fi; done; command -v sendmail || true";

/// What is wrong with a list of recipients, said with the address at fault.
pub(super) fn recipients_problem(to: &[String]) -> Option<String> {
    to.iter()
        .find_map(|a| address_problem(a).map(|e| format!("`mail_to`: {e}")))
}

/// What is wrong with one address (`None`: a mailbox `sendmail -t` takes as one recipient).
pub(super) fn address_problem(address: &str) -> Option<String> {
    mailbox(address).err().map(|e| e.to_string())
}

/// One address as a mailbox: `ops@example.org` or `Ops <ops@example.org>`, nothing that could
/// add a header (a line break) or a second recipient where one was written.
fn mailbox(address: &str) -> Result<Mailbox> {
    let shown = crate::diag::one_line(address);
    if address.chars().any(char::is_control) {
        bail!("`{shown}` has a line break or control character");
    }
    address
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| anyhow!("`{shown}` is not a mail address ({e})"))
}

/// The sender when the step sets no `mail_from`: cutover at the step's host, or at localhost
/// where the inventory's name for the host is no mail domain.
pub(super) fn default_from(host: &str) -> String {
    let at_host = format!("cutover@{host}");
    match mailbox(&at_host) {
        Ok(_) => at_host,
        Err(_) => "cutover@localhost".to_string(),
    }
}

/// The mail's text: the message, then each other field of the webhook's body on a line of
/// its own (`run: …`, `host: …`, the step's `fields`), so a mail says what the JSON says.
fn text(body: &Map<String, J>) -> String {
    let mut out = body
        .get("text")
        .and_then(J::as_str)
        .unwrap_or_default()
        .to_string();
    out.push_str("\n\n");
    for (k, v) in body
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "text" | "subject"))
    {
        let value = match v {
            J::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{k}: {value}\n"));
    }
    out
}

/// The whole message, headers and body, as `sendmail -t` reads it.
pub(super) fn message(
    to: &[String],
    from: &str,
    subject: &str,
    body: &Map<String, J>,
) -> Result<Vec<u8>> {
    let mut b = Message::builder()
        .from(mailbox(from).map_err(|e| anyhow!("`mail_from`: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for a in to {
        b = b.to(mailbox(a).map_err(|e| anyhow!("`mail_to`: {e}"))?);
    }
    let text = text(body);
    let body = Body::new_with_encoding(text.clone(), ContentTransferEncoding::EightBit)
        .unwrap_or_else(|_| Body::new(text));
    let m = b
        .body(body)
        .map_err(|e| anyhow!("announce: cannot build the mail: {e}"))?;
    let formatted = String::from_utf8_lossy(&m.formatted()).replace("\r\n", "\n");
    Ok(formatted.into_bytes())
}

/// The host's `sendmail`, if it has one (a read-only probe).
pub(super) async fn find_sendmail(ctx: &ModCtx<'_>) -> Result<Option<String>> {
    let out = ctx.run(FIND_SENDMAIL, None).await?;
    let path = out.stdout_text().trim().to_string();
    Ok((out.ok() && path.starts_with('/')).then_some(path))
}

/// Hand the message to the host's `sendmail`; an error says what it answered.
pub(super) async fn send(
    ctx: &ModCtx<'_>,
    sendmail: &str,
    from: &str,
    message: &[u8],
) -> Result<()> {
    let envelope = mailbox(from)?.email.to_string();
    let script = format!("{} -oi -t -f {}", quote(sendmail), quote(&envelope));
    let out = ctx.run(&script, Some(message)).await?;
    if !out.ok() {
        bail!(
            "{sendmail} on {} did not take the mail (exit {}): {}",
            ctx.host.name,
            out.rc,
            crate::diag::one_line(out.stderr_text().trim())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Map<String, J> {
        json!({"text": "Upgrade to 2.0 — starting", "subject": "s", "run": "r1", "host": "lb", "event": "upgrade_started"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_message_has_its_headers_and_every_field_in_its_text() {
        let m = message(
            &["ops@example.org".into(), "Team <team@example.org>".into()],
            "cutover@lb",
            "Wiki: début",
            &body(),
        )
        .unwrap();
        let m = String::from_utf8(m).unwrap();
        let (head, _) = m.split_once("\n\n").unwrap();
        assert!(head.contains("From: cutover@lb"), "{head}");
        assert!(
            head.contains("\nTo: ops@example.org, Team <team@example.org>\n"),
            "{head}"
        );
        // Not ASCII: an encoded word ("début"), never raw UTF-8 in a header.
        assert!(
            head.contains("\nSubject: Wiki: =?utf-8?b?ZMOpYnV0?=\n"),
            "{head}"
        );
        assert!(
            head.contains("\nContent-Transfer-Encoding: 8bit\n"),
            "{head}"
        );
        assert!(head.is_ascii(), "{head}");
        let (_, text) = m.split_once("\n\n").unwrap();
        assert!(text.starts_with("Upgrade to 2.0 — starting\n\n"), "{text}");
        for line in ["run: r1\n", "host: lb\n", "event: upgrade_started\n"] {
            assert!(text.contains(line), "{text}");
        }
        assert!(!text.contains("subject:") && !m.contains('\r'), "{m}");
    }

    #[test]
    fn the_default_sender_is_always_an_address() {
        assert_eq!(default_from("lb"), "cutover@lb");
        assert_eq!(default_from("app1.example.org"), "cutover@app1.example.org");
        assert_eq!(default_from("a b"), "cutover@localhost");
    }

    #[test]
    fn an_address_that_could_add_a_header_or_a_recipient_is_refused() {
        for bad in [
            "ops@example.org\nBcc: x@evil.test",
            "not an address",
            "a@b.org, c@d.org",
            "",
        ] {
            let problem = recipients_problem(&[bad.to_string()]);
            assert!(problem.is_some(), "{bad:?} accepted");
            assert!(!problem.unwrap().contains('\n'));
        }
        assert_eq!(recipients_problem(&["Ops <ops@example.org>".into()]), None);
    }
}
