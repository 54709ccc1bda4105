//! What this process holds for the containers it created: the job handle (the job is killed
//! when its last handle closes), the job's notifier, the account's token, and the handles and
//! pseudo consoles of the processes it started. Other processes (a later CLI call) open the job
//! by name and log the account on again.

use std::collections::HashMap;
use std::os::windows::io::OwnedHandle;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use windows_sys::Win32::System::Threading::INFINITE;

use super::console::PseudoConsole;
use super::job::{Job, Notifier};
use super::process::{self, Launched};
use super::win::raw;
use crate::sys::ProcessInfo;

pub struct LiveProcess {
    pub start_time: u64,
    pub handle: Arc<OwnedHandle>,
    pub console: Option<PseudoConsole>,
}

pub struct LiveContainer {
    pub job: Arc<Job>,
    pub notifier: Option<Arc<Notifier>>,
    pub token: Option<Arc<OwnedHandle>>,
    pub processes: HashMap<u32, LiveProcess>,
}

static LIVE: LazyLock<Mutex<HashMap<String, LiveContainer>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn live() -> MutexGuard<'static, HashMap<String, LiveContainer>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn insert(id: &str, job: Arc<Job>, notifier: Option<Arc<Notifier>>) {
    live().insert(
        id.to_string(),
        LiveContainer {
            job,
            notifier,
            token: None,
            processes: HashMap::new(),
        },
    );
}

pub fn remove(id: &str) -> Option<LiveContainer> {
    live().remove(id)
}

/// A container's job and, in the process that made it, its notifier.
pub type JobHandles = (Arc<Job>, Option<Arc<Notifier>>);

pub fn job(id: &str) -> Option<JobHandles> {
    live()
        .get(id)
        .map(|c| (Arc::clone(&c.job), c.notifier.clone()))
}

pub fn token(id: &str) -> Option<Arc<OwnedHandle>> {
    live().get(id).and_then(|c| c.token.clone())
}

pub fn set_token(id: &str, token: Arc<OwnedHandle>) {
    if let Some(container) = live().get_mut(id) {
        container.token = Some(token);
    }
}

/// Keeps a new process's handle (for its exit code) and console; the console is closed when the
/// process exits. The process is registered before its exit is waited for, so a process that
/// exits at once still has its console closed.
pub fn add_process(id: &str, launched: Launched) {
    let Launched {
        info,
        process,
        console,
        ..
    } = launched;
    let handle = Arc::new(process);
    let has_console = console.is_some();
    match live().get_mut(id) {
        Some(container) => {
            container.processes.insert(
                info.pid,
                LiveProcess {
                    start_time: info.start_time,
                    handle: Arc::clone(&handle),
                    console,
                },
            );
        }
        // Not this process's container: nothing to keep, and the console closes here.
        None => return,
    }
    if has_console {
        let owner = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("console-{}", info.pid))
            .spawn(move || {
                let _ = process::wait_exit(raw(&*handle), INFINITE);
                close_console(&owner, &info);
            });
        if let Err(e) = spawned {
            log::warn!(
                "container {id}: no thread to close the pseudo console of process {}: {e}",
                info.pid
            );
        }
    }
}

/// Closes the pseudo console of `info` (its last output reaches the reader; the reader then
/// sees the end).
fn close_console(id: &str, info: &ProcessInfo) {
    let console = live()
        .get_mut(id)
        .and_then(|c| c.processes.get_mut(&info.pid))
        .filter(|p| p.start_time == info.start_time)
        .and_then(|p| p.console.take());
    drop(console);
}

/// The handle this process keeps for `info`, if it started it.
pub fn process_handle(info: &ProcessInfo) -> Option<Arc<OwnedHandle>> {
    live().values().find_map(|c| {
        c.processes
            .get(&info.pid)
            .filter(|p| p.start_time == info.start_time)
            .map(|p| Arc::clone(&p.handle))
    })
}

/// Runs `f` with the pseudo console of `info` in container `id`.
pub fn with_console<T>(
    id: &str,
    info: &ProcessInfo,
    f: impl FnOnce(&PseudoConsole) -> T,
) -> Option<T> {
    let live = live();
    let process = live.get(id)?.processes.get(&info.pid)?;
    if process.start_time != info.start_time {
        return None;
    }
    process.console.as_ref().map(f)
}

/// Drops what is kept for `info`.
pub fn forget(id: &str, info: &ProcessInfo) {
    let removed = live().get_mut(id).and_then(|c| {
        let matches = c
            .processes
            .get(&info.pid)
            .is_some_and(|p| p.start_time == info.start_time);
        if matches {
            c.processes.remove(&info.pid)
        } else {
            None
        }
    });
    drop(removed);
}

#[cfg(test)]
mod tests {
    //! A process that exits at once kept its pseudo console open when the thread that waits
    //! for its exit (and then closes the console) started before the process was registered:
    //! the waiter could find nothing to close. What is tested is the order itself: while
    //! registration cannot happen (the registry's lock is held), no exit waiter of the process
    //! may exist. The waiter is found by its thread name, and the test first checks that thread
    //! names can be read at all, so it cannot pass by seeing nothing. Then, as a consequence,
    //! the console of a process that had exited before it was handed over is closed; that check
    //! alone does not catch the wrong order (the registering thread almost always takes the
    //! lock first), hence the first. Whether the console's output ends for a reader is not
    //! checked: Wine's ConPTY writes nothing.
    use std::io::Read;
    use std::os::windows::io::OwnedHandle;
    use std::time::{Duration, Instant};

    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcessId, GetThreadDescription, OpenThread, THREAD_QUERY_LIMITED_INFORMATION,
    };

    use super::*;
    use crate::sys::windows::console::PseudoConsole;

    /// The names of this process's threads (those that have one).
    fn thread_names() -> Vec<String> {
        // SAFETY: a snapshot of every thread of the system, closed below.
        let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
        assert_ne!(snapshot, INVALID_HANDLE_VALUE, "thread snapshot");
        // SAFETY: plain data; dwSize is set as the API requires.
        let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
        entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
        // SAFETY: no arguments.
        let me = unsafe { GetCurrentProcessId() };
        let mut names = Vec::new();
        // SAFETY: a live snapshot and an entry of the declared size.
        let mut more = unsafe { Thread32First(snapshot, &mut entry) } != 0;
        while more {
            if entry.th32OwnerProcessID == me {
                names.extend(thread_name(entry.th32ThreadID));
            }
            // SAFETY: as above.
            more = unsafe { Thread32Next(snapshot, &mut entry) } != 0;
        }
        // SAFETY: the snapshot is closed once.
        unsafe { CloseHandle(snapshot) };
        names
    }

    fn thread_name(thread_id: u32) -> Option<String> {
        // SAFETY: opening a thread of this process for a query; closed below.
        let thread = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, thread_id) };
        if thread.is_null() {
            return None;
        }
        let mut text: windows_sys::core::PWSTR = std::ptr::null_mut();
        // SAFETY: a valid thread handle and out-parameter.
        let hr = unsafe { GetThreadDescription(thread, &mut text) };
        // SAFETY: closed once.
        unsafe { CloseHandle(thread) };
        if hr < 0 || text.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string the call allocated, freed once after it is read.
        let name = unsafe {
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            let name = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast());
            name
        };
        (!name.is_empty()).then_some(name)
    }

    /// A process that has exited, handed over as a launch hands it over, with a pseudo console;
    /// and the console's output, drained so that the console never blocks on it.
    fn exited_process_with_console() -> Result<Launched, String> {
        let (input, _) = std::io::pipe().map_err(|e| e.to_string())?;
        let (mut output, output_end) = std::io::pipe().map_err(|e| e.to_string())?;
        let console = PseudoConsole::create(
            &OwnedHandle::from(input),
            &OwnedHandle::from(output_end),
            80,
            25,
        )
        .map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = output.read_to_end(&mut sink);
        });
        let mut child = std::process::Command::new("cmd.exe")
            .args(["/c", "exit 0"])
            .spawn()
            .map_err(|e| format!("run cmd.exe: {e}"))?;
        child.wait().map_err(|e| format!("wait for cmd.exe: {e}"))?;
        Ok(Launched {
            info: ProcessInfo {
                pid: child.id(),
                start_time: 1,
            },
            thread_id: 0,
            process: OwnedHandle::from(child),
            console: Some(console),
        })
    }

    #[test]
    fn a_process_is_registered_before_its_exit_is_waited_for_and_its_console_then_closed() {
        const TEST: &str =
            "a_process_is_registered_before_its_exit_is_waited_for_and_its_console_then_closed";
        let sentinel = format!("live-test-sentinel-{}", std::process::id());
        let parked = std::thread::Builder::new()
            .name(sentinel.clone())
            .spawn(std::thread::park)
            .expect("a named thread");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread_names().contains(&sentinel) {
            assert!(
                Instant::now() < deadline,
                "thread names cannot be read here, so the exit waiter could not be seen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        parked.thread().unpark();

        let id = format!("live-order-{}", std::process::id());
        insert(&id, Arc::new(Job::create(&id).expect("a job")), None);
        for round in 0..5 {
            let launched = match exited_process_with_console() {
                Ok(launched) => launched,
                Err(e) if e.contains("CreatePseudoConsole") => {
                    testkit::kernel::skipped(TEST, &e);
                    remove(&id);
                    return;
                }
                Err(e) => panic!("round {round}: {e}"),
            };
            let info = launched.info;
            let waiter = format!("console-{}", info.pid);
            let registering = {
                // While this is held, the process cannot be registered.
                let held = live();
                let owner = id.clone();
                let registering = std::thread::spawn(move || add_process(&owner, launched));
                std::thread::sleep(Duration::from_millis(300));
                assert!(
                    !thread_names().contains(&waiter),
                    "round {round}: the exit waiter of process {} started before the process \
                     was registered: it would find nothing to close",
                    info.pid
                );
                drop(held);
                registering
            };
            registering.join().expect("registration");
            let deadline = Instant::now() + Duration::from_secs(10);
            while with_console(&id, &info, |_| ()).is_some() {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the pseudo console of exited process {} is still open",
                    info.pid
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            forget(&id, &info);
        }
        remove(&id);
    }
}
