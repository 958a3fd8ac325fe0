//! The inventory: hosts, how to reach them, groups, and their variables.
//!
//! File format (YAML), documented in the README:
//! ```yaml
//! connection: { user: root, port: 22, ... }   # defaults for every host
//! hosts:
//!   app1: { address: 10.0.0.11, vars: { node_name: node1 } }
//! groups:
//!   all: { vars: { ... } }
//!   app_nodes: { hosts: [app1, app2], vars: { ... } }
//!   production: { children: [app_nodes, databases] }
//! ```

mod load;
pub mod pattern;
pub mod vars;
pub mod window;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, Pos};

pub use load::load;

/// How to reach one host over ssh.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connection {
    pub address: String,
    pub port: u16,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// Passed to ssh as `-o Key=Value`, after cutover's own options.
    pub ssh_options: BTreeMap<String, String>,
    /// Risky `ssh_options` keywords the inventory accepts anyway (`allow_unsafe_ssh_options`).
    pub allow_unsafe_ssh_options: Vec<String>,
    pub jump_host: Option<String>,
    /// Off by default: an unknown host key refuses the host. On: accept a *new* key once
    /// (ssh's `accept-new`); a *changed* key is always refused.
    pub accept_new_host_keys: bool,
    pub become_root: bool,
    pub become_user: Option<String>,
    /// `session_shell: false`: a new ssh channel (and sudo) for every command instead of one
    /// long-lived shell per host (`crate::session_shell`), for hosts whose sshd or sudo
    /// policy does not allow a long-lived session.
    pub channel_per_command: bool,
}

impl Connection {
    /// A connection's values checked again where they are used (the transport): None when every
    /// one is fine. The inventory loader reports each with its position first; this guards the
    /// command line against a `Connection` built any other way.
    pub fn problem(&self) -> Option<String> {
        use crate::ssh_args::{
            address_problem, become_user_problem, keyword, parse_jump, safe_value_problem,
            unsafe_value_problem, user_problem, Keyword,
        };
        let c = self;
        let checks = [
            address_problem(&c.address).map(|w| format!("address `{}` {w}", c.address)),
            c.user
                .as_deref()
                .and_then(|u| user_problem(u).map(|w| format!("user `{u}` {w}"))),
            c.become_user
                .as_deref()
                .and_then(|u| become_user_problem(u).map(|w| format!("become_user `{u}` {w}"))),
            c.jump_host
                .as_deref()
                .and_then(|j| parse_jump(j).err().map(|w| format!("jump_host `{j}`: {w}"))),
            c.ssh_options.iter().find_map(|(k, v)| {
                let why = match keyword(k) {
                    Keyword::Safe(k) => safe_value_problem(k, v),
                    Keyword::Unsafe(k, _) if c.allow_unsafe_ssh_options.iter().any(|a| a == k) => {
                        unsafe_value_problem(v)
                    }
                    _ => Some("is not allowed".into()),
                };
                why.map(|w| format!("ssh option `{k}` {w}"))
            }),
        ];
        checks.into_iter().flatten().next()
    }
}

/// A variable as written in a file, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub value: serde_json::Value,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub pos: Pos,
    pub connection: Connection,
    pub vars: Vec<Var>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub pos: Pos,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vec<Var>,
    /// Breaks ties between groups at the same depth that set the same variable.
    pub priority: i64,
}

#[derive(Debug)]
pub struct Inventory {
    pub path: PathBuf,
    /// In file order: targeting and output follow it.
    pub hosts: Vec<Host>,
    /// Every group, including the implicit `all`.
    pub groups: BTreeMap<String, Group>,
    /// Variables decrypted from `secrets_file:` (all secret).
    pub secrets: Vec<Var>,
    /// The encrypted secrets file, if the inventory names one.
    pub secrets_file: Option<PathBuf>,
    /// Names of variables, set anywhere, whose values are secret (`secret_vars:`).
    pub secret_vars: Vec<String>,
    /// `maintenance_window:`, the window agreed with the users (`window.rs`).
    pub maintenance_window: Option<window::AgreedWindow>,
    /// `maintenance_window_margin:`, percent added to a predicted window (default 20).
    pub window_margin_percent: f64,
    /// Variables the controller adds to every host's context from what it knows itself:
    /// `maintenance_window` (from `maintenance_window:`) and `window_prediction` (from the
    /// newest rehearsal on record, set by `run::inputs`). See `context_names`.
    pub controller_vars: BTreeMap<String, serde_json::Value>,
}

impl Inventory {
    /// Is this variable's value secret?
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_vars.iter().any(|s| s == name) || self.secrets.iter().any(|v| v.name == name)
    }
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }

    /// All hosts of a group, through its children, in inventory order.
    pub fn group_hosts(&self, group: &str) -> Vec<&str> {
        let mut members = std::collections::BTreeSet::new();
        self.collect_members(group, &mut members, &mut Vec::new());
        self.host_names().filter(|h| members.contains(*h)).collect()
    }

    fn collect_members<'a>(
        &'a self,
        group: &str,
        out: &mut std::collections::BTreeSet<&'a str>,
        path: &mut Vec<String>,
    ) {
        if path.iter().any(|p| p == group) {
            return; // cycles are reported by validation; don't loop here
        }
        if group == "all" {
            out.extend(self.host_names());
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        out.extend(g.hosts.iter().map(String::as_str));
        path.push(group.to_string());
        for child in &g.children {
            self.collect_members(child, out, path);
        }
        path.pop();
    }

    /// Names of the groups a host belongs to, directly or through a child group (never `all`).
    pub fn groups_of(&self, host: &str) -> Vec<&str> {
        self.groups
            .keys()
            .filter(|g| g.as_str() != "all" && self.group_hosts(g).contains(&host))
            .map(String::as_str)
            .collect()
    }

    /// Depth of each group below `all`: top-level groups are 1, their children 2, and so on.
    /// A group reachable along several paths takes the longest, so a child always outranks
    /// every one of its parents.
    pub fn group_depths(&self) -> BTreeMap<&str, usize> {
        fn depth<'a>(
            inv: &'a Inventory,
            g: &'a str,
            memo: &mut BTreeMap<&'a str, usize>,
            stack: &mut Vec<&'a str>,
        ) -> usize {
            if let Some(d) = memo.get(g) {
                return *d;
            }
            if g == "all" {
                return 0;
            }
            if stack.contains(&g) {
                return 1; // cycle; reported by validation
            }
            stack.push(g);
            let parents: Vec<&str> = inv
                .groups
                .values()
                .filter(|p| p.children.iter().any(|c| c == g))
                .map(|p| p.name.as_str())
                .collect();
            let d = parents
                .iter()
                .map(|p| depth(inv, p, memo, stack) + 1)
                .max()
                .unwrap_or(1);
            stack.pop();
            memo.insert(g, d);
            d
        }
        let mut memo = BTreeMap::new();
        for g in self.groups.keys() {
            depth(self, g, &mut memo, &mut Vec::new());
        }
        memo.insert("all", 0);
        memo
    }
}

/// Read an inventory only for what it declares secret (the secrets file, `secret_vars:` and
/// their values), so that files read before it — `-e @file` — cannot quote a secret in an
/// error. Its own problems are reported when the command loads it.
pub fn declare_secrets(path: &Path) {
    let _ = load(path, &mut Diagnostics::default());
}

/// Load an inventory, or return every problem found in it.
pub fn load_checked(path: &Path) -> Result<Inventory, Diagnostics> {
    let mut diags = Diagnostics::default();
    let inv = load(path, &mut diags);
    match inv {
        Some(inv) if diags.is_empty() => Ok(inv),
        _ => Err(diags),
    }
}
