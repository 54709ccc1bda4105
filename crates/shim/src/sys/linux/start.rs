//! Starting the serving shim. The `start` action binds the serving shim's socket itself and
//! hands it over to the shim it executes, then answers containerd at once: containerd's first
//! call waits in the socket's backlog while the serving shim comes up. The shim library's
//! `spawn` instead waited for the new shim to connect to containerd, start its threads and
//! bind the socket before the `start` action could answer (~2 ms on every container's start
//! path, half of the shim start phase).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim::protos::ttrpc::Server;
use containerd_shim::synchronous::monitor::monitor_notify_by_pid;
use containerd_shim::{socket_address, Error as ShimError, StartOpts};
use log::{debug, error, warn};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Names the descriptor of the socket the `start` action bound, in the serving shim's
/// environment (removed from it at once, so nothing the shim starts sees it).
const LISTENER_ENV: &str = "HOSTPROCESS_SHIM_LISTENER_FD";

/// The listening socket a serving shim was handed by its `start` action.
pub struct Listener(OwnedFd);

impl Listener {
    /// A ttrpc server on the socket.
    pub fn into_server(self) -> Result<Server, ShimError> {
        Ok(Server::new().add_listener(self.0.into_raw_fd())?)
    }
}

/// Binds the serving shim's socket for `grouping`, starts the serving shim on it and returns
/// the socket's address at once; when a shim already serves that socket (a pod's container
/// started at the same time as another), its address.
pub fn start_serving(opts: StartOpts, grouping: &str) -> Result<String, ShimError> {
    let address = socket_address(&opts.address, &opts.namespace, grouping);
    let path = address.strip_prefix("unix://").unwrap_or(&address);
    let Some(listener) = bind(path, &address)? else {
        return Ok(address);
    };
    let fd = OwnedFd::from(listener);
    set_cloexec(&fd, false).map_err(|e| shim_io(e, "hand over the socket", path))?;
    let exe = std::env::current_exe().map_err(|e| shim_io(e, "find", "the shim's binary"))?;
    let mut command = Command::new(&exe);
    command
        .args([
            "-namespace",
            &opts.namespace,
            "-id",
            &opts.id,
            "-address",
            &opts.address,
            "-socket",
            &address,
        ])
        .env(LISTENER_ENV, fd.as_raw_fd().to_string())
        // containerd reads the `start` action's output until its end: the serving shim must
        // not hold it.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if opts.debug {
        command.arg("-debug");
    }
    command
        .spawn()
        .map_err(|e| shim_io(e, "start the serving shim", &exe.to_string_lossy()))?;
    Ok(address)
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

/// In a serving shim started by `start_serving`: the socket it was handed, taken out of the
/// environment. Called before any thread exists.
pub fn inherited_listener() -> Option<Listener> {
    let fd = std::env::var(LISTENER_ENV).ok()?;
    std::env::remove_var(LISTENER_ENV);
    let fd: i32 = fd.parse().ok().filter(|fd| *fd > 2)?;
    // SAFETY: fstat only reads the descriptor's metadata into the buffer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } < 0 || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: the descriptor was handed to this process by its `start` action, and nothing
    // else in it owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not passed on to the processes the shim starts.
    set_cloexec(&fd, true).ok()?;
    Some(Listener(fd))
}

fn set_cloexec(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD on a descriptor this process owns.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flag) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
