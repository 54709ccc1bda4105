//! The benchmark's floor: a containerd shim (task API v2) that runs nothing and answers every
//! call at once. `bench/shim.sh` times `ctr run --rm` with it to show what containerd and ctr
//! cost before any shim does work: the `start` and `delete` actions, the socket, the calls.
//!
//! Not a runtime: `create` records the id, `start` reports the shim's own pid, `wait` answers
//! exit status 0 as soon as the task was started.

use std::sync::{Arc, Condvar, Mutex};

use containerd_shim::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, KillRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, WaitRequest, WaitResponse,
};
use containerd_shim::protos::api::Status;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{
    spawn, Config, Error, ExitSignal, Flags, Shim, StartOpts, Task, TtrpcContext, TtrpcResult,
};

struct NullShim {
    exit: Arc<ExitSignal>,
    /// The serving shim's socket, removed on exit as real shims do (a socket left behind
    /// makes the next shim of the same id wait for it).
    socket: String,
}

#[derive(Clone, Default)]
struct NullTask {
    /// Whether `start` was called; `wait` blocks until it was.
    started: Arc<(Mutex<bool>, Condvar)>,
    exit: Arc<ExitSignal>,
}

impl Shim for NullShim {
    type T = NullTask;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        NullShim {
            exit: Arc::new(ExitSignal::default()),
            socket: args.socket.clone(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let id = opts.id.clone();
        let (_, address) = spawn(opts, &id, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        Ok(DeleteResponse::new())
    }

    fn wait(&mut self) {
        self.exit.wait();
        if let Some(path) = self.socket.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> NullTask {
        NullTask {
            exit: self.exit.clone(),
            ..NullTask::default()
        }
    }
}

impl NullTask {
    fn is_started(&self) -> bool {
        *self.started.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Task for NullTask {
    fn create(&self, _: &TtrpcContext, _: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        let mut response = CreateTaskResponse::new();
        response.pid = std::process::id();
        Ok(response)
    }

    fn start(&self, _: &TtrpcContext, _: StartRequest) -> TtrpcResult<StartResponse> {
        let (started, changed) = &*self.started;
        *started.lock().unwrap_or_else(|e| e.into_inner()) = true;
        changed.notify_all();
        let mut response = StartResponse::new();
        response.pid = std::process::id();
        Ok(response)
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let mut response = StateResponse::new();
        response.id = req.id;
        response.pid = std::process::id();
        response.status = if self.is_started() {
            Status::STOPPED
        } else {
            Status::CREATED
        }
        .into();
        Ok(response)
    }

    fn wait(&self, _: &TtrpcContext, _: WaitRequest) -> TtrpcResult<WaitResponse> {
        let (started, changed) = &*self.started;
        let mut guard = started.lock().unwrap_or_else(|e| e.into_inner());
        while !*guard {
            guard = changed.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        let mut response = WaitResponse::new();
        response.exited_at = Some(Timestamp::now()).into();
        Ok(response)
    }

    fn kill(&self, _: &TtrpcContext, _: KillRequest) -> TtrpcResult<Empty> {
        Ok(Empty::new())
    }

    fn delete(&self, _: &TtrpcContext, _: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let mut response = DeleteResponse::new();
        response.pid = std::process::id();
        response.exited_at = Some(Timestamp::now()).into();
        Ok(response)
    }

    fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let mut response = ConnectResponse::new();
        response.shim_pid = std::process::id();
        response.task_pid = std::process::id();
        Ok(response)
    }

    fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> TtrpcResult<Empty> {
        self.exit.signal();
        Ok(Empty::new())
    }
}

fn main() {
    containerd_shim::run::<NullShim>("io.containerd.null.v1", None);
}
