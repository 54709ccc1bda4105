//! `hostprocess.io/network: pod`: a HostProcess pod without hostNetwork passes only with the
//! annotation, and the report notes that it is this runtime's extension.

use hostprocess_lint::{has_errors, lint_documents, Finding};

fn pod(annotation: Option<&str>, host_process_field: bool) -> String {
    let annotations = annotation
        .map(|value| format!("  annotations:\n    hostprocess.io/network: {value}\n"))
        .unwrap_or_default();
    let security = if host_process_field {
        "      securityContext:\n        windowsOptions:\n          hostProcess: true\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent\n{annotations}spec:\n  \
         runtimeClassName: hostprocess\n  containers:\n    - name: a\n      image: img\n{security}"
    )
}

fn lint(text: &str) -> Vec<Finding> {
    lint_documents(text, "pod.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn mentions(findings: &[Finding], text: &str) -> bool {
    findings.iter().any(|f| f.to_string().contains(text))
}

#[test]
fn a_pod_without_host_network_passes_only_with_the_pod_network_annotation() {
    let without = lint(&pod(None, false));
    assert!(has_errors(&without), "{without:#?}");
    assert!(mentions(&without, "hostNetwork must be true"));

    let with = lint(&pod(Some("pod"), false));
    assert!(!has_errors(&with), "{with:#?}");
    assert!(
        mentions(&with, "metadata.annotations.hostprocess.io/network")
            || mentions(&with, "hostprocess.io/network"),
        "{with:#?}"
    );
    assert!(mentions(&with, "a HostProcess extension"), "{with:#?}");

    let host = lint(&pod(Some("host"), false));
    assert!(mentions(&host, "hostNetwork must be true"), "{host:#?}");
}

#[test]
fn the_apiserver_still_refuses_a_windows_options_host_process_pod_without_host_network() {
    let findings = lint(&pod(Some("pod"), true));
    assert!(
        mentions(&findings, "hostNetwork must be true"),
        "{findings:#?}"
    );
}
