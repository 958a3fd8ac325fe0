//! `lvm_layout`: the runbook's volumes on a host's volume group, as one step. Each volume is an
//! LV (tagged as cutover's), a file system on it, a mount point, a mount and an fstab line.
//!
//! The probe reads the VG, the mounts, the file systems, fstab and the mount points in one round
//! trip and decides per volume ([`decide`]): nothing; create (LV, mkfs, mkdir, mount, fstab);
//! grow (lvextend and the file system, the data stays); or refuse before anything changes (a
//! shrink, another file system, an LV without the tag, a mount point taken, a VG without the
//! room). The way back removes what the run created (unmount, fstab line, lvremove: the LV
//! held nothing before); a grow has none (no file system is shrunk under data), so the plan
//! marks it irreversible.

mod args;
mod decide;
mod state;
#[cfg(test)]
mod tests;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::contract::{unknown_path, unknown_tree, Module};
use super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use super::{Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::modules::snapshot::human;
use crate::overlay::Effect;
use crate::shell::quote;

pub(crate) use args::{check_volumes, layout_volumes_problem};
use args::{Layout, LayoutArgs};
use decide::{decide, dev_path, mapper_path, VolumeWork, Work};
use state::{read_state, FSTAB};

/// The `lvm_layout` module.
pub(crate) struct LvmLayout;

impl Module for LvmLayout {
    type Args = LayoutArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "lvm_layout",
        args: &[
            req("vg", T::Str),
            req("volumes", T::Volumes),
            arg("tag", T::Str),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &LayoutArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        let l = Layout::of(args)?;
        if let Some(by) = planned_before(&l, ctx) {
            return Err(crate::overlay::not_derivable(format!(
                "{by} changes /etc/fstab or a mount point of the layout first; what the layout finds there is known only when it runs"
            )));
        }
        let st = read_state(&l, ctx).await?;
        let work = decide(&l, &st).map_err(|why| {
            anyhow!(
                "lvm_layout refuses to change {} on {} (nothing was changed):\n  {}",
                l.vg,
                ctx.host.name,
                why.join("\n  ")
            )
        })?;
        let saw = json!({ "work": work });
        if !work.changes() {
            return Ok(Probe::no_change(saw));
        }
        let probe = Probe::change(summary(&l, &work), Some(details(&l, &work)), saw)
            .with_after(effects(&l));
        let grown: Vec<String> = work
            .volumes
            .iter()
            .filter(|w| w.grow.is_some())
            .map(|w| format!("{}/{}", l.vg, w.name))
            .collect();
        Ok(if grown.is_empty() {
            probe
        } else {
            probe.losing(format!(
                "the size before the grow of {} (a file system is not shrunk under its data)",
                grown.join(", ")
            ))
        })
    }

    async fn apply(args: &LayoutArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        if probe.decision == Decision::NoChange {
            return Ok(Outcome::default());
        }
        let l = Layout::of(args)?;
        let work = probed_work(probe)?;
        let out = ctx.run(&apply_script(&l, &work), None).await?;
        if !out.ok() {
            bail!(
                "lvm_layout on {} failed: {}",
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        let mut undo = undo_of(&l, &work, ctx.run_id);
        if work.fstab_after != work.fstab_before {
            let backup = write_fstab(&work, ctx).await?;
            if let Some(UndoAction::RemoveLayout(u)) = &mut undo {
                u.fstab_backup = backup;
            }
        }
        let mut result = Map::new();
        result.insert("volumes".into(), json!(work.volumes));
        Ok(Outcome {
            changed: true,
            result,
            undo,
            failed: None,
        })
    }

    fn pending_undo(args: &LayoutArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        let l = Layout::of(args).ok()?;
        undo_of(&l, &probed_work(probe).ok()?, ctx.run_id)
    }

    fn touches(args: &LayoutArgs) -> Vec<Effect> {
        Layout::of(args)
            .map(|l| effects(&l))
            .unwrap_or_else(|_| vec![unknown_path(FSTAB)])
    }
}

/// In a plan: the earlier step that changes fstab or a mount point of the layout, if any.
fn planned_before<'a>(l: &Layout, ctx: &'a ModCtx<'_>) -> Option<&'a str> {
    let o = ctx.overlay()?;
    std::iter::once(FSTAB)
        .chain(l.volumes.iter().map(|v| v.mount.as_str()))
        .find_map(|p| o.anything_within(p))
}

/// What a plan takes as changed after the step: fstab and each mounted tree.
fn effects(l: &Layout) -> Vec<Effect> {
    std::iter::once(unknown_path(FSTAB))
        .chain(l.volumes.iter().map(|v| unknown_tree(&v.mount)))
        .collect()
}

fn probed_work(probe: &Probe) -> Result<Work> {
    serde_json::from_value(probe.state["work"].clone()).context("the probe's layout work")
}

/// One line: what changes, per volume.
fn summary(l: &Layout, work: &Work) -> String {
    let parts: Vec<String> = work
        .volumes
        .iter()
        .filter_map(|w| {
            let what = if let Some(b) = w.create {
                format!("create {} ({}, {}, {})", w.name, human(b), w.fs, w.mount)
            } else if let Some((from, to)) = w.grow {
                format!(
                    "grow {} {} → {} (irreversible)",
                    w.name,
                    human(from),
                    human(to)
                )
            } else if w.mount_it || w.mkfs || w.fstab_line.is_some() || w.set_attrs.is_some() {
                format!("complete {} ({})", w.name, w.mount)
            } else {
                return None;
            };
            Some(what)
        })
        .collect();
    format!("lay out {}: {}", l.vg, parts.join("; "))
}

/// Each action, then the fstab diff.
fn details(l: &Layout, work: &Work) -> String {
    let mut s = String::new();
    for w in &work.volumes {
        let dev = dev_path(&l.vg, &w.name);
        if let Some(b) = w.create {
            s.push_str(&format!(
                "+ lvcreate {}/{} {} (tag {})\n",
                l.vg,
                w.name,
                human(b),
                l.tag
            ));
        }
        if let Some((from, to)) = w.grow {
            s.push_str(&format!(
                "~ lvextend {}/{} {} → {} and grow its {} (no way back)\n",
                l.vg,
                w.name,
                human(from),
                human(to),
                w.fs
            ));
        }
        if w.mkfs {
            s.push_str(&format!("+ mkfs.{} {dev}\n", w.fs));
        }
        for d in w.dirs.iter().rev() {
            s.push_str(&format!("+ mkdir {d}\n"));
        }
        if w.mount_it {
            s.push_str(&format!("+ mount {dev} on {} ({})\n", w.mount, w.options));
        }
        if let Some(a) = &w.set_attrs {
            s.push_str(&format!("~ {} {}\n", w.mount, attrs_text(a)));
        }
    }
    if work.fstab_after != work.fstab_before {
        s.push_str(&crate::modules::files::content_diff(
            FSTAB,
            Some(work.fstab_before.as_bytes()),
            None,
            work.fstab_after.as_bytes(),
        ));
    }
    s
}

fn attrs_text(a: &decide::Attrs) -> String {
    [
        a.owner.as_deref().map(|o| format!("owner {o}")),
        a.group.as_deref().map(|g| format!("group {g}")),
        a.mode.as_deref().map(|m| format!("mode {m}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// The commands, volume by volume, in the order of the list (an outer mount point first).
fn apply_script(l: &Layout, work: &Work) -> String {
    let mut s = String::from("set -e\nexport LC_ALL=C\n");
    for w in &work.volumes {
        s.push_str(&volume_script(l, w));
    }
    s
}

fn volume_script(l: &Layout, w: &VolumeWork) -> String {
    let (lv, dev, m) = (
        quote(&format!("{}/{}", l.vg, w.name)),
        quote(&dev_path(&l.vg, &w.name)),
        quote(&w.mount),
    );
    let mut s = String::new();
    if let Some(b) = w.create {
        s.push_str(&format!(
            "lvcreate -y -W y --addtag {} -n {} -L {b}b -- {} >/dev/null\n",
            quote(&l.tag),
            quote(&w.name),
            quote(&l.vg)
        ));
    }
    if w.mkfs {
        s.push_str(&format!("mkfs.{} -q -- {dev}\n", w.fs));
    }
    if !w.dirs.is_empty() {
        s.push_str(&format!("mkdir -p -- {m}\n"));
    }
    if w.mount_it {
        s.push_str(&format!(
            "mount -t {} -o {} -- {dev} {m}\n",
            w.fs,
            quote(&w.options)
        ));
    }
    if let Some((_, to)) = w.grow {
        // Online: ext4 and xfs grow mounted (mounted just above if it was not).
        let grow_fs = if w.fs == "xfs" {
            format!("xfs_growfs -- {m} >/dev/null")
        } else {
            format!("resize2fs -- {dev} >/dev/null 2>&1")
        };
        s.push_str(&format!(
            "lvextend -L {to}b -- {lv} >/dev/null\n{grow_fs}\n"
        ));
    }
    if let Some(a) = &w.set_attrs {
        match (&a.owner, &a.group) {
            (Some(o), Some(g)) => s.push_str(&format!("chown -- {}:{} {m}\n", quote(o), quote(g))),
            (Some(o), None) => s.push_str(&format!("chown -- {} {m}\n", quote(o))),
            (None, Some(g)) => s.push_str(&format!("chgrp -- {} {m}\n", quote(g))),
            (None, None) => {}
        }
        if let Some(mode) = &a.mode {
            s.push_str(&format!("chmod -- {} {m}\n", quote(mode)));
        }
    }
    s
}

/// fstab as the probe planned it, written atomically (files' `write_file`: a temporary file
/// renamed over it, refused if fstab changed since the probe read it); the backup it keeps.
async fn write_fstab(work: &Work, ctx: &ModCtx<'_>) -> Result<Option<String>> {
    let looked = crate::modules::files::look(ctx, FSTAB, false).await?;
    let after = work.fstab_after.as_bytes();
    let sha = crate::modules::sha256_hex(after);
    let before_sha = crate::modules::sha256_hex(work.fstab_before.as_bytes());
    let undo = crate::modules::files::write_file(
        ctx,
        crate::modules::files::WantedAttrs::default(),
        FSTAB,
        Some((crate::transport::Input::Bytes(after), &sha)),
        looked.stat.as_ref(),
        looked.stat.as_ref().map(|_| before_sha.as_str()),
    )
    .await?;
    Ok(match undo {
        UndoAction::RestoreFile { backup, .. } => Some(backup),
        _ => None,
    })
}

/// The way back of what `work` does: per volume it creates or completes, unmount, the fstab line,
/// and (created by this run) the LV and the directories made for it. `None`: nothing to undo.
fn undo_of(l: &Layout, work: &Work, run_id: &str) -> Option<UndoAction> {
    let volumes: Vec<UndoVolume> = work
        .volumes
        .iter()
        .filter(|w| {
            w.create.is_some() || w.mount_it || w.fstab_line.is_some() || w.attrs_before.is_some()
        })
        .map(|w| UndoVolume {
            lv: w.name.clone(),
            mount: w.mount.clone(),
            unmount: w.mount_it,
            fstab_line: w.fstab_line.is_some(),
            remove_lv: w.create.is_some(),
            dirs: w.dirs.clone(),
            attrs: w.attrs_before.clone(),
        })
        .collect();
    (!volumes.is_empty()).then(|| {
        UndoAction::RemoveLayout(RemoveLayout {
            vg: l.vg.clone(),
            tag: l.tag.clone(),
            volumes,
            // Where `write_file` keeps the fstab it replaces.
            fstab_backup: (work.fstab_after != work.fstab_before).then(|| {
                let sha = crate::modules::sha256_hex(work.fstab_before.as_bytes());
                crate::modules::files::backup_name(FSTAB, run_id, Some(&sha))
            }),
        })
    })
}

/// The way back of an `lvm_layout` step (journaled as its fields: a format, never rename them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveLayout {
    pub vg: String,
    pub tag: String,
    pub volumes: Vec<UndoVolume>,
    /// The fstab the step replaced, kept next to it (removed by the undo and by `commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstab_backup: Option<String>,
}

/// One volume's way back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UndoVolume {
    pub lv: String,
    pub mount: String,
    /// The step mounted it: unmount.
    pub unmount: bool,
    /// The step added its fstab line: remove it.
    pub fstab_line: bool,
    /// The step created the LV: remove it (only while it carries the tag).
    pub remove_lv: bool,
    /// Directories the step created for the mount point, deepest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Owner, group and mode of the mounted root before the step changed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<(String, String, String)>,
}

impl RemoveLayout {
    pub fn describe(&self) -> String {
        let removed: Vec<String> = self
            .volumes
            .iter()
            .filter(|v| v.remove_lv)
            .map(|v| format!("{}/{} ({})", self.vg, v.lv, v.mount))
            .collect();
        let other = self.volumes.len() - removed.len();
        match (removed.is_empty(), other) {
            (false, 0) => format!(
                "unmount and remove {} with what was written to them since",
                removed.join(", ")
            ),
            (false, n) => format!(
                "unmount and remove {} with what was written to them since; undo the mounts and fstab lines of {n} more",
                removed.join(", ")
            ),
            (true, n) => format!("undo the mounts and fstab lines of {n} volume(s) of {}", self.vg),
        }
    }

    /// Safe on a change cut off anywhere: each part checks that there is something to undo, and
    /// an LV is removed only while it carries the tag.
    pub fn script(&self) -> String {
        let mut s = String::from("set -e\nexport LC_ALL=C\nf=/etc/fstab\n");
        for v in self.volumes.iter().rev() {
            s.push_str(&self.volume_script(v));
        }
        if let Some(b) = &self.fstab_backup {
            s.push_str(&format!("rm -f -- {}\n", quote(b)));
        }
        s
    }

    fn volume_script(&self, v: &UndoVolume) -> String {
        let (dev, map, m) = (
            quote(&dev_path(&self.vg, &v.lv)),
            quote(&mapper_path(&self.vg, &v.lv)),
            quote(&v.mount),
        );
        let mut s = format!("dev={dev}; map={map}; m={m}\n");
        if v.unmount {
            s.push_str(
                "src=$(findmnt -rn -o SOURCE -M \"$m\" 2>/dev/null || true)\n\
                 if [ \"$src\" = \"$map\" ] || [ \"$src\" = \"$dev\" ]; then umount -- \"$m\"; fi\n",
            );
        }
        if v.fstab_line {
            s.push_str(
                "sel='$1 !~ /^#/ && ($1 == d || $1 == d2) && $2 == m'\n\
                 if [ -e \"$f\" ] && awk -v d=\"$dev\" -v d2=\"$map\" -v m=\"$m\" \"$sel {x=1} END {exit !x}\" \"$f\"; then\n\
                 \x20 t=$(mktemp /etc/.fstab.cutover.XXXXXX)\n\
                 \x20 awk -v d=\"$dev\" -v d2=\"$map\" -v m=\"$m\" \"!($sel)\" \"$f\" > \"$t\"\n\
                 \x20 chmod --reference=\"$f\" -- \"$t\"; chown --reference=\"$f\" -- \"$t\"; mv -f -- \"$t\" \"$f\"\n\
                 fi\n",
            );
        }
        if let Some((o, g, mode)) = &v.attrs {
            s.push_str(&format!(
                "if [ -d \"$m\" ]; then chown -- {}:{} \"$m\"; chmod -- {} \"$m\"; fi\n",
                quote(o),
                quote(g),
                quote(mode)
            ));
        }
        if v.remove_lv {
            s.push_str(&format!(
                "if lvs --noheadings -o lv_tags -- {lv} 2>/dev/null | tr ',' '\\n' | tr -d ' ' | grep -qxF -- {tag}; then lvremove -y -- {lv} >/dev/null; fi\n",
                lv = quote(&format!("{}/{}", self.vg, v.lv)),
                tag = quote(&self.tag)
            ));
        }
        for d in &v.dirs {
            s.push_str(&format!("rmdir -- {} 2>/dev/null || true\n", quote(d)));
        }
        s
    }
}
