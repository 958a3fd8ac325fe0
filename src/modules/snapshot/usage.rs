//! The `snapshot_usage` module: how full a set's COW space is, extended before it turns invalid.

use anyhow::Result;
use serde_json::{json, Map};

use super::args::{btrfs_snap, snap_lv, Backend, UsageArgs};
use super::btrfs::btrfs_state;
use super::lvm::{lvm_state, parse_size, Size};
use crate::modules::contract::Module;
use crate::modules::spec::{arg, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{ModCtx, Outcome, Probe};
use crate::shell::quote;

pub(crate) async fn probe_usage(args: &UsageArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let a = args.set()?;
    let max = args.max_usage_percent;
    let mut problems = Vec::new();
    let mut extend = Vec::new();
    let mut usage = Map::new();
    match a.backend {
        Backend::Lvm => {
            // The COW space fills when the page cache is written back, not when a program
            // writes: flush first, or a usage read right after an upgrade is too low.
            let _ = ctx.run("sync", None).await?;
            let st = lvm_state(ctx, &a.volumes).await?;
            for v in &a.volumes {
                let vg = v.vg.as_deref().unwrap_or("");
                let snap = snap_lv(&a.name, v);
                match st.lv(vg, &snap) {
                    None => problems.push(format!("snapshot {vg}/{snap} does not exist: there is no rollback point for {}", v.name)),
                    Some(s) if s.invalid() => problems.push(format!(
                        "snapshot {vg}/{snap} is invalid (its COW space filled up): the rollback point is gone; it cannot be merged"
                    )),
                    Some(s) => {
                        let p = s.percent().unwrap_or(0.0);
                        usage.insert(v.name.clone(), json!(p));
                        if p >= max {
                            if args.autoextend == Some(true) {
                                extend.push(format!("{vg}/{snap}"));
                            } else {
                                problems.push(format!(
                                    "snapshot {vg}/{snap} is {p:.2}% full (max {max}%): extend it (lvextend, or autoextend: true) or commit/roll back now, before it fills up and the rollback point is lost"
                                ));
                            }
                        }
                    }
                }
            }
        }
        Backend::Btrfs => {
            // btrfs snapshots share the pool's space: they cannot fill up on their own.
            let st = btrfs_state(ctx, &a).await?;
            for (v, s) in a.volumes.iter().zip(&st) {
                if !s.snapshot {
                    problems.push(format!(
                        "snapshot {} does not exist: the rollback point is gone",
                        btrfs_snap(&a.pool, &a.name, v)
                    ));
                }
            }
        }
    }
    let saw = json!({ "usage": usage, "problems": problems, "extend": extend });
    Ok(if !extend.is_empty() && problems.is_empty() {
        Probe::change(
            format!(
                "extend {} by {} (usage at or above {max}%)",
                extend.join(", "),
                args.extend_by()
            ),
            None,
            saw,
        )
    } else {
        Probe::no_change(saw)
    })
}

pub(crate) async fn apply_usage(
    args: &UsageArgs,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    out.result
        .insert("usage".into(), probe.state["usage"].clone());
    let problems: Vec<String> = probe.state["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !problems.is_empty() {
        out.failed = Some(problems.join("; "));
        return Ok(out);
    }
    let extend: Vec<String> = probe.state["extend"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if extend.is_empty() {
        return Ok(out);
    }
    let by = args.extend_by();
    let size = match parse_size(by)? {
        Size::PercentOrigin(p) => format!("-l +{p}%ORIGIN"),
        Size::Bytes(b) => format!("-L +{b}b"),
    };
    let mut script = String::from("set -e\n");
    for s in &extend {
        script.push_str(&format!("lvextend {size} -- {} >&2\n", quote(s)));
    }
    let r = ctx.run(&script, None).await?;
    if !r.ok() {
        out.failed = Some(format!(
            "extending {} failed (the snapshot will become invalid when full — commit or roll back now): {}",
            extend.join(", "),
            r.stderr_text().trim()
        ));
        return Ok(out);
    }
    out.changed = true;
    out.result.insert("extended".into(), json!(extend));
    Ok(out)
}

/// The `snapshot_usage` module: how full a snapshot set is.
pub(crate) struct SnapshotUsage;

impl Module for SnapshotUsage {
    type Args = UsageArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "snapshot_usage",
        args: &[
            ArgSpec {
                name: "backend",
                ty: T::Str,
                required: true,
                choices: &["lvm", "btrfs"],
            },
            req("volumes", T::Any),
            req("name", T::Str),
            arg("max_usage_percent", T::Int),
            arg("autoextend", T::Bool),
            arg("extend_by", T::Str),
            arg("pool", T::Path),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &UsageArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_usage(args, ctx).await
    }

    async fn apply(args: &UsageArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_usage(args, probe, ctx).await
    }
}
