//! Ways back: what a step records so the engine (or `cutover rollback`) can undo it.
//!
//! Undo actions are data, written to the run journal before the next action, so a run killed
//! at any point can still be unwound. They name paths and states, never file contents, so no
//! secret reaches the journal through them.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

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
    /// Bring a systemd unit back to its previous state.
    Service {
        name: String,
        active: bool,
        enabled: Option<bool>,
        socket: Option<String>,
    },
    /// Run a step the author declared with `undo:`.
    Step {
        module: String,
        args: serde_json::Map<String, serde_json::Value>,
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
            UndoAction::Service { name, active, .. } => format!(
                "{name} back to {}",
                if *active { "started" } else { "stopped" }
            ),
            UndoAction::Step { module, .. } => format!("run {module} (declared undo)"),
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
            UndoAction::Service {
                name,
                active,
                enabled,
                socket,
            } => {
                let mut s = String::new();
                if let Some(e) = enabled {
                    s.push_str(&format!(
                        "systemctl {} -- {}\n",
                        if *e { "enable" } else { "disable" },
                        quote(name)
                    ));
                }
                if *active {
                    s.push_str(&format!("systemctl start -- {}", quote(name)));
                    if let Some(sock) = socket {
                        s.push_str(&format!(" {}", quote(sock)));
                    }
                } else {
                    s.push_str(&format!("systemctl stop -- {}", quote(name)));
                    if let Some(sock) = socket {
                        s.push_str(&format!(" {}", quote(sock)));
                    }
                }
                s
            }
            UndoAction::Step { module, args } => {
                let probe = super::probe(module, args, ctx).await?;
                let out = super::apply(module, args, &probe, ctx).await?;
                if let Some(f) = out.failed {
                    bail!("undo step {module} failed: {f}");
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
