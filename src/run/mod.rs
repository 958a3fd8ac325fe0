//! What plan and apply both need to work on hosts, below both of them: the run's locks (on the
//! controller and on each host), facts gathered on demand, and one step prepared for one host.

pub mod blocks;
pub mod connections;
pub mod facts;
pub mod inputs;
pub mod lock;
pub mod loops;
pub mod step;
pub mod walk;
