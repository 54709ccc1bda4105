//! A run's outcome written for people (`text`) or for tools (`json`, and SARIF 2.1.0 for code
//! scanning services).

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::finding::Severity;
use crate::rules::Rule;
use crate::{LintError, Outcome};

/// How findings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per finding on `out` (`FILE:LINE:COLUMN: Kind/name (doc N): FIELD: MESSAGE`),
    /// one line per error on `err`.
    Text,
    /// One JSON object: `{"findings": [...], "errors": [...]}`.
    Json,
    /// A SARIF 2.1.0 log; what could not be read goes in the invocation's notifications.
    Sarif,
}

/// Writes `outcome` in `format`.
pub fn render(
    outcome: &Outcome,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Text => {
            for finding in &outcome.findings {
                writeln!(out, "{finding}")?;
            }
            for error in &outcome.errors {
                writeln!(err, "{error}")?;
            }
            Ok(())
        }
        Format::Json => {
            let errors: Vec<Value> = outcome.errors.iter().map(error_json).collect();
            let log = json!({ "findings": outcome.findings, "errors": errors });
            write_json(out, &log)
        }
        Format::Sarif => write_json(out, &sarif(outcome)),
    }
}

fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

fn error_json(error: &LintError) -> Value {
    let (doc_index, line, column) = match error {
        LintError::Read { .. } => (None, None, None),
        LintError::Parse { doc_index, at, .. } => {
            (Some(*doc_index), Some(at.line), Some(at.column))
        }
    };
    json!({
        "file": error.file(),
        "doc_index": doc_index,
        "line": line,
        "column": column,
        "message": error.to_string(),
    })
}

fn sarif(outcome: &Outcome) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|rule| json!({ "id": rule.id(), "shortDescription": { "text": rule.summary() } }))
        .collect();
    let results: Vec<Value> = outcome
        .findings
        .iter()
        .map(|finding| {
            json!({
                "ruleId": finding.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == finding.rule),
                "level": match finding.severity {
                    Severity::Error => "error",
                    Severity::Info => "note",
                },
                "message": { "text": format!("{}: {}", finding.field, finding.message) },
                "locations": [{
                    "physicalLocation": location(&finding.file, Some((finding.line, finding.column))),
                    "logicalLocations": [{
                        "fullyQualifiedName": format!("{}/{}/{}", finding.kind, finding.name, finding.field),
                        "kind": "object",
                    }],
                }],
            })
        })
        .collect();
    let notifications: Vec<Value> = outcome
        .errors
        .iter()
        .map(|error| {
            let region = match error {
                LintError::Read { .. } => None,
                LintError::Parse { at, .. } => Some((at.line, at.column)),
            };
            json!({
                "level": "error",
                "message": { "text": error.to_string() },
                "locations": [{ "physicalLocation": location(&error.file(), region) }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "hostprocess lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": outcome.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    })
}

fn location(file: &str, region: Option<(usize, usize)>) -> Value {
    let mut location = json!({ "artifactLocation": { "uri": uri_reference(file) } });
    if let Some((line, column)) = region {
        location["region"] = json!({ "startLine": line, "startColumn": column });
    }
    location
}

/// A file name as a relative or absolute URI reference: every byte outside the unreserved
/// set and `/` percent-encoded.
fn uri_reference(file: &str) -> String {
    let mut uri = String::with_capacity(file.len());
    for byte in file.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_become_uri_references() {
        assert_eq!(uri_reference("deploy/pods.yaml"), "deploy/pods.yaml");
        assert_eq!(uri_reference("<stdin>"), "%3Cstdin%3E");
        assert_eq!(uri_reference("a b/é.yml"), "a%20b/%C3%A9.yml");
    }
}
