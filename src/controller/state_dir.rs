//! Where cutover keeps its state on the controller (runs, locks).

use std::path::PathBuf;

/// Where runs are kept: `$CUTOVER_STATE_DIR`, else `.cutover/` in the working directory
/// (next to the playbooks, like Terraform's `.terraform/`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("CUTOVER_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cutover"))
}
