//! The `git_overlay` module: the tree of one pinned commit of a git repository laid over a
//! directory on the host (an installation's customizations, reapplied over a new release).
//!
//! The controller fetches the repository and reads the commit's tree (`repo.rs`); the host
//! needs no git. The probe reads every path of the tree under `dest` in one round trip and
//! decides per file: no change, added, replaced (with its diff) or only its owner, group or
//! mode changed; directories missing on the host are created. The apply writes each file as
//! `copy` does (atomically, checked against its SHA-256, the replaced file kept as a backup),
//! and the way back puts every replaced file back, removes every added file and every directory
//! it created, newest first. Only files: a symbolic link or a submodule in the tree is an error.

mod repo;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use crate::modules::contract::{unknown_tree, Module};
use crate::modules::files::{
    attr_changes, content_diff, file_written, look_many, planned_attrs, write_file, write_undo,
    LookFor, Looked, Stat, WantedAttrs,
};
use crate::modules::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::{Effect, PathState};
use crate::shell::quote;
use crate::transport::Input;
use repo::{Tree, TreeFile};

/// How long the controller's git may take (fetch, read) when the step sets no `timeout:`.
const GIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The arguments of a `git_overlay` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct GitOverlayArgs {
    #[serde(deserialize_with = "args::required_text")]
    repo: String,
    #[serde(deserialize_with = "args::required_text")]
    version: String,
    #[serde(deserialize_with = "args::required_text")]
    dest: String,
    #[serde(default, deserialize_with = "args::text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    mode: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    directory_mode: Option<String>,
}

/// The arguments, checked as rendered (`check` checks the literal ones where they are written).
struct Overlay<'a> {
    repo: &'a str,
    commit: String,
    dest: String,
    owner: Option<&'a str>,
    group: Option<&'a str>,
    mode: Option<&'a str>,
    directory_mode: Option<&'a str>,
}

impl GitOverlayArgs {
    fn checked(&self) -> Result<Overlay<'_>> {
        let spec = &GitOverlay::SPEC;
        for a in spec.args {
            let value = match a.name {
                "repo" => Some(self.repo.as_str()),
                "version" => Some(self.version.as_str()),
                "dest" => Some(self.dest.as_str()),
                "mode" => self.mode.as_deref(),
                "directory_mode" => self.directory_mode.as_deref(),
                _ => None,
            };
            if let Some(why) = value.and_then(|v| a.ty.text_problem(v)) {
                bail!("git_overlay.{}: {why}", a.name);
            }
        }
        let dest = match self.dest.trim_end_matches('/') {
            "" => "/".to_string(),
            d => d.to_string(),
        };
        Ok(Overlay {
            repo: &self.repo,
            commit: self.version.to_ascii_lowercase(),
            dest,
            owner: self.owner.as_deref(),
            group: self.group.as_deref(),
            mode: self.mode.as_deref(),
            directory_mode: self.directory_mode.as_deref(),
        })
    }
}

impl Overlay<'_> {
    fn path_of(&self, rel: &str) -> String {
        match self.dest.as_str() {
            "/" => format!("/{rel}"),
            d => format!("{d}/{rel}"),
        }
    }

    /// The mode a file gets: `mode:` (or 0644), plus execute wherever it has read for a file
    /// git records as executable.
    fn file_mode(&self, executable: bool) -> String {
        let base = self
            .mode
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o644);
        let m = if executable {
            base | ((base & 0o444) >> 2)
        } else {
            base
        };
        format!("{m:04o}")
    }

    fn file_attrs<'m>(&'m self, mode: &'m str) -> WantedAttrs<'m> {
        WantedAttrs {
            owner: self.owner,
            group: self.group,
            mode: Some(mode),
        }
    }

    fn dir_attrs(&self) -> WantedAttrs<'_> {
        WantedAttrs {
            owner: self.owner,
            group: self.group,
            mode: self.directory_mode,
        }
    }
}

/// What the probe decided for one file of the tree (only files that change are kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FileChange {
    /// Relative to the tree's top.
    rel: String,
    path: String,
    /// Its SHA-256 in the pinned tree.
    sha256: String,
    mode: String,
    /// New content (else only owner, group or mode).
    content: bool,
    /// What the host has now (None: the file is added).
    stat: Option<Stat>,
}

/// One file's verdict from what the host has: None when it is as the tree wants it.
fn decide_file(
    path: &str,
    want_sha: &str,
    attrs: WantedAttrs<'_>,
    looked: &Looked,
) -> Result<Option<(bool, Vec<String>)>> {
    let Some(st) = &looked.stat else {
        return Ok(Some((true, Vec::new())));
    };
    if st.kind != "regular file" && st.kind != "regular empty file" {
        bail!(
            "{path} is a {} on the host, where the tree has a file",
            st.kind
        );
    }
    let content = st.sha256.as_deref() != Some(want_sha);
    let attrs = attr_changes(attrs, path, Some(st))?;
    Ok((content || !attrs.is_empty()).then_some((content, attrs)))
}

/// A directory of the tree: must it be created? Something else than a directory there is an
/// error (the tree cannot be laid over it).
fn dir_missing(path: &str, looked: &Looked) -> Result<bool> {
    match &looked.stat {
        None => Ok(true),
        Some(st) if st.kind == "directory" => Ok(false),
        Some(st) => bail!(
            "{path} is a {} on the host, where the tree has a directory",
            st.kind
        ),
    }
}

/// The probe's findings, as the apply reads them back from the probe's state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Findings {
    dest: String,
    commit: String,
    mkdirs: Vec<String>,
    files: Vec<FileChange>,
    /// The diff of each changed file, for the plan.
    #[serde(skip)]
    diffs: Vec<String>,
}

async fn find_changes(o: &Overlay<'_>, tree: &Tree, ctx: &ModCtx<'_>) -> Result<Findings> {
    let dirs = tree.dirs();
    let dir_paths: Vec<String> = dirs.iter().map(|d| o.path_of(d)).collect();
    let file_paths: Vec<String> = tree.files.iter().map(|f| o.path_of(&f.path)).collect();
    let mut wanted = vec![LookFor {
        path: &o.dest,
        want_content: false,
        unless_sha: None,
    }];
    wanted.extend(dir_paths.iter().map(|p| LookFor {
        path: p,
        want_content: false,
        unless_sha: None,
    }));
    wanted.extend(tree.files.iter().zip(&file_paths).map(|(f, p)| LookFor {
        path: p,
        want_content: true,
        unless_sha: Some(&f.sha256),
    }));
    let looked = look_many(ctx, &wanted).await?;
    match &looked[0].stat {
        Some(st) if st.kind == "directory" => {}
        Some(st) => bail!(
            "{} is a {} on {}, not a directory",
            o.dest,
            st.kind,
            ctx.host.name
        ),
        None => bail!(
            "{} does not exist on {}: git_overlay lays a tree over an existing directory",
            o.dest,
            ctx.host.name
        ),
    }
    let mut found = Findings {
        dest: o.dest.clone(),
        commit: o.commit.clone(),
        ..Findings::default()
    };
    for (p, l) in dir_paths.iter().zip(&looked[1..]) {
        if dir_missing(p, l)? {
            found.mkdirs.push(p.clone());
            found
                .diffs
                .push(format!("{}:{p}/: new directory\n", ctx.host.name));
        }
    }
    for ((f, path), l) in tree
        .files
        .iter()
        .zip(&file_paths)
        .zip(&looked[1 + dirs.len()..])
    {
        let mode = o.file_mode(f.executable);
        let Some((content, attrs)) = decide_file(path, &f.sha256, o.file_attrs(&mode), l)? else {
            continue;
        };
        found
            .diffs
            .push(file_diff(&ctx.host.name, path, f, l, content, &attrs));
        found.files.push(FileChange {
            rel: f.path.clone(),
            path: path.clone(),
            sha256: f.sha256.clone(),
            mode,
            content,
            stat: l.stat.clone(),
        });
    }
    Ok(found)
}

/// What the plan shows for one file: its content diff, and its attribute changes.
fn file_diff(
    host: &str,
    path: &str,
    f: &TreeFile,
    l: &Looked,
    content: bool,
    attrs: &[String],
) -> String {
    let label = format!("{host}:{path}");
    let mut text = String::new();
    if content {
        text.push_str(&content_diff(
            &label,
            l.content.as_deref(),
            l.stat.as_ref(),
            &f.data,
        ));
    }
    if !attrs.is_empty() && l.stat.is_some() {
        text.push_str(&format!("{label}: {}\n", attrs.join(", ")));
    }
    text
}

impl Findings {
    fn summary(&self) -> String {
        let added = self.files.iter().filter(|f| f.stat.is_none()).count();
        let replaced = self
            .files
            .iter()
            .filter(|f| f.stat.is_some() && f.content)
            .count();
        let attrs = self.files.len() - added - replaced;
        let mut parts = vec![format!("{added} added"), format!("{replaced} replaced")];
        if attrs > 0 {
            parts.push(format!("{attrs} with new owner/group/mode"));
        }
        if !self.mkdirs.is_empty() {
            parts.push(new_dirs(self.mkdirs.len()));
        }
        format!(
            "lay commit {} over {} ({})",
            &self.commit[..12],
            self.dest,
            parts.join(", ")
        )
    }

    /// What the paths look like after the change, for the later steps of a plan.
    fn after(&self, o: &Overlay<'_>, tree: &Tree) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .mkdirs
            .iter()
            .map(|d| Effect::Path {
                path: d.clone(),
                state: PathState::Dir {
                    attrs: planned_attrs(o.dir_attrs(), false),
                },
            })
            .collect();
        for f in &self.files {
            let data = tree.file(&f.rel).map(|t| t.data.clone());
            let content = if f.content { data } else { None };
            effects.push(file_written(
                &f.path,
                content,
                o.file_attrs(&f.mode),
                f.stat.is_some(),
            ));
        }
        effects
    }

    /// The way back, known before anything is written.
    fn undo(&self, run_id: &str) -> OverlayUndo {
        OverlayUndo {
            dest: self.dest.clone(),
            commit: self.commit.clone(),
            files: self
                .files
                .iter()
                .filter_map(|f| write_undo(&f.path, f.content, f.stat.as_ref(), run_id))
                .collect(),
            dirs: self.mkdirs.clone(),
        }
    }
}

fn new_dirs(n: usize) -> String {
    match n {
        1 => "1 new directory".into(),
        n => format!("{n} new directories"),
    }
}

/// The way back of a `git_overlay` step: each file's own (a replaced file restored from its
/// backup, an added one removed, attributes set back), newest first, then the directories it
/// created, deepest first. Safe to run when the step was cut off half way: a backup that was
/// never made is not restored, an attribute of a path not there is not set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayUndo {
    pub dest: String,
    pub commit: String,
    pub files: Vec<UndoAction>,
    pub dirs: Vec<String>,
}

impl OverlayUndo {
    pub fn describe(&self) -> String {
        format!(
            "put back {} file(s) under {} as before commit {} (and remove {})",
            self.files.len(),
            self.dest,
            &self.commit[..12.min(self.commit.len())],
            new_dirs(self.dirs.len())
        )
    }

    pub fn script(&self) -> String {
        let mut s = String::from("set -e\n");
        for f in self.files.iter().rev() {
            s.push_str(&match f {
                UndoAction::RestoreFile { path, backup } => format!(
                    "if [ -e {b} ] || [ -L {b} ]; then mv -f -- {b} {p}; fi\n",
                    b = quote(backup),
                    p = quote(path)
                ),
                UndoAction::RemovePath { path } => format!("rm -f -- {}\n", quote(path)),
                UndoAction::SetAttrs {
                    path,
                    owner,
                    group,
                    mode,
                } => format!(
                    "if [ -e {p} ]; then chown -- {}:{} {p}; chmod -- {} {p}; fi\n",
                    quote(owner),
                    quote(group),
                    quote(mode),
                    p = quote(path)
                ),
                other => format!(
                    "echo {} >&2; exit 1\n",
                    quote(&format!("unexpected way back: {}", other.describe()))
                ),
            });
        }
        for d in self.dirs.iter().rev() {
            s.push_str(&format!(
                "rmdir -- {d} 2>/dev/null || test ! -e {d}\n",
                d = quote(d)
            ));
        }
        s
    }

    /// The backups it keeps (what `cutover commit` removes).
    pub fn backups(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter_map(|f| match f {
                UndoAction::RestoreFile { backup, .. } => Some(backup.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The `git_overlay` module.
pub(crate) struct GitOverlay;

impl Module for GitOverlay {
    type Args = GitOverlayArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "git_overlay",
        args: &[
            req("repo", T::RepoUrl),
            req("version", T::CommitId),
            req("dest", T::AbsPath),
            arg("owner", T::Str),
            arg("group", T::Str),
            arg("mode", T::OctalMode),
            arg("directory_mode", T::OctalMode),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &GitOverlayArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        let o = args.checked()?;
        let tree = repo::tree_at(o.repo, &o.commit, ctx.timeout.unwrap_or(GIT_LIMIT)).await?;
        let found = find_changes(&o, &tree, ctx).await?;
        let state = serde_json::to_value(&found)?;
        if found.files.is_empty() && found.mkdirs.is_empty() {
            return Ok(Probe::no_change(state));
        }
        let diff = found.diffs.concat();
        Ok(Probe::change(found.summary(), Some(diff), state).with_after(found.after(&o, &tree)))
    }

    async fn apply(args: &GitOverlayArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        let o = args.checked()?;
        let found: Findings = serde_json::from_value(probe.state.clone())?;
        let mut result = Map::new();
        result.insert("dest".into(), J::String(o.dest.clone()));
        result.insert("commit".into(), J::String(o.commit.clone()));
        if probe.decision == Decision::NoChange {
            result.insert("files".into(), json!([]));
            return Ok(Outcome {
                result,
                ..Outcome::default()
            });
        }
        let tree = repo::tree_at(o.repo, &o.commit, ctx.timeout.unwrap_or(GIT_LIMIT)).await?;
        make_dirs(&o, &found.mkdirs, ctx).await?;
        for f in &found.files {
            write_one(&o, &tree, f, ctx).await?;
        }
        let files: Vec<&str> = found.files.iter().map(|f| f.rel.as_str()).collect();
        result.insert("files".into(), json!(files));
        Ok(Outcome {
            changed: true,
            result,
            undo: Some(UndoAction::GitOverlay(found.undo(ctx.run_id))),
            failed: None,
        })
    }

    fn pending_undo(_args: &GitOverlayArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        if probe.decision == Decision::NoChange {
            return None;
        }
        let found: Findings = serde_json::from_value(probe.state.clone()).ok()?;
        Some(UndoAction::GitOverlay(found.undo(ctx.run_id)))
    }

    fn touches(args: &GitOverlayArgs) -> Vec<Effect> {
        vec![unknown_tree(&args.dest)]
    }
}

/// Create the directories the tree needs that the host lacks, parents first (`mkdir` without
/// `-p`: one that appeared since the probe is an error, not silently someone else's).
async fn make_dirs(o: &Overlay<'_>, dirs: &[String], ctx: &ModCtx<'_>) -> Result<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let mut script = String::from("set -e\n");
    for d in dirs {
        script.push_str(&format!("mkdir -- {}\n", quote(d)));
        script.push_str(&crate::modules::files::attr_script(
            o.dir_attrs(),
            &quote(d),
        ));
    }
    let out = ctx.run(&script, None).await?;
    if !out.ok() {
        bail!(
            "creating directories under {} failed: {}",
            o.dest,
            out.stderr_text().trim()
        );
    }
    Ok(())
}

/// Write one file as the probe decided (its content from the pinned tree, checked against the
/// SHA-256 the probe saw in it; the host's file checked against what the probe read there).
async fn write_one(o: &Overlay<'_>, tree: &Tree, f: &FileChange, ctx: &ModCtx<'_>) -> Result<()> {
    let Some(t) = tree.file(&f.rel).filter(|t| t.sha256 == f.sha256) else {
        bail!("{} is not in commit {} as it was probed", f.rel, o.commit);
    };
    let content = f
        .content
        .then_some((Input::Bytes(&t.data), f.sha256.as_str()));
    let expect = f.stat.as_ref().and_then(|s| s.sha256.as_deref());
    write_file(
        ctx,
        o.file_attrs(&f.mode),
        &f.path,
        content,
        f.stat.as_ref(),
        expect,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
