//! `cutover rollback` and `cutover commit`: what comes after a run.

use super::inputs::{read_first_line, runtime, templates_dir};
use super::{exit, AfterArgs, Common, Refusal};

/// What `cmd_after` does.
pub(super) enum After {
    Rollback { plan: bool, discard_writes: bool },
    Commit { force: bool },
}

pub(super) fn cmd_after(
    common: &Common,
    run: String,
    a: &AfterArgs,
    what: After,
) -> Result<u8, Refusal> {
    let become_password = match &a.become_password_file {
        Some(f) => Some(read_first_line(f)?),
        None => std::env::var("CUTOVER_BECOME_PASSWORD").ok(),
    };
    let opts = crate::engine::recovery::AfterOptions {
        run_id: run,
        inventory: common.inventory.clone(),
        templates_dir: templates_dir(common, &[]),
        transport: crate::transport::TransportOptions {
            accept_new_host_keys: a.accept_new_host_keys,
            connect_timeout: None,
            become_password: become_password.map(std::sync::Arc::new),
        },
        break_lock: a.break_lock,
        output: a.output,
        discard_writes: matches!(
            what,
            After::Rollback {
                discard_writes: true,
                ..
            }
        ),
        force: matches!(what, After::Commit { force: true }),
    };
    let rt = runtime()?;
    let result = match what {
        After::Commit { .. } => rt.block_on(crate::engine::commit::commit(opts)),
        After::Rollback { plan: true, .. } => {
            return match rt.block_on(crate::engine::recovery::rollback_plan(opts)) {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("error: {}", crate::secrets::redact(&format!("{e:#}")));
                    Ok(exit::FAILED)
                }
            }
        }
        After::Rollback { .. } => rt.block_on(crate::engine::recovery::rollback(opts)),
    };
    match result {
        Ok(true) => Ok(exit::OK),
        Ok(false) => Ok(exit::HOST_FAILED),
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&format!("{e:#}")));
            Ok(exit::FAILED)
        }
    }
}
