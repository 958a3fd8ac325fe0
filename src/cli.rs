//! Command-line interface: argument definitions and the commands that don't touch hosts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::check::{self, CheckInput};
use crate::diag::{Diagnostic, Diagnostics};
use crate::exit;
use crate::inventory::vars::{self, Layers};
use crate::inventory::{self, pattern, Inventory};
use crate::template::{self, Templates};

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
    /// Accept a run: remove its snapshots and the backups kept for undo (no rollback after this).
    Commit {
        #[command(flatten)]
        common: Common,
        run: String,
        #[command(flatten)]
        after: AfterArgs,
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

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { common, playbooks } => cmd_check(&common, playbooks),
        Command::Inventory {
            common,
            host,
            limit,
            format,
        } => cmd_inventory(&common, host.as_deref(), limit.as_deref(), format),
        Command::Render {
            common,
            template,
            host,
            show_secrets,
        } => cmd_render(&common, &template, &host, show_secrets),
        Command::Lab { args } => cmd_lab(&args),
        Command::Apply {
            common,
            run,
            playbook,
        } => cmd_apply(&common, &run, playbook),
        Command::Runs => cmd_runs(),
        Command::Rollback {
            common,
            run,
            after,
            plan,
            discard_writes_since_window,
        } => cmd_after(
            &common,
            run,
            &after,
            After::Rollback {
                plan,
                discard_writes: discard_writes_since_window,
            },
        ),
        Command::Commit { common, run, after } => cmd_after(&common, run, &after, After::Commit),
        Command::Resume {
            common,
            run_args,
            run,
        } => cmd_resume(&common, &run_args, &run),
        Command::Secrets { action } => {
            cmd_secrets(action).map_err(|e| cli_error("secrets", format!("{e:#}")).into())
        }
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
        } => cmd_plan(
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
        Command::Show { run, raw } => cmd_show(&run, raw),
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

fn inventory_path(common: &Common) -> Result<&Path, Refusal> {
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
fn extra_vars(
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

fn templates_dir(common: &Common, playbooks: &[PathBuf]) -> PathBuf {
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

fn cmd_check(common: &Common, mut playbooks: Vec<PathBuf>) -> Result<u8, Refusal> {
    let inv = inventory_path(common)?;
    if playbooks.is_empty() {
        playbooks = check::default_playbooks(Path::new("playbooks"));
    }
    let extra = extra_vars(common, inv, &playbooks)?;
    let templates_dir = templates_dir(common, &playbooks);
    let r = check::check(&CheckInput {
        inventory: inv,
        playbooks: &playbooks,
        templates_dir: &templates_dir,
        extra_vars: &extra,
        every_template: true,
    })?;
    for w in &r.warnings {
        eprint!("{}", w.render().replacen("error:", "warning:", 1));
    }
    println!(
        "ok: inventory {} ({} hosts, {} groups); {} playbooks ({} plays, {} steps); {} templates",
        inv.display(),
        r.hosts,
        r.groups,
        r.playbooks,
        r.plays,
        r.steps,
        r.templates
    );
    Ok(exit::OK)
}

fn load_inventory(common: &Common) -> Result<Inventory, Refusal> {
    Ok(inventory::load_checked(inventory_path(common)?)?)
}

fn cmd_inventory(
    common: &Common,
    host: Option<&str>,
    limit: Option<&str>,
    format: Format,
) -> Result<u8, Refusal> {
    let extra = extra_vars(common, inventory_path(common)?, &[])?;
    let inv = load_inventory(common)?;
    let selected: Vec<&str> = match limit {
        Some(p) => pattern::select(&inv, p).map_err(|e| {
            one(Diagnostic::new(
                crate::diag::Pos::cli("--limit"),
                format!("--limit {p}: {e}"),
            ))
        })?,
        None => inv.host_names().collect(),
    };
    if let Some(name) = host {
        let h = inv.host(name).ok_or_else(|| {
            one(Diagnostic::new(
                crate::diag::Pos::cli("--host"),
                format!("no host `{name}` in {}", inv.path.display()),
            )
            .suggest(name, inv.host_names()))
        })?;
        let resolved = vars::resolve(
            &inv,
            name,
            Layers {
                extra: &extra,
                ..Default::default()
            },
        )?;
        if format == Format::Json {
            let vars: serde_json::Map<String, serde_json::Value> = resolved
                .vars
                .iter()
                .map(|(k, (v, o))| {
                    (
                        k.clone(),
                        serde_json::json!({ "value": shown(&inv, k, v), "origin": o.to_string() }),
                    )
                })
                .collect();
            let out = serde_json::json!({
                "host": h.name, "address": h.connection.address, "port": h.connection.port,
                "user": h.connection.user, "groups": inv.groups_of(name), "vars": vars,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            return Ok(exit::OK);
        }
        let c = &h.connection;
        println!("host {} ({})", h.name, h.pos);
        println!(
            "  address  {}:{}{}",
            c.address,
            c.port,
            c.user
                .as_ref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default()
        );
        println!("  groups   {}", inv.groups_of(name).join(", "));
        println!("variables (value, then where it comes from):");
        let width = resolved.vars.keys().map(String::len).max().unwrap_or(0);
        for (k, (v, origin)) in &resolved.vars {
            println!(
                "  {k:width$} = {}    # {origin}",
                serde_json::to_string(&shown(&inv, k, v)).unwrap_or_default()
            );
        }
        return Ok(exit::OK);
    }
    if format == Format::Json {
        let hosts: Vec<_> = selected
            .iter()
            .filter_map(|n| inv.host(n))
            .map(|h| serde_json::json!({ "name": h.name, "address": h.connection.address, "port": h.connection.port, "groups": inv.groups_of(&h.name) }))
            .collect();
        let groups: serde_json::Map<String, serde_json::Value> = inv
            .groups
            .keys()
            .map(|g| {
                (
                    g.clone(),
                    serde_json::json!(inv
                        .group_hosts(g)
                        .into_iter()
                        .filter(|h| selected.contains(h))
                        .collect::<Vec<_>>()),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "hosts": hosts, "groups": groups }))
                .unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    println!("hosts:");
    let width = selected.iter().map(|h| h.len()).max().unwrap_or(0);
    for name in &selected {
        if let Some(h) = inv.host(name) {
            println!(
                "  {name:width$}  {}:{}  [{}]",
                h.connection.address,
                h.connection.port,
                inv.groups_of(name).join(", ")
            );
        }
    }
    println!("groups:");
    for g in inv.groups.keys() {
        let members: Vec<&str> = inv
            .group_hosts(g)
            .into_iter()
            .filter(|h| selected.contains(h))
            .collect();
        let children = &inv.groups[g].children;
        let kids = if children.is_empty() {
            String::new()
        } else {
            format!("  (children: {})", children.join(", "))
        };
        println!("  {g}: {}{kids}", members.join(", "));
    }
    Ok(exit::OK)
}

fn cmd_render(
    common: &Common,
    template_name: &str,
    host: &str,
    show_secrets: bool,
) -> Result<u8, Refusal> {
    let extra = extra_vars(common, inventory_path(common)?, &[])?;
    let inv = load_inventory(common)?;
    if inv.host(host).is_none() {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("--host"),
            format!("no host `{host}` in {}", inv.path.display()),
        )
        .suggest(host, inv.host_names()))
        .into());
    }
    let dir = templates_dir(common, &[]);
    // Only this template and what it includes: a broken file elsewhere does not matter here.
    let templates = Templates::load_used(&dir, [template_name]).map_err(|errs| {
        let mut d = Diagnostics::default();
        errs.into_iter().for_each(|e| d.push(e));
        d
    })?;
    if !templates.exists(template_name) {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("TEMPLATE"),
            format!("no template `{template_name}` in {}", dir.display()),
        )
        .suggest(template_name, templates.names()))
        .into());
    }
    let everyone = template::resolve_all(
        &inv,
        Layers {
            extra: &extra,
            ..Default::default()
        },
    )?;
    let ctx = template::host_context(&inv, host, &everyone[host], &everyone);
    let text = templates.render(template_name, &ctx).map_err(one)?;
    if show_secrets {
        print!("{text}");
    } else {
        print!("{}", crate::secrets::redact(&text));
    }
    Ok(exit::OK)
}

/// A variable's value for display: secrets are shown as their marker.
fn shown(inv: &Inventory, name: &str, v: &serde_json::Value) -> serde_json::Value {
    if inv.is_secret(name) {
        serde_json::Value::String(crate::secrets::marker(name))
    } else {
        v.clone()
    }
}

/// `cutover lab …` runs the lab script shipped in the repository.
fn cmd_lab(args: &[String]) -> Result<u8, Refusal> {
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

fn runtime() -> Result<tokio::runtime::Runtime, Diagnostics> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cli_error("runtime", format!("cannot start the async runtime: {e}")))
}

fn cli_error(what: &str, e: impl std::fmt::Display) -> Diagnostics {
    one(Diagnostic::new(crate::diag::Pos::cli(what), e.to_string()))
}

fn read_first_line(f: &Path) -> Result<String, Diagnostics> {
    password_from_file(f).map_err(|e| cli_error("become password", e))
}

/// The first line of a password file, which may be a pipe (`<(pass show sudo)`); bounded.
fn password_from_file(f: &Path) -> Result<String, String> {
    let bytes = crate::input::read_stream(f, crate::input::MAX_CREDENTIAL_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not text", f.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn cmd_plan(common: &Common, playbook: PathBuf, a: PlanArgs) -> Result<u8, Refusal> {
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
    let plan = runtime()?.block_on(crate::plan::plan(&opts))?;
    let text = match a.format {
        crate::plan::Format::Text => {
            crate::plan::render_text(&plan, std::io::stdout().is_terminal())
        }
        crate::plan::Format::Markdown => crate::plan::render_markdown(&plan),
        crate::plan::Format::Json => crate::plan::render_json(&plan),
    };
    print!("{}", crate::secrets::redact(&text));
    if let Some(out) = &a.out {
        std::fs::write(
            out,
            crate::secrets::redact(&crate::plan::render_json(&plan)).as_bytes(),
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
fn apply_saved_plan(
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
    let now = rt.block_on(crate::plan::plan(&opts))?;
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
                (e.play, e.step, e.handler, e.host.clone()),
                (e.outcome.clone(), e.fingerprint.clone()),
            )
        })
        .collect();
    run.expected = Some(std::sync::Arc::new(expected));
    finish_run(rt.block_on(crate::engine::apply(run)))
}

fn finish_run(r: Result<crate::engine::RunResult, crate::engine::RunError>) -> Result<u8, Refusal> {
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
    let refused = crate::plan::saved::refusals(path, saved, &inputs);
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

/// A file a command writes when it is done (`--junit`, `--out`) must have a directory to go
/// to, or the work would be done and its record lost.
fn output_file_dir(option: &str, file: Option<&Path>) -> Result<(), Refusal> {
    let Some(file) = file else {
        return Ok(());
    };
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
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

/// Run options from the command line, for a playbook and inventory.
fn run_options(
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

fn cmd_apply(common: &Common, args: &RunArgs, playbook: PathBuf) -> Result<u8, Refusal> {
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

/// The sudo password: from a file, the environment, or a prompt with echo off. Never from an
/// argument (it would show in `ps`).
fn become_password(args: &RunArgs) -> anyhow::Result<Option<String>> {
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

fn cmd_runs() -> Result<u8, Refusal> {
    let runs = crate::engine::journal::list_runs().map_err(|e| {
        one(Diagnostic::new(
            crate::diag::Pos::cli("runs"),
            format!("{e:#}"),
        ))
    })?;
    if runs.is_empty() {
        println!(
            "no runs in {}",
            crate::engine::journal::runs_dir().display()
        );
    }
    for (id, first, state) in &runs {
        println!("{}", crate::engine::journal::describe_run(id, first, state));
    }
    Ok(exit::OK)
}

fn cmd_show(run: &str, raw: bool) -> Result<u8, Refusal> {
    let events = crate::engine::journal::read(run).map_err(|e| {
        one(
            Diagnostic::new(crate::diag::Pos::cli("show"), format!("{e:#}"))
                .with_help("list runs with `cutover runs`"),
        )
    })?;
    // Steps whose change began but whose result never came (the controller died meanwhile).
    let finished_seqs: std::collections::BTreeSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "step_result")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    for e in &events {
        if raw {
            println!("{e}");
            continue;
        }
        let ts = e["ts"].as_str().unwrap_or("");
        let time = ts.get(11..19).unwrap_or(ts);
        match e["event"].as_str().unwrap_or("") {
            "run_started" => println!(
                "{time} run {} of {} on {} by {}",
                e["run_id"].as_str().unwrap_or(""),
                e["playbook"].as_str().unwrap_or(""),
                e["inventory"].as_str().unwrap_or(""),
                e["user"].as_str().unwrap_or("")
            ),
            "play_started" => println!(
                "{time} PLAY {} {}",
                e["name"].as_str().unwrap_or(""),
                e["hosts"]
            ),
            "host_unreachable" => println!(
                "{time} {:<12} UNREACHABLE {}",
                e["host"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            ),
            "step_result" => {
                let detail = e["detail"].as_str().unwrap_or("");
                let undo = e
                    .get("undo")
                    .map(|u| {
                        format!(
                            "  [undo: {}]",
                            serde_json::from_value::<crate::modules::UndoAction>(u.clone())
                                .map(|u| u.describe())
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{time} {:<12} {:<11} {}{}{}",
                    e["host"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    e["name"].as_str().unwrap_or(""),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" — {detail}")
                    },
                    undo
                );
            }
            "step_applying"
                if e["seq"]
                    .as_u64()
                    .is_some_and(|q| !finished_seqs.contains(&q)) =>
            {
                let undo = e
                    .get("undo_pending")
                    .and_then(|u| {
                        serde_json::from_value::<crate::modules::UndoAction>(u.clone()).ok()
                    })
                    .map_or_else(
                        || "no recorded way back".to_string(),
                        |u| format!("undo: {}", u.describe()),
                    );
                println!(
                    "{time} {:<12} {:<11} {} — the change began and the run stopped before its result [{undo}]",
                    e["host"].as_str().unwrap_or(""),
                    "CUT OFF",
                    e["name"].as_str().unwrap_or(""),
                );
            }
            "run_resumed" => println!(
                "{time} run resumed by {} (pid {})",
                e["user"].as_str().unwrap_or(""),
                e["pid"]
            ),
            "handler_notified" => println!(
                "{time} {:<12} notified    {}",
                e["host"].as_str().unwrap_or(""),
                e["handler"].as_str().unwrap_or("")
            ),
            "unwind_started" => println!("{time} UNWIND {} change(s)", e["count"]),
            "unwind_finished" => println!(
                "{time} unwind {}",
                if e["ok"] == true {
                    "finished"
                } else {
                    "INCOMPLETE"
                }
            ),
            "rollback_started" => println!(
                "{time} ROLLBACK of {} change(s) by {}",
                e["count"],
                e["user"].as_str().unwrap_or("?")
            ),
            "rollback_finished" => println!(
                "{time} {}",
                if e["ok"] == true {
                    "rolled back"
                } else {
                    "ROLLBACK INCOMPLETE (an undo failed)"
                }
            ),
            "rollback_discarding" => {
                println!("{time} ROLLBACK DISCARDS writes made after the window (--discard-writes-since-window):");
                for l in e["lost"].as_array().into_iter().flatten() {
                    for w in l["what"].as_array().into_iter().flatten() {
                        println!(
                            "           {}: {}",
                            l["host"].as_str().unwrap_or(""),
                            w.as_str().unwrap_or("")
                        );
                    }
                }
                for k in e["kept"].as_array().into_iter().flatten() {
                    println!(
                        "           {}: current data kept first as {}",
                        k["host"].as_str().unwrap_or(""),
                        k["location"].as_str().unwrap_or("")
                    );
                }
            }
            "rollback_refused" => println!(
                "{time} ROLLBACK REFUSED: {}",
                e["why"].as_str().unwrap_or("")
            ),
            "commit_started" => println!(
                "{time} COMMIT of {} change(s) by {}",
                e["count"],
                e["user"].as_str().unwrap_or("?")
            ),
            "commit_result" => println!(
                "{time} {:<12} {:<11} {}",
                e["host"].as_str().unwrap_or(""),
                if e["ok"] == true {
                    "committed"
                } else {
                    "COMMIT FAILED"
                },
                e["detail"].as_str().unwrap_or("")
            ),
            "commit_finished" => println!(
                "{time} {}",
                if e["ok"] == true {
                    "committed"
                } else {
                    "COMMIT INCOMPLETE"
                }
            ),
            "undo_result" => println!(
                "{time} {:<12} {:<11} undo {}",
                e["host"].as_str().unwrap_or(""),
                if e["ok"] == true {
                    "undone"
                } else {
                    "UNDO FAILED"
                },
                e["detail"].as_str().unwrap_or("")
            ),
            "run_interrupted" => {
                println!("{time} INTERRUPTED ({})", e["how"].as_str().unwrap_or(""))
            }
            "run_finished" => println!("{time} finished: {}", e["status"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    if raw {
        return Ok(exit::OK);
    }
    let state = crate::engine::run_status::run_state(&events);
    println!("state: {}", state.describe());
    if matches!(
        state.state,
        crate::engine::run_status::State::Unfinished
            | crate::engine::run_status::State::RollbackIncomplete { .. }
    ) && !events
        .last()
        .is_some_and(|e| e["event"] == "rollback_finished")
    {
        println!(
            "(the journal ends here: the run or its rollback was killed, or is still running)"
        );
    }
    Ok(exit::OK)
}

fn cmd_secrets(action: SecretsAction) -> anyhow::Result<u8> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let write_private = |path: &Path, text: &str| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    };
    // The plain text must be a mapping of variable names, or the run would fail later.
    let validate = |plain: &str, origin: &Path| -> anyhow::Result<()> {
        let mut diags = Diagnostics::default();
        let source = std::sync::Arc::new(crate::yaml::Source {
            path: origin.to_path_buf(),
            text: String::new(),
        });
        match crate::yaml::parse_bytes(source, plain.as_bytes().to_vec()) {
            Ok((_, root)) => {
                crate::decode::variables(&root, "the secrets file", &mut diags);
            }
            Err(d) => diags.push(d),
        }
        if let Some(d) = diags.items.first() {
            anyhow::bail!("{d}");
        }
        Ok(())
    };
    match action {
        SecretsAction::Keygen { out } => {
            let (secret, public) = crate::secrets::keygen();
            if out.exists() {
                anyhow::bail!("{} exists; refusing to overwrite a key", out.display());
            }
            write_private(&out, &secret)?;
            println!("{public}");
            eprintln!(
                "secret key written to {} (mode 0600); keep it out of the repository",
                out.display()
            );
        }
        SecretsAction::Encrypt {
            input,
            recipient,
            out,
        } => {
            let plain =
                String::from_utf8(crate::input::read(&input, crate::input::MAX_INPUT_BYTES)?)?;
            validate(&plain, &input)?;
            std::fs::write(&out, crate::secrets::encrypt(&plain, &recipient)?)?;
            eprintln!("encrypted {} → {}", input.display(), out.display());
        }
        SecretsAction::View { file } => print!("{}", crate::secrets::decrypt_file(&file)?),
        SecretsAction::Edit { file } => {
            let plain = crate::secrets::decrypt_file(&file)?;
            let dir = tempfile::Builder::new()
                .prefix("cutover-secrets-")
                .tempdir()?;
            let tmp = dir.path().join("secrets.yml");
            write_private(&tmp, &plain)?;
            let editor = std::env::var("VISUAL")
                .or_else(|_| std::env::var("EDITOR"))
                .unwrap_or_else(|_| "vi".into());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(&tmp)
                .status()?;
            if !status.success() {
                anyhow::bail!("the editor failed; {} is unchanged", file.display());
            }
            let edited = std::fs::read_to_string(&tmp)?;
            validate(&edited, &file)?;
            std::fs::write(
                &file,
                crate::secrets::encrypt(&edited, &crate::secrets::own_recipient()?)?,
            )?;
            eprintln!("{} re-encrypted", file.display());
        }
    }
    Ok(exit::OK)
}

/// What `cmd_after` does.
enum After {
    Rollback { plan: bool, discard_writes: bool },
    Commit,
}

fn cmd_after(common: &Common, run: String, a: &AfterArgs, what: After) -> Result<u8, Refusal> {
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
    };
    let rt = runtime()?;
    let result = match what {
        After::Commit => rt.block_on(crate::engine::recovery::commit(opts)),
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

fn cmd_resume(common: &Common, args: &RunArgs, run: &str) -> Result<u8, Refusal> {
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
