//! One container as the shim serves it: a pod sandbox (no process), or a workload (the
//! engine's container: job, volume, account) with its init process and its exec processes.
//! Every operation matches on [`Kind`] once; whether a workload is paused is the engine's
//! answer (its freezer), not a copy kept here. The container is generic over the engine's
//! platform (this host's by default): its tests run the workload half on the engine's recording
//! fake, without root.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim::protos::api::{CreateTaskRequest, ProcessInfo as TaskProcess};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageFull};
use containerd_shim::protos::shim::oci::ProcessDetails;
use hostprocess_engine::plan;
use hostprocess_engine::spec::{LinuxResources, Process as ProcessSpec, Spec, WindowsResources};
use hostprocess_engine::sys::{Current, JobStats, SIGKILL, SIGTERM};
use hostprocess_engine::{
    Container as EngineContainer, CreateOptions, Engine, Status as EngineStatus,
};
use log::{debug, warn};

use crate::error::{Error, Result};
use crate::io::StdioPaths;
use crate::metrics;
use crate::process::{Exit, Process, Status};
use crate::rootfs;
use crate::sys::{self, ProcessHost};

/// What `delete` reports for an init that never exited by itself (killed by the delete).
const KILLED: u32 = 128 + SIGKILL as u32;
/// SIGINT: with SIGTERM, the signals a pause process exits 0 on.
const SIGINT: i32 = 2;

struct Exec {
    process: Arc<Process>,
    spec: ProcessSpec,
}

/// A workload's exec processes by exec id.
type Execs = HashMap<String, Exec>;

/// What the shim serves under a container id. There is one per container, in an `Arc`, so
/// the sandbox variant being smaller than the workload's costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Kind<P: ProcessHost> {
    /// A pod sandbox: no job, no volume, no account and no process (§7). It cannot be paused
    /// (the Task API refuses), so it has no pause state.
    Sandbox {
        /// The pod's network namespace, when the pod opted in to one (§7).
        network: Option<PathBuf>,
    },
    /// A container the engine made: the job, volume and account, and the exec processes
    /// started in it.
    Workload {
        container: Mutex<EngineContainer<P>>,
        execs: Mutex<Execs>,
        /// The job's OOM kill count already reported with a `TaskOOM` event.
        oom_kills_reported: AtomicU64,
    },
}

/// The shim's container on this host's platform, or (`P`) on another one: the engine's
/// recording fake in tests.
pub struct Container<P: ProcessHost = Current> {
    pub id: String,
    pub bundle: String,
    /// The spec's annotations (after the pod's were inherited).
    pub annotations: BTreeMap<String, String>,
    /// A workload's init process; a pod sandbox's stand-in for the pause process, which has
    /// no pid and runs from start until it is killed.
    pub init: Arc<Process>,
    kind: Kind<P>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<P: ProcessHost> Container<P> {
    /// Validates and makes the container from its (pod-adjusted) spec through the engine; its
    /// init is created and held.
    pub fn create(engine: &Engine<P>, req: &CreateTaskRequest, spec: Spec) -> Result<Container<P>> {
        if !req.checkpoint.is_empty() {
            return Err(Error::invalid(format!(
                "container {}: restoring from a checkpoint is not possible: a HostProcess \
                 container is a group of host processes with no checkpointable state; create it \
                 without --checkpoint",
                req.id
            )));
        }
        let image = rootfs::image_source(&req.rootfs)
            .map_err(|e| Error::invalid(format!("container {}: {e}", req.id)))?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let plan = plan::plan(
            &req.id,
            Path::new(&req.bundle),
            &spec,
            engine.options(),
            image,
        )?;
        let (mut io, engine_stdio) = P::open_stdio(&stdio)
            .map_err(|e| Error::invalid(format!("container {}: stdio: {e}", req.id)))?;
        let created = engine.create_planned(
            plan,
            CreateOptions {
                stdio: engine_stdio,
                image: None,
                start_now: false,
            },
        )?;
        let info = created.init().ok_or_else(|| {
            Error::internal(format!(
                "container {}: created without an init process",
                req.id
            ))
        })?;
        if let Some((height, width)) = created.plan().process.console_size {
            if let Err(e) = io.resize(u32::from(width), u32::from(height)) {
                debug!("container {}: console size: {e}", req.id);
            }
        }
        P::bind(&mut io, &created, &info);
        P::watch_exit(&created, &info);
        let init = Arc::new(Process::new("", stdio));
        init.created(info, io);
        Ok(Container {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            annotations: spec.annotations,
            init,
            kind: Kind::Workload {
                container: Mutex::new(created),
                execs: Mutex::new(HashMap::new()),
                oom_kills_reported: AtomicU64::new(0),
            },
        })
    }

    /// A pod sandbox (already checked by `pod::check_sandbox`): no job, no volume, no account
    /// and no process. It is "running" from start until it is killed, like hcsshim's sandbox
    /// task for HostProcess pods; containerd's CRI needs nothing more of it.
    pub fn sandbox(req: &CreateTaskRequest, spec: Spec) -> Container<P> {
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let network = plan::network::pod_network(&spec).ok().flatten();
        Container {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            annotations: spec.annotations,
            init: Arc::new(Process::new("", stdio)),
            kind: Kind::Sandbox { network },
        }
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self.kind, Kind::Sandbox { .. })
    }

    /// A pod sandbox's network namespace, when the pod opted in to one; `None` for a workload.
    pub fn pod_network(&self) -> Option<&PathBuf> {
        match &self.kind {
            Kind::Sandbox { network } => network.as_ref(),
            Kind::Workload { .. } => None,
        }
    }

    /// The refusal of an operation that needs processes, for a pod sandbox.
    fn runs_no_process(&self, what: &str) -> Error {
        Error::precondition(format!(
            "pod sandbox {}: {what}: the sandbox of a HostProcess pod runs no process; use one of \
             the pod's containers",
            self.id
        ))
    }

    /// A workload's engine container and exec processes, or, for a pod sandbox, the refusal
    /// of `what`: an operation that needs processes.
    fn workload(&self, what: &str) -> Result<(&Mutex<EngineContainer<P>>, &Mutex<Execs>)> {
        match &self.kind {
            Kind::Workload {
                container, execs, ..
            } => Ok((container, execs)),
            Kind::Sandbox { .. } => Err(self.runs_no_process(what)),
        }
    }

    /// The engine's container, locked (or the refusal of `what` for a pod sandbox).
    fn engine(&self, what: &str) -> Result<MutexGuard<'_, EngineContainer<P>>> {
        Ok(lock(self.workload(what)?.0))
    }

    /// A workload's exec processes; a pod sandbox has none.
    fn execs(&self) -> Option<MutexGuard<'_, Execs>> {
        match &self.kind {
            Kind::Workload { execs, .. } => Some(lock(execs)),
            Kind::Sandbox { .. } => None,
        }
    }

    /// Releases the held init; a sandbox just starts "running". Returns the pid (0 for a
    /// sandbox).
    pub fn start(&self) -> Result<u32> {
        let Kind::Workload { container, .. } = &self.kind else {
            self.init.run_without_process();
            return Ok(0);
        };
        let info = self
            .init
            .info()
            .ok_or_else(|| Error::internal(format!("container {}: no init process", self.id)))?;
        lock(container).start()?;
        self.init.started(info, None);
        Ok(info.pid)
    }

    /// The init (`exec_id` empty) or an exec process.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs()
            .and_then(|execs| execs.get(exec_id).map(|e| e.process.clone()))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "exec {exec_id} of container {} does not exist",
                    self.id
                ))
            })
    }

    /// Whether the engine finds the container paused (its job frozen while init runs); a pod
    /// sandbox is never paused.
    pub fn is_paused(&self) -> bool {
        self.engine("pause")
            .is_ok_and(|engine| engine.status() == EngineStatus::Paused)
    }

    /// Registers an exec process; it starts with [`Container::start_exec`].
    pub fn add_exec(&self, exec_id: &str, spec: &Any, stdio: StdioPaths) -> Result<()> {
        if exec_id.is_empty() {
            return Err(Error::invalid("an exec needs an exec id"));
        }
        let (_, execs) = self.workload("exec")?;
        let mut spec: ProcessSpec = serde_json::from_slice(&spec.value).map_err(|e| {
            Error::invalid(format!(
                "exec {exec_id} of container {}: process spec ({}): {e}",
                self.id, spec.type_url
            ))
        })?;
        spec.terminal = stdio.terminal;
        if self.init.exit().is_some() {
            return Err(Error::precondition(format!(
                "container {} has stopped: exec needs a created or running container",
                self.id
            )));
        }
        let mut execs = lock(execs);
        if execs.contains_key(exec_id) {
            return Err(Error::exists(format!(
                "exec {exec_id} of container {} already exists",
                self.id
            )));
        }
        let process = Arc::new(Process::new(exec_id, stdio));
        execs.insert(exec_id.to_string(), Exec { process, spec });
        Ok(())
    }

    /// Starts a registered exec process in the container's job, view and account.
    pub fn start_exec(&self, exec_id: &str) -> Result<u32> {
        let not_found = || {
            Error::not_found(format!(
                "exec {exec_id} of container {} does not exist",
                self.id
            ))
        };
        let (container, execs) = self.workload("exec").map_err(|_| not_found())?;
        let (process, spec) = {
            let execs = lock(execs);
            let exec = execs.get(exec_id).ok_or_else(not_found)?;
            (exec.process.clone(), exec.spec.clone())
        };
        if process.status() != Status::Created {
            return Err(Error::precondition(format!(
                "exec {exec_id} of container {} was started already",
                self.id
            )));
        }
        let (mut io, stdio) = P::open_stdio(&process.stdio).map_err(|e| {
            Error::invalid(format!(
                "exec {exec_id} of container {}: stdio: {e}",
                self.id
            ))
        })?;
        let info = {
            let engine = lock(container);
            let info = engine.exec(&spec, stdio)?;
            P::bind(&mut io, &engine, &info);
            P::watch_exit(&engine, &info);
            info
        };
        process.started(info, Some(io));
        Ok(info.pid)
    }

    pub fn exec_by_pid(&self, pid: u32) -> Option<Arc<Process>> {
        self.execs()?
            .values()
            .find(|e| e.process.pid() == pid && e.process.exit().is_none())
            .map(|e| e.process.clone())
    }

    /// Signals a process. A pod sandbox ends as it would end a pause process (pid 1 of the
    /// pod, which handles only SIGTERM and SIGINT): those with status 0, SIGKILL with 137; any
    /// other signal changes nothing. Returns the exit status when a sandbox ended, for the
    /// caller to report.
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<Option<u32>> {
        match &self.kind {
            Kind::Sandbox { .. } => self.signal_sandbox(exec_id, signal),
            Kind::Workload { container, .. } => {
                self.signal_workload(container, exec_id, signal, all)?;
                Ok(None)
            }
        }
    }

    fn signal_workload(
        &self,
        container: &Mutex<EngineContainer<P>>,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        let signal = i32::try_from(signal)
            .map_err(|_| Error::invalid(format!("signal {signal} is out of range")))?;
        let process = self.process(exec_id)?;
        if exec_id.is_empty() && all {
            lock(container).kill(signal, true)?;
        } else {
            match process.status() {
                Status::Exited(_) => {
                    return Err(Error::not_found(format!(
                        "process {} of container {} already finished",
                        process.pid(),
                        self.id
                    )))
                }
                Status::Created if !exec_id.is_empty() => {
                    return Err(Error::precondition(format!(
                        "exec {exec_id} of container {} is not started",
                        self.id
                    )))
                }
                _ => {}
            }
            if exec_id.is_empty() {
                lock(container).kill(signal, false)?;
            } else if let Some(info) = process.info() {
                lock(container).signal_process(&info, signal)?;
            }
        }
        // A frozen job cannot die: SIGKILL thaws it, as runc does.
        if signal == SIGKILL && self.is_paused() {
            self.resume()?;
        }
        Ok(())
    }

    fn signal_sandbox(&self, exec_id: &str, signal: u32) -> Result<Option<u32>> {
        if !exec_id.is_empty() {
            return Err(Error::not_found(format!(
                "exec {exec_id} of pod sandbox {} does not exist",
                self.id
            )));
        }
        if self.init.exit().is_some() {
            return Err(Error::not_found(format!(
                "pod sandbox {} already finished",
                self.id
            )));
        }
        Ok(match i32::try_from(signal) {
            Ok(SIGTERM | SIGINT) => Some(0),
            Ok(SIGKILL) => Some(KILLED),
            _ => None,
        })
    }

    /// Every process of the job, execs marked with their exec id; none for a pod sandbox.
    pub fn pids(&self) -> Result<Vec<TaskProcess>> {
        let Kind::Workload {
            container, execs, ..
        } = &self.kind
        else {
            return Ok(Vec::new());
        };
        let pids = lock(container).pids()?;
        let execs: HashMap<u32, String> = lock(execs)
            .iter()
            .map(|(id, e)| (e.process.pid(), id.clone()))
            .collect();
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut process = TaskProcess::new();
            process.pid = pid;
            if let Some(exec_id) = execs.get(&pid) {
                let mut details = ProcessDetails::new();
                details.exec_id = exec_id.clone();
                let mut info = Any::new();
                info.type_url = ProcessDetails::descriptor().full_name().to_string();
                info.value = details
                    .write_to_bytes()
                    .map_err(|e| Error::internal(format!("encode process details: {e}")))?;
                process.info = Some(info).into();
            }
            processes.push(process);
        }
        Ok(processes)
    }

    pub fn pause(&self) -> Result<()> {
        Ok(self.engine("pause")?.pause()?)
    }

    pub fn resume(&self) -> Result<()> {
        Ok(self.engine("resume")?.resume()?)
    }

    /// Applies new limits (an OCI `LinuxResources` or `WindowsResources`, JSON in an Any).
    pub fn update(&self, resources: &Any) -> Result<()> {
        let bad = |e: serde_json::Error| {
            Error::invalid(format!(
                "container {}: resources ({}): {e}",
                self.id, resources.type_url
            ))
        };
        if resources.type_url.ends_with("WindowsResources") {
            let windows: WindowsResources =
                serde_json::from_slice(&resources.value).map_err(bad)?;
            self.engine("update")?.update(None, Some(&windows))?;
        } else {
            let linux: LinuxResources = serde_json::from_slice(&resources.value).map_err(bad)?;
            self.engine("update")?.update(Some(&linux), None)?;
        }
        Ok(())
    }

    /// The job's figures; all zero for a pod sandbox, which has no job.
    pub fn stats(&self) -> Result<Any> {
        let stats = match &self.kind {
            Kind::Sandbox { .. } => JobStats::default(),
            Kind::Workload { container, .. } => lock(container).stats()?,
        };
        metrics::to_any(&stats, sys::metrics_format()).map_err(Error::internal)
    }

    /// True when the job had OOM kills since the last call that returned true.
    pub fn take_new_oom_kill(&self) -> bool {
        let Kind::Workload {
            container,
            oom_kills_reported,
            ..
        } = &self.kind
        else {
            return false;
        };
        let Ok(oom_kills) = lock(container).oom_kills() else {
            return false;
        };
        let reported = oom_kills_reported.load(Ordering::SeqCst);
        oom_kills > reported
            && oom_kills_reported
                .compare_exchange(reported, oom_kills, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// Whether anything of a workload's job may still run once its init has exited: false once
    /// the job is seen empty (nothing for [`Container::terminate_rest`] to stop), true when it
    /// cannot be read.
    pub fn rest_may_run(&self) -> bool {
        match &self.kind {
            Kind::Sandbox { .. } => false,
            Kind::Workload { container, .. } => {
                lock(container).pids().map_or(true, |pids| !pids.is_empty())
            }
        }
    }

    /// After init's exit is published and nothing of its job is left: the engine lets go of
    /// the view now, while containerd handles the exit, instead of in `delete`
    /// (`EngineContainer::release_view`; it checks the job is empty itself, under the
    /// container's lock). It works on a copy of the engine's container, so that the calls
    /// containerd makes on the exit (a kill of the whole job among them) are not held while
    /// the kernel takes the view down; `delete` waits for it on the container's lock.
    pub fn release_view(&self) {
        let Kind::Workload { container, .. } = &self.kind else {
            return;
        };
        let snapshot = lock(container).clone();
        match snapshot.release_view() {
            Ok(released) => debug!("container {}: view released: {released}", self.id),
            Err(e) => warn!("container {}: releasing its view: {e}", self.id),
        }
    }

    /// §6 after init exits: SIGTERM to the rest of the job, SIGKILL after the grace period
    /// (the engine thaws a frozen job first). It works on a copy of the engine's container, so
    /// that other calls are not held for the grace period.
    pub fn terminate_rest(&self) {
        let Ok(snapshot) = self.engine("stop").map(|engine| engine.clone()) else {
            return;
        };
        match snapshot.terminate_rest() {
            Ok(true) => debug!(
                "container {}: processes left after init had to be killed",
                self.id
            ),
            Ok(false) => {}
            Err(e) => warn!("container {}: stopping the rest of the job: {e}", self.id),
        }
    }

    /// Forgets an exec process that has exited (or never started).
    pub fn delete_exec(&self, exec_id: &str) -> Result<(u32, Exit)> {
        let process = self.process(exec_id)?;
        let exit = match process.status() {
            Status::Exited(exit) => exit,
            Status::Created => Exit::now(0),
            Status::Running => {
                return Err(Error::precondition(format!(
                    "exec {exec_id} of container {} is still running: kill it first",
                    self.id
                )))
            }
        };
        if let Some(mut execs) = self.execs() {
            execs.remove(exec_id);
        }
        process.release_io();
        Ok((process.pid(), exit))
    }

    /// Removes the container: whatever still runs is killed, then the engine tears down the
    /// job, the view, the volume and any ephemeral account. A sandbox that never started ends
    /// with its deletion, so that waiters return.
    pub fn delete(&self) -> Result<(u32, Exit)> {
        let Kind::Workload {
            container, execs, ..
        } = &self.kind
        else {
            self.init.exited(KILLED);
            let exit = self.init.exit().unwrap_or_else(|| Exit::now(KILLED));
            return Ok((0, exit));
        };
        let snapshot = lock(container).clone();
        snapshot.delete(true)?;
        let exit = self
            .init
            .wait_timeout(Duration::from_secs(2))
            .unwrap_or_else(|| Exit::now(KILLED));
        self.init.release_io();
        for exec in lock(execs).values() {
            exec.process.release_io();
        }
        Ok((self.init.pid(), exit))
    }
}

#[cfg(test)]
mod tests;
