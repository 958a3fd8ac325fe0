//! `announce`: tell people about the run — a message POSTed as JSON to a webhook (a chat
//! channel, a status page, a paging system) and/or mailed through the step host's `sendmail`
//! (`mail.rs`: where the host has none, the plan says so and no mail goes out).
//!
//! The message is sent **from the controller** (the machine running cutover, with `ureq` and a
//! timeout), not from the step's host: the controller is where the admin is and what is allowed
//! out to the chat service, the hosts of a maintenance window may be stopped or cut off, and a
//! URL carrying a token never reaches a host's process list. The step's host only places the
//! step in the run (use `run_once: true`).
//!
//! Decision: always "would send" (a plan shows where to, the recipients and the JSON body, and
//! sends nothing); applying sends it. A message cannot be unsent, and nothing on a host changed: the module
//! needs no undo (`Reversibility::NoUndoNeeded`): never marked irreversible, never in an
//! unwind. A webhook that is down or answers other than 2xx fails the step (`ignore_errors:
//! true` makes it a warning).
//!
//! The webhook is shown everywhere as its origin only (`https://hooks.example/…`): its path,
//! query and `user:password@` may carry a token. Header values are never shown (only their
//! names). Values from secrets are masked as in every output (`crate::secrets`).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};

/// How long a webhook may take when the step sets no `timeout:`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Body fields cutover fills itself; `fields:` may not set them.
const RESERVED: &[&str] = &["text", "subject", "run", "host"];

/// The arguments of an `announce` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct AnnounceArgs {
    #[serde(default, deserialize_with = "args::text")]
    webhook: Option<String>,
    #[serde(default, deserialize_with = "args::str_list")]
    mail_to: Vec<String>,
    #[serde(default, deserialize_with = "args::text")]
    mail_from: Option<String>,
    #[serde(deserialize_with = "args::required_text")]
    message: String,
    #[serde(default, deserialize_with = "args::text")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "args::mapping")]
    fields: Map<String, J>,
    #[serde(default, deserialize_with = "args::mapping")]
    headers: Map<String, J>,
}

/// What is wrong with a webhook URL (`ArgType::WebUrl`), said without the URL's path, query
/// or credentials. Empty is no problem here (a step guarded by `when:`); the run refuses it.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!(
            "`{}` is not an http:// or https:// URL",
            shown_url(url)
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Some(format!(
            "`{scheme}://` is not http:// or https:// (a webhook is sent with an HTTP POST)"
        ));
    }
    let host = authority(rest);
    if host.is_empty() || host.starts_with(':') {
        return Some(format!("`{}` names no host", shown_url(url)));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "`{}` has a space or control character",
            shown_url(url)
        ));
    }
    None
}

/// What is wrong with one mail address (`ArgType::MailList`); `None` for a good one.
pub(crate) fn mail_problem(address: &str) -> Option<String> {
    mail::address_problem(address)
}

/// The host (and port) of a URL's rest after `scheme://`, without `user:password@`.
fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    auth.rsplit_once('@').map_or(auth, |(_, h)| h)
}

/// The URL as every output shows it: its origin, `/…` when it has more (a path or query may
/// carry a token).
pub(crate) fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = authority(rest);
            let more = rest.len() > rest.find(['/', '?', '#']).map_or(rest.len(), |i| i + 1)
                || rest.contains('@');
            format!("{scheme}://{host}{}", if more { "/…" } else { "/" })
        }
        None => "(not a URL)".to_string(),
    }
}

/// The JSON body sent: `text` (the message), `subject` when given, the run's id, the step's
/// host, then `fields` (a field that renders empty or null is left out: an optional value).
fn body(args: &AnnounceArgs, run_id: &str, host: &str) -> Result<J> {
    let mut body = Map::new();
    body.insert("text".into(), json!(args.message));
    if let Some(s) = args.subject.as_deref().filter(|s| !s.is_empty()) {
        body.insert("subject".into(), json!(s));
    }
    body.insert("run".into(), json!(run_id));
    body.insert("host".into(), json!(host));
    for (k, v) in &args.fields {
        if RESERVED.contains(&k.as_str()) {
            bail!(
                "announce: `fields.{k}` is set by cutover itself (reserved: {})",
                RESERVED.join(", ")
            );
        }
        if !matches!(v, J::Null) && v.as_str() != Some("") {
            body.insert(k.clone(), v.clone());
        }
    }
    Ok(J::Object(body))
}

/// The headers sent besides `Content-Type`: names and text values, on one line each.
fn headers(args: &AnnounceArgs) -> Result<Vec<(String, String)>> {
    args.headers
        .iter()
        .map(|(k, v)| {
            let value = match v {
                J::String(s) => s.clone(),
                J::Number(_) | J::Bool(_) => v.to_string(),
                _ => bail!("announce: header `{k}` must be text"),
            };
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if k.is_empty() || !k.chars().all(token) {
                bail!("announce: `{k}` is not a header name");
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                bail!("announce: header `{k}` has a line break or control character");
            }
            Ok((k.clone(), value))
        })
        .collect()
}

/// Where a step sends: the webhook (empty: none) and the mail, when it has recipients.
struct Channels<'a> {
    webhook: &'a str,
    /// `(recipients, sender, the host's sendmail)`; `None` for the path: the host has none.
    mail: Option<(&'a [String], String, Option<String>)>,
}

impl Channels<'_> {
    /// The plan's and the result's words for it, e.g. `POST http://hooks/… and mail to
    /// ops@example.org (sendmail on lb)`.
    fn describe(&self, args: &AnnounceArgs, host: &str) -> String {
        let mut parts = Vec::new();
        if !self.webhook.is_empty() {
            let names: Vec<&str> = args.headers.keys().map(String::as_str).collect();
            let with = if names.is_empty() {
                String::new()
            } else {
                format!(" (headers: {})", names.join(", "))
            };
            parts.push(format!("POST {}{with}", shown_url(self.webhook)));
        }
        if let Some((to, _, Some(_))) = &self.mail {
            parts.push(format!("mail to {} (sendmail on {host})", to.join(", ")));
        }
        let mut text = parts.join(" and ");
        if let Some((to, _, None)) = &self.mail {
            text.push_str(&format!(
                "; no mail to {}: {host} has no sendmail",
                to.join(", ")
            ));
        }
        text
    }
}

/// What the plan and the result line say is (or would be) sent.
fn summary(args: &AnnounceArgs, channels: &Channels<'_>, host: &str, verb: &str) -> String {
    format!(
        "{verb} {}: {}",
        channels.describe(args, host),
        crate::diag::one_line(&args.message)
    )
}

/// Check the URL, the recipients and headers, find the host's `sendmail` where mail is asked
/// for, and build the body: everything a send needs, before sending.
async fn prepare<'a>(
    args: &'a AnnounceArgs,
    ctx: &ModCtx<'_>,
) -> Result<(J, Vec<(String, String)>, Channels<'a>)> {
    let webhook = args.webhook.as_deref().unwrap_or_default();
    if webhook.is_empty() && args.mail_to.is_empty() {
        bail!("announce: neither `webhook` nor `mail_to` is set (guard the step with `when:` where none is)");
    }
    if let Some(why) = url_problem(webhook) {
        bail!("announce: webhook {why}");
    }
    if let Some(why) = mail::recipients_problem(&args.mail_to) {
        bail!("announce: {why}");
    }
    // A plan does not know the run's id yet: the placeholder a saved plan is compared with.
    let run_id = match ctx.planned {
        Some(_) => crate::context_names::RUN_ID_PLACEHOLDER,
        None => ctx.run_id,
    };
    let mail = match args.mail_to.is_empty() {
        true => None,
        false => {
            let from = args.mail_from.clone().filter(|f| !f.is_empty());
            let from = from.unwrap_or_else(|| mail::default_from(&ctx.host.name));
            Some((
                args.mail_to.as_slice(),
                from,
                mail::find_sendmail(ctx).await?,
            ))
        }
    };
    let channels = Channels { webhook, mail };
    if webhook.is_empty() && matches!(channels.mail, Some((_, _, None))) {
        bail!(
            "announce: mail to {} needs a sendmail on {}, which it has not, and no webhook is set",
            args.mail_to.join(", "),
            ctx.host.name
        );
    }
    Ok((
        body(args, run_id, &ctx.host.name)?,
        headers(args)?,
        channels,
    ))
}

/// POST the body; the answer's status. Errors never name the URL beyond its origin.
fn post(url: &str, body: &J, headers: &[(String, String)], limit: Duration) -> Result<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limit))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("cutover/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let shown = shown_url(url);
    match req.send(serde_json::to_vec(body)?.as_slice()) {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) => Err(anyhow!(
            "cannot send to {shown}: {}",
            e.to_string().replace(url, &shown)
        )),
    }
}

/// Send to the webhook: `sent_to` and `status` in the result; a failure's words, if any.
async fn send_webhook(
    url: &str,
    body: &J,
    headers: Vec<(String, String)>,
    ctx: &ModCtx<'_>,
    out: &mut Outcome,
) -> Result<Option<String>> {
    let (owned, sent, limit) = (
        url.to_string(),
        body.clone(),
        ctx.timeout.unwrap_or(DEFAULT_TIMEOUT),
    );
    let status =
        tokio::task::spawn_blocking(move || post(&owned, &sent, &headers, limit)).await??;
    out.result.insert("sent_to".into(), json!(shown_url(url)));
    out.result.insert("status".into(), json!(status));
    Ok((!(200..300).contains(&status)).then(|| {
        format!(
            "the webhook {} answered {status}: the message was not accepted",
            shown_url(url)
        )
    }))
}

/// Mail the body through the host's sendmail: `mailed_to` in the result, or why no mail went
/// out (`mail_skipped`); a failure's words, if any.
async fn send_mail(
    args: &AnnounceArgs,
    mail: &(&[String], String, Option<String>),
    body: &J,
    ctx: &ModCtx<'_>,
    out: &mut Outcome,
) -> Result<Option<String>> {
    let (to, from, sendmail) = mail;
    let Some(sendmail) = sendmail else {
        let why = format!("{} has no sendmail", ctx.host.name);
        out.result.insert("mail_skipped".into(), json!(why));
        return Ok(None);
    };
    let subject = args.subject.as_deref().filter(|s| !s.is_empty());
    let subject = subject.map_or_else(|| format!("cutover run {}", ctx.run_id), str::to_string);
    let fields = body.as_object().cloned().unwrap_or_default();
    let message = mail::message(to, from, &subject, &fields)?;
    if let Err(e) = mail::send(ctx, sendmail, from, &message).await {
        return Ok(Some(e.to_string()));
    }
    out.result.insert("mailed_to".into(), json!(to));
    Ok(None)
}

/// The `announce` module.
pub(crate) struct Announce;

impl Module for Announce {
    type Args = AnnounceArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "announce",
        args: &[
            arg("webhook", T::WebUrl),
            arg("mail_to", T::MailList),
            arg("mail_from", T::Str),
            req("message", T::Str),
            arg("subject", T::Str),
            arg("fields", T::Map),
            arg("headers", T::Map),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[&["webhook", "mail_to"]],
        reversibility: Reversibility::NoUndoNeeded,
    };

    async fn probe(args: &AnnounceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        let (body, _, channels) = prepare(args, ctx).await?;
        let shown = serde_json::to_string_pretty(&body)?;
        let line = summary(args, &channels, &ctx.host.name, "would send:");
        Ok(Probe::change(line, Some(format!("{shown}\n")), body))
    }

    async fn apply(args: &AnnounceArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let (body, headers, channels) = prepare(args, ctx).await?;
        let mut out = Outcome {
            changed: true,
            ..Outcome::default()
        };
        let mut failures = Vec::new();
        if !channels.webhook.is_empty() {
            failures.extend(send_webhook(channels.webhook, &body, headers, ctx, &mut out).await?);
        }
        if let Some(mail) = &channels.mail {
            failures.extend(send_mail(args, mail, &body, ctx, &mut out).await?);
        }
        out.result.insert("body".into(), body);
        if !failures.is_empty() {
            out.failed = Some(failures.join("; "));
        }
        Ok(out)
    }

    fn describe_done(result: &Map<String, J>) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(to) = result.get("sent_to").and_then(J::as_str) {
            let status = result.get("status").map_or(J::Null, J::clone);
            parts.push(format!("POST {to} (answered {status})"));
        }
        if let Some(to) = result.get("mailed_to").and_then(J::as_array) {
            let to: Vec<&str> = to.iter().filter_map(J::as_str).collect();
            parts.push(format!("mail to {}", to.join(", ")));
        }
        let mut line = format!("sent: {}", parts.join(" and "));
        if let Some(why) = result.get("mail_skipped").and_then(J::as_str) {
            line.push_str(&format!("; no mail: {why}"));
        }
        (!parts.is_empty()).then_some(line)
    }
}

mod mail;

#[cfg(test)]
mod tests;
