//! Everything done before the fork: the C strings, argument vectors and paths the child uses,
//! the resource limits to lower, and the descriptors it joins or writes to. The child then
//! allocates nothing and formats nothing.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::rlimits::{Rlimit, RlimitKind};

use super::super::Stdio;
use super::fork::ChildArgs;
use super::report::ReportSlot;
use super::Launch;

pub(super) fn c(s: impl AsRef<[u8]>, what: &str) -> Result<CString> {
    CString::new(s.as_ref()).map_err(|_| {
        Error::sys(
            format!("prepare {what}"),
            std::io::Error::new(ErrorKind::InvalidInput, "contains a NUL byte"),
        )
    })
}

fn c_path(path: &Path, what: &str) -> Result<CString> {
    c(path.as_os_str().as_bytes(), what)
}

/// The type of setrlimit's first argument differs between C libraries.
#[cfg(target_env = "gnu")]
pub(super) type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub(super) type Resource = libc::c_int;

fn rlimit_resource(kind: RlimitKind) -> Resource {
    match kind {
        RlimitKind::As => libc::RLIMIT_AS,
        RlimitKind::Core => libc::RLIMIT_CORE,
        RlimitKind::Cpu => libc::RLIMIT_CPU,
        RlimitKind::Data => libc::RLIMIT_DATA,
        RlimitKind::Fsize => libc::RLIMIT_FSIZE,
        RlimitKind::Locks => libc::RLIMIT_LOCKS,
        RlimitKind::Memlock => libc::RLIMIT_MEMLOCK,
        RlimitKind::Msgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitKind::Nice => libc::RLIMIT_NICE,
        RlimitKind::Nofile => libc::RLIMIT_NOFILE,
        RlimitKind::Nproc => libc::RLIMIT_NPROC,
        RlimitKind::Rss => libc::RLIMIT_RSS,
        RlimitKind::Rtprio => libc::RLIMIT_RTPRIO,
        RlimitKind::Rttime => libc::RLIMIT_RTTIME,
        RlimitKind::Sigpending => libc::RLIMIT_SIGPENDING,
        RlimitKind::Stack => libc::RLIMIT_STACK,
    }
}

/// Only limits that lower the current ones apply: raising needs a privilege this runtime
/// should not rely on. A soft limit above the hard one is lowered to it.
fn lowered_rlimits(rlimits: &[Rlimit]) -> Vec<(Resource, libc::rlimit)> {
    let mut out = Vec::new();
    for Rlimit { kind, soft, hard } in rlimits {
        let resource = rlimit_resource(*kind);
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
            log::debug!("{}: not raised above the runtime's own limit", kind.name());
        }
    }
    out
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::sys("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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

/// The child's C strings and vectors, made from a [`Launch`]. The pointer vectors point into
/// the strings' heap buffers, which stay put when this value moves.
pub(super) struct Prepared {
    exe: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    v1_tasks: Vec<CString>,
    pids_files: Option<(CString, CString)>,
    /// The v2 cgroup's `cgroup.procs`, written by a child the fork did not place there.
    pub(super) v2_procs: Option<CString>,
    fifo: Option<CString>,
    dev_null: CString,
    rlimits: Vec<(Resource, libc::rlimit)>,
    groups: Vec<libc::gid_t>,
}

impl Prepared {
    pub(super) fn new(launch: &Launch) -> Result<Prepared> {
        let exe = c_path(&launch.executable, "the executable path")?;
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
        let argv = null_terminated(&args);
        let envp = null_terminated(&env);
        let cwd = c_path(&launch.cwd, "the working directory")?;
        let v1_tasks: Vec<CString> = launch
            .v1_tasks
            .iter()
            .map(|p| c_path(p, "a cgroup path"))
            .collect::<Result<_>>()?;
        let pids_files = match &launch.pids_dir {
            Some(dir) => Some((
                c_path(&dir.join("pids.max"), "a cgroup path")?,
                c_path(&dir.join("pids.current"), "a cgroup path")?,
            )),
            None => None,
        };
        let v2_procs = match &launch.cgroup_v2 {
            Some(dir) => Some(c_path(&dir.join("cgroup.procs"), "a cgroup path")?),
            None => None,
        };
        Ok(Prepared {
            exe,
            _args: args,
            _env: env,
            argv,
            envp,
            cwd,
            v1_tasks,
            pids_files,
            v2_procs,
            fifo: launch
                .exec_fifo
                .as_deref()
                .map(|p| c_path(p, "the exec FIFO"))
                .transpose()?,
            dev_null: c("/dev/null", "/dev/null")?,
            rlimits: lowered_rlimits(&launch.rlimits),
            groups: launch.account.groups.clone(),
        })
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    pointers.push(std::ptr::null());
    pointers
}

/// The descriptors the child uses: the namespaces it joins and the v2 cgroup it is forked
/// into. Closed in the runtime once the child has them.
pub(super) struct Opened {
    pub(super) mount_ns: Option<fs::File>,
    pub(super) network_ns: Option<fs::File>,
    pub(super) cgroup_v2: Option<fs::File>,
}

impl Opened {
    pub(super) fn new(launch: &Launch) -> Result<Opened> {
        let mount_ns = match &launch.mount_ns {
            Some(pin) => Some(fs::File::open(pin).map_err(|e| Error::io("open", pin, e))?),
            None => None,
        };
        let network_ns = match &launch.network_ns {
            Some(path) => Some(open_network_namespace(path)?),
            None => None,
        };
        // The v2 cgroup is joined at fork (clone3 CLONE_INTO_CGROUP): no cgroup.procs write,
        // which is both the costly part of joining (it can wait for an RCU grace period) and
        // unchecked against pids.max. Older kernels fork, then write.
        let cgroup_v2 = match &launch.cgroup_v2 {
            Some(dir) => Some(
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(dir)
                    .map_err(|e| Error::io("open", dir, e))?,
            ),
            None => None,
        };
        Ok(Opened {
            mount_ns,
            network_ns,
            cgroup_v2,
        })
    }
}

/// The child's arguments: everything prepared, borrowed, plus the raw descriptors.
pub(super) fn child_args<'a>(
    launch: &Launch,
    prepared: &'a Prepared,
    opened: &Opened,
    stdio: &Stdio,
    slot: &'a ReportSlot,
    report: RawFd,
) -> ChildArgs<'a> {
    ChildArgs {
        slot: Some(slot),
        v2_procs: None,
        v1_tasks: &prepared.v1_tasks,
        pids_files: prepared.pids_files.as_ref(),
        new_session: launch.new_session,
        ns: opened.mount_ns.as_ref().map(|f| f.as_raw_fd()),
        netns: opened.network_ns.as_ref().map(|f| f.as_raw_fd()),
        stdio: [
            stdio.stdin.as_ref().map_or(-1, |f| f.as_raw_fd()),
            stdio.stdout.as_ref().map_or(-1, |f| f.as_raw_fd()),
            stdio.stderr.as_ref().map_or(-1, |f| f.as_raw_fd()),
        ],
        terminal: stdio.terminal,
        dev_null: &prepared.dev_null,
        rlimits: &prepared.rlimits,
        fifo: prepared.fifo.as_ref(),
        change_ids: !launch.account.inherit,
        groups: &prepared.groups,
        uid: launch.account.uid,
        gid: launch.account.gid,
        no_new_privileges: launch.no_new_privileges,
        cwd: &prepared.cwd,
        keep: 3 + stdio.preserve_fds as RawFd,
        exe: &prepared.exe,
        argv: &prepared.argv,
        envp: &prepared.envp,
        report,
    }
}
