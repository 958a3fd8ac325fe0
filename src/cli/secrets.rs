//! `cutover secrets`: encrypted secrets files (age format).

use std::path::Path;

use super::{exit, SecretsAction};
use crate::diag::Diagnostics;

pub(super) fn cmd_secrets(action: SecretsAction) -> anyhow::Result<u8> {
    match action {
        SecretsAction::Keygen { out } => {
            let (secret, public) = crate::secrets::keygen();
            if out.exists() {
                anyhow::bail!("{} exists; refusing to overwrite a key", out.display());
            }
            write_private(&out, &secret)?;
            println!("{public}");
            eprintln!(
                "secret key written to {} (mode 0600); keep it out of the repository",
                out.display()
            );
        }
        SecretsAction::Encrypt {
            input,
            recipient,
            out,
        } => {
            let plain =
                String::from_utf8(crate::input::read(&input, crate::input::MAX_INPUT_BYTES)?)?;
            validate(&plain, &input)?;
            std::fs::write(&out, crate::secrets::encrypt(&plain, &recipient)?)?;
            eprintln!("encrypted {} → {}", input.display(), out.display());
        }
        SecretsAction::View { file } => print!("{}", crate::secrets::decrypt_file(&file)?),
        SecretsAction::Edit { file } => {
            let plain = crate::secrets::decrypt_file(&file)?;
            let dir = tempfile::Builder::new()
                .prefix("cutover-secrets-")
                .tempdir()?;
            let tmp = dir.path().join("secrets.yml");
            write_private(&tmp, &plain)?;
            let editor = std::env::var("VISUAL")
                .or_else(|_| std::env::var("EDITOR"))
                .unwrap_or_else(|_| "vi".into());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(&tmp)
                .status()?;
            if !status.success() {
                anyhow::bail!("the editor failed; {} is unchanged", file.display());
            }
            let edited = std::fs::read_to_string(&tmp)?;
            validate(&edited, &file)?;
            std::fs::write(
                &file,
                crate::secrets::encrypt(&edited, &crate::secrets::own_recipient()?)?,
            )?;
            eprintln!("{} re-encrypted", file.display());
        }
    }
    Ok(exit::OK)
}

/// Write a file only its owner can read (mode 0600 from its creation).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(crate::output_file::write(path, text.as_bytes(), 0o600)?)
}

/// The plain text must be a mapping of variable names, or the run would fail later.
fn validate(plain: &str, origin: &Path) -> anyhow::Result<()> {
    let mut diags = Diagnostics::default();
    let source = std::sync::Arc::new(crate::yaml::Source {
        path: origin.to_path_buf(),
        text: String::new(),
    });
    match crate::yaml::parse_bytes(source, plain.as_bytes().to_vec()) {
        Ok((_, root)) => {
            crate::decode::variables(&root, "the secrets file", &mut diags);
        }
        Err(d) => diags.push(d),
    }
    if let Some(d) = diags.items.first() {
        anyhow::bail!("{d}");
    }
    Ok(())
}
