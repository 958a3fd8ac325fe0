//! LVM: the `lvs`/`vgs --reportformat json` reports of a set's volume groups, sizes, and probing,
//! merging (`lvconvert --merge`) and waiting for LVM snapshots.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use super::args::{
    made_by_another_run, recorded_id, replaced_first, replacing, run_of_tags, snap_lv, Args,
};
use super::set::{start_services, stop_services};
use super::SnapVolume;
use crate::modules::reboot::reboot_and_wait;
use crate::modules::{ModCtx, Outcome, Probe};
use crate::shell::quote;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Lv {
    #[serde(default)]
    pub(crate) lv_name: String,
    #[serde(default)]
    pub(crate) vg_name: String,
    #[serde(default)]
    pub(crate) lv_attr: String,
    #[serde(default)]
    pub(crate) origin: String,
    #[serde(default)]
    pub(crate) lv_size: String,
    #[serde(default)]
    pub(crate) snap_percent: String,
    #[serde(default)]
    pub(crate) lv_merging: String,
    #[serde(default)]
    pub(crate) lv_snapshot_invalid: String,
    #[serde(default)]
    pub(crate) lv_tags: String,
}

impl Lv {
    fn attr(&self, i: usize) -> char {
        self.lv_attr.chars().nth(i).unwrap_or('-')
    }
    pub(crate) fn size(&self) -> u64 {
        self.lv_size.parse().unwrap_or(0)
    }
    pub(crate) fn invalid(&self) -> bool {
        self.attr(4) == 'I' || self.attr(4) == 'S' || self.lv_snapshot_invalid == "1"
    }
    pub(crate) fn merging(&self) -> bool {
        self.attr(0) == 'S' || self.lv_merging == "1"
    }
    pub(crate) fn percent(&self) -> Option<f64> {
        self.snap_percent.parse().ok()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Vg {
    #[serde(default)]
    pub(crate) vg_name: String,
    #[serde(default)]
    pub(crate) vg_free: String,
    #[serde(default)]
    pub(crate) vg_extent_size: String,
}

#[derive(Deserialize)]
pub(crate) struct Report {
    pub(crate) report: Vec<Section>,
}

#[derive(Deserialize)]
pub(crate) struct Section {
    #[serde(default)]
    pub(crate) lv: Vec<Lv>,
    #[serde(default)]
    pub(crate) vg: Vec<Vg>,
}

const SEP: &str = "@@cutover-snapshot@@";

/// What one round trip tells about the VGs of a set.
pub(super) struct LvmState {
    pub(super) lvs: Vec<Lv>,
    pub(super) vgs: Vec<Vg>,
    /// mount point → mounted?
    pub(super) mounted: BTreeMap<String, bool>,
}

impl LvmState {
    pub(super) fn lv(&self, vg: &str, name: &str) -> Option<&Lv> {
        self.lvs
            .iter()
            .find(|l| l.vg_name == vg && l.lv_name == name)
    }
}

fn lvs_cmd(vgs: &[String]) -> String {
    format!(
        "lvs -a --reportformat json --binary --units b --nosuffix -o lv_name,vg_name,lv_attr,origin,lv_size,snap_percent,lv_merging,lv_snapshot_invalid,lv_tags -- {}",
        crate::shell::join(vgs)
    )
}

fn vgs_of(volumes: &[SnapVolume]) -> Vec<String> {
    let mut v: Vec<String> = volumes.iter().filter_map(|v| v.vg.clone()).collect();
    v.sort();
    v.dedup();
    v
}

pub(crate) fn parse_report(text: &str) -> Result<Report> {
    let mut r: Report = serde_json::from_str(text.trim())
        .with_context(|| format!("unexpected lvm report: {}", text.trim()))?;
    for s in &mut r.report {
        for l in &mut s.lv {
            // `lvs -a` shows hidden LVs (a merging snapshot) as `[name]`.
            l.lv_name = l
                .lv_name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
        }
    }
    Ok(r)
}

pub(super) async fn lvm_state(ctx: &ModCtx<'_>, volumes: &[SnapVolume]) -> Result<LvmState> {
    let vgs = vgs_of(volumes);
    let mut script = format!(
        "{lvs} || exit 3\necho {SEP}\nvgs --reportformat json --units b --nosuffix -o vg_name,vg_free,vg_extent_size -- {vgs} || exit 3\necho {SEP}\n",
        lvs = lvs_cmd(&vgs),
        vgs = crate::shell::join(&vgs)
    );
    for m in volumes.iter().filter_map(|v| v.mount.as_deref()) {
        script.push_str(&format!(
            "if mountpoint -q -- {m}; then echo 1 {m}; else echo 0 {m}; fi\n",
            m = quote(m)
        ));
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "cannot read LVM state on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let text = out.stdout_text();
    let parts: Vec<&str> = text.split(SEP).collect();
    if parts.len() < 3 {
        bail!("unexpected output from lvs/vgs on {}", ctx.host.name);
    }
    let lvs = parse_report(parts[0])?
        .report
        .into_iter()
        .flat_map(|s| s.lv)
        .collect();
    let vgs = parse_report(parts[1])?
        .report
        .into_iter()
        .flat_map(|s| s.vg)
        .collect();
    let mounted = parts[2]
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(flag, m)| (m.to_string(), flag == "1"))
        .collect();
    Ok(LvmState { lvs, vgs, mounted })
}

/// A requested snapshot size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Size {
    /// `N%ORIGIN`
    PercentOrigin(f64),
    Bytes(u64),
}

pub(super) fn parse_size(s: &str) -> Result<Size> {
    let t = s.trim();
    if let Some(p) = t
        .strip_suffix("%ORIGIN")
        .or_else(|| t.strip_suffix("%origin"))
    {
        let v: f64 = p
            .parse()
            .ok()
            .filter(|v: &f64| *v > 0.0 && *v <= 100.0)
            .with_context(|| format!("snapshot size `{s}`: the percentage must be 1-100"))?;
        return Ok(Size::PercentOrigin(v));
    }
    match size_bytes(t) {
        Ok(b) => Ok(Size::Bytes(b)),
        Err(SizeError::NotANumber) => {
            bail!("snapshot size `{s}`: expected N%ORIGIN or a size like 2G, 512M, 8M")
        }
        Err(SizeError::Unit(unit)) => {
            bail!("snapshot size `{s}`: unknown unit `{unit}` (use K, M, G, T or N%ORIGIN)")
        }
        Err(SizeError::Zero) => bail!("snapshot size `{s}` is zero"),
    }
}

/// Why a text is not a size [`size_bytes`] reads.
#[derive(Debug, PartialEq)]
pub(crate) enum SizeError {
    NotANumber,
    Unit(String),
    Zero,
}

/// A size as `lvcreate -L` reads it, in bytes: a number and a unit (K, M, G, T, binary; S:
/// 512-byte sectors; B: bytes; none: MiB, lvcreate's default), case-insensitive.
pub(crate) fn size_bytes(t: &str) -> std::result::Result<u64, SizeError> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| SizeError::NotANumber)?;
    let mult: u64 = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" if unit.eq_ignore_ascii_case("b") => 1,
        "" | "m" | "mi" => 1 << 20, // lvcreate -L without a unit means MiB
        "k" | "ki" => 1 << 10,
        "g" | "gi" => 1 << 30,
        "t" | "ti" => 1 << 40,
        "s" => 512,
        _ => return Err(SizeError::Unit(unit.to_string())),
    };
    match (n * mult as f64).ceil() as u64 {
        0 => Err(SizeError::Zero),
        bytes => Ok(bytes),
    }
}

pub(crate) fn round_up(n: u64, to: u64) -> u64 {
    if to == 0 {
        n
    } else {
        n.div_ceil(to) * to
    }
}

/// The VG space a snapshot of `origin` bytes will take: the request rounded up to whole extents,
/// capped (as lvcreate does) at the origin plus its exception-table metadata.
pub(super) fn cow_need(size: Size, origin: u64, extent: u64) -> u64 {
    let want = match size {
        Size::PercentOrigin(p) => (origin as f64 * p / 100.0).ceil() as u64,
        Size::Bytes(b) => b,
    };
    let cap = origin + origin / 32 + extent;
    round_up(want.min(cap), extent)
}

fn size_args(size: Size, need: u64) -> String {
    match size {
        Size::PercentOrigin(p) => format!("-l {}%ORIGIN", p),
        Size::Bytes(_) => format!("-L {need}b"),
    }
}

pub(crate) fn human(b: u64) -> String {
    let mib = b as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{b} bytes ({:.2} GiB)", mib / 1024.0)
    } else {
        format!("{b} bytes ({mib:.1} MiB)")
    }
}

/// `size`: the step's, as given (100%ORIGIN when not).
pub(super) async fn probe_lvm_present(
    a: &Args,
    size: Option<&str>,
    ctx: &ModCtx<'_>,
) -> Result<Probe> {
    let size = parse_size(size.unwrap_or("100%ORIGIN"))?;
    let st = lvm_state(ctx, &a.volumes).await?;
    let mut create = Vec::new();
    let mut replace = Vec::new();
    let mut need_by_vg: BTreeMap<String, u64> = BTreeMap::new();
    // Space a replaced snapshot gives back before the new one is made.
    let mut freed_by_vg: BTreeMap<String, u64> = BTreeMap::new();
    for v in &a.volumes {
        let (vg, lv) = (v.vg.as_deref().unwrap_or(""), v.lv.as_deref().unwrap_or(""));
        let snap = snap_lv(&a.name, v);
        let Some(origin) = st.lv(vg, lv) else {
            bail!(
                "volume `{}`: logical volume {vg}/{lv} does not exist on {}",
                v.name,
                ctx.host.name
            );
        };
        if let Some(s) = st.lv(vg, &snap) {
            if s.origin != lv {
                bail!(
                    "{vg}/{snap} exists on {} but is not a snapshot of {vg}/{lv}",
                    ctx.host.name
                );
            }
            if s.merging() {
                bail!("snapshot {vg}/{snap} is being merged into {vg}/{lv}; wait for the merge to finish");
            }
            let made_by = run_of_tags(&s.lv_tags);
            if !a.replace_existing {
                if s.invalid() {
                    bail!("snapshot {vg}/{snap} exists but is invalid (its COW space filled up): the rollback point is gone; remove it (state: absent) before taking a new one");
                }
                if made_by == Some(recorded_id(ctx.run_id)) {
                    continue; // this run's own (a resumed run)
                }
                return Err(made_by_another_run(
                    a,
                    &ctx.host.name,
                    &format!("{vg}/{snap}"),
                    made_by.as_deref(),
                ));
            }
            *freed_by_vg.entry(vg.to_string()).or_default() += s.size();
            replace.push(json!({ "snapshot": format!("{vg}/{snap}"), "made_by": made_by }));
        }
        let extent = st
            .vgs
            .iter()
            .find(|g| g.vg_name == vg)
            .and_then(|g| g.vg_extent_size.parse().ok())
            .unwrap_or(4 << 20);
        let need = cow_need(size, origin.size(), extent);
        *need_by_vg.entry(vg.to_string()).or_default() += need;
        create.push(json!({ "volume": v.name, "vg": vg, "lv": lv, "snapshot": snap, "bytes": need, "size_args": size_args(size, need) }));
    }
    // The whole set must fit before anything is created.
    for (vg, need) in &need_by_vg {
        let free: u64 = st
            .vgs
            .iter()
            .find(|g| &g.vg_name == vg)
            .and_then(|g| g.vg_free.parse::<u64>().ok())
            .with_context(|| format!("volume group {vg} not found on {}", ctx.host.name))?
            + freed_by_vg.get(vg).copied().unwrap_or(0);
        if *need > free {
            bail!(
                "not enough free space in volume group {vg} on {} for snapshot set `{}`: it needs {} and {vg} has {} free; nothing was created (use a smaller size:, or add space to {vg})",
                ctx.host.name,
                a.name,
                human(*need),
                human(free)
            );
        }
    }
    let saw = json!({ "create": create, "replace": replace });
    if create.is_empty() {
        return Ok(Probe::no_change(saw));
    }
    let summary = format!(
        "{}create snapshot(s) {}",
        replaced_first(&replace),
        create
            .iter()
            .map(|c| format!(
                "{}/{} ({})",
                c["vg"].as_str().unwrap_or(""),
                c["snapshot"].as_str().unwrap_or(""),
                human(c["bytes"].as_u64().unwrap_or(0))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ) + &way_back_by_reboot(a, ctx);
    Ok(replacing(Probe::change(summary, None, saw)))
}

/// The way back of a set with the root filesystem in it: its merge is deferred (the root
/// cannot be closed), so it needs a reboot; the plan says so.
fn way_back_by_reboot(a: &Args, ctx: &ModCtx<'_>) -> String {
    let root = a.volumes.iter().any(|v| v.mount.as_deref() == Some("/"));
    match (root, a.reboot) {
        (false, _) => String::new(),
        (true, true) => format!(
            "; way back: merge, deferred while / is open: reboot {} and wait for the merge",
            ctx.host.name
        ),
        (true, false) => {
            "; way back: a merge that needs a reboot (reboot: false: the unwind stops there)".into()
        }
    }
}

pub(super) async fn probe_lvm_merged(a: &Args, ctx: &ModCtx<'_>) -> Result<Probe> {
    let st = lvm_state(ctx, &a.volumes).await?;
    let mut todo = Vec::new();
    for v in &a.volumes {
        let vg = v.vg.as_deref().unwrap_or("");
        let snap = snap_lv(&a.name, v);
        match st.lv(vg, &snap) {
            None => {}
            Some(s) if s.invalid() => bail!(
                "snapshot {vg}/{snap} is invalid (its COW space filled up): the rollback point is gone; it cannot be merged"
            ),
            Some(s) => todo.push(format!(
                "{vg}/{snap} → {vg}/{}{}",
                v.lv.as_deref().unwrap_or(""),
                if s.merging() { " (merge already scheduled)" } else { "" }
            )),
        }
    }
    let saw = json!({ "merge": todo });
    Ok(if todo.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(
            format!(
                "roll back (merge) {}{}",
                todo.join(", "),
                if a.services.is_empty() {
                    String::new()
                } else {
                    format!("; stops {} during the merge", a.services.join(", "))
                }
            ),
            None,
            saw,
        )
    })
}

pub(super) async fn probe_lvm_absent(a: &Args, ctx: &ModCtx<'_>) -> Result<Probe> {
    let st = lvm_state(ctx, &a.volumes).await?;
    let mut remove = Vec::new();
    for v in &a.volumes {
        let vg = v.vg.as_deref().unwrap_or("");
        let snap = snap_lv(&a.name, v);
        if let Some(s) = st.lv(vg, &snap) {
            if s.merging() {
                bail!("snapshot {vg}/{snap} is merging into {vg}/{}: a merging snapshot cannot be removed (the merge completes at the origin's next activation: state: merged does that)", v.lv.as_deref().unwrap_or(""));
            }
            remove.push(format!("{vg}/{snap}"));
        }
    }
    let saw = json!({ "remove": remove });
    Ok(if remove.is_empty() {
        Probe::no_change(saw)
    } else {
        Probe::change(
            format!(
                "remove snapshot(s) {} (commit: no way back after this)",
                remove.join(", ")
            ),
            None,
            saw,
        )
    })
}

pub(super) async fn merge_lvm(a: &Args, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let st = lvm_state(ctx, &a.volumes).await?;
    let mut vols = Vec::new();
    for v in &a.volumes {
        let vg = v.vg.clone().unwrap_or_default();
        let snap = snap_lv(&a.name, v);
        match st.lv(&vg, &snap) {
            None => continue,
            Some(s) if s.invalid() => bail!(
                "snapshot {vg}/{snap} is invalid: the rollback point is gone; it cannot be merged"
            ),
            Some(_) => vols.push(v.clone()),
        }
    }
    if vols.is_empty() {
        return Ok(Outcome::default());
    }
    let started = stop_services(ctx, &a.services).await?;
    let mut report = Vec::new();
    let mut deferred_any = false;
    let mut reboot_needed = Vec::new();
    for v in &vols {
        let vg = v.vg.clone().unwrap_or_default();
        let lv = v.lv.clone().unwrap_or_default();
        let snap = snap_lv(&a.name, v);
        let (full_snap, full_lv) = (format!("{vg}/{snap}"), format!("{vg}/{lv}"));
        if let Some(keep) = &a.keep_current_as {
            keep_lvm(ctx, v, keep, &started).await?;
        }
        // 1. Record the merge. With the origin closed it runs now (-i 1: lvconvert waits for it);
        //    with the origin open it is deferred to the origin's next activation.
        let already = st.lv(&vg, &snap).is_some_and(Lv::merging);
        let delayed = already || record_merge(ctx, &full_snap).await?;
        let now = lvm_state(ctx, std::slice::from_ref(v)).await?;
        let origin_merging = now.lv(&vg, &lv).is_some_and(|o| o.attr(0) == 'O');
        let snap_left = now.lv(&vg, &snap).is_some();
        let deferred = snap_left && (delayed || origin_merging);
        deferred_any |= deferred;
        let mounted = v
            .mount
            .as_ref()
            .is_some_and(|m| st.mounted.get(m).copied().unwrap_or(false));
        if deferred {
            // 2. Close the origin, then reactivate it: activation starts the deferred merge.
            if let (Some(m), true) = (&v.mount, mounted) {
                let out = ctx.run(&format!("umount -- {}", quote(m)), None).await?;
                if !out.ok() {
                    reboot_needed.push(format!("{full_lv} ({m}: {})", out.stderr_text().trim()));
                    continue;
                }
            }
            let out = ctx
                .run(
                    &format!(
                        "lvchange -an -- {lv} && lvchange -ay -- {lv}",
                        lv = quote(&full_lv)
                    ),
                    None,
                )
                .await?;
            if !out.ok() {
                reboot_needed.push(format!(
                    "{full_lv} (lvchange -an/-ay: {})",
                    out.stderr_text().trim()
                ));
                continue;
            }
        }
        // 3. Wait until the snapshot is gone and the origin is a plain LV again.
        wait_merged(ctx, v, &snap).await?;
        // 4. Mount again.
        if let (Some(m), true) = (&v.mount, mounted) {
            mount_again(ctx, m, &vg, &lv).await?;
        }
        report.push(json!({ "volume": v.name, "snapshot": full_snap, "deferred": deferred }));
    }
    let mut result = Map::new();
    result.insert("merged".into(), json!(report));
    result.insert("deferred".into(), json!(deferred_any));
    if !reboot_needed.is_empty() {
        let what = reboot_needed.join("; ");
        return left_for_reboot(a, ctx, result, &what, &started).await;
    }
    start_services(ctx, &started).await?;
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed: None,
    })
}

/// Record an LVM merge (`lvconvert --merge`, step 1 of `merge_lvm`); true when LVM delays it
/// to the origin's next activation (the origin is open).
async fn record_merge(ctx: &ModCtx<'_>, full_snap: &str) -> Result<bool> {
    let out = ctx
        .run(
            &format!("lvconvert --merge -i 1 -- {}", quote(full_snap)),
            None,
        )
        .await?;
    let text = format!("{}{}", out.stdout_text(), out.stderr_text());
    if !out.ok() {
        bail!(
            "lvconvert --merge {full_snap} failed on {}: {}",
            ctx.host.name,
            text.trim()
        );
    }
    Ok(text.contains("Delaying merge"))
}

/// Mount a merged volume again where it was (step 4 of `merge_lvm`).
async fn mount_again(ctx: &ModCtx<'_>, m: &str, vg: &str, lv: &str) -> Result<()> {
    let out = ctx
        .run(
            &format!(
                "mountpoint -q -- {m} || mount -- {m} || mount -- /dev/{vg}/{lv} {m}",
                m = quote(m),
                vg = quote(vg),
                lv = quote(lv)
            ),
            None,
        )
        .await?;
    if !out.ok() {
        bail!(
            "{vg}/{lv} was rolled back but mounting {m} failed: {}",
            out.stderr_text().trim()
        );
    }
    Ok(())
}

/// Merges recorded that could not run now (`what`: the origins that could not be closed): they
/// run at the origins' next activation. With `reboot: true` the host reboots for it; else the
/// step fails saying so, the services left stopped (writes now would be thrown away by the merge).
async fn left_for_reboot(
    a: &Args,
    ctx: &ModCtx<'_>,
    mut result: Map<String, J>,
    what: &str,
    started: &[String],
) -> Result<Outcome> {
    result.insert("reboot_needed".into(), json!(true));
    if a.reboot {
        // The merge starts when the origin is activated at boot; wait for the host, then for
        // the merge to finish, so that what follows (and a check) sees the old state.
        let r = reboot_and_wait(ctx, REBOOT_LIMIT).await?;
        for v in &a.volumes {
            finish_merge_after_boot(ctx, v, &snap_lv(&a.name, v)).await?;
        }
        result.insert("rebooted".into(), json!(true));
        result.insert("boot_id_before".into(), json!(r.before));
        result.insert("boot_id".into(), json!(r.after));
        result.insert("reboot_s".into(), json!(r.took.as_secs()));
        result.insert(
            "msg".into(),
            json!(format!("the origin could not be closed ({what}): {} was rebooted ({}s) and the merge ran when the LV was activated at boot", ctx.host.name, r.took.as_secs())),
        );
        return Ok(Outcome {
            changed: true,
            result,
            undo: None,
            failed: None,
        });
    }
    // The merge is recorded and will run at the next activation; the services stay stopped
    // (writes now would be thrown away by that merge).
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed: Some(format!(
            "the merge is recorded but could not run now: {what}. It completes at the origin's next activation: reboot {} (or allow it with reboot: true). {} left stopped",
            ctx.host.name,
            if started.is_empty() { "nothing".to_string() } else { started.join(", ") }
        )),
    })
}

/// How long a reboot for a deferred merge may take until ssh answers again.
const REBOOT_LIMIT: Duration = Duration::from_secs(600);

/// After the reboot: the merge of `snap` started at the origin's activation in the initramfs
/// (which polls nothing); have lvmpolld follow it to its end, then wait until it is gone.
async fn finish_merge_after_boot(ctx: &ModCtx<'_>, v: &SnapVolume, snap: &str) -> Result<()> {
    let (vg, lv) = (v.vg.as_deref().unwrap_or(""), v.lv.as_deref().unwrap_or(""));
    let st = lvm_state(ctx, std::slice::from_ref(v)).await?;
    if st.lv(vg, snap).is_some() {
        let _ = ctx
            .run(
                &format!("lvchange --poll y -- {} >&2", quote(&format!("{vg}/{lv}"))),
                None,
            )
            .await?;
    }
    wait_merged(ctx, v, snap).await
}

/// Keep an LVM volume's current state before its merge: a snapshot of the origin as large as
/// the origin (so it cannot fill up while the merge rewrites the origin). The services are
/// already stopped; on failure they are started again and nothing is merged.
async fn keep_lvm(ctx: &ModCtx<'_>, v: &SnapVolume, keep: &str, started: &[String]) -> Result<()> {
    let (vg, lv) = (v.vg.as_deref().unwrap_or(""), v.lv.as_deref().unwrap_or(""));
    let out = ctx
        .run(
            &format!(
                "lvcreate -q -s -l 100%ORIGIN -n {} -- {} >&2",
                quote(&snap_lv(keep, v)),
                quote(&format!("{vg}/{lv}"))
            ),
            None,
        )
        .await?;
    if !out.ok() {
        let _ = start_services(ctx, started).await;
        bail!(
            "keeping the current {vg}/{lv} as {vg}/{} failed, nothing was merged: {}",
            snap_lv(keep, v),
            out.stderr_text().trim()
        );
    }
    Ok(())
}

/// Poll `lvs -a` until the snapshot has gone and the origin's attr is no longer `O`.
async fn wait_merged(ctx: &ModCtx<'_>, v: &SnapVolume, snap: &str) -> Result<()> {
    let vg = v.vg.as_deref().unwrap_or("");
    let lv = v.lv.as_deref().unwrap_or("");
    let started = Instant::now();
    let limit = ctx.timeout.unwrap_or(Duration::from_secs(3600));
    loop {
        let st = lvm_state(ctx, std::slice::from_ref(v)).await?;
        let s = st.lv(vg, snap);
        if let Some(s) = s {
            if s.invalid() || matches!(s.attr(4), 'm' | 'M') {
                bail!("merging {vg}/{snap} into {vg}/{lv} failed (attr {}): the snapshot went invalid during the merge", s.lv_attr);
            }
        }
        let origin_done = st.lv(vg, lv).is_some_and(|o| o.attr(0) != 'O');
        if s.is_none() && origin_done {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "merge of {vg}/{snap} into {vg}/{lv} not finished after {}s (snapshot {} at {}%)",
                limit.as_secs(),
                s.map_or("gone", |_| "still there"),
                s.map_or(String::new(), |s| s.snap_percent.clone())
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// How full a set's snapshots are, read by `cutover commit` before it deletes them: the admin
// sees how close each rollback point came to filling up (and turning invalid).

/// How full one LVM snapshot of a set is (journaled with the commit's result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFill {
    /// `/dev/VG/LV` of the snapshot.
    pub lv: String,
    /// `lvs` Data% (`snap_percent`) of its COW space; `None` when it is not there or unreadable.
    pub percent: Option<f64>,
    /// The COW space filled up: the snapshot is invalid, its rollback point was lost already.
    pub invalid: bool,
    /// The snapshot exists.
    pub found: bool,
}

impl SnapshotFill {
    /// `/dev/vg0/pre-data 12.4% full`, or what stands in for the percentage.
    pub fn describe(&self) -> String {
        match (self.found, self.invalid, self.percent) {
            (false, _, _) => format!("{} not found (nothing to delete)", self.lv),
            (true, true, _) => format!(
                "{} INVALID: its COW space filled up, the rollback point was lost already",
                self.lv
            ),
            (true, false, Some(p)) => format!("{} {p:.1}% full", self.lv),
            (true, false, None) => format!("{} fill unknown (lvs gave no Data%)", self.lv),
        }
    }
}

/// The fill of each snapshot of `spec`'s set, from the output of [`lvs_cmd`] (pure, so that
/// captured `lvs` output can be tested).
pub fn fill_of_report(text: &str, spec: &super::MergeSpec) -> Result<Vec<SnapshotFill>> {
    let lvs: Vec<Lv> = parse_report(text)?
        .report
        .into_iter()
        .flat_map(|s| s.lv)
        .collect();
    Ok(spec
        .volumes
        .iter()
        .map(|v| {
            let vg = v.vg.as_deref().unwrap_or("");
            let snap = snap_lv(&spec.name, v);
            let lv = lvs.iter().find(|l| l.vg_name == vg && l.lv_name == snap);
            SnapshotFill {
                lv: format!("/dev/{vg}/{snap}"),
                percent: lv.and_then(Lv::percent),
                invalid: lv.is_some_and(Lv::invalid),
                found: lv.is_some(),
            }
        })
        .collect())
}

/// The fill of each snapshot of an LVM set, read on its host.
pub async fn snapshot_fill(spec: &super::MergeSpec, ctx: &ModCtx<'_>) -> Result<Vec<SnapshotFill>> {
    let out = ctx.run(&lvs_cmd(&vgs_of(&spec.volumes)), None).await?;
    if !out.ok() {
        bail!(
            "cannot read LVM state on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    fill_of_report(&out.stdout_text(), spec)
}
