//! `reboot`: reboot a host and wait until it is back (like Ansible's `reboot`). The probe
//! reads the boot id; apply schedules the reboot, then opens new ssh masters
//! (`HostConn::reconnect`) until one answers with another boot id, within `timeout` seconds.
//! Nothing to undo: a reboot restores nothing and changes no state a way back could restore.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};

const DEFAULT_TIMEOUT: u32 = 600;
/// One probe of a host that may be going down: never longer than this.
const POLL_TIMEOUT: Duration = Duration::from_secs(15);

/// The arguments of a `reboot` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct RebootArgs {
    /// Seconds to wait for the host to answer with a new boot id.
    #[serde(default, deserialize_with = "args::uint32")]
    timeout: Option<u32>,
}

/// The kernel's id of the running boot (a new one at every boot).
pub(crate) async fn boot_id(ctx: &ModCtx<'_>) -> Result<String> {
    let run = ctx.host.run(
        "cat /proc/sys/kernel/random/boot_id",
        None,
        ctx.become_,
        Some(POLL_TIMEOUT),
    );
    let out = tokio::time::timeout(POLL_TIMEOUT, run)
        .await
        .context("no answer")??;
    let id = out.stdout_text().trim().to_string();
    if !out.ok() || id.is_empty() {
        bail!("cannot read the boot id: {}", out.stderr_text().trim());
    }
    Ok(id)
}

/// What a finished reboot reports.
pub(crate) struct Rebooted {
    pub before: String,
    pub after: String,
    pub took: Duration,
}

/// Reboot the host (in 2 s, so that this command returns first) and wait until it answers with
/// another boot id on a new ssh master.
pub(crate) async fn reboot_and_wait(ctx: &ModCtx<'_>, limit: Duration) -> Result<Rebooted> {
    let before = boot_id(ctx).await?;
    let out = ctx
        .run(
            "systemd-run --on-active=2 --timer-property=AccuracySec=100ms /bin/systemctl reboot >&2 || { nohup sh -c 'sleep 2; systemctl reboot' >/dev/null 2>&1 & }",
            None,
        )
        .await?;
    if !out.ok() {
        bail!("scheduling a reboot failed: {}", out.stderr_text().trim());
    }
    let t0 = Instant::now();
    let mut last = String::from("not tried yet");
    tokio::time::sleep(Duration::from_secs(4)).await;
    while t0.elapsed() < limit {
        match tokio::time::timeout(POLL_TIMEOUT, ctx.host.reconnect()).await {
            Ok(Ok(())) => match boot_id(ctx).await {
                Ok(id) if id != before => {
                    return Ok(Rebooted {
                        before,
                        after: id,
                        took: t0.elapsed(),
                    })
                }
                Ok(_) => last = "still the old boot".into(),
                Err(e) => last = format!("{e:#}"),
            },
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "connecting took too long".into(),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bail!(
        "{} did not come back with a new boot id within {}s (last: {last})",
        ctx.host.name,
        limit.as_secs()
    )
}

pub(crate) struct Reboot;

impl Module for Reboot {
    type Args = RebootArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "reboot",
        args: &[arg("timeout", T::Int)],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::NoUndoNeeded,
    };

    async fn probe(args: &RebootArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        let id = boot_id(ctx).await?;
        let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Ok(Probe::change(
            format!(
                "reboot {} (boot id {id}) and wait up to {timeout}s for a new boot id",
                ctx.host.name
            ),
            None,
            json!({ "boot_id": id }),
        ))
    }

    async fn apply(args: &RebootArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let limit = Duration::from_secs(args.timeout.unwrap_or(DEFAULT_TIMEOUT).into());
        let r = reboot_and_wait(ctx, limit).await?;
        let mut result = Map::new();
        result.insert("boot_id_before".into(), J::String(r.before));
        result.insert("boot_id".into(), J::String(r.after));
        result.insert("elapsed_s".into(), json!(r.took.as_secs()));
        Ok(Outcome {
            changed: true,
            result,
            undo: None,
            failed: None,
        })
    }
}
