//! `hostprocess lint`: checks Kubernetes manifests for HostProcess pods before they reach a
//! cluster.
//!
//! A pod is a HostProcess pod when a `securityContext.windowsOptions.hostProcess` of the pod
//! or of a container is `true` (Windows), when its `runtimeClassName` is one of the HostProcess
//! runtime classes (default `hostprocess`), or when it carries the annotation
//! `microsoft.com/hostprocess-container: "true"`. For such pods the linter applies the
//! apiserver's HostProcess rules (identical pod and container values, every container a
//! HostProcess container, `hostNetwork: true`), refuses `runAsNonRoot: true`, and notes the
//! Pod Security level the pod needs. The `runAsUserName` syntax rules (and the same rules for
//! the `hostprocess.io/run-as-user` annotation) apply to every pod, as in the apiserver.
//!
//! Pods are found in `Pod`, `PodTemplate`, `DaemonSet`, `Deployment`, `StatefulSet`,
//! `ReplicaSet`, `ReplicationController`, `Job` and `CronJob` objects, also as items of a
//! `List`. Other kinds and empty documents are skipped.
//!
//! Every finding has its file, line and column. A file that cannot be read, or a document
//! that is not valid YAML, is reported too, and the other files and documents are still
//! linted.

mod error;
mod field;
mod finding;
mod manifest;
mod node;
mod output;
mod pod;
mod report;
mod rules;
mod yaml;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::LintError;
pub use finding::{has_errors, Finding, Severity};
pub use hostprocess_engine::plan::run_as_user_name::{run_as_user_name_errors, RunAsUserNameError};
pub use output::{render, Format};
pub use rules::Rule;
pub use yaml::Position;

/// The runtime class that selects the HostProcess runtime unless configured otherwise.
pub const DEFAULT_RUNTIME_CLASS: &str = "hostprocess";

/// What the linter needs to know about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintOptions {
    runtime_classes: BTreeSet<String>,
}

impl LintOptions {
    /// Options where the pods of these runtime classes are HostProcess pods. An empty list
    /// means only the Windows fields and the annotation mark HostProcess pods.
    pub fn with_runtime_classes<I, S>(runtime_classes: I) -> LintOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LintOptions {
            runtime_classes: runtime_classes.into_iter().map(Into::into).collect(),
        }
    }

    pub fn runtime_classes(&self) -> impl Iterator<Item = &str> {
        self.runtime_classes.iter().map(String::as_str)
    }

    pub fn is_hostprocess_runtime_class(&self, name: &str) -> bool {
        self.runtime_classes.contains(name)
    }

    /// The class to suggest to a user.
    fn primary_runtime_class(&self) -> &str {
        if self.is_hostprocess_runtime_class(DEFAULT_RUNTIME_CLASS) {
            return DEFAULT_RUNTIME_CLASS;
        }
        self.runtime_classes()
            .next()
            .unwrap_or(DEFAULT_RUNTIME_CLASS)
    }
}

impl Default for LintOptions {
    fn default() -> LintOptions {
        LintOptions::with_runtime_classes([DEFAULT_RUNTIME_CLASS])
    }
}

/// What a run found: every finding, and everything that could not be read.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Files that could not be read and documents that are not valid YAML.
    pub errors: Vec<LintError>,
}

impl Outcome {
    /// `hostprocess lint`'s exit status: 2 when anything could not be read (whatever the
    /// findings: the run did not check everything it was given), else 1 when a rule is
    /// broken, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else {
            u8::from(has_errors(&self.findings))
        }
    }

    /// The findings, or the first thing that could not be read.
    pub fn into_result(self) -> Result<Vec<Finding>, LintError> {
        match self.errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(self.findings),
        }
    }

    fn append(&mut self, mut other: Outcome) {
        self.findings.append(&mut other.findings);
        self.errors.append(&mut other.errors);
    }
}

/// Lints the YAML documents in `text` (separated by `---`); `file` names them in findings
/// and errors. Fails with the first document that is not valid YAML.
pub fn lint_documents(text: &str, file: &str) -> Result<Vec<Finding>, LintError> {
    lint_text(text, file, &LintOptions::default()).into_result()
}

/// [`lint_documents`] with the given options.
pub fn lint_documents_with(
    text: &str,
    file: &str,
    options: &LintOptions,
) -> Result<Vec<Finding>, LintError> {
    lint_text(text, file, options).into_result()
}

/// Lints every document of `text`: a document that is not valid YAML is reported, and the
/// others are still linted.
pub fn lint_text(text: &str, file: &str, options: &LintOptions) -> Outcome {
    let documents = yaml::documents(text);
    let mut errors = Vec::new();
    let mut objects: Vec<manifest::Object<'_>> = Vec::new();
    for document in &documents {
        match &document.root {
            Ok(root) => objects.extend(manifest::objects(document.index, root)),
            Err(error) => errors.push(LintError::Parse {
                file: file.to_string(),
                doc_index: document.index,
                at: error.at,
                reason: error.reason.clone(),
            }),
        }
    }
    let namespaces = manifest::namespace_enforce_levels(&objects);
    let findings = objects
        .iter()
        .flat_map(|object| manifest::lint_object(file, object, options, &namespaces))
        .collect();
    Outcome { findings, errors }
}

/// Reads and lints one file.
pub fn lint_file(path: &Path) -> Result<Vec<Finding>, LintError> {
    lint_file_with(path, &LintOptions::default())
}

/// [`lint_file`] with the given options.
pub fn lint_file_with(path: &Path, options: &LintOptions) -> Result<Vec<Finding>, LintError> {
    read_and_lint(path, options).into_result()
}

fn read_and_lint(path: &Path, options: &LintOptions) -> Outcome {
    match std::fs::read_to_string(path) {
        Ok(text) => lint_text(&text, &path.display().to_string(), options),
        Err(cause) => Outcome {
            findings: Vec::new(),
            errors: vec![LintError::Read {
                path: path.to_path_buf(),
                cause,
            }],
        },
    }
}

/// What standard input is called in findings.
pub const STDIN_NAME: &str = "<stdin>";

/// Lints each of `paths` in order: a file; a directory, whose `*.yaml` and `*.yml` files are
/// linted in name order, recursing into subdirectories (not into symbolic links to
/// directories); or `-`, the text read from `stdin`. What cannot be read is reported and the
/// rest is still linted.
pub fn lint_paths(paths: &[PathBuf], stdin: &mut dyn Read, options: &LintOptions) -> Outcome {
    let mut outcome = Outcome::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            outcome.append(match stdin.read_to_string(&mut text) {
                Ok(_) => lint_text(&text, STDIN_NAME, options),
                Err(cause) => Outcome {
                    findings: Vec::new(),
                    errors: vec![LintError::Read {
                        path: PathBuf::from(STDIN_NAME),
                        cause,
                    }],
                },
            });
        } else if path.is_dir() {
            let mut files = Vec::new();
            yaml_files(path, &mut files, &mut outcome.errors);
            for file in files {
                outcome.append(read_and_lint(&file, options));
            }
        } else {
            outcome.append(read_and_lint(path, options));
        }
    }
    outcome
}

/// The `*.yaml` and `*.yml` files under `dir`, depth first in name order.
fn yaml_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LintError>) {
    let read_error = |cause| LintError::Read {
        path: dir.to_path_buf(),
        cause,
    };
    let entries =
        match std::fs::read_dir(dir).and_then(|entries| entries.collect::<Result<Vec<_>, _>>()) {
            Ok(entries) => entries,
            Err(cause) => {
                errors.push(read_error(cause));
                return;
            }
        };
    let mut entries: Vec<(PathBuf, bool)> = entries
        .iter()
        .map(|entry| {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            (entry.path(), is_dir)
        })
        .collect();
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            yaml_files(&path, files, errors);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_NETWORK: &str =
        "Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers";

    fn errors(text: &str) -> Vec<(String, String)> {
        errors_with(text, &LintOptions::default())
    }

    fn errors_with(text: &str, options: &LintOptions) -> Vec<(String, String)> {
        lint_documents_with(text, "test.yaml", options)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(Finding::is_error)
            .map(|f| (f.field, f.message))
            .collect()
    }

    fn notes(text: &str) -> Vec<String> {
        lint_documents(text, "test.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|f| f.severity == Severity::Info)
            .map(|f| f.message)
            .collect()
    }

    const RUNTIME_CLASS_POD: &str = "
kind: Pod
metadata: {name: p}
spec:
  runtimeClassName: node-admin
  containers: [{name: a}]
";

    #[test]
    fn a_yaml_syntax_error_names_the_file_and_the_document() {
        let text = "kind: Pod\n---\nkind: Service\n---\nkind: [Pod\n";
        match lint_documents(text, "bad.yaml") {
            Err(error @ LintError::Parse { doc_index: 3, .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with("bad.yaml:5:11: document 3: invalid YAML: "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_duplicate_key_is_a_parse_error() {
        let result = lint_documents("kind: Pod\nkind: Pod\n", "dup.yaml");
        assert!(
            matches!(result, Err(LintError::Parse { doc_index: 1, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_the_path() {
        let path = Path::new("/nonexistent/hostprocess-lint/pods.yaml");
        match lint_file(path) {
            Err(error @ LintError::Read { .. }) => {
                assert!(
                    error
                        .to_string()
                        .starts_with("read '/nonexistent/hostprocess-lint/pods.yaml': "),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_files_and_documents_have_no_findings() {
        for text in [
            "",
            "---\n",
            "# comment\n---\n---\n",
            "just a string\n",
            "[1, 2]\n",
        ] {
            assert_eq!(
                lint_documents(text, "x.yaml").map_err(|e| e.to_string()),
                Ok(vec![])
            );
        }
    }

    #[test]
    fn empty_documents_count_in_the_document_index() {
        let text = "kind: ConfigMap\n---\n---\nkind: Pod\nmetadata: {name: p}\nspec:\n  runtimeClassName: hostprocess\n  containers: [{name: a}]\n";
        let findings = lint_documents(text, "x.yaml").unwrap_or_default();
        assert!(!findings.is_empty());
        assert!(findings.iter().all(|f| f.doc_index == 3), "{findings:?}");
    }

    #[test]
    fn runtime_classes_are_configurable() {
        assert_eq!(errors(RUNTIME_CLASS_POD), vec![]);
        let options = LintOptions::with_runtime_classes(["hostprocess", "node-admin"]);
        assert_eq!(
            errors_with(RUNTIME_CLASS_POD, &options),
            vec![("spec.hostNetwork".to_string(), HOST_NETWORK.to_string())]
        );
        let none = LintOptions::with_runtime_classes(Vec::<String>::new());
        let default_class = RUNTIME_CLASS_POD.replace("node-admin", "hostprocess");
        assert_eq!(errors_with(&default_class, &none), vec![]);
    }

    #[test]
    fn the_runtime_class_hint_names_a_configured_class() {
        let options = LintOptions::with_runtime_classes(["node-admin"]);
        let text = "kind: Pod\nmetadata:\n  annotations: {microsoft.com/hostprocess-container: \"true\"}\nspec:\n  hostNetwork: true\n  containers: [{name: a}]\n";
        let findings = lint_documents_with(text, "x.yaml", &options).unwrap_or_default();
        assert!(
            findings
                .iter()
                .any(|f| f.message.contains("to \"node-admin\"")),
            "{findings:?}"
        );
    }

    #[test]
    fn yaml_1_1_booleans_read_as_kubectl_reads_them() {
        let text = "kind: Pod\nspec:\n  hostNetwork: on\n  securityContext: {windowsOptions: {hostProcess: yes}}\n  containers: [{name: a, securityContext: {windowsOptions: {hostProcess: No}}}, {name: b}]\n";
        assert_eq!(
            errors(text),
            vec![
                (
                    "spec.containers[0].securityContext.windowsOptions.hostProcess".to_string(),
                    "Invalid value: false: pod hostProcess value must be identical if both are specified, was true".to_string()
                ),
                (
                    "spec.containers[0].securityContext.windowsOptions.hostProcess".to_string(),
                    "Invalid value: false: If pod contains any hostProcess containers then all containers must be HostProcess containers".to_string()
                ),
            ]
        );
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "
base: &hpc
  securityContext: {windowsOptions: {hostProcess: true}}
kind: Pod
spec:
  <<: *hpc
  containers: [{name: a}]
";
        assert_eq!(
            errors(text),
            vec![("spec.hostNetwork".to_string(), HOST_NETWORK.to_string())]
        );
    }

    #[test]
    fn a_namespace_that_enforces_baseline_is_called_out() {
        let text = "
kind: Namespace
metadata:
  name: agents
  labels: {pod-security.kubernetes.io/enforce: baseline}
---
kind: Pod
metadata: {name: p, namespace: agents}
spec:
  hostNetwork: true
  runtimeClassName: hostprocess
  containers: [{name: a}]
";
        assert_eq!(
            notes(text),
            vec![
                "requires Pod Security level privileged: baseline and restricted forbid it: \
                 host namespaces (hostNetwork=true); namespace \"agents\" enforces baseline, so its \
                 pods are rejected unless the cluster exempts them: label it \
                 pod-security.kubernetes.io/enforce=privileged"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_namespace_declared_in_another_file_is_not_guessed() {
        let text = "kind: Pod\nmetadata: {name: p, namespace: elsewhere}\nspec:\n  hostNetwork: true\n  runtimeClassName: hostprocess\n  containers: [{name: a}]\n";
        assert_eq!(
            notes(text),
            vec!["requires Pod Security level privileged: baseline and restricted forbid it: host namespaces (hostNetwork=true)".to_string()]
        );
    }

    #[test]
    fn host_pid_and_host_ipc_join_host_network_in_the_note() {
        let text = "kind: Pod\nspec:\n  hostNetwork: true\n  hostPID: true\n  hostIPC: true\n  runtimeClassName: hostprocess\n  containers: [{name: a}]\n";
        assert_eq!(
            notes(text),
            vec!["requires Pod Security level privileged: baseline and restricted forbid it: host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)".to_string()]
        );
    }

    #[test]
    fn pod_templates_and_replication_controllers_are_read() {
        let text = "
kind: PodTemplate
metadata: {name: t}
template:
  spec:
    runtimeClassName: hostprocess
    containers: [{name: a}]
---
kind: ReplicationController
metadata: {name: rc}
spec:
  template:
    spec:
      runtimeClassName: hostprocess
      containers: [{name: a}]
";
        let findings = lint_documents(text, "x.yaml").unwrap_or_default();
        let errors: Vec<String> = findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| format!("{}/{} {}", f.kind, f.name, f.field))
            .collect();
        assert_eq!(
            errors,
            vec![
                "PodTemplate/t template.spec.hostNetwork",
                "ReplicationController/rc spec.template.spec.hostNetwork"
            ]
        );
    }

    #[test]
    fn objects_are_named_by_generate_name_when_they_have_no_name() {
        let text = "kind: Pod\nmetadata: {generateName: agent-}\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\n---\nkind: Pod\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\n";
        let names: Vec<String> = lint_documents(text, "x.yaml")
            .unwrap_or_default()
            .into_iter()
            .filter(Finding::is_error)
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec!["agent-", "<unnamed>"]);
    }

    #[test]
    fn a_pod_without_host_process_fields_still_gets_run_as_user_name_checks() {
        let text = "kind: Pod\nspec:\n  securityContext: {windowsOptions: {runAsUserName: \"a\\\\b\\\\c\"}}\n  containers: [{name: a}]\n";
        assert_eq!(
            errors(text),
            vec![(
                "spec.securityContext.windowsOptions.runAsUserName".to_string(),
                r#"Invalid value: "a\\b\\c": runAsUserName cannot contain more than one backslash"#
                    .to_string()
            )]
        );
    }

    #[test]
    fn the_annotation_set_to_false_does_not_make_a_host_process_pod() {
        let text = "kind: Pod\nmetadata:\n  annotations: {microsoft.com/hostprocess-container: \"False\"}\nspec:\n  containers: [{name: a}]\n";
        assert_eq!(
            lint_documents(text, "x.yaml").map_err(|e| e.to_string()),
            Ok(vec![])
        );
    }

    #[test]
    fn a_containers_own_account_annotation_is_checked_and_must_name_a_container() {
        let text = "kind: Pod\nmetadata:\n  annotations:\n    run-as-user.hostprocess.io/agent: \"a\\\\b\\\\c\"\n    run-as-user.hostprocess.io/agnet: NT AUTHORITY\\SYSTEM\nspec:\n  hostNetwork: true\n  runtimeClassName: hostprocess\n  containers: [{name: agent}]\n";
        assert_eq!(
            errors(text),
            vec![
                (
                    "metadata.annotations[run-as-user.hostprocess.io/agent]".to_string(),
                    r#"Invalid value: "a\\b\\c": runAsUserName cannot contain more than one backslash"#
                        .to_string()
                ),
                (
                    "metadata.annotations[run-as-user.hostprocess.io/agnet]".to_string(),
                    r#"names no container of this pod, so no container runs as "NT AUTHORITY\\SYSTEM": the pod's containers are "agent""#
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_containers_account_annotation_on_a_workload_does_not_reach_its_pods() {
        let text = "kind: DaemonSet\nmetadata:\n  name: ds\n  annotations: {run-as-user.hostprocess.io/a: nobody}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      runtimeClassName: hostprocess\n      containers: [{name: a}]\n";
        let findings = lint_documents(text, "x.yaml").unwrap_or_default();
        let note = findings
            .iter()
            .find(|f| f.rule == Rule::AnnotationOnWorkload)
            .map(|f| (f.field.as_str(), f.line, f.column));
        assert_eq!(
            note,
            Some(("metadata.annotations[run-as-user.hostprocess.io/a]", 4, 17))
        );
    }

    #[test]
    fn a_pod_level_host_process_without_containers_is_not_counted() {
        // The apiserver counts containers; a pod with none has no HostProcess container.
        let text = "kind: Pod\nspec:\n  securityContext: {windowsOptions: {hostProcess: true}}\n";
        assert_eq!(errors(text), vec![]);
    }
}
