//! cutover: provision and upgrade an on-premises application cluster over ssh, with snapshots
//! and rollback. The binary (`src/main.rs`) is a thin CLI over this library.

pub mod check;
pub mod cli;
pub mod decode;
pub mod diag;
pub mod engine;
pub mod input;
pub mod inventory;
pub mod modules;
pub mod output_file;
pub mod plan;
pub mod playbook;
pub mod secrets;
pub mod session_shell;
pub mod shell;
pub mod ssh_args;
pub mod template;
pub mod terminal;
pub mod transport;
pub mod yaml;
