//! Files on a host: `copy` and `template` (content), `file` (directory, link, absent, touch,
//! owner, mode).
//!
//! Change detection is by SHA-256 on the host, so unchanged content is never re-sent. Writes are
//! atomic (temporary file in the same directory, then rename), and the previous file is kept as
//! a backup next to it so the change can be undone.

mod content;
mod file;
mod look;
#[cfg(test)]
mod tests;

pub use content::content_diff;
pub(crate) use content::{
    backup_name, file_written, pending_content_undo, write_file, write_undo, Copy, Template,
};
pub(crate) use file::File;
#[cfg(test)]
pub(crate) use look::parse_looks;
pub use look::sha256_hex;
pub(crate) use look::{
    attr_changes, attr_script, dir_exists, look, look_many, parent_of, planned_attrs, LookFor,
    Looked, Stat, WantedAttrs,
};
