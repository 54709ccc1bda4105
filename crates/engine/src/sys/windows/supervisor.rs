//! The detached supervisor (§6) for callers that do not stay (the CLI's `create`). Windows has
//! no `fork`, so the supervisor is the runtime's own executable started again, with the path of
//! its request (a file in the container's state directory) in its environment: the binary's
//! `main` must call [`run_supervisor_if_requested`] first. The
//! supervisor holds the job open, waits for init to exit, then sends CTRL_SHUTDOWN to the rest
//! of the job and terminates what is left after the grace period.
//!
//! A supervisor that does not report itself ready is an error, so a binary that lacks the call
//! is noticed at once instead of leaving the container unsupervised.

use std::io::{BufRead, BufReader, Write};
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Console::{GetStdHandle, SetStdHandle, STD_OUTPUT_HANDLE};
use windows_sys::Win32::System::Threading::{
    CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS, INFINITE,
};

use super::job::Job;
use super::process;
use super::win::raw;
use super::{Record, Windows};
use crate::error::{Error, Result};
use crate::sys::ProcessInfo;

/// The environment variable that names the request file (in the container's state directory).
pub const SUPERVISOR_ENV: &str = "HOSTPROCESS_WINDOWS_SUPERVISOR";
const REQUEST_FILE: &str = "supervisor.json";
/// The argument the supervisor is started with, so that it is recognizable in a process list.
pub const SUPERVISOR_ARG: &str = "--hostprocess-windows-supervisor";
const READY: &str = "ready";

#[derive(Serialize, Deserialize)]
struct Request {
    record: Record,
    init: ProcessInfo,
    grace_ms: u64,
}

/// Starts the supervisor of `record` and waits until it holds the job.
pub fn spawn(record: &Record, init: &ProcessInfo, grace: Duration) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| Error::sys("find the runtime's executable", e))?;
    let request = Request {
        record: record.clone(),
        init: *init,
        grace_ms: grace.as_millis().min(u128::from(u64::MAX)) as u64,
    };
    let payload = serde_json::to_vec(&request)
        .map_err(|e| Error::container(&record.id, format!("encode the supervisor request: {e}")))?;
    let request_file = record.state_dir.join(REQUEST_FILE);
    std::fs::write(&request_file, payload).map_err(|e| Error::io("write", &request_file, e))?;
    let mut command = Command::new(&exe);
    command
        .arg(SUPERVISOR_ARG)
        .arg(&record.id)
        .env(SUPERVISOR_ENV, &request_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let flags = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP;
    let mut child = match command
        .creation_flags(flags | CREATE_BREAKAWAY_FROM_JOB)
        .spawn()
    {
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            command.creation_flags(flags).spawn()
        }
        other => other,
    }
    .map_err(|e| Error::sys(format!("start the supervisor {}", exe.display()), e))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    if line.trim() == READY {
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(Error::container(
        &record.id,
        format!(
            "the detached supervisor did not start: {} must call hostprocess_engine::sys::windows::run_supervisor_if_requested() at the start of main",
            exe.display()
        ),
    ))
}

/// In a process started by [`spawn`]: supervises and exits. Elsewhere: returns at once.
pub fn run_supervisor_if_requested() {
    let Some(request_file) = std::env::var_os(SUPERVISOR_ENV) else {
        return;
    };
    let code = match supervise(Path::new(&request_file)) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("supervisor: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn supervise(request_file: &Path) -> Result<()> {
    let payload = std::fs::read(request_file).map_err(|e| Error::io("read", request_file, e))?;
    let _ = std::fs::remove_file(request_file);
    let request: Request = serde_json::from_slice(&payload).map_err(|e| {
        Error::io(
            "parse the supervisor request",
            request_file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let record = &request.record;
    let job = Job::open(&record.job_name)?
        .ok_or_else(|| Error::container(&record.id, "its job object is gone"))?;
    let init = process::open(&request.init, SYNCHRONIZE)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
    }
    // Close the pipe to the caller, so that nothing waits on this process's output.
    // SAFETY: the standard output handle is this process's and is not used again.
    unsafe {
        let handle = GetStdHandle(STD_OUTPUT_HANDLE);
        SetStdHandle(STD_OUTPUT_HANDLE, std::ptr::null_mut());
        if !handle.is_null() {
            CloseHandle(handle);
        }
    }
    if let Some(init) = init {
        process::wait_exit(raw(&init), INFINITE)?;
    }
    // The job stays this container's while this process holds it open: the routine's
    // primitives open it again by its name and find the same object.
    crate::sys::terminate_rest(
        &Windows,
        record,
        Duration::from_millis(request.grace_ms),
        || true,
    )?;
    drop(job);
    Ok(())
}
