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
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::unknown_path;
use super::contract::Module;
use super::http_check::{fetch, HttpResponse};
use super::spec::{arg, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

/// The arguments of a `maintenance` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct MaintenanceArgs {
    #[serde(deserialize_with = "args::required_text")]
    path: String,
    #[serde(deserialize_with = "args::required_text")]
    state: String,
    #[serde(default, deserialize_with = "args::text")]
    url: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    admin_url: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    expect_status: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    page_match: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    timeout: Option<u64>,
    /// The step's map as it was given: the way back reruns the step with it (the other
    /// state), and the journal keeps it as it was.
    #[serde(skip)]
    written: Map<String, J>,
}

impl MaintenanceArgs {
    /// Is the page to be on (`state`; a rendered `present`/`true` reads as on)?
    fn want_on(&self) -> Result<bool> {
        match self.state.as_str() {
            "on" | "present" | "true" => Ok(true),
            "off" | "absent" | "false" => Ok(false),
            other => bail!("maintenance state must be on or off, not `{other}`"),
        }
    }
}

pub async fn probe(args: &MaintenanceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let path = args.path.as_str();
    let on = args.want_on()?;
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

pub async fn apply(args: &MaintenanceArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let path = args.path.as_str();
    let on = args.want_on()?;
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
    let expect = args.expect_status.unwrap_or(200) as u16;
    let page = args
        .page_match
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("page_match: {e}"))?;
    let timeout = Duration::from_secs(args.timeout.unwrap_or(30));
    // The state the step leaves the page in, rendered: the window's breakdown reads it from
    // the journal (engine::window).
    let mut result = Map::from_iter([("page".to_string(), json!(if on { "on" } else { "off" }))]);
    let mut failed = None;
    let started = Instant::now();
    if let Some(url) = args.url.as_deref() {
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
    if let (true, None, Some(url)) = (on, &failed, args.admin_url.as_deref()) {
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
pub(crate) fn undo_of(args: &MaintenanceArgs) -> Option<UndoAction> {
    let on = args.want_on().ok()?;
    let path = &args.path;
    let mut a = args.written.clone();
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
    type Args = MaintenanceArgs;

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
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    fn parse_args(map: &Map<String, J>) -> Result<MaintenanceArgs> {
        let mut a: MaintenanceArgs = args::parse(Self::SPEC.name, map)?;
        a.written = map.clone();
        Ok(a)
    }

    async fn probe(args: &MaintenanceArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &MaintenanceArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(
        args: &MaintenanceArgs,
        probe: &Probe,
        _ctx: &ModCtx<'_>,
    ) -> Option<UndoAction> {
        if probe.decision == Decision::NoChange {
            return None;
        }
        undo_of(args)
    }

    fn touches(args: &MaintenanceArgs) -> Vec<Effect> {
        vec![unknown_path(&args.path)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: J) -> Result<MaintenanceArgs> {
        Maintenance::parse_args(v.as_object().unwrap())
    }

    /// The way back reruns the step with its own map, the state the other way and without the
    /// admin check: the journal keeps every value as the step gave it (a rendered number as
    /// text stays text).
    #[test]
    fn the_way_back_is_the_step_as_given_the_other_way() {
        let a = parsed(json!({
            "path": "/srv/maint/on", "state": "on", "url": "http://10.0.0.5/",
            "admin_url": "http://lb/", "expect_status": "200", "timeout": 60, "page_match": 503
        }))
        .unwrap();
        assert!(a.want_on().unwrap());
        let undo = serde_json::to_string(&undo_of(&a).unwrap()).unwrap();
        assert_eq!(
            undo,
            r#"{"undo":"rerun","module":"maintenance","args":{"expect_status":"200","page_match":503,"path":"/srv/maint/on","state":"off","timeout":60,"url":"http://10.0.0.5/"},"what":"maintenance page back off (/srv/maint/on)"}"#
        );
        let back = parsed(json!({"path": "/srv/maint/on", "state": "absent"})).unwrap();
        assert!(!back.want_on().unwrap());
        assert!(undo_of(&back)
            .unwrap()
            .describe()
            .ends_with("back on (/srv/maint/on)"));
    }

    /// A rendered value of the wrong kind is refused when the step's arguments are parsed,
    /// before the probe runs anything, with the messages the map readers gave.
    #[test]
    fn bad_rendered_values_are_refused_as_before() {
        let e = |v: J| parsed(v).err().map(|e| e.to_string());
        assert_eq!(
            e(json!({"path": "/m", "state": "on", "timeout": "1m"})).as_deref(),
            Some("`timeout` must be a non-negative integer, not `1m`")
        );
        assert_eq!(
            e(json!({"path": ["/m"], "state": "on"})).as_deref(),
            Some("argument `path` is missing or not a string")
        );
        let a = parsed(json!({"path": "/m", "state": "maybe"})).unwrap();
        assert_eq!(
            a.want_on().unwrap_err().to_string(),
            "maintenance state must be on or off, not `maybe`"
        );
        assert!(undo_of(&a).is_none());
    }

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
