//! Records the commit the CLI is built from for `hostprocess --version`:
//! `HOSTPROCESS_COMMIT` when set (a build from a source archive), else `git describe` of the
//! source tree, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HOSTPROCESS_COMMIT");
    let commit = std::env::var("HOSTPROCESS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["describe", "--always", "--abbrev=12"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Build again when the checked-out commit moves.
    if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(path) = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
        .and_then(|name| git(&["rev-parse", "--git-path", &name]))
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=HOSTPROCESS_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_string())
}
