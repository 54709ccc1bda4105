//! The CRI benchmark's client (`bench/cri.sh` runs it): kubelet-style pods through containerd's
//! CRI socket, timed from the client side, one JSON object per measurement on stdout.
//!
//! `cri-bench pods SOCKET IMAGE CGROUP_PARENT LOG_DIR ROUNDS WARMUP GAP_MS HANDLER...`
//!   Each round runs one pod per handler, the handlers' order rotating from round to round,
//!   GAP_MS idle before each pod (the work containerd and a shim leave behind a pod, such as
//!   snapshot removal and the shim's exit, is then not charged to the next pod):
//!   RunPodSandbox (host network) → CreateContainer (`/bin/true`) → StartContainer → the
//!   container exits (ContainerStatus polled every millisecond) → StopPodSandbox →
//!   RemovePodSandbox. Prints `{"handler", "round", "start_ms", "exited_ms", "total_ms"}` per
//!   pod after the WARMUP rounds, `start_ms` being RunPodSandbox to StartContainer returning,
//!   and `steps_ms`: each call's time (RunPodSandbox, CreateContainer, StartContainer), the wait
//!   for the exit, then StopPodSandbox's and RemovePodSandbox's.
//!
//! `cri-bench density SOCKET IMAGE CGROUP_PARENT LOG_DIR HANDLER PODS CONTAINERD_PID SHIM`
//!   Starts PODS pods running `sleep` all at once (every pod's three calls in its own task on
//!   one connection), then reads the total PSS and RSS of the serving shims named SHIM of this
//!   containerd (`/proc/PID/smaps_rollup`), then stops and removes every pod at once. Prints
//!   one object: the wall times, containerd's CPU time (utime + stime of CONTAINERD_PID) spent
//!   by each part, the shims' count and memory.
//!
//! Like the kubelet, the client makes each pod's cgroup (`CGROUP_PARENT/pod<uid>`, in every
//! cgroup hierarchy of the host) before RunPodSandbox and removes it after the pod is gone, out
//! of the timed calls: a runtime finds the pod's cgroup there, as on a node.
//!
//! Any failed call ends the run with the call and the pod named (exit status 1) after the pods
//! made so far were removed.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostprocess_engine::sys::linux::cgroup;
use hostprocess_engine::sys::linuxlogic::mountinfo;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;

/// A failed step: what was asked of what, and why.
struct Failure(String);

impl Failure {
    fn call(what: &str, pod: &str, status: tonic::Status) -> Failure {
        Failure(format!("{what} ({pod}): {}", status.message()))
    }
}

/// What a pod is made of: the node-wide parts every pod shares.
struct Node {
    image: String,
    cgroup_parent: String,
    log_dir: PathBuf,
}

/// A pod's cgroup in every cgroup hierarchy, made as the kubelet makes it before the pod's
/// sandbox (a v1 cpuset directory gets its parent's CPUs and memory nodes); removed with
/// whatever the runtime left below it when dropped.
struct PodCgroup(Vec<PathBuf>);

impl PodCgroup {
    fn make(path: &str) -> Result<PodCgroup, Failure> {
        let mut made = PodCgroup(Vec::new());
        for (root, cpuset) in cgroup_roots()? {
            let dir = root.join(path.trim_start_matches('/'));
            // Named before it is made: a failure below removes it with the others.
            made.0.push(dir.clone());
            cgroup::make_ancestor(&dir, cpuset).map_err(|e| Failure(e.to_string()))?;
        }
        Ok(made)
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        fn remove(dir: &std::path::Path) {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.filter_map(|e| e.ok()) {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path());
                    }
                }
            }
            let _ = fs::remove_dir(dir);
        }
        for dir in &self.0 {
            remove(dir);
        }
    }
}

/// Every cgroup hierarchy's mount point, and whether it is v1's cpuset.
fn cgroup_roots() -> Result<Vec<(PathBuf, bool)>, Failure> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Failure(format!("read /proc/self/mountinfo: {e}")))?;
    Ok(mountinfo::parse(&text)
        .into_iter()
        .filter(|m| matches!(m.fs_type, "cgroup" | "cgroup2"))
        .map(|m| {
            let cpuset = m.fs_type == "cgroup" && m.super_options.contains(&"cpuset");
            (m.mount_point, cpuset)
        })
        .collect())
}

impl Node {
    fn pod_uid(name: &str) -> String {
        format!("{name}-{}", std::process::id())
    }

    /// The pod's cgroup, as the kubelet names it in the sandbox config.
    fn pod_cgroup(&self, name: &str) -> String {
        format!("{}/pod{}", self.cgroup_parent, Self::pod_uid(name))
    }

    /// The sandbox config the kubelet sends for a `hostNetwork: true` pod.
    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = Self::pod_uid(name);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: self.log_dir.join(name).to_string_lossy().into_owned(),
            labels: HashMap::from([("app".to_string(), "cri-bench".to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.pod_cgroup(name),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        }
    }

    /// A container of the image running `command`, as the kubelet asks for one in a
    /// host-network pod.
    fn container(&self, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "main".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..ImageSpec::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: "main.log".into(),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..LinuxContainerSecurityContext::default()
                }),
                ..LinuxContainerConfig::default()
            }),
            ..ContainerConfig::default()
        }
    }
}

fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..NamespaceOption::default()
    }
}

async fn connect(socket: PathBuf) -> Result<Client, Failure> {
    let connector = tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
    });
    // The URI is required but unused: the connector always dials the socket.
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(connector)
        .await
        .map_err(|e| Failure(format!("connect to containerd's CRI: {e}")))?;
    Ok(RuntimeServiceClient::new(channel))
}

/// RunPodSandbox, CreateContainer, StartContainer; the pod's id once it ran (also on failure
/// after RunPodSandbox, for the cleanup). Each call's time is pushed on `steps`.
async fn start_pod(
    mut client: Client,
    node: &Node,
    name: &str,
    handler: &str,
    command: &[&str],
    steps: &mut Vec<Duration>,
) -> (Option<String>, Result<String, Failure>) {
    let config = node.pod_config(name);
    if let Err(e) = fs::create_dir_all(&config.log_directory) {
        let failure = Failure(format!("mkdir {}: {e}", config.log_directory));
        return (None, Err(failure));
    }
    let run = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    };
    let t = Instant::now();
    let pod = match client.run_pod_sandbox(run).await {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => return (None, Err(Failure::call("RunPodSandbox", name, e))),
    };
    let create = CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(node.container(command)),
        sandbox_config: Some(config),
    };
    steps.push(t.elapsed());
    let t = Instant::now();
    let container = match client.create_container(create).await {
        Ok(r) => r.into_inner().container_id,
        Err(e) => return (Some(pod), Err(Failure::call("CreateContainer", name, e))),
    };
    let start = StartContainerRequest {
        container_id: container.clone(),
    };
    steps.push(t.elapsed());
    let t = Instant::now();
    let started = client.start_container(start).await;
    steps.push(t.elapsed());
    match started {
        Ok(_) => (Some(pod), Ok(container)),
        Err(e) => (Some(pod), Err(Failure::call("StartContainer", name, e))),
    }
}

/// StopPodSandbox, RemovePodSandbox; each call's time is pushed on `steps`.
async fn remove_pod(
    mut client: Client,
    pod: String,
    steps: &mut Vec<Duration>,
) -> Result<(), Failure> {
    let t = Instant::now();
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    client
        .stop_pod_sandbox(stop)
        .await
        .map_err(|e| Failure::call("StopPodSandbox", &pod, e))?;
    steps.push(t.elapsed());
    let t = Instant::now();
    let remove = RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    client
        .remove_pod_sandbox(remove)
        .await
        .map_err(|e| Failure::call("RemovePodSandbox", &pod, e))?;
    steps.push(t.elapsed());
    Ok(())
}

async fn wait_exited(client: &mut Client, container: &str) -> Result<(), Failure> {
    loop {
        let request = ContainerStatusRequest {
            container_id: container.into(),
            verbose: false,
        };
        let status = client
            .container_status(request)
            .await
            .map_err(|e| Failure::call("ContainerStatus", container, e))?
            .into_inner()
            .status;
        if status.is_some_and(|s| s.state() == ContainerState::ContainerExited) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn pods(
    client: Client,
    node: Node,
    rounds: usize,
    warmup: usize,
    gap: Duration,
    handlers: &[String],
) -> Result<(), Failure> {
    for round in 0..warmup + rounds {
        for i in 0..handlers.len() {
            let handler = &handlers[(round + i) % handlers.len()];
            let name = format!("bench-{handler}-{round}");
            tokio::time::sleep(gap).await;
            let cgroup = PodCgroup::make(&node.pod_cgroup(&name))?;
            let mut steps = Vec::new();
            let t0 = Instant::now();
            let (pod, started) = start_pod(
                client.clone(),
                &node,
                &name,
                handler,
                &["/bin/true"],
                &mut steps,
            )
            .await;
            let started_at = t0.elapsed();
            let result = match started {
                Ok(container) => wait_exited(&mut client.clone(), &container).await,
                Err(e) => Err(e),
            };
            let exited_at = t0.elapsed();
            steps.push(exited_at - started_at);
            let removed = match pod {
                Some(pod) => remove_pod(client.clone(), pod, &mut steps).await,
                None => Ok(()),
            };
            let total = t0.elapsed();
            drop(cgroup);
            let named = |Failure(message)| Failure(format!("a {handler} pod: {message}"));
            result.map_err(named)?;
            removed.map_err(named)?;
            if round >= warmup {
                let steps: Vec<String> = steps.iter().map(|d| format!("{:.3}", ms(*d))).collect();
                println!(
                    "{{\"handler\":\"{handler}\",\"round\":{},\"start_ms\":{:.3},\"exited_ms\":{:.3},\"total_ms\":{:.3},\"steps_ms\":[{}]}}",
                    round - warmup,
                    ms(started_at),
                    ms(exited_at),
                    ms(total),
                    steps.join(",")
                );
            }
        }
    }
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Failure> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| Failure(format!("read /proc/{pid}/stat: {e}")))?;
    // Fields after the command (which may hold spaces) in parentheses; utime and stime are the
    // 14th and 15th fields, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => Err(Failure(format!("/proc/{pid}/stat: no utime/stime"))),
    }
}

fn ticks_ms(ticks: u64) -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1e3 / hz
}

/// Count, total PSS and total RSS (KiB) of the serving shims named `shim` whose command line
/// names `socket` (this containerd's).
fn shim_memory(shim: &str, socket: &str) -> (usize, u64, u64) {
    let (mut count, mut pss, mut rss) = (0, 0, 0);
    let Ok(entries) = fs::read_dir("/proc") else {
        return (0, 0, 0);
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Ok(cmdline) = fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.rsplit('/').next() == Some(shim));
        if !is_shim
            || !args.iter().any(|a| a.contains(socket))
            || args.iter().any(|a| a == "start" || a == "delete")
        {
            continue;
        }
        let Ok(rollup) = fs::read_to_string(path.join("smaps_rollup")) else {
            continue;
        };
        let kib = |key: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        count += 1;
        pss += kib("Pss:");
        rss += kib("Rss:");
    }
    (count, pss, rss)
}

#[allow(clippy::too_many_arguments)]
async fn density(
    client: Client,
    node: Node,
    socket: &str,
    handler: &str,
    count: usize,
    containerd: u32,
    shim: &str,
) -> Result<(), Failure> {
    let node = std::sync::Arc::new(node);
    let cgroups = (0..count)
        .map(|i| PodCgroup::make(&node.pod_cgroup(&format!("density-{handler}-{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let cpu0 = cpu_ticks(containerd)?;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (client, node, handler) = (client.clone(), node.clone(), handler.to_string());
        tasks.spawn(async move {
            let name = format!("density-{handler}-{i}");
            start_pod(
                client,
                &node,
                &name,
                &handler,
                &["sleep", "3600"],
                &mut Vec::new(),
            )
            .await
        });
    }
    let mut pods = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((pod, started)) => {
                pods.extend(pod);
                if let Err(e) = started {
                    failure.get_or_insert(e);
                }
            }
            Err(e) => {
                failure.get_or_insert(Failure(format!("a pod's start: {e}")));
            }
        }
    }
    let started = t0.elapsed();
    let cpu1 = cpu_ticks(containerd)?;
    // Let the shims settle (the start actions have exited, lazily touched pages are in).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (shims, pss, rss) = shim_memory(shim, socket);
    let cpu2 = cpu_ticks(containerd)?;
    let t1 = Instant::now();
    let mut removals = tokio::task::JoinSet::new();
    for pod in pods {
        let client = client.clone();
        removals.spawn(async move { remove_pod(client, pod, &mut Vec::new()).await });
    }
    while let Some(joined) = removals.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(Failure(format!("a pod's removal: {e}")));
            }
        }
    }
    let removed = t1.elapsed();
    let cpu3 = cpu_ticks(containerd)?;
    drop(cgroups);
    if let Some(failure) = failure {
        return Err(failure);
    }
    println!(
        "{{\"handler\":\"{handler}\",\"pods\":{count},\"start_all_ms\":{:.1},\"containerd_cpu_start_ms\":{:.0},\"shims\":{shims},\"shims_pss_kib\":{pss},\"shims_rss_kib\":{rss},\"remove_all_ms\":{:.1},\"containerd_cpu_remove_ms\":{:.0}}}",
        ms(started),
        ticks_ms(cpu1 - cpu0),
        ms(removed),
        ticks_ms(cpu3 - cpu2)
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: cri-bench pods SOCKET IMAGE CGROUP_PARENT LOG_DIR ROUNDS WARMUP GAP_MS HANDLER... \
                 | density SOCKET IMAGE CGROUP_PARENT LOG_DIR HANDLER PODS CONTAINERD_PID SHIM";
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cri-bench: a tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let number = |s: &str| s.parse::<usize>().map_err(|e| Failure(format!("{s}: {e}")));
    let result = runtime.block_on(async {
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["pods", socket, image, cgroup, logs, rounds, warmup, gap, handlers @ ..]
                if !handlers.is_empty() =>
            {
                let node = node(image, cgroup, logs);
                let client = connect(socket.into()).await?;
                let handlers: Vec<String> = handlers.iter().map(|h| h.to_string()).collect();
                let gap = Duration::from_millis(number(gap)? as u64);
                pods(
                    client,
                    node,
                    number(rounds)?,
                    number(warmup)?,
                    gap,
                    &handlers,
                )
                .await
            }
            ["density", socket, image, cgroup, logs, handler, count, pid, shim] => {
                let node = node(image, cgroup, logs);
                let client = connect(socket.into()).await?;
                let pid = number(pid)? as u32;
                density(client, node, socket, handler, number(count)?, pid, shim).await
            }
            _ => Err(Failure(usage.into())),
        }
    });
    if let Err(Failure(message)) = result {
        eprintln!("cri-bench: {message}");
        std::process::exit(1);
    }
}

fn node(image: &str, cgroup_parent: &str, log_dir: &str) -> Node {
    Node {
        image: image.into(),
        cgroup_parent: cgroup_parent.into(),
        log_dir: log_dir.into(),
    }
}
