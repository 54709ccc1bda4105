//! What the CLI says about itself: `-v`/`--version` as runc prints it, shell completions and man
//! pages generated from the same definitions as `--help`. Needs no root.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hostprocess");

fn hostprocess(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run hostprocess")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn available(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn version_prints_version_commit_and_spec_like_runc() {
    let features: serde_json::Value =
        serde_json::from_slice(&hostprocess(&["features"]).stdout).expect("features JSON");
    let spec = features["ociVersionMax"].as_str().unwrap_or_default();
    for flag in ["-v", "--version"] {
        let out = hostprocess(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{flag}: {text}");
        assert_eq!(
            lines[0],
            format!("hostprocess version {}", env!("CARGO_PKG_VERSION"))
        );
        let commit = lines[1].strip_prefix("commit: ").unwrap_or_default();
        assert!(
            !commit.is_empty() && !commit.contains(' '),
            "{flag}: {text}"
        );
        assert_eq!(lines[2], format!("spec: {spec}"), "{flag}: {text}");
    }
}

#[test]
fn the_bash_completion_script_parses() {
    let out = hostprocess(&["completion", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("hostprocess.bash");
    std::fs::write(&script, &out.stdout).expect("write the script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // It completes the verbs and a verb's flags.
    let text = stdout(&out);
    for word in ["create", "lint", "--format", "--pid-file"] {
        assert!(text.contains(word), "no {word} in the bash script");
    }
}

#[test]
fn zsh_and_fish_completion_scripts_parse_where_the_shell_is_installed() {
    for (shell, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let out = hostprocess(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(stdout(&out).contains("hostprocess"), "{shell}");
        if !available(shell) {
            testkit::kernel::skipped(
                &format!("zsh_and_fish_completion_scripts_parse ({shell})"),
                &format!("{shell} is not installed: only generated, not parsed"),
            );
            continue;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("hostprocess.completion");
        std::fs::write(&script, &out.stdout).expect("write the script");
        let result = Command::new(shell)
            .arg(check)
            .arg(&script)
            .output()
            .expect("run the shell");
        assert!(
            result.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

#[test]
fn man_pages_are_written_for_every_verb_and_render() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = hostprocess(&["man", &dir.path().display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "hostprocess.1",
        "hostprocess-create.1",
        "hostprocess-lint.1",
    ] {
        assert!(dir.path().join(page).is_file(), "no {page}");
    }
    let page = dir.path().join("hostprocess-lint.1");
    let rendered = render(&page);
    assert!(rendered.contains("--format"), "{rendered}");
    assert!(
        rendered.contains("Check Kubernetes manifests against the HostProcess"),
        "{rendered}"
    );
}

/// The page as `man -l` shows it (groff when man is not installed).
fn render(page: &Path) -> String {
    let out = if available("man") {
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "200")
            .output()
    } else {
        Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(page)
            .output()
    }
    .expect("render the man page (man or groff)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_into_a_missing_directory_is_one_clear_error() {
    let out = hostprocess(&["man", "/nonexistent/hostprocess-man"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("write man pages into '/nonexistent/hostprocess-man'"),
        "{stderr}"
    );
}
