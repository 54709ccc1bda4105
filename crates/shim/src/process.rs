//! One process of a container (its init, or an exec): a small state machine
//! `Created → Running → Exited`, its stdio, and a wait channel for `Wait`.
//!
//! # Status models
//!
//! Three status types describe a container: the shim's [`Status`], the engine's live
//! `container::Status` and its persisted `state::Phase`; this table is the one place their
//! mapping is written. The shim answers the Task API's `State` from its [`Status`] and, for a
//! running process, the engine's live status.
//!
//! | Task API   | shim `Status` | engine `Status` (init) | engine `Phase`       |
//! |------------|---------------|------------------------|----------------------|
//! | (none yet) | —             | `Creating`             | `Creating`           |
//! | `CREATED`  | `Created`     | `Created` (init held)  | `Created`            |
//! | `RUNNING`  | `Running`     | `Running`              | `Running`            |
//! | `PAUSED`   | `Running`     | `Paused` (job frozen)  | `Running`            |
//! | `STOPPED`  | `Exited(..)`  | `Stopped`              | `Running`, `Created` |
//!
//! What is genuinely different, and so kept:
//! - `state::Phase` is the lifecycle step a container last completed, saved for other
//!   processes (the CLI, a shim's crash `delete`); `container::Status` is derived from it and
//!   the kernel (is init alive, held, frozen?) on every call, never stored.
//! - The shim's [`Status`] exists for every exec process, which has no engine status, and
//!   carries the exit status and time that only the shim's reaper sees. An init's `Exited` is
//!   recorded once the rest of its job has stopped (§6), so it lags the engine's `Stopped` by
//!   up to the grace period: containerd learns of the exit when nothing of the container
//!   runs. An init's `Created → Running` is set by the same call that has the engine release
//!   it (`Container::start`), so the two cannot disagree.
//! - A pod sandbox has no engine container: its stand-in init goes `Created → Running` at
//!   start and `Exited` on a stopping signal or on delete.
//! - `PAUSED` is not a shim status: a running process reports it while the engine finds its
//!   container paused (an exec too, since pausing freezes the whole job); see
//!   [`Status::task_status`].

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::protos::api::Status as TaskStatus;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use hostprocess_engine::ProcessInfo;

use crate::error::{Error, Result};
use crate::io::StdioPaths;
use crate::sys::ProcessIo;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it.
    pub status: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn now(status: u32) -> Exit {
        Exit {
            status,
            at: SystemTime::now(),
        }
    }

    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from(self.at)
    }
}

/// A process's status as the shim tracks it (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Init: made and held; exec: registered, not started.
    Created,
    Running,
    Exited(Exit),
}

impl Status {
    /// The Task API's status. `paused` (whether the engine finds the container paused) is
    /// asked only of a running process.
    pub fn task_status(self, paused: impl FnOnce() -> bool) -> TaskStatus {
        match self {
            Status::Created => TaskStatus::CREATED,
            Status::Running if paused() => TaskStatus::PAUSED,
            Status::Running => TaskStatus::RUNNING,
            Status::Exited(_) => TaskStatus::STOPPED,
        }
    }
}

/// Called once with the process's exit (see [`Process::on_exit`]).
pub type ExitWaiter = Box<dyn FnOnce(Exit) + Send>;

struct State {
    status: Status,
    info: Option<ProcessInfo>,
    io: Option<ProcessIo>,
    /// Called once the exit is recorded.
    waiters: Vec<ExitWaiter>,
}

pub struct Process {
    /// The exec id; empty for the init process.
    pub exec_id: String,
    pub stdio: StdioPaths,
    state: Mutex<State>,
    exited: Condvar,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            stdio,
            state: Mutex::new(State {
                status: Status::Created,
                info: None,
                io: None,
                waiters: Vec::new(),
            }),
            exited: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// 0 until the process exists.
    pub fn pid(&self) -> u32 {
        self.lock().info.map_or(0, |i| i.pid)
    }

    pub fn info(&self) -> Option<ProcessInfo> {
        self.lock().info
    }

    pub fn exit(&self) -> Option<Exit> {
        match self.lock().status {
            Status::Exited(exit) => Some(exit),
            _ => None,
        }
    }

    /// The process exists (a held init) but does not run its command yet.
    pub fn created(&self, info: ProcessInfo, io: ProcessIo) {
        let mut state = self.lock();
        state.info = Some(info);
        state.io = Some(io);
    }

    /// The process runs. An exit that was recorded first (a command that ended at once) stays.
    pub fn started(&self, info: ProcessInfo, io: Option<ProcessIo>) {
        let mut state = self.lock();
        state.info = Some(info);
        if io.is_some() {
            state.io = io;
        }
        if state.status == Status::Created {
            state.status = Status::Running;
        }
    }

    /// A pod sandbox runs with no process (no pid, no stdio) until its exit is recorded.
    pub fn run_without_process(&self) {
        let mut state = self.lock();
        if state.status == Status::Created {
            state.status = Status::Running;
        }
    }

    /// Records the exit; `None` if one was recorded already.
    pub fn exited(&self, status: u32) -> Option<Exit> {
        let mut state = self.lock();
        if let Status::Exited(_) = state.status {
            return None;
        }
        let exit = Exit::now(status);
        state.status = Status::Exited(exit);
        let waiters = std::mem::take(&mut state.waiters);
        drop(state);
        self.exited.notify_all();
        for waiter in waiters {
            waiter(exit);
        }
        Some(exit)
    }

    /// Calls `waiter` with the exit once it is recorded (at once if it is), on the thread that
    /// records it: a `Wait` call answered from there holds no thread while the process runs.
    pub fn on_exit(&self, waiter: ExitWaiter) {
        let mut state = self.lock();
        match state.status {
            Status::Exited(exit) => {
                drop(state);
                waiter(exit);
            }
            _ => state.waiters.push(waiter),
        }
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) -> Exit {
        let mut state = self.lock();
        loop {
            if let Status::Exited(exit) = state.status {
                return exit;
            }
            state = self.exited.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Status::Exited(exit) = state.status {
                return Some(exit);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .exited
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        match &self.lock().io {
            Some(io) => io
                .resize(width, height)
                .map_err(|e| Error::invalid(e.to_string())),
            None => Err(Error::precondition("the process has no terminal to resize")),
        }
    }

    pub fn close_stdin(&self) {
        if let Some(io) = self.lock().io.as_mut() {
            io.close_stdin();
        }
    }

    /// Waits, at most `timeout`, until the output a terminal still buffers has reached
    /// containerd: an exit published earlier lets the client stop reading before it.
    pub fn wait_output_copied(&self, timeout: Duration) {
        let copied = self.lock().io.as_ref().and_then(ProcessIo::output_copied);
        if let Some(copied) = copied {
            if !copied.wait(timeout) {
                log::debug!(
                    "process {}: terminal output still being copied after {timeout:?}",
                    self.pid()
                );
            }
        }
    }

    /// Stops the copy threads and closes what the shim held of the process's stdio.
    pub fn release_io(&self) {
        let io = self.lock().io.take();
        drop(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn info(pid: u32) -> ProcessInfo {
        ProcessInfo { pid, start_time: 1 }
    }

    #[test]
    fn wait_returns_once_the_exit_is_recorded() {
        let p = Arc::new(Process::new("", StdioPaths::default()));
        p.started(info(42), None);
        assert_eq!(p.status(), Status::Running);
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait())
        };
        let exit = p.exited(3).expect("first exit");
        assert_eq!(waiter.join().unwrap(), exit);
        assert_eq!(p.status(), Status::Exited(exit));
        assert_eq!(p.exited(9), None, "the first exit stays");
    }

    #[test]
    fn an_exit_recorded_before_start_returns_is_kept() {
        let p = Process::new("e1", StdioPaths::default());
        let exit = p.exited(0).unwrap();
        p.started(info(7), None);
        assert_eq!(p.status(), Status::Exited(exit));
        assert_eq!(p.pid(), 7);
    }

    #[test]
    fn only_a_running_process_of_a_paused_container_reports_paused() {
        let paused = || true;
        let running = || false;
        let exit = Exit::now(0);
        assert_eq!(Status::Running.task_status(paused), TaskStatus::PAUSED);
        assert_eq!(Status::Running.task_status(running), TaskStatus::RUNNING);
        assert_eq!(Status::Created.task_status(paused), TaskStatus::CREATED);
        assert_eq!(
            Status::Exited(exit).task_status(paused),
            TaskStatus::STOPPED
        );
        assert_eq!(Status::Created.task_status(running), TaskStatus::CREATED);
        assert_eq!(
            Status::Exited(exit).task_status(running),
            TaskStatus::STOPPED
        );
    }

    #[test]
    fn the_engine_is_asked_whether_paused_only_for_a_running_process() {
        let asked = std::cell::Cell::new(0);
        let paused = || {
            asked.set(asked.get() + 1);
            true
        };
        Status::Created.task_status(paused);
        Status::Exited(Exit::now(1)).task_status(paused);
        assert_eq!(asked.get(), 0);
        Status::Running.task_status(paused);
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn an_exit_waiter_is_called_once_with_the_exit_and_at_once_after_it() {
        let p = Process::new("", StdioPaths::default());
        p.started(info(42), None);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = |tx: std::sync::mpsc::Sender<Exit>| -> ExitWaiter {
            Box::new(move |exit| tx.send(exit).unwrap())
        };
        p.on_exit(waiter(tx.clone()));
        p.on_exit(waiter(tx.clone()));
        assert!(rx.try_recv().is_err(), "called before the exit");
        let exit = p.exited(3).unwrap();
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(exit), Ok(exit)));
        assert_eq!(p.exited(9), None);
        assert!(rx.try_recv().is_err(), "called twice");
        p.on_exit(waiter(tx));
        assert_eq!(rx.try_recv(), Ok(exit), "a waiter after the exit");
    }

    #[test]
    fn wait_timeout_gives_up() {
        let p = Process::new("", StdioPaths::default());
        assert_eq!(p.wait_timeout(Duration::from_millis(20)), None);
    }
}
