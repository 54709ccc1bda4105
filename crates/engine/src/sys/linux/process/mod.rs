//! Starting a process of a container: everything the child needs is prepared first
//! ([`prepare`]), then the child is forked and runs async-signal-safe system calls only
//! ([`fork`]), and the runtime reads its report back ([`report`]): the step that failed, or
//! nothing once the command runs or a held init waits for `start`.

mod fork;
mod prepare;
mod report;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::plan::rlimits::Rlimit;
use crate::sys::ProcessInfo;

use super::account::Account;
use super::Stdio;

pub(crate) use fork::close_all_but;
use prepare::{c, child_args, pipe, Opened, Prepared};
use report::{read_report, step_failed, Heard, ReportSlot, Step};

/// Everything the child needs, prepared before the fork.
pub struct Launch {
    pub executable: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// The job's cgroup v2 directory, joined at fork where the kernel can.
    pub cgroup_v2: Option<PathBuf>,
    /// The v1 hierarchies' `tasks` files, written by the child (see `cgroup::v1_tasks_files`).
    pub v1_tasks: Vec<PathBuf>,
    /// The directory with the job's `pids.max` and `pids.current`, when it has a pids limit:
    /// moving a process into a cgroup is not checked against the limit (only forks are), so
    /// the new process checks it itself.
    pub pids_dir: Option<PathBuf>,
    pub mount_ns: Option<PathBuf>,
    /// The pod's network namespace (§7, opt-in), joined with the mount namespace.
    pub network_ns: Option<PathBuf>,
    pub account: Account,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    /// Held until `start` opens this FIFO for reading.
    pub exec_fifo: Option<PathBuf>,
    pub new_session: bool,
}

/// A process's `/proc/<pid>/stat` line in one read: the kernel writes the whole line at once
/// into a buffer that holds it (reading to the end with a growing buffer took six reads).
fn proc_stat(pid: u32) -> Option<String> {
    use std::io::Read;
    let path = format!("/proc/{pid}/stat");
    let mut file = fs::File::open(&path).ok()?;
    let mut buf = [0u8; 2048];
    let len = file.read(&mut buf).ok()?;
    if len == buf.len() {
        // Never for a line of the kernel's fields; read it whole all the same.
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        file.read_to_string(&mut text).ok()?;
        return Some(text);
    }
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Reads a process's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = proc_stat(pid)?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

/// True while the process runs (a zombie has exited).
pub fn is_running(process: &ProcessInfo) -> bool {
    let Some(stat) = proc_stat(process.pid) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let state = fields.first().copied().unwrap_or("X");
    let started: Option<u64> = fields.get(19).and_then(|s| s.parse().ok());
    started == Some(process.start_time) && state != "Z" && state != "X"
}

/// Starts the process. Returns once it runs its command, or, when held, once it waits at the
/// exec FIFO; any failure before that comes back as an error naming the step.
pub fn spawn(launch: &Launch, stdio: Stdio) -> Result<ProcessInfo> {
    let prepared = Prepared::new(launch)?;
    let (report_r, report_w) = pipe()?;
    let opened = Opened::new(launch)?;
    let slot = ReportSlot::new();
    let args = child_args(
        launch,
        &prepared,
        &opened,
        &stdio,
        &slot,
        report_w.as_raw_fd(),
    );
    // SAFETY: the child only makes async-signal-safe system calls on memory prepared above,
    // which outlives it here, then execs or exits.
    let (pid, placed) = unsafe {
        fork::start_child_masked(
            opened.cgroup_v2.as_ref().map(|f| f.as_raw_fd()),
            args,
            prepared.v2_procs.as_ref(),
        )
    };
    if pid < 0 {
        return Err(fork_failed(placed));
    }
    // The child has its copies: the runtime keeps none of its ends.
    drop(report_w);
    drop(stdio);
    drop(opened);
    let pid = pid as u32;
    heard_from_child(launch, pid, report_r, &slot)?;
    let start_time = start_time(pid).unwrap_or(0);
    Ok(ProcessInfo { pid, start_time })
}

/// The error of a clone or fork that made no process: into a cgroup at its pids limit, the
/// kernel refuses with EAGAIN.
fn fork_failed(placed: bool) -> Error {
    let e = std::io::Error::last_os_error();
    if placed && e.raw_os_error() == Some(libc::EAGAIN) {
        return Error::sys(
            Step::PidsLimit.description(),
            std::io::Error::from_raw_os_error(libc::EAGAIN),
        );
    }
    Error::sys("fork", e)
}

/// Waits for the child's word: nothing (it runs its command), ready (a held init waits), or
/// the step that failed, in which case the child is reaped and the error returned.
fn heard_from_child(launch: &Launch, pid: u32, report: OwnedFd, slot: &ReportSlot) -> Result<()> {
    let mut reader = fs::File::from(report);
    match read_report(&mut reader)? {
        Heard::Ready => Ok(()),
        Heard::Failed { step, errno } => {
            reap(pid);
            Err(step_failed(launch, step, errno))
        }
        // No word on the pipe: the command runs, or the child failed and its report did not
        // get through (a memory limit too small for the pipe's page).
        Heard::Nothing => {
            if let Some((step, errno)) = slot.report() {
                reap(pid);
                return Err(step_failed(launch, step, errno));
            }
            if launch.exec_fifo.is_some() {
                // A held init says it is ready before it waits: it ended before.
                let status = reap(pid);
                return Err(Error::sys(
                    "start the container's init",
                    std::io::Error::other(format!(
                        "it {} before it was ready (is the memory limit too small to start a process?)",
                        describe_wait_status(status)
                    )),
                ));
            }
            Ok(())
        }
    }
}

/// How a process ended, from its wait status.
fn describe_wait_status(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

/// Waits for our own child; its wait status.
fn reap(pid: u32) -> libc::c_int {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    status
}

/// Makes the exec FIFO a held init waits on. It is the runtime's alone: init opens it before it
/// takes on its account.
pub fn make_exec_fifo(path: &Path) -> Result<()> {
    let cpath = c(path.as_os_str().as_bytes(), "the exec FIFO")?;
    // SAFETY: mkfifo with a valid C string.
    if unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) } < 0 {
        return Err(Error::io("mkfifo", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A held init keeps a descriptor of the exec FIFO until it execs the command. Whether `init`
/// still runs is the caller's question (a process that exited holds no descriptor, and no other
/// process opens this container's FIFO but `start`, for reading, in its own process).
pub fn holds_exec_fifo(init: &ProcessInfo, fifo: &Path) -> bool {
    let Ok(entries) = fs::read_dir(format!("/proc/{}/fd", init.pid)) else {
        return false;
    };
    entries.flatten().any(|entry| {
        fs::read_link(entry.path()).is_ok_and(|target| {
            target == fifo
                || target
                    .to_string_lossy()
                    .starts_with(&*fifo.to_string_lossy())
        })
    })
}

/// Releases a held init: a byte written into the FIFO, which init holds open for reading and
/// writing and reads when it is scheduled; then the FIFO is removed. The byte waits in the
/// FIFO, so `start` returns without waiting for init to run. No reader (ENXIO) is an init that
/// has exited, or one made by an earlier version, which waits in its open for writing until
/// `start` opens the FIFO for reading: [`release_by_reading`] tells the two apart.
pub fn release(path: &Path, init: &ProcessInfo) -> Result<()> {
    let cpath = c(path.as_os_str().as_bytes(), "the exec FIFO")?;
    // SAFETY: open with a valid C string; non-blocking: no reader is ENXIO, not a wait.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return release_by_reading(path, &cpath, init);
        }
        return Err(Error::io("open", path, e));
    }
    // SAFETY: fd is fresh and owned from here.
    let fifo = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: writing one byte from our own buffer. An empty FIFO takes it at once; EPIPE (a
    // runtime ignores SIGPIPE) is an init that exited since the open.
    if unsafe { libc::write(fifo.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
        return Err(Error::sys(
            "start",
            std::io::Error::other("the container's init exited before it was started"),
        ));
    }
    drop(fifo);
    let _ = fs::remove_file(path);
    Ok(())
}

/// [`release`] of an init made by an earlier version (it waits in its open for writing): open
/// the FIFO for reading, take init's byte, remove the FIFO. An init that has exited holds the
/// FIFO no more: that is an error.
fn release_by_reading(path: &Path, cpath: &std::ffi::CStr, init: &ProcessInfo) -> Result<()> {
    // SAFETY: open with a valid C string; non-blocking so a dead init cannot hang us.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::io("open", path, std::io::Error::last_os_error()));
    }
    // SAFETY: fd is fresh and owned from here.
    let fifo = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into our own buffer.
        let n = unsafe { libc::read(fifo.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        // Our open released init, which writes its byte a moment later: wait for it first,
        // and look at init's descriptors only when none came.
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid descriptor.
        if unsafe { libc::poll(&mut pfd, 1, 10) } > 0 && pfd.revents & libc::POLLIN != 0 {
            continue;
        }
        if !holds_exec_fifo(init, path) {
            // Init went on — an earlier start opened the FIFO and died, or our open released it
            // and it wrote its byte, exec'd and may have finished already — or it exited held.
            // SAFETY: one more non-blocking read of one byte into our own buffer.
            let n = unsafe { libc::read(fifo.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            let _ = fs::remove_file(path);
            return if n == 1 || is_running(init) {
                Ok(())
            } else {
                Err(Error::sys(
                    "start",
                    std::io::Error::other("the container's init exited before it was started"),
                ))
            };
        }
    }
    let _ = fs::remove_file(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    #[test]
    fn a_process_is_known_by_its_start_time_read_in_one_go() {
        let pid = std::process::id();
        let whole = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = whole[whole.rfind(')').unwrap() + 2..].split(' ').collect();
        let started: u64 = fields[19].parse().unwrap();
        assert_eq!(start_time(pid), Some(started));
        let me = ProcessInfo {
            pid,
            start_time: started,
        };
        assert!(is_running(&me));
        // The same pid with another start time is another process.
        assert!(!is_running(&ProcessInfo {
            pid,
            start_time: started + 1,
        }));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn the_exec_fifo_is_the_runtimes_alone() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("exec.fifo");
        make_exec_fifo(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "mode {mode:o}: group and others open nothing"
        );
    }

    /// An init made by an earlier version holds the FIFO as a path and waits in its open for
    /// writing until `start` opens it for reading, then writes its byte: `start` still
    /// releases it.
    #[test]
    fn start_releases_an_init_that_waits_in_its_open_as_earlier_versions_did() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("exec.fifo");
        make_exec_fifo(&fifo).unwrap();
        // The path descriptor an earlier init kept (it is what makes the init "held").
        let cpath = c(fifo.as_os_str().as_bytes(), "fifo").unwrap();
        // SAFETY: open with a valid C string.
        let path_fd = unsafe { libc::open(cpath.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        assert!(path_fd >= 0);
        // SAFETY: fresh descriptor, owned from here.
        let _path_fd = unsafe { OwnedFd::from_raw_fd(path_fd) };
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut w = fs::OpenOptions::new().write(true).open(&fifo)?;
                w.write_all(b"0")
            })
        };
        let me = ProcessInfo {
            pid: std::process::id(),
            start_time: start_time(std::process::id()).unwrap(),
        };
        let (done, released) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || done.send(release(&path, &me)));
        let released = released.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(released, Ok(Ok(()))),
            "start of an earlier version's init: {released:?}"
        );
        writer.join().unwrap().expect("the earlier init's write");
        assert!(!fifo.exists(), "the FIFO is removed once init is released");
    }

    /// A cgroup v2 directory of its own, killed and removed however the test ends.
    struct TestCgroup(PathBuf);

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = fs::write(self.0.join("cgroup.kill"), "1");
            for _ in 0..100 {
                if fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// A v2 cgroup of `test`'s own, for children whose account it changes: `None`, said by
    /// name, without root.
    fn cgroup_as_root(test: &str) -> Option<TestCgroup> {
        // SAFETY: geteuid has no effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped {test}: needs root (changes the account of its children)");
            return None;
        }
        let layout = super::super::cgroup::Layout::detect().expect("read the cgroup mounts");
        let unified = layout.unified().expect("a cgroup2 hierarchy");
        let cgroup = TestCgroup(unified.join(format!("hostprocess-{test}-{}", std::process::id())));
        fs::create_dir(&cgroup.0).expect("make the test's cgroup");
        Some(cgroup)
    }

    fn launch(cgroup: &Path) -> Launch {
        Launch {
            executable: PathBuf::from("/bin/true"),
            args: vec!["true".into()],
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            cgroup_v2: Some(cgroup.to_path_buf()),
            v1_tasks: Vec::new(),
            pids_dir: None,
            mount_ns: None,
            network_ns: None,
            account: Account {
                uid: 65534,
                gid: 65534,
                groups: Vec::new(),
                name: "nobody".into(),
                home: String::new(),
                inherit: false,
                ephemeral_claim: None,
            },
            rlimits: Vec::new(),
            no_new_privileges: true,
            exec_fifo: None,
            new_session: true,
        }
    }

    fn no_stdio() -> Stdio {
        Stdio {
            stdin: None,
            stdout: None,
            stderr: None,
            terminal: false,
            preserve_fds: 0,
        }
    }

    /// `start` leaves its byte in the FIFO and returns: it does not wait for init to be
    /// scheduled (here init is stopped until `start` has returned), and init then runs.
    #[test]
    fn start_returns_without_waiting_for_init_to_run() {
        let Some(cgroup) = cgroup_as_root("start_returns_without_waiting_for_init_to_run") else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("exec.fifo");
        make_exec_fifo(&fifo).unwrap();
        let mut held = launch(&cgroup.0);
        held.exec_fifo = Some(fifo.clone());
        let init = spawn(&held, no_stdio()).expect("spawn a held init");
        assert!(
            holds_exec_fifo(&init, &fifo),
            "init holds the FIFO until start"
        );

        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(init.pid as libc::pid_t, libc::SIGSTOP) };
        let (done, released) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || done.send(release(&path, &init)));
        let released = released.recv_timeout(Duration::from_secs(10));
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(init.pid as libc::pid_t, libc::SIGCONT) };
        assert!(
            matches!(released, Ok(Ok(()))),
            "start while init could not run: {released:?}"
        );
        let status = reap(init.pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "init ran its command once it could: wait status {status:#x}"
        );
        assert!(!fifo.exists(), "the FIFO is removed once init is released");
    }

    /// The shim starts processes while its other threads come and go. A child forked then
    /// must not wait for any of them: setting its account once hung on a lock a vanished
    /// thread held at the fork.
    #[test]
    fn spawning_beside_busy_threads_never_hangs() {
        let Some(cgroup) = cgroup_as_root("spawning_beside_busy_threads_never_hangs") else {
            return;
        };

        let stop = Arc::new(AtomicBool::new(false));
        let churn: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::spawn(|| {}).join().unwrap();
                    }
                })
            })
            .collect();

        let (done, finished) = mpsc::channel();
        let dir = cgroup.0.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                let info = spawn(&launch(&dir), no_stdio());
                let ok = info.is_ok();
                if let Ok(info) = info {
                    reap(info.pid);
                }
                if done.send(ok).is_err() {
                    return;
                }
            }
        });
        let mut started = 0;
        let outcome = loop {
            match finished.recv_timeout(Duration::from_secs(20)) {
                Ok(true) => started += 1,
                Ok(false) => break Err(format!("spawn {started} failed")),
                Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Err(format!("spawn {started} hung for 20 s"))
                }
            }
        };
        stop.store(true, Ordering::Relaxed);
        for thread in churn {
            let _ = thread.join();
        }
        outcome.unwrap();
        assert_eq!(started, 300);
    }
}
