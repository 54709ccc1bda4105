//! Linux: the job is a cgroup (v2, or v1/hybrid), the view a mount namespace that is a slave of
//! the host's, the volume an overlay over the image, the account a uid/gid.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::{ContainerPlan, ProcessPlan, ResourceRequest};
use crate::sys::{JobStats, Platform, ProcessInfo};

pub struct Linux;

/// Everything made for one container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub state_dir: PathBuf,
}

/// Standard I/O of a new process. `None` is `/dev/null`.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// `stdin` is a terminal (a pty's follower end) that becomes the controlling terminal.
    pub terminal: bool,
    /// Descriptors 3 .. 3+N of the caller that the process keeps (runc's `--preserve-fds`).
    pub preserve_fds: u32,
}

impl Platform for Linux {
    type Record = Record;
    type Stdio = Stdio;

    fn prepare(_plan: &ContainerPlan, state_dir: &Path) -> Result<Record> {
        Ok(Record {
            state_dir: state_dir.to_path_buf(),
        })
    }

    fn create(
        plan: &ContainerPlan,
        _record: &mut Record,
        _stdio: Stdio,
        _hold: bool,
    ) -> Result<ProcessInfo> {
        Err(Error::container(&plan.id, "linux backend under construction"))
    }

    fn release(_record: &Record) -> Result<()> {
        Ok(())
    }

    fn exec(
        plan: &ContainerPlan,
        _record: &Record,
        _process: &ProcessPlan,
        _stdio: Stdio,
    ) -> Result<ProcessInfo> {
        Err(Error::container(&plan.id, "linux backend under construction"))
    }

    fn is_running(_process: &ProcessInfo) -> bool {
        false
    }

    fn signal(_process: &ProcessInfo, _signal: i32) -> Result<()> {
        Ok(())
    }

    fn signal_job(_record: &Record, _signal: i32) -> Result<()> {
        Ok(())
    }

    fn job_pids(_record: &Record) -> Result<Vec<u32>> {
        Ok(Vec::new())
    }

    fn wait_job_empty(_record: &Record, _timeout: Duration) -> Result<bool> {
        Ok(true)
    }

    fn set_frozen(_record: &Record, _frozen: bool) -> Result<()> {
        Ok(())
    }

    fn is_frozen(_record: &Record) -> bool {
        false
    }

    fn update(_record: &Record, _resources: &ResourceRequest) -> Result<()> {
        Ok(())
    }

    fn stats(_record: &Record) -> Result<JobStats> {
        Ok(JobStats::default())
    }

    fn destroy(_record: &Record) -> Result<()> {
        Ok(())
    }
}
