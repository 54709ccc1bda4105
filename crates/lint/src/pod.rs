//! The HostProcess rules for one pod (a `Pod`'s spec or a workload's pod template), with the
//! apiserver's messages where it has them.

use crate::field::{go_quote, invalid, FieldPath};
use crate::node::Node;
use crate::report::Report;
use crate::LintOptions;
use hostprocess_engine::annotations::NETWORK;
use hostprocess_engine::plan::network::POD;
use hostprocess_engine::plan::run_as_user_name::run_as_user_name_errors;

/// Pod annotation that marks a pod as a HostProcess pod (set by containerd's CRI on Windows;
/// set by hand for our runtime on Linux).
pub(crate) const HOSTPROCESS_CONTAINER: &str = "microsoft.com/hostprocess-container";
/// Pod annotation naming the account of a Linux HostProcess pod, in `runAsUserName` syntax.
pub(crate) const RUN_AS_USER: &str = "hostprocess.io/run-as-user";
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
        let host_process = windows
            .as_ref()
            .and_then(|w| w.get("hostProcess", report))
            .and_then(|n| n.bool(report));
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
            host_process_path: owner.path().children(&[
                "securityContext",
                "windowsOptions",
                "hostProcess",
            ]),
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
    let host_network = match spec.get("hostNetwork", report) {
        Some(node) => node.bool(report),
        None => Some(false),
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
    if is_hostprocess {
        check_run_as_non_root(&pod_security, report);
    }

    for container in &containers {
        let security = &container.security;
        if let (Some(pod_value), Some(value)) = (pod_security.host_process, security.host_process) {
            if pod_value != value {
                report.error(
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
            path,
            "the pod runs in a network namespace of its own (its pod IP) instead of the host's: \
             a HostProcess extension of the hostprocess runtime; hostNetwork is not required",
        );
    } else if host_network == Some(false) {
        report.error(
            &spec.path().child("hostNetwork"),
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
        spec.path().child("hostNetwork")
    } else if let (true, Some((path, _))) = (by_runtime_class, &runtime_class) {
        path.clone()
    } else if let Some((path, _)) = &marked {
        path.clone()
    } else {
        spec.path().clone()
    };
    report.info(&field, note);

    if let (Some((path, true)), false, false) = (&marked, by_runtime_class, by_windows_options) {
        report.info(
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

/// The `microsoft.com/hostprocess-container` annotation: `"true"` or `"false"`.
fn read_flag(node: &Node<'_>, report: &mut Report) -> Option<bool> {
    let text = node.string(report)?;
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        report.error(
            node.path(),
            invalid(go_quote(text), "must be \"true\" or \"false\""),
        );
        None
    }
}

fn check_run_as_user_name(path: &FieldPath, name: &str, report: &mut Report) {
    for error in run_as_user_name_errors(name) {
        report.error(path, invalid(go_quote(name), error));
    }
}

fn check_run_as_non_root(security: &Security<'_>, report: &mut Report) {
    if let Some((path, true)) = &security.run_as_non_root {
        report.error(
            path,
            invalid(
                true,
                "runAsNonRoot cannot be true for HostProcess containers",
            ),
        );
    }
}
