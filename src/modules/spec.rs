//! What a module accepts: argument names, types, required ones, allowed values. Each module
//! declares its own [`ModuleSpec`] (`Module::SPEC`, in its file); this file holds the types.
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
    /// A file mode as an octal string only ("0644"): for modules that compute with it.
    OctalMode,
    /// A commit pinned by its full id (40 hexadecimal digits): a branch or tag name moves, a
    /// pinned commit does not, so the tree a reviewer read is the tree that lands.
    CommitId,
    /// A repository git fetches (a URL or a path), which git must not read as an option.
    RepoUrl,
    /// A path that must be absolute (a step that lays files under it).
    AbsPath,
    /// An http:// or https:// URL the controller sends to (`announce`'s webhook). Empty is
    /// accepted: a step guarded by `when:` for an inventory without one.
    WebUrl,
    /// A mail address, or a list of them (`announce`'s `mail_to`): each one address, no line
    /// break. A whole list rendered from one variable is checked when the step runs.
    MailList,
    /// A host name or IP address that reaches an ssh command line on a host
    /// (`crate::ssh_args::address_problem`).
    Address,
    /// The volumes of an `lvm_layout` step: a list of `{name, size, fs, mount, …}` (checked
    /// item by item, `lvm_layout::check_volumes`), or a template that renders one.
    Volumes,
    /// An expression evaluated per host (like `when:`).
    Expr,
    /// A list of expressions, or one.
    ExprList,
    Any,
}

impl ArgType {
    /// What is wrong with `value` as an argument of this type, for the types whose text has a
    /// form (`check` says it where the value is written, or where a template renders it).
    pub fn text_problem(self, value: &str) -> Option<String> {
        let octal =
            |s: &str| (3..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match self {
            ArgType::OctalMode if !octal(value) => Some(format!(
                "`{}` is not an octal file mode; expected one like \"0644\" (a symbolic mode cannot be combined with the executable bit git records)",
                crate::diag::one_line(value)
            )),
            ArgType::CommitId
                if !(value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit())) =>
            {
                Some(format!(
                    "`{}` is not a commit id; expected the full 40-hex id of a commit (a branch or tag name moves; pin the commit that was reviewed)",
                    crate::diag::one_line(value)
                ))
            }
            ArgType::RepoUrl => repo_problem(value),
            ArgType::WebUrl => super::announce::url_problem(value),
            ArgType::MailList if !value.starts_with('[') => super::announce::mail_problem(value),
            ArgType::AbsPath if !value.starts_with('/') => Some(format!(
                "`{}` is not an absolute path",
                crate::diag::one_line(value)
            )),
            _ => None,
        }
    }
}

/// What is wrong with a repository URL that git would read as something else (an option, a
/// second argument).
fn repo_problem(repo: &str) -> Option<String> {
    if repo.is_empty() {
        Some("the repository URL is empty".into())
    } else if repo.starts_with('-') {
        Some(format!(
            "`{}` starts with `-` (git would read it as an option)",
            crate::diag::one_line(repo)
        ))
    } else if repo.chars().any(char::is_control) {
        Some("the repository URL has a control character".into())
    } else {
        None
    }
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
    /// The module acts, but on nothing a way back could restore: a message sent (`announce`)
    /// cannot be unsent, and there is nothing on a host to undo. Never irreversible in a
    /// plan, never in an unwind.
    NoUndoNeeded,
}

#[derive(Debug)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub args: &'static [ArgSpec],
    /// `command: ls -l` instead of `command: {cmd: ls -l}`.
    pub free_form: Option<&'static str>,
    /// Groups of arguments of which exactly one must be given.
    pub one_of: &'static [&'static [&'static str]],
    /// Groups of arguments of which at least one must be given (`announce`: a webhook, mail
    /// recipients, or both).
    pub any_of: &'static [&'static [&'static str]],
    pub reversibility: Reversibility,
}

pub(crate) const fn arg(name: &'static str, ty: ArgType) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required: false,
        choices: &[],
    }
}
pub(crate) const fn req(name: &'static str, ty: ArgType) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required: true,
        choices: &[],
    }
}
pub(crate) const fn choice(name: &'static str, choices: &'static [&'static str]) -> ArgSpec {
    ArgSpec {
        name,
        ty: ArgType::Str,
        required: false,
        choices,
    }
}

/// The spec of the module called `name` (each module holds its own: see `contract.rs`).
pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    super::SPECS.iter().copied().find(|m| m.name == name)
}

/// Every module's name, in the registry's order (the order error messages list them in).
pub fn names() -> impl Iterator<Item = &'static str> {
    super::SPECS.iter().map(|m| m.name)
}
