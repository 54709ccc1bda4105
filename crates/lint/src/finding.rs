//! What the linter reports: one finding per broken rule, located by file, line and column,
//! document, object and field.

use std::fmt;

use serde::Serialize;

use crate::rules::Rule;

/// How much a finding matters. Only errors make `hostprocess lint` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something the cluster would refuse or that would not run as a HostProcess pod.
    Error,
    /// Something to know before deploying, such as the Pod Security level a pod needs.
    Info,
}

/// One rule a pod in a manifest breaks, or one fact about it worth knowing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file as the user named it (`<stdin>` for standard input).
    pub file: String,
    /// Where the field at fault is (for a missing field, the object that lacks it); from 1.
    pub line: usize,
    pub column: usize,
    /// Position of the YAML document in the file, from 1 (empty documents count).
    pub doc_index: usize,
    /// The object's kind (`Pod`, `DaemonSet` …); for an item of a `List`, the item's kind.
    pub kind: String,
    /// The object's `metadata.name` (or `generateName`), `<unnamed>` when it has neither.
    pub name: String,
    /// The field at fault, as a path within the document:
    /// `spec.template.spec.containers[1].securityContext.windowsOptions.hostProcess`.
    pub field: String,
    pub severity: Severity,
    pub rule: Rule,
    /// The apiserver's wording where there is one, e.g.
    /// `Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers`.
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE:LINE:COLUMN: Kind/name (doc N): FIELD: MESSAGE`, with `note: ` before the message of
/// an info.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}/{} (doc {}): {}: ",
            self.file, self.line, self.column, self.kind, self.name, self.doc_index, self.field
        )?;
        if self.severity == Severity::Info {
            f.write_str("note: ")?;
        }
        f.write_str(&self.message)
    }
}

/// True when any finding is an error: the exit status of `hostprocess lint`.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(Finding::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, message: &str) -> Finding {
        Finding {
            file: "pods.yaml".to_string(),
            line: 12,
            column: 7,
            doc_index: 2,
            kind: "Pod".to_string(),
            name: "agent".to_string(),
            field: "spec.containers[0].securityContext.windowsOptions.hostProcess".to_string(),
            severity,
            rule: Rule::HostProcessIdentical,
            message: message.to_string(),
        }
    }

    #[test]
    fn an_error_prints_as_one_line_with_position_object_document_and_field() {
        let message = "Invalid value: false: pod hostProcess value must be identical if both are specified, was true";
        assert_eq!(
            finding(Severity::Error, message).to_string(),
            format!("pods.yaml:12:7: Pod/agent (doc 2): spec.containers[0].securityContext.windowsOptions.hostProcess: {message}")
        );
    }

    #[test]
    fn an_info_is_marked_as_a_note() {
        assert_eq!(
            finding(Severity::Info, "requires Pod Security level privileged").to_string(),
            "pods.yaml:12:7: Pod/agent (doc 2): spec.containers[0].securityContext.windowsOptions.hostProcess: note: requires Pod Security level privileged"
        );
    }

    #[test]
    fn only_errors_count_as_errors() {
        assert!(!has_errors(&[]));
        assert!(!has_errors(&[finding(Severity::Info, "x")]));
        assert!(has_errors(&[
            finding(Severity::Info, "x"),
            finding(Severity::Error, "y")
        ]));
    }

    #[test]
    fn findings_serialize_with_lowercase_severity() {
        let json = serde_json::to_value(finding(Severity::Info, "x")).unwrap();
        assert_eq!(json["severity"], "info");
        assert_eq!(json["doc_index"], 2);
        assert_eq!(json["kind"], "Pod");
        assert_eq!(json["line"], 12);
        assert_eq!(json["column"], 7);
        assert_eq!(json["rule"], "host-process-identical");
    }
}
