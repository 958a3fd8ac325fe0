//! The `snapshot` module: create, merge (roll back to) or remove a set, on either backend.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value as J};

use super::args::{
    btrfs_run_file, btrfs_snap, recorded_id, run_tag, snap_lv, Args, Backend, SnapshotArgs,
};
use super::btrfs::{merge_btrfs, probe_btrfs};
use super::lvm::{merge_lvm, probe_lvm_absent, probe_lvm_merged, probe_lvm_present};
use super::{MergeSpec, SnapVolume};
use crate::modules::args::TextList;
use crate::modules::contract::unknown_tree;
use crate::modules::contract::Module;
use crate::modules::spec::{arg, choice, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::{Effect, UnitState};
use crate::shell::quote;

pub(crate) async fn probe(args: &SnapshotArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let a = Args::of(args)?;
    let state = args.state();
    match (a.backend, state) {
        (Backend::Lvm, "present") => probe_lvm_present(&a, args.size.as_deref(), ctx).await,
        (Backend::Lvm, "merged") => probe_lvm_merged(&a, ctx).await,
        (Backend::Lvm, "absent") => probe_lvm_absent(&a, ctx).await,
        (Backend::Btrfs, _) => probe_btrfs(&a, state, ctx).await,
        (_, other) => bail!("snapshot state must be present, merged or absent, found `{other}`"),
    }
}

pub(crate) async fn apply(args: &SnapshotArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let a = Args::of(args)?;
    match args.state() {
        "present" => create(&a, probe, ctx).await,
        "merged" => merge(&a, ctx).await,
        _ => remove(&a, probe, ctx).await,
    }
}

/// The volumes a create will snapshot, as the probe found them missing.
fn to_create(a: &Args, probe: &Probe) -> Vec<SnapVolume> {
    let names: Vec<String> = match a.backend {
        Backend::Lvm => probe.state["create"]
            .as_array()
            .map(|x| {
                x.iter()
                    .filter_map(|c| c["volume"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        Backend::Btrfs => probe.state["volumes"]
            .as_array()
            .map(|x| {
                x.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    a.volumes
        .iter()
        .filter(|v| names.contains(&v.name))
        .cloned()
        .collect()
}

/// The way back a create will record, known before it starts (journaled with the intent, so a
/// controller killed in the middle of the create still has it): the merge of the snapshots it
/// makes. A merge skips the snapshots that do not exist, so it is safe when the create was cut
/// off before making some or all of them.
pub(crate) fn pending_undo(args: &SnapshotArgs, probe: &Probe) -> Option<UndoAction> {
    if args.state() != "present" || probe.decision == Decision::NoChange {
        return None;
    }
    let a = Args::of(args).ok()?;
    let made = to_create(&a, probe);
    (!made.is_empty()).then(|| UndoAction::SnapshotMerge(a.merge_spec(made)))
}

async fn create(a: &Args, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut script = String::from(
        "created=''\nundo() { for s in $created; do $1 \"$s\" >/dev/null 2>&1; done; }\n",
    );
    let made = to_create(a, probe);
    // replace_existing: the other run's snapshots go first (the probe checked they may).
    for r in probe.state["replace"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let old = quote(r["snapshot"].as_str().unwrap_or(""));
        script.push_str(&match a.backend {
            Backend::Lvm => format!("lvremove -y -- {old} >&2 || exit 1\n"),
            Backend::Btrfs => format!("btrfs subvolume delete -- {old} >&2 || exit 1\n"),
        });
    }
    match a.backend {
        Backend::Lvm => {
            for c in probe.state["create"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let (vg, lv, snap) = (
                    c["vg"].as_str().unwrap_or(""),
                    c["lv"].as_str().unwrap_or(""),
                    c["snapshot"].as_str().unwrap_or(""),
                );
                script.push_str(&format!(
                    "lvcreate -y -s -n {snap} {size} --addtag {tag} -- {vg}/{lv} >&2 || {{ rc=$?; undo 'lvremove -y'; exit $rc; }}\ncreated=\"$created {vg}/{snap}\"\n",
                    snap = quote(snap),
                    tag = quote(&run_tag(ctx.run_id)),
                    size = c["size_args"].as_str().unwrap_or(""),
                    vg = quote(vg),
                    lv = quote(lv)
                ));
            }
        }
        Backend::Btrfs => {
            script.push_str(&format!(
                "mkdir -p -- {}\n",
                quote(&format!("{}/.snapshots/.cutover-runs", a.pool))
            ));
            for v in &made {
                let snap = quote(&btrfs_snap(&a.pool, &a.name, v));
                // The run is recorded before the snapshot exists: a snapshot never lacks it.
                script.push_str(&format!(
                    "printf '%s\\n' {run} > {run_file} || exit 1\nbtrfs subvolume snapshot -r -- {src} {snap} >&2 || {{ rc=$?; undo 'btrfs subvolume delete --'; exit $rc; }}\ncreated=\"$created {snap}\"\n",
                    run = quote(&recorded_id(ctx.run_id)),
                    run_file = quote(&btrfs_run_file(&a.pool, &a.name, v)),
                    src = quote(&format!("{}/{}", a.pool, v.name)),
                ));
            }
        }
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "creating snapshot set `{}` on {} failed (snapshots made by this step were removed again): {}",
            a.name,
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let mut result = Map::new();
    result.insert(
        "snapshots".into(),
        json!(made.iter().map(|v| snap_lv(&a.name, v)).collect::<Vec<_>>()),
    );
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(UndoAction::SnapshotMerge(a.merge_spec(made))),
        failed: None,
    })
}

async fn remove(a: &Args, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut script = String::from("set -e\n");
    let mut removed = Vec::new();
    match a.backend {
        Backend::Lvm => {
            for s in probe.state["remove"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let s = s.as_str().unwrap_or("");
                script.push_str(&format!("lvremove -y -- {} >&2\n", quote(s)));
                removed.push(s.to_string());
            }
        }
        Backend::Btrfs => {
            for n in probe.state["volumes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let Some(v) = a
                    .volumes
                    .iter()
                    .find(|v| Some(v.name.as_str()) == n.as_str())
                else {
                    continue;
                };
                let snap = btrfs_snap(&a.pool, &a.name, v);
                script.push_str(&format!(
                    "btrfs subvolume delete -- {} >&2\nrm -f -- {}\n",
                    quote(&snap),
                    quote(&btrfs_run_file(&a.pool, &a.name, v))
                ));
                removed.push(snap);
            }
        }
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        let err = out.stderr_text();
        if err.contains("merging snapshot") {
            bail!("a merging snapshot cannot be removed (wait for the merge, or complete it with state: merged): {}", err.trim());
        }
        bail!(
            "removing snapshot set `{}` on {} failed: {}",
            a.name,
            ctx.host.name,
            err.trim()
        );
    }
    let mut result = Map::new();
    result.insert("removed".into(), json!(removed));
    // Removing a snapshot is the commit: there is no way back to it.
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed: None,
    })
}

// ---------------------------------------------------------------------------------------------
// merge (state: merged, and the undo of a create)

/// Stop units (socket first, so nothing re-activates them); returns what to start again.
pub(super) async fn stop_services(ctx: &ModCtx<'_>, services: &[String]) -> Result<Vec<String>> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = String::new();
    for s in services {
        let base = s.trim_end_matches(".service");
        let sock = format!("{base}.socket");
        script.push_str(&format!(
            "systemctl is-active -q -- {sock} && {{ echo {sock}; systemctl stop -- {sock} || exit 4; }}\nsystemctl is-active -q -- {unit} && {{ echo {unit}; systemctl stop -- {unit} || exit 4; }}\n",
            sock = quote(&sock),
            unit = quote(s)
        ));
    }
    script.push_str("exit 0\n");
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "stopping {} failed: {}",
            services.join(", "),
            out.stderr_text().trim()
        );
    }
    Ok(out.stdout_text().lines().map(str::to_string).collect())
}

pub(super) async fn start_services(ctx: &ModCtx<'_>, units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    // Sockets were printed first; start them first too.
    let out = ctx
        .run(
            &format!("systemctl start -- {}", crate::shell::join(units)),
            None,
        )
        .await?;
    if !out.ok() {
        bail!(
            "starting {} failed: {}",
            units.join(", "),
            out.stderr_text().trim()
        );
    }
    Ok(())
}

/// The undo of a create: roll the volumes back to the snapshots.
pub async fn undo_merge(spec: &MergeSpec, ctx: &ModCtx<'_>) -> Result<()> {
    let out = merge(&spec.args(), ctx).await?;
    if let Some(f) = out.failed {
        bail!("{f}");
    }
    Ok(())
}

async fn merge(a: &Args, ctx: &ModCtx<'_>) -> Result<Outcome> {
    match a.backend {
        Backend::Lvm => merge_lvm(a, ctx).await,
        Backend::Btrfs => merge_btrfs(a, ctx).await,
    }
}

/// What a merge may change: the merged volumes' trees and the services it stops and starts.
/// Creating or removing snapshots changes no path.
fn touches(args: &SnapshotArgs) -> Vec<Effect> {
    let mut out = Vec::new();
    if args.state.as_deref() != Some("merged") {
        return out;
    }
    for v in args.listed_volumes() {
        if let Some(m) = v.get("mount").and_then(J::as_str) {
            out.push(unknown_tree(m));
        }
    }
    // Only a list: one name given as text is not taken as a unit here (as before).
    if let TextList::List(services) = &args.services {
        for s in services {
            out.push(Effect::Unit {
                name: s.to_string(),
                state: UnitState::unknown(),
            });
        }
    }
    out
}

/// The `snapshot` module: a set of LVM or btrfs snapshots.
pub(crate) struct Snapshot;

impl Module for Snapshot {
    type Args = SnapshotArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "snapshot",
        args: &[
            ArgSpec {
                name: "backend",
                ty: T::Str,
                required: true,
                choices: &["lvm", "btrfs"],
            },
            req("volumes", T::Any),
            req("name", T::Str),
            choice("state", &["present", "absent", "merged"]),
            arg("size", T::Str),
            arg("pool", T::Path),
            arg("services", T::StrList),
            arg("reboot", T::Bool),
            arg("replace_existing", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &SnapshotArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &SnapshotArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &SnapshotArgs, probe: &Probe, _ctx: &ModCtx<'_>) -> Option<UndoAction> {
        pending_undo(args, probe)
    }

    fn touches(args: &SnapshotArgs) -> Vec<Effect> {
        touches(args)
    }
}
