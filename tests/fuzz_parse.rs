//! Property tests: hostile and mangled input never panics the parsers and validators, and
//! every diagnostic they return has a message and a position inside the file it names.
//!
//! Inputs: random bytes, random YAML-ish text, and mutations (byte flips, deletions, duplicated
//! lines, indentation changes, inserted tabs and control characters) of the valid corpus files
//! and the shipped inventories. `PROPTEST_CASES` raises the case count (default 256).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cutover::check::{check, CheckInput};
use cutover::diag::Diagnostic;
use cutover::template::{check_syntax, Templates};
use cutover::yaml::{parse_bytes, Node, Source, Value};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Lines in a file as an editor counts them, plus one for "just past the last newline",
/// where a parser reports an unexpected end of input.
/// Lines as YAML counts them: a line break is CR LF, LF, or a lone CR.
fn line_bound(bytes: &[u8]) -> u32 {
    let lone_cr = bytes
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count()
        + usize::from(bytes.last() == Some(&b'\r'));
    (bytes.iter().filter(|b| **b == b'\n').count() + lone_cr) as u32 + 1
}

fn assert_diag_in(d: &Diagnostic, bytes: &[u8]) {
    assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
    if d.pos.line > 0 {
        assert!(d.pos.col >= 1, "line without column: {d:?}");
        assert!(
            d.pos.line <= line_bound(bytes),
            "line {} beyond the file's {} lines: {d:?}",
            d.pos.line,
            line_bound(bytes)
        );
    }
}

/// For diagnostics from the file-based API: look the named file up and check against it.
fn assert_diag(d: &Diagnostic) {
    let name = d.pos.file.to_string_lossy();
    if name.starts_with('<') {
        assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
        return;
    }
    let bytes = std::fs::read(&d.pos.file).unwrap_or_default();
    assert_diag_in(d, &bytes);
}

fn assert_node_in(n: &Node, bound: u32) {
    assert!(
        n.pos.line >= 1 && n.pos.line <= bound && n.pos.col >= 1,
        "node position out of file: {n:?}"
    );
    match &n.value {
        Value::Seq(items) => items.iter().for_each(|i| assert_node_in(i, bound)),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            assert_node_in(k, bound);
            assert_node_in(v, bound);
        }),
        _ => {}
    }
}

fn parse_and_assert(bytes: Vec<u8>) {
    let source = Arc::new(Source {
        path: "fuzz.yml".into(),
        text: String::new(),
    });
    let bound = line_bound(&bytes);
    match parse_bytes(source, bytes.clone()) {
        Ok((_, node)) => assert_node_in(&node, bound),
        Err(d) => {
            assert!(d.pos.line >= 1, "parse errors name a line: {d:?}");
            assert_diag_in(&d, &bytes);
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipByte { at: usize, xor: u8 },
    Delete { at: usize, len: usize },
    DuplicateLine { line: usize },
    Indent { line: usize, delta: i8 },
    InsertTab { at: usize },
    InsertControl { at: usize, byte: u8 },
    InsertText { at: usize, text: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::FlipByte { at, xor }),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), -4i8..=4).prop_map(|(line, delta)| Mutation::Indent { line, delta }),
        any::<usize>().prop_map(|at| Mutation::InsertTab { at }),
        (any::<usize>(), 0u8..0x20).prop_map(|(at, byte)| Mutation::InsertControl { at, byte }),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "{", "[", "]", "}", ": ", "- ", "\"", "'", "&a ", "*a", "{{ x }}", "{% if %}",
                "\n", "#", "!!str ", "? ", "---\n", "héllo", "\u{feff}"
            ])
        )
            .prop_map(|(at, text)| Mutation::InsertText {
                at,
                text: text.to_string()
            }),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = bytes.len();
        match m {
            Mutation::FlipByte { at, xor } if len > 0 => bytes[at % len] ^= xor,
            Mutation::Delete { at, len: n } if len > 0 => {
                let start = at % len;
                bytes.drain(start..(start + n).min(len));
            }
            Mutation::DuplicateLine { line } | Mutation::Indent { line, .. } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let i = line % lines.len();
                match m {
                    Mutation::DuplicateLine { .. } => {
                        let copy = lines[i].clone();
                        lines.insert(i, copy);
                    }
                    Mutation::Indent { delta, .. } if *delta >= 0 => {
                        lines[i].splice(0..0, std::iter::repeat_n(b' ', *delta as usize));
                    }
                    Mutation::Indent { delta, .. } => {
                        let spaces = lines[i].iter().take_while(|b| **b == b' ').count();
                        lines[i].drain(0..spaces.min(delta.unsigned_abs() as usize));
                    }
                    _ => unreachable!(),
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::InsertTab { at } => bytes.insert(at % (len + 1), b'\t'),
            Mutation::InsertControl { at, byte } => bytes.insert(at % (len + 1), *byte),
            Mutation::InsertText { at, text } => {
                let at = at % (len + 1);
                bytes.splice(at..at, text.bytes());
            }
            _ => {}
        }
    }
    bytes
}

const INVENTORIES: &[&str] = &[
    "tests/corpus/inventory.yml",
    "inventory/production.yml",
    "inventory/lab.yml",
];
const PLAYBOOKS: &[&str] = &[
    "tests/corpus/site.yml",
    "tests/corpus/noop.yml",
    "tests/corpus/playbooks/many_errors.yml",
];
const TEMPLATES: &[&str] = &[
    "tests/corpus/templates/app.conf.j2",
    "tests/corpus/templates/listen.conf.j2",
];

/// Run the whole `check` (inventory, playbook, templates) on the given files.
fn check_and_assert(inventory: &Path, playbook: &Path, templates: &Path) {
    let playbooks = [playbook.to_path_buf()];
    let input = CheckInput {
        inventory,
        playbooks: &playbooks,
        templates_dir: templates,
        extra_vars: &[],
        every_template: true,
    };
    if let Err(diags) = check(&input) {
        assert!(!diags.is_empty());
        diags.items.iter().for_each(assert_diag);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_assert(bytes);
    }

    #[test]
    fn yamlish_text_never_panics(text in "([a-z_]{1,8}|[0-9]{1,4}|[ ]{1,6}|[-:\\[\\]{},&*!|>?#'\"%@`]|\n|\t|\\{\\{|\\}\\}){0,120}") {
        parse_and_assert(text.clone().into_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yml");
        std::fs::write(&path, &text).unwrap();
        let mut diags = cutover::diag::Diagnostics::default();
        let _ = cutover::inventory::load(&path, &mut diags);
        let _ = cutover::playbook::load(&path, &mut diags);
        diags.items.iter().for_each(assert_diag);
    }

    #[test]
    fn mutated_inventories_never_panic(
        base in prop::sample::select(INVENTORIES),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = apply(read(base), &muts);
        parse_and_assert(bytes.clone());
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yml");
        std::fs::write(&inv, &bytes).unwrap();
        let mut diags = cutover::diag::Diagnostics::default();
        let _ = cutover::inventory::load(&inv, &mut diags);
        diags.items.iter().for_each(assert_diag);
        if let Err(diags) = cutover::inventory::load_checked(&inv) {
            prop_assert!(!diags.is_empty());
            diags.items.iter().for_each(assert_diag);
        }
        check_and_assert(&inv, &root().join("tests/corpus/noop.yml"), &root().join("tests/corpus/templates"));
    }

    #[test]
    fn mutated_playbooks_never_panic(
        base in prop::sample::select(PLAYBOOKS),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = apply(read(base), &muts);
        parse_and_assert(bytes.clone());
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("playbook.yml");
        std::fs::write(&pb, &bytes).unwrap();
        if let Err(diags) = cutover::playbook::load_checked(&pb) {
            prop_assert!(!diags.is_empty());
            diags.items.iter().for_each(assert_diag);
        }
        check_and_assert(&root().join("tests/corpus/inventory.yml"), &pb, &root().join("tests/corpus/templates"));
    }

    #[test]
    fn mutated_templates_never_panic(
        base in prop::sample::select(TEMPLATES),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = apply(read(base), &muts);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Err(d) = check_syntax(&text, &cutover::diag::Pos::cli("fuzz")) {
            prop_assert!(!d.message.trim().is_empty());
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.conf.j2"), &bytes).unwrap();
        std::fs::copy(root().join("tests/corpus/templates/listen.conf.j2"), dir.path().join("listen.conf.j2")).unwrap();
        match Templates::load(dir.path()) {
            Ok(t) => prop_assert!(t.exists("listen.conf.j2")),
            Err(diags) => {
                prop_assert!(!diags.is_empty());
                diags.iter().for_each(assert_diag);
            }
        }
        check_and_assert(&root().join("tests/corpus/inventory.yml"), &root().join("tests/corpus/site.yml"), dir.path());
    }
}
