//! The child's report to the runtime: which step failed and with what errno, written by the
//! child (async-signal-safe) and read back into an [`Error`] by the parent.

use std::io::{ErrorKind, Read};
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::error::{Error, Result};

use super::Launch;

/// Sent by a held init once everything but exec is done.
pub(super) const READY: u8 = b'R';

/// Steps of the child, reported back with errno when one fails. The numbers are the report's
/// wire format: each fits in the report's first byte and none is [`READY`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Cgroup = 0,
    Setsid = 1,
    MountNamespace = 2,
    Stdio = 3,
    Terminal = 4,
    Rlimit = 5,
    ExecFifo = 6,
    Groups = 7,
    Gid = 8,
    Uid = 9,
    NoNewPrivileges = 10,
    Chdir = 11,
    Exec = 12,
    DevNull = 13,
    PidsLimit = 14,
    NetworkNamespace = 15,
}

impl Step {
    /// Every step, in the order of their numbers.
    const ALL: [Step; 16] = [
        Step::Cgroup,
        Step::Setsid,
        Step::MountNamespace,
        Step::Stdio,
        Step::Terminal,
        Step::Rlimit,
        Step::ExecFifo,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::NoNewPrivileges,
        Step::Chdir,
        Step::Exec,
        Step::DevNull,
        Step::PidsLimit,
        Step::NetworkNamespace,
    ];

    /// The step a report names; `None` for a number no step has.
    pub(super) fn from_u32(number: u32) -> Option<Step> {
        Step::ALL.get(number as usize).copied()
    }

    /// What the step does, as the error message says it.
    pub(super) fn description(self) -> &'static str {
        match self {
            Step::Cgroup => "join the job's cgroup",
            Step::Setsid => "start a new session",
            Step::MountNamespace => "join the container's mount namespace",
            Step::Stdio => "set up stdio",
            Step::Terminal => "set the controlling terminal",
            Step::Rlimit => "lower a resource limit",
            Step::ExecFifo => "open the exec FIFO",
            Step::Groups => "set supplementary groups",
            Step::Gid => "set gid",
            Step::Uid => "set uid",
            Step::NoNewPrivileges => "set no_new_privs",
            Step::Chdir => "change to the working directory",
            Step::Exec => "execute the command",
            Step::DevNull => "open /dev/null",
            Step::PidsLimit => "join the job: it is at its pids limit",
            Step::NetworkNamespace => "join the pod's network namespace",
        }
    }
}

/// Where a child that shares the runtime's memory also leaves its report: writing to the
/// pipe needs a page that the job's memory limit may refuse (ENOMEM), and the report was lost;
/// a store to memory the runtime already has mapped needs nothing.
pub(super) struct ReportSlot {
    step: AtomicU32,
    errno: AtomicI32,
}

impl ReportSlot {
    const NONE: u32 = u32::MAX;

    pub(super) fn new() -> ReportSlot {
        ReportSlot {
            step: AtomicU32::new(Self::NONE),
            errno: AtomicI32::new(0),
        }
    }

    pub(super) fn report(&self) -> Option<(u32, i32)> {
        match self.step.load(Ordering::Acquire) {
            Self::NONE => None,
            step => Some((step, self.errno.load(Ordering::Relaxed))),
        }
    }
}

/// The child's side: reports `step` with the current errno, and exits. Async-signal-safe.
pub(super) unsafe fn fail(report: RawFd, slot: Option<&ReportSlot>, step: Step) -> ! {
    let errno = *libc::__errno_location();
    let step = step as u32;
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

/// What the parent read from the report pipe once the child exec'd, waits or ended.
pub(super) enum Heard {
    /// The pipe closed without a word: the command runs (or the report was lost).
    Nothing,
    /// A held init is ready and waits for `start`.
    Ready,
    /// A step failed with this errno.
    Failed { step: u32, errno: i32 },
}

/// The parent's side: reads the child's word from the report pipe.
pub(super) fn read_report(reader: &mut impl Read) -> Result<Heard> {
    let mut first = [0u8; 1];
    let n = loop {
        match reader.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::sys("read from the new process", e)),
        }
    };
    if n == 0 {
        return Ok(Heard::Nothing);
    }
    if first[0] == READY {
        return Ok(Heard::Ready);
    }
    let mut rest = [0u8; 8];
    let _ = reader.read_exact(&mut rest[1..]);
    rest[0] = first[0];
    Ok(Heard::Failed {
        step: u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]),
        errno: i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]),
    })
}

/// The error for a step of the child that failed with `errno`.
pub(super) fn step_failed(launch: &Launch, step: u32, errno: i32) -> Error {
    let step = Step::from_u32(step);
    let what = step.map_or("start", Step::description);
    let detail = match step {
        Some(Step::Chdir) => format!("{what} '{}'", launch.cwd.display()),
        Some(Step::NetworkNamespace) => format!(
            "{what} '{}'",
            launch
                .network_ns
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
        ),
        Some(Step::Exec) => format!("{what} '{}'", launch.executable.display()),
        Some(Step::Cgroup) => format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::PathBuf;

    use crate::sys::linux::account::Account;

    fn launch() -> Launch {
        Launch {
            executable: PathBuf::from("/bin/tool"),
            args: vec!["tool".into()],
            env: Vec::new(),
            cwd: PathBuf::from("/work"),
            cgroup_v2: None,
            v1_tasks: vec![PathBuf::from("/a/tasks"), PathBuf::from("/b/tasks")],
            pids_dir: None,
            mount_ns: None,
            network_ns: Some(PathBuf::from("/var/run/netns/pod")),
            account: Account::default(),
            rlimits: Vec::new(),
            no_new_privileges: false,
            exec_fifo: None,
            new_session: false,
        }
    }

    /// What the child writes for `step` (see [`fail`]).
    fn wire(step: u32, errno: i32) -> Vec<u8> {
        [step.to_ne_bytes(), errno.to_ne_bytes()].concat()
    }

    #[test]
    fn every_step_decodes_from_its_number_and_no_other_number_does() {
        for (number, step) in Step::ALL.iter().enumerate() {
            assert_eq!(*step as u32, number as u32, "{step:?} is out of order");
            assert_eq!(Step::from_u32(number as u32), Some(*step));
        }
        for number in [Step::ALL.len() as u32, 255, u32::MAX] {
            assert_eq!(Step::from_u32(number), None, "{number}");
        }
    }

    #[test]
    fn a_steps_number_is_its_reports_first_byte_and_never_reads_as_ready() {
        for step in Step::ALL {
            let first = wire(step as u32, 0)[0];
            assert!(
                cfg!(target_endian = "big") || u32::from(first) == step as u32,
                "{step:?}"
            );
            assert_ne!(first, READY, "{step:?}");
            assert!(matches!(
                read_report(&mut Cursor::new(wire(step as u32, libc::EPERM))).unwrap(),
                Heard::Failed { step: s, errno: libc::EPERM } if s == step as u32
            ));
        }
        assert!(matches!(
            read_report(&mut Cursor::new(vec![READY])).unwrap(),
            Heard::Ready
        ));
        assert!(matches!(
            read_report(&mut Cursor::new(Vec::new())).unwrap(),
            Heard::Nothing
        ));
    }

    #[test]
    fn a_failed_step_names_what_it_did_and_on_what() {
        let text = |step: u32| step_failed(&launch(), step, libc::ENOENT).to_string();
        let cases = [
            (Step::Chdir, "change to the working directory '/work'"),
            (Step::Exec, "execute the command '/bin/tool'"),
            (
                Step::NetworkNamespace,
                "join the pod's network namespace '/var/run/netns/pod'",
            ),
            (Step::Cgroup, "join the job's cgroup (/a/tasks, /b/tasks)"),
            (Step::Setsid, "start a new session"),
            (Step::MountNamespace, "join the container's mount namespace"),
            (Step::Stdio, "set up stdio"),
            (Step::Terminal, "set the controlling terminal"),
            (Step::Rlimit, "lower a resource limit"),
            (Step::ExecFifo, "open the exec FIFO"),
            (Step::Groups, "set supplementary groups"),
            (Step::Gid, "set gid"),
            (Step::Uid, "set uid"),
            (Step::NoNewPrivileges, "set no_new_privs"),
            (Step::DevNull, "open /dev/null"),
            (Step::PidsLimit, "join the job: it is at its pids limit"),
        ];
        assert_eq!(cases.len(), Step::ALL.len());
        for (step, expected) in cases {
            assert!(
                text(step as u32).starts_with(expected),
                "{}",
                text(step as u32)
            );
        }
        assert!(text(99).starts_with("start"), "{}", text(99));
    }
}
