//! What the commands read from the command line and its files before their work: the
//! inventory path, `-e` variables, the templates directory, the sudo password, the async
//! runtime, and where an output file goes.

use std::path::{Path, PathBuf};

use super::{one, usage, Common, Refusal, RunArgs};
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::vars;
use crate::inventory::{self, Inventory};

pub(super) fn inventory_path(common: &Common) -> Result<&Path, Refusal> {
    common.inventory.as_deref().ok_or_else(|| {
        usage(
            "command line",
            "no inventory given",
            "pass -i FILE or set CUTOVER_INVENTORY",
        )
    })
}

/// The `-e` variables, read after what the inventory declares secret: an error in a -e file
/// may quote a line holding a secret's value. When they are wrong, the playbooks are read
/// before the error is shown, for the same reason: a value they set for a secret name may be
/// what it quotes.
pub(super) fn extra_vars(
    common: &Common,
    inventory: &Path,
    playbooks: &[PathBuf],
) -> Result<Vec<crate::inventory::Var>, Refusal> {
    if common.extra_vars.is_empty() {
        return Ok(Vec::new());
    }
    inventory::declare_secrets(inventory);
    let malformed = vars::malformed_extra_vars(&common.extra_vars);
    let parsed = if malformed.is_empty() {
        vars::parse_extra_vars(&common.extra_vars).map_err(Refusal::Invalid)
    } else {
        Err(Refusal::Usage(malformed))
    };
    if parsed.is_err() {
        for pb in playbooks {
            let _ = crate::playbook::load(pb, &mut Diagnostics::default());
        }
    }
    parsed
}

pub(super) fn templates_dir(common: &Common, playbooks: &[PathBuf]) -> PathBuf {
    if let Some(t) = &common.templates {
        return t.clone();
    }
    let local = PathBuf::from("templates");
    if local.is_dir() {
        return local;
    }
    playbooks
        .first()
        .and_then(|p| p.parent())
        .map(|d| d.join("../templates"))
        .filter(|d| d.is_dir())
        .unwrap_or(local)
}

pub(super) fn load_inventory(common: &Common) -> Result<Inventory, Refusal> {
    Ok(inventory::load_checked(inventory_path(common)?)?)
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Diagnostics> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cli_error("runtime", format!("cannot start the async runtime: {e}")))
}

pub(super) fn cli_error(what: &str, e: impl std::fmt::Display) -> Diagnostics {
    one(Diagnostic::new(crate::diag::Pos::cli(what), e.to_string()))
}

pub(super) fn read_first_line(f: &Path) -> Result<String, Diagnostics> {
    password_from_file(f).map_err(|e| cli_error("become password", e))
}

/// The first line of a password file, which may be a pipe (`<(pass show sudo)`); bounded.
pub(super) fn password_from_file(f: &Path) -> Result<String, String> {
    let bytes = crate::input::read_stream(f, crate::input::MAX_CREDENTIAL_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not text", f.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// The sudo password: from a file, the environment, or a prompt with echo off. Never from an
/// argument (it would show in `ps`).
pub(super) fn become_password(args: &RunArgs) -> anyhow::Result<Option<String>> {
    if let Some(f) = &args.become_password_file {
        return password_from_file(f).map(Some).map_err(anyhow::Error::msg);
    }
    if let Ok(p) = std::env::var("CUTOVER_BECOME_PASSWORD") {
        return Ok(Some(p));
    }
    if args.ask_become_pass {
        return crate::terminal::read_password("sudo password: ").map(Some);
    }
    Ok(None)
}

/// A file a command writes when it is done (`--junit`, `--out`) must have a directory to go
/// to, or the work would be done and its record lost.
pub(super) fn output_file_dir(option: &str, file: Option<&Path>) -> Result<(), Refusal> {
    let Some(file) = file else {
        return Ok(());
    };
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if file.is_dir() {
        return Err(cli_error(
            option,
            format!("{option} {}: is a directory; name a file", file.display()),
        )
        .into());
    }
    if dir.is_dir() {
        return Ok(());
    }
    Err(cli_error(
        option,
        format!(
            "{option} {}: directory {} does not exist",
            file.display(),
            dir.display()
        ),
    )
    .into())
}
