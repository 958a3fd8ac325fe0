//! `announce`: tell people about the run — a message POSTed as JSON to a webhook (a chat
//! channel, a status page, a paging system).
//!
//! The message is sent **from the controller** (the machine running cutover, with `ureq` and a
//! timeout), not from the step's host: the controller is where the admin is and what is allowed
//! out to the chat service, the hosts of a maintenance window may be stopped or cut off, and a
//! URL carrying a token never reaches a host's process list. The step's host only places the
//! step in the run (use `run_once: true`).
//!
//! Decision: always "would send" (a plan shows where to and the JSON body, and sends nothing);
//! applying sends it. A message cannot be unsent, and nothing on a host changed: the module
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
    #[serde(deserialize_with = "args::required_text")]
    webhook: String,
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

/// What the plan and the result line say is (or would be) sent.
fn summary(args: &AnnounceArgs, verb: &str) -> String {
    let names: Vec<&str> = args.headers.keys().map(String::as_str).collect();
    let with = if names.is_empty() {
        String::new()
    } else {
        format!(" (headers: {})", names.join(", "))
    };
    format!(
        "{verb} POST {}{with}: {}",
        shown_url(&args.webhook),
        crate::diag::one_line(&args.message)
    )
}

/// Check the URL and headers and build the body: everything a send needs, before sending.
fn prepare(args: &AnnounceArgs, ctx: &ModCtx<'_>) -> Result<(J, Vec<(String, String)>)> {
    if args.webhook.is_empty() {
        bail!("announce: `webhook` is empty (guard the step with `when:` where none is set)");
    }
    if let Some(why) = url_problem(&args.webhook) {
        bail!("announce: webhook {why}");
    }
    // A plan does not know the run's id yet: the placeholder a saved plan is compared with.
    let run_id = match ctx.planned {
        Some(_) => crate::context_names::RUN_ID_PLACEHOLDER,
        None => ctx.run_id,
    };
    Ok((body(args, run_id, &ctx.host.name)?, headers(args)?))
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

/// The `announce` module.
pub(crate) struct Announce;

impl Module for Announce {
    type Args = AnnounceArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "announce",
        args: &[
            req("webhook", T::WebUrl),
            req("message", T::Str),
            arg("subject", T::Str),
            arg("fields", T::Map),
            arg("headers", T::Map),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::NoUndoNeeded,
    };

    async fn probe(args: &AnnounceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        let (body, _) = prepare(args, ctx)?;
        let shown = serde_json::to_string_pretty(&body)?;
        Ok(Probe::change(
            summary(args, "would send:"),
            Some(format!("{shown}\n")),
            body,
        ))
    }

    async fn apply(args: &AnnounceArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let (body, headers) = prepare(args, ctx)?;
        let (url, limit) = (args.webhook.clone(), ctx.timeout.unwrap_or(DEFAULT_TIMEOUT));
        let sent = body.clone();
        let status =
            tokio::task::spawn_blocking(move || post(&url, &sent, &headers, limit)).await??;
        let mut out = Outcome {
            changed: true,
            ..Outcome::default()
        };
        out.result
            .insert("sent_to".into(), json!(shown_url(&args.webhook)));
        out.result.insert("status".into(), json!(status));
        out.result.insert("body".into(), body);
        if !(200..300).contains(&status) {
            out.failed = Some(format!(
                "the webhook {} answered {status}: the message was not accepted",
                shown_url(&args.webhook)
            ));
        }
        Ok(out)
    }

    fn describe_done(result: &Map<String, J>) -> Option<String> {
        result.get("sent_to").and_then(J::as_str).map(|to| {
            let status = result.get("status").map_or(J::Null, J::clone);
            format!("sent: POST {to} (answered {status})")
        })
    }
}

#[cfg(test)]
mod tests;
