//! What the shim does differently per operating system: opening stdio (FIFOs and ptys on
//! Linux, named pipes on Windows), learning of process exits, the metrics format, the log and
//! the default state root. Everything above this module is platform-neutral.

#[cfg(unix)]
mod linux;
#[cfg(unix)]
pub use linux::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
