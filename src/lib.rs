//! cutover: provision and upgrade an on-premises application cluster over ssh, with snapshots
//! and rollback. The binary (`src/main.rs`) is a thin CLI over this library.

// The futures of a recovery (undo_all → unwind → module apply → transport) nest deeply; with
// their functions in separate modules, clippy's layout queries exceed the default depth of 128.
#![recursion_limit = "256"]

pub mod check;
pub mod cli;
pub mod context_names;
pub mod controller;
pub mod decode;
pub mod diag;
pub mod engine;
pub mod error_kind;
pub mod exit;
pub mod input;
pub mod inventory;
pub mod modules;
pub mod output_file;
pub mod overlay;
pub mod plan;
pub mod playbook;
pub mod run;
pub mod secrets;
pub mod session_shell;
pub mod shell;
pub mod ssh_args;
pub mod template;
pub mod terminal;
pub mod transport;
pub mod yaml;
