//! Kubernetes pods as containerd's CRI makes them (§7): which role a container has in its pod,
//! the rules a HostProcess pod must follow (with the kubelet's and containerd's messages), and
//! the pod annotations every container of the pod inherits. Plain decisions over a spec's
//! annotations and namespaces; the task service applies them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hostprocess_engine::annotations::{
    parse_bool, BoolSpelling, CRI_CONTAINER_TYPE, CRI_SANDBOX_ID, HOSTPROCESS_CONTAINER,
    INHERIT_USER, NETWORK, ROOTFS_LOCATION,
};
use hostprocess_engine::plan::network;
use hostprocess_engine::spec::Spec;

/// `io.kubernetes.cri.container-type` of a pod sandbox.
const SANDBOX: &str = "sandbox";
/// The pod annotations hcsshim copies to every container of the pod that lacks them
/// ("Kubernetes only passes annotations to RunPodSandbox"), and ours that says where the
/// pod's network is.
const INHERITED: [&str; 3] = [INHERIT_USER, ROOTFS_LOCATION, NETWORK];

/// What a task is to the pod it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The pod sandbox: it holds the pod together and runs no process (§7).
    Sandbox,
    /// A container of the pod whose sandbox is `sandbox_id`.
    Member { sandbox_id: String },
    /// Not made by CRI (e.g. `ctr run`).
    Standalone,
}

impl Role {
    pub fn of(annotations: &BTreeMap<String, String>) -> Role {
        let sandbox_id = annotations.get(CRI_SANDBOX_ID).filter(|id| !id.is_empty());
        match (
            annotations.get(CRI_CONTAINER_TYPE).map(String::as_str),
            sandbox_id,
        ) {
            (Some(SANDBOX), _) => Role::Sandbox,
            (_, Some(id)) => Role::Member {
                sandbox_id: id.clone(),
            },
            _ => Role::Standalone,
        }
    }
}

/// A refusal, with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `microsoft.com/hostprocess-container` value, read as Go's `strconv.ParseBool` reads it
/// (containerd writes it with `FormatBool`). Absent: `None`.
fn hostprocess_value(
    annotations: &BTreeMap<String, String>,
    whose: &str,
) -> Result<Option<bool>, Refusal> {
    let Some(value) = annotations.get(HOSTPROCESS_CONTAINER) else {
        return Ok(None);
    };
    parse_bool(HOSTPROCESS_CONTAINER, value, BoolSpelling::Go)
        .map(Some)
        .map_err(|e| Refusal(format!("{whose}: {e}; set it to \"true\" or remove it")))
}

/// The pod's HostProcess value: the runtime class selects this runtime only for HostProcess
/// pods, so a sandbox that does not say otherwise is one.
fn pod_value(sandbox: &BTreeMap<String, String>, whose: &str) -> Result<bool, Refusal> {
    Ok(hostprocess_value(sandbox, whose)?.unwrap_or(true))
}

/// Checks a pod sandbox: a HostProcess pod is in the host's network namespace unless it opts
/// in to its own with `hostprocess.io/network: pod`, and this runtime runs nothing but
/// HostProcess pods. `is_host_network` tells whether a namespace path is the host's own
/// network namespace.
pub fn check_sandbox(
    id: &str,
    spec: &Spec,
    is_host_network: impl Fn(&str) -> bool,
) -> Result<(), Refusal> {
    let whose = format!("pod sandbox {id}");
    if !pod_value(&spec.annotations, &whose)? {
        return Err(Refusal(format!(
            "{whose}: the pod is not a HostProcess pod ({HOSTPROCESS_CONTAINER}=false), and the \
             hostprocess runtime runs only HostProcess containers; remove the annotation or \
             choose another runtime class for this pod"
        )));
    }
    let pod_network = network::pod_network(spec).map_err(|e| Refusal(format!("{whose}: {e}")))?;
    if pod_network.is_some() {
        return Ok(());
    }
    if let Some(path) = own_network_namespace(spec, is_host_network) {
        let what = match path {
            Some(path) => format!("joins the network namespace {path}"),
            None => "asks for a new network namespace".to_string(),
        };
        return Err(Refusal(format!(
            "{whose}: hostNetwork is required if Pod contains HostProcess containers: the \
             sandbox {what}, but a HostProcess pod uses the host's network; set hostNetwork: \
             true in the pod spec (or, to run the pod in its own network namespace, give it \
             the annotation {NETWORK}: {})",
            network::POD
        )));
    }
    Ok(())
}

/// The network namespace a spec asks for that is not the host's: `Some(None)` for a new one,
/// `Some(Some(path))` for one to join.
fn own_network_namespace(
    spec: &Spec,
    is_host_network: impl Fn(&str) -> bool,
) -> Option<Option<String>> {
    match spec.network_namespace()? {
        None => Some(None),
        Some(path) if is_host_network(path) => None,
        Some(path) => Some(Some(path.to_string())),
    }
}

/// What the containers of a pod take from its sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandbox {
    pub annotations: BTreeMap<String, String>,
    /// The pod's network namespace, when the pod opted in to it (§7).
    pub network: Option<PathBuf>,
}

impl PodSandbox {
    /// Of a sandbox's spec (already checked by [`check_sandbox`]).
    pub fn of(spec: &Spec) -> PodSandbox {
        PodSandbox {
            annotations: spec.annotations.clone(),
            network: network::pod_network(spec).ok().flatten(),
        }
    }
}

/// Points a container that runs in its pod's network at the pod's network namespace. The
/// sandbox has the namespace containerd's CRI made (and ran CNI in); the container's spec
/// names it through the sandbox's process (`/proc/<sandbox pid>/ns/net`), and a HostProcess
/// sandbox has no process. Without a known pod network the spec is left as it is.
pub fn join_pod_network(spec: &mut Spec, sandbox: Option<&PodSandbox>) {
    let Some(path) = sandbox.and_then(|s| s.network.as_ref()) else {
        return;
    };
    if spec.annotation(NETWORK) != Some(network::POD) {
        return;
    }
    let Some(linux) = spec.linux.as_mut() else {
        return;
    };
    let path = serde_json::Value::String(path.to_string_lossy().into_owned());
    for ns in &mut linux.namespaces {
        if ns.get("type").and_then(|t| t.as_str()) == Some("network") {
            if let Some(entry) = ns.as_object_mut() {
                entry.insert("path".into(), path.clone());
            }
        }
    }
}

/// Admits a container into its pod: its HostProcess value must be the pod's (containerd's
/// rule and message), and it inherits the pod's inherit-user and rootfs-location annotations
/// when it has none of its own, as hcsshim does. `sandbox` is `None` when the sandbox's spec
/// cannot be found; the pod then counts as a HostProcess pod with no annotations to inherit.
pub fn admit_container(
    id: &str,
    annotations: &mut BTreeMap<String, String>,
    sandbox: Option<&BTreeMap<String, String>>,
) -> Result<(), Refusal> {
    let empty = BTreeMap::new();
    let sandbox = sandbox.unwrap_or(&empty);
    let whose = format!("container {id}");
    let pod = pod_value(sandbox, &whose)?;
    let container = hostprocess_value(annotations, &whose)?.unwrap_or(pod);
    if container != pod {
        return Err(Refusal(format!(
            "{whose}: pod spec and all containers inside must have the HostProcess field set to \
             be valid: the container's {HOSTPROCESS_CONTAINER} is {container}, its pod's is \
             {pod}; give the container the pod's value (or none)"
        )));
    }
    for key in INHERITED {
        if let Some(value) = sandbox.get(key) {
            annotations
                .entry(key.to_string())
                .or_insert_with(|| value.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostprocess_engine::spec::Linux;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sandbox_spec(namespaces: serde_json::Value) -> Spec {
        Spec {
            annotations: annotations(&[(CRI_CONTAINER_TYPE, SANDBOX), (CRI_SANDBOX_ID, "p1")]),
            linux: Some(Linux {
                namespaces: serde_json::from_value(namespaces).unwrap(),
                ..Linux::default()
            }),
            ..Spec::default()
        }
    }

    fn never_host(_: &str) -> bool {
        false
    }

    #[test]
    fn cri_annotations_tell_the_role() {
        let sandbox = annotations(&[(CRI_CONTAINER_TYPE, "sandbox"), (CRI_SANDBOX_ID, "p1")]);
        assert_eq!(Role::of(&sandbox), Role::Sandbox);
        let member = annotations(&[(CRI_CONTAINER_TYPE, "container"), (CRI_SANDBOX_ID, "p1")]);
        assert_eq!(
            Role::of(&member),
            Role::Member {
                sandbox_id: "p1".into()
            }
        );
        assert_eq!(Role::of(&BTreeMap::new()), Role::Standalone);
        assert_eq!(
            Role::of(&annotations(&[(CRI_SANDBOX_ID, "")])),
            Role::Standalone
        );
    }

    #[test]
    fn a_host_network_sandbox_is_accepted() {
        let spec =
            sandbox_spec(serde_json::json!([{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]));
        assert_eq!(check_sandbox("p1", &spec, never_host), Ok(()));
        let mut spec =
            sandbox_spec(serde_json::json!([{"type": "network", "path": "/proc/1/ns/net"}]));
        spec.annotations
            .insert(HOSTPROCESS_CONTAINER.into(), "true".into());
        assert_eq!(
            check_sandbox("p1", &spec, |p| p == "/proc/1/ns/net"),
            Ok(())
        );
    }

    #[test]
    fn a_sandbox_with_its_own_network_namespace_gets_the_kubelets_message() {
        let new = sandbox_spec(serde_json::json!([{"type": "network"}, {"type": "pid"}]));
        let Err(Refusal(message)) = check_sandbox("p1", &new, never_host) else {
            panic!("a new network namespace was accepted");
        };
        assert!(
            message.starts_with(
                "pod sandbox p1: hostNetwork is required if Pod contains HostProcess containers"
            ),
            "{message}"
        );
        assert!(
            message.contains("asks for a new network namespace"),
            "{message}"
        );
        assert!(
            message.contains("set hostNetwork: true in the pod spec"),
            "{message}"
        );
        assert!(
            message.ends_with("give it the annotation hostprocess.io/network: pod)"),
            "{message}"
        );

        // CRI makes the pod's namespace itself (for CNI) and names it in the spec.
        let joined =
            sandbox_spec(serde_json::json!([{"type": "network", "path": "/var/run/netns/cni-1"}]));
        let Err(Refusal(message)) = check_sandbox("p1", &joined, never_host) else {
            panic!("a pod network namespace was accepted");
        };
        assert!(
            message.contains("joins the network namespace /var/run/netns/cni-1"),
            "{message}"
        );
    }

    #[test]
    fn a_sandbox_in_its_pods_network_is_accepted_only_with_the_annotation() {
        let mut spec = sandbox_spec(serde_json::json!([
            {"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "pid"}
        ]));
        assert!(check_sandbox("p1", &spec, never_host).is_err());
        spec.annotations.insert(NETWORK.into(), "pod".into());
        assert_eq!(check_sandbox("p1", &spec, never_host), Ok(()));
        spec.annotations.insert(NETWORK.into(), "host".into());
        assert!(check_sandbox("p1", &spec, never_host).is_err());
        spec.annotations.insert(NETWORK.into(), "cni".into());
        let Err(Refusal(message)) = check_sandbox("p1", &spec, never_host) else {
            panic!("an unknown network value was accepted");
        };
        assert!(
            message.starts_with(
                r#"pod sandbox p1: invalid spec: annotation hostprocess.io/network="cni""#
            ),
            "{message}"
        );
    }

    #[test]
    fn a_sandbox_that_is_not_hostprocess_is_refused() {
        let mut spec = sandbox_spec(serde_json::json!([]));
        spec.annotations
            .insert(HOSTPROCESS_CONTAINER.into(), "false".into());
        let Err(Refusal(message)) = check_sandbox("p1", &spec, never_host) else {
            panic!("a non-HostProcess pod was accepted");
        };
        assert!(
            message.contains("choose another runtime class"),
            "{message}"
        );
        spec.annotations
            .insert(HOSTPROCESS_CONTAINER.into(), "yes".into());
        let Err(Refusal(message)) = check_sandbox("p1", &spec, never_host) else {
            panic!("a non-boolean value was accepted");
        };
        assert!(message.contains("is not a boolean"), "{message}");
    }

    #[test]
    fn a_container_must_agree_with_its_pod() {
        let pod = annotations(&[(HOSTPROCESS_CONTAINER, "true")]);
        for (container, pod) in [
            (annotations(&[(HOSTPROCESS_CONTAINER, "false")]), Some(&pod)),
            (annotations(&[(HOSTPROCESS_CONTAINER, "0")]), None),
        ] {
            let mut container = container;
            let Err(Refusal(message)) = admit_container("c1", &mut container, pod) else {
                panic!("a non-HostProcess container was admitted");
            };
            assert!(
                message.contains(
                    "pod spec and all containers inside must have the HostProcess field set to be valid"
                ),
                "{message}"
            );
        }
        for container in [
            annotations(&[(HOSTPROCESS_CONTAINER, "True")]),
            BTreeMap::new(),
        ] {
            let mut container = container;
            assert_eq!(admit_container("c1", &mut container, Some(&pod)), Ok(()));
            assert_eq!(admit_container("c1", &mut container, None), Ok(()));
        }
    }

    #[test]
    fn a_container_of_a_pod_in_its_own_network_joins_the_sandboxs_namespace() {
        let sandbox = {
            let mut spec = sandbox_spec(serde_json::json!([
                {"type": "network", "path": "/var/run/netns/cni-1"}
            ]));
            spec.annotations.insert(NETWORK.into(), "pod".into());
            PodSandbox::of(&spec)
        };
        assert_eq!(sandbox.network, Some(PathBuf::from("/var/run/netns/cni-1")));
        let container = |annotation: Option<&str>| {
            let mut spec = sandbox_spec(serde_json::json!([
                {"type": "pid"}, {"type": "network", "path": "/proc/0/ns/net"}
            ]));
            spec.annotations
                .insert(CRI_CONTAINER_TYPE.into(), "container".into());
            if let Some(value) = annotation {
                spec.annotations.insert(NETWORK.into(), value.into());
            }
            spec
        };
        let network_path = |spec: &Spec| spec.network_namespace().flatten().map(str::to_string);

        let mut member = container(None);
        admit_container("c1", &mut member.annotations, Some(&sandbox.annotations)).unwrap();
        join_pod_network(&mut member, Some(&sandbox));
        assert_eq!(
            network_path(&member).as_deref(),
            Some("/var/run/netns/cni-1")
        );
        assert_eq!(member.annotation(NETWORK), Some("pod"), "inherited");

        // A container that says "host", or a pod without a network of its own: unchanged.
        let mut host = container(Some("host"));
        admit_container("c1", &mut host.annotations, Some(&sandbox.annotations)).unwrap();
        join_pod_network(&mut host, Some(&sandbox));
        assert_eq!(network_path(&host).as_deref(), Some("/proc/0/ns/net"));
        let mut no_pod_network = container(Some("pod"));
        join_pod_network(&mut no_pod_network, Some(&PodSandbox::default()));
        join_pod_network(&mut no_pod_network, None);
        assert_eq!(
            network_path(&no_pod_network).as_deref(),
            Some("/proc/0/ns/net")
        );
    }

    #[test]
    fn a_container_inherits_the_pods_user_and_rootfs_location_unless_it_has_its_own() {
        let pod = annotations(&[
            (INHERIT_USER, "true"),
            (ROOTFS_LOCATION, "/pod-hpc"),
            ("hostprocess.io/run-as-user", "alice"),
        ]);
        let mut container = annotations(&[(ROOTFS_LOCATION, "/own-hpc")]);
        admit_container("c1", &mut container, Some(&pod)).unwrap();
        assert_eq!(
            container,
            annotations(&[(INHERIT_USER, "true"), (ROOTFS_LOCATION, "/own-hpc")])
        );
    }
}
