//! Command-line interface: argument definitions and the commands that don't touch hosts.
//!
//! One file per concern: the arguments (`args`), the exit codes (`exit`), what every command
//! reads first (`inputs`), and a file per command or family of commands.

mod apply;
mod args;
mod check;
mod inputs;
mod inventory;
mod journal;
mod lab;
mod plan;
mod render;
mod rollback;
mod secrets;

use std::io::Write;
use std::process::ExitCode;

use crate::diag::{Diagnostic, Diagnostics};

pub use args::{
    command, parse, AfterArgs, Cli, Command, Common, Format, PlanArgs, RunArgs, SecretsAction,
};

/// Exit codes: the one table the README's and `--help`'s are (a test compares them).
pub use crate::exit;

/// Why a command stopped before its work: the command line is wrong (exit 64), or what it
/// names is (exit 1). Diagnostics convert to the latter, so `?` keeps working.
#[derive(Debug)]
pub enum Refusal {
    Usage(Diagnostics),
    Invalid(Diagnostics),
}

impl From<Diagnostics> for Refusal {
    fn from(d: Diagnostics) -> Self {
        Refusal::Invalid(d)
    }
}

/// A usage error at the command line's option `what`.
fn usage(what: &str, message: impl Into<String>, help: &str) -> Refusal {
    Refusal::Usage(one(
        Diagnostic::new(crate::diag::Pos::cli(what), message).with_help(help)
    ))
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { common, playbooks } => check::cmd_check(&common, playbooks),
        Command::Inventory {
            common,
            host,
            limit,
            format,
        } => inventory::cmd_inventory(&common, host.as_deref(), limit.as_deref(), format),
        Command::Render {
            common,
            template,
            host,
            show_secrets,
        } => render::cmd_render(&common, &template, &host, show_secrets),
        Command::Lab { args } => lab::cmd_lab(&args),
        Command::Apply {
            common,
            run,
            playbook,
        } => apply::cmd_apply(&common, &run, playbook),
        Command::Runs => journal::cmd_runs(),
        Command::Rollback {
            common,
            run,
            after,
            plan,
            discard_writes_since_window,
        } => rollback::cmd_after(
            &common,
            run,
            &after,
            rollback::After::Rollback {
                plan,
                discard_writes: discard_writes_since_window,
            },
        ),
        Command::Commit {
            common,
            run,
            after,
            force,
        } => rollback::cmd_after(&common, run, &after, rollback::After::Commit { force }),
        Command::Resume {
            common,
            run_args,
            run,
        } => apply::cmd_resume(&common, &run_args, &run),
        Command::Secrets { action } => secrets::cmd_secrets(action)
            .map_err(|e| inputs::cli_error("secrets", format!("{e:#}")).into()),
        Command::Plan {
            common,
            playbook,
            limit,
            tags,
            skip_tags,
            forks,
            format,
            out,
            accept_new_host_keys,
            become_password_file,
        } => plan::cmd_plan(
            &common,
            playbook,
            PlanArgs {
                limit,
                tags,
                skip_tags,
                forks,
                format,
                out,
                accept_new_host_keys,
                become_password_file,
            },
        ),
        Command::Show { run, raw } => journal::cmd_show(&run, raw),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Refusal::Invalid(diags)) => {
            report(diags);
            ExitCode::from(exit::FAILED)
        }
        Err(Refusal::Usage(diags)) => {
            report(diags);
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Print diagnostics to stderr, sorted by position, with a count.
pub fn report(diags: Diagnostics) {
    let n = diags.len();
    let mut err = std::io::stderr().lock();
    for d in diags.sorted() {
        let _ = write!(err, "{}", d.render());
    }
    let _ = writeln!(
        err,
        "{n} error{} found; nothing was run on any host",
        if n == 1 { "" } else { "s" }
    );
}

fn one(d: Diagnostic) -> Diagnostics {
    let mut ds = Diagnostics::default();
    ds.push(d);
    ds
}
