//! `cutover apply` and `cutover resume`: a run's options from the command line, and its exit
//! code.

use std::path::PathBuf;

use super::inputs::{
    become_password, cli_error, extra_vars, inventory_path, output_file_dir, runtime, templates_dir,
};
use super::plan::apply_saved_plan;
use super::{exit, Common, Refusal, RunArgs};
use crate::inventory;

/// Run options from the command line, for a playbook and inventory.
pub(super) fn run_options(
    common: &Common,
    args: &RunArgs,
    playbook: PathBuf,
    inventory: PathBuf,
) -> Result<crate::engine::RunOptions, Refusal> {
    let extra_vars = extra_vars(common, &inventory, std::slice::from_ref(&playbook))?;
    output_file_dir("--junit", args.junit.as_deref())?;
    let templates_dir = templates_dir(common, std::slice::from_ref(&playbook));
    let become_password =
        become_password(args).map_err(|e| cli_error("become password", format!("{e:#}")))?;
    Ok(crate::engine::RunOptions {
        playbook,
        inventory,
        templates_dir,
        extra_vars,
        limit: args.limit.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        forks: args.forks.max(1),
        start_at_step: args.start_at_step.clone(),
        approvals: args.approve.clone(),
        output: args.output,
        junit: args.junit.clone(),
        break_lock: args.break_lock,
        transport: crate::transport::TransportOptions {
            accept_new_host_keys: args.accept_new_host_keys,
            connect_timeout: None,
            become_password: become_password.map(std::sync::Arc::new),
        },
        verbose: args.verbose,
        expected: None,
        resume: None,
    })
}

pub(super) fn cmd_apply(common: &Common, args: &RunArgs, playbook: PathBuf) -> Result<u8, Refusal> {
    if crate::plan::saved::looks_like_plan(&playbook) {
        if let Some(i) = &common.inventory {
            // A hand-edited plan's error may quote a line: know the secrets first.
            inventory::declare_secrets(i);
        }
        let saved = crate::plan::saved::read(&playbook)?;
        return apply_saved_plan(common, args, &playbook, saved);
    }
    let inventory = inventory_path(common)?.to_path_buf();
    let opts = run_options(common, args, playbook, inventory)?;
    finish_run(runtime()?.block_on(crate::engine::apply(opts)))
}

pub(super) fn finish_run(
    r: Result<crate::engine::RunResult, crate::engine::RunError>,
) -> Result<u8, Refusal> {
    use crate::engine::{RunError, RunStatus};
    match r {
        Ok(r) => Ok(match r.status {
            RunStatus::Ok => exit::OK,
            RunStatus::Failed => exit::HOST_FAILED,
            RunStatus::Unreachable => exit::UNREACHABLE,
            RunStatus::Interrupted => exit::INTERRUPTED,
            RunStatus::Locked => exit::LOCKED,
            RunStatus::Refused => exit::UNREACHABLE,
        }),
        Err(RunError::Invalid(d)) => Err(d.into()),
        Err(RunError::Locked(msg)) => {
            eprintln!("error: {msg}");
            Ok(exit::LOCKED)
        }
        Err(RunError::Other(e)) => {
            eprintln!("error: {}", crate::secrets::redact(&format!("{e:#}")));
            Ok(exit::FAILED)
        }
    }
}

pub(super) fn cmd_resume(common: &Common, args: &RunArgs, run: &str) -> Result<u8, Refusal> {
    let events =
        crate::engine::journal::read(run).map_err(|e| cli_error("resume", format!("{e:#}")))?;
    let started = events
        .iter()
        .find(|e| e["event"] == "run_started")
        .ok_or_else(|| cli_error("resume", format!("run {run} has no start event")))?;
    let playbook = PathBuf::from(started["playbook"].as_str().unwrap_or(""));
    let inventory = common
        .inventory
        .clone()
        .unwrap_or_else(|| PathBuf::from(started["inventory"].as_str().unwrap_or("")));
    let mut opts = run_options(common, args, playbook, inventory)?;
    opts.limit = started["limit"].as_str().map(str::to_string).or(opts.limit);
    opts.start_at_step = None;
    opts.resume = Some(run.to_string());
    finish_run(runtime()?.block_on(crate::engine::apply(opts)))
}
