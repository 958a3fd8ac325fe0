//! `vars_files:` on a play (Ansible's keyword): YAML files of variables, read with the
//! playbook before the run, relative to the playbook file. Their values rank above the play's
//! `vars:` and below `-e` (a later file over an earlier one). A file encrypted with
//! `cutover secrets encrypt` (age) is decrypted with the secrets key, and every value in it is
//! a secret: masked wherever output leaves the program, as the inventory's `secrets_file:`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::decode;
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::Var;
use crate::yaml::{self, Node};

/// The files a play names, and their variables in the order they override each other.
pub(super) fn read(
    playbook: &Path,
    node: &Node,
    diags: &mut Diagnostics,
) -> (Vec<PathBuf>, Vec<Var>) {
    let mut files = Vec::new();
    let mut vars = Vec::new();
    for (rel, pos) in decode::string_list(node, "vars_files", diags).unwrap_or_default() {
        if rel.contains("{{") || rel.contains("{%") {
            diags.push(
                Diagnostic::new(pos, "`vars_files:` are read before the run; a template here is known only when it runs")
                    .with_help("name the file as written; choose between files with `-e @file.yml`"),
            );
            continue;
        }
        let path = super::include::relative_to(playbook, &rel);
        let at = |d: Diagnostic| {
            Diagnostic::new(
                pos.clone(),
                format!("vars file {}: {}", path.display(), d.message),
            )
        };
        let text = read_text(&path);
        let encrypted = matches!(text, Ok(Text::Decrypted(_)));
        let parsed = match text {
            Err(e) => Err(Diagnostic::new(
                pos.clone(),
                format!("vars file {}: {e:#}", path.display()),
            )),
            Ok(Text::Plain) => {
                yaml::load_file(&path).map_err(|d| if d.pos.line == 0 { at(d) } else { d })
            }
            Ok(Text::Decrypted(plain)) => {
                // The decrypted text is never quoted in an error: only a position.
                let source = Arc::new(yaml::Source {
                    path: path.clone(),
                    text: String::new(),
                });
                yaml::parse_bytes(source, plain.into_bytes())
            }
        };
        let root = match parsed {
            Ok((_, root)) => root,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        for (name, value, pos) in decode::variables(&root, "vars file", diags) {
            if encrypted {
                crate::secrets::declare(&name);
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                crate::secrets::register(&name, &text);
            }
            vars.push(Var { name, value, pos });
        }
        files.push(path);
    }
    (files, vars)
}

enum Text {
    Plain,
    Decrypted(String),
}

/// An age file (armored, as `cutover secrets encrypt` writes it, or binary) is decrypted.
fn read_text(path: &Path) -> anyhow::Result<Text> {
    let bytes = crate::input::read(path, crate::input::MAX_INPUT_BYTES)?;
    let encrypted = bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        || bytes.starts_with(b"age-encryption.org/");
    if encrypted {
        crate::secrets::decrypt_file(path).map(Text::Decrypted)
    } else {
        Ok(Text::Plain)
    }
}
