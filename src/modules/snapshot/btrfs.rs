//! btrfs: read-only subvolume snapshots, their state read by exit status, and the rollback that
//! swaps a writable snapshot of the snapshot in place of the subvolume.

use anyhow::{bail, Result};
use serde_json::{json, Map};

use super::args::{
    btrfs_run_file, btrfs_snap, made_by_another_run, recorded_id, replaced_first, replacing, Args,
};
use super::set::{start_services, stop_services};
use super::SnapVolume;
use crate::modules::{ModCtx, Outcome, Probe};
use crate::shell::quote;

pub(super) struct BtrfsVol {
    pub(super) origin: bool,
    pub(super) snapshot: bool,
    pub(super) snapshot_ro: bool,
    pub(super) mounted: bool,
    /// The run that made the snapshot, as recorded beside it.
    pub(super) made_by: Option<String>,
}

pub(super) async fn btrfs_state(ctx: &ModCtx<'_>, a: &Args) -> Result<Vec<BtrfsVol>> {
    let mut script = String::from("issub() { [ \"$(stat -c %i -- \"$1\" 2>/dev/null)\" = 256 ] && btrfs subvolume show -- \"$1\" >/dev/null 2>&1 && echo 1 || echo 0; }\n");
    for v in &a.volumes {
        let snap = btrfs_snap(&a.pool, &a.name, v);
        script.push_str(&format!(
            "printf '%s %s %s %s %s\\n' \"$(issub {src})\" \"$(issub {snap})\" \"$(btrfs property get -ts {snap} ro 2>/dev/null)\" \"$({mounted})\" \"$(head -c 200 -- {run} 2>/dev/null | tr -cd 'A-Za-z0-9_+.-')\"\n",
            src = quote(&format!("{}/{}", a.pool, v.name)),
            snap = quote(&snap),
            run = quote(&btrfs_run_file(&a.pool, &a.name, v)),
            mounted = match &v.mount {
                Some(m) => format!("mountpoint -q -- {} && echo 1 || echo 0", quote(m)),
                None => "echo 0".into(),
            }
        ));
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "cannot read btrfs state on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let text = out.stdout_text();
    let vols: Vec<BtrfsVol> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            BtrfsVol {
                origin: f.first() == Some(&"1"),
                snapshot: f.get(1) == Some(&"1"),
                snapshot_ro: f.get(2) == Some(&"ro=true"),
                mounted: f.get(3) == Some(&"1"),
                made_by: f.get(4).filter(|r| !r.is_empty()).map(|r| r.to_string()),
            }
        })
        .collect();
    if vols.len() != a.volumes.len() {
        bail!("unexpected btrfs state output on {}: {text}", ctx.host.name);
    }
    Ok(vols)
}

pub(super) async fn probe_btrfs(a: &Args, state: &str, ctx: &ModCtx<'_>) -> Result<Probe> {
    let st = btrfs_state(ctx, a).await?;
    let mut todo = Vec::new();
    let mut replace = Vec::new();
    for (v, s) in a.volumes.iter().zip(&st) {
        let snap = btrfs_snap(&a.pool, &a.name, v);
        let src = format!("{}/{}", a.pool, v.name);
        match state {
            "present" => {
                if !s.origin {
                    bail!(
                        "volume `{}`: {src} is not a btrfs subvolume on {}",
                        v.name,
                        ctx.host.name
                    );
                }
                if s.snapshot && !s.snapshot_ro {
                    bail!(
                        "{snap} exists on {} but is not a read-only snapshot",
                        ctx.host.name
                    );
                }
                if s.snapshot && s.made_by != Some(recorded_id(ctx.run_id)) {
                    if !a.replace_existing {
                        return Err(made_by_another_run(
                            a,
                            &ctx.host.name,
                            &snap,
                            s.made_by.as_deref(),
                        ));
                    }
                    replace
                        .push(json!({ "snapshot": snap, "volume": v.name, "made_by": s.made_by }));
                    todo.push(v.name.clone());
                } else if !s.snapshot {
                    todo.push(v.name.clone());
                }
            }
            "merged" | "absent" => {
                if s.snapshot {
                    todo.push(v.name.clone());
                }
            }
            other => bail!("snapshot state must be present, merged or absent, found `{other}`"),
        }
    }
    let saw = json!({ "volumes": todo, "replace": replace });
    if todo.is_empty() {
        return Ok(Probe::no_change(saw));
    }
    let list = todo
        .iter()
        .map(|n| format!("{}/{n}", a.pool))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = match state {
        "present" => format!(
            "{}snapshot {list} (read-only, in {}/.snapshots as {}-*)",
            replaced_first(&replace),
            a.pool,
            a.name
        ),
        "merged" => format!("roll back {list} to snapshot set {}", a.name),
        _ => format!(
            "remove snapshot set {} of {list} (commit: no way back after this)",
            a.name
        ),
    };
    Ok(replacing(Probe::change(summary, None, saw)))
}

/// btrfs rollback: stop, unmount, move the current subvolume aside, make a writable snapshot of
/// the snapshot in its place, mount, start; only then delete the old subvolume (it is the
/// safety net while the swap runs: a failure before the end puts it back) and the snapshot
/// (like LVM, whose merge consumes the snapshot).
pub(super) async fn merge_btrfs(a: &Args, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let st = btrfs_state(ctx, a).await?;
    let vols: Vec<(&SnapVolume, &BtrfsVol)> = a
        .volumes
        .iter()
        .zip(&st)
        .filter(|(_, s)| s.snapshot)
        .collect();
    if vols.is_empty() {
        return Ok(Outcome::default());
    }
    let started = stop_services(ctx, &a.services).await?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut replaced = Vec::new();
    let mut script = String::new();
    for (v, s) in &vols {
        let src = format!("{}/{}", a.pool, v.name);
        let snap = btrfs_snap(&a.pool, &a.name, v);
        // The current subvolume is moved aside, and kept if asked.
        let old = match &a.keep_current_as {
            Some(keep) => btrfs_snap(&a.pool, keep, v),
            None => format!("{snap}.replaced-{ts}"),
        };
        let (m_umount, m_mount) = match (&v.mount, s.mounted) {
            (Some(m), true) => (
                format!("umount -- {m} || exit 5\n", m = quote(m)),
                // From fstab; a mount that is not in fstab is bound again from the pool.
                format!(
                    "{{ mount -- {m} 2>/dev/null || mount --bind -- {src} {m}; }} || exit 6\n",
                    m = quote(m),
                    src = quote(&format!("{}/{}", a.pool, v.name))
                ),
            ),
            _ => (String::new(), String::new()),
        };
        script.push_str(&format!(
            "{m_umount}mv -- {src} {old} || {{ {m_mount_back} exit 7; }}\nif ! btrfs subvolume snapshot -- {snap} {src} >&2; then mv -- {old} {src}; {m_mount_back} exit 8; fi\n{m_mount}",
            src = quote(&src),
            old = quote(&old),
            snap = quote(&snap),
            m_mount_back = m_mount.replace(" || exit 6\n", ";"),
        ));
        replaced.push((old, snap, btrfs_run_file(&a.pool, &a.name, v)));
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        let _ = start_services(ctx, &started).await;
        bail!(
            "rolling back snapshot set `{}` on {} failed (exit {}; a volume not yet swapped was left as it was): {}",
            a.name,
            ctx.host.name,
            out.rc,
            out.stderr_text().trim()
        );
    }
    start_services(ctx, &started).await?;
    let mut cleanup = String::new();
    for (old, snap, run_file) in &replaced {
        // With keep_current_as the replaced subvolume is kept (the rollback guard's copy).
        let old = if a.keep_current_as.is_some() {
            String::new()
        } else {
            quote(old)
        };
        cleanup.push_str(&format!(
            "btrfs subvolume delete -- {old} {} >/dev/null && rm -f -- {}\n",
            quote(snap),
            quote(run_file)
        ));
    }
    let out = ctx.run(&cleanup, None).await?;
    let mut result = Map::new();
    result.insert(
        "merged".into(),
        json!(vols.iter().map(|(v, _)| v.name.clone()).collect::<Vec<_>>()),
    );
    if !out.ok() {
        result.insert(
            "msg".into(),
            json!(format!(
                "rolled back; deleting the replaced subvolumes failed, remove them by hand: {}",
                out.stderr_text().trim()
            )),
        );
    }
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed: None,
    })
}
