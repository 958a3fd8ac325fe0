//! The run journal: one append-only JSON-lines file per run, every event on disk (fsync)
//! before the action that follows it, so a run killed at any instant can be resumed or rolled
//! back from what the journal says.
//!
//! Events from hosts working in parallel are committed together (one fsync for all that are
//! waiting), which keeps the cost per step low without weakening the guarantee: no host goes on
//! before its event is durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value as J};
use tokio::sync::{mpsc, oneshot};

use crate::controller::clock::now_rfc3339;
use crate::controller::state_dir::state_dir;
use crate::controller::user::{controller_name, current_user};

pub fn runs_dir() -> PathBuf {
    state_dir().join("runs")
}

/// A new run id: sortable by time, unique enough for one controller.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:04x}",
        &compact[..8],
        &compact[8..],
        (nanos ^ std::process::id()) & 0xffff
    )
}

struct Pending {
    event: J,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// Handle to the journal writer; cheap to clone into host tasks.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Pending>,
    pub path: PathBuf,
    pub run_id: String,
}

impl Journal {
    /// Create the run directory and start the writer.
    pub fn create(run_id: &str) -> Result<Journal> {
        let dir = runs_dir().join(run_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self::start(file, path, run_id))
    }

    /// Continue an existing run's journal (resume, rollback).
    pub fn reopen(run_id: &str) -> Result<Journal> {
        let path = runs_dir().join(run_id).join("journal.jsonl");
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self::start(file, path, run_id))
    }

    fn start(file: File, path: PathBuf, run_id: &str) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer(file, rx))
            .expect("spawning the journal thread");
        Journal {
            tx,
            path,
            run_id: run_id.to_string(),
        }
    }

    /// Append an event and wait until it is on disk.
    pub async fn record(&self, kind: &str, fields: J) -> Result<()> {
        // Nothing secret reaches the disk, whatever a module put in its detail or result.
        let mut fields = crate::secrets::redact_json(&fields);
        if let J::Object(m) = &mut fields {
            m.insert("event".into(), J::String(kind.into()));
            m.insert("ts".into(), J::String(now_rfc3339()));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                event: fields,
                done,
            })
            .map_err(|_| anyhow::anyhow!("journal writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("journal writer stopped"))?
            .with_context(|| format!("cannot write journal {}", self.path.display()))
    }
}

/// Group commit: take everything waiting, write it, one fsync, then release all writers.
fn writer(mut file: File, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut buf = Vec::new();
        for p in &batch {
            let _ = serde_json::to_writer(&mut buf, &p.event);
            buf.push(b'\n');
        }
        let result = file.write_all(&buf).and_then(|_| file.sync_data());
        for p in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            let _ = p.done.send(r);
        }
    }
}

/// Read a run's journal back. A torn last line (the controller died mid-write) is ignored.
pub fn read(run_id: &str) -> Result<Vec<J>> {
    let dir = runs_dir();
    // A run id names a directory under runs/: never a path (`../x`), never a hidden name.
    let plain = !run_id.is_empty()
        && run_id.len() <= 128
        && !run_id.starts_with('.')
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let path = dir.join(run_id).join("journal.jsonl");
    if !plain || !path.is_file() {
        let ids: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let hint = crate::diag::closest(run_id, ids.iter().map(String::as_str))
            .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
        bail!(
            "no run `{run_id}` in {} (`cutover runs` lists them){hint}",
            dir.display()
        );
    }
    read_path(&path)
}

pub fn read_path(path: &Path) -> Result<Vec<J>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Every run, newest first, with its first event and its state (from all its events).
pub fn list_runs() -> Result<Vec<(String, J, super::run_status::RunState)>> {
    let dir = runs_dir();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let events = read_path(&e.path().join("journal.jsonl")).unwrap_or_default();
        let Some(first) = events.first().cloned() else {
            continue;
        };
        out.push((id, first, super::run_status::run_state(&events)));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(out)
}

/// A summary line for `cutover runs`: id, start, playbook, state with its time, user.
pub fn describe_run(id: &str, first: &J, state: &super::run_status::RunState) -> String {
    format!(
        "{id}  {}  {}  {}  by {}",
        first["ts"].as_str().unwrap_or(""),
        first["playbook"].as_str().unwrap_or(""),
        state.describe(),
        first["user"].as_str().unwrap_or("?")
    )
}

/// The fields every run starts with.
pub fn run_started_fields(
    run_id: &str,
    playbook: &Path,
    inventory: &Path,
    fingerprint: &str,
    limit: Option<&str>,
) -> J {
    json!({
        "run_id": run_id,
        "playbook": playbook.display().to_string(),
        "inventory": inventory.display().to_string(),
        // Which inventory, whatever path named it: a rehearsal predicts only its own
        // inventory's window (engine::window::prediction).
        "inventory_path": super::window::prediction::inventory_id(inventory).display().to_string(),
        "fingerprint": fingerprint,
        "limit": limit,
        "user": current_user(),
        "controller": controller_name(),
        "pid": std::process::id(),
    })
}
