//! `cutover inventory`: hosts and groups, or one host's variables and where each comes from.

use super::inputs::{extra_vars, inventory_path, load_inventory};
use super::{exit, one, Common, Format, Refusal};
use crate::diag::Diagnostic;
use crate::inventory::vars::{self, Layers};
use crate::inventory::{pattern, Inventory, Var};

pub(super) fn cmd_inventory(
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
        return show_host(&inv, name, &extra, format);
    }
    if format == Format::Json {
        print_hosts_json(&inv, &selected);
    } else {
        print_hosts_text(&inv, &selected);
    }
    Ok(exit::OK)
}

/// One host: its connection, groups and resolved variables with their origin.
fn show_host(inv: &Inventory, name: &str, extra: &[Var], format: Format) -> Result<u8, Refusal> {
    let h = inv.host(name).ok_or_else(|| {
        one(Diagnostic::new(
            crate::diag::Pos::cli("--host"),
            format!("no host `{name}` in {}", inv.path.display()),
        )
        .suggest(name, inv.host_names()))
    })?;
    let resolved = vars::resolve(
        inv,
        name,
        Layers {
            extra,
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
                    serde_json::json!({ "value": shown(inv, k, v), "origin": o.to_string() }),
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
            serde_json::to_string(&shown(inv, k, v)).unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

/// The selected hosts and every group (with its selected members), as JSON.
fn print_hosts_json(inv: &Inventory, selected: &[&str]) {
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
}

/// The selected hosts and every group (with its selected members and its children), as text.
fn print_hosts_text(inv: &Inventory, selected: &[&str]) {
    println!("hosts:");
    let width = selected.iter().map(|h| h.len()).max().unwrap_or(0);
    for name in selected {
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
}

/// A variable's value for display: secrets are shown as their marker.
fn shown(inv: &Inventory, name: &str, v: &serde_json::Value) -> serde_json::Value {
    if inv.is_secret(name) {
        serde_json::Value::String(crate::secrets::marker(name))
    } else {
        v.clone()
    }
}
