//! What the `mysql` client prints, as rows by column: `--batch` result sets, vertical (`\G`)
//! output, and several result sets told apart by `SELECT 'NAME' AS cutover_section`. Pure
//! functions, tested from output captured on the lab.

use std::collections::BTreeMap;

pub type Row = BTreeMap<String, String>;

/// Undo mysql --batch escaping (\n \t \\ \0).
fn unescape_batch(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o)
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `mysql --batch` output of one result set (header line, then rows) into rows by column.
pub fn parse_batch(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<String> = header.split('\t').map(unescape_batch).collect();
    lines
        .filter(|l| !l.is_empty() || cols.len() == 1)
        .map(|l| {
            cols.iter()
                .cloned()
                .zip(l.split('\t').map(unescape_batch))
                .collect()
        })
        .collect()
}

/// Vertical (`\G`) output into rows by column.
pub fn parse_vertical(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut cur: Option<Row> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("***") && t.ends_with("***") && t.contains(". row") {
            if let Some(r) = cur.take() {
                rows.push(r);
            }
            cur = Some(Row::new());
            continue;
        }
        if let Some(r) = cur.as_mut() {
            if let Some((k, v)) = t.split_once(':') {
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    r.insert(k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
        }
    }
    if let Some(r) = cur {
        rows.push(r);
    }
    rows
}

/// Several result sets, each preceded by `SELECT 'NAME' AS cutover_section`.
pub fn parse_sections(text: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut cols: Option<Vec<String>> = None;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l == "cutover_section" {
            if let Some(n) = lines.next() {
                name = Some(n.to_string());
                out.entry(n.to_string()).or_default();
                cols = None;
            }
            continue;
        }
        let Some(n) = &name else { continue };
        match &cols {
            None => cols = Some(l.split('\t').map(unescape_batch).collect()),
            Some(c) => {
                let row: Row = c
                    .iter()
                    .cloned()
                    .zip(l.split('\t').map(unescape_batch))
                    .collect();
                out.entry(n.clone()).or_default().push(row);
            }
        }
    }
    out
}

/// The first of several column spellings present in a row.
pub(super) fn col<'a>(row: &'a Row, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| row.get(*n))
        .map(String::as_str)
        .filter(|v| *v != "NULL")
}
