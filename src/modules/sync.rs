//! `sync`: copy a directory tree from another host (`src_host`:`src`) to this host (`dest`),
//! preserving owners (by name, as tar does as root), modes, symlinks and hard links, with
//! `exclude` patterns, verified by checksums on both sides afterwards.
//!
//! The copy goes through the controller (`tar` on the source host → cutover → `tar -x` on this
//! host over the two hosts' ssh connections): it needs no ssh trust between the hosts, which
//! production hosts (and the lab's) do not have. The archive is held in the controller's
//! memory on the way (the transport has no streaming pipe yet), which suits application homes
//! and configuration trees, not multi-gigabyte data sets.
//!
//! The destination becomes an exact copy of the source minus the excluded paths. The previous
//! destination is kept as `DEST.cutover-RUN~` (moved aside, or copied when DEST is a mount
//! point) so the step can be undone.
//!
//! Checksum ("manifest") of a tree, on both sides, with the same excludes:
//! sha256 over the sorted list of `type mode owner:group [size] path [-> link target]` of every
//! entry, plus sha256 over `sha256sum` of every regular file in sorted order.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value as J};

use super::{required, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::shell::quote;
use crate::transport::HostConn;

fn excludes(args: &Map<String, J>) -> Vec<String> {
    match args.get("exclude") {
        Some(J::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        Some(J::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `find .` with the excluded paths pruned: a pattern with a `/` matches the path from the
/// tree's top (`logs/*.gz`, `cache`), one without matches a name anywhere (`*.tmp`).
fn find_pruned(excl: &[String]) -> String {
    if excl.is_empty() {
        return "find .".into();
    }
    let terms: Vec<String> = excl
        .iter()
        .map(|p| {
            let p = p.trim_end_matches('/');
            if p.contains('/') {
                format!(
                    "-path {}",
                    quote(&format!("./{}", p.trim_start_matches("./")))
                )
            } else {
                format!("-name {}", quote(p))
            }
        })
        .collect();
    format!("find . \\( {} \\) -prune -o", terms.join(" -o "))
}

/// Prints `absent`, or `DIGEST ENTRIES` for the tree at `dir`.
fn manifest_script(dir: &str, excl: &[String]) -> String {
    let find = find_pruned(excl);
    format!(
        r#"cd -- {dir} 2>/dev/null || {{ echo absent; exit 0; }}
set -e
meta=$({find} \( -type l -printf 'l %m %u:%g %p -> %l\0' -o -type d -printf 'd %m %u:%g %p\0' -o -type f -printf 'f %m %u:%g %s %p\0' -o -printf '? %y %m %u:%g %p\0' \) | LC_ALL=C sort -z | sha256sum | cut -d' ' -f1)
data=$({find} -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum -- | sha256sum | cut -d' ' -f1)
n=$({find} -printf x | wc -c)
echo "$(printf '%s %s' "$meta" "$data" | sha256sum | cut -d' ' -f1) $n""#,
        dir = quote(dir)
    )
}

/// The tree's digest and entry count, or None when it does not exist.
async fn manifest(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    dir: &str,
    excl: &[String],
) -> Result<Option<(String, u64)>> {
    let out = conn
        .run(&manifest_script(dir, excl), None, ctx.become_, ctx.timeout)
        .await?;
    if !out.ok() {
        bail!(
            "cannot checksum {}:{dir}: {}",
            conn.name,
            out.stderr_text().trim()
        );
    }
    let text = out.stdout_text();
    let line = text.trim();
    if line == "absent" {
        return Ok(None);
    }
    match line.split_once(' ') {
        Some((d, n)) if d.len() == 64 => Ok(Some((d.to_string(), n.parse().unwrap_or(0)))),
        _ => bail!(
            "unexpected checksum output from {}:{dir}: {line}",
            conn.name
        ),
    }
}

fn source<'a>(ctx: &'a ModCtx<'_>, src_host: &str) -> Result<&'a HostConn> {
    if src_host == ctx.host.name {
        return Ok(ctx.host);
    }
    match ctx.peers.get(src_host) {
        Some(c) => Ok(c),
        None => bail!(
            "sync: no connection to src_host {src_host} (is it in the inventory and reachable?)"
        ),
    }
}

fn check_paths(src: &str, dest: &str) -> Result<()> {
    for (what, p) in [("src", src), ("dest", dest)] {
        let t = p.trim_end_matches('/');
        if !p.starts_with('/') || t.is_empty() {
            bail!("sync: {what} must be an absolute path below /, found `{p}`");
        }
    }
    Ok(())
}

pub async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    let (src_host, src, dest) = (
        required(args, "src_host")?,
        required(args, "src")?,
        required(args, "dest")?,
    );
    check_paths(src, dest)?;
    // In a plan: trees that earlier steps change are not on the hosts to be compared.
    for (host, tree) in [(src_host, src), (ctx.host.name.as_str(), dest)] {
        if let Some(by) = ctx.overlay_of(host).and_then(|o| o.anything_within(tree)) {
            return Err(crate::plan::overlay::not_derivable(format!(
                "{by} changes {host}:{tree}; what it holds then is known only when it runs"
            )));
        }
    }
    let excl = excludes(args);
    let from = source(ctx, src_host)?;
    let (a, b) = tokio::join!(
        manifest(from, ctx, src, &excl),
        manifest(ctx.host, ctx, dest, &excl)
    );
    let (a, b) = (a?, b?);
    let Some((src_digest, entries)) = a else {
        bail!("sync: {src_host}:{src} does not exist");
    };
    let saw = json!({ "src_digest": src_digest, "dest_digest": b.as_ref().map(|x| x.0.clone()), "entries": entries });
    if b.as_ref().map(|x| &x.0) == Some(&src_digest) {
        return Ok(Probe::no_change(saw));
    }
    let summary = match &b {
        None => format!("copy {src_host}:{src} → {dest} ({entries} entries, new)"),
        Some((_, n)) => format!(
            "replace {dest} ({n} entries) with a copy of {src_host}:{src} ({entries} entries); the old tree is kept for undo"
        ),
    };
    // The copy's content is the source's at the time it runs; later steps see it as unknown.
    let after = crate::plan::overlay::Effect::Tree {
        path: dest.to_string(),
        state: crate::plan::overlay::TreeState::Unknown {
            why: format!("{{by}} replaces {dest} with a copy of {src_host}:{src}; what is below it is known only when it runs"),
        },
    };
    Ok(Probe::change(summary, None, saw).with_after(vec![after]))
}

pub async fn apply(args: &Map<String, J>, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let (src_host, src, dest) = (
        required(args, "src_host")?,
        required(args, "src")?,
        required(args, "dest")?,
    );
    let dest = dest.trim_end_matches('/');
    let excl = excludes(args);
    let from = source(ctx, src_host)?;
    // 1. The archive, from the source host.
    let pack = format!(
        "cd -- {src} && {find} -print0 | LC_ALL=C sort -z | tar --null --no-recursion -T - -cf -",
        src = quote(src),
        find = find_pruned(&excl)
    );
    let archive = from.run(&pack, None, ctx.become_, ctx.timeout).await?;
    if !archive.ok() {
        bail!(
            "sync: reading {src_host}:{src} failed: {}",
            archive.stderr_text().trim()
        );
    }
    // 2. Unpack next to the destination, then swap (or refill a mount point in place).
    let backup = format!("{dest}.cutover-{}~", ctx.run_id);
    let unpack = format!(
        r#"set -e
d={d}; b={b}
parent=$(dirname -- "$d"); mkdir -p -- "$parent"
if [ -e "$b" ] || [ -L "$b" ]; then echo "backup $b already exists; nothing changed" >&2; exit 3; fi
if mountpoint -q -- "$d"; then
  cp -a -- "$d" "$b"
  find "$d" -mindepth 1 -delete
  tar -xpf - -C "$d"
  echo inplace
else
  tmp=$(mktemp -d -- "$parent/.cutover-sync.XXXXXX")
  trap 'rm -rf -- "$tmp"' EXIT
  tar -xpf - -C "$tmp"
  if [ -e "$d" ] || [ -L "$d" ]; then mv -- "$d" "$b"; echo moved; else echo new; fi
  mv -- "$tmp" "$d"
  trap - EXIT
fi"#,
        d = quote(dest),
        b = quote(&backup)
    );
    let out = ctx.run(&unpack, Some(&archive.stdout)).await?;
    let how = out.stdout_text().trim().to_string();
    if !out.ok() {
        bail!(
            "sync: writing {}:{dest} failed: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    let undo = UndoAction::SyncRestore {
        dest: dest.to_string(),
        backup: (how != "new").then(|| backup.clone()),
        in_place: how == "inplace",
    };
    // 3. Verify: both trees checksummed again.
    let (a, b) = tokio::join!(
        manifest(from, ctx, src, &excl),
        manifest(ctx.host, ctx, dest, &excl)
    );
    let (a, b) = (a?, b?);
    let mut result = Map::new();
    result.insert("bytes".into(), json!(archive.stdout.len()));
    result.insert("src_digest".into(), json!(a.as_ref().map(|x| x.0.clone())));
    result.insert("dest_digest".into(), json!(b.as_ref().map(|x| x.0.clone())));
    if how != "new" {
        result.insert("backup".into(), json!(backup));
    }
    let failed = (a.as_ref().map(|x| &x.0) != b.as_ref().map(|x| &x.0)).then(|| {
        format!(
            "sync: {}:{dest} does not match {src_host}:{src} after the copy (checksums differ: the source changed during the copy, or an owner/group does not exist on {})",
            ctx.host.name, ctx.host.name
        )
    });
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(undo),
        failed,
    })
}

/// The shell script that undoes a sync: the previous tree back in place (or the new one gone).
pub fn undo_script(dest: &str, backup: Option<&str>, in_place: bool) -> String {
    let d = quote(dest);
    match (backup, in_place) {
        (None, _) => format!("rm -rf -- {d}"),
        (Some(b), true) => format!(
            "set -e\nfind {d} -mindepth 1 -delete\ncp -a -- {b}/. {d}/\nrm -rf -- {b}",
            b = quote(b)
        ),
        (Some(b), false) => format!("set -e\nrm -rf -- {d}\nmv -- {b} {d}", b = quote(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_prune() {
        assert_eq!(find_pruned(&[]), "find .");
        assert_eq!(
            find_pruned(&["*.log".into(), "cache/".into(), "a/b c".into()]),
            r"find . \( -name '*.log' -o -name cache -o -path './a/b c' \) -prune -o"
        );
    }

    #[test]
    fn paths_checked() {
        assert!(check_paths("/a", "/b").is_ok());
        assert!(check_paths("/", "/b").is_err());
        assert!(check_paths("a", "/b").is_err());
    }
}
