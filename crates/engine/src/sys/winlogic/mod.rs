//! The Windows backend's decisions that are not system calls: job limits, the account to log on,
//! mount destinations and the container's view of paths, command-line resolution, the
//! environment and signals. Plain functions over plain data, compiled on every platform so their
//! unit tests run on any host; `sys::windows` executes what they decide.
//!
//! The reference behaviour is hcsshim's `internal/jobcontainers` (HostProcess containers on
//! containerd 1.7+); where this module differs, the function's doc says why.

pub mod account;
pub mod cmdline;
pub mod env;
pub mod layers;
pub mod limits;
pub mod mounts;
pub mod signal;
