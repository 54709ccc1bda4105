//! A platform that makes nothing: it keeps a model of what a real one would make (jobs and their
//! processes, held, frozen) and records every call that acts on it, so that the lifecycle (and
//! its callers) can be tested without root, on any host. A test can make a chosen call fail,
//! crash (panic once its effect is made, as a process killed there would leave it) or wait at a
//! gate until the test lets it go on, and can end processes or start daemons in a job.
//!
//! Clones share one model: two engines given clones of one `Fake` are two processes on one host.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::container::Engine;
use crate::error::{Error, Result};
use crate::plan::{ContainerPlan, PlanOptions, ProcessPlan, ResourceRequest};
use crate::sys::{JobStats, Platform, ProcessInfo, SIGKILL, SIGTERM};

/// The operations of the platform that act on the host (queries are not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Prepare,
    Create,
    Release,
    Exec,
    Signal,
    SignalJob,
    SetFrozen,
    Update,
    SuperviseDetached,
    ReleaseView,
    /// The released view's last part let go of (what the kernel still does after the release).
    ViewGone,
    Destroy,
    DestroyUnrecorded,
}

/// One recorded call: the operation, the container's id (or the process's pid for `Signal`)
/// and the detail that matters (the signal, frozen or not, held or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub target: String,
    pub detail: String,
}

/// What the fake's `create` names and makes: a job, by a name given before it is made (as a
/// cgroup path or a job object's name), and its init.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeRecord {
    pub id: String,
    /// The job's name; a container made again under the same id gets another.
    pub job: u64,
    pub init: Option<ProcessInfo>,
}

#[derive(Debug, Default)]
struct Job {
    pids: Vec<u32>,
    held: bool,
    frozen: bool,
    /// A signal sent while frozen, delivered on thaw.
    pending: Option<i32>,
    /// Processes of the job the OOM killer ended.
    oom_kills: u64,
}

#[derive(Debug, Clone, Copy)]
struct Process {
    start_time: u64,
    ignores_sigterm: bool,
}

/// A call that waits until the test opens it.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Waits until a call has reached the gate; panics when none has within ten seconds.
    pub fn wait_reached(&self) {
        let state = lock(&self.state);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| !s.0)
            .unwrap_or_else(|e| e.into_inner());
        assert!(state.0, "no call reached the gate");
    }

    /// Lets the call go on.
    pub fn open(&self) {
        lock(&self.state).1 = true;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = lock(&self.state);
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The test's side of a [`Gate`]; opens it when dropped.
#[derive(Debug)]
pub struct GateHandle(Arc<Gate>);

impl std::ops::Deref for GateHandle {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.0
    }
}

impl Drop for GateHandle {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[derive(Debug, Default)]
struct World {
    calls: Vec<Call>,
    fail: Vec<Op>,
    crash_before: Vec<Op>,
    crash: Vec<Op>,
    gates: HashMap<Op, Arc<Gate>>,
    next_job: u64,
    next_pid: u32,
    jobs: BTreeMap<u64, Job>,
    processes: HashMap<u32, Process>,
}

impl World {
    fn alive(&self, process: &ProcessInfo) -> bool {
        self.processes
            .get(&process.pid)
            .is_some_and(|p| p.start_time == process.start_time)
    }

    fn spawn(&mut self, job: u64) -> ProcessInfo {
        self.next_pid += 1;
        let info = ProcessInfo {
            pid: 1000 + self.next_pid,
            start_time: u64::from(self.next_pid),
        };
        self.processes.insert(
            info.pid,
            Process {
                start_time: info.start_time,
                ignores_sigterm: false,
            },
        );
        self.jobs.entry(job).or_default().pids.push(info.pid);
        info
    }

    fn end(&mut self, pid: u32) {
        self.processes.remove(&pid);
        for job in self.jobs.values_mut() {
            job.pids.retain(|p| *p != pid);
        }
    }

    /// Delivers a signal as the kernel would: SIGKILL ends a process, SIGTERM ends one that
    /// does not ignore it, others change nothing here.
    fn deliver(&mut self, pid: u32, signal: i32) {
        let ends = match self.processes.get(&pid) {
            Some(p) => signal == SIGKILL || (signal == SIGTERM && !p.ignores_sigterm),
            None => false,
        };
        if ends {
            self.end(pid);
        }
    }

    fn job_of(&self, pid: u32) -> Option<u64> {
        self.jobs
            .iter()
            .find(|(_, job)| job.pids.contains(&pid))
            .map(|(name, _)| *name)
    }
}

/// The recording platform; see the module's documentation.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    world: Arc<Mutex<World>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.world).calls.clone()
    }

    /// The operations of the calls made so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.calls().into_iter().map(|c| c.op).collect()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: Op) -> usize {
        self.calls().iter().filter(|c| c.op == op).count()
    }

    pub fn clear_calls(&self) {
        lock(&self.world).calls.clear();
    }

    /// The next call of `op` fails before it makes anything.
    pub fn fail_next(&self, op: Op) {
        lock(&self.world).fail.push(op);
    }

    /// The next call of `op` panics before it makes anything: the caller dies right there.
    pub fn crash_before(&self, op: Op) {
        lock(&self.world).crash_before.push(op);
    }

    /// The next call of `op` makes its effect, then panics: the caller dies right there.
    pub fn crash_after(&self, op: Op) {
        lock(&self.world).crash.push(op);
    }

    /// The next call of `op` is recorded, then waits at the returned gate until it is opened
    /// (at the latest when the gate is dropped, so a failing test does not hang).
    pub fn gate(&self, op: Op) -> GateHandle {
        let gate = Arc::new(Gate::default());
        lock(&self.world).gates.insert(op, Arc::clone(&gate));
        GateHandle(gate)
    }

    /// Ends a process as if it exited by itself.
    pub fn exit(&self, pid: u32) {
        lock(&self.world).end(pid);
    }

    /// Starts another process in the job of `record` (a daemon its init left behind).
    pub fn spawn_in_job(&self, record: &FakeRecord, ignores_sigterm: bool) -> ProcessInfo {
        let mut world = lock(&self.world);
        let info = world.spawn(record.job);
        if let Some(p) = world.processes.get_mut(&info.pid) {
            p.ignores_sigterm = ignores_sigterm;
        }
        info
    }

    /// The OOM killer ends `pid`, a process of the job of `record`.
    pub fn oom_kill(&self, record: &FakeRecord, pid: u32) {
        let mut world = lock(&self.world);
        world.end(pid);
        if let Some(job) = world.jobs.get_mut(&record.job) {
            job.oom_kills += 1;
        }
    }

    /// Does the job that `record` names exist (made and not destroyed)?
    pub fn job_exists(&self, record: &FakeRecord) -> bool {
        lock(&self.world).jobs.contains_key(&record.job)
    }

    /// Records the call, then fails it, crashes or stops at its gate as the test asked.
    fn enter(&self, op: Op, target: &str, detail: String) -> Result<()> {
        let gate = {
            let mut world = lock(&self.world);
            world.calls.push(Call {
                op,
                target: target.to_string(),
                detail,
            });
            if let Some(i) = world.fail.iter().position(|o| *o == op) {
                world.fail.remove(i);
                return Err(Error::container(
                    target,
                    format!("{op:?} failed (as asked)"),
                ));
            }
            if let Some(i) = world.crash_before.iter().position(|o| *o == op) {
                world.crash_before.remove(i);
                drop(world);
                panic!("crashed before {op:?} (as asked)");
            }
            world.gates.remove(&op)
        };
        if let Some(gate) = gate {
            gate.pass();
        }
        Ok(())
    }

    /// Panics if the test asked this call to crash once its effect is made.
    fn leave(&self, op: Op) {
        let crash = {
            let mut world = lock(&self.world);
            match world.crash.iter().position(|o| *o == op) {
                Some(i) => {
                    world.crash.remove(i);
                    true
                }
                None => false,
            }
        };
        if crash {
            panic!("crashed after {op:?} (as asked)");
        }
    }
}

/// What is left of a view the fake released: its drop is the call [`Op::ViewGone`].
#[derive(Debug)]
pub struct FakeReleasedView {
    fake: Fake,
    id: String,
}

impl Drop for FakeReleasedView {
    fn drop(&mut self) {
        let _ = self.fake.enter(Op::ViewGone, &self.id, String::new());
        self.fake.leave(Op::ViewGone);
    }
}

impl Platform for Fake {
    type Record = FakeRecord;
    type Stdio = ();
    type ReleasedView = FakeReleasedView;

    fn prepare(&self, plan: &ContainerPlan, _state_dir: &Path) -> Result<FakeRecord> {
        self.enter(Op::Prepare, &plan.id, String::new())?;
        let job = {
            let mut world = lock(&self.world);
            world.next_job += 1;
            world.next_job
        };
        self.leave(Op::Prepare);
        Ok(FakeRecord {
            id: plan.id.clone(),
            job,
            init: None,
        })
    }

    fn create(
        &self,
        _plan: &ContainerPlan,
        record: &mut FakeRecord,
        _stdio: (),
        hold: bool,
    ) -> Result<ProcessInfo> {
        self.enter(Op::Create, &record.id, format!("hold={hold}"))?;
        let init = {
            let mut world = lock(&self.world);
            let init = world.spawn(record.job);
            if let Some(job) = world.jobs.get_mut(&record.job) {
                job.held = hold;
            }
            init
        };
        record.init = Some(init);
        self.leave(Op::Create);
        Ok(init)
    }

    fn init(&self, record: &FakeRecord) -> Option<ProcessInfo> {
        record.init
    }

    fn release(&self, record: &FakeRecord) -> Result<()> {
        self.enter(Op::Release, &record.id, String::new())?;
        {
            let mut world = lock(&self.world);
            let alive = record.init.is_some_and(|init| world.alive(&init));
            match world.jobs.get_mut(&record.job) {
                Some(job) if alive => job.held = false,
                _ => return Err(Error::container(&record.id, "init has exited")),
            }
        }
        self.leave(Op::Release);
        Ok(())
    }

    fn is_held(&self, record: &FakeRecord) -> bool {
        let world = lock(&self.world);
        record.init.is_some_and(|init| world.alive(&init))
            && world.jobs.get(&record.job).is_some_and(|job| job.held)
    }

    fn exec(
        &self,
        _plan: &ContainerPlan,
        record: &FakeRecord,
        process: &ProcessPlan,
        _stdio: (),
    ) -> Result<ProcessInfo> {
        self.enter(Op::Exec, &record.id, process.args.join(" "))?;
        let info = {
            let mut world = lock(&self.world);
            if !world.jobs.contains_key(&record.job) {
                return Err(Error::container(&record.id, "its job is gone"));
            }
            world.spawn(record.job)
        };
        self.leave(Op::Exec);
        Ok(info)
    }

    fn is_running(&self, process: &ProcessInfo) -> bool {
        lock(&self.world).alive(process)
    }

    fn signal(&self, process: &ProcessInfo, signal: i32) -> Result<()> {
        self.enter(Op::Signal, &process.pid.to_string(), signal.to_string())?;
        {
            let mut world = lock(&self.world);
            if !world.alive(process) {
                return Err(Error::container(
                    &process.pid.to_string(),
                    "no such process",
                ));
            }
            let frozen = world
                .job_of(process.pid)
                .and_then(|name| world.jobs.get(&name))
                .is_some_and(|job| job.frozen);
            if !frozen {
                world.deliver(process.pid, signal);
            }
        }
        self.leave(Op::Signal);
        Ok(())
    }

    fn signal_job(&self, record: &FakeRecord, signal: i32) -> Result<()> {
        self.enter(Op::SignalJob, &record.id, signal.to_string())?;
        {
            let mut world = lock(&self.world);
            let (pids, frozen) = match world.jobs.get_mut(&record.job) {
                Some(job) if job.frozen => {
                    job.pending = Some(signal);
                    (Vec::new(), true)
                }
                Some(job) => (job.pids.clone(), false),
                None => (Vec::new(), false),
            };
            if !frozen {
                for pid in pids {
                    world.deliver(pid, signal);
                }
            }
        }
        self.leave(Op::SignalJob);
        Ok(())
    }

    fn job_pids(&self, record: &FakeRecord) -> Result<Vec<u32>> {
        Ok(lock(&self.world)
            .jobs
            .get(&record.job)
            .map(|job| job.pids.clone())
            .unwrap_or_default())
    }

    fn wait_job_empty(&self, record: &FakeRecord, timeout: Duration) -> Result<bool> {
        if self.job_pids(record)?.is_empty() {
            return Ok(true);
        }
        // Nothing in the model ends by itself while this waits.
        std::thread::sleep(timeout);
        Ok(self.job_pids(record)?.is_empty())
    }

    fn set_frozen(&self, record: &FakeRecord, frozen: bool) -> Result<()> {
        self.enter(Op::SetFrozen, &record.id, frozen.to_string())?;
        {
            let mut world = lock(&self.world);
            let Some(job) = world.jobs.get_mut(&record.job) else {
                return Err(Error::container(&record.id, "its job is gone"));
            };
            job.frozen = frozen;
            let pending = if frozen { None } else { job.pending.take() };
            let pids = job.pids.clone();
            if let Some(signal) = pending {
                for pid in pids {
                    world.deliver(pid, signal);
                }
            }
        }
        self.leave(Op::SetFrozen);
        Ok(())
    }

    fn is_frozen(&self, record: &FakeRecord) -> bool {
        lock(&self.world)
            .jobs
            .get(&record.job)
            .is_some_and(|job| job.frozen)
    }

    fn update(&self, record: &mut FakeRecord, resources: &ResourceRequest) -> Result<()> {
        self.enter(
            Op::Update,
            &record.id,
            format!("{:?}", resources.pids_limit),
        )?;
        self.leave(Op::Update);
        Ok(())
    }

    fn stats(&self, record: &FakeRecord) -> Result<JobStats> {
        let pids = self.job_pids(record)?.len() as u64;
        Ok(JobStats {
            pids_current: pids,
            oom_kills: self.oom_kills(record)?,
            ..JobStats::default()
        })
    }

    fn oom_kills(&self, record: &FakeRecord) -> Result<u64> {
        Ok(lock(&self.world)
            .jobs
            .get(&record.job)
            .map_or(0, |job| job.oom_kills))
    }

    fn supervise_detached(
        &self,
        record: &FakeRecord,
        init: &ProcessInfo,
        _grace: Duration,
    ) -> Result<()> {
        self.enter(Op::SuperviseDetached, &record.id, init.pid.to_string())?;
        self.leave(Op::SuperviseDetached);
        Ok(())
    }

    fn release_view(&self, record: &FakeRecord) -> Result<FakeReleasedView> {
        self.enter(Op::ReleaseView, &record.id, String::new())?;
        self.leave(Op::ReleaseView);
        Ok(FakeReleasedView {
            fake: self.clone(),
            id: record.id.clone(),
        })
    }

    fn destroy(&self, record: &FakeRecord) -> Result<()> {
        self.enter(Op::Destroy, &record.id, record.job.to_string())?;
        {
            let mut world = lock(&self.world);
            if let Some(job) = world.jobs.remove(&record.job) {
                for pid in job.pids {
                    world.processes.remove(&pid);
                }
            }
        }
        self.leave(Op::Destroy);
        Ok(())
    }

    fn destroy_unrecorded(&self, state_dir: &Path) -> Result<()> {
        let dir = PathBuf::from(state_dir);
        self.enter(Op::DestroyUnrecorded, &dir.to_string_lossy(), String::new())?;
        self.leave(Op::DestroyUnrecorded);
        Ok(())
    }
}

/// An engine on a new fake with its state root in a temporary directory (removed on drop):
/// where the lifecycle's tests, the engine's and the shim's, start.
pub struct FakeHost {
    pub fake: Fake,
    pub engine: Engine<Fake>,
    _root: tempfile::TempDir,
}

impl FakeHost {
    pub fn new() -> FakeHost {
        let root = tempfile::tempdir().expect("a temporary state root");
        let fake = Fake::new();
        let engine = Engine::with_platform(PlanOptions::new(root.path()), fake.clone());
        FakeHost {
            fake,
            engine,
            _root: root,
        }
    }

    /// Another process on the same host: a CLI call after this one, or a restarted shim.
    pub fn another_engine(&self) -> Engine<Fake> {
        Engine::with_platform(self.engine.options().clone(), self.fake.clone())
    }
}

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost::new()
    }
}
