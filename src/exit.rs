//! Exit codes: the one table the code returns, `--help` prints and the README lists (a test
//! compares the README's with `--help`'s).

/// Everything worked (for `check`: the input is valid).
pub const OK: u8 = 0;
/// The input is invalid, a request was refused (`commit` of a run that did not finish ok), or
/// the command failed.
pub const FAILED: u8 = 1;
/// `plan`: changes (or steps whose outcome is unknown) are pending.
pub const CHANGES: u8 = 2;
/// `apply`: a host failed.
pub const HOST_FAILED: u8 = 3;
/// `apply`: a host was unreachable or refused.
pub const UNREACHABLE: u8 = 4;
/// `apply`: another run holds the cluster's lock.
pub const LOCKED: u8 = 5;
/// The command line itself is wrong (unknown flag, missing argument).
pub const USAGE: u8 = 64;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: u8 = 130;

/// Every exit code and what it means.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success; for `check`, the input is valid; for `plan`, no changes"),
    (FAILED, "invalid input (every problem is listed, each with file:line:column), a saved plan that drifted or cannot be applied as reviewed, a refused `commit` (the run did not finish ok; nothing touched) or `rollback`, or another error"),
    (CHANGES, "`plan`: changes (or steps whose outcome is unknown) are pending — like `terraform plan -detailed-exitcode`"),
    (HOST_FAILED, "`apply`: a host failed"),
    (UNREACHABLE, "`apply`: a host was unreachable (or refused: unknown host key; a stale lock, which refuses the whole run)"),
    (LOCKED, "`apply`: another run holds the cluster's lock, on the controller or on a host of the run (nothing ran)"),
    (USAGE, "the command line itself is wrong (unknown flag or subcommand, missing or invalid argument, no inventory, options that conflict); nothing was run"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
];

/// The table as `--help` shows it.
pub fn help() -> String {
    let mut out = String::from("Exit codes:\n");
    for (code, meaning) in TABLE {
        out.push_str(&format!("  {code:<4} {meaning}\n"));
    }
    out
}
