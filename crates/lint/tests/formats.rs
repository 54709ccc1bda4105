//! Runs over several inputs (good, bad, unreadable, malformed, standard input, directories)
//! and what each output format makes of them; the SARIF log is validated against the official
//! SARIF 2.1.0 schema (vendored from Microsoft's `@microsoft/jest-sarif` package).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hostprocess_lint::{lint_paths, render, Format, LintError, LintOptions, Outcome};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SARIF_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/schemas/sarif-2.1.0-rtm.5.json"
);

const BAD_MIDDLE: &str = "\
kind: Pod
metadata: {name: first}
spec: {runtimeClassName: hostprocess, containers: [{name: a}]}
---
kind: [Pod
---
kind: Pod
metadata: {name: third}
spec: {runtimeClassName: hostprocess, containers: [{name: a}]}
";

fn fixture(relative: &str) -> PathBuf {
    Path::new(FIXTURES).join(relative)
}

fn lint(paths: &[PathBuf], stdin: &str) -> Outcome {
    lint_paths(
        paths,
        &mut Cursor::new(stdin.as_bytes()),
        &LintOptions::default(),
    )
}

fn output(outcome: &Outcome, format: Format) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    render(outcome, format, &mut out, &mut err).expect("render to memory");
    (
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

/// A directory with a bad manifest in a subdirectory, a good one, and files that are not YAML.
fn manifest_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = dir.path().join("b-sub");
    fs::create_dir(&sub).expect("mkdir");
    fs::copy(
        fixture("bad/host-network-missing.yaml"),
        sub.join("pods.yml"),
    )
    .expect("copy");
    fs::copy(fixture("good/windows-pod.yaml"), dir.path().join("a.yaml")).expect("copy");
    fs::copy(fixture("bad/list.yaml"), dir.path().join("c.yaml")).expect("copy");
    fs::write(dir.path().join("notes.txt"), "kind: [broken").expect("write");
    dir
}

#[test]
fn a_malformed_document_in_the_middle_is_reported_and_the_others_are_linted() {
    let outcome = lint(&[PathBuf::from("-")], BAD_MIDDLE);
    let objects: Vec<(usize, &str)> = outcome
        .findings
        .iter()
        .filter(|f| f.is_error())
        .map(|f| (f.doc_index, f.name.as_str()))
        .collect();
    assert_eq!(objects, vec![(1, "first"), (3, "third")]);
    match outcome.errors.as_slice() {
        [LintError::Parse {
            file, doc_index: 2, ..
        }] => assert_eq!(file, "<stdin>"),
        other => panic!("{other:?}"),
    }
    assert_eq!(outcome.exit_code(), 2);
}

#[test]
fn an_unreadable_file_does_not_stop_the_files_after_it() {
    let missing = PathBuf::from("/nonexistent/hostprocess-lint/missing.yaml");
    let outcome = lint(&[missing, fixture("bad/run-as-non-root.yaml")], "");
    assert!(
        matches!(outcome.errors.as_slice(), [LintError::Read { .. }]),
        "{:?}",
        outcome.errors
    );
    assert!(outcome.findings.iter().any(|f| f.is_error()));
    let (_, err) = output(&outcome, Format::Text);
    assert_eq!(
        err,
        "read '/nonexistent/hostprocess-lint/missing.yaml': No such file or directory (os error 2)\n",
        "the cause printed once"
    );
    assert_eq!(outcome.exit_code(), 2);
}

#[test]
fn a_file_that_is_not_utf8_is_unreadable_and_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.yaml");
    fs::write(&path, b"kind: Pod\nmetadata: {name: caf\xe9}\n").expect("write");
    let outcome = lint(std::slice::from_ref(&path), "");
    let (_, err) = output(&outcome, Format::Text);
    assert_eq!(
        err,
        format!(
            "read '{}': stream did not contain valid UTF-8\n",
            path.display()
        )
    );
    assert_eq!(outcome.exit_code(), 2);
}

#[test]
fn exit_codes_are_0_clean_1_rule_broken_2_unreadable() {
    assert_eq!(lint(&[fixture("good")], "").exit_code(), 0);
    assert_eq!(lint(&[fixture("bad/list.yaml")], "").exit_code(), 1);
    assert_eq!(lint(&[PathBuf::from("-")], "kind: [Pod\n").exit_code(), 2);
    assert_eq!(
        lint(&[fixture("good"), PathBuf::from("/nonexistent.yaml")], "").exit_code(),
        2
    );
}

#[test]
fn directories_are_read_recursively_in_name_order_and_only_for_yaml() {
    let dir = manifest_tree();
    let outcome = lint(&[dir.path().to_path_buf()], "");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let mut files: Vec<String> = outcome
        .findings
        .iter()
        .map(|f| {
            Path::new(&f.file)
                .strip_prefix(dir.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| f.file.clone())
        })
        .collect();
    files.dedup();
    assert_eq!(files, vec!["a.yaml", "b-sub/pods.yml", "c.yaml"]);
}

#[test]
fn text_lines_start_with_file_line_and_column() {
    let outcome = lint(&[fixture("bad/host-network-missing.yaml")], "");
    let (out, err) = output(&outcome, Format::Text);
    assert_eq!(err, "");
    let first = out.lines().next().unwrap_or_default();
    let expected = format!(
        "{}:6:1: Pod/no-host-network (doc 1): spec.hostNetwork: Invalid value: false: \
         hostNetwork must be true if pod contains any hostProcess containers",
        fixture("bad/host-network-missing.yaml").display()
    );
    assert_eq!(first, expected);
}

#[test]
fn json_has_every_finding_and_every_error_with_positions() {
    let outcome = lint(
        &[PathBuf::from("-"), PathBuf::from("/nonexistent.yaml")],
        BAD_MIDDLE,
    );
    let (out, _) = output(&outcome, Format::Json);
    let json: Value = serde_json::from_str(&out).expect("valid JSON");
    let findings = json["findings"].as_array().cloned().unwrap_or_default();
    assert_eq!(findings.len(), outcome.findings.len());
    let first = &findings[0];
    assert_eq!(
        (
            &first["file"],
            &first["line"],
            &first["column"],
            &first["rule"]
        ),
        (
            &Value::from("<stdin>"),
            &Value::from(3),
            &Value::from(1),
            &Value::from("host-network")
        )
    );
    let errors = json["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["doc_index"], 2);
    assert_eq!(errors[0]["line"], 5);
    assert_eq!(errors[0]["column"], 11);
    assert_eq!(errors[1]["file"], "/nonexistent.yaml");
    assert!(errors[1]["line"].is_null());
}

/// A Python interpreter with the `jsonschema` module (Debian's `python3-jsonschema`).
fn python_with_jsonschema() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import jsonschema"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| panic!("no python3 with jsonschema: apt-get install python3-jsonschema"))
}

/// Validates `log` against the SARIF 2.1.0 schema; the validator's message on failure.
fn validate_sarif(log: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("log.sarif");
    fs::write(&path, log).map_err(|e| e.to_string())?;
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  jsonschema.validators.validator_for(schema)(schema).validate(json.load(open(sys.argv[2])))\n";
    let result = Command::new(python_with_jsonschema())
        .args(["-c", script, SARIF_SCHEMA])
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    if result.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&result.stderr).into_owned())
    }
}

#[test]
fn sarif_logs_validate_against_the_sarif_2_1_0_schema() {
    let dir = manifest_tree();
    let runs = [
        lint(&[fixture("good/windows-pod.yaml")], ""),
        lint(&[dir.path().to_path_buf()], ""),
        lint(
            &[PathBuf::from("-"), PathBuf::from("/nonexistent/x y.yaml")],
            BAD_MIDDLE,
        ),
    ];
    for outcome in &runs {
        let (log, _) = output(outcome, Format::Sarif);
        if let Err(e) = validate_sarif(&log) {
            panic!("{e}\n{log}");
        }
    }
    // The validator does refuse what is not SARIF.
    assert!(validate_sarif(r#"{"version": "2.1.0", "runs": [{"results": []}]}"#).is_err());
}

#[test]
fn sarif_results_carry_rule_level_and_region_and_errors_become_notifications() {
    let outcome = lint(&[PathBuf::from("-")], BAD_MIDDLE);
    let (log, _) = output(&outcome, Format::Sarif);
    let sarif: Value = serde_json::from_str(&log).expect("valid JSON");
    let run = &sarif["runs"][0];
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "host-network");
    assert_eq!(result["level"], "error");
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "%3Cstdin%3E");
    assert_eq!(location["region"]["startLine"], 3);
    let rule_index = result["ruleIndex"].as_u64().unwrap_or(u64::MAX) as usize;
    assert_eq!(
        run["tool"]["driver"]["rules"][rule_index]["id"],
        "host-network"
    );
    let invocation = &run["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let notification = &invocation["toolExecutionNotifications"][0];
    assert_eq!(notification["level"], "error");
    assert_eq!(
        notification["locations"][0]["physicalLocation"]["region"]["startLine"],
        5
    );
}
