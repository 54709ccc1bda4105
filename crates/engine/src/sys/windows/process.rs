//! Processes of a container: created with `CreateProcessAsUserW` as the container's account,
//! placed in the job at creation (`PROC_THREAD_ATTRIBUTE_JOB_LIST`, so no instant runs outside
//! it), inheriting only their standard handles (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`) or attached
//! to a pseudo console; and what is done to them afterwards: checks, signals, suspension.

use std::collections::HashSet;
use std::ffi::c_void;
use std::io;
use std::mem::size_of;
use std::os::windows::io::OwnedHandle;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, ERROR_ACCESS_DENIED, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER,
    FILETIME, GENERIC_READ, GENERIC_WRITE, HANDLE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING, SYNCHRONIZE,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::IsProcessInJob;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{
    CreateProcessAsUserW, CreateRemoteThread, DeleteProcThreadAttributeList, GetCurrentProcess,
    GetExitCodeProcess, GetProcessIdOfThread, GetProcessTimes, InitializeProcThreadAttributeList,
    IsWow64Process, OpenProcess, OpenThread, ResumeThread, SuspendThread, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject, CREATE_BREAKAWAY_FROM_JOB, CREATE_NO_WINDOW,
    CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, EXTENDED_STARTUPINFO_PRESENT,
    LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_CREATE_THREAD, PROCESS_INFORMATION,
    PROCESS_QUERY_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
    PROCESS_VM_OPERATION, PROCESS_VM_READ, PROCESS_VM_WRITE, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROC_THREAD_ATTRIBUTE_JOB_LIST, PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE, STARTF_USESTDHANDLES,
    STARTUPINFOEXW, THREAD_QUERY_LIMITED_INFORMATION, THREAD_SUSPEND_RESUME,
};

use super::console::PseudoConsole;
use super::job::Job;
use super::win::{filetime, last_error, owned, raw, wide};
use crate::error::{Error, Result};
use crate::sys::winlogic::env::environment_block;
use crate::sys::winlogic::signal::TERMINATED_EXIT_CODE;
use crate::sys::ProcessInfo;

const WAIT_TIMEOUT: u32 = 258;
const WAIT_OBJECT_0: u32 = 0;
/// What `CreateRemoteThread` needs of the target.
const REMOTE_THREAD_ACCESS: u32 = PROCESS_CREATE_THREAD
    | PROCESS_TERMINATE
    | PROCESS_QUERY_INFORMATION
    | PROCESS_VM_OPERATION
    | PROCESS_VM_WRITE
    | PROCESS_VM_READ;

/// Standard I/O of the new process: its ends of the caller's pipes, or a pseudo console.
pub enum ProcessIo {
    Handles {
        stdin: Option<OwnedHandle>,
        stdout: Option<OwnedHandle>,
        stderr: Option<OwnedHandle>,
    },
    Console(PseudoConsole),
}

/// Everything `CreateProcessAsUserW` is given.
pub struct Launch<'a> {
    pub token: HANDLE,
    /// The image, as this process sees it (a host path).
    pub application: &'a str,
    pub command_line: &'a str,
    pub env: &'a [String],
    pub cwd: &'a str,
    pub job: &'a Job,
    pub io: ProcessIo,
    /// Created with its main thread suspended, for [`resume_thread`].
    pub suspended: bool,
}

/// A process just created.
pub struct Launched {
    pub info: ProcessInfo,
    pub thread_id: u32,
    pub process: OwnedHandle,
    pub console: Option<PseudoConsole>,
}

/// A `PROC_THREAD_ATTRIBUTE_LIST`, deleted on drop.
struct AttributeList {
    buffer: Vec<usize>,
}

impl AttributeList {
    fn new(count: u32) -> Result<AttributeList> {
        let mut size = 0usize;
        // SAFETY: the sizing call with a null list, as documented.
        let ok =
            unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), count, 0, &mut size) };
        if ok == 0 {
            let error = last_error();
            if error.raw_os_error() != Some(ERROR_INSUFFICIENT_BUFFER as i32) {
                return Err(Error::sys("InitializeProcThreadAttributeList", error));
            }
        }
        let mut list = AttributeList {
            buffer: vec![0usize; size.div_ceil(size_of::<usize>()).max(1)],
        };
        // SAFETY: the buffer has the size asked for.
        let ok = unsafe { InitializeProcThreadAttributeList(list.as_ptr(), count, 0, &mut size) };
        if ok == 0 {
            list.buffer.clear();
            return Err(Error::sys(
                "InitializeProcThreadAttributeList",
                last_error(),
            ));
        }
        Ok(list)
    }

    fn as_ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buffer.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST
    }

    /// # Safety
    /// `value` must stay valid until the process is created.
    unsafe fn set(&mut self, attribute: u32, value: *const c_void, size: usize) -> Result<()> {
        let ok = UpdateProcThreadAttribute(
            self.as_ptr(),
            0,
            attribute as usize,
            value,
            size,
            std::ptr::null_mut(),
            std::ptr::null(),
        );
        if ok == 0 {
            return Err(Error::sys("UpdateProcThreadAttribute", last_error()));
        }
        Ok(())
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            // SAFETY: the list was initialized.
            unsafe { DeleteProcThreadAttributeList(self.as_ptr()) };
        }
    }
}

/// An inheritable copy of `handle`.
fn inheritable(handle: HANDLE) -> Result<OwnedHandle> {
    let mut copy: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicating a valid handle within this process.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle,
            GetCurrentProcess(),
            &mut copy,
            0,
            1,
            windows_sys::Win32::Foundation::DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(Error::sys("duplicate a standard handle", last_error()));
    }
    owned(copy).ok_or_else(|| Error::sys("duplicate a standard handle", last_error()))
}

/// An inheritable handle to `NUL`.
pub fn null_device() -> Result<OwnedHandle> {
    let name = wide("NUL");
    let security = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: 1,
    };
    // SAFETY: a NUL-terminated name and valid attributes.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            &security,
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    owned(handle).ok_or_else(|| Error::sys("open NUL", last_error()))
}

fn in_any_job() -> bool {
    let mut result = 0;
    // SAFETY: a null job asks about any job.
    let ok = unsafe { IsProcessInJob(GetCurrentProcess(), std::ptr::null_mut(), &mut result) };
    ok != 0 && result != 0
}

/// Creates the process. `CREATE_BREAKAWAY_FROM_JOB` lets it leave a job the runtime itself runs
/// in (as the reference does); when that job forbids breaking away, the process is created
/// inside it too.
pub fn launch(launch: Launch<'_>) -> Result<Launched> {
    let Launch {
        token,
        application,
        command_line,
        env,
        cwd,
        job,
        io,
        suspended,
    } = launch;
    let (std_handles, console) = match io {
        ProcessIo::Handles {
            stdin,
            stdout,
            stderr,
        } => {
            let mut handles = Vec::with_capacity(3);
            for stream in [stdin, stdout, stderr] {
                handles.push(match stream {
                    Some(h) => inheritable(raw(&h))?,
                    None => null_device()?,
                });
            }
            (handles, None)
        }
        ProcessIo::Console(console) => (Vec::new(), Some(console)),
    };
    let handle_values: Vec<HANDLE> = std_handles.iter().map(raw).collect();
    let job_handles: [HANDLE; 1] = [job.handle()];

    let count = 1 + u32::from(!handle_values.is_empty()) + u32::from(console.is_some());
    let mut attributes = AttributeList::new(count)?;
    // SAFETY: every value outlives the CreateProcessAsUserW call below.
    unsafe {
        attributes.set(
            PROC_THREAD_ATTRIBUTE_JOB_LIST,
            job_handles.as_ptr() as *const c_void,
            size_of::<HANDLE>(),
        )?;
        if !handle_values.is_empty() {
            attributes.set(
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                handle_values.as_ptr() as *const c_void,
                handle_values.len() * size_of::<HANDLE>(),
            )?;
        }
        if let Some(console) = &console {
            // The pseudo console attribute takes the handle itself as its value.
            attributes.set(
                PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE,
                console.handle() as *const c_void,
                size_of::<isize>(),
            )?;
        }
    }

    // SAFETY: STARTUPINFOEXW is plain data; all-zero is its empty value.
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    if let [stdin, stdout, stderr] = handle_values[..] {
        startup.StartupInfo.hStdInput = stdin;
        startup.StartupInfo.hStdOutput = stdout;
        startup.StartupInfo.hStdError = stderr;
    }
    startup.lpAttributeList = attributes.as_ptr();

    let mut flags =
        EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT | CREATE_BREAKAWAY_FROM_JOB;
    if suspended {
        flags |= CREATE_SUSPENDED;
    }
    if console.is_none() {
        // A console of its own, without a window: never the runtime's console.
        flags |= CREATE_NO_WINDOW;
    }
    let application_w = wide(application);
    let cwd_w = wide(cwd);
    let env_block = environment_block(env);
    let inherit = i32::from(!handle_values.is_empty());

    let create = |flags: u32| -> std::result::Result<PROCESS_INFORMATION, io::Error> {
        let mut command_w = wide(command_line);
        // SAFETY: PROCESS_INFORMATION is plain data.
        let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: every pointer is valid and NUL-terminated where required; the command line
        // is a writable buffer as the call requires.
        let ok = unsafe {
            CreateProcessAsUserW(
                token,
                application_w.as_ptr(),
                command_w.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                inherit,
                flags,
                env_block.as_ptr() as *const c_void,
                cwd_w.as_ptr(),
                &startup.StartupInfo,
                &mut info,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(info)
    };
    let info = match create(flags) {
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) && in_any_job() => {
            log::warn!(
                "the runtime's own job does not allow breaking away: {application} starts inside it as well"
            );
            create(flags & !CREATE_BREAKAWAY_FROM_JOB)
        }
        other => other,
    }
    .map_err(|e| Error::sys(format!("failed to start process {application:?} (command line {command_line:?})"), e))?;
    drop(std_handles);

    let process =
        owned(info.hProcess).ok_or_else(|| Error::sys("CreateProcessAsUserW", last_error()))?;
    // The main thread is resumed by id (possibly from another process): no handle is kept.
    drop(owned(info.hThread));
    let start_time = creation_time(raw(&process)).inspect_err(|_| abandon(raw(&process)))?;
    Ok(Launched {
        info: ProcessInfo {
            pid: info.dwProcessId,
            start_time,
        },
        thread_id: info.dwThreadId,
        process,
        console,
    })
}

/// Ends a process just created whose launch failed in a later step, so that no process the
/// caller was told failed is left in the job (suspended, or running unasked).
pub fn abandon(process: HANDLE) {
    // SAFETY: a valid process handle with PROCESS_TERMINATE (the creator's handle has all rights).
    if unsafe { TerminateProcess(process, TERMINATED_EXIT_CODE) } == 0 && !has_exited(process) {
        log::warn!(
            "a process whose launch failed could not be terminated: {}",
            last_error()
        );
    }
}

fn process_times(process: HANDLE) -> Result<[FILETIME; 4]> {
    let mut times = [FILETIME::default(); 4];
    let [created, exited, kernel, user] = &mut times;
    // SAFETY: valid out-parameters.
    let ok = unsafe { GetProcessTimes(process, created, exited, kernel, user) };
    if ok == 0 {
        return Err(Error::sys("GetProcessTimes", last_error()));
    }
    Ok(times)
}

/// When the process was created (FILETIME as one number).
pub fn creation_time(process: HANDLE) -> Result<u64> {
    Ok(filetime(process_times(process)?[0]))
}

/// Has the process never run (created suspended and not released: no CPU time at all)? Such a
/// process has no console handlers yet, and a thread started in it would run before the
/// loader, so a control event terminates it instead.
fn never_ran(process: HANDLE) -> bool {
    process_times(process).is_ok_and(|t| filetime(t[2]) == 0 && filetime(t[3]) == 0)
}

fn not_found(pid: u32) -> Error {
    Error::sys(
        format!("process {pid}"),
        io::Error::new(io::ErrorKind::NotFound, "the process has exited"),
    )
}

/// Opens the container's process `info` (not another process that reused its pid); `None` when
/// it is gone.
pub fn open(info: &ProcessInfo, access: u32) -> Result<Option<OwnedHandle>> {
    // SAFETY: plain call.
    let handle = unsafe { OpenProcess(access | PROCESS_QUERY_LIMITED_INFORMATION, 0, info.pid) };
    let Some(handle) = owned(handle) else {
        let error = last_error();
        if error.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
            return Ok(None);
        }
        return Err(Error::sys(format!("open process {}", info.pid), error));
    };
    if creation_time(raw(&handle))? != info.start_time {
        return Ok(None);
    }
    Ok(Some(handle))
}

/// Opens a process of the job by pid, checking that it is still in the job.
fn open_in_job(pid: u32, job: &Job, access: u32) -> Option<OwnedHandle> {
    // SAFETY: plain call.
    let handle = owned(unsafe { OpenProcess(access | PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut inside = 0;
    // SAFETY: valid handles and out-parameter.
    let ok = unsafe { IsProcessInJob(raw(&handle), job.handle(), &mut inside) };
    (ok != 0 && inside != 0).then_some(handle)
}

/// Has the process exited? (A wait of zero on its handle.)
pub fn has_exited(process: HANDLE) -> bool {
    // SAFETY: a valid process handle.
    let state = unsafe { WaitForSingleObject(process, 0) };
    state != WAIT_TIMEOUT
}

pub fn is_running(info: &ProcessInfo) -> bool {
    match open(info, SYNCHRONIZE) {
        Ok(Some(handle)) => !has_exited(raw(&handle)),
        Ok(None) => false,
        // It exists but cannot be inspected: it is running as far as anyone here can tell.
        Err(_) => true,
    }
}

/// Waits for the process to exit (forever with `None`) and returns its exit code; `None` on
/// timeout.
pub fn wait_exit(process: HANDLE, timeout_ms: u32) -> Result<Option<u32>> {
    // SAFETY: a valid process handle.
    match unsafe { WaitForSingleObject(process, timeout_ms) } {
        WAIT_OBJECT_0 => {
            let mut code = 0u32;
            // SAFETY: valid out-parameter.
            if unsafe { GetExitCodeProcess(process, &mut code) } == 0 {
                return Err(Error::sys("GetExitCodeProcess", last_error()));
            }
            Ok(Some(code))
        }
        WAIT_TIMEOUT => Ok(None),
        _ => Err(Error::sys("wait for process", last_error())),
    }
}

/// `TerminateProcess` with the reference's exit code.
pub fn terminate(info: &ProcessInfo) -> Result<()> {
    let handle = open(info, PROCESS_TERMINATE | SYNCHRONIZE)?.ok_or_else(|| not_found(info.pid))?;
    // SAFETY: a valid handle with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(raw(&handle), TERMINATED_EXIT_CODE) } == 0
        && !has_exited(raw(&handle))
    {
        return Err(Error::sys(
            format!("terminate process {}", info.pid),
            last_error(),
        ));
    }
    Ok(())
}

/// Checks that the process still exists (signal 0).
pub fn probe(info: &ProcessInfo) -> Result<()> {
    match open(info, SYNCHRONIZE)? {
        Some(handle) if !has_exited(raw(&handle)) => Ok(()),
        _ => Err(not_found(info.pid)),
    }
}

/// `kernel32!CtrlRoutine`, the routine a console runs for a control event. kernel32 is mapped
/// at the same address in every process of a boot, so this process's address is valid in the
/// target too.
fn ctrl_routine() -> Option<usize> {
    static ROUTINE: OnceLock<Option<usize>> = OnceLock::new();
    *ROUTINE.get_or_init(|| {
        let module = wide("kernel32.dll");
        // SAFETY: kernel32 is always loaded; the names are NUL-terminated.
        unsafe {
            let kernel32 = GetModuleHandleW(module.as_ptr());
            if kernel32.is_null() {
                return None;
            }
            GetProcAddress(kernel32, c"CtrlRoutine".as_ptr() as *const u8).map(|f| f as usize)
        }
    })
}

/// Delivers a console control event by starting `CtrlRoutine(event)` in the process, the
/// reference's way: `GenerateConsoleCtrlEvent` only reaches processes sharing the caller's
/// console and only for CTRL_C and CTRL_BREAK, and container processes share no console with
/// the runtime. A process without handlers exits, as on a real shutdown.
fn send_control(process: HANDLE, pid: u32, event: u32) -> Result<()> {
    if never_ran(process) {
        // SAFETY: a valid handle; the rights include PROCESS_TERMINATE.
        if unsafe { TerminateProcess(process, TERMINATED_EXIT_CODE) } == 0 && !has_exited(process) {
            return Err(Error::sys(format!("terminate process {pid}"), last_error()));
        }
        return Ok(());
    }
    let routine = ctrl_routine().ok_or_else(|| {
        Error::sys(
            "find kernel32!CtrlRoutine",
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this Windows has no CtrlRoutine export",
            ),
        )
    })?;
    if cfg!(target_pointer_width = "64") {
        let mut wow64 = 0;
        // SAFETY: valid handle and out-parameter.
        if unsafe { IsWow64Process(process, &mut wow64) } != 0 && wow64 != 0 {
            return Err(Error::sys(
                format!("signal process {pid}"),
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "it is a 32-bit process, whose console routine this 64-bit runtime cannot call; use SIGKILL",
                ),
            ));
        }
    }
    // SAFETY: `routine` is the address of CtrlRoutine, a thread routine taking the event as its
    // parameter.
    let start = unsafe {
        std::mem::transmute::<usize, unsafe extern "system" fn(*mut c_void) -> u32>(routine)
    };
    // SAFETY: a valid process handle with the rights CreateRemoteThread needs.
    let thread = unsafe {
        CreateRemoteThread(
            process,
            std::ptr::null(),
            0,
            Some(start),
            event as usize as *const c_void,
            0,
            std::ptr::null_mut(),
        )
    };
    owned(thread).map(drop).ok_or_else(|| {
        Error::sys(
            format!("send console event {event} to process {pid}"),
            last_error(),
        )
    })
}

/// Sends a console control event to one process of the container.
pub fn control(info: &ProcessInfo, event: u32) -> Result<()> {
    let handle =
        open(info, REMOTE_THREAD_ACCESS | SYNCHRONIZE)?.ok_or_else(|| not_found(info.pid))?;
    if has_exited(raw(&handle)) {
        return Err(not_found(info.pid));
    }
    send_control(raw(&handle), info.pid, event)
}

/// Sends a console control event to every process of the job; a process that has just exited
/// or cannot take the event is skipped (the caller's SIGKILL after the grace period covers it).
pub fn control_job(job: &Job, event: u32) -> Result<()> {
    for pid in job.pids()? {
        let Some(handle) = open_in_job(pid, job, REMOTE_THREAD_ACCESS) else {
            continue;
        };
        if let Err(e) = send_control(raw(&handle), pid, event) {
            log::debug!("job {}: {e}", job.name());
        }
    }
    Ok(())
}

/// Resumes the held main thread of `pid`; a thread that was not suspended stays as it is.
pub fn resume_thread(pid: u32, thread_id: u32) -> Result<()> {
    // SAFETY: plain call.
    let thread = owned(unsafe {
        OpenThread(
            THREAD_SUSPEND_RESUME | THREAD_QUERY_LIMITED_INFORMATION,
            0,
            thread_id,
        )
    })
    .ok_or_else(|| {
        Error::sys(
            format!("open thread {thread_id} of process {pid}"),
            last_error(),
        )
    })?;
    // SAFETY: a valid thread handle.
    if unsafe { GetProcessIdOfThread(raw(&thread)) } != pid {
        return Err(Error::sys(
            format!("resume process {pid}"),
            io::Error::new(io::ErrorKind::NotFound, "its main thread is gone"),
        ));
    }
    // SAFETY: a valid thread handle with THREAD_SUSPEND_RESUME.
    if unsafe { ResumeThread(raw(&thread)) } == u32::MAX {
        return Err(Error::sys(format!("resume process {pid}"), last_error()));
    }
    Ok(())
}

/// The threads of the given processes, from one snapshot.
fn threads_of(pids: &HashSet<u32>) -> Result<Vec<(u32, u32)>> {
    // SAFETY: plain call.
    let snapshot = owned(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) })
        .ok_or_else(|| Error::sys("CreateToolhelp32Snapshot", last_error()))?;
    let mut entry = THREADENTRY32 {
        dwSize: size_of::<THREADENTRY32>() as u32,
        ..Default::default()
    };
    let mut threads = Vec::new();
    // SAFETY: a valid snapshot and an entry with its size set.
    let mut more = unsafe { Thread32First(raw(&snapshot), &mut entry) } != 0;
    while more {
        if pids.contains(&entry.th32OwnerProcessID) {
            threads.push((entry.th32OwnerProcessID, entry.th32ThreadID));
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(raw(&snapshot), &mut entry) } != 0;
    }
    Ok(threads)
}

/// Suspends every thread of the job's processes, again until no new process or thread shows
/// up, and returns the threads it suspended (pid, tid) so that exactly those are resumed.
pub fn suspend_job(job: &Job) -> Result<Vec<(u32, u32)>> {
    let mut suspended: Vec<(u32, u32)> = Vec::new();
    let mut done: HashSet<u32> = HashSet::new();
    for _ in 0..16 {
        let pids: HashSet<u32> = job.pids()?.into_iter().collect();
        let mut new = 0;
        for (pid, tid) in threads_of(&pids)? {
            if !done.insert(tid) {
                continue;
            }
            // SAFETY: plain call.
            let Some(thread) = owned(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, tid) }) else {
                continue;
            };
            // SAFETY: a valid thread handle.
            if unsafe { SuspendThread(raw(&thread)) } != u32::MAX {
                suspended.push((pid, tid));
                new += 1;
            }
        }
        if new == 0 {
            return Ok(suspended);
        }
    }
    Ok(suspended)
}

/// Resumes threads [`suspend_job`] suspended; threads that have exited are skipped.
pub fn resume_threads(threads: &[(u32, u32)]) {
    for (pid, tid) in threads {
        // SAFETY: plain call.
        let Some(thread) = owned(unsafe {
            OpenThread(
                THREAD_SUSPEND_RESUME | THREAD_QUERY_LIMITED_INFORMATION,
                0,
                *tid,
            )
        }) else {
            continue;
        };
        // SAFETY: a valid thread handle.
        if unsafe { GetProcessIdOfThread(raw(&thread)) } == *pid {
            // SAFETY: as above.
            unsafe { ResumeThread(raw(&thread)) };
        }
    }
}
