//! The shim process: `start` (one shim per pod), `delete` (cleanup after a shim that died),
//! and serving the Task API with events forwarded to containerd.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
#[cfg(unix)]
use containerd_shim::protos::ttrpc::Server;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{
    Config, DeleteResponse, Error as ShimError, ExitSignal, Flags, Shim, StartOpts,
};
use hostprocess_engine::annotations::{CRI_SANDBOX_ID, RUNC_GROUP};
use hostprocess_engine::plan::PlanOptions;
use hostprocess_engine::spec::Spec;
use hostprocess_engine::sys::SIGKILL;
use hostprocess_engine::Engine;
use log::{info, warn};

use crate::events::{Events, Sink};
use crate::sys;
use crate::task::{Shared, TaskService};

/// Moves the engine's state root (tests use a private one).
pub const STATE_ROOT_ENV: &str = "HOSTPROCESS_SHIM_ROOT";
/// How long a stopping shim waits for its last events to reach containerd.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// ttrpc's method workers on each connection. No call of the Task API holds one for long
/// (`wait` is answered from the exit, `TaskService::methods`), so two are started where ttrpc
/// starts three. Whenever calls leave fewer than one idle, the server starts another two, so a
/// call never waits for a worker (it also checks once right after starting the first ones,
/// usually before they run, which starts the second set at once); above three idle, a worker
/// whose call ends leaves. ttrpc requires min < started < max.
#[cfg(unix)]
fn with_workers(server: Server) -> Server {
    server
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
}

pub struct Service {
    namespace: String,
    id: String,
    /// The serving shim's socket (`-socket`), empty for `start` and `delete`.
    socket: String,
    exit: Arc<ExitSignal>,
    events: OnceLock<Events>,
}

/// The engine's state root for one containerd namespace: containers of different namespaces
/// may share an id.
pub fn state_root(namespace: &str) -> PathBuf {
    let root = std::env::var_os(STATE_ROOT_ENV)
        .filter(|r| !r.is_empty())
        .map_or_else(|| PathBuf::from(sys::DEFAULT_STATE_ROOT), PathBuf::from);
    root.join(namespace)
}

pub fn engine(namespace: &str) -> Engine {
    Engine::new(PlanOptions::from_env(state_root(namespace)))
}

/// The containers of one pod share a shim: CRI names the pod in every container's spec, and
/// runc's own group annotation works the same way. Anything else gets a shim of its own.
pub fn group(id: &str, annotations: &BTreeMap<String, String>) -> String {
    [CRI_SANDBOX_ID, RUNC_GROUP]
        .iter()
        .find_map(|key| annotations.get(*key).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

/// Removes a shim socket (`unix:///run/containerd/s/<hash>`) if it is one.
fn remove_socket(address: &str) {
    let path = Path::new(address.strip_prefix("unix://").unwrap_or(address));
    if address.is_empty() || !sys::is_socket(path) {
        return;
    }
    if let Err(e) = std::fs::remove_file(path) {
        warn!("remove socket {}: {e}", path.display());
    }
}

impl Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        sys::ignore_broken_pipes();
        let serving = !matches!(args.action.as_str(), "start" | "delete");
        if let (true, Some(fifo)) = (serving, sys::LOG_FIFO) {
            // When the FIFO cannot be opened, the library's logger is left to fail on it and
            // say so, as it would without ours.
            if crate::logger::init(Path::new(fifo), args.debug).is_ok() {
                config.no_setup_logger = true;
            }
        }
        Service {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: args.socket.clone(),
            exit: Arc::new(ExitSignal::default()),
            events: OnceLock::new(),
        }
    }

    /// Runs with the bundle as working directory: spawns the serving shim (or finds the pod's
    /// running one) and answers its address.
    fn start_shim(&mut self, opts: StartOpts) -> Result<String, ShimError> {
        let annotations = Spec::load(Path::new("."))
            .map(|spec| spec.annotations)
            .unwrap_or_default();
        let grouping = group(&opts.id, &annotations);
        // A pod's later containers: its shim already serves the group's socket, and
        // `start_serving` answers that address, as runc's shim does.
        let address = sys::start_serving(opts, &grouping)?;
        write_address(&address)?;
        Ok(address)
    }

    /// The crash path: the serving shim is gone, so tear down what the engine recorded for the
    /// container (processes, mounts, volume, job, ephemeral account). containerd needs an
    /// answer even when nothing is left.
    fn delete_shim(&mut self) -> Result<DeleteResponse, ShimError> {
        let engine = engine(&self.namespace);
        let pid = engine
            .load(&self.id)
            .ok()
            .and_then(|c| c.init())
            .map_or(0, |init| init.pid);
        if let Err(e) = engine.delete(&self.id, true) {
            eprintln!("containerd-shim-hostprocess-v1 delete {}: {e}", self.id);
        }
        // The dead shim's socket: the `address` file in the bundle (the working directory).
        // A pod's containers share one shim, and containerd runs this cleanup for every task
        // whose connection closed, also when the shim lives on for the rest of the pod: a
        // socket that still answers is left alone.
        if let Ok(address) = std::fs::read_to_string("address") {
            let address = address.trim();
            if sys::is_served(address) {
                info!("socket {address} is still served: the pod's shim lives on");
            } else {
                remove_socket(address);
            }
        }
        let mut response = DeleteResponse::new();
        response.pid = pid;
        response.exit_status = 128 + SIGKILL as u32;
        response.exited_at = Some(Timestamp::now()).into();
        Ok(response)
    }

    fn wait(&mut self) {
        self.exit.wait();
        if let Some(events) = self.events.get() {
            events.flush(FLUSH_TIMEOUT);
        }
        // containerd-shim removes the socket named in the `address` file of its working
        // directory, the first container's bundle, which containerd has deleted by now.
        remove_socket(&self.socket);
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let sink = Sink::connect(|| Ok::<_, Infallible>(publisher));
        self.task_service(sink.unwrap_or_else(|never| match never {}))
    }
}

impl Service {
    /// The Task API of this shim, its events sent to containerd on `sink`.
    fn task_service(&self, sink: Sink) -> TaskService {
        let root = state_root(&self.namespace);
        info!(
            "serving namespace {} with engine state in {}",
            self.namespace,
            root.display()
        );
        let events = Events::start(sink, self.namespace.clone());
        if self.events.set(events.clone()).is_err() {
            warn!("the task service was created twice");
        }
        TaskService::new(Shared::new(
            engine(&self.namespace),
            events,
            self.exit.clone(),
        ))
    }
}

/// The serving shim on the socket its `start` action bound and forked it with
/// (`sys::start_serving`): what the shim library does for a shim it started, but on a socket
/// that already exists. `flags` are the serving shim's (`socket` set); `ttrpc_address` is
/// containerd's, where events go.
#[cfg(unix)]
pub fn serve(listener: sys::Listener, flags: &Flags, ttrpc_address: &str) -> Result<(), ShimError> {
    sys::reap_children()?;
    sys::become_subreaper()?;
    let mut config = Config::default();
    let mut shim = Service::new(crate::RUNTIME_ID, flags, &mut config);
    if !config.no_setup_logger {
        containerd_shim::logger::init(
            flags.debug,
            &config.default_log_level,
            &flags.namespace,
            &flags.id,
        )?;
    }
    let sink = Sink::connect(|| RemotePublisher::new(ttrpc_address))?;
    let task = shim.task_service(sink);
    let mut server = with_workers(listener.into_server()?).register_service(task.methods());
    server.start()?;
    log::debug!("Shim successfully started, waiting for exit signal...");
    shim.wait();
    // The process exits now, as containerd's own shims do: every call but `shutdown` was
    // answered (the Task API drained them), the events are flushed and the socket is gone.
    // Joining the ttrpc server's threads (ttrpc's `shutdown`) took a millisecond while
    // containerd stopped the pod, and under load one of them sometimes never ended; a
    // `shutdown` whose answer the exit cuts off is one containerd takes as done.
    log::debug!("Shutting down shim instance");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_containers_share_the_sandboxs_shim() {
        let cri = BTreeMap::from([(CRI_SANDBOX_ID.to_string(), "pod-1".to_string())]);
        assert_eq!(group("c1", &cri), "pod-1");
        let runc = BTreeMap::from([(RUNC_GROUP.to_string(), "g".to_string())]);
        assert_eq!(group("c1", &runc), "g");
        assert_eq!(group("c1", &BTreeMap::new()), "c1");
        let empty = BTreeMap::from([(CRI_SANDBOX_ID.to_string(), String::new())]);
        assert_eq!(group("c1", &empty), "c1");
    }

    /// Calls that hold a worker until the test lets them go (as `wait` did until its process
    /// exited) must leave the others answered: the server starts workers whenever calls leave
    /// none idle.
    #[cfg(unix)]
    #[test]
    fn calls_that_block_starve_no_other_call() {
        use containerd_shim::protos::ttrpc::{
            self, Client, MethodHandler, Request, Response, TtrpcContext,
        };
        use std::collections::HashMap;
        use std::sync::mpsc;
        use std::sync::Mutex;
        use std::thread;

        struct Blocks(Mutex<mpsc::Receiver<()>>);
        impl MethodHandler for Blocks {
            fn handler(&self, ctx: TtrpcContext, _req: Request) -> ttrpc::Result<()> {
                let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(20));
                ttrpc::response_to_channel(ctx.mh.stream_id, Response::new(), ctx.res_tx)
            }
        }
        struct Answers;
        impl MethodHandler for Answers {
            fn handler(&self, ctx: TtrpcContext, _req: Request) -> ttrpc::Result<()> {
                ttrpc::response_to_channel(ctx.mh.stream_id, Response::new(), ctx.res_tx)
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}", dir.path().join("s").display());
        let (release, released) = mpsc::channel();
        let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
        methods.insert("/t/Blocks".into(), Box::new(Blocks(Mutex::new(released))));
        methods.insert("/t/Answers".into(), Box::new(Answers));
        let mut server =
            with_workers(Server::new().bind(&address).unwrap()).register_service(methods);
        server.start().unwrap();
        let client = Client::connect(&address).unwrap();
        let call = |method: &str| {
            let mut request = Request::new();
            request.service = "t".into();
            request.method = method.into();
            request.timeout_nano = Duration::from_secs(20).as_nanos() as i64;
            let client = client.clone();
            thread::spawn(move || client.request(request).is_ok())
        };
        // More blocked calls than workers are ever started at once, or kept idle.
        let blocked: Vec<_> = (0..5).map(|_| call("Blocks")).collect();
        thread::sleep(Duration::from_millis(200));
        let (answered_tx, answered) = mpsc::channel();
        let other = call("Answers");
        thread::spawn(move || answered_tx.send(other.join().unwrap()));
        let answered = answered.recv_timeout(Duration::from_secs(5));
        for _ in &blocked {
            release.send(()).unwrap();
        }
        assert_eq!(answered, Ok(true), "a call waited behind blocked ones");
        for call in blocked {
            assert!(call.join().unwrap());
        }
        server.shutdown();
    }

    #[test]
    fn the_state_root_is_per_namespace() {
        let root = state_root("k8s.io");
        assert!(root.ends_with("k8s.io"), "{}", root.display());
    }
}
