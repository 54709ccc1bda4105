//! The HostProcess container engine: an OCI bundle becomes a [`plan::ContainerPlan`], which a
//! platform ([`sys`]) executes as a job, a container volume, a view of the host filesystem, an
//! account and processes. Both the `hostprocess` CLI and the containerd shim drive containers
//! through [`container::Engine`].
//!
//! The parts: [`spec`] reads the bundle; [`plan`] decides everything the spec and the runtime's
//! settings say, with no side effect (so `create` refuses before it makes anything);
//! [`container`] is the lifecycle, generic over the platform, with its locking rule; [`state`]
//! keeps one directory per container. [`sys`] is the platform interface: pure decisions per
//! operating system in `sys::linuxlogic` and `sys::winlogic` (tested on any host), their
//! execution in `sys::linux` and `sys::windows`, and a recording platform for tests
//! (`sys::fake`, feature `fake-platform`).

pub mod annotations;
pub mod container;
pub mod error;
pub mod logfmt;
pub mod plan;
pub mod spec;
pub mod state;
pub mod sys;

pub use container::{Container, CreateOptions, Engine, Status};
pub use error::{Error, Result};
pub use sys::{JobStats, ProcessInfo};
