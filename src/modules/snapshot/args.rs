//! A snapshot set's arguments (checked and converted), the names of its snapshots, and the run
//! that made each one (recorded so that a run finds its own set again and refuses another's).

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};

use crate::modules::{arg_bool, arg_str, required, Probe};

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

impl Args {
    pub(super) fn parse(args: &Map<String, J>) -> Result<Args> {
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
