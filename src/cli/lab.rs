//! `cutover lab …`: the lab script shipped in the repository.

use std::path::{Path, PathBuf};

use super::{exit, one, Refusal};
use crate::diag::Diagnostic;

/// `cutover lab …` runs the lab script shipped in the repository.
pub(super) fn cmd_lab(args: &[String]) -> Result<u8, Refusal> {
    let script = lab_script().ok_or_else(|| {
        one(
            Diagnostic::new(crate::diag::Pos::cli("lab"), "lab/lab.sh not found")
                .with_help("run from the cutover repository or set CUTOVER_LAB_DIR"),
        )
    })?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .map_err(|e| {
            one(Diagnostic::new(
                crate::diag::Pos::cli("lab"),
                format!("cannot run {}: {e}", script.display()),
            ))
        })?;
    Ok(status
        .code()
        .map_or(exit::FAILED, |c| c.clamp(0, 255) as u8))
}

fn lab_script() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("CUTOVER_LAB_DIR") {
        candidates.push(PathBuf::from(d).join("lab.sh"));
    }
    candidates.push(PathBuf::from("lab/lab.sh"));
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/cutover → repository root
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join("lab/lab.sh"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}
