//! Linux: stdio through containerd's FIFOs (or a pty for a terminal), exits learned from the
//! shim's SIGCHLD reaper, metrics in the format of the host's cgroup hierarchy.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use hostprocess_engine::sys::linux::Stdio;
use hostprocess_engine::{Container as EngineContainer, ProcessInfo};
use log::debug;

use crate::io::{output, CopyDone, Output, StdioPaths};
use crate::metrics::MetricsFormat;

mod start;
pub use start::{become_subreaper, reap_children, start_serving, Listener};

/// Where the shim keeps the engine's state (one directory per namespace below it).
pub const DEFAULT_STATE_ROOT: &str = "/run/containerd/hostprocess";

/// containerd's log FIFO for the serving shim, in its working directory (the bundle).
pub const LOG_FIFO: Option<&str> = Some("log");

/// containerd reports cgroup v1 metrics unless `/sys/fs/cgroup` itself is cgroup2 (a hybrid
/// host counts as v1), so the shim answers in the same format.
pub fn metrics_format() -> MetricsFormat {
    if hostprocess_engine::sys::linux::cgroup::is_unified_only() {
        MetricsFormat::CgroupV2
    } else {
        MetricsFormat::CgroupV1
    }
}

/// On Linux every process of a container is a child of the shim (or reparented to it, the
/// shim being a subreaper), so the SIGCHLD reaper of containerd-shim reports every exit with
/// its status: nothing to set up per process.
pub fn watch_exit(_container: &EngineContainer, _process: &ProcessInfo) {}

/// Makes a write to a pipe without a reader fail with EPIPE instead of raising SIGPIPE.
///
/// containerd-shim routes SIGPIPE to its signal thread, which logs every signal it gets. The
/// log is the `log` FIFO of the bundle the shim started in; containerd stops reading it when
/// that task's connection closes (its container deleted while the pod's shim serves the rest,
/// or containerd restarting). Each log line then raised SIGPIPE, whose log line raised the next
/// one: the signal thread spun at full CPU and no longer reaped exits. Ignoring SIGPIPE is what
/// Rust programs do anyway; the engine resets signal dispositions for the workload.
pub fn ignore_broken_pipes() {
    // SAFETY: signal(2) with SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// A ttrpc client on containerd's socket at `address` (a path, as in `TTRPC_ADDRESS`).
pub fn connect_ttrpc(address: &str) -> Result<containerd_shim::protos::ttrpc::Client, String> {
    use std::os::fd::IntoRawFd;
    let stream = std::os::unix::net::UnixStream::connect(address).map_err(|e| e.to_string())?;
    containerd_shim::protos::ttrpc::Client::new(stream.into_raw_fd()).map_err(|e| e.to_string())
}

/// True when `path` is the network namespace the shim itself is in: the host's, since the
/// shim runs beside containerd.
pub fn is_host_network_namespace(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(ns), Ok(own)) => (ns.dev(), ns.ino()) == (own.dev(), own.ino()),
        _ => false,
    }
}

/// True when a shim answers on `address` (`unix://<path>`): connecting succeeds.
pub fn is_served(address: &str) -> bool {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// A shim's ttrpc endpoint is a unix socket.
pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The shim's side of one process's stdio: copy threads and the descriptors it must hold.
pub struct ProcessIo {
    /// Copies containerd's stdin FIFO to the process (a pipe, or the pty).
    stdin: Option<Pump>,
    /// Copies the pty to containerd's stdout FIFO.
    output: Option<Pump>,
    /// The pty's controlling side, for resizes.
    console: Option<File>,
    /// Read ends of the output FIFOs: with them open, a process never gets EPIPE when
    /// containerd's reader goes away (e.g. `ctr run -d` exits).
    _readers: Vec<File>,
}

impl ProcessIo {
    /// Opens containerd's stdio for a new process and returns the engine's `Stdio` for it.
    pub fn open(paths: &StdioPaths) -> io::Result<(ProcessIo, Stdio)> {
        if paths.terminal {
            Self::open_terminal(paths)
        } else {
            Self::open_pipes(paths)
        }
    }

    fn open_pipes(paths: &StdioPaths) -> io::Result<(ProcessIo, Stdio)> {
        let mut readers = Vec::new();
        let mut stdio = Stdio::default();
        let mut stdin_pump = None;
        if !paths.stdin.is_empty() {
            let source = open_stdin(&paths.stdin)?;
            if is_fifo(&paths.stdin) {
                // A process reading a FIFO that has no writer yet would see EOF at once: the
                // process reads a pipe, which gets EOF only when containerd closes stdin.
                let (read, write) = pipe()?;
                stdin_pump = Some(Pump::start("stdin", source, File::from(write))?);
                stdio.stdin = Some(read);
            } else {
                stdio.stdin = Some(source.into());
            }
        }
        let stdout = open_output(&paths.stdout, &mut readers)?;
        let stderr = if !paths.stderr.is_empty() && paths.stderr == paths.stdout {
            match &stdout {
                Some(file) => Some(file.try_clone()?),
                None => None,
            }
        } else {
            open_output(&paths.stderr, &mut readers)?
        };
        stdio.stdout = stdout.map(OwnedFd::from);
        stdio.stderr = stderr.map(OwnedFd::from);
        let io = ProcessIo {
            stdin: stdin_pump,
            output: None,
            console: None,
            _readers: readers,
        };
        Ok((io, stdio))
    }

    fn open_terminal(paths: &StdioPaths) -> io::Result<(ProcessIo, Stdio)> {
        let (console, follower) = openpty()?;
        let mut readers = Vec::new();
        let stdin = if paths.stdin.is_empty() {
            None
        } else {
            let source = open_stdin(&paths.stdin)?;
            Some(Pump::start("stdin", source, console.try_clone()?)?)
        };
        let output = match open_output(&paths.stdout, &mut readers)? {
            Some(destination) => Some(Pump::start("console", console.try_clone()?, destination)?),
            None => None,
        };
        let stdio = Stdio {
            stdout: Some(follower.try_clone()?),
            stderr: Some(follower.try_clone()?),
            stdin: Some(follower),
            terminal: true,
            preserve_fds: 0,
        };
        let io = ProcessIo {
            stdin,
            output,
            console: Some(console),
            _readers: readers,
        };
        Ok((io, stdio))
    }

    /// Set once the terminal's output has been copied to containerd whole (the process and
    /// everything holding the terminal have ended); `None` without a terminal, whose process
    /// writes to containerd's FIFOs itself.
    pub fn output_copied(&self) -> Option<Arc<CopyDone>> {
        self.output.as_ref().map(|pump| pump.done.clone())
    }

    /// Nothing to remember on Linux: the shim holds the pty itself.
    pub fn bind(&mut self, _container: &EngineContainer, _process: &ProcessInfo) {}

    /// Sets the terminal's size; a process without a terminal has nothing to resize.
    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let Some(console) = &self.console else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process has no terminal to resize",
            ));
        };
        let size = libc::winsize {
            ws_row: clamp_u16(height),
            ws_col: clamp_u16(width),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// containerd closed stdin: the process reads EOF once what was written is consumed.
    pub fn close_stdin(&mut self) {
        if let Some(mut pump) = self.stdin.take() {
            pump.stop();
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        for pump in [self.stdin.as_mut(), self.output.as_mut()]
            .into_iter()
            .flatten()
        {
            pump.stop();
        }
    }
}

fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn with_path(e: io::Error, op: &str, path: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{op} '{path}': {e}"))
}

fn is_fifo(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Opens the stdin FIFO without waiting for containerd's writer (the copy thread waits).
fn open_stdin(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| with_path(e, "open stdin", path))
}

/// Opens an output destination; for a FIFO, also keeps a read end (see `ProcessIo`).
fn open_output(path: &str, readers: &mut Vec<File>) -> io::Result<Option<File>> {
    let kind = output(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let file = match kind {
        Output::None => return Ok(None),
        Output::File(file) => {
            if let Some(dir) = Path::new(file).parent() {
                std::fs::create_dir_all(dir).map_err(|e| with_path(e, "create log dir", file))?;
            }
            OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(file)
                .map_err(|e| with_path(e, "open log", file))?
        }
        Output::Pipe(pipe) if is_fifo(pipe) => {
            // The read end first: then opening the write end cannot block.
            let reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(pipe)
                .map_err(|e| with_path(e, "open", pipe))?;
            let writer = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(pipe)
                .map_err(|e| with_path(e, "open", pipe))?;
            readers.push(reader);
            writer
        }
        Output::Pipe(file) => OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(file)
            .map_err(|e| with_path(e, "open", file))?,
    };
    Ok(Some(file))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A new pty: the controlling side (kept by the shim) and the follower (the process's stdio).
fn openpty() -> io::Result<(File, OwnedFd)> {
    let (mut controller, mut follower) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the name, termios and size pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned from here.
    let (controller, follower) = unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(follower),
        )
    };
    for fd in [&controller, &follower] {
        // SAFETY: F_SETFD on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((File::from(controller), follower))
}

/// A thread copying `source` to `destination` until the source ends or `stop` is called; the
/// destination is closed when it finishes (so a pipe's reader sees EOF). A stopped pump still
/// copies what the source holds already: a terminal's last output is not lost when the process
/// exits just before the shim stops copying, and what containerd wrote to a stdin FIFO before
/// it closed its end and called `CloseIO` still reaches the process (the end of the archive
/// `kubectl cp` sends to `tar xf -`).
struct Pump {
    stop: Option<OwnedFd>,
    done: Arc<CopyDone>,
}

impl Pump {
    fn start(name: &'static str, source: File, mut destination: File) -> io::Result<Pump> {
        let (stop_read, stop_write) = pipe()?;
        let done = Arc::new(CopyDone::default());
        let finished = done.clone();
        std::thread::Builder::new()
            .name(format!("io-{name}"))
            .spawn(move || {
                if let Err(e) = copy(&source, &stop_read, &mut destination) {
                    debug!("{name} copy ended: {e}");
                }
                drop(destination);
                finished.finish();
            })?;
        Ok(Pump {
            stop: Some(stop_write),
            done,
        })
    }

    /// Closing the stop pipe's write end wakes the thread's poll.
    fn stop(&mut self) {
        self.stop.take();
    }
}

fn copy(source: &File, stop: &OwnedFd, destination: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut source = source;
    let mut stopped = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: source.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Once stopped, the pump only takes what the source holds already.
        let (count, timeout) = if stopped { (1, 0) } else { (2, -1) };
        // SAFETY: poll(2) on `count` valid pollfd entries.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), count, timeout) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if stopped && ready == 0 {
            return Ok(());
        }
        if fds[1].revents != 0 {
            stopped = true;
        }
        if fds[0].revents & libc::POLLNVAL != 0 {
            return Ok(());
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            continue;
        }
        match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => destination.write_all(&buf[..n])?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // EIO: every holder of the pty's follower side has closed it.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::Read;
    use std::path::PathBuf;
    use std::time::Duration;

    /// The source holds `data` and stays open; the copy's stop was signalled before it ran.
    fn copy_stopped_early(data: &[u8]) -> String {
        let (source, source_writer) = pipe().unwrap();
        let mut source_writer = File::from(source_writer);
        source_writer.write_all(data).unwrap();
        let (stop, stop_writer) = pipe().unwrap();
        drop(stop_writer);
        let (copied, destination) = pipe().unwrap();
        let mut destination = File::from(destination);
        copy(&File::from(source), &stop, &mut destination).unwrap();
        drop(destination);
        let mut out = String::new();
        File::from(copied).read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_terminals_last_output_is_copied_even_when_the_copy_is_stopped_first() {
        assert_eq!(copy_stopped_early(b"last words\r\n"), "last words\r\n");
    }

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn read_with_timeout(mut file: File, timeout: Duration) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx.recv_timeout(timeout).expect("reader finished in time")
    }

    /// A stdin FIFO as containerd makes one, opened by the shim: the FIFO's directory and path,
    /// the shim's side and the process's stdin.
    fn open_stdin_fifo() -> (tempfile::TempDir, PathBuf, ProcessIo, File) {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdin");
        mkfifo(&fifo);
        let paths = StdioPaths {
            stdin: fifo.to_string_lossy().into_owned(),
            ..StdioPaths::default()
        };
        let (io, stdio) = ProcessIo::open(&paths).unwrap();
        (dir, fifo, io, File::from(stdio.stdin.unwrap()))
    }

    #[test]
    fn stdin_fifo_reaches_the_process_and_eof_follows_the_writer_closing() {
        let (_dir, fifo, _io, process_stdin) = open_stdin_fifo();
        let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        assert_eq!(
            read_with_timeout(process_stdin, Duration::from_secs(5)),
            "hello\n"
        );
    }

    #[test]
    fn close_stdin_gives_the_process_eof_even_without_a_writer() {
        let (_dir, _fifo, mut io, process_stdin) = open_stdin_fifo();
        io.close_stdin();
        assert_eq!(read_with_timeout(process_stdin, Duration::from_secs(5)), "");
    }

    #[test]
    fn close_stdin_still_delivers_what_the_writer_wrote_before_closing() {
        let (_dir, fifo, mut io, process_stdin) = open_stdin_fifo();
        // More than the process's pipe, the copy buffer and nothing else can hold: once the
        // writer is done, part of it waits in the FIFO while the copy is blocked on the pipe.
        let data: Vec<u8> = (0..128 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (fifo, data) = (fifo.clone(), data.clone());
            std::thread::spawn(move || {
                let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
                writer.write_all(&data).unwrap();
            })
        };
        writer.join().unwrap();
        // containerd closed its end of the FIFO, then calls CloseIO.
        io.close_stdin();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut read = Vec::new();
            let _ = (&process_stdin).read_to_end(&mut read);
            let _ = tx.send(read);
        });
        let read = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the process got EOF");
        assert_eq!(read.len(), data.len());
        assert!(read == data, "the bytes differ");
    }

    /// A `stdout` FIFO in `dir` with a client reading it, as containerd's would.
    fn output_fifo(dir: &Path) -> (PathBuf, File) {
        let fifo = dir.join("stdout");
        mkfifo(&fifo);
        let client = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        (fifo, client)
    }

    #[test]
    fn output_fifo_gets_eof_when_the_process_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (fifo, client) = output_fifo(dir.path());
        let paths = StdioPaths {
            stdout: fifo.to_string_lossy().into_owned(),
            stderr: fifo.to_string_lossy().into_owned(),
            ..StdioPaths::default()
        };
        let (_io, stdio) = ProcessIo::open(&paths).unwrap();
        let mut out = File::from(stdio.stdout.unwrap());
        out.write_all(b"out\n").unwrap();
        drop(out);
        drop(stdio.stderr);
        // SAFETY: clear O_NONBLOCK so the client blocks until EOF.
        unsafe { libc::fcntl(client.as_raw_fd(), libc::F_SETFL, 0) };
        assert_eq!(read_with_timeout(client, Duration::from_secs(5)), "out\n");
    }

    #[test]
    fn a_terminal_copies_output_and_resizes() {
        let dir = tempfile::tempdir().unwrap();
        let (fifo, client) = output_fifo(dir.path());
        let paths = StdioPaths {
            stdout: fifo.to_string_lossy().into_owned(),
            terminal: true,
            ..StdioPaths::default()
        };
        let (io, stdio) = ProcessIo::open(&paths).unwrap();
        assert!(stdio.terminal);
        io.resize(100, 40).unwrap();
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let follower = stdio.stdin.unwrap();
        // SAFETY: TIOCGWINSZ writes a winsize.
        unsafe { libc::ioctl(follower.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!((size.ws_col, size.ws_row), (100, 40));
        let mut out = File::from(stdio.stdout.unwrap());
        out.write_all(b"tty\n").unwrap();
        drop(out);
        drop(stdio.stderr);
        drop(follower);
        unsafe { libc::fcntl(client.as_raw_fd(), libc::F_SETFL, 0) };
        // The pty turns "\n" into "\r\n".
        assert_eq!(read_with_timeout(client, Duration::from_secs(5)), "tty\r\n");
    }
}
