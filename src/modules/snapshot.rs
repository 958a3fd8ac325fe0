//! `snapshot` (create / merge = roll back / remove = commit a set of snapshots) and
//! `snapshot_usage` (watch a set's COW usage before it turns invalid), for LVM (COW snapshots,
//! `lvconvert --merge`) and btrfs (read-only subvolume snapshots, replaced on rollback).
//!
//! A *set* is one snapshot per volume, all named `NAME-VOLUME`: LVM `VG/NAME-VOLUME`, btrfs
//! `POOL/.snapshots/NAME-VOLUME`. Creating a set checks the whole set first (every origin exists,
//! the VGs have room for every snapshot), so a set is never half-created; if an `lvcreate` still
//! fails, the snapshots made by the same step are removed again.
//!
//! State is read from `lvs`/`vgs --reportformat json` (LC_ALL=C, bytes) and from btrfs's own
//! tools by exit status, never from human text — except lvconvert's "Delaying merge" message,
//! which is cross-checked with the origin's `lv_attr` (`O`: origin with a merging snapshot).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use super::contract::unknown_tree;
use super::contract::Module;
use super::spec::{arg, choice, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{arg_bool, arg_str, required, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::plan::overlay::{Effect, UnitState};
use crate::shell::quote;

/// One volume of a set: LVM needs `vg` and `lv`; `mount` is where its filesystem is mounted
/// (unmounted for a merge, mounted again after).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapVolume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// Everything a merge (roll back to the snapshot) needs; recorded as the undo of a create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeSpec {
    /// `lvm` or `btrfs`.
    pub backend: String,
    /// The set's name.
    pub name: String,
    pub volumes: Vec<SnapVolume>,
    /// btrfs: the directory holding the subvolumes.
    pub pool: String,
    /// Units stopped before the merge and started again after (if they were running).
    pub services: Vec<String>,
    /// May the host be rebooted when an origin cannot be unmounted (root LV)?
    pub reboot: bool,
    /// Keep the volumes' current state, before the merge, as this snapshot set (a rollback
    /// that discards writes made since the window: they stay recoverable by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_current_as: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Lvm,
    Btrfs,
}

/// The arguments, checked and converted.
struct Args {
    backend: Backend,
    name: String,
    volumes: Vec<SnapVolume>,
    pool: String,
    services: Vec<String>,
    reboot: bool,
    keep_current_as: Option<String>,
    /// `replace_existing: true`: a set of this name made by another run is removed first.
    replace_existing: bool,
}

impl Args {
    fn parse(args: &Map<String, J>) -> Result<Args> {
        let backend = match required(args, "backend")? {
            "lvm" => Backend::Lvm,
            "btrfs" => Backend::Btrfs,
            other => bail!("snapshot backend must be lvm or btrfs, found `{other}`"),
        };
        let name = required(args, "name")?.to_string();
        check_name("snapshot name", &name)?;
        let volumes: Vec<SnapVolume> = match args.get("volumes") {
            Some(J::Array(_)) => serde_json::from_value(args["volumes"].clone())
                .context("`volumes` must be a list of {name, vg, lv, mount}")?,
            // A rendered "{{ volumes | json_encode() }}".
            Some(J::String(s)) => serde_json::from_str(s).with_context(|| {
                format!("`volumes` must be a list of {{name, vg, lv, mount}} or its JSON, found `{s}`; from a variable, write volumes: \"{{{{ volumes | json_encode() }}}}\" (\"{{{{ volumes }}}}\" renders a list as text)")
            })?,
            _ => bail!("argument `volumes` is missing or not a list"),
        };
        if volumes.is_empty() {
            bail!("`volumes` is empty: nothing to snapshot");
        }
        for v in &volumes {
            check_name("volume name", &v.name)?;
            if backend == Backend::Lvm {
                let (Some(vg), Some(lv)) = (&v.vg, &v.lv) else {
                    bail!("volume `{}`: the lvm backend needs `vg` and `lv`", v.name);
                };
                check_name("VG name", vg)?;
                check_name("LV name", lv)?;
            }
        }
        let services = match args.get("services") {
            Some(J::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            Some(J::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Args {
            backend,
            name,
            volumes,
            pool: arg_str(args, "pool")
                .unwrap_or("/srv/vol")
                .trim_end_matches('/')
                .to_string(),
            services,
            reboot: arg_bool(args, "reboot").unwrap_or(false),
            keep_current_as: None,
            replace_existing: match args.get("replace_existing") {
                None | Some(J::Null) => false,
                Some(v) => arg_bool(args, "replace_existing").with_context(|| {
                    format!("`replace_existing` must be true or false, found {v}")
                })?,
            },
        })
    }

    fn merge_spec(&self, volumes: Vec<SnapVolume>) -> MergeSpec {
        MergeSpec {
            backend: match self.backend {
                Backend::Lvm => "lvm".into(),
                Backend::Btrfs => "btrfs".into(),
            },
            name: self.name.clone(),
            volumes,
            pool: self.pool.clone(),
            services: self.services.clone(),
            reboot: self.reboot,
            keep_current_as: None,
        }
    }
}

impl MergeSpec {
    /// Where [`MergeSpec::keep_current_as`] keeps each volume's current state.
    pub fn kept_locations(&self) -> Vec<String> {
        let Some(keep) = &self.keep_current_as else {
            return Vec::new();
        };
        self.volumes
            .iter()
            .map(|v| match self.backend.as_str() {
                "lvm" => format!("{}/{}", v.vg.as_deref().unwrap_or(""), snap_lv(keep, v)),
                _ => btrfs_snap(&self.pool, keep, v),
            })
            .collect()
    }

    fn args(&self) -> Args {
        Args {
            backend: if self.backend == "lvm" {
                Backend::Lvm
            } else {
                Backend::Btrfs
            },
            name: self.name.clone(),
            volumes: self.volumes.clone(),
            pool: self.pool.clone(),
            services: self.services.clone(),
            reboot: self.reboot,
            keep_current_as: self.keep_current_as.clone(),
            replace_existing: false,
        }
    }
}

/// LVM and btrfs names: letters, digits and `+_.-`, not starting with `-`.
fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.starts_with('-')
        || s.len() > 100
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
    {
        bail!("{what} `{s}` must be 1-100 letters, digits or + _ . - (not starting with -)");
    }
    Ok(())
}

fn snap_lv(set: &str, vol: &SnapVolume) -> String {
    format!("{set}-{}", vol.name)
}

fn btrfs_snap(pool: &str, set: &str, vol: &SnapVolume) -> String {
    format!("{pool}/.snapshots/{set}-{}", vol.name)
}

// Every snapshot records the run that made it, so that a run finds its own set again (a
// resumed run: nothing to do) and refuses one another run made (keeping it would keep that
// run's older rollback point as this run's, without a word). LVM: a tag on the snapshot LV;
// btrfs (the snapshot is read-only): a file beside the snapshots, removed with it.

/// The LVM tag naming the run: `cutover-run:RUN`.
const RUN_TAG: &str = "cutover-run:";

/// A run id as recorded: letters, digits and `_+.-` (what LVM tags allow; a run id has
/// nothing else, but a record must not break because of one).
fn recorded_id(run_id: &str) -> String {
    run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_+.-".contains(*c))
        .collect()
}

fn run_tag(run_id: &str) -> String {
    format!("{RUN_TAG}{}", recorded_id(run_id))
}

/// The run an LV's tags name, if any.
fn run_of_tags(tags: &str) -> Option<String> {
    tags.split(',')
        .find_map(|t| t.trim().strip_prefix(RUN_TAG))
        .map(str::to_string)
}

fn btrfs_run_file(pool: &str, set: &str, vol: &SnapVolume) -> String {
    format!("{pool}/.snapshots/.cutover-runs/{set}-{}", vol.name)
}

/// A create that replaces snapshots destroys their rollback point: the plan marks it so.
fn replacing(p: Probe) -> Probe {
    let replaced: Vec<String> = p.state["replace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["snapshot"].as_str().map(str::to_string))
        .collect();
    if replaced.is_empty() {
        p
    } else {
        let what = format!("the rollback point of {}", replaced.join(", "));
        p.losing(what)
    }
}

/// The start of a create's summary when it replaces snapshots: the plan says the old
/// rollback point goes, and whose it was.
fn replaced_first(replace: &[J]) -> String {
    if replace.is_empty() {
        return String::new();
    }
    let list: Vec<String> = replace
        .iter()
        .map(|r| {
            format!(
                "{} (made by {})",
                r["snapshot"].as_str().unwrap_or(""),
                r["made_by"]
                    .as_str()
                    .map_or("no recorded run".to_string(), |id| format!("run {id}"))
            )
        })
        .collect();
    format!(
        "remove the existing {} first (replace_existing: that rollback point is gone), then ",
        list.join(", ")
    )
}

/// A snapshot of the set that another run made (or no run: by hand, or before runs were
/// recorded): refused, unless `replace_existing` removes it first.
fn made_by_another_run(a: &Args, host: &str, snap: &str, made_by: Option<&str>) -> anyhow::Error {
    let by = made_by.map_or_else(
        || "no recorded run (made by hand or by an older cutover)".to_string(),
        |r| format!("run {r}"),
    );
    anyhow::anyhow!(
        "snapshot set `{set}` exists already on {host}: {snap} was made by {by}. Taking it as this run's would keep that older rollback point without a word: commit or roll back that run (cutover commit|rollback RUN), remove the set (state: absent), or pass replace_existing: true to remove it before the new one is taken",
        set = a.name
    )
}

// ---------------------------------------------------------------------------------------------
// LVM reports

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Lv {
    #[serde(default)]
    lv_name: String,
    #[serde(default)]
    vg_name: String,
    #[serde(default)]
    lv_attr: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    lv_size: String,
    #[serde(default)]
    snap_percent: String,
    #[serde(default)]
    lv_merging: String,
    #[serde(default)]
    lv_snapshot_invalid: String,
    #[serde(default)]
    lv_tags: String,
}

impl Lv {
    fn attr(&self, i: usize) -> char {
        self.lv_attr.chars().nth(i).unwrap_or('-')
    }
    fn size(&self) -> u64 {
        self.lv_size.parse().unwrap_or(0)
    }
    fn invalid(&self) -> bool {
        self.attr(4) == 'I' || self.attr(4) == 'S' || self.lv_snapshot_invalid == "1"
    }
    fn merging(&self) -> bool {
        self.attr(0) == 'S' || self.lv_merging == "1"
    }
    fn percent(&self) -> Option<f64> {
        self.snap_percent.parse().ok()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Vg {
    #[serde(default)]
    vg_name: String,
    #[serde(default)]
    vg_free: String,
    #[serde(default)]
    vg_extent_size: String,
}

#[derive(Deserialize)]
struct Report {
    report: Vec<Section>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(default)]
    lv: Vec<Lv>,
    #[serde(default)]
    vg: Vec<Vg>,
}

const SEP: &str = "@@cutover-snapshot@@";

/// What one round trip tells about the VGs of a set.
struct LvmState {
    lvs: Vec<Lv>,
    vgs: Vec<Vg>,
    /// mount point → mounted?
    mounted: BTreeMap<String, bool>,
}

impl LvmState {
    fn lv(&self, vg: &str, name: &str) -> Option<&Lv> {
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

fn parse_report(text: &str) -> Result<Report> {
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

async fn lvm_state(ctx: &ModCtx<'_>, volumes: &[SnapVolume]) -> Result<LvmState> {
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
enum Size {
    /// `N%ORIGIN`
    PercentOrigin(f64),
    Bytes(u64),
}

fn parse_size(s: &str) -> Result<Size> {
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
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| {
        format!("snapshot size `{s}`: expected N%ORIGIN or a size like 2G, 512M, 8M")
    })?;
    let mult: u64 = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" if unit.eq_ignore_ascii_case("b") => 1,
        "" | "m" | "mi" => 1 << 20, // lvcreate -L without a unit means MiB
        "k" | "ki" => 1 << 10,
        "g" | "gi" => 1 << 30,
        "t" | "ti" => 1 << 40,
        "s" => 512,
        _ => bail!("snapshot size `{s}`: unknown unit `{unit}` (use K, M, G, T or N%ORIGIN)"),
    };
    let bytes = (n * mult as f64).ceil() as u64;
    if bytes == 0 {
        bail!("snapshot size `{s}` is zero");
    }
    Ok(Size::Bytes(bytes))
}

fn round_up(n: u64, to: u64) -> u64 {
    if to == 0 {
        n
    } else {
        n.div_ceil(to) * to
    }
}

/// The VG space a snapshot of `origin` bytes will take: the request rounded up to whole extents,
/// capped (as lvcreate does) at the origin plus its exception-table metadata.
fn cow_need(size: Size, origin: u64, extent: u64) -> u64 {
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

fn human(b: u64) -> String {
    let mib = b as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{b} bytes ({:.2} GiB)", mib / 1024.0)
    } else {
        format!("{b} bytes ({mib:.1} MiB)")
    }
}

// ---------------------------------------------------------------------------------------------
// btrfs state

struct BtrfsVol {
    origin: bool,
    snapshot: bool,
    snapshot_ro: bool,
    mounted: bool,
    /// The run that made the snapshot, as recorded beside it.
    made_by: Option<String>,
}

async fn btrfs_state(ctx: &ModCtx<'_>, a: &Args) -> Result<Vec<BtrfsVol>> {
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

// ---------------------------------------------------------------------------------------------
// snapshot: probe

pub async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let a = Args::parse(args)?;
    let state = arg_str(args, "state").unwrap_or("present");
    match (a.backend, state) {
        (Backend::Lvm, "present") => probe_lvm_present(&a, args, ctx).await,
        (Backend::Lvm, "merged") => probe_lvm_merged(&a, ctx).await,
        (Backend::Lvm, "absent") => probe_lvm_absent(&a, ctx).await,
        (Backend::Btrfs, _) => probe_btrfs(&a, state, ctx).await,
        (_, other) => bail!("snapshot state must be present, merged or absent, found `{other}`"),
    }
}

async fn probe_lvm_present(a: &Args, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let size = parse_size(arg_str(args, "size").unwrap_or("100%ORIGIN"))?;
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
    );
    Ok(replacing(Probe::change(summary, None, saw)))
}

async fn probe_lvm_merged(a: &Args, ctx: &ModCtx<'_>) -> Result<Probe> {
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

async fn probe_lvm_absent(a: &Args, ctx: &ModCtx<'_>) -> Result<Probe> {
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

async fn probe_btrfs(a: &Args, state: &str, ctx: &ModCtx<'_>) -> Result<Probe> {
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

// ---------------------------------------------------------------------------------------------
// snapshot: apply

pub async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let a = Args::parse(args)?;
    match arg_str(args, "state").unwrap_or("present") {
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
pub fn pending_undo(args: &Map<String, J>, probe: &Probe) -> Option<UndoAction> {
    if arg_str(args, "state").unwrap_or("present") != "present"
        || probe.decision == Decision::NoChange
    {
        return None;
    }
    let a = Args::parse(args).ok()?;
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
async fn stop_services(ctx: &ModCtx<'_>, services: &[String]) -> Result<Vec<String>> {
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

async fn start_services(ctx: &ModCtx<'_>, units: &[String]) -> Result<()> {
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

async fn merge_lvm(a: &Args, ctx: &ModCtx<'_>) -> Result<Outcome> {
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
        let mut delayed = already;
        if !already {
            let out = ctx
                .run(
                    &format!("lvconvert --merge -i 1 -- {}", quote(&full_snap)),
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
            delayed = text.contains("Delaying merge");
        }
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
            let out = ctx
                .run(
                    &format!(
                        "mountpoint -q -- {m} || mount -- {m} || mount -- /dev/{vg}/{lv} {m}",
                        m = quote(m),
                        vg = quote(&vg),
                        lv = quote(&lv)
                    ),
                    None,
                )
                .await?;
            if !out.ok() {
                bail!(
                    "{full_lv} was rolled back but mounting {m} failed: {}",
                    out.stderr_text().trim()
                );
            }
        }
        report.push(json!({ "volume": v.name, "snapshot": full_snap, "deferred": deferred }));
    }
    let mut result = Map::new();
    result.insert("merged".into(), json!(report));
    result.insert("deferred".into(), json!(deferred_any));
    if !reboot_needed.is_empty() {
        result.insert("reboot_needed".into(), json!(true));
        let what = reboot_needed.join("; ");
        if a.reboot {
            let out = ctx
                .run(
                    "systemd-run --on-active=3 --timer-property=AccuracySec=1 /bin/systemctl reboot >&2 || { nohup sh -c 'sleep 3; systemctl reboot' >/dev/null 2>&1 & }",
                    None,
                )
                .await?;
            if !out.ok() {
                bail!("scheduling a reboot failed: {}", out.stderr_text().trim());
            }
            result.insert("reboot_scheduled".into(), json!(true));
            result.insert(
                "msg".into(),
                json!(format!("merge recorded; the origin could not be closed ({what}): {} reboots in 3 s and the merge runs when the LV is activated at boot", ctx.host.name)),
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
        return Ok(Outcome {
            changed: true,
            result,
            undo: None,
            failed: Some(format!(
                "the merge is recorded but could not run now: {what}. It completes at the origin's next activation: reboot {} (or allow it with reboot: true). {} left stopped",
                ctx.host.name,
                if started.is_empty() { "nothing".to_string() } else { started.join(", ") }
            )),
        });
    }
    start_services(ctx, &started).await?;
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed: None,
    })
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

/// btrfs rollback: stop, unmount, move the current subvolume aside, make a writable snapshot of
/// the snapshot in its place, mount, start; only then delete the old subvolume (it is the
/// safety net while the swap runs: a failure before the end puts it back) and the snapshot
/// (like LVM, whose merge consumes the snapshot).
async fn merge_btrfs(a: &Args, ctx: &ModCtx<'_>) -> Result<Outcome> {
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

// ---------------------------------------------------------------------------------------------
// snapshot_usage

pub async fn probe_usage(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let a = Args::parse(args)?;
    let max = max_percent(args)?;
    let mut problems = Vec::new();
    let mut extend = Vec::new();
    let mut usage = Map::new();
    match a.backend {
        Backend::Lvm => {
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
                            if arg_bool(args, "autoextend") == Some(true) {
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
                arg_str(args, "extend_by").unwrap_or("20%ORIGIN")
            ),
            None,
            saw,
        )
    } else {
        Probe::no_change(saw)
    })
}

fn max_percent(args: &Map<String, J>) -> Result<f64> {
    match args.get("max_usage_percent") {
        None => Ok(80.0),
        Some(J::Number(n)) => n.as_f64().context("max_usage_percent"),
        Some(J::String(s)) => s
            .parse()
            .with_context(|| format!("max_usage_percent `{s}` is not a number")),
        Some(_) => bail!("max_usage_percent must be a number"),
    }
}

pub async fn apply_usage(
    args: &Map<String, J>,
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
    let by = arg_str(args, "extend_by").unwrap_or("20%ORIGIN");
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

/// What a merge may change: the merged volumes' trees and the services it stops and starts.
/// Creating or removing snapshots changes no path.
fn touches(args: &Map<String, J>) -> Vec<Effect> {
    let mut out = Vec::new();
    if arg_str(args, "state") != Some("merged") {
        return out;
    }
    if let Some(J::Array(vols)) = args.get("volumes") {
        for v in vols {
            if let Some(m) = v.get("mount").and_then(J::as_str) {
                out.push(unknown_tree(m));
            }
        }
    }
    if let Some(J::Array(services)) = args.get("services") {
        for s in services.iter().filter_map(J::as_str) {
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
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        let _ = ctx;
        pending_undo(args, probe)
    }

    fn touches(args: &Map<String, J>) -> Vec<Effect> {
        touches(args)
    }
}

/// The `snapshot_usage` module: how full a snapshot set is.
pub(crate) struct SnapshotUsage;

impl Module for SnapshotUsage {
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
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_usage(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_usage(args, probe, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20%ORIGIN").unwrap(), Size::PercentOrigin(20.0));
        assert_eq!(parse_size("2G").unwrap(), Size::Bytes(2 << 30));
        assert_eq!(parse_size("8M").unwrap(), Size::Bytes(8 << 20));
        assert_eq!(parse_size("512").unwrap(), Size::Bytes(512 << 20));
        assert_eq!(parse_size("1.5g").unwrap(), Size::Bytes(3 << 29));
        assert!(parse_size("0%ORIGIN").is_err());
        assert!(parse_size("3x").is_err());
        let mib = 1u64 << 20;
        // 20% of 256 MiB = 51.2 MiB → 13 extents of 4 MiB.
        assert_eq!(
            cow_need(Size::PercentOrigin(20.0), 256 * mib, 4 * mib),
            52 * mib
        );
        // Larger than the origin: capped like lvcreate does.
        assert_eq!(
            cow_need(Size::Bytes(2 << 30), 128 * mib, 4 * mib),
            136 * mib
        );
    }

    /// Issue 21, item 2: a set another run made is refused, naming that run; this run's own
    /// set (a resume) is recognised by the run recorded with it.
    #[test]
    fn snapshots_record_the_run_that_made_them() {
        assert_eq!(
            run_tag("20261207-061518-ab12"),
            "cutover-run:20261207-061518-ab12"
        );
        assert_eq!(run_tag("a b$(x)"), "cutover-run:abx");
        assert_eq!(
            run_of_tags("backup,cutover-run:20261207-061518-ab12"),
            Some("20261207-061518-ab12".into())
        );
        assert_eq!(run_of_tags(""), None);
        let lvs = r#"{"report":[{"lv":[{"lv_name":"pre-db","vg_name":"vg0","lv_tags":"cutover-run:R1"}]}]}"#;
        let lv = &parse_report(lvs).unwrap().report[0].lv[0];
        assert_eq!(run_of_tags(&lv.lv_tags), Some("R1".into()));

        let a = Args::parse(
            json!({ "backend": "btrfs", "name": "pre-rolling", "volumes": [{ "name": "home" }] })
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(!a.replace_existing);
        let e = made_by_another_run(
            &a,
            "app1",
            "/srv/vol/.snapshots/pre-rolling-home",
            Some("R1"),
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("snapshot set `pre-rolling` exists already on app1: /srv/vol/.snapshots/pre-rolling-home was made by run R1.")
                && msg.contains("replace_existing: true"),
            "{msg}"
        );
        let e = made_by_another_run(&a, "app1", "x", None);
        assert!(e.to_string().contains("made by no recorded run"), "{e}");
        assert_eq!(
            replaced_first(&[json!({ "snapshot": "vg0/pre-db", "made_by": "R1" })]),
            "remove the existing vg0/pre-db (made by run R1) first (replace_existing: that rollback point is gone), then "
        );
        assert_eq!(replaced_first(&[]), "");
        let bad = json!({ "backend": "btrfs", "name": "s", "volumes": [{ "name": "home" }], "replace_existing": "yes" });
        let e = Args::parse(bad.as_object().unwrap()).err().unwrap();
        assert!(
            format!("{e:#}").contains("`replace_existing` must be true or false"),
            "{e:#}"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("n", "pre-upgrade-20240101T0200").is_ok());
        assert!(check_name("n", "a b").is_err());
        assert!(check_name("n", "-x").is_err());
        assert!(check_name("n", "x;rm").is_err());
    }

    #[test]
    fn lvs_json() {
        let r = parse_report(r#"{"report":[{"lv":[{"lv_name":"[s]","vg_name":"vg0","lv_attr":"Swi-a-s---","origin":"data","lv_size":"8388608","snap_percent":"12.50","lv_merging":"1","lv_snapshot_invalid":"0"}]}]}"#).unwrap();
        let lv = &r.report[0].lv[0];
        assert_eq!(lv.lv_name, "s");
        assert!(lv.merging());
        assert!(!lv.invalid());
        assert_eq!(lv.percent(), Some(12.5));
    }
}
