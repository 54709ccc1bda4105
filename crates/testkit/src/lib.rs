//! Helpers shared by the project's integration suites (CLI, shim, CRI).

pub mod kernel;
