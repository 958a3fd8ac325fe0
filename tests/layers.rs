//! The layers of `src/` (README.md, section Layout): a top-level module may use only modules of
//! its own layer or of a lower one, and no top-level modules may use each other in a circle.
//! The layer list is read from the README, so the document and this check cannot drift apart.
//!
//! The scan is textual (no compiler): comments, strings and character literals are blanked,
//! then every `crate::x` path (also `crate::{x, y::z}` groups) and every `super::` chain that
//! climbs to the crate root counts as a use of the top-level module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One use of another top-level module: where it is written.
#[derive(Debug, Clone, PartialEq)]
struct Use {
    file: String,
    line: usize,
}

/// top-level module → used top-level module → where.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Use>>>;

/// Blanks comments, string, byte-string, raw-string and char literals (keeping newlines, so
/// line numbers stay right). Lifetimes (`'a`) are left alone.
fn strip_non_code(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && next == Some('r')))
            && !prev_is_ident(&c, i)
            && raw_string_start(&c, i).is_some()
        {
            let (hashes, body) = raw_string_start(&c, i).unwrap();
            for _ in i..body {
                out.push(' ');
            }
            i = body;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < c.len() && !c[i..].starts_with(&closing) {
                out.push(blank(c[i]));
                i += 1;
            }
            for _ in 0..closing.len().min(c.len() - i) {
                out.push(' ');
            }
            i += closing.len();
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && char_literal_len(&c, i).is_some() {
            let len = char_literal_len(&c, i).unwrap();
            for _ in 0..len {
                out.push(' ');
            }
            i += len;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

/// `r"`, `r#"`, `br##"`…: the number of hashes and where the body starts.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// `'x'`, `'\n'`, `'\u{1F600}'`, `'\''`: the literal's length; `None` for a lifetime.
fn char_literal_len(c: &[char], i: usize) -> Option<usize> {
    if c.get(i + 1) == Some(&'\\') {
        let end = (i + 2..c.len().min(i + 12)).find(|&j| c[j] == '\'' && j > i + 2)?;
        return Some(end - i + 1);
    }
    (c.get(i + 2) == Some(&'\'')).then_some(3)
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

fn skip_ws(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(c: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < c.len() && is_ident(c[j]) {
        j += 1;
    }
    (c[i..j].iter().collect(), j)
}

/// The top-level modules a path names right after `crate::` (or after the `super::`s that
/// reach the crate root): `x` or each first segment of a `{x::a, y}` group.
fn named_after(c: &[char], i: usize) -> Vec<String> {
    let i = skip_ws(c, i);
    if c.get(i) != Some(&'{') {
        let (name, _) = ident_at(c, i);
        return vec![name];
    }
    let mut names = Vec::new();
    let mut depth = 0;
    let mut expect_item = true;
    let mut j = i;
    while j < c.len() {
        match c[j] {
            '{' => {
                depth += 1;
                expect_item = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_item = true,
            ch if expect_item && depth == 1 && is_ident(ch) => {
                let (name, end) = ident_at(c, j);
                names.push(name);
                expect_item = false;
                j = end;
                continue;
            }
            _ => {}
        }
        j += 1;
    }
    names
}

fn starts_word(c: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    c[i..].starts_with(&w)
        && !(i > 0 && (is_ident(c[i - 1]) || c[i - 1] == '$'))
        && !c.get(i + w.len()).is_some_and(|&ch| is_ident(ch))
}

/// Every use of a top-level module in one file's code, as (line, module). `module_path` is the
/// file's module path below the crate root (`src/plan/saved.rs` → `["plan", "saved"]`):
/// `super::` climbs from it, and from the inline `mod x { … }` blocks around the use.
fn uses_in(module_path: &[String], src: &str) -> Vec<(usize, String)> {
    let code = strip_non_code(src);
    let c: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    // Inline modules open at these brace depths.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod = false;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
        } else if ch == '{' {
            depth += 1;
            if pending_mod {
                inline.push(depth);
                pending_mod = false;
            }
        } else if ch == '}' {
            if inline.last() == Some(&depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if ch == ';' {
            pending_mod = false;
        } else if starts_word(&c, i, "mod") {
            pending_mod = true;
            i += 3;
            continue;
        } else if starts_word(&c, i, "crate") && c[i + 5..].starts_with(&[':', ':']) {
            for name in named_after(&c, i + 7) {
                found.push((line, name));
            }
            i += 7;
            continue;
        } else if starts_word(&c, i, "super") && c[i + 5..].starts_with(&[':', ':']) {
            let mut climbs = 0;
            let mut j = i;
            while starts_word(&c, j, "super") && c[j + 5..].starts_with(&[':', ':']) {
                climbs += 1;
                j = skip_ws(&c, j + 7);
            }
            let here = module_path.len() + inline.len();
            if climbs >= here {
                for name in named_after(&c, j) {
                    found.push((line, name));
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found.retain(|(_, name)| !name.is_empty() && name != "self" && name != "super");
    found
}

/// The module path of a file below `src/`: `plan/mod.rs` → `["plan"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The graph between top-level modules of the given files (path below `src/`, source).
fn graph(files: &[(String, String)]) -> Graph {
    let mut g = Graph::new();
    for (path, src) in files {
        let mpath = module_path(Path::new(path));
        let Some(top) = mpath.first().cloned() else {
            continue; // lib.rs, main.rs: the crate root
        };
        if top == "main" || top == "lib" {
            continue;
        }
        let entry = g.entry(top.clone()).or_default();
        for (line, used) in uses_in(&mpath, src) {
            if used != top {
                entry.entry(used).or_default().push(Use {
                    file: format!("src/{path}"),
                    line,
                });
            }
        }
    }
    g
}

/// Uses from a lower layer to a higher one, one message each.
fn upward_uses(g: &Graph, layers: &[Vec<String>]) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.iter().any(|x| x == m));
    let mut problems = Vec::new();
    for (from, uses) in g {
        let Some(from_layer) = layer_of(from) else {
            problems.push(format!("module `{from}` is in no layer of the list"));
            continue;
        };
        for (to, wheres) in uses {
            match layer_of(to) {
                Some(to_layer) if to_layer > from_layer => {
                    for w in wheres {
                        problems.push(format!(
                            "{}:{}: `{from}` (layer {}) uses `{to}` (layer {})",
                            w.file,
                            w.line,
                            from_layer + 1,
                            to_layer + 1
                        ));
                    }
                }
                Some(_) => {}
                None if g.contains_key(to) => {}
                None => {} // not a module of ours (a macro or an item of lib.rs)
            }
        }
    }
    problems
}

/// The import circles: one shortest circle per strongly connected group of modules, each
/// written `a -> b -> … -> a` with where each step is used.
fn circles(g: &Graph) -> Vec<String> {
    let nodes: Vec<&String> = g.keys().collect();
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for next in g.get(&n).into_iter().flat_map(|m| m.keys()) {
                if g.contains_key(next) && seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for n in nodes {
        if done.contains(n) || !reach(n).contains(n) {
            continue;
        }
        let group: BTreeSet<String> = reach(n)
            .into_iter()
            .filter(|m| reach(m).contains(n))
            .collect();
        done.extend(group.iter().cloned());
        found.push(describe_circle(g, n, &group));
    }
    found
}

/// The shortest circle from `start` back to itself inside `group` (breadth first).
fn describe_circle(g: &Graph, start: &str, group: &BTreeSet<String>) -> String {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    let mut back_from = None;
    'search: while let Some(n) = queue.pop_front() {
        for next in g[&n].keys().filter(|m| group.contains(*m)) {
            if next == start {
                back_from = Some(n.clone());
                break 'search;
            }
            if !prev.contains_key(next) {
                prev.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    let mut path = vec![start.to_string()];
    let mut n = back_from.expect("a member of a circle reaches itself");
    while n != start {
        path.push(n.clone());
        n = prev[&n].clone();
    }
    path[1..].reverse();
    path.push(start.to_string());
    let steps: Vec<String> = path
        .windows(2)
        .map(|w| {
            let at = &g[&w[0]][&w[1]][0];
            format!("{} -> {} ({}:{})", w[0], w[1], at.file, at.line)
        })
        .collect();
    format!(
        "circle of {} modules: {}; {}",
        group.len(),
        path.join(" -> "),
        steps.join(", ")
    )
}

/// The layer list in README.md: the numbered lines after "Layers, lowest first" in the
/// Layout section, each `N. a, b, c — comment`.
fn readme_layers(readme: &str) -> Vec<Vec<String>> {
    let start = readme
        .find("Layers, lowest first")
        .expect("README.md has a layer list (\"Layers, lowest first\")");
    readme[start..]
        .lines()
        .skip_while(|l| !numbered(l))
        .take_while(|l| numbered(l))
        .map(|l| {
            let names = l.split_once(". ").map(|x| x.1).unwrap_or("");
            let names = names.split(" — ").next().unwrap_or("");
            names
                .split(',')
                .map(|n| n.trim().trim_matches('`').trim_end_matches('/').to_string())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .collect()
}

fn numbered(line: &str) -> bool {
    line.trim_start()
        .starts_with(|ch: char| ch.is_ascii_digit())
}

fn source_files(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            source_files(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn src_uses_only_lower_layers_and_has_no_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = readme_layers(&std::fs::read_to_string(root.join("README.md")).unwrap());
    assert!(layers.len() > 3, "layer list: {layers:?}");
    let mut files = Vec::new();
    source_files(&root.join("src"), &root.join("src"), &mut files);
    let g = graph(&files);
    assert!(g.len() > 10, "modules found: {:?}", g.keys());
    let mut problems = upward_uses(&g, &layers);
    problems.extend(circles(&g));
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// --- the checker itself, on small made-up trees ---

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

fn layers(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn checker_finds_an_upward_use_in_each_spelling() {
    let l = layers(&[&["low"], &["high"]]);
    for src in [
        "use crate::high::Thing;",
        "fn f() { crate::high::run(); }",
        "use crate::{high::Thing, low::Other};",
        "use crate::{\n    high,\n};",
        "pub use crate::high;",
    ] {
        let g = graph(&files(&[("low.rs", src), ("high.rs", "")])); // a file each
        let found = upward_uses(&g, &l);
        assert_eq!(found.len(), 1, "{src}: {found:?}");
        assert!(
            found[0].contains("`low` (layer 1) uses `high` (layer 2)"),
            "{found:?}"
        );
    }
    // super:: that climbs out of `low/` into the crate root, from a file and from an inline mod
    for (path, src) in [
        ("low/part.rs", "use super::super::high::Thing;"),
        ("low/mod.rs", "use super::high::Thing;"),
        ("low.rs", "mod tests { use super::super::high::Thing; }"),
    ] {
        let g = graph(&files(&[(path, src), ("high.rs", "")]));
        assert_eq!(upward_uses(&g, &l).len(), 1, "{path}: {src}");
    }
}

#[test]
fn checker_reports_the_line_of_the_use() {
    let g = graph(&files(&[
        (
            "low/deep.rs",
            "//! doc\n\nfn f() {\n    crate::high::g();\n}\n",
        ),
        ("high.rs", ""),
    ]));
    let found = upward_uses(&g, &layers(&[&["low"], &["high"]]));
    assert_eq!(
        found,
        vec!["src/low/deep.rs:4: `low` (layer 1) uses `high` (layer 2)"]
    );
}

#[test]
fn checker_ignores_comments_strings_own_module_and_downward_uses() {
    let l = layers(&[&["low"], &["high"]]);
    let g = graph(&files(&[
        (
            "low/mod.rs",
            "// crate::high::x\n/* crate::high /* nested */ crate::high */\n\
             const S: &str = \"crate::high::x\";\nconst R: &str = r#\"crate::high\"#;\n\
             const C: char = '\"'; fn f<'a>(x: &'a str) { crate::low::y(); super::low::z(); }\n\
             mod tests { use super::*; }\n",
        ),
        ("low/part.rs", "use super::Thing; use crate::low::Other;"),
        ("high.rs", "use crate::low::Thing;"),
    ]));
    assert_eq!(upward_uses(&g, &l), Vec::<String>::new());
    assert_eq!(circles(&g), Vec::<String>::new());
}

#[test]
fn checker_finds_a_circle_and_names_it() {
    let g = graph(&files(&[
        ("a.rs", "use crate::b::X;"),
        ("b/mod.rs", "mod inner;"),
        ("b/inner.rs", "\n\nfn f() { crate::c::g() }"),
        ("c.rs", "use crate::a::Y; use crate::d::Z;"),
        ("d.rs", ""),
    ]));
    let found = circles(&g);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("circle of 3 modules: a -> b -> c -> a; "),
        "{found:?}"
    );
    assert!(found[0].contains("b -> c (src/b/inner.rs:3)"), "{found:?}");
    // the same modules in one layer: no upward use, the circle is still found
    assert!(upward_uses(&g, &layers(&[&["a", "b", "c", "d"]])).is_empty());
}

#[test]
fn checker_flags_a_module_missing_from_the_list() {
    let g = graph(&files(&[("new.rs", "")]));
    assert_eq!(
        upward_uses(&g, &layers(&[&["low"]])),
        vec!["module `new` is in no layer of the list"]
    );
}

#[test]
fn layer_list_is_read_from_markdown() {
    let md = "## Layout\n\nLayers, lowest first:\n\n1. `diag`, `yaml` — positions\n\
              2. `modules/` — one file each\n\nafter\n";
    assert_eq!(
        readme_layers(md),
        vec![vec!["diag", "yaml"], vec!["modules"]]
    );
}
