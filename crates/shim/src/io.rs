//! Where a process's standard I/O goes, as containerd names it (FIFO or named-pipe paths, or
//! `file://` URIs). Opening them is platform code: [`crate::sys::ProcessIo`].

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set when a copy thread has finished: everything it read has been written on.
#[derive(Debug, Default)]
pub struct CopyDone {
    done: Mutex<bool>,
    changed: Condvar,
}

impl CopyDone {
    // Only Linux copies a process's output in the shim (a terminal's).
    #[cfg_attr(windows, allow(dead_code))]
    pub fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits at most `timeout` for the copy to finish; whether it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// The stdio of one process, from a Create or Exec request. An empty path is `/dev/null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// One output destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<'a> {
    None,
    /// A FIFO or named pipe that containerd's client reads.
    Pipe(&'a str),
    /// A log file (`file:///path`): appended to.
    File(&'a str),
}

/// Parses an output path: a bare path is a pipe, `file://` a file, and `binary://` (a logging
/// program containerd would have the shim run) is refused with what to use instead.
pub fn output(path: &str) -> Result<Output<'_>, String> {
    if path.is_empty() {
        return Ok(Output::None);
    }
    if let Some(file) = path.strip_prefix("file://") {
        return Ok(Output::File(file));
    }
    if path.starts_with("binary://") {
        return Err(format!(
            "log URI {path:?}: logging binaries are not run by the hostprocess shim; use a \
             file:// log URI or the default FIFOs"
        ));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(format!(
            "log URI {path:?}: unknown scheme {scheme:?}; use a file:// log URI or the default \
             FIFOs"
        ));
    }
    Ok(Output::Pipe(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_pipes_files_or_refused() {
        assert_eq!(output(""), Ok(Output::None));
        assert_eq!(
            output("/run/containerd/fifo/1/c-stdout"),
            Ok(Output::Pipe("/run/containerd/fifo/1/c-stdout"))
        );
        assert_eq!(
            output("file:///var/log/c.log"),
            Ok(Output::File("/var/log/c.log"))
        );
        assert!(output("binary:///usr/bin/logger?x=1")
            .unwrap_err()
            .contains("use a file:// log URI"));
        assert!(output("fifo://x").unwrap_err().contains("unknown scheme"));
    }
}
