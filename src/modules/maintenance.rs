//! `maintenance`: the load balancer's maintenance page, switched by its flag file (`path`;
//! Apache's rewrite rule answers 503 + Retry-After while it exists, no reload needed —
//! https://httpd.apache.org/docs/2.4/rewrite/flags.html#flag_r), then verified:
//!
//! - `url` (fetched **on the host**, from its own address, which is not an admin address):
//!   after `on` it must answer 503 with a `Retry-After` header (and `page_match` in the page,
//!   if given); after `off` it must answer `expect_status` (default 200).
//! - `admin_url` (fetched from the controller, an admin address in the vhost's exceptions):
//!   after `on` it must still get through (anything but 503).
//!
//! Undo: the opposite state.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value as J};

use super::contract::unknown_path;
use super::contract::Module;
use super::http_check::{fetch, HttpResponse};
use super::mysql::arg_u64;
use super::spec::{arg, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{arg_str, required, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

fn want_on(args: &Map<String, J>) -> Result<bool> {
    match required(args, "state")? {
        "on" | "present" | "true" => Ok(true),
        "off" | "absent" | "false" => Ok(false),
        other => bail!("maintenance state must be on or off, not `{other}`"),
    }
}

pub async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let path = required(args, "path")?;
    let on = want_on(args)?;
    let out = ctx
        .run(
            &format!(
                "if [ -e {p} ]; then echo on; else echo off; fi; [ -d \"$(dirname -- {p})\" ] && echo dir",
                p = quote(path)
            ),
            None,
        )
        .await?;
    let text = out.stdout_text();
    let mut is_on = text.lines().next() == Some("on");
    let mut dir = text.contains("dir");
    // In a plan: the flag file and its directory as earlier steps leave them.
    if ctx.overlay().is_some() {
        is_on = super::command::path_exists(ctx, path).await?;
        dir = super::files::dir_exists(ctx, &super::files::parent_of(path)).await?;
    }
    let saw = json!({ "on": is_on });
    if !dir {
        return Ok(Probe::unknown(
            format!(
                "the directory of {path} does not exist on {} (the maintenance page is not installed yet?)",
                ctx.host.name
            ),
            saw,
        ));
    }
    if is_on == on {
        return Ok(Probe::no_change(saw));
    }
    let w = |b: bool| if b { "on" } else { "off" };
    use crate::overlay::{Attrs, Effect, PathState, Val};
    let after = Effect::Path {
        path: path.to_string(),
        state: if on {
            // The flag names the run that set it.
            PathState::File {
                content: Val::Unknown,
                attrs: Attrs {
                    owner: Val::Unknown,
                    group: Val::Unknown,
                    mode: Val::Set("0644".into()),
                },
            }
        } else {
            PathState::Absent
        },
    };
    Ok(Probe::change(
        format!(
            "maintenance page {} → {} ({path} {})",
            w(is_on),
            w(on),
            if on { "created" } else { "removed" }
        ),
        None,
        saw,
    )
    .with_after(vec![after]))
}

/// Why an answer is not what the state wants (None: it is).
pub fn verify(
    on: bool,
    r: &HttpResponse,
    expect: u16,
    page: Option<&regex::Regex>,
) -> Option<String> {
    if on {
        if r.status != 503 {
            return Some(format!("status {} (want 503)", r.status));
        }
        if r.header("Retry-After").is_none() {
            return Some("503 without a Retry-After header".into());
        }
        if let Some(p) = page {
            if !p.is_match(&r.body) {
                return Some(format!("the 503 page does not match /{p}/"));
            }
        }
        None
    } else if r.status != expect {
        Some(format!("status {} (want {expect})", r.status))
    } else {
        None
    }
}

pub async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let path = required(args, "path")?;
    let on = want_on(args)?;
    let mut changed = false;
    if probe.decision != Decision::NoChange {
        let script = if on {
            format!(
                "set -e; f={p}; printf 'maintenance by cutover run %s\\n' {run} > \"$f.tmp.$$\"; chmod 0644 \"$f.tmp.$$\"; mv -f -- \"$f.tmp.$$\" \"$f\"",
                p = quote(path),
                run = quote(ctx.run_id)
            )
        } else {
            format!("rm -f -- {}", quote(path))
        };
        let out = ctx.run(&script, None).await?;
        if !out.ok() {
            bail!(
                "switching the maintenance page {} on {} failed: {}",
                if on { "on" } else { "off" },
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        changed = true;
    }
    let expect = arg_u64(args, "expect_status")?.unwrap_or(200) as u16;
    let page = arg_str(args, "page_match")
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("page_match: {e}"))?;
    let timeout = Duration::from_secs(arg_u64(args, "timeout")?.unwrap_or(30));
    let mut result = Map::new();
    let mut failed = None;
    let started = Instant::now();
    if let Some(url) = arg_str(args, "url") {
        loop {
            let why = match fetch(url, Some(ctx), &[]).await {
                Ok(r) => {
                    result.insert("status".into(), json!(r.status));
                    result.insert("retry_after".into(), json!(r.header("Retry-After")));
                    verify(on, &r, expect, page.as_ref())
                }
                Err(e) => Some(e.to_string()),
            };
            match why {
                None => break,
                Some(w) if started.elapsed() >= timeout => {
                    failed = Some(format!("{url} from {}: {w}", ctx.host.name));
                    break;
                }
                Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
    if let (true, None, Some(url)) = (on, &failed, arg_str(args, "admin_url")) {
        match fetch(url, None, &[]).await {
            Ok(r) if r.status != 503 => {
                result.insert("admin_status".into(), json!(r.status));
            }
            Ok(r) => {
                failed = Some(format!(
                    "{url} from the controller (an admin address) gets {} during maintenance",
                    r.status
                ))
            }
            Err(e) => failed = Some(format!("admin check: {e}")),
        }
    }
    let undo = if changed { undo_of(args) } else { None };
    Ok(Outcome {
        changed,
        result,
        undo,
        failed,
    })
}

/// The way back: the page in the opposite state (known before the change; safe to run whether
/// or not the switch happened).
pub(crate) fn undo_of(args: &Map<String, J>) -> Option<UndoAction> {
    let on = want_on(args).ok()?;
    let path = arg_str(args, "path")?;
    let mut a = args.clone();
    a.insert("state".into(), json!(if on { "off" } else { "on" }));
    a.remove("admin_url");
    Some(UndoAction::Rerun {
        module: Maintenance::SPEC.name.into(),
        args: a,
        what: format!(
            "maintenance page back {} ({path})",
            if on { "off" } else { "on" }
        ),
    })
}

/// The `maintenance` module.
pub(crate) struct Maintenance;

impl Module for Maintenance {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "maintenance",
        args: &[
            req("path", T::Path),
            ArgSpec {
                name: "state",
                ty: T::Str,
                required: true,
                choices: &["on", "off"],
            },
            arg("url", T::Str),
            arg("admin_url", T::Str),
            arg("expect_status", T::Int),
            arg("page_match", T::Str),
            arg("timeout", T::Int),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, _ctx: &ModCtx<'_>) -> Option<UndoAction> {
        if probe.decision == Decision::NoChange {
            return None;
        }
        undo_of(args)
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        arg_str(args, "path")
            .map(unknown_path)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification() {
        let r503 = HttpResponse {
            status: 503,
            headers: vec![("Retry-After".into(), "3600".into())],
            body: "<h1>Down for maintenance</h1>".into(),
        };
        let page = regex::Regex::new("maintenance").unwrap();
        assert_eq!(verify(true, &r503, 200, Some(&page)), None);
        let bare = HttpResponse {
            headers: vec![],
            ..r503.clone()
        };
        assert_eq!(
            verify(true, &bare, 200, None).unwrap(),
            "503 without a Retry-After header"
        );
        assert_eq!(
            verify(false, &r503, 200, None).unwrap(),
            "status 503 (want 200)"
        );
        let ok = HttpResponse {
            status: 200,
            ..Default::default()
        };
        assert_eq!(verify(false, &ok, 200, None), None);
        assert!(verify(true, &ok, 200, None).is_some());
    }
}
