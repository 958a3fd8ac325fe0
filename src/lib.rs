//! cutover: provision and upgrade an on-premises application cluster over ssh, with snapshots
//! and rollback. The binary (`src/main.rs`) is a thin CLI over this library.

pub mod decode;
pub mod diag;
pub mod inventory;
pub mod yaml;
