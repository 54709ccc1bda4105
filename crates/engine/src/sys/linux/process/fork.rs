//! The fork and the child's code path. The child makes async-signal-safe system calls only, on
//! data prepared before the fork, and none whose C library wrapper coordinates threads (see
//! [`set_account`]): it joins the job's cgroups first, then the view, stdio, limits, the
//! account, the working directory, and finally execs — right away, or once `start` opens the
//! exec FIFO.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::prepare::Resource;
use super::report::{fail, ReportSlot, Step, READY};

/// What the child needs, borrowed from the runtime's memory.
#[derive(Clone, Copy)]
pub(super) struct ChildArgs<'a> {
    /// Set while the child shares the runtime's memory (never in a forked child: its store
    /// would be a copy-on-write fault the memory limit may refuse).
    pub(super) slot: Option<&'a ReportSlot>,
    /// The v2 cgroup's `cgroup.procs`, when the fork did not place the child there already.
    pub(super) v2_procs: Option<&'a CString>,
    pub(super) v1_tasks: &'a [CString],
    pub(super) pids_files: Option<&'a (CString, CString)>,
    pub(super) new_session: bool,
    pub(super) ns: Option<RawFd>,
    pub(super) netns: Option<RawFd>,
    pub(super) stdio: [RawFd; 3],
    pub(super) terminal: bool,
    pub(super) dev_null: &'a CString,
    pub(super) rlimits: &'a [(Resource, libc::rlimit)],
    pub(super) fifo: Option<&'a CString>,
    pub(super) change_ids: bool,
    pub(super) groups: &'a [libc::gid_t],
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) no_new_privileges: bool,
    pub(super) cwd: &'a CString,
    pub(super) keep: RawFd,
    pub(super) exe: &'a CString,
    pub(super) argv: &'a [*const libc::c_char],
    pub(super) envp: &'a [*const libc::c_char],
    pub(super) report: RawFd,
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

/// Starts the child with every signal blocked in the calling thread (no signal handler of the
/// runtime may run in the child before it has reset them all); the mask is restored after.
/// Returns the pid (or -1 and errno) and whether the child was placed in the cgroup `v2`.
///
/// # Safety
/// `args` must point at memory that stays valid until the child has exec'd or exited.
pub(super) unsafe fn start_child_masked(
    v2: Option<RawFd>,
    args: ChildArgs<'_>,
    v2_procs: Option<&CString>,
) -> (libc::pid_t, bool) {
    let mut all: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    let started = start_child(v2, args, v2_procs);
    // The errno of a failed clone survives the restore: pthread_sigmask returns its error.
    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    started
}

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

/// The child side of `spawn`: each phase in turn; the first that fails is reported (on the
/// descriptor the phase left the report on) and ends the child.
unsafe fn child(a: ChildArgs<'_>) -> ! {
    reset_signals();
    if let Err(step) = join_job(&a).and_then(|()| enter_namespaces(&a)) {
        fail(a.report, a.slot, step);
    }
    let report = match set_up_stdio(&a) {
        Ok(report) => report,
        Err(step) => fail(a.report, a.slot, step),
    };
    let fifo = match apply_terminal_and_limits(&a).and_then(|()| open_exec_fifo(&a)) {
        Ok(fifo) => fifo,
        Err(step) => fail(report, a.slot, step),
    };
    if let Err(step) = set_account(&a).and_then(|()| enter_working_directory(&a)) {
        fail(report, a.slot, step);
    }
    close_runtime_descriptors(a.keep);
    if let Some(fifo) = fifo {
        wait_for_start(report, fifo);
    }
    libc::execve(a.exe.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
    if fifo.is_some() {
        // Nobody listens on the report pipe any more: tell the container's stderr, like a shell.
        let msg = b"hostprocess: exec failed\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    fail(report, a.slot, Step::Exec);
}

/// The runtime may ignore or handle signals (Rust ignores SIGPIPE); the workload starts
/// clean. Every signal is blocked until the handlers are reset: a runtime's handler must not
/// run here, least of all on memory this process may share with the runtime. The raw system
/// call reaches every signal, also the real-time ones the C library keeps for itself; a
/// kernel sigaction with all fields zero is SIG_DFL.
unsafe fn reset_signals() {
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
}

/// First of all, into the job before anything else can run, and within its pids limit.
unsafe fn join_job(a: &ChildArgs<'_>) -> Result<(), Step> {
    for file in a.v2_procs.into_iter().chain(a.v1_tasks) {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            return Err(Step::Cgroup);
        }
        libc::close(fd);
    }
    if let Some((max, current)) = a.pids_files {
        let limit = read_number(max);
        if limit.is_some() && read_number(current) > limit {
            *libc::__errno_location() = libc::EAGAIN;
            return Err(Step::PidsLimit);
        }
    }
    Ok(())
}

/// The session, then the container's mount namespace and the pod's network namespace.
unsafe fn enter_namespaces(a: &ChildArgs<'_>) -> Result<(), Step> {
    if a.new_session && libc::setsid() < 0 {
        return Err(Step::Setsid);
    }
    if let Some(ns) = a.ns {
        if libc::setns(ns, libc::CLONE_NEWNS) < 0 {
            return Err(Step::MountNamespace);
        }
    }
    if let Some(netns) = a.netns {
        if libc::setns(netns, libc::CLONE_NEWNET) < 0 {
            return Err(Step::NetworkNamespace);
        }
    }
    Ok(())
}

/// Then stdio: move the sources above 2 first so none is overwritten before it is used. Only
/// stdio, preserved descriptors and the report pipe stay open from here on: a held init must
/// not keep the runtime's locks or files while it waits. Returns the report pipe's new
/// descriptor.
unsafe fn set_up_stdio(a: &ChildArgs<'_>) -> Result<RawFd, Step> {
    let mut high = [-1; 3];
    for (i, fd) in a.stdio.iter().enumerate() {
        let source = if *fd >= 0 {
            *fd
        } else {
            let null = libc::open(a.dev_null.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if null < 0 {
                return Err(Step::DevNull);
            }
            null
        };
        high[i] = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, a.keep.max(10));
        if high[i] < 0 {
            return Err(Step::Stdio);
        }
    }
    for (i, fd) in high.iter().enumerate() {
        if libc::dup2(*fd, i as RawFd) < 0 {
            return Err(Step::Stdio);
        }
    }
    let report = libc::fcntl(a.report, libc::F_DUPFD_CLOEXEC, a.keep);
    if report < 0 {
        return Err(Step::Stdio);
    }
    close_all_but(a.keep, report);
    Ok(report)
}

/// The controlling terminal, then the lowered resource limits.
unsafe fn apply_terminal_and_limits(a: &ChildArgs<'_>) -> Result<(), Step> {
    if a.terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
        return Err(Step::Terminal);
    }
    for (resource, limit) in a.rlimits {
        if libc::setrlimit(*resource, limit) < 0 {
            return Err(Step::Rlimit);
        }
    }
    Ok(())
}

/// A held init's exec FIFO, opened for reading and writing while init is still the runtime's
/// account: such an open does not wait for another end, and keeps the FIFO's reader there until
/// init has read `start`'s byte.
unsafe fn open_exec_fifo(a: &ChildArgs<'_>) -> Result<Option<RawFd>, Step> {
    let Some(path) = a.fifo else {
        return Ok(None);
    };
    let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(Step::ExecFifo);
    }
    Ok(Some(fd))
}

/// The account: groups, then gid, then uid; a non-root uid drops every capability.
/// Raw system calls: the C library's wrappers change the credentials of every thread it
/// knows of, and after a raw clone3 it still knows the runtime's threads and may wait
/// forever on a lock one of them held at the fork. This process has one thread.
unsafe fn set_account(a: &ChildArgs<'_>) -> Result<(), Step> {
    if a.change_ids {
        if libc::syscall(libc::SYS_setgroups, a.groups.len(), a.groups.as_ptr()) < 0 {
            return Err(Step::Groups);
        }
        if libc::syscall(libc::SYS_setresgid, a.gid, a.gid, a.gid) < 0 {
            return Err(Step::Gid);
        }
        if libc::syscall(libc::SYS_setresuid, a.uid, a.uid, a.uid) < 0 {
            return Err(Step::Uid);
        }
    }
    if a.no_new_privileges && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        return Err(Step::NoNewPrivileges);
    }
    Ok(())
}

unsafe fn enter_working_directory(a: &ChildArgs<'_>) -> Result<(), Step> {
    if libc::chdir(a.cwd.as_ptr()) < 0 {
        return Err(Step::Chdir);
    }
    Ok(())
}

/// Last, no runtime descriptor reaches the workload: all but stdio and preserved fds close.
unsafe fn close_runtime_descriptors(keep: RawFd) {
    for fd in 3..keep {
        libc::fcntl(fd, libc::F_SETFD, 0);
    }
    libc::syscall(
        libc::SYS_close_range,
        keep as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
    );
}

/// A held init says it is ready, then waits for `start`'s byte in the FIFO.
unsafe fn wait_for_start(report: RawFd, fifo: RawFd) {
    libc::write(report, [READY].as_ptr().cast(), 1);
    let mut byte = 0u8;
    loop {
        match libc::read(fifo, (&mut byte as *mut u8).cast(), 1) {
            1 => break,
            n if n < 0 && *libc::__errno_location() == libc::EINTR => continue,
            _ => libc::_exit(126),
        }
    }
    libc::close(fifo);
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
