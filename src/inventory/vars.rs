//! Variable precedence, lowest first:
//!
//! 1. play `defaults:`
//! 2. group `all`
//! 3. groups by depth: a parent group before its children (depth = longest path below `all`)
//! 4. the inventory's encrypted `secrets_file:`
//! 5. the host's own `vars:`
//! 6. play `vars:`
//! 7. play `vars_files:`, a later file over an earlier one
//! 8. the `vars:` beside an `include_steps:`, for its steps (bound per step by `playbook::scope`)
//! 9. the command line: `-e key=value`, `-e @file.yml`, in the order given
//!
//! Two groups at the same depth that give one host different values for one variable are an
//! error, unless their `priority:` differs (higher wins). Nothing is decided by name or file
//! order, so reordering a file never changes a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::{Inventory, Var};
use crate::diag::{Diagnostic, Diagnostics, Pos};

/// Where a resolved value came from, for `cutover inventory --host` and for error messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    PlayDefaults(Pos),
    Group { name: String, pos: Pos },
    Host(Pos),
    PlayVars(Pos),
    VarsFile(Pos),
    CommandLine(Pos),
    Secrets(Pos),
}

impl Origin {
    /// Where the value was written.
    pub fn pos(&self) -> &Pos {
        match self {
            Origin::PlayDefaults(p)
            | Origin::Host(p)
            | Origin::PlayVars(p)
            | Origin::VarsFile(p)
            | Origin::CommandLine(p)
            | Origin::Secrets(p)
            | Origin::Group { pos: p, .. } => p,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::PlayDefaults(p) => write!(f, "play defaults ({p})"),
            Origin::Group { name, pos } => write!(f, "group {name} ({pos})"),
            Origin::Host(p) => write!(f, "host vars ({p})"),
            Origin::PlayVars(p) => write!(f, "play vars ({p})"),
            Origin::VarsFile(p) => write!(f, "vars file ({p})"),
            Origin::CommandLine(p) => write!(f, "command line ({p})"),
            Origin::Secrets(p) => write!(f, "secrets file ({p})"),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub vars: BTreeMap<String, (serde_json::Value, Origin)>,
}

impl Resolved {
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.vars.get(name).map(|(v, _)| v)
    }
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.vars
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
    fn set(&mut self, var: &Var, origin: Origin) {
        self.vars
            .insert(var.name.clone(), (var.value.clone(), origin));
    }
}

/// The play and command-line layers around the inventory's own.
#[derive(Clone, Copy, Default)]
pub struct Layers<'a> {
    pub play_defaults: &'a [Var],
    pub play_vars: &'a [Var],
    pub play_vars_files: &'a [Var],
    pub extra: &'a [Var],
}

/// Resolve every variable of one host. Same-depth conflicts are reported, not guessed.
pub fn resolve(inv: &Inventory, host: &str, layers: Layers<'_>) -> Result<Resolved, Diagnostics> {
    let mut out = Resolved::default();
    let mut diags = Diagnostics::default();
    for v in layers.play_defaults {
        out.set(v, Origin::PlayDefaults(v.pos.clone()));
    }
    let depths = inv.group_depths();
    let mut groups: Vec<(&str, usize, i64)> = inv
        .groups_of(host)
        .into_iter()
        .chain(std::iter::once("all"))
        .map(|g| {
            (
                g,
                depths.get(g).copied().unwrap_or(1),
                inv.groups[g].priority,
            )
        })
        .collect();
    groups.sort_by_key(|(name, depth, prio)| (*depth, *prio, *name));

    // Same depth and priority: one value or an error.
    for (i, (g1, d1, p1)) in groups.iter().enumerate() {
        for (g2, d2, p2) in groups.iter().skip(i + 1) {
            if (d1, p1) != (d2, p2) {
                continue;
            }
            for v1 in &inv.groups[*g1].vars {
                if let Some(v2) = inv.groups[*g2]
                    .vars
                    .iter()
                    .find(|v| v.name == v1.name && v.value != v1.value)
                {
                    diags.push(
                        Diagnostic::new(
                            v2.pos.clone(),
                            format!(
                                "host `{host}` gets different values for `{}` from groups `{g1}` and `{g2}`, which are at the same depth",
                                v1.name
                            ),
                        )
                        .with_help(format!(
                            "set it on the host, make one group a child of the other, or give one group a higher `priority:` (the other is set at {})",
                            v1.pos
                        )),
                    );
                }
            }
        }
    }
    for (g, _, _) in &groups {
        let group = &inv.groups[*g];
        for v in &group.vars {
            out.set(
                v,
                Origin::Group {
                    name: group.name.clone(),
                    pos: v.pos.clone(),
                },
            );
        }
    }
    for v in &inv.secrets {
        out.set(v, Origin::Secrets(v.pos.clone()));
    }
    if let Some(h) = inv.host(host) {
        for v in &h.vars {
            out.set(v, Origin::Host(v.pos.clone()));
        }
    }
    for v in layers.play_vars {
        out.set(v, Origin::PlayVars(v.pos.clone()));
    }
    for v in layers.play_vars_files {
        out.set(v, Origin::VarsFile(v.pos.clone()));
    }
    for v in layers.extra {
        out.set(v, Origin::CommandLine(v.pos.clone()));
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Parse `-e` arguments: `key=value` (the value is a string) or `@file.yml` (a mapping).
pub fn parse_extra_vars(args: &[String]) -> Result<Vec<Var>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let pos = Pos::cli(&format!("-e #{}", i + 1));
        if let Some(file) = arg.strip_prefix('@') {
            match crate::yaml::load_file(Path::new(file)) {
                Ok((_, node)) => {
                    let vars = crate::decode::variables(&node, "extra vars file", &mut diags);
                    out.extend(
                        vars.into_iter()
                            .map(|(name, value, pos)| Var { name, value, pos }),
                    );
                }
                Err(d) => diags.push(d),
            }
            continue;
        }
        match arg.split_once('=') {
            Some((k, v)) if crate::decode::is_identifier(k) => {
                if let Some(d) = crate::decode::reserved_variable(k, &pos) {
                    diags.push(d);
                    continue;
                }
                let value = serde_json::Value::String(v.to_string());
                crate::secrets::note_variable(k, &value);
                out.push(Var {
                    name: k.to_string(),
                    value,
                    pos,
                });
            }
            _ => diags.push(malformed(i, arg)),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// The `-e` arguments that are neither `name=value` nor `@file`: a wrong command line, found
/// without reading anything.
pub fn malformed_extra_vars(args: &[String]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for (i, arg) in args.iter().enumerate() {
        let ok = arg.strip_prefix('@').is_some_and(|f| !f.is_empty())
            || arg
                .split_once('=')
                .is_some_and(|(k, _)| crate::decode::is_identifier(k));
        if !ok {
            diags.push(malformed(i, arg));
        }
    }
    diags
}

fn malformed(i: usize, arg: &str) -> Diagnostic {
    Diagnostic::new(
        Pos::cli(&format!("-e #{}", i + 1)),
        format!("`-e {arg}`: expected `name=value` or `@file.yml`"),
    )
    .with_help("variable names use letters, digits and `_`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_checked;

    fn inv(text: &str) -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yml");
        std::fs::write(&path, text).unwrap();
        let inv = load_checked(&path).unwrap();
        (dir, inv)
    }

    #[test]
    fn precedence_all_parent_child_host_play_vars_file_cli() {
        let (_d, inv) = inv(
            "hosts:\n  db1: {vars: {h: host}}\ngroups:\n  all: {vars: {a: all, p: all, c: all, h: all, x: all}}\n  databases: {children: [db_master], vars: {p: parent, c: parent}}\n  db_master: {hosts: [db1], vars: {c: child}}\n",
        );
        let pd = [
            Var {
                name: "d".into(),
                value: "default".into(),
                pos: Pos::cli("t"),
            },
            Var {
                name: "a".into(),
                value: "default".into(),
                pos: Pos::cli("t"),
            },
        ];
        let pv = [Var {
            name: "x".into(),
            value: "play".into(),
            pos: Pos::cli("t"),
        }];
        let ex = [Var {
            name: "h".into(),
            value: "cli".into(),
            pos: Pos::cli("t"),
        }];
        // A vars file over the play's vars (`x`), under the command line (`h`).
        let files = ["x", "h"].map(|name| Var {
            name: name.into(),
            value: "file".into(),
            pos: Pos::cli("t"),
        });
        let r = resolve(
            &inv,
            "db1",
            Layers {
                play_defaults: &pd,
                play_vars: &pv,
                play_vars_files: &files,
                extra: &ex,
            },
        )
        .unwrap();
        assert_eq!(r.get("d").unwrap(), "default");
        assert_eq!(r.get("a").unwrap(), "all");
        assert_eq!(r.get("p").unwrap(), "parent");
        assert_eq!(r.get("c").unwrap(), "child");
        assert_eq!(r.get("x").unwrap(), "file");
        assert!(matches!(&r.vars["x"].1, Origin::VarsFile(_)));
        assert_eq!(r.get("h").unwrap(), "cli");
        assert!(matches!(&r.vars["c"].1, Origin::Group { name, .. } if name == "db_master"));
    }

    #[test]
    fn same_depth_conflict_is_an_error_unless_priority_breaks_it() {
        let text = "hosts:\n  h1: {}\ngroups:\n  a: {hosts: [h1], vars: {port: 1}}\n  b: {hosts: [h1], vars: {port: 2}}\n";
        let (_d, i) = inv(text);
        let err = resolve(&i, "h1", Layers::default()).unwrap_err();
        assert!(
            err.items[0].message.contains("same depth"),
            "{:?}",
            err.items
        );
        assert_eq!(err.items[0].pos.line, 5);
        let (_d, i) = inv(&text.replace("b: {hosts", "b: {priority: 1, hosts"));
        assert_eq!(
            resolve(&i, "h1", Layers::default())
                .unwrap()
                .get("port")
                .unwrap(),
            2
        );
        // equal values are no conflict
        let (_d, i) = inv(&text.replace("port: 2", "port: 1"));
        assert!(resolve(&i, "h1", Layers::default()).is_ok());
    }

    #[test]
    fn extra_vars_forms() {
        let v = parse_extra_vars(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(
            (v[0].name.as_str(), v[1].value.as_str().unwrap()),
            ("a", "x=y")
        );
        assert!(parse_extra_vars(&["no-equals".into()]).is_err());
        assert!(parse_extra_vars(&["@/nonexistent.yml".into()]).is_err());
    }

    #[test]
    fn extra_vars_cannot_take_a_name_cutover_sets_itself() {
        let e = parse_extra_vars(&["a=1".into(), "hostvars=x".into()]).unwrap_err();
        let d = e.items;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pos.to_string(), "<-e #2>");
        assert_eq!(
            d[0].message,
            "variable `hostvars` is set by cutover itself; this value would never be seen"
        );
    }
}
