//! `hostprocess lint` end to end on the pods the CRI tests run (`tests/manifests`): the CLI's
//! exit status and output, line for line, and the same findings from the library.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{run_with_timeout, text, workspace_binary};

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests");

/// `hostprocess lint FILE` run in the manifests directory: exit code and stdout lines.
fn lint(file: &str) -> (Option<i32>, Vec<String>) {
    let cli = workspace_binary("hostprocess", "hostprocess");
    let out = run_with_timeout(
        Command::new(cli)
            .args(["lint", file])
            .current_dir(MANIFESTS),
        std::time::Duration::from_secs(60),
    );
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    let lines = text(&out.stdout).lines().map(str::to_string).collect();
    (out.status.code(), lines)
}

/// The library's findings for the same file, printed as the CLI prints them.
fn library_findings(path: &Path) -> Vec<String> {
    hostprocess_lint::lint_file(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(ToString::to_string)
        .collect()
}

const PRIVILEGED: &str = "note: requires Pod Security level privileged";
const HOST_NAMESPACES: &str = "host namespaces (hostNetwork=true)";

#[test]
fn lint_passes_the_hostprocess_pods_with_only_pod_security_notes() {
    let file = "hostprocess-pods.yaml";
    let (code, lines) = lint(file);
    let note = |at: &str, pod: &str, doc: u32| {
        format!(
            "{file}:{at}: Pod/{pod} (doc {doc}): spec.hostNetwork: {PRIVILEGED}: baseline and \
             restricted forbid it: {HOST_NAMESPACES}"
        )
    };
    assert_eq!(
        lines,
        [note("11:3", "multi", 1), note("36:3", "accounts", 2)]
    );
    assert_eq!(code, Some(0), "{lines:#?}");
}

#[test]
fn lint_reports_exactly_the_problems_of_the_refused_pods_and_exits_1() {
    let file = "refused-pods.yaml";
    let (code, lines) = lint(file);
    let expected = [
        format!(
            "{file}:6:1: Pod/own-network (doc 1): spec.hostNetwork: Invalid value: false: \
             hostNetwork must be true if pod contains any hostProcess containers"
        ),
        format!("{file}:7:3: Pod/own-network (doc 1): spec.runtimeClassName: {PRIVILEGED}"),
        format!(
            "{file}:29:11: Pod/disagree (doc 2): spec.containers[1].securityContext.\
             windowsOptions.hostProcess: Invalid value: false: pod hostProcess value must be identical if both \
             are specified, was true"
        ),
        format!(
            "{file}:29:11: Pod/disagree (doc 2): spec.containers[1].securityContext.\
             windowsOptions.hostProcess: Invalid value: false: If pod contains any hostProcess containers then \
             all containers must be HostProcess containers"
        ),
        format!(
            "{file}:21:7: Pod/disagree (doc 2): spec.securityContext.windowsOptions.hostProcess: \
             {PRIVILEGED}: baseline and restricted forbid it: {HOST_NAMESPACES}, hostProcess \
             (pod must not set securityContext.windowsOptions.hostProcess=true)"
        ),
    ];
    assert_eq!(lines, expected);
    assert_eq!(code, Some(1), "{lines:#?}");
}

#[test]
fn the_cli_prints_what_the_library_finds() {
    for file in ["hostprocess-pods.yaml", "refused-pods.yaml"] {
        let path = Path::new(MANIFESTS).join(file);
        let (_, lines) = lint(&path.to_string_lossy());
        assert_eq!(lines, library_findings(&path), "{file}");
    }
}
