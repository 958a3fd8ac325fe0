//! A btrfs filesystem on a loop device, for tests of snapshots with `address: local` (needs
//! root and mkfs.btrfs; without them the tests say SKIPPED and pass).

use std::path::PathBuf;
use std::process::{Command, Output};

use super::project::text;

fn sh(script: &str) -> Output {
    Command::new("sh").args(["-c", script]).output().unwrap()
}

/// A btrfs filesystem on a loop device, mounted at `pool`, with a subvolume `home`;
/// unmounted when dropped.
pub struct Pool {
    pub pool: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pool {
    pub fn new() -> Option<Pool> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let pool = dir.path().join("pool");
        std::fs::create_dir_all(&pool).unwrap();
        let o = sh(&format!(
            "truncate -s 160M {img} && mkfs.btrfs -q {img} && mount -o loop {img} {pool} && btrfs subvolume create {pool}/home >/dev/null",
            img = img.display(),
            pool = pool.display()
        ));
        if !o.status.success() {
            eprintln!(
                "SKIPPED: no loop-mounted btrfs here (root and mkfs.btrfs needed): {}",
                text(&o)
            );
            return None;
        }
        Some(Pool { pool, _dir: dir })
    }

    pub fn home(&self) -> PathBuf {
        self.pool.join("home")
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.pool.display()));
    }
}
