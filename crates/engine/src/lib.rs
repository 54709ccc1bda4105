//! The HostProcess container engine: an OCI bundle becomes a [`plan::ContainerPlan`], which a
//! platform ([`sys`]) executes as a job, a container volume, a view of the host filesystem, an
//! account and processes. Both the `hostprocess` CLI and the containerd shim drive containers
//! through [`container::Engine`].

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
