//! Reading and validating an inventory file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Connection, Group, Host, Inventory, Var};
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::yaml::{self, Node, Value};

const TOP_KEYS: &[&str] = &[
    "connection",
    "hosts",
    "groups",
    "secrets_file",
    "secrets_key_file",
    "secret_vars",
];
const CONNECTION_KEYS: &[&str] = &[
    "port",
    "user",
    "identity_file",
    "known_hosts_file",
    "ssh_options",
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
    let (secrets_file, secrets) = match top.get("secrets_file") {
        Some(node) => {
            let key = top
                .str("secrets_key_file", diags)
                .map(|k| path.parent().unwrap_or(Path::new(".")).join(k));
            read_secrets(path, node, key.as_deref(), diags)
        }
        None => (None, Vec::new()),
    };
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
                if let Some(h) = read_host(&name, k, v, &defaults, diags) {
                    hosts.push(h);
                }
            }
        }
        None => diags.push(Diagnostic::new(
            root.pos.clone(),
            "the inventory has no `hosts:` section",
        )),
    }

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

    let inv = Inventory {
        path: path.to_path_buf(),
        hosts,
        groups,
        secrets,
        secrets_file,
        secret_vars,
    };
    check_references(&inv, members, diags);
    check_cycles(&inv, diags);
    Some(inv)
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
        Some(a)
            if a.trim().is_empty() || a.starts_with('-') || a.chars().any(char::is_whitespace) =>
        {
            diags.push(Diagnostic::new(
                fields
                    .get("address")
                    .map_or(key.pos.clone(), |n| n.pos.clone()),
                format!("`{a}` is not a usable address"),
            ));
            return None;
        }
        Some(a) => a,
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

/// Connection settings, starting from `base` (the inventory-wide defaults for a host).
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
    if let Some(u) = fields.str("user", diags) {
        c.user = Some(u);
    }
    if let Some(f) = fields.str("identity_file", diags) {
        c.identity_file = Some(PathBuf::from(f));
    }
    if let Some(f) = fields.str("known_hosts_file", diags) {
        c.known_hosts_file = Some(PathBuf::from(f));
    }
    if let Some(j) = fields.str("jump_host", diags) {
        c.jump_host = Some(j);
    }
    if let Some(b) = fields.bool("accept_new_host_keys", diags) {
        c.accept_new_host_keys = b;
    }
    if let Some(b) = fields.bool("become", diags) {
        c.become_root = b;
    }
    if let Some(u) = fields.str("become_user", diags) {
        c.become_user = Some(u);
    }
    if let Some(b) = fields.bool("session_shell", diags) {
        c.channel_per_command = !b;
    }
    if let Some(n) = fields.get("ssh_options") {
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
            if key.is_empty() || !key.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                diags.push(Diagnostic::new(
                    k.pos.clone(),
                    format!("`{key}` is not an ssh option name (see ssh_config(5))"),
                ));
                continue;
            }
            if value.contains('\n') {
                diags.push(Diagnostic::new(
                    v.pos.clone(),
                    format!("ssh option `{key}` must be on one line"),
                ));
                continue;
            }
            c.ssh_options.insert(key, value);
        }
    }
    Some(c)
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
