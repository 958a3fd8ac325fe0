//! Command-line interface: argument definitions and the commands that don't touch hosts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::check::{self, CheckInput};
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::vars::{self, Layers};
use crate::inventory::{self, pattern, Inventory};
use crate::template::{self, Templates};

/// Exit codes, documented in the README.
pub mod exit {
    /// Everything worked (for `check`: the input is valid).
    pub const OK: u8 = 0;
    /// The input is invalid, or the command failed.
    pub const FAILED: u8 = 1;
    /// The command line itself is wrong (unknown flag, missing argument).
    pub const USAGE: u8 = 64;
}

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "Provision and upgrade an on-premises application cluster over ssh, with snapshots and rollback",
    after_help = "Exit codes: 0 ok, 1 invalid input or failure, 64 usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
        #[arg(short = 'l', long, value_name = "PATTERN")]
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
    },
    /// Manage the lab of real hosts on this machine (see lab/README.md).
    Lab {
        /// up | status | down | fleet up N | fleet down | exec CMD…
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
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
        } => cmd_render(&common, &template, &host),
        Command::Lab { args } => cmd_lab(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(diags) => {
            report(diags);
            ExitCode::from(exit::FAILED)
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

fn inventory_path(common: &Common) -> Result<&Path, Diagnostics> {
    common.inventory.as_deref().ok_or_else(|| {
        one(
            Diagnostic::new(crate::diag::Pos::cli("command line"), "no inventory given")
                .with_help("pass -i FILE or set CUTOVER_INVENTORY"),
        )
    })
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

fn cmd_check(common: &Common, mut playbooks: Vec<PathBuf>) -> Result<u8, Diagnostics> {
    let inv = inventory_path(common)?;
    let extra = vars::parse_extra_vars(&common.extra_vars)?;
    if playbooks.is_empty() {
        playbooks = check::default_playbooks(Path::new("playbooks"));
    }
    let templates_dir = templates_dir(common, &playbooks);
    let r = check::check(&CheckInput {
        inventory: inv,
        playbooks: &playbooks,
        templates_dir: &templates_dir,
        extra_vars: &extra,
    })?;
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

fn load_inventory(common: &Common) -> Result<Inventory, Diagnostics> {
    inventory::load_checked(inventory_path(common)?)
}

fn cmd_inventory(
    common: &Common,
    host: Option<&str>,
    limit: Option<&str>,
    format: Format,
) -> Result<u8, Diagnostics> {
    let inv = load_inventory(common)?;
    let extra = vars::parse_extra_vars(&common.extra_vars)?;
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
                        serde_json::json!({ "value": v, "origin": o.to_string() }),
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
                serde_json::to_string(v).unwrap_or_default()
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

fn cmd_render(common: &Common, template_name: &str, host: &str) -> Result<u8, Diagnostics> {
    let inv = load_inventory(common)?;
    let extra = vars::parse_extra_vars(&common.extra_vars)?;
    if inv.host(host).is_none() {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("--host"),
            format!("no host `{host}` in {}", inv.path.display()),
        )
        .suggest(host, inv.host_names())));
    }
    let dir = templates_dir(common, &[]);
    let templates = Templates::load(&dir).map_err(|errs| {
        let mut d = Diagnostics::default();
        errs.into_iter().for_each(|e| d.push(e));
        d
    })?;
    if !templates.exists(template_name) {
        return Err(one(Diagnostic::new(
            crate::diag::Pos::cli("TEMPLATE"),
            format!("no template `{template_name}` in {}", dir.display()),
        )
        .suggest(template_name, templates.names())));
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
    print!("{text}");
    Ok(exit::OK)
}

/// `cutover lab …` runs the lab script shipped in the repository.
fn cmd_lab(args: &[String]) -> Result<u8, Diagnostics> {
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
