//! Modules that steer the run rather than change a host: `debug`, `assert`, `fail`, and the
//! `approve` gate that waits for a person's "go".

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use serde_json::{Map, Value as J};

use super::contract::Module;
use super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use super::{arg_str, ModCtx, Outcome, Probe};
use crate::diag::Pos;
use crate::template;

pub fn probe(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
    Ok(match module {
        // An approval is a decision still to be made: a plan must not pretend it is known.
        "approve" => {
            let stage = arg_str(args, "stage").unwrap_or("");
            if ctx.approvals.iter().any(|a| a == stage) {
                Probe::no_change(J::Null)
            } else {
                Probe::unknown(format!("waits for approval of stage `{stage}`"), J::Null)
            }
        }
        _ => Probe::no_change(J::Null),
    })
}

pub async fn apply(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut out = Outcome::default();
    match module {
        "debug" => {
            let msg = match (arg_str(args, "msg"), arg_str(args, "var")) {
                (Some(m), _) => m.to_string(),
                (None, Some(v)) => {
                    let value = template::render_str(
                        &format!("{{{{ {v} | json_encode() }}}}"),
                        ctx.vars,
                        &Pos::cli("debug"),
                    )
                    .map_err(|d| anyhow::anyhow!("{d}"))?;
                    format!("{v} = {value}")
                }
                _ => String::new(),
            };
            out.result.insert("msg".into(), J::String(msg));
        }
        "fail" => out.failed = Some(arg_str(args, "msg").unwrap_or("failed").to_string()),
        "assert" => {
            let that: Vec<String> = match args.get("that") {
                Some(J::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                Some(J::String(s)) => vec![s.clone()],
                _ => vec![],
            };
            for expr in &that {
                let ok = template::eval_bool(expr, ctx.vars, &Pos::cli("assert"))
                    .map_err(|d| anyhow::anyhow!("{d}"))?;
                if !ok {
                    out.failed = Some(
                        arg_str(args, "fail_msg")
                            .map_or_else(|| format!("assertion failed: {expr}"), str::to_string),
                    );
                    return Ok(out);
                }
            }
            if let Some(m) = arg_str(args, "success_msg") {
                out.result.insert("msg".into(), J::String(m.to_string()));
            }
        }
        "approve" => {
            let stage = arg_str(args, "stage").unwrap_or("");
            let how = if ctx.approvals.iter().any(|a| a == stage) {
                "--approve on the command line".to_string()
            } else if ctx.interactive && std::io::stdin().is_terminal() {
                let prompt = arg_str(args, "prompt").unwrap_or("Continue?");
                let answer = tokio::task::spawn_blocking({
                    let text = format!("\n[approve {stage}] {prompt} Type 'go' to continue: ");
                    move || {
                        let mut err = std::io::stderr();
                        let _ = write!(err, "{text}");
                        let _ = err.flush();
                        let mut line = String::new();
                        let _ = std::io::stdin().lock().read_line(&mut line);
                        line
                    }
                })
                .await?;
                if answer.trim() != "go" {
                    out.failed = Some(format!(
                        "stage `{stage}` was not approved (answer: {:?})",
                        answer.trim()
                    ));
                    return Ok(out);
                }
                format!("typed 'go' by {}", crate::controller::user::current_user())
            } else {
                out.failed = Some(format!("stage `{stage}` needs approval: run with --approve {stage} (no terminal to ask on)"));
                return Ok(out);
            };
            out.result.insert("approved_by".into(), J::String(how));
        }
        _ => {}
    }
    Ok(out)
}

/// The `assert` module.
pub(crate) struct Assert;

impl Module for Assert {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "assert",
        args: &[
            req("that", T::ExprList),
            arg("fail_msg", T::Str),
            arg("success_msg", T::Str),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(Self::SPEC.name, args, ctx)
    }

    async fn apply(args: &Map<String, J>, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, args, ctx).await
    }
}

/// The `fail` module.
pub(crate) struct Fail;

impl Module for Fail {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "fail",
        args: &[req("msg", T::Str)],
        free_form: Some("msg"),
        one_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(Self::SPEC.name, args, ctx)
    }

    async fn apply(args: &Map<String, J>, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, args, ctx).await
    }
}

/// The `debug` module.
pub(crate) struct Debug;

impl Module for Debug {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "debug",
        args: &[arg("msg", T::Str), arg("var", T::Str)],
        free_form: Some("msg"),
        one_of: &[&["msg", "var"]],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(Self::SPEC.name, args, ctx)
    }

    async fn apply(args: &Map<String, J>, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, args, ctx).await
    }
}

/// The `approve` module.
pub(crate) struct Approve;

impl Module for Approve {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "approve",
        args: &[req("stage", T::Str), arg("prompt", T::Str)],
        free_form: None,
        one_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(Self::SPEC.name, args, ctx)
    }

    async fn apply(args: &Map<String, J>, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(Self::SPEC.name, args, ctx).await
    }
}
