//! The Task API (containerd.task.v2.Task): every call maps to the engine, in-process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread;
use std::time::Duration;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use containerd_shim::protos::api::CheckpointTaskRequest;
use containerd_shim::protos::create_task;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::{self, MethodHandler, Request};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use hostprocess_engine::spec::Spec;
use hostprocess_engine::Engine;
use log::{debug, warn};

use crate::container::Container;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::exits;
use crate::io::StdioPaths;
use crate::pod::{self, PodSandbox, Role};
use crate::process::{Exit, Status};
use crate::sys;

/// How often the live containers' jobs are checked for OOM kills between exits.
const OOM_POLL: Duration = Duration::from_secs(1);

/// State shared by the Task API handlers and the exit handler.
pub struct Shared {
    pub engine: Engine,
    pub events: Events,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Held from a fork (create, start, exec start) until its process is registered; exits are
    /// matched under it, so a command that ends at once is never taken for an unknown pid.
    lifecycle: Mutex<()>,
    calls: Calls,
    /// Whether the OOM watcher runs (`watch_oom`).
    oom_watcher: Mutex<bool>,
    exit: Arc<ExitSignal>,
}

/// The calls in flight: every call but `wait` and `shutdown`. A shim that stops waits for them
/// first: containerd closes the connection once `shutdown` answers, and a call answered after
/// that is lost (a pod sandbox's `kill` publishes its exit before it answers, and containerd
/// deletes and shuts down on that event).
#[derive(Default)]
struct Calls {
    /// Held shared by each call in flight, exclusively by a shim that stops.
    lock: RwLock<()>,
    /// The server holds `lock` for each call until its answer is queued
    /// (`TaskService::methods`), not the handlers until they return.
    answers_counted: AtomicBool,
}

impl Calls {
    /// Counts a call in flight until its handler returns, unless the server counts it until its
    /// answer is queued.
    fn call(&self) -> Option<RwLockReadGuard<'_, ()>> {
        if self.answers_counted.load(Ordering::Acquire) {
            return None;
        }
        Some(self.in_flight())
    }

    fn in_flight(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once every other call in flight has answered: its answer is queued on its
    /// connection ahead of the caller's (a connection writes its answers in order).
    fn drain(&self) {
        if self.lock.try_write().is_ok() {
            return;
        }
        drop(self.lock.write().unwrap_or_else(|e| e.into_inner()));
        if !self.answers_counted.load(Ordering::Acquire) {
            // The shim library's server: a call's answer is queued just after its handler
            // returns, out of our reach; give it that moment.
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Shared {
    pub fn new(engine: Engine, events: Events, exit: Arc<ExitSignal>) -> Shared {
        Shared {
            engine,
            events,
            containers: Mutex::new(HashMap::new()),
            lifecycle: Mutex::new(()),
            calls: Calls::default(),
            oom_watcher: Mutex::new(false),
            exit,
        }
    }

    pub fn lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.calls.call()
    }

    /// Returns once every other call in flight has answered.
    fn drain_calls(&self) {
        self.calls.drain();
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.map().values().cloned().collect()
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.map()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("container {id} does not exist")))
    }

    /// Pod sandbox `sandbox_id`'s annotations and network: from the sandbox this shim serves
    /// (CRI groups a pod in one shim), else from its bundle, a sibling of the container's.
    fn sandbox_of(&self, sandbox_id: &str, bundle: &Path) -> Option<PodSandbox> {
        if let Some(sandbox) = self.map().get(sandbox_id) {
            return Some(PodSandbox {
                annotations: sandbox.annotations.clone(),
                network: sandbox.pod_network().cloned(),
            });
        }
        let sandbox_bundle = bundle.parent()?.join(sandbox_id);
        match Spec::load(&sandbox_bundle) {
            Ok(spec) => Some(PodSandbox::of(&spec)),
            Err(e) => {
                debug!("pod sandbox {sandbox_id}: no spec to read its annotations: {e}");
                None
            }
        }
    }
}

pub struct TaskService {
    shared: Arc<Shared>,
}

impl TaskService {
    /// Starts handling exits; must run before the first process is created.
    pub fn new(shared: Shared) -> TaskService {
        let shared = Arc::new(shared);
        exits::start(shared.clone());
        TaskService { shared }
    }

    /// The Task API's ttrpc methods, each call but `wait` and `shutdown` counted in flight
    /// until its answer is queued: `shutdown` then waits on that alone, and its own answer,
    /// after which containerd closes the connection, is queued last. `wait` is answered when
    /// its process exits, by the thread that records the exit ([`ExitAnswer`]). (Linux: the
    /// serving shim on its start action's socket; on Windows the shim library registers the
    /// service.)
    #[cfg_attr(windows, allow(dead_code))]
    pub fn methods(self) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
        let shared = self.shared.clone();
        shared.calls.answers_counted.store(true, Ordering::Release);
        create_task(Arc::new(self))
            .into_iter()
            .map(|(path, method)| {
                if path.ends_with("/Wait") {
                    let wait: Box<dyn MethodHandler + Send + Sync> = Box::new(ExitAnswer {
                        shared: shared.clone(),
                    });
                    return (path, wait);
                }
                if path.ends_with("/Shutdown") {
                    return (path, method);
                }
                let counted: Box<dyn MethodHandler + Send + Sync> = Box::new(Counted {
                    method,
                    shared: shared.clone(),
                });
                (path, counted)
            })
            .collect()
    }

    fn create_task(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse> {
        let _lifecycle = self.shared.lifecycle();
        if self.shared.map().contains_key(&req.id) {
            return Err(Error::exists(format!(
                "container {} already exists",
                req.id
            )));
        }
        let container = Arc::new(self.make_container(req)?);
        let pid = container.init.pid();
        self.shared.map().insert(req.id.clone(), container.clone());

        let mut event = TaskCreate::new();
        event.container_id = req.id.clone();
        event.bundle = req.bundle.clone();
        event.rootfs = req.rootfs.clone();
        let mut io = TaskIO::new();
        io.stdin = req.stdin.clone();
        io.stdout = req.stdout.clone();
        io.stderr = req.stderr.clone();
        io.terminal = req.terminal;
        event.io = Some(io).into();
        event.checkpoint = req.checkpoint.clone();
        event.pid = pid;
        self.shared.events.publish(event);
        if container.is_sandbox() {
            debug!("pod sandbox {}: created, runs no process", req.id);
        } else {
            watch_oom(&self.shared);
            debug!("container {}: created, init pid {pid}", req.id);
        }
        let mut response = CreateTaskResponse::new();
        response.pid = pid;
        Ok(response)
    }

    /// Applies the pod rules (§7) to the spec, then makes a pod sandbox (no process) or a
    /// container (through the engine).
    fn make_container(&self, req: &CreateTaskRequest) -> Result<Container> {
        let bundle = Path::new(&req.bundle);
        let mut spec = Spec::load(bundle).map_err(Error::from)?;
        match Role::of(&spec.annotations) {
            Role::Sandbox => {
                pod::check_sandbox(&req.id, &spec, sys::is_host_network_namespace)
                    .map_err(|refusal| Error::invalid(refusal.0))?;
                Ok(Container::sandbox(req, spec))
            }
            Role::Member { sandbox_id } => {
                let sandbox = self.shared.sandbox_of(&sandbox_id, bundle);
                let pod_annotations = sandbox.as_ref().map(|s| &s.annotations);
                pod::admit_container(&req.id, &mut spec.annotations, pod_annotations)
                    .map_err(|refusal| Error::invalid(refusal.0))?;
                pod::join_pod_network(&mut spec, sandbox.as_ref());
                Container::create(&self.shared.engine, req, spec)
            }
            Role::Standalone => Container::create(&self.shared.engine, req, spec),
        }
    }

    /// Signals a process; a pod sandbox that a signal ends reports its exit at once.
    fn kill_task(&self, req: &KillRequest) -> Result<()> {
        debug!(
            "kill {} {:?}: signal {}, all {}",
            req.id, req.exec_id, req.signal, req.all
        );
        let container = self.shared.container(&req.id)?;
        if let Some(status) = container.kill(&req.exec_id, req.signal, req.all)? {
            exits::publish_exit(&container, &container.init, status, &self.shared.events);
            debug!("pod sandbox {}: stopped", req.id);
        }
        Ok(())
    }

    fn start_task(&self, req: &StartRequest) -> Result<StartResponse> {
        let _lifecycle = self.shared.lifecycle();
        let container = self.shared.container(&req.id)?;
        let pid = if req.exec_id.is_empty() {
            let pid = container.start()?;
            let mut event = TaskStart::new();
            event.container_id = req.id.clone();
            event.pid = pid;
            self.shared.events.publish(event);
            pid
        } else {
            let pid = container.start_exec(&req.exec_id)?;
            let mut event = TaskExecStarted::new();
            event.container_id = req.id.clone();
            event.exec_id = req.exec_id.clone();
            event.pid = pid;
            self.shared.events.publish(event);
            pid
        };
        let mut response = StartResponse::new();
        response.pid = pid;
        Ok(response)
    }

    fn delete_task(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        let container = self.shared.container(&req.id)?;
        let (pid, exit) = if req.exec_id.is_empty() {
            if container.init.status() == Status::Running {
                return Err(Error::precondition(format!(
                    "container {} is running: kill it first",
                    req.id
                )));
            }
            let deleted = container.delete()?;
            self.shared.map().remove(&req.id);
            let mut event = TaskDelete::new();
            event.container_id = req.id.clone();
            event.id = req.id.clone();
            event.pid = deleted.0;
            event.exit_status = deleted.1.status;
            event.exited_at = Some(deleted.1.timestamp()).into();
            self.shared.events.publish(event);
            debug!("container {}: deleted", req.id);
            deleted
        } else {
            container.delete_exec(&req.exec_id)?
        };
        let mut response = DeleteResponse::new();
        response.pid = pid;
        response.exit_status = exit.status;
        response.exited_at = Some(exit.timestamp()).into();
        Ok(response)
    }

    fn task_state(&self, req: &StateRequest) -> Result<StateResponse> {
        let container = self.shared.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let mut response = StateResponse::new();
        response.id = if req.exec_id.is_empty() {
            req.id.clone()
        } else {
            req.exec_id.clone()
        };
        response.exec_id = req.exec_id.clone();
        response.bundle = container.bundle.clone();
        response.pid = process.pid();
        response.stdin = process.stdio.stdin.clone();
        response.stdout = process.stdio.stdout.clone();
        response.stderr = process.stdio.stderr.clone();
        response.terminal = process.stdio.terminal;
        let status = process.status();
        if let Status::Exited(exit) = status {
            response.exit_status = exit.status;
            response.exited_at = Some(exit.timestamp()).into();
        }
        response.status = status.task_status(|| container.is_paused()).into();
        Ok(response)
    }
}

/// Reports OOM kills of the live containers' jobs that no exit has reported yet (a killed child
/// while init survives): one check for all of the shim's containers, run by the event
/// forwarder between events, which ends once none of them runs; a container's create starts it
/// again.
fn watch_oom(shared: &Arc<Shared>) {
    let mut watching = shared.oom_watcher.lock().unwrap_or_else(|e| e.into_inner());
    if *watching {
        return;
    }
    let weak = Arc::downgrade(shared);
    shared.events.watch(OOM_POLL, move || {
        let Some(shared) = weak.upgrade() else {
            return false;
        };
        let mut live = live_workloads(&shared);
        if live.is_empty() {
            // Under the lock a create takes after adding its container: it finds the watch
            // running, or starts it again.
            let mut watching = shared.oom_watcher.lock().unwrap_or_else(|e| e.into_inner());
            live = live_workloads(&shared);
            if live.is_empty() {
                *watching = false;
                return false;
            }
        }
        for container in live {
            exits::publish_oom(&container, &shared.events);
        }
        true
    });
    *watching = true;
}

/// The shim's containers whose init has not exited (a pod sandbox has no job).
fn live_workloads(shared: &Shared) -> Vec<Arc<Container>> {
    shared
        .containers()
        .into_iter()
        .filter(|c| !c.is_sandbox() && c.init.exit().is_none())
        .collect()
}

/// A ttrpc method whose call is in flight until its answer is queued.
#[cfg_attr(windows, allow(dead_code))]
struct Counted {
    method: Box<dyn MethodHandler + Send + Sync>,
    shared: Arc<Shared>,
}

impl MethodHandler for Counted {
    fn handler(&self, ctx: TtrpcContext, req: Request) -> ttrpc::Result<()> {
        let _call = self.shared.calls.in_flight();
        self.method.handler(ctx, req)
    }
}

/// `wait` without a ttrpc worker held until the process exits: its answer is queued on the
/// call's connection by the thread that records the exit. A pod's shim has a `wait` pending for
/// each of its processes, and a worker blocked in each.
#[cfg_attr(windows, allow(dead_code))]
struct ExitAnswer {
    shared: Arc<Shared>,
}

impl MethodHandler for ExitAnswer {
    fn handler(&self, ctx: TtrpcContext, req: Request) -> ttrpc::Result<()> {
        let request = WaitRequest::parse_from_bytes(&req.payload)
            .map_err(|e| ttrpc::Error::Others(format!("wait: decode the request: {e}")))?;
        let (stream_id, answers) = (ctx.mh.stream_id, ctx.res_tx);
        let process = self
            .shared
            .container(&request.id)
            .and_then(|c| c.process(&request.exec_id));
        match answer("wait", &request.id, process) {
            Ok(process) => {
                process.on_exit(Box::new(move |exit| {
                    let answer = ttrpc_answer(Ok(wait_response(exit)));
                    if let Err(e) = ttrpc::response_to_channel(stream_id, answer, answers) {
                        debug!("wait {}: the connection is gone: {e}", request.id);
                    }
                }));
                Ok(())
            }
            Err(e) => ttrpc::response_to_channel(stream_id, ttrpc_answer::<Empty>(Err(e)), answers),
        }
    }
}

fn wait_response(exit: Exit) -> WaitResponse {
    let mut response = WaitResponse::new();
    response.exit_status = exit.status;
    response.exited_at = Some(exit.timestamp()).into();
    response
}

/// A call's answer as ttrpc's generated handlers make it.
#[cfg_attr(windows, allow(dead_code))]
fn ttrpc_answer<T: Message>(result: TtrpcResult<T>) -> ttrpc::Response {
    let mut response = ttrpc::Response::new();
    let status = match result.map(|answer| answer.write_to_bytes()) {
        Ok(Ok(payload)) => {
            response.payload = payload;
            ttrpc::get_status(ttrpc::Code::OK, String::new())
        }
        Ok(Err(e)) => ttrpc::get_status(ttrpc::Code::INTERNAL, e.to_string()),
        Err(ttrpc::Error::RpcStatus(status)) => status,
        Err(e) => ttrpc::get_status(ttrpc::Code::UNKNOWN, format!("{e:?}")),
    };
    response.set_status(status);
    response
}

/// Logs a failed call (containerd shows only the message) and converts it for ttrpc.
fn answer<T>(what: &str, id: &str, result: Result<T>) -> TtrpcResult<T> {
    result.map_err(|e| {
        warn!("{what} {id}: {e}");
        e.into()
    })
}

impl Task for TaskService {
    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let _call = self.shared.call();
        answer("state", &req.id, self.task_state(&req))
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let _call = self.shared.call();
        answer("create", &req.id, self.create_task(&req))
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let _call = self.shared.call();
        answer("start", &req.id, self.start_task(&req))
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let _call = self.shared.call();
        answer("delete", &req.id, self.delete_task(&req))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let _call = self.shared.call();
        let result = self.shared.container(&req.id).and_then(|c| c.pids());
        answer("pids", &req.id, result).map(|processes| {
            let mut response = PidsResponse::new();
            response.processes = processes;
            response
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let result = self.shared.container(&req.id).and_then(|c| c.pause());
        answer("pause", &req.id, result)?;
        let mut event = TaskPaused::new();
        event.container_id = req.id;
        self.shared.events.publish(event);
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let result = self.shared.container(&req.id).and_then(|c| c.resume());
        answer("resume", &req.id, result)?;
        let mut event = TaskResumed::new();
        event.container_id = req.id;
        self.shared.events.publish(event);
        Ok(Empty::new())
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let refusal = Error::unimplemented(format!(
            "container {}: checkpoint is not supported: a HostProcess container is a group of \
             host processes with no isolation to checkpoint",
            req.id
        ));
        answer("checkpoint", &req.id, Err(refusal))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        answer("kill", &req.id, self.kill_task(&req)).map(|()| Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let result = self.shared.container(&req.id).and_then(|c| {
            let spec = req.spec.as_ref().ok_or_else(|| {
                Error::invalid(format!(
                    "exec {}: the request has no process spec",
                    req.exec_id
                ))
            })?;
            c.add_exec(&req.exec_id, spec, stdio)
        });
        answer("exec", &req.id, result)?;
        let mut event = TaskExecAdded::new();
        event.container_id = req.id;
        event.exec_id = req.exec_id;
        self.shared.events.publish(event);
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let result = self
            .shared
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))
            .and_then(|p| p.resize(req.width, req.height));
        answer("resize", &req.id, result).map(|()| Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let result = self
            .shared
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id));
        let process = answer("close io", &req.id, result)?;
        if req.stdin {
            process.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let _call = self.shared.call();
        let result = self.shared.container(&req.id).and_then(|c| {
            let resources = req.resources.as_ref().ok_or_else(|| {
                Error::invalid(format!("update {}: the request has no resources", req.id))
            })?;
            c.update(resources)
        });
        answer("update", &req.id, result).map(|()| Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let result = self
            .shared
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id));
        let process = answer("wait", &req.id, result)?;
        Ok(wait_response(process.wait()))
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let _call = self.shared.call();
        let result = self.shared.container(&req.id).and_then(|c| c.stats());
        answer("stats", &req.id, result).map(|stats| {
            let mut response = StatsResponse::new();
            response.stats = Some(stats).into();
            response
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let _call = self.shared.call();
        let mut response = ConnectResponse::new();
        response.shim_pid = std::process::id();
        response.task_pid = self.shared.container(&req.id).map_or(0, |c| c.init.pid());
        response.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(response)
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        let live = self.shared.map().len();
        if live > 0 && !req.now {
            debug!("shutdown {}: {live} container(s) still served", req.id);
            return Ok(Empty::new());
        }
        debug!("shutdown: no container left, the shim exits");
        self.shared.drain_calls();
        self.shared.exit.signal();
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_handler_takes_no_hold_of_its_own_when_the_server_counts_its_call() {
        // A second shared hold on one thread waits behind a stopping shim's exclusive one.
        let calls = Calls::default();
        assert!(calls.call().is_some());
        calls.answers_counted.store(true, Ordering::Release);
        assert!(calls.call().is_none());
    }

    /// A `wait` holds no worker until its process exits: with a single worker, which the
    /// server never adds to, the pod's `kill` that ends the process is still answered.
    #[cfg(unix)]
    #[test]
    fn a_pending_wait_holds_no_worker_and_is_answered_by_the_exit() {
        use containerd_shim::protos::ttrpc::context;
        use containerd_shim::protos::ttrpc::{Client, Server};
        use containerd_shim::protos::TaskClient;

        let root = tempfile::tempdir().unwrap();
        let engine = Engine::new(hostprocess_engine::plan::PlanOptions::from_env(
            root.path().to_path_buf(),
        ));
        let shared = Shared::new(engine, Events::unsent(), Arc::new(ExitSignal::default()));
        let mut create = CreateTaskRequest::new();
        create.id = "p1".into();
        let sandbox = Container::sandbox(&create, Spec::default());
        sandbox.start().unwrap();
        shared.map().insert("p1".into(), Arc::new(sandbox));
        let address = format!("unix://{}", root.path().join("s").display());
        let mut server = Server::new()
            .bind(&address)
            .unwrap()
            .set_thread_count_min(0)
            .set_thread_count_default(1)
            .set_thread_count_max(2)
            .register_service(TaskService::new(shared).methods());
        server.start().unwrap();
        let client = TaskClient::new(Client::connect(&address).unwrap());
        let ctx = || context::with_duration(Duration::from_secs(10));

        let waiting = {
            let (client, ctx) = (client.clone(), ctx());
            thread::spawn(move || {
                let mut wait = WaitRequest::new();
                wait.id = "p1".into();
                client.wait(ctx, &wait)
            })
        };
        thread::sleep(Duration::from_millis(100));
        let mut kill = KillRequest::new();
        kill.id = "p1".into();
        kill.signal = 15;
        assert!(client.kill(ctx(), &kill).is_ok(), "kill waited behind wait");
        let exit = waiting.join().unwrap().unwrap();
        assert_eq!(exit.exit_status, 0);
        // A wait for what has exited is answered at once; one for nothing, with its error.
        let mut wait = WaitRequest::new();
        wait.id = "p1".into();
        assert_eq!(client.wait(ctx(), &wait).unwrap().exit_status, 0);
        wait.id = "nothing".into();
        let err = client.wait(ctx(), &wait).unwrap_err();
        assert!(
            err.to_string().contains("container nothing does not exist"),
            "{err}"
        );
        server.shutdown();
    }

    #[test]
    fn stopping_waits_for_a_counted_call_until_its_answer_is_queued() {
        let calls = Arc::new(Calls::default());
        calls.answers_counted.store(true, Ordering::Release);
        let (held_tx, held_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel();
        let call = {
            let calls = calls.clone();
            thread::spawn(move || {
                let _call = calls.in_flight();
                held_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(100));
                queued_tx.send(()).unwrap();
            })
        };
        held_rx.recv().unwrap();
        calls.drain();
        assert!(
            queued_rx.try_recv().is_ok(),
            "drained before the answer was queued"
        );
        call.join().unwrap();
    }
}
