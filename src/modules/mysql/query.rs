//! The `mysql_query` module: SQL, or an SQL file from the controller or the host.

use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::client::{read_controller_file, LoginSource};
use super::{parse_batch, run_sql_script, Login, LoginArgs};
use crate::modules::contract::Module;
use crate::modules::spec::{arg, ArgType as T, ModuleSpec, Reversibility};
use crate::modules::{args, ModCtx, Outcome, Probe};
use crate::shell::quote;

/// The arguments of a `mysql_query` step (its `SPEC.args`).
#[derive(Deserialize)]
pub(crate) struct QueryArgs {
    #[serde(default, deserialize_with = "args::text")]
    sql: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    src: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    path: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    database: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    read_only: Option<bool>,
    #[serde(default, deserialize_with = "args::text")]
    login_user: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_password: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_password_var: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    login_host: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    login_port: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    login_unix_socket: Option<String>,
}

impl LoginSource for QueryArgs {
    fn login_args(&self) -> Result<LoginArgs> {
        Ok(LoginArgs {
            login_user: self.login_user.clone(),
            login_password: self.login_password.clone(),
            login_password_var: self.login_password_var.clone(),
            login_host: self.login_host.clone(),
            login_port: self.login_port,
            login_unix_socket: self.login_unix_socket.clone(),
        })
    }
}

pub async fn probe_query(args: &QueryArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
    let what = if let Some(p) = &args.path {
        format!("run the SQL file {p}")
    } else if let Some(p) = &args.src {
        format!("run the SQL file {p} (from the controller)")
    } else {
        "run SQL".to_string()
    };
    if args.read_only == Some(true) {
        return Ok(Probe::no_change(json!({ "what": what })));
    }
    Ok(Probe::unknown(
        format!("{what}: its effect is not known in advance (changed_when: decides)"),
        json!({ "what": what }),
    ))
}

pub async fn apply_query(args: &QueryArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let login = Login::from_args(args, ctx)?;
    let mut opts = String::from("--batch");
    if let Some(d) = &args.database {
        opts.push_str(&format!(" --database={}", quote(d)));
    }
    let (body, stdin) = if let Some(p) = &args.path {
        (format!("my {opts} < {}\n", quote(p)), None)
    } else if let Some(src) = &args.src {
        let data = read_controller_file(src)
            .map_err(|e| anyhow!("cannot read {src} on the controller: {e}"))?;
        (format!("my {opts}\n"), Some(data))
    } else {
        let sql = args
            .sql
            .as_deref()
            .ok_or_else(|| anyhow!("argument `sql` is missing or not a string"))?;
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
        changed: args.read_only != Some(true),
        result,
        undo: None,
        failed,
    })
}

/// The `mysql_query` module.
pub(crate) struct MysqlQuery;

impl Module for MysqlQuery {
    type Args = QueryArgs;

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
        any_of: &[],
        reversibility: Reversibility::Irreversible,
    };

    async fn probe(args: &QueryArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe_query(args, ctx).await
    }

    async fn apply(args: &QueryArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply_query(args, ctx).await
    }

    fn changes_nothing(args: &QueryArgs) -> bool {
        args.read_only == Some(true)
    }
}
