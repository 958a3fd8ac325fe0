//! Modules that steer the run rather than change a host: `debug`, `assert`, `fail`, and the
//! `approve` gate that waits for a person's "go".

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use serde::Deserialize;
use serde_json::Value as J;

use super::contract::Module;
use super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};
use crate::diag::Pos;
use crate::template;

/// The arguments of an `assert` step.
#[derive(Deserialize)]
pub(crate) struct AssertArgs {
    /// A list of expressions, or one.
    #[serde(deserialize_with = "expr_list")]
    that: Vec<String>,
    #[serde(default, deserialize_with = "args::text")]
    fail_msg: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    success_msg: Option<String>,
}

/// `that:` as the list of expressions it names (one string is a list of one).
fn expr_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        J::String(s) => vec![s],
        _ => vec![],
    })
}

/// The arguments of a `fail` step: its message (required; not text reads as "failed").
#[derive(Deserialize)]
pub(crate) struct FailArgs {
    #[serde(deserialize_with = "args::text")]
    msg: Option<String>,
}

/// The arguments of a `debug` step: a message, or a variable to show.
#[derive(Deserialize)]
pub(crate) struct DebugArgs {
    #[serde(default, deserialize_with = "args::text")]
    msg: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    var: Option<String>,
}

/// The arguments of an `approve` step: the stage (required) and the question asked.
#[derive(Deserialize)]
pub(crate) struct ApproveArgs {
    #[serde(deserialize_with = "args::text")]
    stage: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    prompt: Option<String>,
}

impl ApproveArgs {
    fn stage(&self) -> &str {
        self.stage.as_deref().unwrap_or("")
    }
}

fn debug(args: &DebugArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut out = Outcome::default();
    let msg = match (&args.msg, &args.var) {
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
    Ok(out)
}

fn assert(args: &AssertArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut out = Outcome::default();
    for expr in &args.that {
        let ok = template::eval_bool(expr, ctx.vars, &Pos::cli("assert"))
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        if !ok {
            out.failed = Some(
                args.fail_msg
                    .clone()
                    .unwrap_or_else(|| format!("assertion failed: {expr}")),
            );
            return Ok(out);
        }
    }
    if let Some(m) = &args.success_msg {
        out.result.insert("msg".into(), J::String(m.to_string()));
    }
    Ok(out)
}

// An approval is a decision still to be made: a plan must not pretend it is known.
fn approve_probe(args: &ApproveArgs, ctx: &ModCtx<'_>) -> Probe {
    let stage = args.stage();
    if ctx.approvals.iter().any(|a| a == stage) {
        Probe::no_change(J::Null)
    } else {
        Probe::unknown(format!("waits for approval of stage `{stage}`"), J::Null)
    }
}

async fn approve(args: &ApproveArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let mut out = Outcome::default();
    let stage = args.stage();
    let how = if ctx.approvals.iter().any(|a| a == stage) {
        "--approve on the command line".to_string()
    } else if ctx.interactive && std::io::stdin().is_terminal() {
        let prompt = args.prompt.as_deref().unwrap_or("Continue?");
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
        out.failed = Some(format!(
            "stage `{stage}` needs approval: run with --approve {stage} (no terminal to ask on)"
        ));
        return Ok(out);
    };
    out.result.insert("approved_by".into(), J::String(how));
    Ok(out)
}

/// The `assert` module.
pub(crate) struct Assert;

impl Module for Assert {
    type Args = AssertArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "assert",
        args: &[
            req("that", T::ExprList),
            arg("fail_msg", T::Str),
            arg("success_msg", T::Str),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &AssertArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(Probe::no_change(J::Null))
    }

    async fn apply(args: &AssertArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        assert(args, ctx)
    }
}

/// The `fail` module.
pub(crate) struct Fail;

impl Module for Fail {
    type Args = FailArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "fail",
        args: &[req("msg", T::Str)],
        free_form: Some("msg"),
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &FailArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(Probe::no_change(J::Null))
    }

    async fn apply(args: &FailArgs, _probe: &Probe, _ctx: &ModCtx<'_>) -> Result<Outcome> {
        Ok(Outcome {
            failed: Some(args.msg.clone().unwrap_or_else(|| "failed".to_string())),
            ..Outcome::default()
        })
    }
}

/// The `debug` module.
pub(crate) struct Debug;

impl Module for Debug {
    type Args = DebugArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "debug",
        args: &[arg("msg", T::Str), arg("var", T::Str)],
        free_form: Some("msg"),
        one_of: &[&["msg", "var"]],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &DebugArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(Probe::no_change(J::Null))
    }

    async fn apply(args: &DebugArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        debug(args, ctx)
    }
}

/// The `approve` module.
pub(crate) struct Approve;

impl Module for Approve {
    type Args = ApproveArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "approve",
        args: &[req("stage", T::Str), arg("prompt", T::Str)],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(args: &ApproveArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(approve_probe(args, ctx))
    }

    async fn apply(args: &ApproveArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        approve(args, ctx).await
    }
}
