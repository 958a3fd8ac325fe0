//! An `lvm_layout` step's arguments: the volume group, the volumes, the tag. The volumes are
//! checked by one set of rules twice: by `check` on the playbook as written (each problem at its
//! line and column, [`check_volumes`]) and at run time on the rendered list ([`Layout::of`]),
//! where a template (an inventory's layout) gave it.

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics};
use crate::modules::args;
use crate::modules::snapshot::{size_bytes, SizeError};
use crate::yaml::{Node, Value};

/// The LV tag marking what the module created: an LV without it is never touched.
pub(crate) const DEFAULT_TAG: &str = "cutover-layout";
/// The file systems the module makes and grows.
pub(crate) const FS_TYPES: &[&str] = &["ext4", "xfs"];
/// The keys of one volume.
const VOLUME_KEYS: &[&str] = &[
    "name",
    "size",
    "fs",
    "mount",
    "owner",
    "group",
    "mode",
    "mount_options",
];
const REQUIRED_KEYS: &[&str] = &["name", "size", "mount"];

/// The arguments of an `lvm_layout` step (its `SPEC.args`), as given.
#[derive(Deserialize)]
pub(crate) struct LayoutArgs {
    #[serde(deserialize_with = "args::required_text")]
    vg: String,
    /// A list of volumes, or its JSON text (a rendered `json_encode()`).
    volumes: J,
    #[serde(default, deserialize_with = "args::text")]
    tag: Option<String>,
}

/// One volume: an LV of `size` in the VG, a file system on it, mounted at `mount` (and in fstab).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) size: String,
    #[serde(default = "default_fs")]
    pub(crate) fs: String,
    pub(crate) mount: String,
    #[serde(default)]
    pub(crate) owner: Option<String>,
    #[serde(default)]
    pub(crate) group: Option<String>,
    #[serde(default)]
    pub(crate) mode: Option<String>,
    #[serde(default)]
    pub(crate) mount_options: Option<String>,
}

fn default_fs() -> String {
    "ext4".into()
}

impl Volume {
    /// The size asked for, in bytes (checked: [`Layout::of`]).
    pub(crate) fn bytes(&self) -> u64 {
        size_bytes(&self.size).unwrap_or(0)
    }
    pub(crate) fn options(&self) -> &str {
        self.mount_options.as_deref().unwrap_or("defaults")
    }
}

/// The arguments, checked and converted.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) vg: String,
    pub(crate) tag: String,
    pub(crate) volumes: Vec<Volume>,
}

impl Layout {
    pub(crate) fn of(a: &LayoutArgs) -> Result<Layout> {
        let volumes: Vec<Volume> = match &a.volumes {
            J::Array(_) => serde_json::from_value(a.volumes.clone())
                .context("`volumes` must be a list of {name, size, fs, mount, owner, group, mode, mount_options}")?,
            // A rendered "{{ layout.volumes | json_encode() }}".
            J::String(s) => serde_json::from_str(s).with_context(|| {
                format!("`volumes` must be a list of volumes or its JSON, found `{s}`; from a variable, write volumes: \"{{{{ x.volumes | json_encode() }}}}\"")
            })?,
            _ => bail!("argument `volumes` is missing or not a list"),
        };
        if let Some(why) = name_problem("VG name", &a.vg) {
            bail!("`vg`: {why}");
        }
        let tag = a.tag.clone().unwrap_or_else(|| DEFAULT_TAG.into());
        if let Some(why) = tag_problem(&tag) {
            bail!("`tag`: {why}");
        }
        let problems = list_problems(&volumes);
        if let Some((i, key, why)) = problems.first() {
            bail!("volume {} of `volumes`, `{key}`: {why}", i + 1);
        }
        Ok(Layout {
            vg: a.vg.clone(),
            tag,
            volumes,
        })
    }
}

/// What is wrong with a rendered `volumes` (the JSON text a variable gave), by the rules of
/// [`Layout::of`]; `None`: nothing.
pub(crate) fn layout_volumes_problem(rendered: &str) -> Option<String> {
    let volumes: Vec<Volume> = match serde_json::from_str(rendered) {
        Ok(v) => v,
        Err(e) => return Some(format!("not a list of volumes ({e})")),
    };
    let (i, key, why) = list_problems(&volumes).into_iter().next()?;
    Some(format!("volume {}, `{key}`: {why}", i + 1))
}

/// What is wrong with one field's value, if anything.
fn field_problem(key: &str, value: &str) -> Option<String> {
    match key {
        "name" => name_problem("LV name", value),
        "size" => size_problem(value),
        "fs" => (!FS_TYPES.contains(&value)).then(|| {
            format!(
                "`{value}` is not a file system this module makes; expected one of: {}",
                FS_TYPES.join(", ")
            )
        }),
        "mount" => mount_problem(value),
        "owner" | "group" => (value.is_empty()
            || value.contains(|c: char| c.is_whitespace() || c == ':'))
        .then(|| format!("`{value}` is not a user or group name")),
        "mode" => (!((3..=4).contains(&value.len()) && value.chars().all(|c| ('0'..='7').contains(&c))))
            .then(|| format!("`{value}` is not an octal mode; expected a quoted one like \"0755\"")),
        "mount_options" => (value.is_empty()
            || value.contains(|c: char| c.is_whitespace() || c == '#'))
        .then(|| format!("`{value}` is not a list of mount options; expected them comma-separated without spaces, like noatime,nodev")),
        _ => None,
    }
}

/// LVM's rule for VG and LV names (lvm(8), "VALID NAMES").
fn name_problem(what: &str, s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && s != "."
        && s != ".."
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    (!ok).then(|| {
        format!("{what} `{s}` must be 1-100 letters, digits or + _ . - (not starting with -)")
    })
}

/// LVM's rule for tags (lvm(8), "TAGS").
fn tag_problem(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 1024
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+.-/=!:&#".contains(c));
    (!ok).then(|| format!("`{s}` is not an LVM tag: letters, digits and _ + . - / = ! : & #"))
}

fn size_problem(s: &str) -> Option<String> {
    match size_bytes(s) {
        Ok(_) => None,
        Err(SizeError::Zero) => Some(format!("size `{s}` is zero")),
        Err(_) if s.contains('%') => Some(format!(
            "size `{s}`: a layout takes absolute sizes like 512M or 2G (a percentage of the VG means something else on every run)"
        )),
        Err(SizeError::Unit(u)) => Some(format!(
            "size `{s}`: unknown unit `{u}`; expected K, M, G or T (binary units, as lvcreate -L)"
        )),
        Err(SizeError::NotANumber) => Some(format!(
            "size `{s}` is not a size; expected a number and a unit like 512M or 2G"
        )),
    }
}

fn mount_problem(m: &str) -> Option<String> {
    if !m.starts_with('/') {
        return Some(format!("mount point `{m}` is not an absolute path"));
    }
    if m == "/" {
        return Some(
            "the root file system `/` is the installed system's; a layout mounts volumes below it"
                .into(),
        );
    }
    if m.ends_with('/') || m.contains("//") || m.split('/').any(|c| c == "." || c == "..") {
        return Some(format!(
            "mount point `{m}` is not a plain path (no trailing /, //, . or ..)"
        ));
    }
    if m.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#' || c == '\\') {
        return Some(format!(
            "mount point `{m}` has a space, tab, # or \\, which an fstab line cannot hold as is"
        ));
    }
    None
}

/// Problems of the whole list: (volume index, key, why). The rules of single fields, a missing
/// key, duplicate names and mount points, and a mount point below another one listed after it
/// (it would be hidden when the outer one is mounted over it).
fn list_problems(volumes: &[Volume]) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    if volumes.is_empty() {
        out.push((0, "volumes", "the list is empty: nothing to lay out".into()));
    }
    for (i, v) in volumes.iter().enumerate() {
        let fields: [(&'static str, Option<&str>); 8] = [
            ("name", Some(&v.name)),
            ("size", Some(&v.size)),
            ("fs", Some(&v.fs)),
            ("mount", Some(&v.mount)),
            ("owner", v.owner.as_deref()),
            ("group", v.group.as_deref()),
            ("mode", v.mode.as_deref()),
            ("mount_options", v.mount_options.as_deref()),
        ];
        for (key, value) in fields {
            if let Some(why) = value.and_then(|s| field_problem(key, s)) {
                out.push((i, key, why));
            }
        }
        if let Some(why) = fs_size_problem(&v.fs, &v.size) {
            out.push((i, "size", why));
        }
        let earlier = &volumes[..i];
        if let Some(why) = order_problem(earlier, v.name.as_str(), v.mount.as_str()) {
            out.push((i, why.0, why.1));
        }
    }
    out
}

/// The smallest XFS file system `mkfs.xfs` makes (xfsprogs 5.19 and later: "Filesystem must
/// be larger than 300MB"; bookworm has 6.1).
const XFS_MIN: u64 = 300 << 20;

/// A size too small for the volume's file system.
fn fs_size_problem(fs: &str, size: &str) -> Option<String> {
    let bytes = size_bytes(size).ok()?;
    (fs == "xfs" && bytes < XFS_MIN).then(|| {
        format!("size `{size}` is too small for xfs: mkfs.xfs makes 300M or more (use ext4 for a smaller volume)")
    })
}

/// A volume's name or mount point against the volumes listed before it.
fn order_problem(earlier: &[Volume], name: &str, mount: &str) -> Option<(&'static str, String)> {
    let pairs: Vec<(&str, &str)> = earlier
        .iter()
        .map(|e| (e.name.as_str(), e.mount.as_str()))
        .collect();
    order_problem_of(&pairs, name, mount)
}

fn order_problem_of(
    earlier: &[(&str, &str)],
    name: &str,
    mount: &str,
) -> Option<(&'static str, String)> {
    if let Some(j) = earlier.iter().position(|(n, _)| *n == name) {
        return Some((
            "name",
            format!("LV name `{name}` is already used by volume {}", j + 1),
        ));
    }
    if let Some(j) = earlier.iter().position(|(_, m)| *m == mount) {
        return Some((
            "mount",
            format!("mount point `{mount}` is already used by volume {}", j + 1),
        ));
    }
    if let Some(j) = earlier
        .iter()
        .position(|(_, m)| m.starts_with(&format!("{mount}/")))
    {
        return Some((
            "mount",
            format!(
                "mount point `{mount}` holds volume {}'s `{}`: list `{mount}` before it, or mounting it would hide that one",
                j + 1,
                earlier[j].1
            ),
        ));
    }
    None
}

/// `check`: the `volumes` of a step as written, each problem at its position. A template
/// (`"{{ … }}"`) is checked when it is rendered, at run time.
pub(crate) fn check_volumes(node: &Node, what: &str, diags: &mut Diagnostics) -> bool {
    if let Value::Str(s) = &node.value {
        if s.contains("{{") {
            return true;
        }
    }
    let Some(items) = decode::sequence(node, what, diags) else {
        return false;
    };
    let before = diags.len();
    if items.is_empty() {
        diags.push(Diagnostic::new(
            node.pos.clone(),
            format!("`{what}` is empty: nothing to lay out"),
        ));
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let label = format!("volume {} of `{what}`", i + 1);
        let Some(f) = Fields::new(item, &label, VOLUME_KEYS, diags) else {
            continue;
        };
        for key in REQUIRED_KEYS {
            f.require(key, &label, diags);
        }
        let mut text = |key: &str| -> Option<String> {
            let n = f.get(key)?;
            let s = decode::string(n, &format!("{what}.{key}"), diags)?;
            if s.contains("{{") {
                return None;
            }
            if let Some(why) = field_problem(key, &s) {
                diags.push(Diagnostic::new(
                    n.pos.clone(),
                    format!("{label}, `{key}`: {why}"),
                ));
                return None;
            }
            Some(s)
        };
        let name = text("name");
        let mount = text("mount");
        let size = text("size");
        let fs = text("fs").unwrap_or_else(default_fs);
        for key in &VOLUME_KEYS[4..] {
            text(key);
        }
        if let (Some(size), Some(n)) = (size, f.get("size")) {
            if let Some(why) = fs_size_problem(&fs, &size) {
                diags.push(Diagnostic::new(
                    n.pos.clone(),
                    format!("{label}, `size`: {why}"),
                ));
            }
        }
        if let (Some(name), Some(mount)) = (name, mount) {
            let earlier: Vec<(&str, &str)> =
                seen.iter().map(|(n, m)| (n.as_str(), m.as_str())).collect();
            if let Some((key, why)) = order_problem_of(&earlier, &name, &mount) {
                let pos = f.get(key).map_or(item.pos.clone(), |n| n.pos.clone());
                diags.push(Diagnostic::new(pos, format!("{label}, `{key}`: {why}")));
            }
            seen.push((name, mount));
        }
    }
    diags.len() == before
}
