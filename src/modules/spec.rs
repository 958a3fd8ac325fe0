//! What each module accepts: argument names, types, required ones, allowed values.
//!
//! Validation uses this table before any host is touched, so a typo in an argument or a
//! missing `dest:` is found by `cutover check`, not halfway through a maintenance window.

/// The type an argument must have. A string containing `{{` is accepted for any type: it is
/// rendered at run time and checked then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgType {
    Str,
    Path,
    Int,
    Bool,
    /// A list of strings, or one string.
    StrList,
    Map,
    /// A file mode, as a quoted octal string ("0644") or symbolic ("u+rwx"): an unquoted
    /// 0644 is the number 644 in YAML 1.2, which is never what an admin meant.
    Mode,
    /// A host name or IP address that reaches an ssh command line on a host
    /// (`crate::ssh_args::address_problem`).
    Address,
    /// An expression evaluated per host (like `when:`).
    Expr,
    /// A list of expressions, or one.
    ExprList,
    Any,
}

#[derive(Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
    pub choices: &'static [&'static str],
}

/// Whether a module's changes can be undone by the engine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reversibility {
    /// The module records how to undo what it did (previous file content, previous state).
    Reversible,
    /// Nothing to undo: the module never changes a host (debug, assert, wait_for…).
    ReadOnly,
    /// The module can change a host but has no automatic way back (command, shell…); a step
    /// may declare one with `undo:`.
    Irreversible,
}

#[derive(Debug)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub args: &'static [ArgSpec],
    /// `command: ls -l` instead of `command: {cmd: ls -l}`.
    pub free_form: Option<&'static str>,
    /// Groups of arguments of which exactly one must be given.
    pub one_of: &'static [&'static [&'static str]],
    pub reversibility: Reversibility,
}

const fn arg(name: &'static str, ty: ArgType) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required: false,
        choices: &[],
    }
}
const fn req(name: &'static str, ty: ArgType) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required: true,
        choices: &[],
    }
}
const fn choice(name: &'static str, choices: &'static [&'static str]) -> ArgSpec {
    ArgSpec {
        name,
        ty: ArgType::Str,
        required: false,
        choices,
    }
}

use ArgType::*;
use Reversibility::*;

pub static MODULES: &[ModuleSpec] = &[
    ModuleSpec {
        name: "command",
        args: &[
            arg("cmd", Str),
            arg("argv", StrList),
            arg("creates", Path),
            arg("removes", Path),
            arg("chdir", Path),
            arg("stdin", Str),
        ],
        free_form: Some("cmd"),
        one_of: &[&["cmd", "argv"]],
        reversibility: Irreversible,
    },
    ModuleSpec {
        name: "shell",
        args: &[
            req("cmd", Str),
            arg("creates", Path),
            arg("removes", Path),
            arg("chdir", Path),
            arg("stdin", Str),
        ],
        free_form: Some("cmd"),
        one_of: &[],
        reversibility: Irreversible,
    },
    ModuleSpec {
        name: "copy",
        args: &[
            req("dest", Path),
            arg("src", Path),
            arg("content", Str),
            arg("owner", Str),
            arg("group", Str),
            arg("mode", Mode),
        ],
        free_form: None,
        one_of: &[&["src", "content"]],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "template",
        args: &[
            req("src", Path),
            req("dest", Path),
            arg("owner", Str),
            arg("group", Str),
            arg("mode", Mode),
            arg("vars", Map),
            arg("ignore_lines", StrList),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "file",
        args: &[
            req("path", Path),
            choice("state", &["directory", "file", "link", "absent", "touch"]),
            arg("src", Path),
            arg("owner", Str),
            arg("group", Str),
            arg("mode", Mode),
            arg("recurse", Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "lineinfile",
        args: &[
            req("path", Path),
            arg("line", Str),
            arg("regexp", Str),
            choice("state", &["present", "absent"]),
            arg("insertafter", Str),
            arg("insertbefore", Str),
            arg("create", Bool),
            arg("owner", Str),
            arg("group", Str),
            arg("mode", Mode),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "package",
        args: &[
            arg("name", StrList),
            choice("state", &["present", "latest", "absent"]),
            arg("version", Str),
            arg("upgrade_all", Bool),
            arg("update_cache", Bool),
        ],
        free_form: None,
        one_of: &[&["name", "upgrade_all"]],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "service",
        args: &[
            req("name", Str),
            choice("state", &["started", "stopped", "restarted", "reloaded"]),
            arg("enabled", Bool),
            arg("daemon_reload", Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "user",
        args: &[
            req("name", Str),
            choice("state", &["present", "absent"]),
            arg("uid", Int),
            arg("group", Str),
            arg("groups", StrList),
            arg("home", Path),
            arg("shell", Path),
            arg("system", Bool),
            arg("create_home", Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "group",
        args: &[
            req("name", Str),
            choice("state", &["present", "absent"]),
            arg("gid", Int),
            arg("system", Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "wait_for",
        args: &[
            arg("port", Int),
            arg("host", Str),
            arg("path", Path),
            arg("search", Str),
            choice("state", &["started", "stopped", "present", "absent"]),
            arg("timeout", Int),
            arg("delay", Int),
        ],
        free_form: None,
        one_of: &[&["port", "path"]],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "assert",
        args: &[
            req("that", ExprList),
            arg("fail_msg", Str),
            arg("success_msg", Str),
        ],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "fail",
        args: &[req("msg", Str)],
        free_form: Some("msg"),
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "debug",
        args: &[arg("msg", Str), arg("var", Str)],
        free_form: Some("msg"),
        one_of: &[&["msg", "var"]],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "approve",
        args: &[req("stage", Str), arg("prompt", Str)],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "snapshot",
        args: &[
            ArgSpec {
                name: "backend",
                ty: Str,
                required: true,
                choices: &["lvm", "btrfs"],
            },
            req("volumes", Any),
            req("name", Str),
            choice("state", &["present", "absent", "merged"]),
            arg("size", Str),
            arg("pool", Path),
            arg("services", StrList),
            arg("reboot", Bool),
            arg("replace_existing", Bool),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "snapshot_usage",
        args: &[
            ArgSpec {
                name: "backend",
                ty: Str,
                required: true,
                choices: &["lvm", "btrfs"],
            },
            req("volumes", Any),
            req("name", Str),
            arg("max_usage_percent", Int),
            arg("autoextend", Bool),
            arg("extend_by", Str),
            arg("pool", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "sync",
        args: &[
            req("src_host", Str),
            req("src", Path),
            req("dest", Path),
            arg("exclude", StrList),
            ArgSpec {
                name: "via",
                ty: Str,
                required: false,
                choices: &["auto", "direct", "controller"],
            },
            arg("src_address", Address),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "mysql_facts",
        args: &[
            arg("login_user", Str),
            arg("login_password", Str),
            arg("login_password_var", Str),
            arg("login_host", Str),
            arg("login_port", Int),
            arg("login_unix_socket", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "write_mark",
        args: &[
            ArgSpec {
                name: "point",
                ty: Str,
                required: true,
                choices: &["snapshot", "window_closed"],
            },
            arg("mysql", Bool),
            arg("ignore_tables", StrList),
            arg("paths", StrList),
            arg("exclude", StrList),
            arg("login_user", Str),
            arg("login_password", Str),
            arg("login_password_var", Str),
            arg("login_host", Str),
            arg("login_port", Int),
            arg("login_unix_socket", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "mysql_replication",
        args: &[
            choice(
                "state",
                &["started", "stopped", "synced", "configured", "detached"],
            ),
            choice("threads", &["all", "io", "sql"]),
            arg("read_only", Bool),
            arg("master", Str),
            arg("wait_timeout", Int),
            arg("source_host", Str),
            arg("source_port", Int),
            arg("source_user", Str),
            arg("source_password", Str),
            choice("use_gtid", &["slave_pos", "current_pos", "no"]),
            arg("connect_retry", Int),
            arg("service", Str),
            arg("config_file", Path),
            arg("login_user", Str),
            arg("login_password", Str),
            arg("login_password_var", Str),
            arg("login_host", Str),
            arg("login_port", Int),
            arg("login_unix_socket", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "mysql_query",
        args: &[
            arg("sql", Str),
            arg("src", Path),
            arg("path", Path),
            arg("database", Str),
            arg("read_only", Bool),
            arg("login_user", Str),
            arg("login_password", Str),
            arg("login_password_var", Str),
            arg("login_host", Str),
            arg("login_port", Int),
            arg("login_unix_socket", Path),
        ],
        free_form: Some("sql"),
        one_of: &[&["sql", "src", "path"]],
        reversibility: Irreversible,
    },
    ModuleSpec {
        name: "lb_member",
        args: &[
            req("lb", Str),
            req("member", Str),
            ArgSpec {
                name: "activation",
                ty: Str,
                required: true,
                choices: &["active", "disabled", "stopped"],
            },
            arg("status_url", Str),
            arg("workers_file", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "maintenance",
        args: &[
            req("path", Path),
            ArgSpec {
                name: "state",
                ty: Str,
                required: true,
                choices: &["on", "off"],
            },
            arg("url", Str),
            arg("admin_url", Str),
            arg("expect_status", Int),
            arg("page_match", Str),
            arg("timeout", Int),
        ],
        free_form: None,
        one_of: &[],
        reversibility: Reversible,
    },
    ModuleSpec {
        name: "http_check",
        args: &[
            arg("url", Str),
            arg("file", Path),
            arg("status", Int),
            arg("json", Map),
            arg("headers", Map),
            arg("regex", Str),
            arg("absent", Str),
            arg("from_host", Bool),
            arg("timeout", Int),
            arg("interval", Int),
        ],
        free_form: None,
        one_of: &[&["url", "file"]],
        reversibility: ReadOnly,
    },
    ModuleSpec {
        name: "cluster_safety",
        args: &[
            ArgSpec {
                name: "check",
                ty: Str,
                required: true,
                choices: &[
                    "no_app_running",
                    "single_writer",
                    "same_version",
                    "jdbc_ping",
                ],
            },
            arg("hosts", StrList),
            arg("process", Str),
            arg("status_url", Str),
            arg("version", Str),
            arg("database", Str),
            arg("wait", Int),
            arg("cluster_name", Str),
            arg("clients", StrList),
            arg("table", Str),
            arg("expected", Int),
            arg("login_user", Str),
            arg("login_password", Str),
            arg("login_password_var", Str),
            arg("login_host", Str),
            arg("login_port", Int),
            arg("login_unix_socket", Path),
        ],
        free_form: None,
        one_of: &[],
        reversibility: ReadOnly,
    },
];

pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    MODULES.iter().find(|m| m.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|m| m.name)
}
