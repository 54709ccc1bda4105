//! Windows: stdio through containerd's named pipes (a terminal is the engine's pseudo console
//! fed by them), exits from the engine's process handles, metrics in hcsshim's `Statistics`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::io::OwnedHandle;

use containerd_shim::synchronous::monitor::monitor_notify_by_pid;
use containerd_shim::{Error as ShimError, StartOpts};
use hostprocess_engine::sys::windows::{Record, Stdio, Windows};
use hostprocess_engine::{Container as EngineContainer, ProcessInfo};
use log::warn;

use crate::io::{output, Output, StdioPaths};
use crate::metrics::MetricsFormat;

/// Where the shim keeps the engine's state (one directory per namespace below it).
pub const DEFAULT_STATE_ROOT: &str = r"C:\ProgramData\containerd\state\hostprocess";

/// None: the log is a named pipe the shim serves, which the shim library's logger does.
pub const LOG_FIFO: Option<&str> = None;

/// Reported when the exit code of a process cannot be read.
const UNKNOWN_EXIT: i32 = 255;

/// A ttrpc client on containerd's named pipe at `address` (as in `TTRPC_ADDRESS`).
pub fn connect_ttrpc(address: &str) -> Result<containerd_shim::protos::ttrpc::Client, String> {
    containerd_shim::protos::ttrpc::Client::connect(address).map_err(|e| e.to_string())
}

pub fn metrics_format() -> MetricsFormat {
    MetricsFormat::Windows
}

/// Windows has no SIGCHLD: a thread per process waits on the engine's handle for it and feeds
/// the same exit monitor the Linux reaper feeds.
pub fn watch_exit(container: &EngineContainer, process: &ProcessInfo) {
    let record: Record = container.record().clone();
    let process = *process;
    let spawned = std::thread::Builder::new()
        .name(format!("exit-{}", process.pid))
        .spawn(move || {
            let code = match Windows::wait_exit(&process, None) {
                Ok(Some(code)) => code as i32,
                Ok(None) => UNKNOWN_EXIT,
                Err(e) => {
                    warn!("process {}: wait for its exit: {e}", process.pid);
                    UNKNOWN_EXIT
                }
            };
            Windows::forget_process(&record, &process);
            if let Err(e) = monitor_notify_by_pid(process.pid as i32, code) {
                warn!("process {}: report exit: {e}", process.pid);
            }
        });
    if let Err(e) = spawned {
        warn!("process {}: cannot watch for its exit: {e}", process.pid);
    }
}

/// Windows has no SIGPIPE: a write to a closed pipe fails with an error.
pub fn ignore_broken_pipes() {}

/// Starts the serving shim for `grouping` and returns its pipe's address once it serves it;
/// a new shim that finds the pipe served (the pod's shim) answers that address and exits. The
/// serving shim creates its named pipe itself: the shim library starts it and waits for it.
pub fn start_serving(opts: StartOpts, grouping: &str) -> Result<String, ShimError> {
    containerd_shim::spawn(opts, grouping, Vec::new()).map(|(_, address)| address)
}

/// Linux namespace paths mean nothing on Windows, where a HostProcess pod's sandbox never
/// names one: any path is a namespace of the pod's own.
pub fn is_host_network_namespace(_path: &str) -> bool {
    false
}

/// A named pipe goes away with its server: there is never a stale one to keep or remove.
pub fn is_served(_address: &str) -> bool {
    false
}

/// A shim's ttrpc endpoint is a named pipe, which goes away with its server: never a file
/// to remove.
pub fn is_socket(_path: &std::path::Path) -> bool {
    false
}

/// The shim's side of one process's stdio: the process holds containerd's pipes itself; the
/// shim only keeps what it needs to resize a pseudo console.
pub struct ProcessIo {
    console: Option<(Record, ProcessInfo)>,
    terminal: bool,
}

impl ProcessIo {
    /// Connects to containerd's named pipes for a new process.
    pub fn open(paths: &StdioPaths) -> io::Result<(ProcessIo, Stdio)> {
        let stdin = if paths.stdin.is_empty() {
            None
        } else {
            Some(open_pipe(&paths.stdin, OpenOptions::new().read(true))?)
        };
        let stdout = open_output(&paths.stdout)?;
        let stderr = if paths.terminal {
            None
        } else if !paths.stderr.is_empty() && paths.stderr == paths.stdout {
            match &stdout {
                Some(handle) => Some(handle.try_clone()?),
                None => None,
            }
        } else {
            open_output(&paths.stderr)?
        };
        let stdio = Stdio {
            stdin,
            stdout,
            stderr,
            terminal: paths.terminal,
            console_size: None,
        };
        let io = ProcessIo {
            console: None,
            terminal: paths.terminal,
        };
        Ok((io, stdio))
    }

    /// Remembers which process this stdio belongs to (its pseudo console lives in the engine).
    pub fn bind(&mut self, container: &EngineContainer, process: &ProcessInfo) {
        if self.terminal {
            self.console = Some((container.record().clone(), *process));
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let Some((record, process)) = &self.console else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process has no terminal to resize",
            ));
        };
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        Windows::resize_console(record, process, clamp(width), clamp(height))
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// The process reads containerd's stdin pipe directly: it sees EOF when containerd closes
    /// its end.
    pub fn close_stdin(&mut self) {}

    /// The shim copies nothing: the process (or the engine, for a pseudo console) writes to
    /// containerd's pipes itself, so there is no copy to wait for.
    pub fn output_copied(&self) -> Option<std::sync::Arc<crate::io::CopyDone>> {
        None
    }
}

fn open_pipe(path: &str, options: &OpenOptions) -> io::Result<OwnedHandle> {
    options
        .open(path)
        .map(OwnedHandle::from)
        .map_err(|e| io::Error::new(e.kind(), format!("open '{path}': {e}")))
}

fn open_output(path: &str) -> io::Result<Option<OwnedHandle>> {
    match output(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))? {
        Output::None => Ok(None),
        Output::Pipe(pipe) => open_pipe(pipe, OpenOptions::new().write(true)).map(Some),
        Output::File(file) => {
            let opened: File = OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .map_err(|e| io::Error::new(e.kind(), format!("open log '{file}': {e}")))?;
            Ok(Some(OwnedHandle::from(opened)))
        }
    }
}
