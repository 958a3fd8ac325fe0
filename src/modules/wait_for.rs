//! `wait_for`: wait until a port is open (or closed), or a file exists (optionally containing
//! a text) or is gone. Read-only: the probe decides nothing; apply polls on the host in one
//! remote shell loop, so a long wait costs one ssh round trip, not one per poll.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, choice, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};
use crate::shell::quote;

const DEFAULT_TIMEOUT: u32 = 300;

pub fn probe() -> Probe {
    Probe::no_change(J::Null)
}

/// The arguments of a `wait_for` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct WaitArgs {
    #[serde(default, deserialize_with = "args::uint32")]
    port: Option<u32>,
    #[serde(default, deserialize_with = "args::text")]
    host: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    path: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    search: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::uint32")]
    timeout: Option<u32>,
    #[serde(default, deserialize_with = "args::uint32")]
    delay: Option<u32>,
}

/// The condition as a shell function `check` (true when it holds) and words for messages.
fn condition(args: &WaitArgs) -> Result<(String, String)> {
    let state = args.state.as_deref();
    if let Some(port) = args.port {
        if port == 0 || port > 65535 {
            bail!("`port` must be 1-65535, not {port}");
        }
        let host = args.host.as_deref().unwrap_or("127.0.0.1");
        let open = match state.unwrap_or("started") {
            "started" | "present" => true,
            "stopped" | "absent" => false,
            other => bail!("unknown wait_for state `{other}`"),
        };
        // nc if the host has it, else bash's /dev/tcp; both bounded so a filtered port
        // cannot hang one poll.
        let check = format!(
            r#"h={h}; p={port}
probe_port() {{
  if command -v nc >/dev/null 2>&1; then nc -z -w 2 "$h" "$p" >/dev/null 2>&1
  elif command -v bash >/dev/null 2>&1; then timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$h" "$p" >/dev/null 2>&1
  else echo "neither nc nor bash on this host: cannot test a port" >&2; exit 2
  fi
}}
check() {{ {neg}probe_port; }}"#,
            h = quote(host),
            neg = if open { "" } else { "! " }
        );
        let what = format!(
            "port {host}:{port} to be {}",
            if open { "open" } else { "closed" }
        );
        return Ok((check, what));
    }
    let Some(path) = args.path.as_deref() else {
        bail!("wait_for needs `port` or `path`");
    };
    let present = match state.unwrap_or("present") {
        "present" | "started" => true,
        "absent" | "stopped" => false,
        other => bail!("unknown wait_for state `{other}`"),
    };
    let search = args.search.as_deref();
    let (check, what) = match (present, search) {
        (true, Some(s)) => (
            format!(
                "check() {{ [ -f {p} ] && grep -qF -e {s} -- {p} 2>/dev/null; }}",
                p = quote(path),
                s = quote(s)
            ),
            format!("{path} to contain \"{s}\""),
        ),
        (true, None) => (
            format!("check() {{ [ -e {} ]; }}", quote(path)),
            format!("{path} to exist"),
        ),
        (false, Some(s)) => (
            format!(
                "check() {{ ! grep -qF -e {s} -- {p} 2>/dev/null; }}",
                p = quote(path),
                s = quote(s)
            ),
            format!("{path} to no longer contain \"{s}\""),
        ),
        (false, None) => (
            format!("check() {{ [ ! -e {} ]; }}", quote(path)),
            format!("{path} to be absent"),
        ),
    };
    Ok((check, what))
}

pub async fn apply(args: &WaitArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let delay = args.delay.unwrap_or(0);
    let (check, what) = condition(args)?;
    let script = format!(
        r#"{check}
sleep {delay}
start=$(date +%s); end=$((start + {timeout}))
while :; do
  if check; then echo "ok $(( $(date +%s) - start ))"; exit 0; fi
  [ "$(date +%s)" -ge "$end" ] && exit 3
  sleep 1
done"#
    );
    let out = ctx.run(&script, None).await?;
    let mut result = Map::new();
    result.insert("elapsed_ms".into(), json!(out.duration.as_millis() as u64));
    let failed = if out.timed_out {
        Some(format!(
            "gave up waiting for {what} on {}: the step's timeout stopped the wait",
            ctx.host.name
        ))
    } else {
        match out.rc {
            0 => None,
            3 => Some(format!(
                "timed out after {timeout}s waiting for {what} on {}",
                ctx.host.name
            )),
            rc => Some(format!(
                "waiting for {what} on {} failed (exit {rc}): {}",
                ctx.host.name,
                out.stderr_text().trim()
            )),
        }
    };
    if let Some(f) = &failed {
        result.insert("msg".into(), J::String(f.clone()));
    }
    Ok(Outcome {
        changed: false,
        result,
        undo: None,
        failed,
    })
}

/// The `wait_for` module.
pub(crate) struct WaitFor;

impl Module for WaitFor {
    type Args = WaitArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "wait_for",
        args: &[
            arg("port", T::Int),
            arg("host", T::Str),
            arg("path", T::Path),
            arg("search", T::Str),
            choice("state", &["started", "stopped", "present", "absent"]),
            arg("timeout", T::Int),
            arg("delay", T::Int),
        ],
        free_form: None,
        one_of: &[&["port", "path"]],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &WaitArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(probe())
    }

    async fn apply(args: &WaitArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, ctx).await
    }
}
