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
