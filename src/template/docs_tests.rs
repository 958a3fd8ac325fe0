//! docs/templates.md cannot drift: every example in it is rendered here and must give the
//! output written under it; every row of its Ansible table renders (or fails with a hint); and
//! every filter and test cutover knows has its section. `CUTOVER_BLESS_DOCS=1` rewrites the
//! outputs from the code (then review the diff).

use super::*;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/templates.md");

fn doc() -> String {
    std::fs::read_to_string(DOC).unwrap()
}

/// The variables of the page's `example-variables` block.
fn example_vars(text: &str) -> Vars {
    let at = text
        .find("<!-- example-variables -->")
        .expect("example variables");
    let body = fenced(&text[at..], "```yaml").expect("a yaml block").1;
    let J::Object(m) = serde_saphyr::from_str::<J>(&body).unwrap() else {
        panic!("example variables are not a mapping")
    };
    let mut v = Vars::new();
    for (k, val) in m {
        v.insert(k, &val);
    }
    v
}

/// The first block opened by `fence` in `text`: (byte range of its body, body).
fn fenced(text: &str, fence: &str) -> Option<(std::ops::Range<usize>, String)> {
    let open = text.find(&format!("{fence}\n"))? + fence.len() + 1;
    let close = open + text[open..].find("\n```")?;
    Some((open..close, text[open..close].to_string()))
}

/// Rendered as a file under `templates/` would be.
fn render(src: &str, v: &Vars) -> Result<String, Diagnostic> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.conf"), src).unwrap();
    match Templates::load(dir.path()) {
        Ok(t) => t.render("example.conf", v),
        Err(mut ds) => Err(ds.remove(0)),
    }
}

#[test]
fn every_example_renders_to_the_output_shown() {
    let mut text = doc();
    let v = example_vars(&text);
    let mut failures = Vec::new();
    let mut from = 0;
    let mut count = 0;
    while let Some((range, src)) = fenced(&text[from..], "```tera") {
        let src_end = from + range.end;
        let (out_range, shown) =
            fenced(&text[src_end..], "```text").expect("an output block after each example");
        let out_range = src_end + out_range.start..src_end + out_range.end;
        let actual = match render(&src, &v) {
            Ok(o) => o.trim_end_matches('\n').to_string(),
            Err(d) => format!("error: {d}"),
        };
        count += 1;
        if actual != shown {
            failures.push(format!("{src}\n  shown:  {shown:?}\n  actual: {actual:?}"));
            text.replace_range(out_range.clone(), &actual);
        }
        from = out_range.start + actual.len();
    }
    assert!(count >= 80, "only {count} examples found");
    if std::env::var_os("CUTOVER_BLESS_DOCS").is_some() {
        std::fs::write(DOC, &text).unwrap();
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A table row's cells, without backticks, `\|` unescaped.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.into_iter()
        .map(|c| {
            let c = c.trim();
            c.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or(c)
                .to_string()
        })
        .collect()
}

#[test]
fn the_ansible_table_renders_and_its_habits_say_what_to_write() {
    let text = doc();
    let v = example_vars(&text);
    let at = text
        .find("<!-- ansible-table -->")
        .expect("the Ansible table");
    let rows: Vec<Vec<String>> = text[at..]
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    assert!(rows.len() >= 25, "{} rows", rows.len());
    for row in rows {
        let [jinja, ours, output] = &row[..] else {
            panic!("row {row:?}")
        };
        if output == "—" {
            let e = render(jinja, &v).expect_err(jinja);
            assert!(e.help.is_some(), "{jinja}: {e}");
            continue;
        }
        assert_eq!(
            render(ours, &v).as_deref().ok(),
            Some(output.as_str()),
            "{ours}"
        );
        if jinja != ours {
            let e = render(jinja, &v).expect_err(jinja);
            assert!(e.pos.line >= 1 || e.pos.line == 0, "{jinja}: {e}");
            let help = e.help.unwrap_or_default();
            assert!(!help.is_empty(), "{jinja}: {} has no hint", e.message);
        }
    }
}

#[test]
fn every_filter_and_test_has_its_section() {
    let text = doc();
    let documented = |name: &str| text.contains(&format!("\n### `{name}`\n"));
    let missing: Vec<&str> = TERA_FILTERS
        .iter()
        .chain(CUTOVER_FILTERS)
        .chain(TERA_TESTS)
        .chain(CUTOVER_TESTS)
        .copied()
        .filter(|n| !documented(n))
        .collect();
    assert!(missing.is_empty(), "not in docs/templates.md: {missing:?}");
}
