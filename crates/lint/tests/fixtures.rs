//! Every fixture under `tests/fixtures`: good ones have no errors, bad ones produce exactly the
//! listed findings, written as the user sees them (without the file name).

use std::collections::BTreeSet;
use std::path::Path;

use hostprocess_lint::{has_errors, lint_file, Finding};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The bad fixtures the tests below pin, one test each.
const BAD_FIXTURES: &[&str] = &[
    "host-network-missing.yaml",
    "init-and-ephemeral-containers.yaml",
    "list.yaml",
    "mixed-containers.yaml",
    "pod-container-mismatch.yaml",
    "run-as-non-root.yaml",
    "run-as-user-name.yaml",
    "runtime-class.yaml",
    "workload-templates.yaml",
    "wrong-types.yaml",
];

const HOST_NETWORK: &str =
    "Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers";
const ALL_CONTAINERS: &str = "Invalid value: false: If pod contains any hostProcess containers then all containers must be HostProcess containers";
const NON_ROOT: &str =
    "Invalid value: true: runAsNonRoot cannot be true for HostProcess containers";
const PRIVILEGED: &str = "note: requires Pod Security level privileged";
const HOST_NAMESPACES: &str = "host namespaces (hostNetwork=true)";
const POD_SETS: &str =
    "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)";
const FORBIDDEN_CHARS: &str =
    r#"runAsUserName's User cannot contain the following characters: "/\:;|=,+*?<>@[]"#;

fn mismatch(value: bool, pod: bool) -> String {
    format!("Invalid value: {value}: pod hostProcess value must be identical if both are specified, was {pod}")
}

/// The Pod Security note listing what baseline forbids.
fn privileged(reasons: &[&str]) -> String {
    format!(
        "{PRIVILEGED}: baseline and restricted forbid it: {}",
        reasons.join(", ")
    )
}

fn containers_set(names: &str) -> String {
    format!("hostProcess ({names} must not set securityContext.windowsOptions.hostProcess=true)")
}

fn lint(relative: &str) -> Vec<Finding> {
    let path = Path::new(FIXTURES).join(relative);
    lint_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// `Kind/name (doc N): field: message` for every finding of the fixture.
fn lines(relative: &str) -> Vec<String> {
    positioned_lines(relative)
        .into_iter()
        .map(|line| match line.split_once(": ") {
            Some((_position, rest)) => rest.to_string(),
            None => panic!("{line:?} has no position"),
        })
        .collect()
}

/// `LINE:COLUMN: Kind/name (doc N): field: message` for every finding of the fixture.
fn positioned_lines(relative: &str) -> Vec<String> {
    let prefix = format!("{}:", Path::new(FIXTURES).join(relative).display());
    lint(relative)
        .iter()
        .map(|finding| {
            let line = finding.to_string();
            match line.strip_prefix(&prefix) {
                Some(rest) => rest.to_string(),
                None => panic!("{line:?} does not start with the file name {prefix:?}"),
            }
        })
        .collect()
}

fn assert_findings(relative: &str, expected: &[String]) {
    let actual = lines(relative);
    assert!(
        actual == expected,
        "{relative}\n--- actual\n{}\n--- expected\n{}",
        actual.join("\n"),
        expected.join("\n")
    );
}

fn fixture_names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(Path::new(FIXTURES).join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect()
}

#[test]
fn every_bad_fixture_has_a_test() {
    let listed: BTreeSet<String> = BAD_FIXTURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(fixture_names("bad"), listed);
}

#[test]
fn good_fixtures_have_no_errors() {
    let names = fixture_names("good");
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let findings = lint(&format!("good/{name}"));
        assert!(
            !has_errors(&findings),
            "{name}:\n{}",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn bad_fixtures_have_errors() {
    for name in BAD_FIXTURES {
        assert!(has_errors(&lint(&format!("bad/{name}"))), "{name}");
    }
}

#[test]
fn a_windows_pod_that_inherits_host_process_only_needs_the_privileged_level() {
    assert_findings(
        "good/windows-pod.yaml",
        &[format!(
            "Pod/windows-hostprocess (doc 1): spec.securityContext.windowsOptions.hostProcess: {}",
            privileged(&[HOST_NAMESPACES, POD_SETS])
        )],
    );
}

#[test]
fn containers_that_each_ask_for_host_process_are_named_in_the_pod_security_note() {
    assert_findings(
        "good/windows-containers-only.yaml",
        &[format!(
            "Pod/per-container (doc 1): spec.initContainers[0].securityContext.windowsOptions.hostProcess: {}",
            privileged(&[HOST_NAMESPACES, &containers_set(r#"containers "setup", "agent""#)])
        )],
    );
}

#[test]
fn a_runtime_class_pod_with_host_network_is_fine() {
    assert_findings(
        "good/runtime-class-pod.yaml",
        &[format!(
            "Pod/linux-agent (doc 1): spec.hostNetwork: {}",
            privileged(&[HOST_NAMESPACES])
        )],
    );
}

#[test]
fn the_annotation_alone_marks_a_pod_and_asks_for_the_runtime_class() {
    assert_findings(
        "good/annotation-pod.yaml",
        &[
            format!("Pod/annotated (doc 1): spec.hostNetwork: {}", privileged(&[HOST_NAMESPACES])),
            "Pod/annotated (doc 1): metadata.annotations[microsoft.com/hostprocess-container]: note: takes effect only when the HostProcess runtime runs the pod: set spec.runtimeClassName to \"hostprocess\", unless that runtime is the node's default".to_string(),
        ],
    );
}

#[test]
fn objects_that_are_not_host_process_pods_produce_nothing() {
    assert_findings("good/not-hostprocess.yaml", &[]);
}

#[test]
fn every_workload_kind_is_read_from_its_pod_template() {
    let hn = privileged(&[HOST_NAMESPACES]);
    let pod = privileged(&[HOST_NAMESPACES, POD_SETS]);
    assert_findings(
        "good/workloads.yaml",
        &[
            format!("DaemonSet/ds (doc 1): spec.template.spec.hostNetwork: {hn}"),
            format!("Deployment/deploy (doc 4): spec.template.spec.securityContext.windowsOptions.hostProcess: {pod}"),
            format!(
                "StatefulSet/sts (doc 5): spec.template.spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, &containers_set(r#"container "a""#)])
            ),
            format!("ReplicaSet/rs (doc 6): spec.template.spec.hostNetwork: {hn}"),
            format!("Job/job (doc 7): spec.template.spec.hostNetwork: {hn}"),
            format!("CronJob/cron (doc 8): spec.jobTemplate.spec.template.spec.securityContext.windowsOptions.hostProcess: {pod}"),
        ],
    );
}

#[test]
fn a_privileged_namespace_in_the_same_file_is_mentioned() {
    assert_findings(
        "good/windows-node-agent.yaml",
        &[format!(
            "DaemonSet/windows-node-agent (doc 3): spec.template.spec.securityContext.windowsOptions.hostProcess: {}; namespace \"windows-agents\" enforces privileged",
            privileged(&[HOST_NAMESPACES, POD_SETS])
        )],
    );
}

#[test]
fn a_container_that_refuses_the_pods_host_process_breaks_two_rules() {
    let field =
        "Pod/mismatch (doc 1): spec.containers[1].securityContext.windowsOptions.hostProcess";
    assert_findings(
        "bad/pod-container-mismatch.yaml",
        &[
            format!("{field}: {}", mismatch(false, true)),
            format!("{field}: {ALL_CONTAINERS}"),
            format!(
                "Pod/mismatch (doc 1): spec.securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, POD_SETS])
            ),
        ],
    );
}

#[test]
fn an_ordinary_container_next_to_a_host_process_container_is_refused() {
    assert_findings(
        "bad/mixed-containers.yaml",
        &[
            format!("Pod/mixed (doc 1): spec.containers[1].securityContext.windowsOptions.hostProcess: {ALL_CONTAINERS}"),
            format!(
                "Pod/mixed (doc 1): spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, &containers_set(r#"container "hpc""#)])
            ),
        ],
    );
}

#[test]
fn init_and_ephemeral_containers_are_checked_like_containers() {
    let init =
        "Pod/all-kinds (doc 1): spec.initContainers[1].securityContext.windowsOptions.hostProcess";
    let ephemeral = "Pod/all-kinds (doc 1): spec.ephemeralContainers[0].securityContext.windowsOptions.hostProcess";
    assert_findings(
        "bad/init-and-ephemeral-containers.yaml",
        &[
            format!("{init}: {}", mismatch(false, true)),
            format!("{init}: {ALL_CONTAINERS}"),
            format!("{ephemeral}: {}", mismatch(false, true)),
            format!("{ephemeral}: {ALL_CONTAINERS}"),
            format!(
                "Pod/all-kinds (doc 1): spec.securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, POD_SETS])
            ),
        ],
    );
}

#[test]
fn host_network_is_required_whether_missing_or_false() {
    assert_findings(
        "bad/host-network-missing.yaml",
        &[
            format!("Pod/no-host-network (doc 1): spec.hostNetwork: {HOST_NETWORK}"),
            format!(
                "Pod/no-host-network (doc 1): spec.securityContext.windowsOptions.hostProcess: {}",
                privileged(&[POD_SETS])
            ),
            format!("Pod/host-network-false (doc 2): spec.hostNetwork: {HOST_NETWORK}"),
            format!(
                "Pod/host-network-false (doc 2): spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                privileged(&[&containers_set(r#"container "a""#)])
            ),
        ],
    );
}

#[test]
fn findings_point_at_the_field_or_at_the_object_that_lacks_it() {
    let positions: Vec<String> = positioned_lines("bad/host-network-missing.yaml")
        .iter()
        .filter_map(|line| {
            let (line_column, rest) = line.split_once(": ")?;
            let (_, field) = rest.split_once("): ")?;
            Some(format!("{line_column} {}", field.split(':').next()?))
        })
        .collect();
    assert_eq!(
        positions,
        vec![
            "6:1 spec.hostNetwork",
            "9:7 spec.securityContext.windowsOptions.hostProcess",
            "19:3 spec.hostNetwork",
            "25:11 spec.containers[0].securityContext.windowsOptions.hostProcess",
        ]
    );
}

#[test]
fn run_as_non_root_true_is_refused_at_pod_and_container_level() {
    assert_findings(
        "bad/run-as-non-root.yaml",
        &[
            format!("Pod/non-root (doc 1): spec.securityContext.runAsNonRoot: {NON_ROOT}"),
            format!(
                "Pod/non-root (doc 1): spec.containers[0].securityContext.runAsNonRoot: {NON_ROOT}"
            ),
            format!(
                "Pod/non-root (doc 1): spec.hostNetwork: {}",
                privileged(&[HOST_NAMESPACES])
            ),
        ],
    );
}

#[test]
fn every_run_as_user_name_rule_is_reported_with_the_apiservers_message() {
    let pod = "Pod/bad-names (doc 1)";
    let container = |i: usize| {
        format!("{pod}: spec.containers[{i}].securityContext.windowsOptions.runAsUserName")
    };
    let long_domain = [&*"a".repeat(63); 4].join(".") + ".b";
    let long_user = "u".repeat(105);
    assert_findings(
        "bad/run-as-user-name.yaml",
        &[
            format!(
                r#"{pod}: spec.securityContext.windowsOptions.runAsUserName: Invalid value: "": runAsUserName cannot be an empty string"#
            ),
            format!(
                r#"{pod}: metadata.annotations[hostprocess.io/run-as-user]: Invalid value: "too\\many\\backslashes": runAsUserName cannot contain more than one backslash"#
            ),
            format!(
                r#"{}: Invalid value: "tab\there": runAsUserName cannot contain control characters"#,
                container(0)
            ),
            format!(
                r#"{}: Invalid value: "{long_domain}\\user": runAsUserName's Domain length must be under 256 characters"#,
                container(1)
            ),
            format!(
                r#"{}: Invalid value: "bad/domain\\user": runAsUserName's Domain doesn't match the NetBios nor the DNS format"#,
                container(2)
            ),
            format!(
                r#"{}: Invalid value: "NT AUTHORITY\\": runAsUserName's User cannot be empty"#,
                container(3)
            ),
            format!(
                r#"{}: Invalid value: "{long_user}": runAsUserName's User length must not be longer than 104 characters"#,
                container(4)
            ),
            format!(
                r#"{}: Invalid value: ". .": runAsUserName's User cannot contain only periods or spaces"#,
                container(5)
            ),
            format!(
                r#"{}: Invalid value: "svc@corp": {FORBIDDEN_CHARS}"#,
                container(6)
            ),
            format!(
                r#"{}: Invalid value: "\\": runAsUserName's Domain doesn't match the NetBios nor the DNS format"#,
                container(7)
            ),
            format!(
                r#"{}: Invalid value: "\\": runAsUserName's User cannot be empty"#,
                container(7)
            ),
            format!(
                "{pod}: spec.securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, POD_SETS])
            ),
        ],
    );
}

#[test]
fn a_runtime_class_pod_needs_host_network_and_no_container_may_opt_out() {
    assert_findings(
        "bad/runtime-class.yaml",
        &[
            format!("Pod/linux-hpc (doc 1): spec.containers[1].securityContext.windowsOptions.hostProcess: {ALL_CONTAINERS}"),
            format!("Pod/linux-hpc (doc 1): spec.hostNetwork: {HOST_NETWORK}"),
            format!("Pod/linux-hpc (doc 1): spec.runtimeClassName: {PRIVILEGED}"),
        ],
    );
}

#[test]
fn list_items_are_linted_with_their_own_kind_and_path() {
    assert_findings(
        "bad/list.yaml",
        &[
            format!("Pod/listed-pod (doc 1): items[0].spec.hostNetwork: {HOST_NETWORK}"),
            format!("Pod/listed-pod (doc 1): items[0].spec.runtimeClassName: {PRIVILEGED}"),
            format!(
                "DaemonSet/listed-ds (doc 1): items[1].spec.template.spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                mismatch(true, false)
            ),
            format!(
                "DaemonSet/listed-ds (doc 1): items[1].spec.template.spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, &containers_set(r#"container "a""#)])
            ),
            format!("Pod/typed-item (doc 2): items[0].spec.securityContext.runAsNonRoot: {NON_ROOT}"),
            format!("Pod/typed-item (doc 2): items[0].spec.hostNetwork: {}", privileged(&[HOST_NAMESPACES])),
        ],
    );
}

#[test]
fn workload_findings_name_the_field_inside_the_template() {
    let hn = privileged(&[HOST_NAMESPACES]);
    let pod = privileged(&[HOST_NAMESPACES, POD_SETS]);
    assert_findings(
        "bad/workload-templates.yaml",
        &[
            format!("DaemonSet/ds-no-host-network (doc 1): spec.template.spec.hostNetwork: {HOST_NETWORK}"),
            format!("DaemonSet/ds-no-host-network (doc 1): spec.template.spec.runtimeClassName: {PRIVILEGED}"),
            "DaemonSet/ds-no-host-network (doc 1): metadata.annotations[microsoft.com/hostprocess-container]: note: annotations of a DaemonSet do not reach its pods: set it in spec.template.metadata.annotations".to_string(),
            format!("Deployment/deploy-mismatch (doc 3): spec.template.spec.containers[1].securityContext.windowsOptions.hostProcess: {}", mismatch(false, true)),
            format!("Deployment/deploy-mismatch (doc 3): spec.template.spec.containers[1].securityContext.windowsOptions.hostProcess: {ALL_CONTAINERS}"),
            format!("Deployment/deploy-mismatch (doc 3): spec.template.spec.securityContext.windowsOptions.hostProcess: {pod}"),
            format!("StatefulSet/sts-non-root (doc 4): spec.template.spec.containers[0].securityContext.runAsNonRoot: {NON_ROOT}"),
            format!("StatefulSet/sts-non-root (doc 4): spec.template.spec.securityContext.windowsOptions.hostProcess: {pod}"),
            format!("ReplicaSet/rs-mixed (doc 5): spec.template.spec.containers[1].securityContext.windowsOptions.hostProcess: {ALL_CONTAINERS}"),
            format!(
                "ReplicaSet/rs-mixed (doc 5): spec.template.spec.containers[0].securityContext.windowsOptions.hostProcess: {}",
                privileged(&[HOST_NAMESPACES, &containers_set(r#"container "hpc""#)])
            ),
            r#"Job/job-bad-user (doc 6): spec.template.spec.initContainers[0].securityContext.windowsOptions.runAsUserName: Invalid value: "a\\b\\c": runAsUserName cannot contain more than one backslash"#.to_string(),
            format!("Job/job-bad-user (doc 6): spec.template.spec.hostNetwork: {hn}"),
            format!(r#"CronJob/cron-bad-annotation (doc 7): spec.jobTemplate.spec.template.metadata.annotations[hostprocess.io/run-as-user]: Invalid value: "user:name": {FORBIDDEN_CHARS}"#),
            format!("CronJob/cron-bad-annotation (doc 7): spec.jobTemplate.spec.template.spec.hostNetwork: {hn}"),
        ],
    );
}

#[test]
fn values_of_the_wrong_type_are_reported_once_and_then_ignored() {
    assert_findings(
        "bad/wrong-types.yaml",
        &[
            r#"Pod/quoted-bool (doc 1): metadata.annotations[microsoft.com/hostprocess-container]: Invalid value: true: must be of type string (quote it: "true")"#.to_string(),
            r#"Pod/quoted-bool (doc 1): spec.hostNetwork: Invalid value: "true": must be of type boolean (write it without quotes)"#.to_string(),
            r#"Pod/quoted-bool (doc 1): spec.securityContext.windowsOptions.hostProcess: Invalid value: "True": must be of type boolean (write it without quotes)"#.to_string(),
            r#"Pod/odd-annotation (doc 2): metadata.annotations[microsoft.com/hostprocess-container]: Invalid value: "yes": must be "true" or "false""#.to_string(),
            r#"Pod/odd-annotation (doc 2): spec.containers[0].securityContext: Invalid value: "enabled": must be of type object"#.to_string(),
            format!("Pod/odd-annotation (doc 2): spec.hostNetwork: {}", privileged(&[HOST_NAMESPACES])),
            r#"Pod/quoted-host-network (doc 3): spec.hostNetwork: Invalid value: "false": must be of type boolean (write it without quotes)"#.to_string(),
            format!("Pod/quoted-host-network (doc 3): spec.runtimeClassName: {PRIVILEGED}"),
        ],
    );
}
