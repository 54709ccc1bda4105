//! The HostProcess rules for one pod (a `Pod`'s spec or a workload's pod template), with the
//! apiserver's messages where it has them.

use crate::field::{go_quote, invalid, FieldPath};
use crate::node::Node;
use crate::report::Report;
use crate::rules::Rule;
use crate::LintOptions;
use hostprocess_engine::annotations::{parse_bool, BoolSpelling, NETWORK};
use hostprocess_engine::plan::network::POD;
use hostprocess_engine::plan::run_as_user_name::run_as_user_name_errors;

// The pod annotations the runtime reads: the marker of a HostProcess pod (set by containerd's
// CRI on Windows, by hand for our runtime on Linux), and the account of every container or of
// one (`run-as-user.hostprocess.io/<container-name>`), in `runAsUserName` syntax.
pub(crate) use hostprocess_engine::annotations::{
    HOSTPROCESS_CONTAINER, RUN_AS_USER, RUN_AS_USER_OF_CONTAINER,
};
/// The Pod Security admission label that decides which pods a namespace admits.
pub(crate) const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A pod as a workload describes it.
pub(crate) struct PodTemplate<'a> {
    /// `metadata` of the pod, when present.
    pub(crate) metadata: Option<Node<'a>>,
    /// Where `metadata` is or would be.
    pub(crate) metadata_path: FieldPath,
    pub(crate) spec: Node<'a>,
}

/// What the rest of the file says about the pod's namespace.
pub(crate) struct NamespacePolicy<'a> {
    pub(crate) name: &'a str,
    /// Value of `pod-security.kubernetes.io/enforce` on the `Namespace` object.
    pub(crate) enforce: &'a str,
}

/// The security settings of the pod or of one container, with the paths of the fields.
struct Security<'a> {
    host_process: Option<bool>,
    host_process_path: FieldPath,
    run_as_user_name: Option<(FieldPath, &'a str)>,
    run_as_non_root: Option<(FieldPath, bool)>,
}

impl<'a> Security<'a> {
    /// Reads `securityContext` of `owner` (a pod spec or a container).
    fn read(owner: &Node<'a>, report: &mut Report) -> Security<'a> {
        let context = owner.get("securityContext", report);
        let windows = context
            .as_ref()
            .and_then(|c| c.get("windowsOptions", report));
        let host_process_node = windows.as_ref().and_then(|w| w.get("hostProcess", report));
        let host_process = host_process_node.as_ref().and_then(|n| n.bool(report));
        let run_as_user_name = windows
            .as_ref()
            .and_then(|w| w.get("runAsUserName", report))
            .and_then(|n| Some((n.path().clone(), n.string(report)?)));
        let run_as_non_root = context
            .as_ref()
            .and_then(|c| c.get("runAsNonRoot", report))
            .and_then(|n| Some((n.path().clone(), n.bool(report)?)));
        Security {
            host_process,
            host_process_path: match host_process_node {
                Some(node) => node.path().clone(),
                None => {
                    owner
                        .path()
                        .children(&["securityContext", "windowsOptions", "hostProcess"])
                }
            },
            run_as_user_name,
            run_as_non_root,
        }
    }
}

struct Container<'a> {
    name: &'a str,
    security: Security<'a>,
}

/// Every container of the pod in the apiserver's visiting order: init, regular, ephemeral.
fn read_containers<'a>(spec: &Node<'a>, report: &mut Report) -> Vec<Container<'a>> {
    let mut containers = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(list) = spec.get(list, report) else {
            continue;
        };
        for node in list.items(report) {
            let name = node
                .value()
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("");
            let security = Security::read(&node, report);
            containers.push(Container { name, security });
        }
    }
    containers
}

fn optional_bool(node: &Node<'_>, key: &str, report: &mut Report) -> Option<bool> {
    node.get(key, report).and_then(|n| n.bool(report))
}

/// Checks one pod and adds what it finds to `report`.
pub(crate) fn lint_pod(
    pod: &PodTemplate<'_>,
    options: &LintOptions,
    namespace: Option<NamespacePolicy<'_>>,
    report: &mut Report,
) {
    let spec = &pod.spec;
    let annotations = pod
        .metadata
        .as_ref()
        .and_then(|m| m.get("annotations", report));
    let marked = annotations
        .as_ref()
        .and_then(|a| a.entry(HOSTPROCESS_CONTAINER, report))
        .and_then(|n| read_flag(&n, report).map(|flag| (n.path().clone(), flag)));
    let run_as_user = annotations
        .as_ref()
        .and_then(|a| a.entry(RUN_AS_USER, report))
        .and_then(|n| Some((n.path().clone(), n.string(report)?)));
    // Our extension: `hostprocess.io/network: pod` runs the pod in a network of its own.
    let pod_network = annotations
        .as_ref()
        .and_then(|a| a.entry(NETWORK, report))
        .and_then(|n| Some((n.path().clone(), n.string(report)? == POD)))
        .filter(|(_, pod)| *pod);
    let runtime_class = spec
        .get("runtimeClassName", report)
        .and_then(|n| Some((n.path().clone(), n.string(report)?)));
    // `None` when set to something that is not a boolean: reported already, so no second
    // finding for the same field.
    let host_network_node = spec.get("hostNetwork", report);
    let host_network = match &host_network_node {
        Some(node) => node.bool(report),
        None => Some(false),
    };
    let host_network_path = match &host_network_node {
        Some(node) => node.path().clone(),
        None => spec.path().child("hostNetwork"),
    };
    let host_pid = optional_bool(spec, "hostPID", report).unwrap_or(false);
    let host_ipc = optional_bool(spec, "hostIPC", report).unwrap_or(false);
    let pod_security = Security::read(spec, report);
    let containers = read_containers(spec, report);

    let by_runtime_class = runtime_class
        .as_ref()
        .is_some_and(|(_, class)| options.is_hostprocess_runtime_class(class));
    let by_annotation = marked.as_ref().is_some_and(|(_, flag)| *flag);
    // Our Linux flavour: the runtime makes every container a HostProcess container unless
    // the manifest says otherwise.
    let implied = by_runtime_class || by_annotation;
    // The apiserver's own count: a container asks for it, or inherits it from the pod.
    let asked = |c: &Container<'_>| c.security.host_process.or(pod_security.host_process);
    let by_windows_options = containers.iter().any(|c| asked(c) == Some(true));
    let is_hostprocess = implied || by_windows_options;

    if let Some((path, name)) = &pod_security.run_as_user_name {
        check_run_as_user_name(path, name, report);
    }
    if let Some((path, name)) = &run_as_user {
        check_run_as_user_name(path, name, report);
    }
    if let Some(annotations) = &annotations {
        check_container_accounts(annotations, &containers, report);
    }
    if is_hostprocess {
        check_run_as_non_root(&pod_security, report);
    }

    for container in &containers {
        let security = &container.security;
        if let (Some(pod_value), Some(value)) = (pod_security.host_process, security.host_process) {
            if pod_value != value {
                report.error(
                    Rule::HostProcessIdentical,
                    &security.host_process_path,
                    invalid(
                        value,
                        format!(
                            "pod hostProcess value must be identical if both are specified, was {pod_value}"
                        ),
                    ),
                );
            }
        }
        if is_hostprocess && !asked(container).unwrap_or(implied) {
            report.error(
                Rule::HostProcessAllContainers,
                &security.host_process_path,
                invalid(
                    false,
                    "If pod contains any hostProcess containers then all containers must be HostProcess containers",
                ),
            );
        }
        if let Some((path, name)) = &security.run_as_user_name {
            check_run_as_user_name(path, name, report);
        }
        if is_hostprocess {
            check_run_as_non_root(security, report);
        }
    }

    if !is_hostprocess {
        return;
    }
    if let (Some(false), Some((path, _)), false) = (host_network, &pod_network, by_windows_options)
    {
        report.info(
            Rule::HostNetwork,
            path,
            "the pod runs in a network namespace of its own (its pod IP) instead of the host's: \
             a HostProcess extension of the hostprocess runtime; hostNetwork is not required",
        );
    } else if host_network == Some(false) {
        report.error(
            Rule::HostNetwork,
            &host_network_path,
            invalid(
                false,
                "hostNetwork must be true if pod contains any hostProcess containers",
            ),
        );
    }

    // Pod Security: what baseline (and so restricted) forbids in this pod, as admission says it.
    let mut reasons = Vec::new();
    let host_namespaces: Vec<&str> = [
        (host_network == Some(true), "hostNetwork=true"),
        (host_pid, "hostPID=true"),
        (host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter_map(|(set, detail)| set.then_some(detail))
    .collect();
    if !host_namespaces.is_empty() {
        reasons.push(format!("host namespaces ({})", host_namespaces.join(", ")));
    }
    let pod_sets = pod_security.host_process == Some(true);
    let setting: Vec<&Container<'_>> = containers
        .iter()
        .filter(|c| c.security.host_process == Some(true))
        .collect();
    if pod_sets || !setting.is_empty() {
        reasons.push(format!(
            "hostProcess ({} must not set securityContext.windowsOptions.hostProcess=true)",
            host_process_setters(pod_sets, &setting)
        ));
    }
    let mut note = "requires Pod Security level privileged".to_string();
    if !reasons.is_empty() {
        note.push_str(": baseline and restricted forbid it: ");
        note.push_str(&reasons.join(", "));
    }
    if let Some(namespace) = namespace {
        match namespace.enforce {
            "privileged" => note.push_str(&format!(
                "; namespace {} enforces privileged",
                go_quote(namespace.name)
            )),
            level @ ("baseline" | "restricted") if !reasons.is_empty() => note.push_str(&format!(
                "; namespace {} enforces {level}, so its pods are rejected unless the cluster \
                 exempts them: label it {POD_SECURITY_ENFORCE}=privileged",
                go_quote(namespace.name)
            )),
            _ => {}
        }
    }
    // Point at the field that makes the pod a HostProcess pod.
    let field = if pod_sets {
        pod_security.host_process_path.clone()
    } else if let Some(container) = setting.first() {
        container.security.host_process_path.clone()
    } else if host_network == Some(true) {
        host_network_path
    } else if let (true, Some((path, _))) = (by_runtime_class, &runtime_class) {
        path.clone()
    } else if let Some((path, _)) = &marked {
        path.clone()
    } else {
        spec.path().clone()
    };
    report.info(Rule::PodSecurityLevel, &field, note);

    if let (Some((path, true)), false, false) = (&marked, by_runtime_class, by_windows_options) {
        report.info(
            Rule::RuntimeClass,
            path,
            format!(
                "takes effect only when the HostProcess runtime runs the pod: set {} to {}, \
                 unless that runtime is the node's default",
                spec.path().child("runtimeClassName"),
                go_quote(options.primary_runtime_class())
            ),
        );
    }
}

/// `pod`, `container "a"`, `pod and containers "a", "b"`: who sets hostProcess=true.
fn host_process_setters(pod_sets: bool, containers: &[&Container<'_>]) -> String {
    let mut setters = Vec::new();
    if pod_sets {
        setters.push("pod".to_string());
    }
    if !containers.is_empty() {
        let noun = if containers.len() == 1 {
            "container"
        } else {
            "containers"
        };
        let names: Vec<String> = containers.iter().map(|c| go_quote(c.name)).collect();
        setters.push(format!("{noun} {}", names.join(", ")));
    }
    setters.join(" and ")
}

/// The `microsoft.com/hostprocess-container` annotation: `"true"` or `"false"` (in any case).
fn read_flag(node: &Node<'_>, report: &mut Report) -> Option<bool> {
    let text = node.string(report)?;
    match parse_bool(HOSTPROCESS_CONTAINER, text, BoolSpelling::Word) {
        Ok(flag) => Some(flag),
        Err(_) => {
            report.error(
                Rule::HostProcessAnnotation,
                node.path(),
                invalid(go_quote(text), "must be \"true\" or \"false\""),
            );
            None
        }
    }
}

/// `run-as-user.hostprocess.io/<container-name>`: the name follows the `runAsUserName` rules,
/// and the container exists (the runtime ignores a key that names none: a typo would leave
/// the container under the pod-wide account without a word).
fn check_container_accounts(
    annotations: &Node<'_>,
    containers: &[Container<'_>],
    report: &mut Report,
) {
    let keys: Vec<&str> = annotations
        .mapping(report)
        .unwrap_or_default()
        .iter()
        .map(|e| e.key.as_str())
        .filter(|k| k.starts_with(RUN_AS_USER_OF_CONTAINER))
        .collect();
    for key in keys {
        let Some(node) = annotations.entry(key, report) else {
            continue;
        };
        let Some(name) = node.string(report) else {
            continue;
        };
        check_run_as_user_name(node.path(), name, report);
        let container = &key[RUN_AS_USER_OF_CONTAINER.len()..];
        if !containers.iter().any(|c| c.name == container) {
            let names: Vec<String> = containers.iter().map(|c| go_quote(c.name)).collect();
            report.error(
                Rule::RunAsUserContainer,
                node.path(),
                format!(
                    "names no container of this pod, so no container runs as {}: the pod's \
                     containers are {}",
                    go_quote(name),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
    }
}

fn check_run_as_user_name(path: &FieldPath, name: &str, report: &mut Report) {
    for error in run_as_user_name_errors(name) {
        report.error(Rule::RunAsUserName, path, invalid(go_quote(name), error));
    }
}

fn check_run_as_non_root(security: &Security<'_>, report: &mut Report) {
    if let Some((path, true)) = &security.run_as_non_root {
        report.error(
            Rule::RunAsNonRoot,
            path,
            invalid(
                true,
                "runAsNonRoot cannot be true for HostProcess containers",
            ),
        );
    }
}
