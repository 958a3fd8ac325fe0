//! What an `lvm_layout` probe reads, in one round trip: the VG's LVs and free space (`lvs`,
//! `vgs --reportformat json`), every mount (`findmnt -J`), the file system on each listed LV
//! (`blkid -p`), `/etc/fstab`, and each mount point's path (missing parts, files in it, owner and
//! mode). Reading and parsing are apart: [`parse_state`] turns the output into [`HostState`].

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use serde::Deserialize;

use super::args::Layout;
use crate::modules::snapshot::{parse_report, Lv, Vg};
use crate::modules::ModCtx;
use crate::shell::quote;

pub(crate) const FSTAB: &str = "/etc/fstab";
const SEP: &str = "@@cutover-layout@@";

/// One mounted file system (`findmnt -J -l -o TARGET,SOURCE,FSTYPE`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct Mounted {
    #[serde(default)]
    pub(crate) target: String,
    #[serde(default)]
    pub(crate) source: String,
    #[serde(default)]
    pub(crate) fstype: String,
}

#[derive(Deserialize)]
struct FindMnt {
    #[serde(default)]
    filesystems: Vec<Mounted>,
}

/// A mount point's path as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MountPath {
    /// The parts of the path that do not exist, deepest first (what `mkdir -p` creates).
    pub(crate) missing: Vec<String>,
    /// A directory with files in it (mounting over it would hide them).
    pub(crate) has_files: bool,
    /// The path exists and is not a directory.
    pub(crate) not_dir: bool,
    /// `owner group mode` of the path, when it exists.
    pub(crate) attrs: Option<(String, String, String)>,
}

/// The host as the probe saw it.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostState {
    pub(crate) lvs: Vec<Lv>,
    pub(crate) vg: Option<Vg>,
    pub(crate) mounts: Vec<Mounted>,
    /// LV name → the file system type on it (empty: none).
    pub(crate) fs: BTreeMap<String, String>,
    pub(crate) fstab: String,
    /// Mount point → its path.
    pub(crate) paths: BTreeMap<String, MountPath>,
}

impl HostState {
    pub(crate) fn lv(&self, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.lv_name == name)
    }
}

/// The script that prints everything [`parse_state`] reads.
pub(crate) fn probe_script(l: &Layout) -> String {
    let vg = quote(&l.vg);
    let mut s = format!(
        "export LC_ALL=C\n\
         lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_attr,lv_size,lv_tags -- {vg} || exit 3\n\
         echo {SEP}\n\
         vgs --reportformat json --units b --nosuffix -o vg_name,vg_free,vg_extent_size -- {vg} || exit 3\n\
         echo {SEP}\n\
         findmnt -J -l -o TARGET,SOURCE,FSTYPE || exit 3\n\
         echo {SEP}\n"
    );
    for v in &l.volumes {
        s.push_str(&format!(
            "d={dev}; if [ -e \"$d\" ]; then printf '%s\\t%s\\n' {n} \"$(blkid -p -s TYPE -o value -- \"$d\" 2>/dev/null)\"; fi\n",
            dev = quote(&format!("/dev/{}/{}", l.vg, v.name)),
            n = quote(&v.name)
        ));
    }
    s.push_str(&format!(
        "echo {SEP}\nif [ -e {FSTAB} ]; then base64 -w0 < {FSTAB} || exit 3; fi\necho\necho {SEP}\n"
    ));
    for v in &l.volumes {
        s.push_str(&format!(
            "m={m}; printf 'path\\t%s\\n' \"$m\"; p=\"$m\"; while [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; do printf 'missing\\t%s\\n' \"$p\"; p=$(dirname -- \"$p\"); done\n\
             if [ -e \"$m\" ]; then printf 'attrs\\t%s\\t%s\\n' \"$m\" \"$(stat -c '%U %G %04a' -- \"$m\")\"; fi\n\
             if [ -e \"$m\" ] && [ ! -d \"$m\" ]; then printf 'notdir\\t%s\\n' \"$m\"; fi\n\
             if [ -d \"$m\" ] && [ -n \"$(ls -A -- \"$m\" 2>/dev/null)\" ]; then printf 'files\\t%s\\n' \"$m\"; fi\n",
            m = quote(&v.mount)
        ));
    }
    s
}

/// Run the probe script on the host and parse what it prints.
pub(crate) async fn read_state(l: &Layout, ctx: &ModCtx<'_>) -> Result<HostState> {
    let out = ctx.run(&probe_script(l), None).await?;
    if !out.ok() {
        bail!(
            "cannot read volume group {} on {}: {}",
            l.vg,
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    parse_state(&out.stdout_text(), &l.vg)
        .with_context(|| format!("reading the layout of {} on {}", l.vg, ctx.host.name))
}

/// The probe script's output as state (`vg`: the volume group asked about).
pub(crate) fn parse_state(text: &str, vg: &str) -> Result<HostState> {
    let parts: Vec<&str> = text.split(SEP).collect();
    let [lvs, vgs, mounts, fs, fstab, paths] = parts[..] else {
        bail!("unexpected probe output ({} parts): {text}", parts.len());
    };
    let lvs: Vec<Lv> = parse_report(lvs)?
        .report
        .into_iter()
        .flat_map(|s| s.lv)
        .filter(|l| l.vg_name == vg)
        .collect();
    let vg = parse_report(vgs)?
        .report
        .into_iter()
        .flat_map(|s| s.vg)
        .find(|g| g.vg_name == vg);
    let mounts = parse_findmnt(mounts)?;
    let fs = fs
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, t)| (n.to_string(), t.trim().to_string()))
        .collect();
    let fstab = base64::engine::general_purpose::STANDARD
        .decode(fstab.trim())
        .context("/etc/fstab as base64")?;
    let fstab = String::from_utf8(fstab).context("/etc/fstab is not UTF-8 text")?;
    Ok(HostState {
        lvs,
        vg,
        mounts,
        fs,
        fstab,
        paths: parse_paths(paths),
    })
}

pub(crate) fn parse_findmnt(text: &str) -> Result<Vec<Mounted>> {
    let f: FindMnt = serde_json::from_str(text.trim())
        .with_context(|| format!("unexpected findmnt output: {}", text.trim()))?;
    Ok(f.filesystems)
}

fn parse_paths(text: &str) -> BTreeMap<String, MountPath> {
    let mut paths: BTreeMap<String, MountPath> = BTreeMap::new();
    // Each mount point's lines follow a `path` line naming it.
    let mut current = String::new();
    for line in text.lines() {
        let mut f = line.splitn(3, '\t');
        match (f.next(), f.next(), f.next()) {
            (Some("path"), Some(m), None) => {
                current = m.to_string();
                paths.entry(current.clone()).or_default();
            }
            (Some("missing"), Some(p), None) => {
                paths
                    .entry(current.clone())
                    .or_default()
                    .missing
                    .push(p.into());
            }
            (Some("attrs"), Some(m), Some(a)) => {
                let a: Vec<&str> = a.split(' ').collect();
                if let [o, g, mode] = a[..] {
                    paths.entry(m.into()).or_default().attrs =
                        Some((o.into(), g.into(), mode.into()));
                }
            }
            (Some("files"), Some(m), None) => paths.entry(m.into()).or_default().has_files = true,
            (Some("notdir"), Some(m), None) => paths.entry(m.into()).or_default().not_dir = true,
            _ => {}
        }
    }
    paths
}
