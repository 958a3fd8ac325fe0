//! `command` (one program, no shell syntax) and `shell` (a shell script).
//!
//! Without `creates:`/`removes:` a command's effect cannot be known in advance, so its plan
//! says "unknown" — never "no change" — and the engine's `changed_when:` decides afterwards.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};
use crate::overlay::{Effect, PathState};
use crate::shell::quote;

/// The arguments of a `command` step (its `SPEC.args`); a `shell` step's, with no `argv`.
#[derive(Clone, Deserialize)]
pub(crate) struct CommandArgs {
    #[serde(default, deserialize_with = "args::text")]
    cmd: Option<String>,
    /// The words of the command line, as given (a list; anything else: not given).
    #[serde(default, deserialize_with = "argv")]
    argv: Option<Vec<J>>,
    #[serde(default, deserialize_with = "args::text")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    stdin: Option<String>,
}

fn argv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<J>>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(items) => Some(items),
        _ => None,
    })
}

/// The arguments of a `shell` step (its `SPEC.args`: `cmd` required).
#[derive(Deserialize)]
pub(crate) struct ShellArgs {
    #[serde(deserialize_with = "args::text")]
    cmd: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    stdin: Option<String>,
}

impl ShellArgs {
    /// As a command's arguments, for what the two modules share.
    fn as_command(&self) -> CommandArgs {
        CommandArgs {
            cmd: self.cmd.clone(),
            argv: None,
            creates: self.creates.clone(),
            removes: self.removes.clone(),
            chdir: self.chdir.clone(),
            stdin: self.stdin.clone(),
        }
    }
}

pub async fn probe(args: &CommandArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    if let Some(path) = args.creates.as_deref() {
        if path_exists(ctx, path).await? {
            return Ok(Probe::no_change(
                json!({ "skip": format!("{path} exists") }),
            ));
        }
        return Ok(
            Probe::change(format!("run (creates {path})"), None, J::Null).with_after(effects(args)),
        );
    }
    if let Some(path) = args.removes.as_deref() {
        if !path_exists(ctx, path).await? {
            return Ok(Probe::no_change(
                json!({ "skip": format!("{path} does not exist") }),
            ));
        }
        return Ok(
            Probe::change(format!("run (removes {path})"), None, J::Null).with_after(effects(args)),
        );
    }
    Ok(Probe::unknown(
        "command without a check (creates:, removes: or changed_when: would tell)",
        J::Null,
    ))
}

pub async fn apply(
    module: &str,
    args: &CommandArgs,
    probe: &Probe,
    ctx: &ModCtx<'_>,
) -> Result<Outcome> {
    if probe.decision == super::Decision::NoChange {
        let mut result = Map::new();
        result.insert("rc".into(), J::from(0));
        result.insert("skipped_reason".into(), probe.state["skip"].clone());
        return Ok(Outcome {
            changed: false,
            result,
            ..Default::default()
        });
    }
    let mut script = String::new();
    if let Some(dir) = args.chdir.as_deref() {
        script.push_str(&format!("cd -- {} || exit 1\n", quote(dir)));
    }
    if module == "shell" {
        script.push_str(args.cmd.as_deref().unwrap_or_default());
    } else {
        let words: Vec<String> = match (&args.argv, args.cmd.as_deref()) {
            (Some(items), _) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            (_, Some(cmd)) => split_words(cmd)?,
            _ => bail!("`command` needs `cmd` or `argv`"),
        };
        if words.is_empty() {
            bail!("`command` got an empty command line");
        }
        script.push_str("exec ");
        script.push_str(&crate::shell::join(&words));
    }
    let stdin = args.stdin.as_deref().map(|s| format!("{s}\n").into_bytes());
    let out = ctx.run(&script, stdin.as_deref()).await?;
    let mut result = Map::new();
    result.insert("rc".into(), J::from(out.rc));
    result.insert(
        "stdout".into(),
        J::String(out.stdout_text().trim_end_matches('\n').to_string()),
    );
    result.insert(
        "stderr".into(),
        J::String(out.stderr_text().trim_end_matches('\n').to_string()),
    );
    result.insert(
        "duration_ms".into(),
        J::from(out.duration.as_millis() as u64),
    );
    let failed = if out.timed_out {
        Some(format!(
            "timed out after {}s; the command was stopped",
            ctx.timeout.map_or(0, |t| t.as_secs())
        ))
    } else if out.rc != 0 {
        Some(format!(
            "exit code {}: {}",
            out.rc,
            last_line(&out.stderr_text())
        ))
    } else {
        None
    };
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed,
    })
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// What a command leaves for a plan's later steps: the path it `creates:` or `removes:`, and
/// every absolute path its command line (and `chdir:`) names, unknown after it.
pub(crate) fn effects(args: &CommandArgs) -> Vec<Effect> {
    let mut out = vec![Effect::Command {
        text: command_text(args),
    }];
    // After the command's own text, so that what it promises to create is what later steps
    // are told about.
    for (key, verb) in [("creates", "creates"), ("removes", "removes")] {
        let p = if key == "creates" {
            &args.creates
        } else {
            &args.removes
        };
        if let Some(p) = p {
            out.push(Effect::Path {
                path: p.to_string(),
                state: PathState::Unknown {
                    why: format!(
                        "{{by}} runs a command that {verb} {p}; what is there after it is known only when it runs"
                    ),
                },
            });
        }
    }
    out
}

/// A command's text: `chdir`, the command line (or argv) and its stdin.
fn command_text(args: &CommandArgs) -> String {
    let mut text = String::new();
    if let Some(dir) = args.chdir.as_deref() {
        text.push_str(dir);
        text.push(' ');
    }
    match (&args.argv, args.cmd.as_deref()) {
        (Some(items), _) => {
            for i in items {
                text.push_str(i.as_str().unwrap_or_default());
                text.push(' ');
            }
        }
        (_, Some(cmd)) => text.push_str(cmd),
        _ => {}
    }
    if let Some(stdin) = args.stdin.as_deref() {
        text.push(' ');
        text.push_str(stdin);
    }
    text
}

/// Does the path exist (as the step will find it: in a plan, after the earlier steps)?
pub(crate) async fn path_exists(ctx: &ModCtx<'_>, path: &str) -> Result<bool> {
    use crate::overlay::{not_derivable, Planned, Seen};
    match ctx.overlay().map_or(Seen::Host, |o| o.path(path)) {
        Seen::Host => {}
        Seen::NotDerivable(why) => return Err(not_derivable(why)),
        Seen::Planned(Planned { value, .. }) => match value {
            PathState::Absent => return Ok(false),
            PathState::Unknown { why } => return Err(not_derivable(why)),
            PathState::File {
                content: crate::overlay::Val::Host,
                ..
            } => {}
            _ => return Ok(true),
        },
    }
    let out = ctx
        .run(
            &format!("test -e {} || test -L {}", quote(path), quote(path)),
            None,
        )
        .await?;
    Ok(out.rc == 0)
}

/// Split a command line into words the way a shell would, without expanding anything:
/// quotes group, backslash escapes; `$`, `;`, `|` are ordinary characters.
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => bail!("unterminated single quote in command"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => bail!("unterminated double quote in command"),
                        },
                        Some(x) => cur.push(x),
                        None => bail!("unterminated double quote in command"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A command's result line when its probe could not tell in advance.
fn ran_exit(result: &Map<String, J>) -> Option<String> {
    result
        .get("rc")
        .and_then(J::as_i64)
        .map(|rc| format!("ran, exit {rc}"))
}

/// The `command` module: one program, no shell syntax.
pub(crate) struct Command;

impl Module for Command {
    type Args = CommandArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "command",
        args: &[
            arg("cmd", T::Str),
            arg("argv", T::StrList),
            arg("creates", T::Path),
            arg("removes", T::Path),
            arg("chdir", T::Path),
            arg("stdin", T::Str),
        ],
        free_form: Some("cmd"),
        one_of: &[&["cmd", "argv"]],
        any_of: &[],
        reversibility: Reversibility::Irreversible,
    };

    async fn probe(args: &CommandArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &CommandArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, args, probe, ctx).await
    }

    fn touches(args: &CommandArgs) -> Vec<Effect> {
        effects(args)
    }

    fn describe_done(result: &Map<String, J>) -> Option<String> {
        ran_exit(result)
    }
}

/// The `shell` module: a shell script.
pub(crate) struct Shell;

impl Module for Shell {
    type Args = ShellArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "shell",
        args: &[
            req("cmd", T::Str),
            arg("creates", T::Path),
            arg("removes", T::Path),
            arg("chdir", T::Path),
            arg("stdin", T::Str),
        ],
        free_form: Some("cmd"),
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Irreversible,
    };

    async fn probe(args: &ShellArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(&args.as_command(), ctx).await
    }

    async fn apply(args: &ShellArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, &args.as_command(), probe, ctx).await
    }

    fn touches(args: &ShellArgs) -> Vec<Effect> {
        effects(&args.as_command())
    }

    fn describe_done(result: &Map<String, J>) -> Option<String> {
        ran_exit(result)
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_without_shell_meaning() {
        assert_eq!(
            split_words(r#"echo "a b" 'c d' e\ f $(x);y"#).unwrap(),
            ["echo", "a b", "c d", "e f", "$(x);y"]
        );
        assert!(split_words("echo 'open").is_err());
    }
}
