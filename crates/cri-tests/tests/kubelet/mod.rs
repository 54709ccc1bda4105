//! What the kubelet does to a node, done by a test: a CRI client (runtime.v1 over containerd's
//! socket, synchronous for tests) that runs pods with the `hostprocess` runtime handler the way
//! the kubelet builds its requests, and a [`Pod`] that stops and removes its sandbox in `Drop`.

#![allow(dead_code)] // each test binary uses a different part of the kubelet

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    AttachRequest, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStats, ContainerStatsFilter, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec, Int64Value,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainerStatsRequest,
    ListContainersRequest, ListPodSandboxRequest, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxState, PodSandboxStatusRequest,
    PortForwardRequest, RemoveContainerRequest, RemovePodSandboxRequest, ReopenContainerLogRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

use crate::support::containerd::Containerd;
use crate::support::image::BUSYBOX_IMAGE;
use crate::support::{cgroup_dirs_named, text, unique_id, wait_until};

/// Where the engine claims ephemeral uids (host-wide).
pub const EPHEMERAL_CLAIMS_DIR: &str = "/run/hostprocess-ephemeral-uids";

/// The CRI runtime handler the test containerd registers for the shim.
pub const HANDLER: &str = "hostprocess";
/// The namespace containerd's CRI keeps its containers and images in.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// How long one CRI call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A private containerd with the pause and busybox images in CRI's namespace, a CRI client
/// connected to it, and the cgroup under which this node's pods get theirs (the kubelet's
/// `/kubepods` with the cgroupfs driver). Fields drop in order: the client, containerd (which
/// removes every container left), then the pods' cgroups.
pub struct Node {
    pub cri: Cri,
    pub containerd: Containerd,
    pods_cgroup: PodsCgroup,
}

impl Node {
    pub fn start() -> Node {
        Node::on(Containerd::start())
    }

    /// A node around a containerd the test started itself (e.g. after `node install`).
    pub fn on(containerd: Containerd) -> Node {
        containerd.import_pause(K8S_NAMESPACE);
        containerd.import_busybox(K8S_NAMESPACE);
        let cri = Cri::connect(containerd.socket());
        Node {
            cri,
            containerd,
            pods_cgroup: PodsCgroup(format!("/{}", unique_id("hpc-kubepods"))),
        }
    }

    /// A directory of this node's temporary directory (removed with it).
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.containerd.dir().join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        dir
    }

    /// RunPodSandbox with the hostprocess handler; the pod is removed when dropped.
    pub fn run_pod(&self, config: PodSandboxConfig) -> Result<Pod<'_>, Status> {
        self.run_pod_with(config, HANDLER)
    }

    /// RunPodSandbox with another runtime handler (e.g. `runc`, containerd's default).
    pub fn run_pod_with(&self, config: PodSandboxConfig, handler: &str) -> Result<Pod<'_>, Status> {
        let id = self.cri.run_pod_sandbox(&config, handler)?;
        Ok(Pod {
            node: self,
            id,
            config,
            removed: false,
        })
    }

    /// A host-network pod named `name`, as the kubelet asks for one with `hostNetwork: true`.
    pub fn host_network_pod(&self, name: &str) -> PodSandboxConfig {
        self.pod_config(name, NamespaceMode::Node)
    }

    /// The sandbox config the kubelet sends for a pod: metadata, log directory, cgroup parent,
    /// and the namespace options of its security context (`hostNetwork: true` is
    /// `network: NODE`, with no hostname).
    pub fn pod_config(&self, name: &str, network: NamespaceMode) -> PodSandboxConfig {
        let uid = unique_id("uid");
        let hostname = match network {
            NamespaceMode::Node => String::new(),
            _ => name.to_string(),
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname,
            log_directory: self
                .dir(&unique_id("pod-logs"))
                .to_string_lossy()
                .into_owned(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(linux_pod_config(
                format!("{}/pod{uid}", self.pods_cgroup.0),
                network,
            )),
            ..PodSandboxConfig::default()
        }
    }
}

/// The cgroup the node's pod cgroups are made under, removed (in every hierarchy) once the
/// node's containerd is gone; the kubelet removes a pod's cgroup itself.
pub struct PodsCgroup(pub String);

impl Drop for PodsCgroup {
    fn drop(&mut self) {
        fn remove_tree(dir: &Path) {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.filter_map(|e| e.ok()) {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_tree(&entry.path());
                    }
                }
            }
            if let Err(e) = fs::remove_dir(dir) {
                eprintln!("cleanup: rmdir {}: {e}", dir.display());
            }
        }
        let relative = self.0.trim_start_matches('/');
        for hierarchy in cgroup_hierarchies() {
            let dir = hierarchy.join(relative);
            if dir.is_dir() {
                remove_tree(&dir);
            }
        }
    }
}

/// The mount points of every cgroup hierarchy (v1 controllers and the v2 tree).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap_or_default()))
        })
        .collect()
}

fn linux_pod_config(cgroup_parent: String, network: NamespaceMode) -> LinuxPodSandboxConfig {
    LinuxPodSandboxConfig {
        cgroup_parent,
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: network as i32,
                pid: NamespaceMode::Container as i32,
                ipc: NamespaceMode::Pod as i32,
                ..NamespaceOption::default()
            }),
            ..LinuxSandboxSecurityContext::default()
        }),
        ..LinuxPodSandboxConfig::default()
    }
}

/// A container of the busybox test image running `script` with `sh -c`, logging to
/// `<name>.log` in the pod's log directory, with the namespace options the kubelet gives a
/// container of a host-network pod.
pub fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_string(),
            ..ImageSpec::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script.to_string()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxContainerSecurityContext::default()
            }),
            ..LinuxContainerConfig::default()
        }),
        ..ContainerConfig::default()
    }
}

/// `runAsUser` / `runAsGroup` of a container's security context.
pub fn run_as(mut config: ContainerConfig, uid: i64, gid: i64) -> ContainerConfig {
    let context = config
        .linux
        .get_or_insert_with(LinuxContainerConfig::default)
        .security_context
        .get_or_insert_with(LinuxContainerSecurityContext::default);
    context.run_as_user = Some(Int64Value { value: uid });
    context.run_as_group = Some(Int64Value { value: gid });
    config
}

pub fn with_annotation(mut config: ContainerConfig, key: &str, value: &str) -> ContainerConfig {
    config.annotations.insert(key.into(), value.into());
    config
}

pub fn with_mount(
    mut config: ContainerConfig,
    host_path: &Path,
    container_path: &str,
    readonly: bool,
) -> ContainerConfig {
    config.mounts.push(Mount {
        container_path: container_path.into(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly,
        ..Mount::default()
    });
    config
}

/// A synchronous CRI runtime-service client over containerd's unix socket.
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    pub fn connect(socket: &Path) -> Cri {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let socket = socket.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        });
        // The URI is required but unused: the connector always dials the socket.
        let endpoint = Endpoint::from_static("http://[::]:50051");
        let channel = runtime
            .block_on(endpoint.connect_with_connector(connector))
            .unwrap_or_else(|e| panic!("connect to containerd's CRI: {e}"));
        Cri {
            runtime,
            client: RuntimeServiceClient::new(channel),
        }
    }

    /// Runs one call on the client; one that hangs fails with `DeadlineExceeded`.
    fn call<T, F>(
        &self,
        what: &str,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let future = call(self.client.clone());
        let timed = async move { tokio::time::timeout(CALL_TIMEOUT, future).await };
        match self.runtime.block_on(timed) {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "CRI {what} did not answer within {CALL_TIMEOUT:?}"
            ))),
        }
    }

    pub fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, Status> {
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        self.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(request).await
        })
        .map(|r| r.pod_sandbox_id)
    }

    pub fn pod_sandbox_state(&self, pod: &str) -> PodSandboxState {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        };
        let status = self
            .call("PodSandboxStatus", |mut c| async move {
                c.pod_sandbox_status(request).await
            })
            .unwrap_or_else(|e| panic!("PodSandboxStatus {pod}: {e}"));
        status
            .status
            .map_or(PodSandboxState::SandboxNotready, |s| s.state())
    }

    /// The pod's IP addresses, as PodSandboxStatus reports them (the primary one first).
    pub fn pod_sandbox_ips(&self, pod: &str) -> Vec<String> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        };
        let network = self
            .call("PodSandboxStatus", |mut c| async move {
                c.pod_sandbox_status(request).await
            })
            .unwrap_or_else(|e| panic!("PodSandboxStatus {pod}: {e}"))
            .status
            .and_then(|s| s.network)
            .unwrap_or_default();
        std::iter::once(network.ip)
            .filter(|ip| !ip.is_empty())
            .chain(network.additional_ips.into_iter().map(|ip| ip.ip))
            .collect()
    }

    pub fn list_pod_sandboxes(&self) -> Vec<String> {
        let request = ListPodSandboxRequest { filter: None };
        self.call("ListPodSandbox", |mut c| async move {
            c.list_pod_sandbox(request).await
        })
        .unwrap_or_else(|e| panic!("ListPodSandbox: {e}"))
        .items
        .into_iter()
        .map(|p| p.id)
        .collect()
    }

    pub fn stop_pod_sandbox(&self, pod: &str) -> Result<(), Status> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(request).await
        })
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, pod: &str) -> Result<(), Status> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(request).await
        })
        .map(drop)
    }

    pub fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, Status> {
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        self.call("CreateContainer", |mut c| async move {
            c.create_container(request).await
        })
        .map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        let request = StartContainerRequest {
            container_id: id.into(),
        };
        self.call("StartContainer", |mut c| async move {
            c.start_container(request).await
        })
        .map(drop)
    }

    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), Status> {
        let request = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_seconds,
        };
        self.call("StopContainer", |mut c| async move {
            c.stop_container(request).await
        })
        .map(drop)
    }

    pub fn container_status(&self, id: &str) -> ContainerStatus {
        let request = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call("ContainerStatus", |mut c| async move {
            c.container_status(request).await
        })
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .status
        .unwrap_or_else(|| panic!("ContainerStatus {id}: no status"))
    }

    /// The containers of a pod, with their states.
    pub fn list_containers(&self, pod: &str) -> Vec<(String, ContainerState)> {
        let request = ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.into(),
                ..ContainerFilter::default()
            }),
        };
        self.call("ListContainers", |mut c| async move {
            c.list_containers(request).await
        })
        .unwrap_or_else(|e| panic!("ListContainers: {e}"))
        .containers
        .into_iter()
        .map(|c| {
            let state = c.state();
            (c.id, state)
        })
        .collect()
    }

    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        self.try_exec_sync(id, cmd, 30)
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {id}: {e}"))
    }

    /// ExecSync with the timeout of an exec probe (`timeoutSeconds`); CRI's error when it fails.
    pub fn try_exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<ExecSyncResponse, Status> {
        let request = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|a| a.to_string()).collect(),
            timeout: timeout_seconds,
        };
        self.call(
            "ExecSync",
            |mut c| async move { c.exec_sync(request).await },
        )
    }

    /// Exec: the URL on containerd's streaming server that runs the command once a client
    /// connects (what the kubelet hands the apiserver for `kubectl exec`).
    pub fn exec_url(&self, request: ExecRequest) -> Result<String, Status> {
        self.call("Exec", |mut c| async move { c.exec(request).await })
            .map(|r| r.url)
    }

    /// Attach: the streaming URL of a running container's stdio (`kubectl attach`).
    pub fn attach_url(&self, request: AttachRequest) -> Result<String, Status> {
        self.call("Attach", |mut c| async move { c.attach(request).await })
            .map(|r| r.url)
    }

    /// PortForward: the streaming URL forwarding `ports` of a pod (`kubectl port-forward`).
    pub fn port_forward_url(&self, pod: &str, ports: &[i32]) -> Result<String, Status> {
        let request = PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: ports.to_vec(),
        };
        self.call("PortForward", |mut c| async move {
            c.port_forward(request).await
        })
        .map(|r| r.url)
    }

    /// ReopenContainerLog, as the kubelet calls it after it rotated a container's log.
    pub fn reopen_container_log(&self, id: &str) -> Result<(), Status> {
        let request = ReopenContainerLogRequest {
            container_id: id.into(),
        };
        self.call("ReopenContainerLog", |mut c| async move {
            c.reopen_container_log(request).await
        })
        .map(drop)
    }

    pub fn update_container_resources(
        &self,
        id: &str,
        linux: LinuxContainerResources,
    ) -> Result<(), Status> {
        let request = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..UpdateContainerResourcesRequest::default()
        };
        self.call("UpdateContainerResources", |mut c| async move {
            c.update_container_resources(request).await
        })
        .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        let request = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call("RemoveContainer", |mut c| async move {
            c.remove_container(request).await
        })
        .map(drop)
    }

    pub fn container_stats(&self, id: &str) -> ContainerStats {
        let request = k8s_cri::v1::ContainerStatsRequest {
            container_id: id.into(),
        };
        self.call("ContainerStats", |mut c| async move {
            c.container_stats(request).await
        })
        .unwrap_or_else(|e| panic!("ContainerStats {id}: {e}"))
        .stats
        .unwrap_or_else(|| panic!("ContainerStats {id}: no stats"))
    }

    pub fn list_container_stats(&self, pod: &str) -> Vec<ContainerStats> {
        let request = ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod.into(),
                ..ContainerStatsFilter::default()
            }),
        };
        self.call("ListContainerStats", |mut c| async move {
            c.list_container_stats(request).await
        })
        .unwrap_or_else(|e| panic!("ListContainerStats: {e}"))
        .stats
    }

    /// Polls a container's status until it is `state` (or `timeout` passes); the last status.
    pub fn wait_for_state(
        &self,
        id: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id);
            if status.state() == state {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not become {state:?} within {timeout:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running pod sandbox. Dropping it stops and removes it (best effort, for failed tests);
/// [`Pod::remove`] does the same and fails the test when CRI refuses.
pub struct Pod<'a> {
    node: &'a Node,
    pub id: String,
    pub config: PodSandboxConfig,
    removed: bool,
}

impl Pod<'_> {
    pub fn log_directory(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// CreateContainer in this pod.
    pub fn create(&self, config: &ContainerConfig) -> Result<String, Status> {
        self.node
            .cri
            .create_container(&self.id, config, &self.config)
    }

    /// CreateContainer then StartContainer; fails the test when either fails.
    pub fn start(&self, config: &ContainerConfig) -> String {
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        let id = self
            .create(config)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"));
        self.node
            .cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// The text of each line of a container's CRI log (`<time> <stream> <tag> <text>`).
    pub fn log_lines(&self, name: &str) -> Vec<String> {
        let log = fs::read_to_string(self.log_directory().join(format!("{name}.log")))
            .unwrap_or_default();
        log.lines()
            .filter_map(|line| line.splitn(4, ' ').nth(3).map(str::to_string))
            .collect()
    }

    /// Waits until a container's log has `line`; fails the test with the log otherwise.
    pub fn wait_for_log(&self, name: &str, line: &str) {
        let found = wait_until(Duration::from_secs(20), || {
            self.log_lines(name).iter().any(|l| l == line)
        });
        assert!(
            found,
            "{name}'s log has no line {line:?}: {:#?}",
            self.log_lines(name)
        );
    }

    /// StopPodSandbox then RemovePodSandbox, as the kubelet does when a pod is deleted.
    pub fn remove(mut self) {
        self.removed = true;
        let cri = &self.node.cri;
        cri.stop_pod_sandbox(&self.id)
            .unwrap_or_else(|e| panic!("StopPodSandbox {}: {e}", self.id));
        cri.remove_pod_sandbox(&self.id)
            .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", self.id));
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let cri = &self.node.cri;
        if let Err(e) = cri.stop_pod_sandbox(&self.id) {
            eprintln!("cleanup: StopPodSandbox {}: {e}", self.id);
        }
        if let Err(e) = cri.remove_pod_sandbox(&self.id) {
            eprintln!("cleanup: RemovePodSandbox {}: {e}", self.id);
        }
    }
}

/// Nothing of a removed pod is left on the node: no process in its containers' cgroups, no
/// mount, no cgroup, no engine state (which holds the container volumes), no ephemeral uid
/// claim, and no shim.
pub fn assert_nothing_left(node: &Node, pod: &str, containers: &[String]) {
    let containerd = &node.containerd;
    let mut ids: Vec<&str> = containers.iter().map(String::as_str).collect();
    ids.push(pod);
    let state = containerd.shim_root(K8S_NAMESPACE);
    assert!(
        wait_until(Duration::from_secs(20), || ids
            .iter()
            .all(|id| !state.join(id).exists())),
        "engine state is left in {}: {:?}",
        state.display(),
        fs::read_dir(&state).map(|d| d.count()).unwrap_or(0)
    );
    let processes = processes_in_cgroups_of(&ids);
    assert!(processes.is_empty(), "processes are left: {processes:#?}");
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| ids.iter().any(|id| l.contains(id)))
        .map(str::to_string)
        .collect();
    assert!(mounts.is_empty(), "mounts are left: {mounts:#?}");
    for id in &ids {
        let cgroups = cgroup_dirs_named(id);
        assert!(cgroups.is_empty(), "cgroups of {id} are left: {cgroups:#?}");
    }
    let claims = ephemeral_claims_of(&ids);
    assert!(
        claims.is_empty(),
        "ephemeral uids are still claimed: {claims:#?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || containerd
            .serving_shims()
            .is_empty()),
        "the pod's shim did not exit: {:?}",
        containerd.serving_shims()
    );
    let socket = containerd.shim_socket(K8S_NAMESPACE, pod);
    assert!(
        !socket.exists(),
        "the shim's socket {} is left",
        socket.display()
    );
}

/// Processes in a cgroup whose path names one of `ids` (every hierarchy).
pub fn processes_in_cgroups_of(ids: &[&str]) -> Vec<(i32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(|pid| {
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let in_pod = cgroups
                .lines()
                .any(|l| ids.iter().any(|id| l.contains(&format!("/{id}"))));
            in_pod.then(|| (pid, crate::support::containerd::cmdline(pid).join(" ")))
        })
        .collect()
}

/// Ephemeral uid claims (§4) held by one of `ids`.
pub fn ephemeral_claims_of(ids: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(EPHEMERAL_CLAIMS_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|claim| {
            // A claim holds the container id, then its state directory.
            fs::read_to_string(claim)
                .is_ok_and(|owner| owner.lines().next().is_some_and(|id| ids.contains(&id)))
        })
        .collect()
}

/// ExecSync that must succeed: its stdout without the final newline.
pub fn exec_stdout(node: &Node, id: &str, cmd: &[&str]) -> String {
    let out = node.cri.exec_sync(id, cmd);
    assert_eq!(
        out.exit_code,
        0,
        "{cmd:?}: stdout {:?}, stderr {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim_end().to_string()
}

/// Container stats that count some CPU time and some working set.
pub fn assert_cpu_and_memory_used(stats: &ContainerStats) {
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref());
    assert!(cpu.is_some_and(|c| c.value > 0), "no CPU usage: {stats:?}");
    let memory = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref());
    assert!(
        memory.is_some_and(|m| m.value > 0),
        "no memory usage: {stats:?}"
    );
}
