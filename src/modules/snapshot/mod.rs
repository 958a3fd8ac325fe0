//! `snapshot` (create / merge = roll back / remove = commit a set of snapshots) and
//! `snapshot_usage` (watch a set's COW usage before it turns invalid), for LVM (COW snapshots,
//! `lvconvert --merge`) and btrfs (read-only subvolume snapshots, replaced on rollback).
//!
//! A *set* is one snapshot per volume, all named `NAME-VOLUME`: LVM `VG/NAME-VOLUME`, btrfs
//! `POOL/.snapshots/NAME-VOLUME`. Creating a set checks the whole set first (every origin exists,
//! the VGs have room for every snapshot), so a set is never half-created; if an `lvcreate` still
//! fails, the snapshots made by the same step are removed again.
//!
//! State is read from `lvs`/`vgs --reportformat json` (LC_ALL=C, bytes) and from btrfs's own
//! tools by exit status, never from human text — except lvconvert's "Delaying merge" message,
//! which is cross-checked with the origin's `lv_attr` (`O`: origin with a merging snapshot).

mod args;
mod btrfs;
mod lvm;
mod set;
#[cfg(test)]
mod tests;
mod usage;

pub use args::{MergeSpec, SnapVolume};
pub use lvm::{fill_of_report, snapshot_fill, SnapshotFill};
pub(crate) use lvm::{human, parse_report, round_up, size_bytes, Lv, SizeError, Vg};
pub(crate) use set::{undo_merge, Snapshot};
pub(crate) use usage::SnapshotUsage;
