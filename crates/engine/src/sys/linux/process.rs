//! Starting a process of a container: fork, and in the child (async-signal-safe system calls
//! only, on data prepared before the fork) join the job's cgroups first, then the view, stdio,
//! limits, the account, the working directory, and finally exec — right away, or once `start`
//! opens the exec FIFO.

use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::sys::ProcessInfo;

use super::account::Account;
use super::Stdio;

/// Steps of the child, reported back with errno when one fails.
const STEPS: &[&str] = &[
    "join the job's cgroup",
    "start a new session",
    "join the container's mount namespace",
    "set up stdio",
    "set the controlling terminal",
    "lower a resource limit",
    "open the exec FIFO",
    "set supplementary groups",
    "set gid",
    "set uid",
    "set no_new_privs",
    "change to the working directory",
    "execute the command",
    "open /dev/null",
    "join the job: it is at its pids limit",
    "join the pod's network namespace",
];
const STEP_CGROUP: u32 = 0;
const STEP_SETSID: u32 = 1;
const STEP_SETNS: u32 = 2;
const STEP_STDIO: u32 = 3;
const STEP_TTY: u32 = 4;
const STEP_RLIMIT: u32 = 5;
const STEP_FIFO: u32 = 6;
const STEP_GROUPS: u32 = 7;
const STEP_GID: u32 = 8;
const STEP_UID: u32 = 9;
const STEP_NNP: u32 = 10;
const STEP_CHDIR: u32 = 11;
const STEP_EXEC: u32 = 12;
const STEP_DEVNULL: u32 = 13;
const STEP_PIDS: u32 = 14;
const STEP_NETNS: u32 = 15;
/// Sent by a held init once everything but exec is done.
const READY: u8 = b'R';

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
    pub rlimits: Vec<(String, u64, u64)>,
    pub no_new_privileges: bool,
    /// Held until `start` opens this FIFO for reading.
    pub exec_fifo: Option<PathBuf>,
    pub new_session: bool,
}

fn c(s: impl AsRef<[u8]>, what: &str) -> Result<CString> {
    CString::new(s.as_ref()).map_err(|_| {
        Error::sys(
            format!("prepare {what}"),
            std::io::Error::new(ErrorKind::InvalidInput, "contains a NUL byte"),
        )
    })
}

/// The type of setrlimit's first argument differs between C libraries.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Only limits that lower the current ones apply: raising needs a privilege this runtime
/// should not rely on.
fn lowered_rlimits(rlimits: &[(String, u64, u64)]) -> Result<Vec<(Resource, libc::rlimit)>> {
    let mut out = Vec::new();
    for (name, soft, hard) in rlimits {
        let resource = rlimit_resource(name)
            .ok_or_else(|| Error::Spec(format!("process.rlimits: unknown limit {name:?}")))?;
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        unsafe { libc::getrlimit(resource, &mut current) };
        let hard = (*hard).min(current.rlim_max);
        let soft = (*soft).min(hard);
        if hard < current.rlim_max || soft < current.rlim_cur {
            out.push((
                resource,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                },
            ));
        } else if (soft, hard) != (current.rlim_cur, current.rlim_max) {
            log::debug!("{name}: not raised above the runtime's own limit");
        }
    }
    Ok(out)
}

/// Reads a process's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

/// True while the process runs (a zombie has exited).
pub fn is_running(process: &ProcessInfo) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", process.pid)) else {
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

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::sys("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts the process. Returns once it runs its command, or, when held, once it waits at the
/// exec FIFO; any failure before that comes back as an error naming the step.
pub fn spawn(launch: &Launch, stdio: Stdio) -> Result<ProcessInfo> {
    let exe = c(
        launch.executable.as_os_str().as_bytes(),
        "the executable path",
    )?;
    let args: Vec<CString> = launch
        .args
        .iter()
        .map(|a| c(a, "an argument"))
        .collect::<Result<_>>()?;
    let env: Vec<CString> = launch
        .env
        .iter()
        .map(|e| c(e, "an environment variable"))
        .collect::<Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = c(launch.cwd.as_os_str().as_bytes(), "the working directory")?;
    let v1_tasks: Vec<CString> = launch
        .v1_tasks
        .iter()
        .map(|p| c(p.as_os_str().as_bytes(), "a cgroup path"))
        .collect::<Result<_>>()?;
    let pids_files = match &launch.pids_dir {
        Some(dir) => Some((
            c(dir.join("pids.max").as_os_str().as_bytes(), "a cgroup path")?,
            c(
                dir.join("pids.current").as_os_str().as_bytes(),
                "a cgroup path",
            )?,
        )),
        None => None,
    };
    let ns = match &launch.mount_ns {
        Some(pin) => Some(fs::File::open(pin).map_err(|e| Error::io("open", pin, e))?),
        None => None,
    };
    let netns = match &launch.network_ns {
        Some(path) => Some(open_network_namespace(path)?),
        None => None,
    };
    let fifo = match &launch.exec_fifo {
        Some(p) => Some(c(p.as_os_str().as_bytes(), "the exec FIFO")?),
        None => None,
    };
    let dev_null = c("/dev/null", "/dev/null")?;
    let proc_fd_prefix = b"/proc/self/fd/";
    let rlimits = lowered_rlimits(&launch.rlimits)?;
    let groups: Vec<libc::gid_t> = launch.account.groups.clone();
    let change_ids = !launch.account.inherit;
    let (uid, gid) = (launch.account.uid, launch.account.gid);
    let stdio_fds: [RawFd; 3] = [
        stdio.stdin.as_ref().map_or(-1, |f| f.as_raw_fd()),
        stdio.stdout.as_ref().map_or(-1, |f| f.as_raw_fd()),
        stdio.stderr.as_ref().map_or(-1, |f| f.as_raw_fd()),
    ];
    let keep = 3 + stdio.preserve_fds as RawFd;
    let (report_r, report_w) = pipe()?;
    let report = report_w.as_raw_fd();

    // The v2 cgroup is joined at fork (clone3 CLONE_INTO_CGROUP): no cgroup.procs write, which
    // is both the costly part of joining (it can wait for an RCU grace period) and unchecked
    // against pids.max. Older kernels fork, then write.
    let v2 = match &launch.cgroup_v2 {
        Some(dir) => Some(
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(dir)
                .map_err(|e| Error::io("open", dir, e))?,
        ),
        None => None,
    };
    let v2_procs = match &launch.cgroup_v2 {
        Some(dir) => Some(c(
            dir.join("cgroup.procs").as_os_str().as_bytes(),
            "a cgroup path",
        )?),
        None => None,
    };
    let slot = ReportSlot::new();
    let args = ChildArgs {
        slot: Some(&slot),
        v2_procs: None,
        v1_tasks: &v1_tasks,
        pids_files: pids_files.as_ref(),
        new_session: launch.new_session,
        ns: ns.as_ref().map(|f| f.as_raw_fd()),
        netns: netns.as_ref().map(|f| f.as_raw_fd()),
        stdio: stdio_fds,
        terminal: stdio.terminal,
        dev_null: &dev_null,
        rlimits: &rlimits,
        fifo: fifo.as_ref(),
        proc_fd_prefix,
        change_ids,
        groups: &groups,
        uid,
        gid,
        no_new_privileges: launch.no_new_privileges,
        cwd: &cwd,
        keep,
        exe: &exe,
        argv: &argv,
        envp: &envp,
        report,
    };
    // No signal handler of the runtime may run in the child before it has reset them all.
    // SAFETY: sigset operations on our own sets.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child only makes async-signal-safe system calls on memory prepared above,
    // then execs or exits.
    let started =
        unsafe { start_child(v2.as_ref().map(|f| f.as_raw_fd()), args, v2_procs.as_ref()) };
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    let (pid, placed) = started;
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        if placed && e.raw_os_error() == Some(libc::EAGAIN) {
            return Err(Error::sys(
                STEPS[STEP_PIDS as usize],
                std::io::Error::from_raw_os_error(libc::EAGAIN),
            ));
        }
        return Err(Error::sys("fork", e));
    }
    drop(report_w);
    drop(stdio);
    drop(ns);
    drop(netns);
    let pid = pid as u32;
    let mut reader = fs::File::from(report_r);
    let mut first = [0u8; 1];
    let n = loop {
        match reader.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::sys("read from the new process", e)),
        }
    };
    if n == 1 && first[0] != READY {
        let mut rest = [0u8; 8];
        let _ = reader.read_exact(&mut rest[1..]);
        rest[0] = first[0];
        let step = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let errno = i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]);
        reap(pid);
        return Err(step_failed(launch, step, errno));
    }
    if n == 0 {
        // No word on the pipe: the command runs, or the child failed and its report did not
        // get through (a memory limit too small for the pipe's page).
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
    }
    let start_time = start_time(pid).unwrap_or(0);
    Ok(ProcessInfo { pid, start_time })
}

/// `ioctl_ns(2)`: the type of namespace a descriptor refers to.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens the pod's network namespace for the child to join, refusing any other file: a path
/// that no longer holds a namespace (the pod was removed) must not start the process on the
/// host's network.
fn open_network_namespace(path: &Path) -> Result<fs::File> {
    let what = "open the pod's network namespace";
    let file = fs::File::open(path).map_err(|e| Error::io(what, path, e))?;
    // SAFETY: an ioctl without argument on a descriptor we own.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return Err(Error::sys(
            format!("{what} '{}'", path.display()),
            std::io::Error::other("it is not a network namespace"),
        ));
    }
    Ok(file)
}

/// How a process ended, from its wait status.
fn describe_wait_status(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

/// The error for a step of the child that failed with `errno`.
fn step_failed(launch: &Launch, step: u32, errno: i32) -> Error {
    let what = STEPS.get(step as usize).copied().unwrap_or("start");
    let detail = match step {
        STEP_CHDIR => format!("{what} '{}'", launch.cwd.display()),
        STEP_NETNS => format!(
            "{what} '{}'",
            launch
                .network_ns
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
        ),
        STEP_EXEC => format!("{what} '{}'", launch.executable.display()),
        STEP_CGROUP => format!(
            "{what} ({})",
            launch
                .v1_tasks
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => what.to_string(),
    };
    Error::sys(detail, std::io::Error::from_raw_os_error(errno))
}

/// Waits for our own child; its wait status.
fn reap(pid: u32) -> libc::c_int {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    status
}

/// Where a child that shares the runtime's memory also leaves its report: writing to the
/// pipe needs a page that the job's memory limit may refuse (ENOMEM), and the report was lost;
/// a store to memory the runtime already has mapped needs nothing.
struct ReportSlot {
    step: AtomicU32,
    errno: AtomicI32,
}

impl ReportSlot {
    const NONE: u32 = u32::MAX;

    fn new() -> ReportSlot {
        ReportSlot {
            step: AtomicU32::new(Self::NONE),
            errno: AtomicI32::new(0),
        }
    }

    fn report(&self) -> Option<(u32, i32)> {
        match self.step.load(Ordering::Acquire) {
            Self::NONE => None,
            step => Some((step, self.errno.load(Ordering::Relaxed))),
        }
    }
}

#[derive(Clone, Copy)]
struct ChildArgs<'a> {
    /// Set while the child shares the runtime's memory (never in a forked child: its store
    /// would be a copy-on-write fault the memory limit may refuse).
    slot: Option<&'a ReportSlot>,
    /// The v2 cgroup's `cgroup.procs`, when the fork did not place the child there already.
    v2_procs: Option<&'a CString>,
    v1_tasks: &'a [CString],
    pids_files: Option<&'a (CString, CString)>,
    new_session: bool,
    ns: Option<RawFd>,
    netns: Option<RawFd>,
    stdio: [RawFd; 3],
    terminal: bool,
    dev_null: &'a CString,
    rlimits: &'a [(Resource, libc::rlimit)],
    fifo: Option<&'a CString>,
    proc_fd_prefix: &'a [u8],
    change_ids: bool,
    groups: &'a [libc::gid_t],
    uid: u32,
    gid: u32,
    no_new_privileges: bool,
    cwd: &'a CString,
    keep: RawFd,
    exe: &'a CString,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    report: RawFd,
}

/// clone3(2)'s argument block (Linux 5.7 for the cgroup field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The new process's own stack while it shares the runtime's memory (it only makes system
/// calls; 64 KiB is far more than it uses).
#[cfg(target_arch = "x86_64")]
const CHILD_STACK_WORDS: usize = 64 * 1024 / 16;

/// Starts the child, into the cgroup `v2` when given and the kernel supports it; the flag says
/// whether the child was placed there.
///
/// A process that is not held is started like `posix_spawn` does: it shares the runtime's
/// memory on a stack of its own while the calling thread waits for its exec (clone3 with
/// CLONE_VM | CLONE_VFORK). No page table is copied, and the runtime takes no copy-on-write
/// fault on every page it touches afterwards. A held init waits for `start` before its exec,
/// so it is forked; so is every process on architectures other than x86_64. Kernels without
/// clone3 (or its cgroup field) get a plain fork, and the child writes itself into the v2
/// cgroup.
unsafe fn start_child(
    v2: Option<RawFd>,
    args: ChildArgs<'_>,
    v2_procs: Option<&CString>,
) -> (libc::pid_t, bool) {
    let cloned = if args.fifo.is_none() {
        clone3_sharing_memory(v2, &args)
    } else {
        clone3_forking(v2)
    };
    let (pid, placed) = match cloned {
        Some(pid) => (pid, v2.is_some()),
        None => (libc::fork(), false),
    };
    if pid == 0 {
        child(ChildArgs {
            v2_procs: if placed { None } else { v2_procs },
            slot: None,
            ..args
        });
    }
    (pid, placed)
}

/// clone3's errors on a kernel without clone3 or its cgroup field: the caller forks instead.
fn lacks_clone3(errno: i32) -> bool {
    matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL)
}

fn clone_args(v2: Option<RawFd>, flags: u64) -> CloneArgs {
    CloneArgs {
        flags: flags | if v2.is_some() { CLONE_INTO_CGROUP } else { 0 },
        exit_signal: libc::SIGCHLD as u64,
        cgroup: v2.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    }
}

/// A fork into `v2` (the child returns here with 0); `None` without a cgroup to join at fork.
unsafe fn clone3_forking(v2: Option<RawFd>) -> Option<libc::pid_t> {
    v2?;
    let args = clone_args(v2, 0);
    let ret = libc::syscall(
        libc::SYS_clone3,
        &args as *const CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    if ret < 0 && lacks_clone3(*libc::__errno_location()) {
        return None;
    }
    Some(ret as libc::pid_t)
}

/// A child sharing this memory: it runs `child(args)` and never returns here.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_sharing_memory(v2: Option<RawFd>, args: &ChildArgs<'_>) -> Option<libc::pid_t> {
    // Uninitialised: zeroing it would touch (fault in) every page; the child uses the top few.
    let mut stack: Vec<u128> = Vec::with_capacity(CHILD_STACK_WORDS);
    let clone = CloneArgs {
        stack: stack.as_mut_ptr() as u64,
        stack_size: (stack.capacity() * std::mem::size_of::<u128>()) as u64,
        ..clone_args(v2, (libc::CLONE_VM | libc::CLONE_VFORK) as u64)
    };
    let ret: libc::c_long;
    // The child returns from the system call on its own (16-byte aligned) stack: it calls
    // `child_entry(args)` there, which execs or exits and never returns. The parent resumes
    // once the child has exec'd or exited.
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 => ret,
        in("rdi") &clone as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") child_entry as unsafe extern "C" fn(*const ChildArgs<'static>) -> !,
        in("r13") args as *const ChildArgs<'_>,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    drop(stack);
    // The kernel's convention (-errno) to the C library's (-1 and errno).
    if ret < 0 {
        let errno = -ret as i32;
        if lacks_clone3(errno) {
            return None;
        }
        *libc::__errno_location() = errno;
        return Some(-1);
    }
    Some(ret as libc::pid_t)
}

/// Other architectures fork (the entry above is written for x86_64).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_sharing_memory(v2: Option<RawFd>, _: &ChildArgs<'_>) -> Option<libc::pid_t> {
    clone3_forking(v2)
}

/// Where a child that shares the runtime's memory starts.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn child_entry(args: *const ChildArgs<'static>) -> ! {
    child(*args)
}

/// Reads a decimal number from a small file (`None` for "max" or any error). Async-signal-safe.
unsafe fn read_number(path: &CString) -> Option<u64> {
    let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 32];
    let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
    libc::close(fd);
    if n <= 0 {
        return None;
    }
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in &buf[..n as usize] {
        match b {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            _ => break,
        }
    }
    (digits > 0).then_some(value)
}

unsafe fn fail(report: RawFd, slot: Option<&ReportSlot>, step: u32) -> ! {
    let errno = *libc::__errno_location();
    if let Some(slot) = slot {
        slot.errno.store(errno, Ordering::Relaxed);
        slot.step.store(step, Ordering::Release);
    }
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // A zero first byte would read as "no step": steps are small, so the first byte is the step.
    libc::write(report, msg.as_ptr().cast(), msg.len());
    libc::_exit(127);
}

/// The child side of [`spawn`]. Async-signal-safe system calls only, and none whose C library
/// wrapper coordinates threads (see the account step).
unsafe fn child(a: ChildArgs<'_>) -> ! {
    // The runtime may ignore or handle signals (Rust ignores SIGPIPE); the workload starts
    // clean. Every signal is blocked until the handlers are reset: a runtime's handler must
    // not run here, least of all on memory this process may share with the runtime.
    // The raw system call reaches every signal, also the real-time ones the C library keeps
    // for itself; a kernel sigaction with all fields zero is SIG_DFL.
    let default_action = [0u64; 4];
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    // 1. Into the job before anything else can run.
    for file in a.v2_procs.into_iter().chain(a.v1_tasks) {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(a.report, a.slot, STEP_CGROUP);
        }
        libc::close(fd);
    }
    if let Some((max, current)) = a.pids_files {
        let limit = read_number(max);
        if limit.is_some() && read_number(current) > limit {
            *libc::__errno_location() = libc::EAGAIN;
            fail(a.report, a.slot, STEP_PIDS);
        }
    }
    if a.new_session && libc::setsid() < 0 {
        fail(a.report, a.slot, STEP_SETSID);
    }
    if let Some(ns) = a.ns {
        if libc::setns(ns, libc::CLONE_NEWNS) < 0 {
            fail(a.report, a.slot, STEP_SETNS);
        }
    }
    if let Some(netns) = a.netns {
        if libc::setns(netns, libc::CLONE_NEWNET) < 0 {
            fail(a.report, a.slot, STEP_NETNS);
        }
    }
    // 2. stdio: move the sources above 2 first so none is overwritten before it is used.
    let mut high = [-1; 3];
    for (i, fd) in a.stdio.iter().enumerate() {
        let source = if *fd >= 0 {
            *fd
        } else {
            let null = libc::open(a.dev_null.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if null < 0 {
                fail(a.report, a.slot, STEP_DEVNULL);
            }
            null
        };
        high[i] = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, a.keep.max(10));
        if high[i] < 0 {
            fail(a.report, a.slot, STEP_STDIO);
        }
    }
    for (i, fd) in high.iter().enumerate() {
        if libc::dup2(*fd, i as RawFd) < 0 {
            fail(a.report, a.slot, STEP_STDIO);
        }
    }
    // Only stdio, preserved descriptors and the report pipe stay open from here on: a held
    // init must not keep the runtime's locks or files while it waits.
    let report = libc::fcntl(a.report, libc::F_DUPFD_CLOEXEC, a.keep);
    if report < 0 {
        fail(a.report, a.slot, STEP_STDIO);
    }
    close_all_but(a.keep, report);
    if a.terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
        fail(report, a.slot, STEP_TTY);
    }
    for (resource, limit) in a.rlimits {
        if libc::setrlimit(*resource, limit) < 0 {
            fail(report, a.slot, STEP_RLIMIT);
        }
    }
    let fifo = match a.fifo {
        Some(path) => {
            let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                fail(report, a.slot, STEP_FIFO);
            }
            fd
        }
        None => -1,
    };
    // 3. The account: groups, then gid, then uid; a non-root uid drops every capability.
    // Raw system calls: the C library's wrappers change the credentials of every thread it
    // knows of, and after a raw clone3 it still knows the runtime's threads and may wait
    // forever on a lock one of them held at the fork. This process has one thread.
    if a.change_ids {
        if libc::syscall(libc::SYS_setgroups, a.groups.len(), a.groups.as_ptr()) < 0 {
            fail(report, a.slot, STEP_GROUPS);
        }
        if libc::syscall(libc::SYS_setresgid, a.gid, a.gid, a.gid) < 0 {
            fail(report, a.slot, STEP_GID);
        }
        if libc::syscall(libc::SYS_setresuid, a.uid, a.uid, a.uid) < 0 {
            fail(report, a.slot, STEP_UID);
        }
    }
    if a.no_new_privileges && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        fail(report, a.slot, STEP_NNP);
    }
    if libc::chdir(a.cwd.as_ptr()) < 0 {
        fail(report, a.slot, STEP_CHDIR);
    }
    // 4. No runtime descriptor reaches the workload: all but stdio and preserved fds close.
    for fd in 3..a.keep {
        libc::fcntl(fd, libc::F_SETFD, 0);
    }
    libc::syscall(
        libc::SYS_close_range,
        a.keep as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
    );
    if fifo >= 0 {
        libc::write(report, [READY].as_ptr().cast(), 1);
        // /proc/self/fd/<fifo>: reopen the O_PATH descriptor for writing; blocks until start.
        let mut path = [0u8; 64];
        let prefix = a.proc_fd_prefix;
        path[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fifo as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            path[prefix.len() + i] = digits[len - 1 - i];
        }
        let w = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if w < 0 {
            libc::_exit(126);
        }
        // Once the open returned, start was asked for: go on even if that `start` died before
        // reading (the write would then raise SIGPIPE).
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::write(w, b"0".as_ptr().cast(), 1);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::close(w);
        libc::close(fifo);
    }
    libc::execve(a.exe.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
    if fifo >= 0 {
        // Nobody listens on the report pipe any more: tell the container's stderr, like a shell.
        let msg = b"hostprocess: exec failed\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    fail(report, a.slot, STEP_EXEC);
}

/// Closes every descriptor from `from` up, except `except`. Async-signal-safe.
pub(crate) unsafe fn close_all_but(from: RawFd, except: RawFd) {
    let close = |first: RawFd, last: libc::c_uint| {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last,
            0 as libc::c_uint,
        );
    };
    if except > from {
        close(from, (except - 1) as libc::c_uint);
    }
    close(except.max(from - 1) + 1, libc::c_uint::MAX);
}

/// Makes the exec FIFO a held init waits on (writable by any account the init may run as).
pub fn make_exec_fifo(path: &Path) -> Result<()> {
    let cpath = c(path.as_os_str().as_bytes(), "the exec FIFO")?;
    // SAFETY: mkfifo/chmod with a valid C string.
    if unsafe { libc::mkfifo(cpath.as_ptr(), 0o622) } < 0 {
        return Err(Error::io("mkfifo", path, std::io::Error::last_os_error()));
    }
    if unsafe { libc::chmod(cpath.as_ptr(), 0o622) } < 0 {
        return Err(Error::io("chmod", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A held init keeps a descriptor of the exec FIFO until it execs the command.
pub fn holds_exec_fifo(init: &ProcessInfo, fifo: &Path) -> bool {
    if !is_running(init) {
        return false;
    }
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

/// Releases a held init: open the FIFO for reading (the moment init goes on to exec), take
/// its byte, remove the FIFO.
pub fn release(path: &Path, init: &ProcessInfo) -> Result<()> {
    let cpath = c(path.as_os_str().as_bytes(), "the exec FIFO")?;
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
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid descriptor.
        unsafe { libc::poll(&mut pfd, 1, 10) };
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

    /// The shim starts processes while its other threads come and go. A child forked then
    /// must not wait for any of them: setting its account once hung on a lock a vanished
    /// thread held at the fork.
    #[test]
    fn spawning_beside_busy_threads_never_hangs() {
        // SAFETY: geteuid has no effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (changes the account of its children)");
            return;
        }
        let layout = super::super::cgroup::Layout::detect().expect("read the cgroup mounts");
        let unified = layout.unified().expect("a cgroup2 hierarchy");
        let cgroup =
            TestCgroup(unified.join(format!("hostprocess-spawn-test-{}", std::process::id())));
        fs::create_dir(&cgroup.0).expect("make the test's cgroup");

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
