//! Where a process's standard I/O goes, as containerd names it (FIFO or named-pipe paths, or
//! `file://` URIs). Opening them is platform code: [`crate::sys::ProcessIo`].

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
