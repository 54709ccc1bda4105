//! The job object (§1.2): one named job per container (`Global\JobContainer_<id>`), killed when
//! its last handle closes, with I/O accounting, limits, a completion port that reports process
//! exits, and the silo promotion of the bind layout.

use std::io;
use std::mem::size_of;
use std::os::windows::io::OwnedHandle;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, SetLastError, ERROR_ABANDONED_WAIT_0, ERROR_ALREADY_EXISTS,
    ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_PATH_NOT_FOUND, HANDLE,
};
use windows_sys::Win32::System::JobObjects::{
    CreateJobObjectW, JobObjectAssociateCompletionPortInformation,
    JobObjectBasicAccountingInformation, JobObjectBasicAndIoAccountingInformation,
    JobObjectBasicProcessIdList, JobObjectCpuRateControlInformation, JobObjectCreateSilo,
    JobObjectExtendedLimitInformation, OpenJobObjectW, QueryInformationJobObject,
    SetInformationJobObject, SetIoRateControlInformationJobObject, TerminateJobObject,
    JOBOBJECTINFOCLASS, JOBOBJECT_ASSOCIATE_COMPLETION_PORT,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION,
    JOBOBJECT_BASIC_PROCESS_ID_LIST, JOBOBJECT_CPU_RATE_CONTROL_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOBOBJECT_IO_ATTRIBUTION_CONTROL_ENABLE,
    JOBOBJECT_IO_ATTRIBUTION_INFORMATION, JOBOBJECT_IO_RATE_CONTROL_INFORMATION,
    JOB_OBJECT_CPU_RATE_CONTROL_ENABLE, JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
    JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED, JOB_OBJECT_IO_RATE_CONTROL_ENABLE,
    JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_AFFINITY, JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::ProcessStatus::{
    K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS_EX2,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, INFINITE, PROCESS_QUERY_LIMITED_INFORMATION,
};
use windows_sys::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus, OVERLAPPED,
};

use super::win::{last_error, owned, raw, wide};
use crate::error::{Error, Result};
use crate::sys::winlogic::limits::{io_rate_to_set, CpuControl, IoLimit, JobLimits};
use crate::sys::JobStats;

/// `JOB_OBJECT_ALL_ACCESS`.
const JOB_OBJECT_ALL_ACCESS: u32 = 0x001F_003F;
/// `JobObjectMemoryUsageInformation` (job commit now and at its peak).
const JOB_OBJECT_MEMORY_USAGE_INFORMATION: JOBOBJECTINFOCLASS = 28;
/// `JobObjectIoAttribution` (storage I/O of the job's processes).
const JOB_OBJECT_IO_ATTRIBUTION: JOBOBJECTINFOCLASS = 42;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct JobMemoryUsage {
    job_memory: u64,
    peak_job_memory_used: u64,
}

/// An open job object.
#[derive(Debug)]
pub struct Job {
    handle: OwnedHandle,
    name: String,
}

fn object_name(job_name: &str) -> String {
    format!("Global\\{job_name}")
}

impl Job {
    /// Makes the container's job; a job of that name must not exist yet.
    pub fn create(job_name: &str) -> Result<Job> {
        let name = wide(object_name(job_name));
        // SAFETY: the name is NUL-terminated; default security. The last error is cleared first
        // because it is how an existing job of that name is told apart.
        let handle = unsafe {
            SetLastError(0);
            CreateJobObjectW(std::ptr::null(), name.as_ptr())
        };
        let error = last_error();
        let handle = owned(handle)
            .ok_or_else(|| Error::sys(format!("create job object {job_name}"), last_error()))?;
        if error.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) {
            return Err(Error::sys(
                format!("create job object {job_name}"),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a job object of that name already exists: delete the old container first",
                ),
            ));
        }
        Ok(Job {
            handle,
            name: job_name.to_string(),
        })
    }

    /// Opens the container's job; `None` when it no longer exists.
    pub fn open(job_name: &str) -> Result<Option<Job>> {
        let name = wide(object_name(job_name));
        // SAFETY: the name is NUL-terminated.
        let handle = unsafe { OpenJobObjectW(JOB_OBJECT_ALL_ACCESS, 0, name.as_ptr()) };
        match owned(handle) {
            Some(handle) => Ok(Some(Job {
                handle,
                name: job_name.to_string(),
            })),
            None => {
                let error = last_error();
                match error.raw_os_error().map(|c| c as u32) {
                    Some(ERROR_FILE_NOT_FOUND) | Some(ERROR_PATH_NOT_FOUND) => Ok(None),
                    _ => Err(Error::sys(format!("open job object {job_name}"), error)),
                }
            }
        }
    }

    pub fn handle(&self) -> HANDLE {
        raw(&self.handle)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn query_into<T>(&self, class: JOBOBJECTINFOCLASS, info: &mut T) -> io::Result<()> {
        // SAFETY: `info` is a writable T of the size given.
        let ok = unsafe {
            QueryInformationJobObject(
                self.handle(),
                class,
                info as *mut T as *mut _,
                size_of::<T>() as u32,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(())
    }

    fn query<T: Default>(&self, class: JOBOBJECTINFOCLASS) -> io::Result<T> {
        let mut info = T::default();
        self.query_into(class, &mut info)?;
        Ok(info)
    }

    fn set<T>(&self, class: JOBOBJECTINFOCLASS, info: &T) -> io::Result<()> {
        // SAFETY: `info` is a readable T of the size given.
        let ok = unsafe {
            SetInformationJobObject(
                self.handle(),
                class,
                info as *const T as *const _,
                size_of::<T>() as u32,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(())
    }

    fn op(&self, what: &str) -> String {
        format!("{what} (job object {})", self.name)
    }

    fn extended(&self) -> Result<JOBOBJECT_EXTENDED_LIMIT_INFORMATION> {
        self.query(JobObjectExtendedLimitInformation)
            .map_err(|e| Error::sys(self.op("query job limits"), e))
    }

    /// Sets the job to `limits`, keeping `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` (the reference's
    /// "parity with process isolated containers"): limits not in `limits` are cleared, including
    /// the I/O cap set before (`io_before`, which the runtime keeps: Wine has no call to read it).
    pub fn apply(&self, limits: &JobLimits, io_before: Option<IoLimit>) -> Result<()> {
        let mut info = self.extended()?;
        let basic = &mut info.BasicLimitInformation;
        basic.LimitFlags &= !(JOB_OBJECT_LIMIT_JOB_MEMORY
            | JOB_OBJECT_LIMIT_ACTIVE_PROCESS
            | JOB_OBJECT_LIMIT_AFFINITY);
        basic.LimitFlags |= JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        if let Some(n) = limits.active_processes {
            basic.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
            basic.ActiveProcessLimit = n;
        }
        if let Some(mask) = limits.affinity {
            basic.LimitFlags |= JOB_OBJECT_LIMIT_AFFINITY;
            basic.Affinity = mask as usize;
        }
        if let Some(bytes) = limits.memory_bytes {
            basic.LimitFlags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            info.JobMemoryLimit = bytes as usize;
        }
        self.set(JobObjectExtendedLimitInformation, &info)
            .map_err(|e| Error::sys(self.op("set job limits"), e))?;

        let current: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION = self
            .query(JobObjectCpuRateControlInformation)
            .unwrap_or_default();
        let mut cpu = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION::default();
        match limits.cpu {
            Some(CpuControl::HardCap(rate)) => {
                cpu.ControlFlags =
                    JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP;
                cpu.Anonymous.CpuRate = rate;
            }
            Some(CpuControl::Weight(weight)) => {
                cpu.ControlFlags =
                    JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED;
                cpu.Anonymous.Weight = weight;
            }
            None => {}
        }
        if limits.cpu.is_some() || current.ControlFlags & JOB_OBJECT_CPU_RATE_CONTROL_ENABLE != 0 {
            self.set(JobObjectCpuRateControlInformation, &cpu)
                .map_err(|e| Error::sys(self.op("set job CPU rate control"), e))?;
        }

        if let Some(io_limit) = io_rate_to_set(io_before, limits.io) {
            let info = JOBOBJECT_IO_RATE_CONTROL_INFORMATION {
                MaxIops: io_limit.max_iops,
                MaxBandwidth: io_limit.max_bandwidth,
                ReservationIops: 0,
                VolumeName: std::ptr::null(),
                BaseIoSize: 0,
                ControlFlags: JOB_OBJECT_IO_RATE_CONTROL_ENABLE as u32,
            };
            // SAFETY: `info` is a complete structure; a null volume name means every volume.
            let result = unsafe { SetIoRateControlInformationJobObject(self.handle(), &info) };
            if result == 0 {
                return Err(Error::sys(
                    self.op("set job I/O rate control"),
                    last_error(),
                ));
            }
        }
        Ok(())
    }

    /// Turns on per-job storage I/O accounting (`JobObjectIoAttribution`).
    pub fn enable_io_attribution(&self) -> Result<()> {
        let info = JOBOBJECT_IO_ATTRIBUTION_INFORMATION {
            ControlFlags: JOBOBJECT_IO_ATTRIBUTION_CONTROL_ENABLE as u32,
            ..Default::default()
        };
        self.set(JOB_OBJECT_IO_ATTRIBUTION, &info)
            .map_err(|e| Error::sys(self.op("enable I/O accounting"), e))
    }

    /// Makes the job a silo, so that bind-filter mappings apply to its processes only. The job
    /// must not have processes yet.
    pub fn promote_to_silo(&self) -> Result<()> {
        // SAFETY: JobObjectCreateSilo takes no data.
        let ok = unsafe {
            SetInformationJobObject(self.handle(), JobObjectCreateSilo, std::ptr::null(), 0)
        };
        if ok == 0 {
            return Err(Error::sys(self.op("promote job to a silo"), last_error()));
        }
        Ok(())
    }

    /// The ids of the job's processes.
    pub fn pids(&self) -> Result<Vec<u32>> {
        // The list's header (two u32) is one or two words; the ids follow.
        let header_words = 8 / size_of::<usize>();
        let mut capacity = 64usize;
        loop {
            let mut buffer = vec![0usize; header_words + capacity];
            // SAFETY: the buffer is writable for its whole length and aligned for the list.
            let ok = unsafe {
                QueryInformationJobObject(
                    self.handle(),
                    JobObjectBasicProcessIdList,
                    buffer.as_mut_ptr() as *mut _,
                    (buffer.len() * size_of::<usize>()) as u32,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: the buffer starts with the list's header.
            let list = unsafe { &*(buffer.as_ptr() as *const JOBOBJECT_BASIC_PROCESS_ID_LIST) };
            let assigned = list.NumberOfAssignedProcesses as usize;
            let listed = list.NumberOfProcessIdsInList as usize;
            if ok == 0 {
                let error = last_error();
                if error.raw_os_error() != Some(ERROR_MORE_DATA as i32) {
                    return Err(Error::sys(self.op("list job processes"), error));
                }
            } else if listed >= assigned {
                return Ok(buffer[header_words..header_words + listed.min(capacity)]
                    .iter()
                    .map(|pid| *pid as u32)
                    .collect());
            }
            capacity = assigned.max(capacity) + 64;
        }
    }

    /// CPU times and process counts: class 1, what the reference queries (and all Wine has).
    fn accounting(&self) -> Result<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION> {
        self.query(JobObjectBasicAccountingInformation)
            .map_err(|e| Error::sys(self.op("query job accounting"), e))
    }

    /// Processes still running in the job.
    pub fn active_processes(&self) -> Result<u32> {
        Ok(self.accounting()?.ActiveProcesses)
    }

    /// Terminates every process of the job.
    pub fn terminate(&self, exit_code: u32) -> Result<()> {
        // SAFETY: a valid job handle.
        if unsafe { TerminateJobObject(self.handle(), exit_code) } == 0 {
            let error = last_error();
            if self.active_processes().unwrap_or(1) == 0 {
                return Ok(());
            }
            return Err(Error::sys(self.op("terminate job"), error));
        }
        Ok(())
    }

    /// Gives `process` a handle to the job with `access`, so that the job lives at least as long
    /// as that process.
    pub fn duplicate_into(&self, process: HANDLE, access: u32) -> Result<()> {
        let mut target: HANDLE = std::ptr::null_mut();
        // SAFETY: valid source and target process handles; the target handle stays in
        // `process`.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                self.handle(),
                process,
                &mut target,
                access,
                0,
                0,
            )
        };
        if ok == 0 {
            return Err(Error::sys(
                self.op("hand the job to its init process"),
                last_error(),
            ));
        }
        Ok(())
    }

    /// The private working sets of the job's processes, summed, as the reference reports the
    /// container's memory; a process that exits meanwhile counts as nothing.
    fn private_working_set(&self) -> u64 {
        let Ok(pids) = self.pids() else {
            return 0;
        };
        pids.into_iter()
            .filter_map(|pid| {
                // SAFETY: plain call.
                let process =
                    owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
                let mut counters = PROCESS_MEMORY_COUNTERS_EX2 {
                    cb: size_of::<PROCESS_MEMORY_COUNTERS_EX2>() as u32,
                    ..Default::default()
                };
                // SAFETY: a valid handle and a structure of the size given.
                let ok = unsafe {
                    K32GetProcessMemoryInfo(
                        raw(&process),
                        &mut counters as *mut PROCESS_MEMORY_COUNTERS_EX2 as *mut _,
                        counters.cb,
                    )
                };
                (ok != 0).then_some(counters.PrivateWorkingSetSize as u64)
            })
            .sum()
    }

    /// Usage figures: CPU time, job commit (now and peak), active processes, storage I/O.
    pub fn stats(&self) -> Result<JobStats> {
        let basic = &self.accounting()?;
        let limits = self.extended()?;
        let user = basic.TotalUserTime.max(0) as u64 * 100;
        let kernel = basic.TotalKernelTime.max(0) as u64 * 100;
        let mut stats = JobStats {
            cpu_usage_ns: user + kernel,
            cpu_user_ns: user,
            cpu_system_ns: kernel,
            pids_current: u64::from(basic.ActiveProcesses),
            memory_peak_bytes: limits.PeakJobMemoryUsed as u64,
            ..JobStats::default()
        };
        let flags = limits.BasicLimitInformation.LimitFlags;
        if flags & JOB_OBJECT_LIMIT_JOB_MEMORY != 0 {
            stats.memory_limit_bytes = limits.JobMemoryLimit as u64;
        }
        if flags & JOB_OBJECT_LIMIT_ACTIVE_PROCESS != 0 {
            stats.pids_limit = u64::from(limits.BasicLimitInformation.ActiveProcessLimit);
        }
        if let Ok(memory) = self.query::<JobMemoryUsage>(JOB_OBJECT_MEMORY_USAGE_INFORMATION) {
            stats.memory_usage_bytes = memory.job_memory;
            stats.memory_peak_bytes = memory.peak_job_memory_used;
        }
        stats.memory_private_working_set_bytes = self.private_working_set();
        let mut io_info = JOBOBJECT_IO_ATTRIBUTION_INFORMATION {
            ControlFlags: JOBOBJECT_IO_ATTRIBUTION_CONTROL_ENABLE as u32,
            ..Default::default()
        };
        match self.query_into(JOB_OBJECT_IO_ATTRIBUTION, &mut io_info) {
            Ok(()) => {
                stats.io_read_ops = io_info.ReadStats.IoCount as u64;
                stats.io_read_bytes = io_info.ReadStats.TotalSize;
                stats.io_write_ops = io_info.WriteStats.IoCount as u64;
                stats.io_write_bytes = io_info.WriteStats.TotalSize;
            }
            Err(_) => {
                // Without storage attribution: all of the job's I/O, where the host has it.
                if let Ok(accounting) = self.query::<JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION>(
                    JobObjectBasicAndIoAccountingInformation,
                ) {
                    let counters = &accounting.IoInfo;
                    stats.io_read_ops = counters.ReadOperationCount;
                    stats.io_read_bytes = counters.ReadTransferCount;
                    stats.io_write_ops = counters.WriteOperationCount;
                    stats.io_write_bytes = counters.WriteTransferCount;
                }
            }
        }
        Ok(stats)
    }
}

/// Wakes waiters when the job reports a process exit or that it has no process left. A thread
/// drains the job's completion port (so its messages never pile up) and bumps a counter.
#[derive(Debug)]
pub struct Notifier {
    port: OwnedHandle,
    events: Arc<(Mutex<u64>, Condvar)>,
}

const STOP_KEY: usize = usize::MAX;
const JOB_KEY: usize = 1;

impl Notifier {
    /// Associates a new completion port with `job` and starts draining it.
    pub fn start(job: &Job) -> Result<Notifier> {
        // SAFETY: a new port, not tied to a file.
        let port = unsafe {
            CreateIoCompletionPort(
                windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE,
                std::ptr::null_mut(),
                0,
                1,
            )
        };
        let port = owned(port).ok_or_else(|| Error::sys("CreateIoCompletionPort", last_error()))?;
        let association = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
            CompletionKey: JOB_KEY as *mut _,
            CompletionPort: raw(&port),
        };
        job.set(JobObjectAssociateCompletionPortInformation, &association)
            .map_err(|e| Error::sys(job.op("associate a completion port"), e))?;
        let thread_port = port
            .try_clone()
            .map_err(|e| Error::sys("duplicate the completion port", e))?;
        let events = Arc::new((Mutex::new(0u64), Condvar::new()));
        let thread_events = Arc::clone(&events);
        std::thread::Builder::new()
            .name(format!("{}-events", job.name()))
            .spawn(move || drain(thread_port, thread_events))
            .map_err(|e| Error::sys("start the job event thread", e))?;
        Ok(Notifier { port, events })
    }

    /// Waits until the job sends a message or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let (lock, signal) = &*self.events;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = signal
            .wait_timeout_while(guard, timeout, |count| *count == seen)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    pub fn count(&self) -> u64 {
        *self.events.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // SAFETY: a valid port; the thread exits on this key and closes its own copy.
        unsafe { PostQueuedCompletionStatus(raw(&self.port), 0, STOP_KEY, std::ptr::null()) };
    }
}

fn drain(port: OwnedHandle, events: Arc<(Mutex<u64>, Condvar)>) {
    loop {
        let mut message = 0u32;
        let mut key = 0usize;
        let mut overlapped: *mut OVERLAPPED = std::ptr::null_mut();
        // SAFETY: out-parameters are valid; the port handle is owned by this thread.
        let ok = unsafe {
            GetQueuedCompletionStatus(
                raw(&port),
                &mut message,
                &mut key,
                &mut overlapped,
                INFINITE,
            )
        };
        if ok == 0 && overlapped.is_null() {
            // Nothing was dequeued: the port itself failed (closed, or an error that a retry
            // would only repeat, spinning). Waiters fall back to polling.
            let error = last_error();
            if error.raw_os_error() != Some(ERROR_ABANDONED_WAIT_0 as i32) {
                log::debug!("job events: the completion port failed: {error}");
            }
            return;
        }
        if key == STOP_KEY {
            return;
        }
        let (lock, signal) = &*events;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        signal.notify_all();
    }
}

/// Waits until `job` has no process left, waking on its notifier when this process has one and
/// polling otherwise. False on timeout.
pub fn wait_empty(job: &Job, notifier: Option<&Notifier>, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = notifier.map(Notifier::count).unwrap_or_default();
        if job.active_processes()? == 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let slice = (deadline - now).min(Duration::from_millis(if notifier.is_some() {
            250
        } else {
            25
        }));
        match notifier {
            Some(notifier) => {
                notifier.wait(seen, slice);
            }
            None => std::thread::sleep(slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_reader_stops_on_a_port_that_keeps_failing() {
        // A handle to a completion port without the right to dequeue: every dequeue fails at
        // once with "access denied".
        // SAFETY: a new port, not tied to a file.
        let port = owned(unsafe {
            CreateIoCompletionPort(
                windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE,
                std::ptr::null_mut(),
                0,
                1,
            )
        })
        .expect("a completion port");
        let mut weak: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicating a valid handle within this process, with SYNCHRONIZE only.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                raw(&port),
                GetCurrentProcess(),
                &mut weak,
                windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE,
                0,
                0,
            )
        };
        assert_ne!(ok, 0, "duplicate the port");
        let weak = owned(weak).expect("the duplicate");
        let events = Arc::new((Mutex::new(0u64), Condvar::new()));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drain(weak, events);
            let _ = done.send(());
        });
        // Generous: the reader either returns at once or retries forever.
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the reader keeps retrying a failing port"
        );
    }
}
