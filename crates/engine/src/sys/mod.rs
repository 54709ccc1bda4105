//! The platform interface: the effects the engine needs from an operating system.
//!
//! A platform executes a [`ContainerPlan`]: it makes the job (a cgroup on Linux, a job object on
//! Windows), the account, the container volume and the view of the filesystem, and starts
//! processes in the job. Everything it makes is named in its [`Platform::Record`], which the
//! engine persists, so any later process (a CLI call, a restarted shim, a `delete` after a crash)
//! can operate on or tear down the container.
//!
//! A platform is a value the engine holds ([`Current`], this host's, unless a caller passes
//! another). Rules that are the same on every platform are written once here on its primitives
//! ([`terminate_rest`]). `fake` (in tests, or with the `fake-platform` feature) is a platform
//! that makes nothing and records its calls, for tests of the lifecycle without root.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plan::{ContainerPlan, ProcessPlan, ResourceRequest};

pub mod linuxlogic;
pub mod winlogic;

#[cfg(any(test, feature = "fake-platform"))]
pub mod fake;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux::Linux as Current;

#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub use windows::Windows as Current;

/// Signal numbers the engine uses; each platform maps them (Windows: SIGTERM becomes
/// CTRL_SHUTDOWN, SIGKILL termination).
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

/// A process of a container, identified across processes and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// When the process started (Linux: clock ticks since boot; Windows: creation time), so a
    /// reused pid is never mistaken for the container's process.
    pub start_time: u64,
}

/// Job-wide usage figures (§5). Absent figures are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage_bytes: u64,
    pub memory_peak_bytes: u64,
    pub memory_limit_bytes: u64,
    pub memory_cache_bytes: u64,
    /// Windows: the private working sets of the job's processes, summed (as the reference
    /// reports them); zero elsewhere.
    #[serde(default)]
    pub memory_private_working_set_bytes: u64,
    pub oom_kills: u64,
    pub pids_current: u64,
    pub pids_limit: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub io_read_ops: u64,
    pub io_write_ops: u64,
}

/// How often the wait for the rest of a job asks whether the job is still the container's.
const IDENTITY_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How long the rest of a job may take to die once SIGKILL was sent.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What follows the exit of init (§6), the one copy of the rule for every caller (the engine's
/// in-process supervision, the detached watchers of both platforms): SIGTERM to the rest of the
/// job (thawed first: a frozen job cannot act on it), then SIGKILL once `grace` is over.
/// Returns whether anything had to be killed.
///
/// `still_ours` says whether the job is still the container's: the container may have been
/// deleted and its id, so its job's name, used again meanwhile. It is asked before each signal
/// and between waits, and the routine stops quietly once it says no.
pub fn terminate_rest<P: Platform + ?Sized>(
    platform: &P,
    record: &P::Record,
    grace: Duration,
    still_ours: impl Fn() -> bool,
) -> Result<bool> {
    if !still_ours() || platform.wait_job_empty(record, Duration::ZERO)? {
        return Ok(false);
    }
    if platform.is_frozen(record) {
        platform.set_frozen(record, false)?;
    }
    if !still_ours() {
        return Ok(false);
    }
    platform.signal_job(record, SIGTERM)?;
    let deadline = Instant::now() + grace;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if platform.wait_job_empty(record, left.min(IDENTITY_CHECK_INTERVAL))? || !still_ours() {
            return Ok(false);
        }
        if left.is_zero() {
            break;
        }
    }
    platform.signal_job(record, SIGKILL)?;
    platform.wait_job_empty(record, KILL_WAIT)?;
    Ok(true)
}

/// One operating system's implementation of HostProcess containers.
pub trait Platform {
    /// What `create` makes, named before it is made.
    type Record: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Default + Send + Sync;
    /// Standard I/O for a new process (file descriptors, or handles).
    type Stdio: Default;
    /// What is left of a view let go of by [`Platform::release_view`]: dropping it lets the
    /// kernel finish taking the view down, which the caller does once it holds no lock.
    type ReleasedView: Send;

    /// Checks against the host what the spec alone cannot decide (mount sources, the account)
    /// and names everything `create` will make. No side effects.
    fn prepare(&self, plan: &ContainerPlan, state_dir: &Path) -> Result<Self::Record>;

    /// Makes the job, account, volume and view, and starts init inside the job. With `hold`,
    /// init is ready but waits for [`Platform::release`] before it runs the command. On error the
    /// caller tears down with [`Platform::destroy`].
    fn create(
        &self,
        plan: &ContainerPlan,
        record: &mut Self::Record,
        stdio: Self::Stdio,
        hold: bool,
    ) -> Result<ProcessInfo>;

    /// The container's init process, as `create` recorded it (the one place it is kept).
    fn init(&self, record: &Self::Record) -> Option<ProcessInfo>;

    /// Lets a held init run its command.
    fn release(&self, record: &Self::Record) -> Result<()>;

    /// Is init still held (created, not yet released)? Decided from what the release itself
    /// left (Linux: the process; Windows: a marker made once the thread is resumed), so a
    /// `start` that died half-way is seen for what it did.
    fn is_held(&self, record: &Self::Record) -> bool;

    /// Starts another process in the job, as the container's account, in its view.
    fn exec(
        &self,
        plan: &ContainerPlan,
        record: &Self::Record,
        process: &ProcessPlan,
        stdio: Self::Stdio,
    ) -> Result<ProcessInfo>;

    /// Is this process (not a reuse of its pid) still running?
    fn is_running(&self, process: &ProcessInfo) -> bool;
    fn signal(&self, process: &ProcessInfo, signal: i32) -> Result<()>;
    /// Signals every process of the job.
    fn signal_job(&self, record: &Self::Record, signal: i32) -> Result<()>;
    fn job_pids(&self, record: &Self::Record) -> Result<Vec<u32>>;
    /// Waits until the job has no process left; false on timeout.
    fn wait_job_empty(&self, record: &Self::Record, timeout: Duration) -> Result<bool>;
    fn set_frozen(&self, record: &Self::Record, frozen: bool) -> Result<()>;
    fn is_frozen(&self, record: &Self::Record) -> bool;
    /// Changes the job's limits while it runs (joining a controller the job was created
    /// without, which is why the record may change).
    fn update(&self, record: &mut Self::Record, resources: &ResourceRequest) -> Result<()>;
    fn stats(&self, record: &Self::Record) -> Result<JobStats>;
    /// The job's OOM kill count, as [`JobStats::oom_kills`], read alone.
    fn oom_kills(&self, record: &Self::Record) -> Result<u64>;
    /// Starts a watcher, detached from the calling process, that applies §6 when init exits:
    /// SIGTERM to the rest of the job, SIGKILL to what is left after `grace`. Used when the
    /// caller does not stay to supervise (the CLI's `create`); the shim supervises in-process.
    fn supervise_detached(
        &self,
        record: &Self::Record,
        init: &ProcessInfo,
        grace: Duration,
    ) -> Result<()>;
    /// Lets go of the private view of a container that has stopped (init gone, nothing of its
    /// job left), which nothing can enter any more, instead of at [`Platform::destroy`]: the
    /// volume's files stay until then. Idempotent; nothing to do where the view is not kept
    /// apart from its processes.
    fn release_view(&self, record: &Self::Record) -> Result<Self::ReleasedView>;
    /// Kills what is left (thawing a frozen job) and removes the view, the volume, the job and
    /// any ephemeral account. Idempotent: what is already gone is skipped.
    fn destroy(&self, record: &Self::Record) -> Result<()>;
    /// Removes what a container's state directory itself names when its record cannot be
    /// read (a corrupt state file): the parts kept there and at paths derived from its id.
    /// What only the record names (the job, the account) cannot be found and is left.
    fn destroy_unrecorded(&self, _state_dir: &Path) -> Result<()> {
        Ok(())
    }
}
