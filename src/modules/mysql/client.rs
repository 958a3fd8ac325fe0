//! The `mysql` client on a host: how to log in (an option file written from standard input,
//! never a password in argv), and running SQL through it.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use crate::modules::{args, ModCtx};
use crate::transport::HostConn;

/// How to log in. Serialised into undo actions without the password: a password is only ever
/// referred to by the name of the variable holding it (`login_password_var`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_var: Option<String>,
    pub host: Option<String>,
    pub port: Option<u64>,
    pub socket: Option<String>,
}

/// The `login_*` arguments of a step, as given (`mysql_facts`' whole `Args`; the other MySQL
/// modules have the same fields and hand them over with their `login()`).
#[derive(Clone, Default, Deserialize)]
pub(crate) struct LoginArgs {
    #[serde(default, deserialize_with = "args::text")]
    pub login_user: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub login_password: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub login_password_var: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    pub login_host: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    pub login_port: Option<u64>,
    #[serde(default, deserialize_with = "args::text")]
    pub login_unix_socket: Option<String>,
}

/// What [`Login::from_args`] reads the `login_*` arguments from: a typed module's
/// [`LoginArgs`], or a map (the login a write mark's way back journaled).
pub(crate) trait LoginSource {
    fn login_args(&self) -> Result<LoginArgs>;
}

impl LoginSource for LoginArgs {
    fn login_args(&self) -> Result<LoginArgs> {
        Ok(self.clone())
    }
}

impl LoginSource for Map<String, J> {
    fn login_args(&self) -> Result<LoginArgs> {
        // Unknown keys are ignored: only the `login_*` ones are read (with `uint64`'s messages).
        args::parse("mysql", self)
    }
}

impl Login {
    /// The login a step's arguments ask for; `login_password_var` names a variable of the
    /// host's context holding the password.
    pub fn from_args(source: &impl LoginSource, ctx: &ModCtx<'_>) -> Result<Login> {
        let args = source.login_args()?;
        let password_var = args.login_password_var.clone();
        let mut password = args.login_password.clone();
        if password.is_none() {
            if let Some(v) = &password_var {
                match ctx.vars.get(v) {
                    Some(J::String(s)) => password = Some(s.clone()),
                    _ => bail!("login_password_var: variable `{v}` is not set (or not a string)"),
                }
            }
        }
        Ok(Login {
            user: args.login_user.clone(),
            password,
            password_var,
            host: args.login_host.clone(),
            port: args.login_port,
            socket: args.login_unix_socket.clone(),
        })
    }

    /// The login arguments an undo step may carry (never the password itself).
    pub fn undo_args(&self) -> Map<String, J> {
        let mut m = Map::new();
        if let Some(u) = &self.user {
            m.insert("login_user".into(), json!(u));
        }
        if let Some(v) = &self.password_var {
            m.insert("login_password_var".into(), json!(v));
        }
        if let Some(h) = &self.host {
            m.insert("login_host".into(), json!(h));
        }
        if let Some(p) = self.port {
            m.insert("login_port".into(), json!(p));
        }
        if let Some(s) = &self.socket {
            m.insert("login_unix_socket".into(), json!(s));
        }
        m
    }

    /// The `[client]` option file, or None when the defaults are used.
    pub fn option_file(&self) -> Result<Option<String>> {
        if self.user.is_none()
            && self.password.is_none()
            && self.host.is_none()
            && self.port.is_none()
            && self.socket.is_none()
        {
            return Ok(None);
        }
        let mut s = String::from("[client]\n");
        let mut add = |k: &str, v: &str| -> Result<()> {
            if v.contains(['\n', '\r', '\0']) {
                bail!("login {k} contains a line break, which an option file cannot hold");
            }
            s.push_str(&format!("{k}=\"{}\"\n", option_escape(v)));
            Ok(())
        };
        if let Some(u) = &self.user {
            add("user", u)?;
        }
        if let Some(p) = &self.password {
            add("password", p)?;
        }
        if let Some(h) = &self.host {
            add("host", h)?;
        }
        if let Some(p) = self.port {
            add("port", &p.to_string())?;
        }
        if let Some(so) = &self.socket {
            add("socket", so)?;
        }
        Ok(Some(s))
    }

    /// A script prelude defining the shell function `my` (the mysql client logged in), and
    /// the bytes that must come first on the script's standard input.
    pub fn prelude(&self) -> Result<(String, Vec<u8>)> {
        match self.option_file()? {
            None => Ok(("my() { mysql \"$@\"; }\n".to_string(), Vec::new())),
            Some(text) => {
                let lines = text.lines().count();
                let script = format!(
                    r#"umask 077
cutover_my_cnf=$(mktemp "${{TMPDIR:-/tmp}}/.cutover-my.XXXXXX") || exit 70
trap 'rm -f "$cutover_my_cnf"' EXIT
trap 'exit 130' INT TERM HUP
i=0
while [ "$i" -lt {lines} ]; do IFS= read -r l || break; printf '%s\n' "$l" >> "$cutover_my_cnf"; i=$((i+1)); done
unset l
my() {{ mysql --defaults-extra-file="$cutover_my_cnf" "$@"; }}
"#
                );
                Ok((script, text.into_bytes()))
            }
        }
    }
}

/// A `src:` SQL file on the controller: a regular file only (a FIFO would block the run).
pub(super) fn read_controller_file(src: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let (mut f, _) =
        crate::input::open_regular(std::path::Path::new(src)).map_err(std::io::Error::other)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(data)
}

/// A value inside double quotes in a MySQL option file.
fn option_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// An SQL string literal (works with and without NO_BACKSLASH_ESCAPES… as long as the value
/// has no backslash; with one, the default mode is assumed).
pub(crate) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Run `body` (which calls `my …`) on `conn` with the login prelude; `stdin` follows the
/// option file on standard input.
pub(crate) async fn run_sql_script(
    conn: &HostConn,
    ctx: &ModCtx<'_>,
    login: &Login,
    body: &str,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<crate::transport::Output> {
    let (prelude, mut input) = login.prelude()?;
    if let Some(s) = stdin {
        input.extend_from_slice(s);
    }
    let script = format!("{prelude}{body}");
    conn.run(
        &script,
        (!input.is_empty()).then_some(&input[..]),
        ctx.become_,
        timeout.or(ctx.timeout),
    )
    .await
}

pub(super) async fn exec_sql(ctx: &ModCtx<'_>, login: &Login, sql: &str) -> Result<()> {
    let out = run_sql_script(
        ctx.host,
        ctx,
        login,
        "my --batch\n",
        Some(format!("{sql}\n").as_bytes()),
        None,
    )
    .await?;
    if !out.ok() {
        bail!(
            "SQL failed on {}: {}",
            ctx.host.name,
            out.stderr_text().trim()
        );
    }
    Ok(())
}
