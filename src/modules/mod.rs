//! Modules: what a step can do. `spec` describes their arguments for validation.

pub mod spec;
