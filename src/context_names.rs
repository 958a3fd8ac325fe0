//! The names the engine itself puts into a step's context, next to the host's variables.
//! Every place that inserts one uses these constants, and `RESERVED` lists them all, so a
//! `register:` (which the engine inserts after them) cannot silently replace one.

pub const INVENTORY_HOSTNAME: &str = "inventory_hostname";
pub const HOST: &str = "host";
pub const GROUPS: &str = "groups";
pub const HOSTVARS: &str = "hostvars";
/// `run.id`: the run's id (engine, plan).
pub const RUN: &str = "run";
/// Gathered facts, when a step refers to them (engine, plan).
pub const FACTS: &str = "facts";
/// The step's own result, in `changed_when`, `failed_when` and `until`.
pub const RESULT: &str = "result";
/// The inventory's agreed window, `{ start, end }` (RFC 3339), when it declares one.
pub const MAINTENANCE_WINDOW: &str = "maintenance_window";
/// The predicted production window, `{ total_s, run, … }`, when a rehearsal is on record
/// (`engine::window::prediction`; undefined otherwise).
pub const WINDOW_PREDICTION: &str = "window_prediction";
pub const RESERVED: &[&str] = &[
    INVENTORY_HOSTNAME,
    HOST,
    GROUPS,
    HOSTVARS,
    RUN,
    FACTS,
    RESULT,
    MAINTENANCE_WINDOW,
    WINDOW_PREDICTION,
];

/// What `{{ run.id }}` shows in a plan: the id of the run that applies it is not known yet.
pub const RUN_ID_PLACEHOLDER: &str = "RUN-ID";
