//! The `mysql_query` module: SQL, or an SQL file from the controller or the host.

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value as J};

use super::client::read_controller_file;
use super::{parse_batch, run_sql_script, Login};
use crate::modules::contract::Module;
use crate::modules::spec::{arg, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{arg_bool, arg_str, ModCtx, Outcome, Probe};
use crate::shell::quote;

pub async fn probe_query(args: &Map<String, J>, _ctx: &ModCtx<'_>) -> Result<Probe> {
    let what = if let Some(p) = arg_str(args, "path") {
        format!("run the SQL file {p}")
    } else if let Some(p) = arg_str(args, "src") {
        format!("run the SQL file {p} (from the controller)")
    } else {
        "run SQL".to_string()
    };
    if arg_bool(args, "read_only") == Some(true) {
        return Ok(Probe::no_change(json!({ "what": what })));
    }
    Ok(Probe::unknown(
        format!("{what}: its effect is not known in advance (changed_when: decides)"),
        json!({ "what": what }),
    ))
}

pub async fn apply_query(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let db = arg_str(args, "database");
    let mut opts = String::from("--batch");
    if let Some(d) = db {
        opts.push_str(&format!(" --database={}", quote(d)));
    }
    let (body, stdin) = if let Some(p) = arg_str(args, "path") {
        (format!("my {opts} < {}\n", quote(p)), None)
    } else if let Some(src) = arg_str(args, "src") {
        let data = read_controller_file(src)
            .map_err(|e| anyhow!("cannot read {src} on the controller: {e}"))?;
        (format!("my {opts}\n"), Some(data))
    } else {
        let sql = crate::modules::required(args, "sql")?;
        (
            format!("my {opts}\n"),
            Some(format!("{sql}\n").into_bytes()),
        )
    };
    let out = run_sql_script(ctx.host, ctx, &login, &body, stdin.as_deref(), None).await?;
    let stdout = out.stdout_text();
    let mut result = Map::new();
    result.insert("rc".into(), json!(out.rc));
    result.insert("stdout".into(), json!(stdout));
    result.insert("stderr".into(), json!(out.stderr_text()));
    result.insert(
        "rows".into(),
        serde_json::to_value(parse_batch(&stdout)).unwrap_or(J::Null),
    );
    let failed = (!out.ok()).then(|| {
        format!(
            "SQL failed on {} (rc {}): {}",
            ctx.host.name,
            out.rc,
            out.stderr_text().trim()
        )
    });
    Ok(Outcome {
        changed: arg_bool(args, "read_only") != Some(true),
        result,
        undo: None,
        failed,
    })
}

/// The `mysql_query` module.
pub(crate) struct MysqlQuery;

impl Module for MysqlQuery {
    type Args = crate::modules::contract::RawArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "mysql_query",
        args: &[
            arg("sql", T::Str),
            arg("src", T::Path),
            arg("path", T::Path),
            arg("database", T::Str),
            arg("read_only", T::Bool),
            arg("login_user", T::Str),
            arg("login_password", T::Str),
            arg("login_password_var", T::Str),
            arg("login_host", T::Str),
            arg("login_port", T::Int),
            arg("login_unix_socket", T::Path),
        ],
        free_form: Some("sql"),
        one_of: &[&["sql", "src", "path"]],
        reversibility: Reversibility::Irreversible,
    };

    async fn probe(args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_query(args, ctx).await
    }

    async fn apply(args: &Map<String, J>, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_query(args, ctx).await
    }

    fn changes_nothing(args: &Map<String, J>) -> bool {
        arg_bool(args, "read_only") == Some(true)
    }
}
