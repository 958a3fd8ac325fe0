//! `cutover plan`, and applying a saved plan exactly as it was reviewed.

use std::path::{Path, PathBuf};

use super::apply::{finish_run, run_options};
use super::inputs::{
    cli_error, extra_vars, inventory_path, output_file_dir, read_first_line, runtime, templates_dir,
};
use super::{exit, Common, PlanArgs, Refusal, RunArgs};
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory;

pub(super) fn cmd_plan(common: &Common, playbook: PathBuf, a: PlanArgs) -> Result<u8, Refusal> {
    use std::io::IsTerminal;
    let inventory = inventory_path(common)?.to_path_buf();
    let extra_vars = extra_vars(common, &inventory, std::slice::from_ref(&playbook))?;
    output_file_dir("--out", a.out.as_deref())?;
    let templates_dir = templates_dir(common, std::slice::from_ref(&playbook));
    let become_password = match &a.become_password_file {
        Some(f) => Some(read_first_line(f)?),
        None => std::env::var("CUTOVER_BECOME_PASSWORD").ok(),
    };
    let opts = crate::plan::PlanOptions {
        playbook,
        inventory,
        templates_dir,
        extra_vars,
        limit: a.limit,
        tags: a.tags,
        skip_tags: a.skip_tags,
        forks: a.forks.max(1),
        approvals: Vec::new(),
        transport: crate::transport::TransportOptions {
            accept_new_host_keys: a.accept_new_host_keys,
            connect_timeout: None,
            become_password: become_password.map(std::sync::Arc::new),
        },
    };
    let mut inputs = crate::plan::load_inputs(&opts)?;
    let agreed = crate::engine::window::fit::agree(&mut inputs.inv, &inputs.plays.playbook);
    let mut plan = runtime()?.block_on(crate::plan::plan_loaded(&inputs, &opts));
    plan.maintenance_window = agreed
        .as_ref()
        .map(crate::engine::window::fit::Agreed::plan_json);
    let text = match a.format {
        crate::plan::Format::Text => {
            crate::plan::render_text(&plan, std::io::stdout().is_terminal())
        }
        crate::plan::Format::Markdown => crate::plan::render_markdown(&plan),
        crate::plan::Format::Json => crate::plan::render_json(&plan),
    };
    print!("{}", crate::secrets::redact(&text));
    if let Some(out) = &a.out {
        crate::output_file::write(
            out,
            crate::secrets::redact(&crate::plan::render_json(&plan)).as_bytes(),
            0o644,
        )
        .map_err(|e| cli_error("--out", format!("cannot write {}: {e}", out.display())))?;
        eprintln!(
            "plan saved to {}; apply it with: cutover apply -i {} {}",
            out.display(),
            opts.inventory.display(),
            out.display()
        );
    }
    Ok(if !plan.unreachable.is_empty() {
        exit::FAILED
    } else if plan.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// `cutover apply PLAN.json`: re-probe, refuse on drift, else apply exactly what was reviewed.
pub(super) fn apply_saved_plan(
    common: &Common,
    args: &RunArgs,
    path: &Path,
    saved: crate::plan::Plan,
) -> Result<u8, Refusal> {
    let playbook = PathBuf::from(&saved.playbook);
    let inventory = common
        .inventory
        .clone()
        .unwrap_or_else(|| PathBuf::from(&saved.inventory));
    let mut run = run_options(common, args, playbook, inventory)?;
    refuse_unreviewable(path, &saved, args, &run)?;
    // What the plan was made with (the command line may only repeat it).
    run.limit = saved.limit.clone();
    run.tags = saved.tags.clone();
    run.skip_tags = saved.skip_tags.clone();
    run.start_at_step = None;
    let opts = crate::plan::PlanOptions {
        playbook: run.playbook.clone(),
        inventory: run.inventory.clone(),
        templates_dir: run.templates_dir.clone(),
        extra_vars: run.extra_vars.clone(),
        limit: run.limit.clone(),
        tags: run.tags.clone(),
        skip_tags: run.skip_tags.clone(),
        forks: run.forks,
        approvals: run.approvals.clone(),
        transport: run.transport.clone(),
    };
    let rt = runtime()?;
    // Loaded once: the plan made again and the run that applies it read the same inputs.
    let mut inputs = crate::plan::load_inputs(&opts)?;
    // The steps see `window_prediction` as the reviewed plan's did.
    crate::engine::window::fit::agree(&mut inputs.inv, &inputs.plays.playbook);
    let now = rt.block_on(crate::plan::plan_loaded(&inputs, &opts));
    let drift = crate::plan::drift(&saved, &now);
    if !drift.is_empty() {
        eprintln!(
            "error: {} no longer matches the hosts or the inputs; nothing was applied:",
            path.display()
        );
        for d in &drift {
            eprintln!("  - {}", crate::secrets::redact(d));
        }
        eprintln!("Make a new plan and have it reviewed again.");
        return Ok(exit::FAILED);
    }
    let expected: crate::engine::Expected = saved
        .entries
        .iter()
        .map(|e| {
            (
                (e.play, e.step, e.handler, e.item, e.host.clone()),
                (e.outcome.clone(), e.fingerprint.clone()),
            )
        })
        .collect();
    run.expected = Some(std::sync::Arc::new(expected));
    finish_run(rt.block_on(crate::engine::apply_loaded(inputs, run)))
}

/// Refuse, before any host is contacted, a saved plan that cannot be applied as it was
/// reviewed: options naming nothing in its playbook (exit 1), options that would apply
/// something else than the plan (exit 64), hosts that were unreachable when it was made and
/// inputs other than its own (exit 1).
fn refuse_unreviewable(
    path: &Path,
    saved: &crate::plan::Plan,
    args: &RunArgs,
    run: &crate::engine::RunOptions,
) -> Result<(), Refusal> {
    let mut problems = Diagnostics::default();
    let pb = crate::playbook::load(&run.playbook, &mut problems);
    let inv = inventory::load(&run.inventory, &mut problems);
    let (Some(pb), Some(inv)) = (pb, inv) else {
        return Err(problems.into());
    };
    let wrong = pb.check_run_options(
        args.start_at_step.as_deref(),
        &args.tags,
        &args.skip_tags,
        &args.approve,
    );
    if !wrong.is_empty() {
        return Err(wrong.into());
    }
    plan_options_conflict(path, saved, args)?;
    let inputs = crate::plan::inputs(&pb, &inv, &run.templates_dir, &run.extra_vars);
    let mut refused = crate::plan::saved::refusals(path, saved, &inputs);
    let covered = crate::plan::hosts_covered(&pb, &inv, saved.limit.as_deref());
    if let Some(d) = crate::plan::saved::host_refusal(path, saved, &covered) {
        refused.push(d);
    }
    if !refused.is_empty() {
        return Err(refused.into());
    }
    if !problems.is_empty() {
        return Err(problems.into());
    }
    Ok(())
}

/// A saved plan is applied whole, to the hosts and steps it was made for: `--limit`, `--tags`
/// and `--skip-tags` may only repeat the plan's, and `--start-at-step` has no place.
fn plan_options_conflict(
    path: &Path,
    saved: &crate::plan::Plan,
    args: &RunArgs,
) -> Result<(), Refusal> {
    let mut diags = Diagnostics::default();
    let mut conflict = |option: &str, message: String| {
        diags.push(
            Diagnostic::new(crate::diag::Pos::cli(option), message).with_help(
                "a saved plan is applied as it was reviewed; drop the option, or make a new plan with it",
            ),
        );
    };
    let plan = path.display();
    if let Some(l) = args
        .limit
        .as_ref()
        .filter(|l| saved.limit.as_ref() != Some(*l))
    {
        let was = saved
            .limit
            .as_ref()
            .map_or("without --limit".to_string(), |w| {
                format!("with --limit {w}")
            });
        conflict("--limit", format!("--limit {l}: {plan} was made {was}"));
    }
    for (option, given, planned) in [
        ("--tags", &args.tags, &saved.tags),
        ("--skip-tags", &args.skip_tags, &saved.skip_tags),
    ] {
        if !given.is_empty() && given != planned {
            conflict(
                option,
                format!(
                    "{option} {}: {plan} was made with {option} [{}]",
                    given.join(","),
                    planned.join(",")
                ),
            );
        }
    }
    if let Some(step) = &args.start_at_step {
        conflict(
            "--start-at-step",
            format!("--start-at-step {step}: {plan} is applied whole, from its first step"),
        );
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Usage(diags))
    }
}
