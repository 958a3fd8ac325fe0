//! The controller's side of `git_overlay`: the repository fetched into a cache under the state
//! directory (one bare repository per URL), and the tree of the pinned commit read from it.
//!
//! The `git` command line does the work (`fetch`, `ls-tree`, `cat-file`): nodes need no git, and
//! a commit already in the cache is not fetched again (a pinned commit never changes). Within
//! one run every host's probe asks for the same tree: the first fetches, the others wait for it
//! and share what it read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::AsyncWriteExt as _;

use crate::modules::sha256_hex;

/// A file of the pinned tree: its path relative to the tree's top, whether git records it as
/// executable, and its content.
#[derive(Debug)]
pub(crate) struct TreeFile {
    pub path: String,
    pub executable: bool,
    pub data: Vec<u8>,
    pub sha256: String,
}

/// The files of one commit's tree, in git's order (sorted by path).
#[derive(Debug)]
pub(crate) struct Tree {
    pub files: Vec<TreeFile>,
}

impl Tree {
    pub(crate) fn file(&self, path: &str) -> Option<&TreeFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The directories the files are in (relative, each once, parents before children).
    pub(crate) fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = Vec::new();
        for f in &self.files {
            let mut at = 0;
            while let Some(i) = f.path[at..].find('/') {
                let d = &f.path[..at + i];
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_string());
                }
                at += i + 1;
            }
        }
        dirs.sort_by_key(|d| (d.matches('/').count(), d.clone()));
        dirs
    }
}

/// One entry of `git ls-tree -r -z`: `MODE TYPE OBJECT\tPATH`.
#[derive(Debug, PartialEq)]
pub(crate) struct Entry {
    pub mode: String,
    pub kind: String,
    pub object: String,
    pub path: String,
}

/// `git ls-tree -r -z` output as entries.
pub(crate) fn parse_ls_tree(out: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text = std::str::from_utf8(rec)
            .map_err(|_| anyhow::anyhow!("a path in the tree is not UTF-8"))?;
        let (meta, path) = text
            .split_once('\t')
            .with_context(|| format!("unexpected `git ls-tree` output: {text}"))?;
        let mut f = meta.split(' ');
        let (Some(mode), Some(kind), Some(object), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            bail!("unexpected `git ls-tree` output: {text}");
        };
        entries.push(Entry {
            mode: mode.to_string(),
            kind: kind.to_string(),
            object: object.to_string(),
            path: path.to_string(),
        });
    }
    Ok(entries)
}

/// Is the entry a regular file, and is it executable? Symbolic links and submodules are refused:
/// a link laid over an install could point anywhere on the host, and a submodule's tree is in
/// another repository that this commit does not pin.
pub(crate) fn regular_file(e: &Entry) -> Result<bool> {
    let bad_part = e
        .path
        .split('/')
        .find(|p| p.is_empty() || *p == "." || *p == ".." || *p == ".git");
    if let Some(part) = bad_part {
        bail!(
            "`{}` in the tree has a path part `{part}` that cannot be laid over a directory",
            crate::diag::one_line(&e.path)
        );
    }
    if e.path.chars().any(char::is_control) {
        bail!(
            "`{}` in the tree has a control character in its name",
            crate::diag::one_line(&e.path)
        );
    }
    match (e.mode.as_str(), e.kind.as_str()) {
        ("100644" | "100664", "blob") => Ok(false),
        ("100755", "blob") => Ok(true),
        ("120000", _) => bail!("`{}` in the tree is a symbolic link; git_overlay lays regular files only", e.path),
        ("160000", _) => bail!("`{}` in the tree is a submodule; git_overlay lays regular files only (its content is in another repository)", e.path),
        (m, k) => bail!("`{}` in the tree is a {k} with mode {m}; git_overlay lays regular files only", e.path),
    }
}

/// `git cat-file --batch` output for `n` objects: each `OBJECT TYPE SIZE\n`, the content, `\n`.
pub(crate) fn parse_batch(mut out: &[u8], n: usize) -> Result<Vec<Vec<u8>>> {
    let mut blobs = Vec::with_capacity(n);
    while blobs.len() < n {
        let nl = out
            .iter()
            .position(|b| *b == b'\n')
            .context("`git cat-file` output ended early")?;
        let header = String::from_utf8_lossy(&out[..nl]).into_owned();
        let size: usize = match header.split(' ').collect::<Vec<_>>()[..] {
            [_, "blob", size] => size.parse().ok(),
            _ => None,
        }
        .with_context(|| format!("unexpected `git cat-file` output: {header}"))?;
        let body = out
            .get(nl + 1..nl + 1 + size)
            .context("`git cat-file` output ended early")?;
        blobs.push(body.to_vec());
        out = out.get(nl + 2 + size..).unwrap_or_default();
    }
    Ok(blobs)
}

/// The URL as messages show it: without a `user:password@` part.
pub(crate) fn shown_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The tree of `commit` in `repo`, fetched into the cache if it is not there yet. Once per run
/// and repository: the hosts' probes share it.
pub(crate) async fn tree_at(repo: &str, commit: &str, limit: Duration) -> Result<Arc<Tree>> {
    // A failure is kept too: every host reports it, one fetch tried.
    type Trees = tokio::sync::Mutex<HashMap<(String, String), Result<Arc<Tree>, String>>>;
    static TREES: OnceLock<Trees> = OnceLock::new();
    // Held while one repository is fetched: the other hosts' probes wait for its tree.
    let mut trees = TREES.get_or_init(Trees::default).lock().await;
    let key = (repo.to_string(), commit.to_string());
    let got = match trees.get(&key) {
        Some(t) => t.clone(),
        None => {
            let t = read_tree(&cache_dir(repo), repo, commit, limit)
                .await
                .map(Arc::new)
                .map_err(|e| format!("{e:#}"));
            trees.insert(key, t.clone());
            t
        }
    };
    got.map_err(anyhow::Error::msg)
}

/// Where the cache of `repo` is: `STATE/git/<sha256 of the URL>.git`.
fn cache_dir(repo: &str) -> PathBuf {
    crate::controller::state_dir::state_dir()
        .join("git")
        .join(format!("{}.git", &sha256_hex(repo.as_bytes())[..16]))
}

/// The tree of `commit`, from the cache `dir` of `repo` (fetched into it when missing).
pub(crate) async fn read_tree(
    dir: &Path,
    repo: &str,
    commit: &str,
    limit: Duration,
) -> Result<Tree> {
    let dir = dir.to_path_buf();
    std::fs::create_dir_all(dir.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Another cutover on this controller may be fetching the same repository.
    let _lock = lock_cache(&dir.with_extension("lock")).await?;
    if !dir.join("HEAD").exists() {
        let d = dir.display().to_string();
        git(None, &["init", "--bare", "--quiet", &d], None, limit).await?;
        // Objects are never pruned: an older pinned commit stays readable.
        git(Some(&dir), &["config", "gc.auto", "0"], None, limit).await?;
    }
    let spec = format!("{commit}^{{commit}}");
    if !has_object(&dir, &spec, limit).await? {
        fetch(&dir, repo, limit).await?;
        if !has_object(&dir, &spec, limit).await? {
            bail!(
                "commit {commit} is not in {} (fetched its branches and tags; pin a commit that one of them contains)",
                shown_url(repo)
            );
        }
    }
    let listing = git(
        Some(&dir),
        &["ls-tree", "-r", "-z", "--full-tree", commit],
        None,
        limit,
    )
    .await?;
    let entries = parse_ls_tree(&listing)?;
    let mut files = Vec::with_capacity(entries.len());
    for e in &entries {
        files.push((e, regular_file(e)?));
    }
    let wanted: String = entries.iter().map(|e| format!("{}\n", e.object)).collect();
    let out = git(
        Some(&dir),
        &["cat-file", "--batch"],
        Some(wanted.into_bytes()),
        limit,
    )
    .await?;
    let blobs = parse_batch(&out, entries.len())?;
    Ok(Tree {
        files: files
            .into_iter()
            .zip(blobs)
            .map(|((e, executable), data)| TreeFile {
                path: e.path.clone(),
                executable,
                sha256: sha256_hex(&data),
                data,
            })
            .collect(),
    })
}

async fn has_object(dir: &Path, spec: &str, limit: Duration) -> Result<bool> {
    Ok(run_git(Some(dir), &["cat-file", "-e", spec], None, limit)
        .await?
        .status
        .success())
}

/// Every branch and tag of `repo` into the cache (a dumb HTTP server cannot be asked for one
/// commit).
async fn fetch(dir: &Path, repo: &str, limit: Duration) -> Result<()> {
    let out = run_git(
        Some(dir),
        &[
            "fetch",
            "--quiet",
            "--no-write-fetch-head",
            "--",
            repo,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
        None,
        limit,
    )
    .await?;
    if !out.status.success() {
        bail!(
            "cannot fetch {}: {}",
            shown_url(repo),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace(repo, &shown_url(repo))
        );
    }
    Ok(())
}

/// Run git and return its stdout; an error with its stderr when it fails.
async fn git(
    dir: Option<&Path>,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> Result<Vec<u8>> {
    let out = run_git(dir, args, stdin, limit).await?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Run git on the cache `dir` (never a repository the environment points at), with no
/// terminal prompt (a repository that asks for credentials fails instead of waiting), within
/// `limit`.
async fn run_git(
    dir: Option<&Path>,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> Result<std::process::Output> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg(format!("--git-dir={}", d.display()));
    }
    cmd.args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("cannot run `git` on the controller (is git installed?)")?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written while git answers (its output could fill a pipe before the input is read).
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => Ok(out?),
        Err(_) => bail!(
            "git {} took longer than {} s",
            args.first().unwrap_or(&""),
            limit.as_secs()
        ),
    }
}

/// An exclusive lock on `path` (created), waited for without blocking the runtime.
async fn lock_cache(path: &Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}
