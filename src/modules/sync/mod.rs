//! `sync`: copy a directory tree from another host (`src_host`:`src`) to this host (`dest`),
//! preserving owners (by name, as tar does as root), modes, symlinks and hard links, with
//! `exclude` patterns, verified by checksums on both sides afterwards.
//!
//! Two ways to copy (`via: auto|direct|controller`, default `auto`: direct when possible,
//! else through the controller):
//!
//! - **direct**: this host pulls the tree from the source host with rsync over ssh. The hosts
//!   need no standing trust: for this one copy an ephemeral ed25519 key pair is generated on
//!   this host (in a private temporary directory), its public key is authorised on the source
//!   host — restricted (`restrict`, `from=` this host's address, an `expiry-time`, and a
//!   forced command that only lets `rsync --server --sender`, i.e. reading, through), marked
//!   with a comment naming the run — and removed again whatever happens; the private key is
//!   removed with its directory. The source's host key is read over the controller's own,
//!   already verified connection (`/etc/ssh/ssh_host_*_key.pub`) into a temporary known_hosts
//!   file, so this host checks it strictly too; no ssh config of either host is used. The file
//!   list is the same `find` (with the same excludes) as the controller path's, fed to
//!   `rsync --files-from`, so both paths copy exactly the same entries. The tree lands in a
//!   staging directory next to `dest` and is swapped into place as below. If rsync is missing
//!   on either host, or this host cannot reach or log in to the source, `auto` falls back to
//!   the controller path before anything changed; `direct` fails the step.
//! - **controller**: `tar` on the source host → cutover → `tar -x` on this host over the two
//!   hosts' ssh connections, streamed (`transport::pipe`: the archive is never held in the
//!   controller's memory) into a staging directory, swapped into place only when both sides
//!   succeeded.
//!
//! The destination becomes an exact copy of the source minus the excluded paths. The previous
//! destination is kept as `DEST.cutover-RUN~` (moved aside, or copied when DEST is a mount
//! point) so the step can be undone.
//!
//! Checksum ("manifest") of a tree, on both sides, with the same excludes:
//! sha256 over the sorted list of `type mode owner:group [size] path [-> link target]` of every
//! entry, plus sha256 over `sha256sum` of every regular file in sorted order.

mod direct;
#[cfg(test)]
mod tests;
mod tree;

pub use direct::key_options;
pub use tree::SyncRestore;
pub(crate) use tree::TreeSync;
