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
