//! Starting the serving shim. The `start` action binds the serving shim's socket itself,
//! forks the serving shim on it and answers containerd at once: containerd's first call waits in
//! the socket's backlog while the serving shim comes up. The shim library's `spawn` instead
//! waited for a new shim to connect to containerd, start its threads and bind the socket before
//! the `start` action could answer (~2 ms on every container's start path, half of the shim
//! start phase); executing the binary again cost the serving shim its loading and start-up
//! (~0.5 ms of CPU per container) where a fork of the `start` action, single-threaded and
//! already loaded, costs one `fork`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

use containerd_shim::protos::ttrpc::Server;
use containerd_shim::synchronous::monitor::monitor_notify_by_pid;
use containerd_shim::{socket_address, Error as ShimError, Flags, StartOpts};
use log::{debug, error, warn};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The listening socket a serving shim was forked with by its `start` action.
pub struct Listener(OwnedFd);

impl Listener {
    /// A ttrpc server on the socket.
    pub fn into_server(self) -> Result<Server, ShimError> {
        Ok(Server::new().add_listener(self.0.into_raw_fd())?)
    }
}

/// Binds the serving shim's socket for `grouping`, forks the serving shim on it and returns the
/// socket's address at once; when a shim already serves that socket (a pod's container started
/// at the same time as another), its address.
pub fn start_serving(opts: StartOpts, grouping: &str) -> Result<String, ShimError> {
    let address = socket_address(&opts.address, &opts.namespace, grouping);
    let path = address.strip_prefix("unix://").unwrap_or(&address);
    let Some(listener) = bind(path, &address)? else {
        return Ok(address);
    };
    let listener = Listener(OwnedFd::from(listener));
    fork_serving(listener, opts, &address)?;
    Ok(address)
}

/// Forks the serving shim. The child serves and exits; it never returns here, so the `start`
/// action's answer is written by the parent alone. A fork copies only the calling thread: the
/// `start` action must have no other (the shim library starts none before `start_shim`), and
/// this is checked rather than assumed.
fn fork_serving(listener: Listener, opts: StartOpts, address: &str) -> Result<(), ShimError> {
    let threads = thread_count().map_err(|e| shim_io(e, "count", "the start action's threads"))?;
    if threads != 1 {
        return Err(ShimError::Other(format!(
            "cannot fork the serving shim: the start action runs {threads} threads, not one"
        )));
    }
    // containerd reads the `start` action's output until its end: the serving shim must not
    // hold it, nor the action's input or error output.
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| shim_io(e, "open", "/dev/null"))?;
    // SAFETY: fork(2) in a single-threaded process (checked above): the child may do anything
    // the parent could.
    match unsafe { libc::fork() } {
        -1 => Err(shim_io(
            io::Error::last_os_error(),
            "fork",
            "the serving shim",
        )),
        0 => {
            let code = match serve_in_child(listener, opts, address, null) {
                Ok(()) => 0,
                Err(e) => {
                    error!("serving shim: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        _ => Ok(()),
    }
}

fn serve_in_child(
    listener: Listener,
    opts: StartOpts,
    address: &str,
    null: File,
) -> Result<(), ShimError> {
    for stdio in 0..=2 {
        // SAFETY: dup2(2) of a descriptor this process owns onto a standard one.
        if unsafe { libc::dup2(null.as_raw_fd(), stdio) } < 0 {
            return Err(shim_io(io::Error::last_os_error(), "redirect", "stdio"));
        }
    }
    drop(null);
    if let Err(e) = name_action_serve() {
        debug!("command line left as the start action's: {e}");
    }
    let flags = Flags {
        debug: opts.debug,
        namespace: opts.namespace,
        id: opts.id,
        socket: address.to_string(),
        address: opts.address,
        publish_binary: opts.publish_binary,
        ..Flags::default()
    };
    crate::service::serve(listener, &flags, &opts.ttrpc_address)
}

/// Threads of this process, from /proc.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The serving shim keeps its `start` action's command line, which names the action last
/// (containerd's `... -id ID start`): that word becomes `serve` in place (same length), so
/// that `ps` and anyone looking for a node's serving shims tell them from `start` actions.
/// Written through /proc/self/mem at the kernel's record of where the arguments are.
fn name_action_serve() -> io::Result<()> {
    const START: &[u8] = b"\0start\0";
    const SERVE: &[u8] = b"serve\0";
    // One read: the kernel writes the whole line at once (a growing buffer took six reads).
    let mut buf = [0u8; 4096];
    let len = File::open("/proc/self/stat")?.read(&mut buf)?;
    let stat = String::from_utf8_lossy(&buf[..len]);
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat");
    // Fields after the command name: state is field 3, arg_start and arg_end fields 48 and 49.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .ok_or_else(invalid)?
        .1
        .split_whitespace()
        .collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(invalid)
    };
    let (arg_start, arg_end) = (field(48)?, field(49)?);
    let len = START.len() as u64;
    if arg_end < arg_start + len {
        return Err(invalid());
    }
    let memory = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let mut tail = [0u8; START.len()];
    memory.read_exact_at(&mut tail, arg_end - len)?;
    if tail != START {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the command line does not end in the start action",
        ));
    }
    memory.write_all_at(SERVE, arg_end - SERVE.len() as u64)
}

/// The listening socket at `path`, or `None` when another shim serves it already: a pod's
/// later containers join its shim instead of starting one that would find the socket taken
/// and exit. A socket file nobody serves is a dead shim's: it is replaced.
fn bind(path: &str, address: &str) -> Result<Option<UnixListener>, ShimError> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| shim_io(e, "create the socket directory", &dir.to_string_lossy()))?;
    }
    match UnixListener::bind(path) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if super::is_served(address) {
                return Ok(None);
            }
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path).map_err(|e| shim_io(e, "remove stale socket", path))?;
            }
            UnixListener::bind(path)
                .map(Some)
                .map_err(|e| shim_io(e, "bind", path))
        }
        Err(e) => Err(shim_io(e, "bind", path)),
    }
}

fn shim_io(e: io::Error, op: &str, what: &str) -> ShimError {
    ShimError::Other(format!("{op} '{what}': {e}"))
}

/// The serving shim is the subreaper of its containers' processes, as under the shim library.
pub fn become_subreaper() -> Result<(), ShimError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(shim_io(
            io::Error::last_os_error(),
            "become",
            "the subreaper",
        ));
    }
    Ok(())
}

/// The shim library's signal loop: every reaped child goes to its exit monitor; SIGTERM and
/// SIGINT are only logged (containerd ends a shim through `Shutdown`).
pub fn reap_children() -> Result<(), ShimError> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGCHLD])
        .map_err(|e| shim_io(e, "watch", "the shim's signals"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGCHLD {
                    reap();
                } else {
                    debug!("received {signal}");
                }
            }
        })
        .map_err(|e| shim_io(e, "start", "the signal thread"))?;
    Ok(())
}

fn reap() {
    loop {
        match waitpid(Some(Pid::from_raw(-1)), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) => {
                if let Err(e) = monitor_notify_by_pid(pid.as_raw(), status) {
                    error!("failed to send exit event {e}");
                }
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                debug!("child {pid} terminated({signal})");
                if let Err(e) = monitor_notify_by_pid(pid.as_raw(), 128 + signal as i32) {
                    error!("failed to send signal event {e}");
                }
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(e) => warn!("error occurred in signal handler: {e}"),
            Ok(_) => {}
        }
    }
}
