//! Ways back: what a step records so the engine (or `cutover rollback`) can undo it.
//!
//! Undo actions are data, written to the run journal before the next action, so a run killed
//! at any point can still be unwound. They name paths and states, never file contents, so no
//! secret reaches the journal through them.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::lvm_layout::RemoveLayout;
use super::ModCtx;
use crate::shell::quote;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum UndoAction {
    /// Put back the file saved before it was replaced.
    RestoreFile { path: String, backup: String },
    /// Remove a file or link the step created.
    RemovePath { path: String },
    /// Remove a directory the step created (only if empty: later content was undone first).
    RemoveDir { path: String },
    /// Move a path back where it was (a removed path kept as backup).
    MovePath { from: String, to: String },
    /// Point a symlink back at its old target.
    Link { path: String, target: String },
    SetAttrs {
        path: String,
        owner: String,
        group: String,
        mode: String,
    },
    // The ways back of single modules: their data and scripts live with the module. Each is
    // journaled as its fields beside the tag (`{"undo":"service","name":…}`).
    /// Bring a systemd unit back to its previous state.
    Service(super::service::ServiceUndo),
    /// Put back the package versions from before the step and purge the ones it installed.
    Packages(super::package::PackagesUndo),
    /// Remove a user the step created (and the home directory, if the step created it).
    RemoveUser(super::user::RemoveUser),
    /// Put a user's account back as it was (recreated if the step removed it).
    RestoreUser(super::user::RestoreUser),
    /// Remove a group the step created.
    RemoveGroup(super::group::RemoveGroup),
    /// Put a group back with its previous gid and members (recreated if the step removed it).
    RestoreGroup(super::group::RestoreGroup),
    /// Roll volumes back to the snapshot set a step created (the undo of `snapshot`).
    SnapshotMerge(super::snapshot::MergeSpec),
    /// Unmount and remove the volumes an `lvm_layout` step created, with their fstab lines.
    RemoveLayout(super::lvm_layout::RemoveLayout),
    /// Put back the tree a `sync` replaced (kept as `backup`), or remove the one it created.
    SyncRestore(super::sync::SyncRestore),
    /// Put back what a `git_overlay` step laid over a directory (each file's own way back,
    /// newest first, then the directories it created).
    GitOverlay(super::git_overlay::OverlayUndo),
    /// Run a step the author declared with `undo:`.
    Step {
        module: String,
        args: serde_json::Map<String, serde_json::Value>,
    },
    /// Put a module's target back in its previous state by running the module again with these
    /// arguments (states and names only: credentials by variable name, never a secret value).
    Rerun {
        module: String,
        args: serde_json::Map<String, serde_json::Value>,
        what: String,
    },
}

impl UndoAction {
    /// One line for plans, journals and `cutover show`.
    pub fn describe(&self) -> String {
        match self {
            UndoAction::RestoreFile { path, .. } => format!("restore previous {path}"),
            UndoAction::RemovePath { path } => format!("remove {path}"),
            UndoAction::RemoveDir { path } => format!("remove directory {path}"),
            UndoAction::MovePath { to, .. } => format!("put back {to}"),
            UndoAction::Link { path, target } => format!("link {path} → {target}"),
            UndoAction::SetAttrs {
                path,
                owner,
                group,
                mode,
            } => format!("{path} back to {owner}:{group} {mode}"),
            UndoAction::Service(u) => u.describe(),
            UndoAction::Packages(u) => u.describe(),
            UndoAction::RemoveUser(u) => u.describe(),
            UndoAction::RestoreUser(u) => u.describe(),
            UndoAction::RemoveGroup(u) => u.describe(),
            UndoAction::RestoreGroup(u) => u.describe(),
            UndoAction::SnapshotMerge(m) => format!(
                "roll back {} to snapshot set {} ({})",
                m.volumes
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                m.name,
                m.backend
            ),
            UndoAction::SyncRestore(u) => u.describe(),
            UndoAction::RemoveLayout(u) => u.describe(),
            UndoAction::GitOverlay(u) => u.describe(),
            UndoAction::Step { module, .. } => format!("run {module} (declared undo)"),
            UndoAction::Rerun { what, .. } => what.clone(),
        }
    }

    /// Undo a change that may have been cut off (the controller died during it, or the module
    /// failed half way): what was never made is skipped — a backup that does not exist is not
    /// put back, attributes of a path that is not there are not set. The other actions are
    /// safe as they are (removals tolerate absence, states are set absolutely, a snapshot
    /// merge skips missing snapshots).
    pub async fn run_partial(&self, ctx: &ModCtx<'_>) -> Result<()> {
        let guard = match self {
            UndoAction::RestoreFile { backup: p, .. }
            | UndoAction::MovePath { from: p, .. }
            | UndoAction::SetAttrs { path: p, .. } => p,
            _ => return self.run(ctx).await,
        };
        let out = ctx
            .run(&format!("test -e {0} || test -L {0}", quote(guard)), None)
            .await?;
        if out.ok() {
            self.run(ctx).await
        } else {
            Ok(())
        }
    }

    pub async fn run(&self, ctx: &ModCtx<'_>) -> Result<()> {
        let script = match self {
            UndoAction::RestoreFile { path, backup } => {
                format!("mv -f -- {} {}", quote(backup), quote(path))
            }
            UndoAction::RemovePath { path } => format!("rm -f -- {}", quote(path)),
            UndoAction::RemoveDir { path } => format!(
                "rmdir -- {} 2>/dev/null || test ! -e {}",
                quote(path),
                quote(path)
            ),
            UndoAction::MovePath { from, to } => format!(
                "rm -rf -- {to} && mv -f -- {from} {to}",
                from = quote(from),
                to = quote(to)
            ),
            UndoAction::Link { path, target } => {
                format!("ln -sfn -- {} {}", quote(target), quote(path))
            }
            UndoAction::SetAttrs {
                path,
                owner,
                group,
                mode,
            } => {
                format!(
                    "chown -- {}:{} {p} && chmod -- {} {p}",
                    quote(owner),
                    quote(group),
                    quote(mode),
                    p = quote(path)
                )
            }
            UndoAction::Service(u) => u.script(),
            UndoAction::Packages(u) => u.script(),
            UndoAction::RemoveUser(u) => u.script(),
            UndoAction::RestoreUser(u) => u.script(),
            UndoAction::RemoveGroup(u) => u.script(),
            UndoAction::RestoreGroup(u) => u.script(),
            UndoAction::SnapshotMerge(m) => return super::snapshot::undo_merge(m, ctx).await,
            UndoAction::SyncRestore(u) => u.script(),
            UndoAction::RemoveLayout(u) => u.script(),
            UndoAction::GitOverlay(u) => u.script(),
            UndoAction::Step { module, args } | UndoAction::Rerun { module, args, .. } => {
                let probe = super::probe(module, args, ctx).await?;
                let out = super::apply(module, args, &probe, ctx).await?;
                if let Some(f) = out.failed {
                    bail!("undo step {module} failed: {f}");
                }
                // Nothing undoes an undo: a file the module kept to undo its own change
                // (`file: state: absent` keeps the file as `PATH.cutover-RUN~`) is deleted,
                // not left behind on the host for good.
                if let Some(kept) = out.undo.as_ref().filter(|u| u.keeps_only_a_file()) {
                    kept.commit(ctx).await?;
                }
                return Ok(());
            }
        };
        let out = ctx.run(&script, None).await?;
        if !out.ok() {
            bail!(
                "undo ({}) failed on {}: {}",
                self.describe(),
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        Ok(())
    }
}

impl UndoAction {
    /// The way back keeps nothing but a file or directory moved aside (no snapshot set).
    fn keeps_only_a_file(&self) -> bool {
        match self {
            UndoAction::RestoreFile { .. } | UndoAction::MovePath { .. } => true,
            UndoAction::Rerun { args, .. } => args.get("restore_from").is_some(),
            _ => false,
        }
    }

    /// What [`commit`](Self::commit) deletes, said before it does (`cutover commit --force`
    /// lists it); `None` when nothing was kept only for the undo.
    pub fn kept_for_undo(&self) -> Option<String> {
        match self {
            UndoAction::RestoreFile { backup, .. } => Some(format!("backup {backup}")),
            UndoAction::MovePath { from, .. } => Some(format!("{from} (kept for undo)")),
            UndoAction::GitOverlay(u) if !u.backups().is_empty() => {
                Some(format!("backups {}", u.backups().join(", ")))
            }
            UndoAction::Rerun { args, .. } => args
                .get("restore_from")
                .and_then(|v| v.as_str())
                .map(|b| format!("backup {b}")),
            UndoAction::RemoveLayout(u) => u.fstab_backup.as_ref().map(|b| format!("backup {b}")),
            UndoAction::SnapshotMerge(m) => Some(format!(
                "snapshot set {} ({}: {})",
                m.name,
                m.backend,
                m.volumes
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => None,
        }
    }

    /// Accept the change for good (`cutover commit RUN`): drop what was kept only to undo it —
    /// snapshots and backups. Returns what was removed, or `None` when nothing was kept.
    pub async fn commit(&self, ctx: &ModCtx<'_>) -> Result<Option<String>> {
        let (script, what) = match self {
            UndoAction::RestoreFile { backup, .. } => (
                format!("rm -f -- {}", quote(backup)),
                format!("removed backup {backup}"),
            ),
            UndoAction::MovePath { from, .. } => (
                format!("rm -rf -- {}", quote(from)),
                format!("removed {from}, kept for undo"),
            ),
            UndoAction::GitOverlay(u) if !u.backups().is_empty() => (
                format!(
                    "rm -f -- {}",
                    u.backups()
                        .iter()
                        .map(|b| quote(b))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                format!("removed backups {}", u.backups().join(", ")),
            ),
            // A module that kept a backup file for its rerun-undo (lb_member's workers.properties,
            // which holds the AJP secret) names it in `restore_from`.
            UndoAction::Rerun { args, .. }
                if args.get("restore_from").and_then(|v| v.as_str()).is_some() =>
            {
                let backup = args["restore_from"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (
                    format!("rm -f -- {}", quote(&backup)),
                    format!("removed backup {backup}"),
                )
            }
            UndoAction::RemoveLayout(RemoveLayout {
                fstab_backup: Some(backup),
                ..
            }) => (
                format!("rm -f -- {}", quote(backup)),
                format!("removed backup {backup}"),
            ),
            UndoAction::SnapshotMerge(m) => {
                let mut args = serde_json::Map::new();
                args.insert("backend".into(), m.backend.clone().into());
                args.insert("name".into(), m.name.clone().into());
                args.insert("volumes".into(), serde_json::to_value(&m.volumes)?);
                args.insert("pool".into(), m.pool.clone().into());
                args.insert("state".into(), "absent".into());
                let probe = super::probe("snapshot", &args, ctx).await?;
                let out = super::apply("snapshot", &args, &probe, ctx).await?;
                if let Some(f) = out.failed {
                    bail!("removing snapshot set {} failed: {f}", m.name);
                }
                return Ok(Some(format!("removed snapshot set {}", m.name)));
            }
            _ => return Ok(None),
        };
        let out = ctx.run(&script, None).await?;
        if !out.ok() {
            bail!(
                "{what} failed on {}: {}",
                ctx.host.name,
                out.stderr_text().trim()
            );
        }
        Ok(Some(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals written by earlier versions hold these exact forms: each must still be read as
    /// the same action and written back byte for byte.
    #[test]
    fn journal_form_of_module_undo_actions_is_unchanged() {
        let forms = [
            r#"{"undo":"service","name":"tomcat10","active":true,"enabled":false,"socket":null}"#,
            r#"{"undo":"service","name":"x","active":false,"enabled":null,"socket":"x.socket"}"#,
            r#"{"undo":"packages","restore":{"curl":"7.88.1-10"},"purge":["jq"]}"#,
            r#"{"undo":"remove_user","name":"wiki","home":"/srv/wiki"}"#,
            r#"{"undo":"remove_user","name":"wiki","home":null}"#,
            r#"{"undo":"restore_user","name":"wiki","uid":1001,"gid":1001,"group":"wiki","groups":["adm"],"home":"/srv/wiki","shell":"/bin/sh","comment":""}"#,
            r#"{"undo":"remove_group","name":"wiki"}"#,
            r#"{"undo":"restore_group","name":"wiki","gid":1001,"members":["a","b"]}"#,
            r#"{"undo":"sync_restore","dest":"/srv/data","backup":"/srv/.data.cutover-r1","in_place":false}"#,
            r#"{"undo":"sync_restore","dest":"/srv/data","backup":null,"in_place":true}"#,
            r#"{"undo":"restore_file","path":"/etc/a","backup":"/etc/.a.cutover-r1"}"#,
            r#"{"undo":"rerun","module":"lb_member","args":{"activation":"active"},"what":"w"}"#,
        ];
        let described = [
            "tomcat10 back to started",
            "x back to stopped",
            "packages back: curl 7.88.1-10, purge jq",
            "remove user wiki and the home /srv/wiki it created",
            "remove user wiki",
            "put back user wiki (uid 1001, groups, home path, shell); if it was removed it is recreated without its password, and its home is whatever the removal kept on disk",
            "remove group wiki",
            "put back group wiki (gid 1001, members)",
            "put back the previous /srv/data",
            "remove /srv/data (created by sync)",
            "restore previous /etc/a",
            "w",
        ];
        for (form, description) in forms.into_iter().zip(described) {
            let action: UndoAction = serde_json::from_str(form).expect(form);
            assert_eq!(serde_json::to_string(&action).unwrap(), form);
            assert_eq!(action.describe(), description);
        }
    }

    /// What a commit deletes, said before it does: exactly what `commit` removes, nothing for
    /// an undo that keeps no copy.
    #[test]
    fn what_a_commit_deletes_is_named_before() {
        let kept = |form: &str| {
            serde_json::from_str::<UndoAction>(form)
                .unwrap()
                .kept_for_undo()
        };
        assert_eq!(
            kept(r#"{"undo":"restore_file","path":"/etc/a","backup":"/etc/a.cutover-r1~"}"#),
            Some("backup /etc/a.cutover-r1~".into())
        );
        assert_eq!(
            kept(r#"{"undo":"move_path","from":"/srv/.old","to":"/srv/app"}"#),
            Some("/srv/.old (kept for undo)".into())
        );
        assert_eq!(
            kept(
                r#"{"undo":"rerun","module":"lb_member","args":{"restore_from":"/etc/w.bak"},"what":"w"}"#
            ),
            Some("backup /etc/w.bak".into())
        );
        assert_eq!(
            kept(
                r#"{"undo":"snapshot_merge","backend":"btrfs","name":"pre","pool":"/srv/vol","services":[],"reboot":false,"volumes":[{"name":"home"},{"name":"db"}]}"#
            ),
            Some("snapshot set pre (btrfs: home, db)".into())
        );
        for none in [
            r#"{"undo":"remove_path","path":"/etc/a"}"#,
            r#"{"undo":"rerun","module":"lb_member","args":{"activation":"active"},"what":"w"}"#,
            r#"{"undo":"service","name":"x","active":false,"enabled":null,"socket":null}"#,
        ] {
            assert_eq!(kept(none), None, "{none}");
        }
    }

    /// The scripts of the module ways back, as they were when undo.rs wrote them.
    #[test]
    fn module_undo_scripts_are_unchanged() {
        let script = |form: &str| match serde_json::from_str::<UndoAction>(form).unwrap() {
            UndoAction::Service(u) => u.script(),
            UndoAction::RemoveUser(u) => u.script(),
            UndoAction::RemoveGroup(u) => u.script(),
            UndoAction::RestoreGroup(u) => u.script(),
            UndoAction::SyncRestore(u) => u.script(),
            UndoAction::RemoveLayout(u) => u.script(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            script(
                r#"{"undo":"service","name":"tomcat10","active":true,"enabled":false,"socket":null}"#
            ),
            "systemctl disable -- tomcat10\nsystemctl start -- tomcat10"
        );
        assert_eq!(
            script(
                r#"{"undo":"service","name":"x","active":false,"enabled":null,"socket":"x.socket"}"#
            ),
            "systemctl stop -- x x.socket"
        );
        assert_eq!(
            script(r#"{"undo":"remove_user","name":"wiki","home":"/srv/wiki"}"#),
            "userdel -r -- wiki"
        );
        assert_eq!(
            script(r#"{"undo":"remove_group","name":"wiki"}"#),
            "! getent group -- wiki >/dev/null || groupdel -- wiki"
        );
        assert_eq!(
            script(r#"{"undo":"restore_group","name":"wiki","gid":1001,"members":["a","b"]}"#),
            "set -e\nif getent group -- wiki >/dev/null; then groupmod -g 1001 -- wiki; else groupadd -g 1001 -- wiki; fi\ngpasswd -M a,b wiki >/dev/null"
        );
        assert_eq!(
            script(
                r#"{"undo":"sync_restore","dest":"/srv/data","backup":"/srv/.d","in_place":false}"#
            ),
            "set -e\nrm -rf -- /srv/data\nmv -- /srv/.d /srv/data"
        );
    }
}
