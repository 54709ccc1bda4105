//! `hostprocess lint` as a policy tool: exit status 0 clean / 1 rule broken / 2 could not
//! read, standard input, directories, and the output formats. Needs no root.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hostprocess");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lint/tests/fixtures");

fn fixture(relative: &str) -> String {
    Path::new(FIXTURES).join(relative).display().to_string()
}

fn lint(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("lint")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hostprocess lint");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for hostprocess lint")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn good_manifests_exit_0() {
    let out = lint(&[&fixture("good")], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_broken_rule_exits_1_with_file_line_and_column() {
    let out = lint(&[&fixture("bad/host-network-missing.yaml")], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let expected = format!(
        "{}:19:3: Pod/host-network-false (doc 2): spec.hostNetwork: ",
        fixture("bad/host-network-missing.yaml")
    );
    assert!(stdout.lines().any(|l| l.starts_with(&expected)), "{stdout}");
}

#[test]
fn an_unreadable_file_exits_2_and_the_next_file_is_still_reported() {
    let missing = "/nonexistent/hostprocess-lint/missing.yaml";
    let bad = fixture("bad/run-as-non-root.yaml");
    let out = lint(&[missing, &bad], "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr,
        format!("read '{missing}': No such file or directory (os error 2)\n")
    );
    assert!(
        text(&out.stdout).contains(&format!("{bad}:")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn standard_input_with_a_malformed_document_in_the_middle() {
    let manifest = "kind: Pod\nmetadata: {name: a}\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\n---\nkind: [Pod\n---\nkind: Pod\nmetadata: {name: c}\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\n";
    let out = lint(&["-"], manifest);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("<stdin>:3:1: Pod/a (doc 1)"), "{stdout}");
    assert!(stdout.contains("<stdin>:9:1: Pod/c (doc 3)"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("<stdin>:5:11: document 2: invalid YAML: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn json_and_sarif_go_to_stdout_whole() {
    let bad = fixture("bad/list.yaml");
    let json = lint(&["--format", "json", &bad, "/nonexistent.yaml"], "");
    assert_eq!(json.status.code(), Some(2));
    assert_eq!(text(&json.stderr), "");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert!(!value["findings"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(value["errors"][0]["file"], "/nonexistent.yaml");

    let sarif = lint(&["--format=sarif", &bad], "");
    assert_eq!(sarif.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&sarif.stdout).expect("SARIF");
    assert_eq!(value["version"], "2.1.0");
    assert_eq!(
        value["runs"][0]["invocations"][0]["executionSuccessful"],
        true
    );
}
