//! Collects the findings for one object of a document.

use crate::field::FieldPath;
use crate::finding::{Finding, Severity};
use crate::rules::Rule;

/// Where findings come from: the object of one document of one file.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) file: String,
    pub(crate) doc_index: usize,
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// The findings for one object, in the order the rules found them, each reported once even
/// when two rules read the same broken field.
pub(crate) struct Report {
    origin: Origin,
    findings: Vec<Finding>,
}

impl Report {
    pub(crate) fn new(origin: Origin) -> Report {
        Report {
            origin,
            findings: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, rule: Rule, field: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Error, rule, field, message.into());
    }

    pub(crate) fn info(&mut self, rule: Rule, field: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Info, rule, field, message.into());
    }

    fn push(&mut self, severity: Severity, rule: Rule, field: &FieldPath, message: String) {
        let duplicate = self
            .findings
            .iter()
            .any(|f| f.severity == severity && f.field == field.as_str() && f.message == message);
        if duplicate {
            return;
        }
        let at = field.position();
        self.findings.push(Finding {
            file: self.origin.file.clone(),
            line: at.line,
            column: at.column,
            doc_index: self.origin.doc_index,
            kind: self.origin.kind.clone(),
            name: self.origin.name.clone(),
            field: field.to_string(),
            severity,
            rule,
            message,
        });
    }

    pub(crate) fn into_findings(self) -> Vec<Finding> {
        self.findings
    }
}
