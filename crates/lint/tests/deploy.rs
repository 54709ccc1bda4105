//! The example manifests shipped in `deploy/` pass the linter.

use std::path::{Path, PathBuf};

use hostprocess_lint::{has_errors, lint_file, Finding};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

fn deploy_manifests() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(DEPLOY)
        .unwrap_or_else(|e| panic!("{DEPLOY}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    paths
}

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn deploy_manifests_have_no_errors() {
    let paths = deploy_manifests();
    assert!(paths.len() >= 2, "{paths:?}");
    for path in paths {
        let findings = lint_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !has_errors(&findings),
            "{}:\n{}",
            path.display(),
            show(&findings)
        );
    }
}

#[test]
fn the_node_agent_is_seen_as_a_host_process_pod_in_a_privileged_namespace() {
    let path = Path::new(DEPLOY).join("node-agent-daemonset.yaml");
    let findings = lint_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}/{} (doc {}): {}: {}",
                f.kind, f.name, f.doc_index, f.field, f.message
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "DaemonSet/node-agent (doc 3): spec.template.spec.hostNetwork: requires Pod Security \
             level privileged: baseline and restricted forbid it: host namespaces \
             (hostNetwork=true); namespace \"hostprocess-system\" enforces privileged"
        ],
        "{}",
        show(&findings)
    );
}
