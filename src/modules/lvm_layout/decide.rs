//! The decision, per volume, from what the probe read: nothing to do; create the LV (tagged),
//! make its file system, create the mount point, mount it, add its fstab line; grow it (the data
//! stays); or refuse, before anything changes: a shrink, another file system on a volume, an LV
//! the module did not create, a mount point taken by something else or with files in it, a VG
//! without the room. Pure: tested from captured output.

use serde::{Deserialize, Serialize};

use super::args::{Layout, Volume};
use super::state::{HostState, MountPath};
use crate::modules::snapshot::{human, round_up};

/// Owner, group and mode of a mount point's root directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Attrs {
    pub(crate) owner: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) mode: Option<String>,
}

/// What the step does to one volume (all false/None: nothing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct VolumeWork {
    pub(crate) name: String,
    pub(crate) mount: String,
    pub(crate) fs: String,
    pub(crate) options: String,
    /// Create the LV, this many bytes (whole extents).
    pub(crate) create: Option<u64>,
    /// Make the file system (a new LV, or a tagged one left without one by a run cut off).
    pub(crate) mkfs: bool,
    /// Grow the LV and its file system: (from, to) bytes.
    pub(crate) grow: Option<(u64, u64)>,
    /// Parts of the mount point to create, deepest first.
    pub(crate) dirs: Vec<String>,
    pub(crate) mount_it: bool,
    /// The fstab line to add.
    pub(crate) fstab_line: Option<String>,
    /// Attributes to set on the mounted root, and what they were (None: a new root).
    pub(crate) set_attrs: Option<Attrs>,
    pub(crate) attrs_before: Option<(String, String, String)>,
}

impl VolumeWork {
    fn changes(&self) -> bool {
        self.create.is_some()
            || self.mkfs
            || self.grow.is_some()
            || self.mount_it
            || self.fstab_line.is_some()
            || self.set_attrs.is_some()
    }
}

/// The whole step's work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Work {
    pub(crate) volumes: Vec<VolumeWork>,
    pub(crate) fstab_before: String,
    pub(crate) fstab_after: String,
}

impl Work {
    pub(crate) fn changes(&self) -> bool {
        self.volumes.iter().any(VolumeWork::changes)
    }
}

/// `/dev/VG/LV`, the path the module writes in fstab.
pub(crate) fn dev_path(vg: &str, lv: &str) -> String {
    format!("/dev/{vg}/{lv}")
}

/// `/dev/mapper/VG-LV` (a `-` in a name doubled), the path `findmnt` shows.
pub(crate) fn mapper_path(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

fn is_dev(source: &str, vg: &str, lv: &str) -> bool {
    source == dev_path(vg, lv) || source == mapper_path(vg, lv)
}

/// An fstab entry: line number (1-based) and its first four fields.
struct Entry<'a> {
    line: usize,
    spec: &'a str,
    file: &'a str,
    vfstype: &'a str,
    opts: &'a str,
}

fn fstab_entries(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [spec, file, vfstype, ..] if !spec.starts_with('#') => Some(Entry {
                    line: i + 1,
                    spec,
                    file,
                    vfstype,
                    opts: f.get(3).copied().unwrap_or("defaults"),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The line the module writes for a volume (fsck pass 2 for ext4; xfs has no boot-time fsck).
pub(crate) fn fstab_line(vg: &str, v: &Volume) -> String {
    let pass = if v.fs == "ext4" { 2 } else { 0 };
    format!(
        "{} {} {} {} 0 {pass}",
        dev_path(vg, &v.name),
        v.mount,
        v.fs,
        v.options()
    )
}

/// fstab with `lines` appended (a missing final newline added first).
pub(crate) fn fstab_with(before: &str, lines: &[String]) -> String {
    let mut s = before.to_string();
    if lines.is_empty() {
        return s;
    }
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Decide the work, or every reason to refuse it.
pub(crate) fn decide(l: &Layout, st: &HostState) -> Result<Work, Vec<String>> {
    let mut refusals = Vec::new();
    let Some(vg) = &st.vg else {
        return Err(vec![format!("volume group {} not found", l.vg)]);
    };
    let extent: u64 = vg.vg_extent_size.parse().unwrap_or(4 << 20);
    let free: u64 = vg.vg_free.parse().unwrap_or(0);
    let entries = fstab_entries(&st.fstab);
    let mut volumes = Vec::new();
    let mut need = 0u64;
    let mut needs = Vec::new();
    for v in &l.volumes {
        let want = round_up(v.bytes(), extent);
        match volume_work(l, v, want, st, &entries) {
            Ok(mut w) => {
                // A directory two mount points share is made (and removed) by the first.
                let made: Vec<&String> =
                    volumes.iter().flat_map(|o: &VolumeWork| &o.dirs).collect();
                w.dirs.retain(|d| !made.contains(&d));
                let more = match (w.create, w.grow) {
                    (Some(b), _) => b,
                    (_, Some((from, to))) => to - from,
                    _ => 0,
                };
                if more > 0 {
                    needs.push(format!("{} {}", v.name, human(more)));
                }
                need += more;
                volumes.push(w);
            }
            Err(why) => refusals.push(format!(
                "volume `{}` ({}/{} at {}): {why}",
                v.name, l.vg, v.name, v.mount
            )),
        }
    }
    if need > free {
        refusals.push(format!(
            "volume group {} has {} free; the layout needs {} ({}): add space to {} or ask for less",
            l.vg,
            human(free),
            human(need),
            needs.join(", "),
            l.vg
        ));
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let added: Vec<String> = volumes
        .iter()
        .filter_map(|w| w.fstab_line.clone())
        .collect();
    Ok(Work {
        fstab_after: fstab_with(&st.fstab, &added),
        fstab_before: st.fstab.clone(),
        volumes,
    })
}

fn volume_work(
    l: &Layout,
    v: &Volume,
    want: u64,
    st: &HostState,
    entries: &[Entry<'_>],
) -> Result<VolumeWork, String> {
    let mut w = VolumeWork {
        name: v.name.clone(),
        mount: v.mount.clone(),
        fs: v.fs.clone(),
        options: v.options().to_string(),
        ..VolumeWork::default()
    };
    let vg = l.vg.as_str();
    match st.lv(&v.name) {
        None => w.create = Some(want),
        Some(lv) => {
            if !lv.lv_tags.split(',').any(|t| t == l.tag) {
                return Err(format!(
                    "the LV exists and was not created by cutover (it has no tag `{}`): it is left untouched; take it out of the layout, or hand it over with `lvchange --addtag {} {vg}/{}`",
                    l.tag, l.tag, v.name
                ));
            }
            let have = lv.size();
            if want < have {
                return Err(format!(
                    "it is {}, the layout asks for {}: shrinking a volume that holds data is refused",
                    human(have),
                    human(want)
                ));
            }
            if want > have {
                w.grow = Some((have, want));
            }
            match st.fs.get(&v.name).map(String::as_str).unwrap_or("") {
                "" => w.mkfs = true,
                fs if fs == v.fs => {}
                fs => {
                    return Err(format!(
                        "it holds a {fs} file system, the layout asks for {}: reformatting a volume that holds data is refused",
                        v.fs
                    ))
                }
            }
        }
    }
    if w.create.is_some() {
        w.mkfs = true;
    }
    mount_work(vg, v, st, &mut w)?;
    fstab_work(vg, v, entries, &mut w)?;
    Ok(w)
}

/// Mount point, mount and attributes.
fn mount_work(vg: &str, v: &Volume, st: &HostState, w: &mut VolumeWork) -> Result<(), String> {
    if let Some(m) = st
        .mounts
        .iter()
        .find(|m| is_dev(&m.source, vg, &v.name) && m.target != v.mount)
    {
        return Err(format!(
            "the LV is mounted at {}, not at {}",
            m.target, v.mount
        ));
    }
    let here = st.mounts.iter().rev().find(|m| m.target == v.mount);
    let path = st.paths.get(&v.mount).cloned().unwrap_or_default();
    let wanted = Attrs {
        owner: v.owner.clone(),
        group: v.group.clone(),
        mode: v.mode.clone(),
    };
    let asks = wanted != Attrs::default();
    match here {
        Some(m) if is_dev(&m.source, vg, &v.name) => {
            if asks && attrs_differ(&wanted, &path) {
                w.set_attrs = Some(wanted);
                w.attrs_before = path.attrs;
            }
        }
        Some(m) => {
            return Err(format!(
                "{} is already mounted from {} ({})",
                v.mount, m.source, m.fstype
            ))
        }
        None => {
            if path.has_files {
                return Err(format!(
                    "{} has files in it that mounting the volume over it would hide",
                    v.mount
                ));
            }
            if path.not_dir {
                return Err(format!("{} exists and is not a directory", v.mount));
            }
            w.dirs = path.missing;
            w.mount_it = true;
            w.set_attrs = asks.then_some(wanted);
        }
    }
    Ok(())
}

fn attrs_differ(want: &Attrs, path: &MountPath) -> bool {
    let Some((o, g, m)) = &path.attrs else {
        return true;
    };
    let mode_of = |s: &str| u32::from_str_radix(s, 8).ok();
    want.owner.as_ref().is_some_and(|w| w != o)
        || want.group.as_ref().is_some_and(|w| w != g)
        || want.mode.as_ref().is_some_and(|w| mode_of(w) != mode_of(m))
}

/// The volume's fstab line: there and the same, to add, or in conflict.
fn fstab_work(
    vg: &str,
    v: &Volume,
    entries: &[Entry<'_>],
    w: &mut VolumeWork,
) -> Result<(), String> {
    if let Some(e) = entries
        .iter()
        .find(|e| is_dev(e.spec, vg, &v.name) && e.file != v.mount)
    {
        return Err(format!(
            "/etc/fstab line {} mounts the LV at {}, not at {}",
            e.line, e.file, v.mount
        ));
    }
    match entries.iter().rev().find(|e| e.file == v.mount) {
        None => w.fstab_line = Some(fstab_line(vg, v)),
        Some(e) if !is_dev(e.spec, vg, &v.name) => {
            return Err(format!(
                "/etc/fstab line {} mounts {} at {}",
                e.line, e.spec, v.mount
            ))
        }
        Some(e) if e.vfstype != v.fs || e.opts != v.options() => {
            return Err(format!(
                "/etc/fstab line {} mounts the LV as `{} {}`, the layout says `{} {}`: edit that line by hand (the module adds lines, it does not rewrite them)",
                e.line,
                e.vfstype,
                e.opts,
                v.fs,
                v.options()
            ))
        }
        Some(_) => {}
    }
    Ok(())
}
