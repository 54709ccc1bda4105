//! The shim process: `start` (one shim per pod), `delete` (cleanup after a shim that died),
//! and serving the Task API with events forwarded to containerd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{
    socket_address, spawn, Config, DeleteResponse, Error as ShimError, ExitSignal, Flags, Shim,
    StartOpts,
};
use hostprocess_engine::annotations::{CRI_SANDBOX_ID, RUNC_GROUP};
use hostprocess_engine::plan::PlanOptions;
use hostprocess_engine::spec::Spec;
use hostprocess_engine::sys::SIGKILL;
use hostprocess_engine::Engine;
use log::{info, warn};

use crate::events::Events;
use crate::sys;
use crate::task::{Shared, TaskService};

/// Moves the engine's state root (tests use a private one).
pub const STATE_ROOT_ENV: &str = "HOSTPROCESS_SHIM_ROOT";
/// How long a stopping shim waits for its last events to reach containerd.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

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
        // A pod's later containers: its shim already serves the group's socket. Answer that
        // address, as runc's shim does, instead of spawning a serving shim that would start,
        // find the socket taken and exit (an `exec` and a shim start-up per container).
        let address = socket_address(&opts.address, &opts.namespace, &grouping);
        if sys::is_served(&address) {
            write_address(&address)?;
            return Ok(address);
        }
        let (_, address) = spawn(opts, &grouping, Vec::new())?;
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
        let root = state_root(&self.namespace);
        info!(
            "serving namespace {} with engine state in {}",
            self.namespace,
            root.display()
        );
        let events = Events::start(publisher, self.namespace.clone());
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

    #[test]
    fn the_state_root_is_per_namespace() {
        let root = state_root("k8s.io");
        assert!(root.ends_with("k8s.io"), "{}", root.display());
    }
}
