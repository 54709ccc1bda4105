//! Standard I/O for a container process: the CLI's own descriptors, or a new pty whose
//! controller end goes to `--console-socket` (runc's protocol: one SCM_RIGHTS message).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hostprocess_engine::container::Stdio;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Duplicates of the CLI's own stdin, stdout and stderr.
pub fn inherited(preserve_fds: u32) -> Result<Stdio> {
    let dup = |fd: i32| -> Result<Option<OwnedFd>> {
        // SAFETY: 0, 1 and 2 are open for the life of the process (or the dup fails).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        Ok(borrowed.try_clone_to_owned().ok())
    };
    Ok(Stdio {
        stdin: dup(0)?,
        stdout: dup(1)?,
        stderr: dup(2)?,
        terminal: false,
        preserve_fds,
    })
}

/// A new pty: the process gets the follower end as its controlling terminal, the controller
/// end is sent to the console socket.
pub fn with_console_socket(socket: &Path, preserve_fds: u32) -> Result<Stdio> {
    let pty = nix::pty::openpty(None, None).context("open a pty")?;
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connect to console socket '{}'", socket.display()))?;
    let fds = [pty.master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("send the pty to '{}'", socket.display()))?;
    drop(pty.master);
    let follower = pty.slave;
    Ok(Stdio {
        stdin: Some(follower.try_clone().context("dup pty")?),
        stdout: Some(follower.try_clone().context("dup pty")?),
        stderr: Some(follower),
        terminal: true,
        preserve_fds,
    })
}

/// Stdio for a process that asks for a terminal (`terminal`) or not.
pub fn stdio(
    terminal: bool,
    console_socket: Option<&Path>,
    detach: bool,
    preserve_fds: u32,
) -> Result<Stdio> {
    match (terminal, console_socket) {
        (true, Some(socket)) => with_console_socket(socket, preserve_fds),
        (true, None) if detach => {
            bail!("cannot allocate a terminal for a detached process without --console-socket")
        }
        // In the foreground without a socket the process shares the CLI's own terminal.
        _ => inherited(preserve_fds),
    }
}
