//! Host patterns, as admins know them from Ansible: `app_nodes`, `app1`, `all`, `app*`,
//! `a:b` (union), `a:&b` (intersection), `a:!b` (exclusion). `,` works like `:`.
//!
//! Unions are taken first, then intersections, then exclusions, whatever the order written;
//! the result keeps inventory order.

use super::Inventory;

#[derive(Debug, PartialEq)]
pub enum PatternError {
    Empty,
    /// A term names no host or group and has no wildcard.
    Unknown {
        term: String,
        suggestion: Option<String>,
    },
    /// The pattern is valid but selects nothing.
    NoMatch,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Empty => write!(f, "empty host pattern"),
            PatternError::Unknown { term, suggestion } => {
                write!(f, "`{term}` is neither a host nor a group in the inventory")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                Ok(())
            }
            PatternError::NoMatch => write!(f, "pattern matches no host"),
        }
    }
}

/// The hosts a pattern selects, in inventory order.
pub fn select<'a>(inv: &'a Inventory, pattern: &str) -> Result<Vec<&'a str>, PatternError> {
    let terms: Vec<&str> = pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Err(PatternError::Empty);
    }
    let mut union: Vec<&str> = Vec::new();
    let mut intersect: Vec<Vec<&str>> = Vec::new();
    let mut exclude: Vec<&str> = Vec::new();
    let mut has_positive = false;
    for term in terms {
        if let Some(t) = term.strip_prefix('&') {
            intersect.push(expand(inv, t)?);
        } else if let Some(t) = term.strip_prefix('!') {
            exclude.extend(expand(inv, t)?);
        } else {
            has_positive = true;
            union.extend(expand(inv, term)?);
        }
    }
    // `&x` or `!x` alone applies to everything, as in Ansible.
    if !has_positive {
        union = inv.host_names().collect();
    }
    let selected: Vec<&str> = inv
        .host_names()
        .filter(|h| union.contains(h))
        .filter(|h| intersect.iter().all(|set| set.contains(h)))
        .filter(|h| !exclude.contains(h))
        .collect();
    if selected.is_empty() {
        return Err(PatternError::NoMatch);
    }
    Ok(selected)
}

/// One term: `all`/`*`, a group, a host, or a glob over host and group names.
fn expand<'a>(inv: &'a Inventory, term: &str) -> Result<Vec<&'a str>, PatternError> {
    if term.is_empty() {
        return Err(PatternError::Empty);
    }
    if term == "all" || term == "*" {
        return Ok(inv.host_names().collect());
    }
    if inv.groups.contains_key(term) {
        return Ok(inv.group_hosts(term));
    }
    if let Some(h) = inv.host(term) {
        return Ok(vec![h.name.as_str()]);
    }
    if term.contains(['*', '?', '[']) {
        let mut out: Vec<&str> = inv.host_names().filter(|h| glob(term, h)).collect();
        for g in inv.groups.keys().filter(|g| glob(term, g)) {
            out.extend(inv.group_hosts(g));
        }
        return Ok(out);
    }
    let names = inv
        .host_names()
        .chain(inv.groups.keys().map(String::as_str));
    Err(PatternError::Unknown {
        term: term.to_string(),
        suggestion: crate::diag::closest(term, names).map(str::to_string),
    })
}

/// Shell-style glob: `*`, `?`, and `[abc]` / `[a-z]` classes.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // returns (matched, length of the class including brackets)
        let end = p.iter().position(|&x| x == ']')?;
        let body = &p[1..end];
        let mut i = 0;
        let mut hit = false;
        while i < body.len() {
            if i + 2 < body.len() && body[i + 1] == '-' {
                hit |= body[i] <= c && c <= body[i + 2];
                i += 3;
            } else {
                hit |= body[i] == c;
                i += 1;
            }
        }
        Some((hit, end + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') if !t.is_empty() => match class(p, t[0]) {
                Some((true, len)) => go(&p[len..], &t[1..]),
                Some((false, _)) => false,
                None => t[0] == '[' && go(&p[1..], &t[1..]),
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_checked;

    fn inv() -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yml");
        std::fs::write(
            &path,
            "hosts:\n  app1: {}\n  app2: {}\n  db1: {}\n  db2: {}\n  lb: {}\ngroups:\n  app_nodes: {hosts: [app1, app2]}\n  db_master: {hosts: [db1]}\n  db_slave: {hosts: [db2]}\n  databases: {children: [db_master, db_slave]}\n  production: {children: [app_nodes, databases], hosts: [lb]}\n",
        )
        .unwrap();
        load_checked(&path).unwrap()
    }

    #[test]
    fn union_intersection_exclusion() {
        let inv = inv();
        assert_eq!(
            select(&inv, "app_nodes:db1").unwrap(),
            ["app1", "app2", "db1"]
        );
        assert_eq!(
            select(&inv, "production:&databases").unwrap(),
            ["db1", "db2"]
        );
        assert_eq!(
            select(&inv, "production:!app1").unwrap(),
            ["app2", "db1", "db2", "lb"]
        );
        assert_eq!(select(&inv, "!app_nodes").unwrap(), ["db1", "db2", "lb"]);
        assert_eq!(select(&inv, "db*").unwrap(), ["db1", "db2"]);
        assert_eq!(select(&inv, "app[2-3]").unwrap(), ["app2"]);
        assert_eq!(select(&inv, "all").unwrap().len(), 5);
    }

    #[test]
    fn unknown_and_empty() {
        let inv = inv();
        assert_eq!(
            select(&inv, "app_node"),
            Err(PatternError::Unknown {
                term: "app_node".into(),
                suggestion: Some("app_nodes".into())
            })
        );
        assert_eq!(
            select(&inv, "app_nodes:&databases"),
            Err(PatternError::NoMatch)
        );
        assert_eq!(select(&inv, "web*"), Err(PatternError::NoMatch));
        assert_eq!(select(&inv, " : "), Err(PatternError::Empty));
    }
}
