//! Controller-side helpers every layer above may use: where state is kept, the clock, who runs
//! cutover, whether a process still runs, content hashes. No knowledge of hosts, modules or runs.

pub mod clock;
pub mod hash;
pub mod process;
pub mod state_dir;
pub mod user;
