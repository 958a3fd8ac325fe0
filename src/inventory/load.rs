//! Reading and validating an inventory file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Connection, Group, Host, Inventory, Var};
use crate::context_names::MAINTENANCE_WINDOW;
use crate::decode::{self, Fields};
use crate::diag::{one_line, Diagnostic, Diagnostics, Pos};
use crate::ssh_args;
use crate::yaml::{self, Node, Value};

const TOP_KEYS: &[&str] = &[
    "connection",
    "hosts",
    "groups",
    "secrets_file",
    "secrets_key_file",
    "secret_vars",
    "maintenance_window",
    "maintenance_window_margin",
];
const CONNECTION_KEYS: &[&str] = &[
    "port",
    "user",
    "identity_file",
    "known_hosts_file",
    "ssh_options",
    "allow_unsafe_ssh_options",
    "jump_host",
    "accept_new_host_keys",
    "become",
    "become_user",
    "session_shell",
];
const HOST_KEYS: &[&str] = &[
    "address",
    "port",
    "user",
    "identity_file",
    "known_hosts_file",
    "ssh_options",
    "allow_unsafe_ssh_options",
    "jump_host",
    "accept_new_host_keys",
    "become",
    "become_user",
    "session_shell",
    "vars",
];
const GROUP_KEYS: &[&str] = &["hosts", "children", "vars", "priority"];

pub fn load(path: &Path, diags: &mut Diagnostics) -> Option<Inventory> {
    let (_, root) = match yaml::load_file(path) {
        Ok(r) => r,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    from_node(path, &root, diags)
}

pub(crate) fn from_node(path: &Path, root: &Node, diags: &mut Diagnostics) -> Option<Inventory> {
    if is_list(root, diags) {
        return None;
    }
    let top = Fields::new(root, "the inventory", TOP_KEYS, diags)?;
    // What is secret is known before any variable is read: every value of these names,
    // here or in any file read after the inventory, is masked from then on.
    let secret_vars: Vec<String> = top
        .str_list("secret_vars", diags)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let (secrets_file, secrets) = secrets_section(path, &top, diags);
    for name in secret_vars.iter().chain(secrets.iter().map(|v| &v.name)) {
        crate::secrets::declare(name);
    }
    let defaults = match top.get("connection") {
        Some(n) => read_connection(
            n,
            "`connection`",
            CONNECTION_KEYS,
            Connection {
                port: 22,
                ..Default::default()
            },
            diags,
        )
        .unwrap_or_default(),
        None => Connection {
            port: 22,
            ..Default::default()
        },
    };

    let (hosts, jump_pos) = read_hosts(root, &top, &defaults, diags);

    let mut groups = BTreeMap::new();
    let mut members = Vec::new();
    if let Some(node) = top.get("groups") {
        for (k, v) in decode::mapping(node, "`groups`", diags).unwrap_or_default() {
            let name = k.key_text();
            if !decode::is_identifier(&name) {
                diags.push(
                    Diagnostic::new(k.pos.clone(), format!("`{name}` is not a valid group name"))
                        .with_help(
                        "group names are used in patterns and templates: letters, digits and `_`",
                    ),
                );
                continue;
            }
            if hosts.iter().any(|h: &Host| h.name == name) {
                diags.push(Diagnostic::new(
                    k.pos.clone(),
                    format!(
                        "`{name}` is both a host and a group; patterns could not tell them apart"
                    ),
                ));
                continue;
            }
            if let Some(g) = read_group(&name, k, v, &mut members, diags) {
                groups.insert(name, g);
            }
        }
    }
    if !groups.contains_key("all") {
        groups.insert(
            "all".into(),
            Group {
                name: "all".into(),
                pos: root.pos.clone(),
                hosts: vec![],
                children: vec![],
                vars: vec![],
                priority: 0,
            },
        );
    }

    let (maintenance_window, window_margin_percent) = super::window::read(&top, diags);
    let inv = Inventory {
        path: path.to_path_buf(),
        hosts,
        groups,
        secrets,
        secrets_file,
        secret_vars,
        controller_vars: maintenance_window
            .iter()
            .map(|w| (MAINTENANCE_WINDOW.to_string(), w.to_json()))
            .collect(),
        maintenance_window,
        window_margin_percent,
    };
    check_references(&inv, members, diags);
    check_cycles(&inv, diags);
    check_jump_loops(&inv.hosts, &jump_pos, diags);
    Some(inv)
}

/// A list where the inventory's mapping belongs (often a playbook passed as the inventory)
/// is reported.
fn is_list(root: &Node, diags: &mut Diagnostics) -> bool {
    if let Value::Seq(items) = &root.value {
        let looks_like_playbook = items.iter().any(|i| match &i.value {
            Value::Map(e) => e.iter().any(|(k, _)| {
                matches!(k.key_text().as_str(), "hosts" | "steps" | "import_playbook")
            }),
            _ => false,
        });
        let d = Diagnostic::new(
            root.pos.clone(),
            "expected an inventory (a mapping with `hosts:` and `groups:`), found a list",
        );
        diags.push(if looks_like_playbook {
            d.with_help("this looks like a playbook; pass it as the PLAYBOOK argument and the inventory with -i")
        } else {
            d
        });
        return true;
    }
    false
}

/// The `hosts:` section: each host, and where its jump host was written (its own or the
/// default connection's).
fn read_hosts(
    root: &Node,
    top: &Fields,
    defaults: &Connection,
    diags: &mut Diagnostics,
) -> (Vec<Host>, BTreeMap<String, Pos>) {
    let default_jump_pos = top
        .get("connection")
        .and_then(|n| value_pos(n, "jump_host"));
    let mut jump_pos = BTreeMap::new();
    let mut hosts = Vec::new();
    match top.get("hosts") {
        Some(node) => {
            for (k, v) in decode::mapping(node, "`hosts`", diags).unwrap_or_default() {
                let name = k.key_text();
                if !valid_host_name(&name) {
                    diags.push(
                        Diagnostic::new(
                            k.pos.clone(),
                            format!("`{name}` is not a valid host name"),
                        )
                        .with_help(
                            "use letters, digits, `-`, `_` and `.`; it must not start with `-`",
                        ),
                    );
                    continue;
                }
                if let Some(h) = read_host(&name, k, v, defaults, diags) {
                    if let Some(p) = value_pos(v, "jump_host").or(default_jump_pos.clone()) {
                        jump_pos.insert(name.clone(), p);
                    }
                    hosts.push(h);
                }
            }
        }
        None => diags.push(Diagnostic::new(
            root.pos.clone(),
            "the inventory has no `hosts:` section",
        )),
    }
    (hosts, jump_pos)
}

/// Where `key` of a mapping node was written.
fn value_pos(node: &Node, key: &str) -> Option<Pos> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v.pos.clone()),
        _ => None,
    }
}

/// The inventory hosts a host's `jump_host` goes through (a hop names one by its name or
/// its address).
fn jump_targets<'a>(host: &Host, hosts: &'a [Host]) -> Vec<&'a str> {
    let Some(hops) = host
        .connection
        .jump_host
        .as_deref()
        .and_then(|j| ssh_args::parse_jump(j).ok())
    else {
        return Vec::new();
    };
    hosts
        .iter()
        .filter(|h| {
            hops.iter()
                .any(|hop| hop.host == h.name || hop.host == h.connection.address)
        })
        .map(|h| h.name.as_str())
        .collect()
}

/// A host reached through itself, directly or through other hosts' jump hosts, can never be
/// reached: each such loop is an error at the `jump_host:` that closes it.
fn check_jump_loops(hosts: &[Host], jump_pos: &BTreeMap<String, Pos>, diags: &mut Diagnostics) {
    let edges: BTreeMap<&str, Vec<&str>> = hosts
        .iter()
        .map(|h| (h.name.as_str(), jump_targets(h, hosts)))
        .collect();
    let mut reported: Vec<Vec<&str>> = Vec::new();
    for start in hosts.iter().map(|h| h.name.as_str()) {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(cycle) = find_loop(&edges, &mut vec![start], &mut seen) {
            let mut key = cycle.clone();
            key.sort();
            key.dedup();
            if !reported.contains(&key) {
                reported.push(key);
                push_loop(&cycle, jump_pos, diags);
            }
        }
    }
}

/// Depth-first from the last host of `path`: the first loop back to `path[0]`.
/// (`seen`: hosts already explored from this start; a loop not through the start is found
/// from its own start.)
fn find_loop<'a>(
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    seen: &mut std::collections::BTreeSet<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = *path.last()?;
    for &next in edges.get(last).into_iter().flatten() {
        if next == path[0] {
            let mut cycle = path.clone();
            cycle.push(next);
            return Some(cycle);
        }
        if !seen.insert(next) {
            continue;
        }
        path.push(next);
        if let Some(c) = find_loop(edges, path, seen) {
            return Some(c);
        }
        path.pop();
    }
    None
}

fn push_loop(cycle: &[&str], jump_pos: &BTreeMap<String, Pos>, diags: &mut Diagnostics) {
    let Some(pos) = jump_pos.get(cycle[0]) else {
        return;
    };
    diags.push(if cycle.len() == 2 {
        Diagnostic::new(
            pos.clone(),
            format!("host `{}` is its own jump host", cycle[0]),
        )
        .with_help(format!(
            "a host reached directly needs `jump_host: none` under `{}` when `connection:` names a jump host",
            cycle[0]
        ))
    } else {
        Diagnostic::new(
            pos.clone(),
            format!("jump hosts form a loop: {}", cycle.join(" → ")),
        )
        .with_help("each host here is reached through the next; one of them must be reachable without the others")
    });
}

fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_host(
    name: &str,
    key: &Node,
    node: &Node,
    defaults: &Connection,
    diags: &mut Diagnostics,
) -> Option<Host> {
    let what = format!("host `{name}`");
    let fields = Fields::new(node, &what, HOST_KEYS, diags)?;
    let mut connection = read_connection(node, &what, HOST_KEYS, defaults.clone(), diags)?;
    connection.address = match fields.str("address", diags) {
        Some(a) => match ssh_args::address_problem(&a) {
            Some(why) => {
                diags.push(Diagnostic::new(
                    fields
                        .get("address")
                        .map_or(key.pos.clone(), |n| n.pos.clone()),
                    format!("`{}` is not a usable address: it {why}", one_line(&a)),
                ));
                return None;
            }
            None => a,
        },
        None => name.to_string(),
    };
    let vars = fields
        .get("vars")
        .map(|n| to_vars(n, &format!("vars of {what}"), diags))
        .unwrap_or_default();
    Some(Host {
        name: name.to_string(),
        pos: key.pos.clone(),
        connection,
        vars,
    })
}

/// Connection settings, starting from `base` (the inventory-wide defaults for a host). Every
/// value that reaches ssh's or sudo's command line is checked here (`crate::ssh_args`), with
/// its position, so `check`, `plan` and `apply` all refuse it before any host is touched.
fn read_connection(
    node: &Node,
    what: &str,
    allowed: &[&str],
    base: Connection,
    diags: &mut Diagnostics,
) -> Option<Connection> {
    // Unknown keys were already reported by the caller for hosts; for `connection` report here.
    let mut quiet = Diagnostics::default();
    let fields = Fields::new(
        node,
        what,
        allowed,
        if allowed == CONNECTION_KEYS {
            diags
        } else {
            &mut quiet
        },
    )?;
    let mut c = base;
    if let Some(p) = fields.int("port", 1, 65535, diags) {
        c.port = p as u16;
    }
    let checked = |key: &str, problem: fn(&str) -> Option<String>, diags: &mut Diagnostics| {
        let value = fields.str(key, diags)?;
        match problem(&value) {
            None => Some(value),
            Some(why) => {
                let pos = fields.get(key).map(|n| n.pos.clone())?;
                diags.push(Diagnostic::new(
                    pos,
                    format!("`{key}: {}` {why}", one_line(&value)),
                ));
                None
            }
        }
    };
    if let Some(u) = checked("user", ssh_args::user_problem, diags) {
        c.user = Some(u);
    }
    if let Some(f) = checked("identity_file", ssh_args::path_problem, diags) {
        c.identity_file = Some(PathBuf::from(f));
    }
    if let Some(f) = checked("known_hosts_file", ssh_args::path_problem, diags) {
        c.known_hosts_file = Some(PathBuf::from(f));
    }
    if let Some(j) = checked("jump_host", jump_problem, diags) {
        // `none` (as in ssh's `ProxyJump none`): this host is reached directly, e.g. the
        // bastion itself when `connection:` names it for every host.
        c.jump_host = (j != "none").then_some(j);
    }
    if let Some(b) = fields.bool("accept_new_host_keys", diags) {
        c.accept_new_host_keys = b;
    }
    if let Some(b) = fields.bool("become", diags) {
        c.become_root = b;
    }
    if let Some(u) = checked("become_user", ssh_args::become_user_problem, diags) {
        c.become_user = Some(u);
    }
    if let Some(b) = fields.bool("session_shell", diags) {
        c.channel_per_command = !b;
    }
    read_allowed_unsafe(&fields, &mut c, diags);
    if let Some(n) = fields.get("ssh_options") {
        read_ssh_options(n, &mut c, diags);
    }
    Some(c)
}

fn jump_problem(j: &str) -> Option<String> {
    if j == "none" {
        return None;
    }
    ssh_args::parse_jump(j).err()
}

/// `allow_unsafe_ssh_options: [ProxyCommand, …]`: the escape hatch for keywords that are
/// refused by default (see `ssh_args`). A host's list adds to the `connection:` one.
fn read_allowed_unsafe(fields: &Fields<'_>, c: &mut Connection, diags: &mut Diagnostics) {
    for (name, pos) in fields
        .str_list("allow_unsafe_ssh_options", diags)
        .unwrap_or_default()
    {
        match ssh_args::keyword(&name) {
            ssh_args::Keyword::Unsafe(k, _) => c.allow_unsafe_ssh_options.push(k.to_string()),
            ssh_args::Keyword::Safe(_) => {}
            ssh_args::Keyword::Never(k, instead) => diags.push(
                Diagnostic::new(pos, format!("ssh option `{k}` cannot be allowed"))
                    .with_help(instead),
            ),
            ssh_args::Keyword::Unknown => diags.push(
                Diagnostic::new(pos, format!("unknown ssh option `{name}`"))
                    .suggest(&name, ssh_args::known_keywords()),
            ),
        }
    }
}

/// `ssh_options:` — known keywords only (case-insensitive, stored in ssh's spelling), each
/// value checked; risky keywords only when `allow_unsafe_ssh_options` names them.
fn read_ssh_options(n: &Node, c: &mut Connection, diags: &mut Diagnostics) {
    for (k, v) in decode::mapping(n, "`ssh_options`", diags).unwrap_or_default() {
        let key = k.key_text();
        let value = match &v.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            // ssh takes yes/no; a YAML boolean here is almost certainly meant that way.
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            other => {
                diags.push(Diagnostic::new(
                    v.pos.clone(),
                    format!(
                        "ssh option `{key}` needs a string or number, found {}",
                        other.kind()
                    ),
                ));
                continue;
            }
        };
        let checked = ssh_option_keyword(&key, &k.pos, &c.allow_unsafe_ssh_options).and_then(
            |(canonical, safe)| {
                let problem = if safe {
                    ssh_args::safe_value_problem(canonical, &value)
                } else {
                    ssh_args::unsafe_value_problem(&value)
                };
                match problem {
                    Some(why) => Err(Diagnostic::new(
                        v.pos.clone(),
                        format!("ssh option `{canonical}`: `{}` {why}", one_line(&value)),
                    )),
                    None => Ok(canonical),
                }
            },
        );
        match checked {
            Ok(canonical) => {
                c.ssh_options.insert(canonical.to_string(), value);
            }
            Err(d) => diags.push(d),
        }
    }
}

/// How ssh spells an `ssh_options` keyword and whether it is a safe one (an allowed unsafe
/// one's value is held only to one line), or why the keyword is refused (at `pos`).
fn ssh_option_keyword(
    key: &str,
    pos: &Pos,
    allowed_unsafe: &[String],
) -> Result<(&'static str, bool), Diagnostic> {
    match ssh_args::keyword(key) {
        ssh_args::Keyword::Safe(kw) => Ok((kw, true)),
        ssh_args::Keyword::Unsafe(kw, _) if allowed_unsafe.iter().any(|a| a == kw) => {
            Ok((kw, false))
        }
        ssh_args::Keyword::Unsafe(kw, risk) => Err(Diagnostic::new(
            pos.clone(),
            format!("ssh option `{kw}` is refused: it {risk}"),
        )
        .with_help(format!(
            "if you accept that risk, name it in `allow_unsafe_ssh_options: [{kw}]` (see the README)"
        ))),
        ssh_args::Keyword::Never(kw, instead) => Err(Diagnostic::new(
            pos.clone(),
            format!("ssh option `{kw}` is not allowed in `ssh_options`"),
        )
        .with_help(instead)),
        ssh_args::Keyword::Unknown => Err(Diagnostic::new(
            pos.clone(),
            format!("unknown ssh option `{}`", one_line(key)),
        )
        .suggest(key, ssh_args::known_keywords())
        .with_help_if_none("cutover accepts the ssh_config(5) keywords listed in the README")),
    }
}

fn read_group(
    name: &str,
    key: &Node,
    node: &Node,
    members: &mut Vec<Member>,
    diags: &mut Diagnostics,
) -> Option<Group> {
    let what = format!("group `{name}`");
    let fields = Fields::new(node, &what, GROUP_KEYS, diags)?;
    let names = |k: &str, diags: &mut Diagnostics| fields.str_list(k, diags).unwrap_or_default();
    let hosts = names("hosts", diags);
    let children = names("children", diags);
    if name == "all" && (!hosts.is_empty() || !children.is_empty()) {
        diags.push(Diagnostic::new(
            key.pos.clone(),
            "group `all` always holds every host; give it only `vars`",
        ));
    }
    let vars = fields
        .get("vars")
        .map(|n| to_vars(n, &format!("vars of {what}"), diags))
        .unwrap_or_default();
    let priority = fields.int("priority", -1000, 1000, diags).unwrap_or(0);
    let mut g = Group {
        name: name.to_string(),
        pos: key.pos.clone(),
        hosts: hosts.iter().map(|(h, _)| h.clone()).collect(),
        children: children.iter().map(|(c, _)| c.clone()).collect(),
        vars,
        priority,
    };
    g.hosts.dedup();
    for (h, p) in hosts {
        members.push(Member {
            group: name.to_string(),
            kind: MemberKind::Host,
            name: h,
            pos: p,
        });
    }
    for (c, p) in children {
        members.push(Member {
            group: name.to_string(),
            kind: MemberKind::Child,
            name: c,
            pos: p,
        });
    }
    Some(g)
}

/// A name listed in a group, with where it was written, for the reference check.
struct Member {
    group: String,
    kind: MemberKind,
    name: String,
    pos: Pos,
}

#[derive(PartialEq)]
enum MemberKind {
    Host,
    Child,
}

fn to_vars(node: &Node, what: &str, diags: &mut Diagnostics) -> Vec<Var> {
    decode::variables(node, what, diags)
        .into_iter()
        .map(|(name, value, pos)| Var { name, value, pos })
        .collect()
}

fn check_references(inv: &Inventory, members: Vec<Member>, diags: &mut Diagnostics) {
    let host_names: Vec<&str> = inv.host_names().collect();
    let group_names: Vec<&str> = inv.groups.keys().map(String::as_str).collect();
    for Member {
        group,
        kind,
        name,
        pos,
    } in members
    {
        if kind == MemberKind::Host && !host_names.contains(&name.as_str()) {
            let d = Diagnostic::new(
                pos.clone(),
                format!("group `{group}` lists host `{name}`, which is not defined under `hosts:`"),
            );
            diags.push(if group_names.contains(&name.as_str()) {
                d.with_help(format!("`{name}` is a group; list it under `children:`"))
            } else {
                d.suggest(&name, host_names.iter().copied())
            });
        }
        if kind == MemberKind::Child && !group_names.contains(&name.as_str()) {
            let d = Diagnostic::new(pos.clone(), format!("group `{group}` lists child group `{name}`, which is not defined under `groups:`"));
            diags.push(if host_names.contains(&name.as_str()) {
                d.with_help(format!("`{name}` is a host; list it under `hosts:`"))
            } else {
                d.suggest(&name, group_names.iter().copied())
            });
        }
        if kind == MemberKind::Child && name == "all" {
            diags.push(Diagnostic::new(
                inv.groups[&group].pos.clone(),
                "`all` cannot be a child group",
            ));
        }
    }
}

fn check_cycles(inv: &Inventory, diags: &mut Diagnostics) {
    fn visit(
        inv: &Inventory,
        g: &str,
        stack: &mut Vec<String>,
        reported: &mut Vec<String>,
        diags: &mut Diagnostics,
    ) {
        if let Some(i) = stack.iter().position(|s| s == g) {
            let cycle: Vec<String> = stack[i..].iter().cloned().chain([g.to_string()]).collect();
            let key = {
                let mut k = stack[i..].to_vec();
                k.sort();
                k.join(",")
            };
            if !reported.contains(&key) {
                reported.push(key);
                diags.push(Diagnostic::new(
                    inv.groups[g].pos.clone(),
                    format!("groups form a cycle: {}", cycle.join(" → ")),
                ));
            }
            return;
        }
        let Some(group) = inv.groups.get(g) else {
            return;
        };
        stack.push(g.to_string());
        for c in &group.children {
            visit(inv, c, stack, reported, diags);
        }
        stack.pop();
    }
    let mut reported = Vec::new();
    for g in inv.groups.keys() {
        visit(inv, g, &mut Vec::new(), &mut reported, diags);
    }
}

/// `secrets_file:` decrypted with `secrets_key_file:` (or the environment's key). The key
/// also decrypts the playbooks' encrypted `vars_files:`.
fn secrets_section(
    path: &Path,
    top: &Fields<'_>,
    diags: &mut Diagnostics,
) -> (Option<PathBuf>, Vec<Var>) {
    let key = top
        .str("secrets_key_file", diags)
        .map(|k| path.parent().unwrap_or(Path::new(".")).join(k));
    if let Some(k) = &key {
        crate::secrets::remember_inventory_key_file(k);
    }
    match top.get("secrets_file") {
        Some(node) => read_secrets(path, node, key.as_deref(), diags),
        None => (None, Vec::new()),
    }
}

/// Decrypt `secrets_file:` (relative to the inventory) into variables, each registered for
/// masking before anything can print it.
fn read_secrets(
    inventory: &Path,
    node: &Node,
    key: Option<&Path>,
    diags: &mut Diagnostics,
) -> (Option<PathBuf>, Vec<Var>) {
    let Some(rel) = decode::string(node, "secrets_file", diags) else {
        return (None, Vec::new());
    };
    let file = inventory.parent().unwrap_or(Path::new(".")).join(&rel);
    let plain = match crate::secrets::decrypt_file_with(&file, key) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::new(
                node.pos.clone(),
                format!("secrets file {}: {e:#}", file.display()),
            ));
            return (Some(file), Vec::new());
        }
    };
    let source = std::sync::Arc::new(yaml::Source {
        path: file.clone(),
        text: String::new(),
    });
    let root = match yaml::parse_bytes(source, plain.into_bytes()) {
        Ok((_, root)) => root,
        Err(d) => {
            diags.push(d);
            return (Some(file), Vec::new());
        }
    };
    let vars = to_vars(&root, "the secrets file", diags);
    for v in &vars {
        match &v.value {
            serde_json::Value::String(s) => crate::secrets::register(&v.name, s),
            other => crate::secrets::register(&v.name, &other.to_string()),
        }
    }
    (Some(file), vars)
}
