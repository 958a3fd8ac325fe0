//! A snapshot set's arguments (checked and converted), the names of its snapshots, and the run
//! that made each one (recorded so that a run finds its own set again and refuses another's).

use anyhow::{anyhow, bail, Context as _, Result};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::modules::args::{self, TextList};
use crate::modules::Probe;

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
pub(super) enum Backend {
    Lvm,
    Btrfs,
}

/// The arguments, checked and converted.
pub(super) struct Args {
    pub(super) backend: Backend,
    pub(super) name: String,
    pub(super) volumes: Vec<SnapVolume>,
    pub(super) pool: String,
    pub(super) services: Vec<String>,
    pub(super) reboot: bool,
    pub(super) keep_current_as: Option<String>,
    /// `replace_existing: true`: a set of this name made by another run is removed first.
    pub(super) replace_existing: bool,
}

/// The arguments of a `snapshot` step (its `SPEC.args`), as given; [`Args::of`] checks and
/// converts them.
#[derive(Deserialize)]
pub(crate) struct SnapshotArgs {
    #[serde(deserialize_with = "args::text")]
    backend: Option<String>,
    /// A list of `{name, vg, lv, mount}`, or its JSON text (a rendered `json_encode()`).
    volumes: J,
    #[serde(deserialize_with = "args::text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub(super) state: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub(super) size: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pool: Option<String>,
    #[serde(default, deserialize_with = "args::text_list")]
    pub(super) services: TextList,
    #[serde(default, deserialize_with = "args::flag")]
    reboot: Option<bool>,
    #[serde(default, deserialize_with = "strict_flag")]
    replace_existing: Option<bool>,
}

impl SnapshotArgs {
    /// `state`, `present` when not given.
    pub(super) fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("present")
    }

    /// The volumes as given, when they are a list (the mounts a merge may change).
    pub(super) fn listed_volumes(&self) -> &[J] {
        self.volumes.as_array().map_or(&[], Vec::as_slice)
    }
}

/// The arguments of a `snapshot_usage` step (its `SPEC.args`), as given; [`Args::of_set`]
/// checks and converts the set's.
#[derive(Deserialize)]
pub(crate) struct UsageArgs {
    #[serde(deserialize_with = "args::text")]
    backend: Option<String>,
    /// As `snapshot`'s.
    volumes: J,
    #[serde(deserialize_with = "args::text")]
    name: Option<String>,
    /// Percent: a number, or its text (a decimal one too).
    #[serde(default = "max_usage_default", deserialize_with = "percent")]
    pub(super) max_usage_percent: f64,
    #[serde(default, deserialize_with = "args::flag")]
    pub(super) autoextend: Option<bool>,
    #[serde(default, deserialize_with = "args::text")]
    pub(super) extend_by: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pool: Option<String>,
}

impl UsageArgs {
    /// The set's arguments, checked and converted.
    pub(super) fn set(&self) -> Result<Args> {
        Args::of_set(
            self.backend.as_deref(),
            self.name.as_deref(),
            &self.volumes,
            self.pool.as_deref(),
        )
    }

    /// How much an extension adds (`extend_by`, 20%ORIGIN when not given).
    pub(super) fn extend_by(&self) -> &str {
        self.extend_by.as_deref().unwrap_or("20%ORIGIN")
    }
}

fn max_usage_default() -> f64 {
    80.0
}

/// A boolean that must be one if given (`true`/`false` or their text); null: not given.
fn strict_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::Bool(b) => Ok(Some(b)),
        J::String(s) if s == "true" => Ok(Some(true)),
        J::String(s) if s == "false" => Ok(Some(false)),
        v => Err(de::Error::custom(format!(
            "`{{key}}` must be true or false, found {v}"
        ))),
    }
}

/// A number or its text (with the messages the map reader gave).
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match J::deserialize(d)? {
        J::Number(n) => n
            .as_f64()
            .ok_or_else(|| de::Error::custom("{key}: not a number")),
        J::String(s) => s
            .parse()
            .map_err(|e| de::Error::custom(format!("{{key}} `{s}` is not a number: {e}"))),
        _ => Err(de::Error::custom("{key} must be a number")),
    }
}

impl Args {
    /// A `snapshot` step's arguments, checked and converted.
    pub(super) fn of(a: &SnapshotArgs) -> Result<Args> {
        let set = Args::of_set(
            a.backend.as_deref(),
            a.name.as_deref(),
            &a.volumes,
            a.pool.as_deref(),
        )?;
        Ok(Args {
            services: a.services.items(),
            reboot: a.reboot.unwrap_or(false),
            replace_existing: a.replace_existing.unwrap_or(false),
            ..set
        })
    }

    /// A set's arguments, checked and converted (no services to stop, no reboot).
    pub(super) fn of_set(
        backend: Option<&str>,
        name: Option<&str>,
        volumes: &J,
        pool: Option<&str>,
    ) -> Result<Args> {
        let missing = |k: &str| anyhow!("argument `{k}` is missing or not a string");
        let backend = match backend.ok_or_else(|| missing("backend"))? {
            "lvm" => Backend::Lvm,
            "btrfs" => Backend::Btrfs,
            other => bail!("snapshot backend must be lvm or btrfs, found `{other}`"),
        };
        let name = name.ok_or_else(|| missing("name"))?.to_string();
        check_name("snapshot name", &name)?;
        let volumes: Vec<SnapVolume> = match volumes {
            J::Array(_) => serde_json::from_value(volumes.clone())
                .context("`volumes` must be a list of {name, vg, lv, mount}")?,
            // A rendered "{{ volumes | json_encode() }}".
            J::String(s) => serde_json::from_str(s).with_context(|| {
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
        Ok(Args {
            backend,
            name,
            volumes,
            pool: pool.unwrap_or("/srv/vol").trim_end_matches('/').to_string(),
            services: Vec::new(),
            reboot: false,
            keep_current_as: None,
            replace_existing: false,
        })
    }

    pub(super) fn merge_spec(&self, volumes: Vec<SnapVolume>) -> MergeSpec {
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

    pub(super) fn args(&self) -> Args {
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
pub(super) fn check_name(what: &str, s: &str) -> Result<()> {
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

pub(super) fn snap_lv(set: &str, vol: &SnapVolume) -> String {
    format!("{set}-{}", vol.name)
}

pub(super) fn btrfs_snap(pool: &str, set: &str, vol: &SnapVolume) -> String {
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
pub(super) fn recorded_id(run_id: &str) -> String {
    run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_+.-".contains(*c))
        .collect()
}

pub(super) fn run_tag(run_id: &str) -> String {
    format!("{RUN_TAG}{}", recorded_id(run_id))
}

/// The run an LV's tags name, if any.
pub(super) fn run_of_tags(tags: &str) -> Option<String> {
    tags.split(',')
        .find_map(|t| t.trim().strip_prefix(RUN_TAG))
        .map(str::to_string)
}

pub(super) fn btrfs_run_file(pool: &str, set: &str, vol: &SnapVolume) -> String {
    format!("{pool}/.snapshots/.cutover-runs/{set}-{}", vol.name)
}

/// A create that replaces snapshots destroys their rollback point: the plan marks it so.
pub(super) fn replacing(p: Probe) -> Probe {
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
pub(super) fn replaced_first(replace: &[J]) -> String {
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
pub(super) fn made_by_another_run(
    a: &Args,
    host: &str,
    snap: &str,
    made_by: Option<&str>,
) -> anyhow::Error {
    let by = made_by.map_or_else(
        || "no recorded run (made by hand or by an older cutover)".to_string(),
        |r| format!("run {r}"),
    );
    anyhow::anyhow!(
        "snapshot set `{set}` exists already on {host}: {snap} was made by {by}. Taking it as this run's would keep that older rollback point without a word: commit or roll back that run (cutover commit|rollback RUN), remove the set (state: absent), or pass replace_existing: true to remove it before the new one is taken",
        set = a.name
    )
}
