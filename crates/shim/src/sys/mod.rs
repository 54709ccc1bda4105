//! What the shim does differently per operating system: opening stdio (FIFOs and ptys on
//! Linux, named pipes on Windows), learning of process exits, the metrics format, the log and
//! the default state root. Everything above this module is platform-neutral.
//!
//! [`ProcessHost`] is the part of it the shim's container calls per process, written as a trait
//! so that the container is generic over the engine's platform: this host's in the shim, the
//! engine's recording fake in the container's tests.

use std::io;

use hostprocess_engine::sys::{Current, Platform};
use hostprocess_engine::{Container as EngineContainer, ProcessInfo};

use crate::io::StdioPaths;

#[cfg(unix)]
mod linux;
#[cfg(unix)]
pub use linux::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// What the shim's container needs of a platform besides the engine's operations: a process's
/// stdio, and how its exit reaches the shim.
pub trait ProcessHost: Platform + Sized {
    /// Opens containerd's stdio for a new process: the shim's side, and the platform's.
    fn open_stdio(paths: &StdioPaths) -> io::Result<(ProcessIo, Self::Stdio)>;

    /// Ties the shim's side of the stdio to the process it was given to.
    fn bind(io: &mut ProcessIo, container: &EngineContainer<Self>, process: &ProcessInfo);

    /// Has the process's exit reported to the shim's exit monitor.
    fn watch_exit(container: &EngineContainer<Self>, process: &ProcessInfo);
}

impl ProcessHost for Current {
    fn open_stdio(paths: &StdioPaths) -> io::Result<(ProcessIo, Self::Stdio)> {
        ProcessIo::open(paths)
    }

    fn bind(io: &mut ProcessIo, container: &EngineContainer, process: &ProcessInfo) {
        io.bind(container, process);
    }

    fn watch_exit(container: &EngineContainer, process: &ProcessInfo) {
        watch_exit(container, process);
    }
}

/// The fake makes no process: its stdio is nothing, and a test reports exits itself
/// (`Process::exited`). The shim's side is opened as for this host, which with no paths (as the
/// tests give) opens nothing either.
#[cfg(test)]
impl ProcessHost for hostprocess_engine::sys::fake::Fake {
    fn open_stdio(paths: &StdioPaths) -> io::Result<(ProcessIo, ())> {
        let (io, _unused) = ProcessIo::open(paths)?;
        Ok((io, ()))
    }

    fn bind(_io: &mut ProcessIo, _container: &EngineContainer<Self>, _process: &ProcessInfo) {}

    fn watch_exit(_container: &EngineContainer<Self>, _process: &ProcessInfo) {}
}
