//! The repository is self-contained: no file cites a document outside it. Comments, playbook
//! headers, templates, lab scripts and docs cite public sources (vendor documentation, manual
//! pages) or state the fact; a path into the development machine's shared notes (their fact
//! sheet, lab notes or seed files) means nothing to a reader of the repository.

use regex::Regex;
use std::path::{Path, PathBuf};

/// Directories that are not the repository's content: build output, git's own, run state.
const SKIPPED_DIRS: &[&str] = &["target", ".git", ".cutover"];

/// What a reference to a file outside the repository looks like. Spelled with a character
/// class so this file does not match itself.
fn outside_reference() -> Regex {
    Regex::new(concat!(
        r"\.\./share[d]/",                  // a relative path into the shared notes
        r"|/work/share[d]\b",               // the same, absolute
        r"|\bseed[s]/",                     // the seed files' directory
        r"|\b[0-9]{3}_[0-9a-f]{16}\.txt\b", // a seed file's name
        r"|\bDOMAI[N]\.md\b",               // the fact sheet
        r"|\bLA[B]\.md\b",                  // the lab notes
    ))
    .unwrap()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                files_under(&path, out);
            }
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// Every `file:line: text` in `root` that matches `pattern` (text files only).
fn references(root: &Path, pattern: &Regex) -> Vec<String> {
    let mut files = Vec::new();
    files_under(root, &mut files);
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        }; // binary
        for (n, line) in text.lines().enumerate() {
            if pattern.is_match(line) {
                let rel = file.strip_prefix(root).unwrap().display();
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = references(root, &outside_reference());
    assert!(
        found.is_empty(),
        "cite the public source (vendor docs, man page URL) or state the fact instead of:\n{}",
        found.join("\n")
    );
}

/// The check finds each kind of reference, at its file and line, and leaves public citations
/// and ordinary words alone.
#[test]
fn the_check_finds_each_kind_of_reference() {
    let dir = std::env::temp_dir().join(format!("cutover-self-contained-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    // Written with a `|` that is taken out, so this file does not match itself.
    let bad = [
        "see ../sha|red/notes",
        "(/work/sha|red/x §4)",
        "from ../see|ds/004",
        "case 012_0123456789abcdef.t|xt",
        "(DOMA|IN.md 2.1)",
        "flags from LA|B.md",
    ]
    .map(|l| l.replace('|', ""));
    let good = [
        "https://man7.org/linux/man-pages/man8/lvconvert.8.html",
        "shared memory only",
        "seeded with revision 1; seed {seed}",
        "lab/README.md and docs/plan-format.md",
    ];
    let text: String = bad
        .iter()
        .map(String::as_str)
        .chain(good)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("src/a.rs"), &text).unwrap();
    std::fs::write(dir.join("target/ignored.txt"), format!("{}\n", bad[0])).unwrap();
    std::fs::write(dir.join("binary.bin"), [0xff, 0xfe, 0x00, 0x80]).unwrap();

    let found = references(&dir, &outside_reference());
    let _ = std::fs::remove_dir_all(&dir);
    let expected: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, l)| format!("src/a.rs:{}: {l}", i + 1))
        .collect();
    assert_eq!(found, expected);
}
