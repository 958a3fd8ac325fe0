//! The `sync` module: deciding by manifests of both trees, the copy through the controller,
//! the swap of the staged tree into place, and the way back.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as J};

use super::direct::{copy_direct, direct_unavailable, Direct, DirectJob};
use crate::modules::contract::unknown_tree;
use crate::modules::contract::Module;
use crate::modules::spec::{arg, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;
use crate::transport::HostConn;

/// The arguments of a `sync` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct SyncArgs {
    #[serde(deserialize_with = "args::required_text")]
    pub(super) src_host: String,
    #[serde(deserialize_with = "args::required_text")]
    pub(super) src: String,
    #[serde(deserialize_with = "args::required_text")]
    pub(super) dest: String,
    #[serde(default, deserialize_with = "args::str_list")]
    pub(super) exclude: Vec<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub(super) via: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub(super) src_address: Option<String>,
}

/// `find .` with the excluded paths pruned: a pattern with a `/` matches the path from the
/// tree's top (`logs/*.gz`, `cache`), one without matches a name anywhere (`*.tmp`).
pub(super) fn find_pruned(excl: &[String]) -> String {
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

/// `via:`, how the tree is copied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Via {
    /// Host to host when possible, else through the controller.
    Auto,
    Direct,
    Controller,
}

impl SyncArgs {
    /// `via:`, `auto` when not given. Read when the step runs, not when it is parsed: as
    /// written (for `peer_hosts`) it may still be a `{{ … }}`.
    pub(super) fn via(&self) -> Result<Via> {
        Ok(match self.via.as_deref().unwrap_or("auto") {
            "auto" => Via::Auto,
            "direct" => Via::Direct,
            "controller" => Via::Controller,
            other => bail!("sync: via must be auto, direct or controller, found `{other}`"),
        })
    }
}

/// Put a staged tree (`stage`, next to `dest`) into place: the old `dest` moved aside as
/// `backup`, or — a mount point, which cannot be moved — copied to `backup` and refilled in
/// place. Prints how: `new`, `moved` or `inplace`.
fn swap_script(dest: &str, backup: &str, stage: &str) -> String {
    format!(
        r#"set -e
d={d}; b={b}; s={s}
if [ -e "$b" ] || [ -L "$b" ]; then rm -rf -- "$s"; echo "backup $b already exists; nothing changed" >&2; exit 3; fi
if mountpoint -q -- "$d"; then
  cp -a -- "$d" "$b"
  find "$d" -mindepth 1 -delete
  cp -a -- "$s"/. "$d"/
  chown --reference="$s" -- "$d"; chmod --reference="$s" -- "$d"; touch -r "$s" -- "$d"
  rm -rf -- "$s"
  echo inplace
else
  if [ -e "$d" ] || [ -L "$d" ]; then mv -- "$d" "$b"; echo moved; else echo new; fi
  mv -- "$s" "$d"
fi"#,
        d = quote(dest),
        b = quote(backup),
        s = quote(stage)
    )
}

pub(super) fn check_paths(src: &str, dest: &str) -> Result<()> {
    for (what, p) in [("src", src), ("dest", dest)] {
        let t = p.trim_end_matches('/');
        if !p.starts_with('/') || t.is_empty() {
            bail!("sync: {what} must be an absolute path below /, found `{p}`");
        }
    }
    Ok(())
}

async fn probe(args: &SyncArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let (src_host, src, dest) = (
        args.src_host.as_str(),
        args.src.as_str(),
        args.dest.as_str(),
    );
    check_paths(src, dest)?;
    // In a plan: trees that earlier steps change are not on the hosts to be compared.
    for (host, tree) in [(src_host, src), (ctx.host.name.as_str(), dest)] {
        if let Some(by) = ctx.overlay_of(host).and_then(|o| o.anything_within(tree)) {
            return Err(crate::overlay::not_derivable(format!(
                "{by} changes {host}:{tree}; what it holds then is known only when it runs"
            )));
        }
    }
    // Refused before any command runs (it used to be read after both trees were checksummed).
    let via = args.via()?;
    let excl = &args.exclude;
    let from = source(ctx, src_host)?;
    let (a, b) = tokio::join!(
        manifest(from, ctx, src, excl),
        manifest(ctx.host, ctx, dest, excl)
    );
    let (a, b) = (a?, b?);
    let Some((src_digest, entries)) = a else {
        bail!("sync: {src_host}:{src} does not exist");
    };
    let saw = json!({ "src_digest": src_digest, "dest_digest": b.as_ref().map(|x| x.0.clone()), "entries": entries });
    if b.as_ref().map(|x| &x.0) == Some(&src_digest) {
        return Ok(Probe::no_change(saw));
    }
    let how = match via {
        Via::Auto => "",
        Via::Direct => ", host to host",
        Via::Controller => ", through the controller",
    };
    let summary = match &b {
        None => format!("copy {src_host}:{src} → {dest} ({entries} entries, new{how})"),
        Some((_, n)) => format!(
            "replace {dest} ({n} entries) with a copy of {src_host}:{src} ({entries} entries{how}); the old tree is kept for undo"
        ),
    };
    // The copy's content is the source's at the time it runs; later steps see it as unknown.
    let after = crate::overlay::Effect::Tree {
        path: dest.to_string(),
        state: crate::overlay::TreeState::Unknown {
            why: format!("{{by}} replaces {dest} with a copy of {src_host}:{src}; what is below it is known only when it runs"),
        },
    };
    Ok(Probe::change(summary, None, saw).with_after(vec![after]))
}

async fn apply(args: &SyncArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let (src_host, src) = (args.src_host.as_str(), args.src.as_str());
    let dest = args.dest.trim_end_matches('/');
    let excl = &args.exclude;
    let from = source(ctx, src_host)?;
    let via = args.via()?;
    let mut direct_skipped: Option<String> = None;
    if via != Via::Controller {
        let job = DirectJob {
            src_host,
            src,
            dest,
            excl,
            from,
            src_address: args.src_address.as_deref(),
        };
        let why = match direct_unavailable(&job, ctx).await? {
            Some(why) => why,
            None => match copy_direct(&job, ctx).await? {
                Direct::Done(outcome) => return Ok(outcome),
                Direct::Unavailable(why) => why,
            },
        };
        if via == Via::Direct {
            bail!(
                "sync via: direct from {src_host} to {}: {why}; nothing was changed",
                ctx.host.name
            );
        }
        direct_skipped = Some(why);
    }
    // 1. The archive, streamed from the source host through the controller (never held in
    //    its memory) into a staging directory next to the destination.
    let backup = format!("{dest}.cutover-{}~", ctx.run_id);
    let pack = format!(
        "cd -- {src} && {find} -print0 | LC_ALL=C sort -z | tar --null --no-recursion -T - -cf -",
        src = quote(src),
        find = find_pruned(excl)
    );
    let receive = format!(
        r#"set -e
d={d}; b={b}
if [ -e "$b" ] || [ -L "$b" ]; then echo "backup $b already exists; nothing changed" >&2; exit 3; fi
parent=$(dirname -- "$d"); mkdir -p -- "$parent"
s=$(mktemp -d -- "$parent/.cutover-sync.XXXXXX")
printf '%s\n' "$s"
tar -xpf - -C "$s" || {{ rm -rf -- "$s"; exit 1; }}"#,
        d = quote(dest),
        b = quote(&backup)
    );
    let (sent, got, bytes) = crate::transport::pipe(
        (from, &pack, ctx.become_),
        (ctx.host, &receive, ctx.become_),
        ctx.timeout,
    )
    .await?;
    let stage = got.stdout_text().lines().next().unwrap_or("").to_string();
    if !sent.ok() || !got.ok() {
        // A source that failed part-way may still have sent a readable archive: nothing is
        // put in place unless both sides succeeded.
        if stage.starts_with('/') {
            let _ = ctx.run(&format!("rm -rf -- {}", quote(&stage)), None).await;
        }
        if !sent.ok() {
            bail!(
                "sync: reading {src_host}:{src} failed: {}; nothing was changed",
                sent.stderr_text().trim()
            );
        }
        bail!(
            "sync: receiving into {}:{dest} failed: {}; nothing was changed",
            ctx.host.name,
            got.stderr_text().trim()
        );
    }
    // 2. The staged tree into place, and checked.
    let mut result = Map::new();
    result.insert("via".into(), json!("controller"));
    if let Some(why) = &direct_skipped {
        result.insert("direct_skipped".into(), json!(why));
    }
    result.insert("bytes".into(), json!(bytes));
    swap_and_verify(
        ctx,
        (from, src_host, src),
        dest,
        &backup,
        &stage,
        excl,
        result,
    )
    .await
}

/// Put the staged tree in place (`swap_script`), then checksum both trees again: the step's
/// outcome, with its undo, `result` completed by the digests and the backup.
pub(super) async fn swap_and_verify(
    ctx: &ModCtx<'_>,
    (from, src_host, src): (&HostConn, &str, &str),
    dest: &str,
    backup: &str,
    stage: &str,
    excl: &[String],
    mut result: Map<String, J>,
) -> Result<Outcome> {
    let here = &ctx.host.name;
    let out = ctx.run(&swap_script(dest, backup, stage), None).await?;
    let how = out.stdout_text().trim().to_string();
    if !out.ok() {
        bail!(
            "sync: writing {here}:{dest} failed: {}",
            out.stderr_text().trim()
        );
    }
    let undo = UndoAction::SyncRestore(SyncRestore {
        dest: dest.to_string(),
        backup: (how != "new").then(|| backup.to_string()),
        in_place: how == "inplace",
    });
    let (a, b) = tokio::join!(
        manifest(from, ctx, src, excl),
        manifest(ctx.host, ctx, dest, excl)
    );
    let (a, b) = (a?, b?);
    result.insert("src_digest".into(), json!(a.as_ref().map(|x| x.0.clone())));
    result.insert("dest_digest".into(), json!(b.as_ref().map(|x| x.0.clone())));
    if how != "new" {
        result.insert("backup".into(), json!(backup));
    }
    let failed = (a.as_ref().map(|x| &x.0) != b.as_ref().map(|x| &x.0)).then(|| {
        format!(
            "sync: {here}:{dest} does not match {src_host}:{src} after the copy (checksums differ: the source changed during the copy, or an owner/group does not exist on {here})"
        )
    });
    Ok(Outcome {
        changed: true,
        result,
        undo: Some(undo),
        failed,
    })
}

/// The way back of a `sync` step: the tree it replaced (kept as `backup`, or copied back into
/// place when the step wrote in place) put back, or the tree it created removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncRestore {
    pub dest: String,
    pub backup: Option<String>,
    pub in_place: bool,
}

impl SyncRestore {
    pub fn describe(&self) -> String {
        match self.backup {
            Some(_) => format!("put back the previous {}", self.dest),
            None => format!("remove {} (created by sync)", self.dest),
        }
    }

    pub fn script(&self) -> String {
        undo_script(&self.dest, self.backup.as_deref(), self.in_place)
    }
}

/// The shell script that undoes a sync: the previous tree back in place (or the new one gone).
fn undo_script(dest: &str, backup: Option<&str>, in_place: bool) -> String {
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

/// The `sync` module: a directory tree copied from another host.
pub(crate) struct TreeSync;

impl Module for TreeSync {
    type Args = SyncArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "sync",
        args: &[
            req("src_host", T::Str),
            req("src", T::Path),
            req("dest", T::Path),
            arg("exclude", T::StrList),
            ArgSpec {
                name: "via",
                ty: T::Str,
                required: false,
                choices: &["auto", "direct", "controller"],
            },
            arg("src_address", T::Address),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    async fn probe(args: &SyncArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &SyncArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn peer_hosts(args: &SyncArgs) -> Vec<String> {
        vec![args.src_host.clone()]
    }

    fn touches(args: &SyncArgs) -> Vec<Effect> {
        vec![unknown_tree(&args.dest)]
    }
}
