//! The command line: every command, its arguments and options (clap derive), and the checks
//! of an option's value that need no input file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit;

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "Provision and upgrade an on-premises application cluster over ssh, with snapshots and rollback",
    after_help = exit::help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The command line, with the exit-code table under each command's `--help` as well.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommands(|c| c.after_help(exit::help()))
}

/// Parse the process's arguments (`--help` and `--version` come back as errors, as clap's).
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Inventory file (YAML).
    #[arg(
        short = 'i',
        long = "inventory",
        env = "CUTOVER_INVENTORY",
        value_name = "FILE"
    )]
    pub inventory: Option<PathBuf>,
    /// Extra variable, highest precedence: `name=value` or `@file.yml`. Repeatable.
    #[arg(short = 'e', long = "extra-vars", value_name = "VAR")]
    pub extra_vars: Vec<String>,
    /// Directory of templates (default: ./templates, or ../templates next to the playbook).
    #[arg(long = "templates", value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate inventory, playbooks and templates without touching any host.
    Check {
        #[command(flatten)]
        common: Common,
        /// Playbooks to check (default: every *.yml in ./playbooks).
        playbooks: Vec<PathBuf>,
    },
    /// List hosts and groups, or show one host's variables and where each comes from.
    Inventory {
        #[command(flatten)]
        common: Common,
        /// Show this host's resolved variables with their origin.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Only hosts matching this pattern (`app_nodes:!app2`, `db*`, `a:&b`).
        #[arg(short = 'l', long, value_name = "PATTERN", value_parser = host_pattern)]
        limit: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a template as it would be written on a host.
    Render {
        #[command(flatten)]
        common: Common,
        /// Template name, relative to the templates directory.
        template: String,
        #[arg(long, value_name = "NAME")]
        host: String,
        /// Print secrets (and values derived from them) in clear. For `render` only: plans,
        /// diffs, journals and logs always mask them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Run a playbook: probe, decide and apply each step on every targeted host.
    Apply {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
        /// The playbook to run.
        playbook: PathBuf,
    },
    /// Dry run: probe every host read-only and show what would change, with diffs.
    /// Exit 0: no changes; 2: changes (or unknowns) pending; 1: error.
    Plan {
        #[command(flatten)]
        common: Common,
        /// The playbook to plan.
        playbook: PathBuf,
        #[arg(short = 'l', long, value_name = "PATTERN", value_parser = host_pattern)]
        limit: Option<String>,
        #[arg(short = 't', long = "tags", value_delimiter = ',')]
        tags: Vec<String>,
        #[arg(long = "skip-tags", value_delimiter = ',')]
        skip_tags: Vec<String>,
        #[arg(short = 'f', long, default_value_t = 50, value_parser = at_least_one)]
        forks: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::plan::Format::Text)]
        format: crate::plan::Format,
        /// Also save the plan (JSON) for `cutover apply FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Accept unknown host keys (a changed key is still refused).
        #[arg(long)]
        accept_new_host_keys: bool,
        /// Read the sudo password from this file (first line). CUTOVER_BECOME_PASSWORD also works.
        #[arg(long, value_name = "FILE")]
        become_password_file: Option<PathBuf>,
    },
    /// Encrypted secrets files (age format): keygen, encrypt, view, edit.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Undo every change of a run (finished, failed or killed) that is not undone yet,
    /// newest first: snapshots merged, files restored, services and members put back.
    Rollback {
        #[command(flatten)]
        common: Common,
        run: String,
        #[command(flatten)]
        after: AfterArgs,
        /// Show what the rollback would undo, and what users wrote since the window that it
        /// would discard, without changing anything.
        #[arg(long)]
        plan: bool,
        /// Roll back even though users wrote after the maintenance window closed: their
        /// writes are discarded, after the current data is kept as a second snapshot set.
        #[arg(long)]
        discard_writes_since_window: bool,
    },
    /// Continue a run whose controller died, with the same inputs; steps already done are skipped.
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run_args: RunArgs,
        run: String,
    },
    /// Accept a run that finished ok: remove its snapshots and the backups kept for undo (no
    /// rollback after this). A run that failed, was unwound or rolled back, or did not finish is
    /// refused (exit 1, nothing touched).
    Commit {
        #[command(flatten)]
        common: Common,
        run: String,
        #[command(flatten)]
        after: AfterArgs,
        /// Commit a run that ended without finishing ok (failed, unwound, rolled back,
        /// interrupted): what it deletes, on which host, is listed first. A run that never
        /// finished (killed or still running) is refused even so.
        #[arg(long)]
        force: bool,
    },
    /// List past runs, newest first.
    Runs,
    /// Replay a run's journal as the admin saw it.
    Show {
        /// Run id (see `cutover runs`).
        run: String,
        /// Print the raw journal (JSON lines).
        #[arg(long)]
        raw: bool,
    },
    /// Manage the lab of real hosts on this machine (see lab/README.md).
    Lab {
        /// up | status | down | fleet up N | fleet down | exec CMD…
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

/// Options of a run (`apply`).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Only hosts matching this pattern.
    #[arg(short = 'l', long, value_name = "PATTERN", value_parser = host_pattern)]
    pub limit: Option<String>,
    /// Only steps (or plays) with one of these tags (`always` always runs). Repeatable, or comma-separated.
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip steps with one of these tags.
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Hosts worked on at once.
    #[arg(short = 'f', long, default_value_t = 50, value_parser = at_least_one)]
    pub forks: usize,
    /// Start at the step with this name (skipping the steps before it).
    #[arg(long, value_name = "NAME")]
    pub start_at_step: Option<String>,
    /// Approve a stage of an `approve` step without asking (for non-interactive runs). Repeatable.
    #[arg(long = "approve", value_name = "STAGE")]
    pub approve: Vec<String>,
    /// auto: progress on a terminal, plain lines otherwise; json: JSON lines on stdout.
    #[arg(long, value_enum, default_value_t = crate::engine::output::OutputMode::Auto)]
    pub output: crate::engine::output::OutputMode,
    /// Write a JUnit XML report (a test case per step and host).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Break a stale host lock left by a dead run (never one held by a live run on this controller).
    #[arg(long)]
    pub break_lock: bool,
    /// Accept unknown host keys (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Ask for the sudo password on the terminal.
    #[arg(short = 'K', long, conflicts_with = "become_password_file")]
    pub ask_become_pass: bool,
    /// Read the sudo password from this file (first line). CUTOVER_BECOME_PASSWORD also works.
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
    /// Show every step result, also on a terminal.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// A `--limit` with no term (`''`, `a:&`) is a wrong command line, whatever the inventory.
fn host_pattern(s: &str) -> Result<String, String> {
    let terms: Vec<&str> = s
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let bare = |t: &&str| t.trim_start_matches(['&', '!']).is_empty();
    if terms.is_empty() || terms.iter().any(bare) {
        return Err(format!("`{s}` is not a host pattern: a term is empty"));
    }
    Ok(s.to_string())
}

/// `--forks 0` would run nothing: a wrong command line, not a silent 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a number of hosts (1 or more)")),
    }
}

/// Options of `rollback` and `commit`.
#[derive(Args, Debug, Clone)]
pub struct AfterArgs {
    /// Break a stale host lock left by the dead run.
    #[arg(long)]
    pub break_lock: bool,
    #[arg(long, value_enum, default_value_t = crate::engine::output::OutputMode::Auto)]
    pub output: crate::engine::output::OutputMode,
    #[arg(long)]
    pub accept_new_host_keys: bool,
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// Make a key pair: the secret key goes to FILE (mode 0600), the public key is printed.
    Keygen {
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Encrypt a YAML file of variables to a public key (age1…).
    Encrypt {
        /// The plain YAML mapping of variable names to values.
        input: PathBuf,
        #[arg(short = 'r', long, value_name = "AGE_PUBLIC_KEY")]
        recipient: String,
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a decrypted secrets file (with the key from CUTOVER_SECRETS_KEY_FILE).
    View { file: PathBuf },
    /// Decrypt into a private temporary file, open $EDITOR, check and re-encrypt.
    Edit { file: PathBuf },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Text,
    Json,
}

pub struct PlanArgs {
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub forks: usize,
    pub format: crate::plan::Format,
    pub out: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    pub become_password_file: Option<PathBuf>,
}
