//! `hostprocess node install|uninstall|check` against a private containerd (whichever release
//! `HPC_CONTAINERD_VERSION` chooses): install into a temporary prefix and config, a CRI pod with
//! the handler `hostprocess` runs, check's verdicts on this machine, and uninstall leaves the
//! config byte-identical to before.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

mod kubelet;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kubelet::{container, Node};
use serde_json::Value;
use support::containerd::Containerd;
use support::{run_with_timeout, shim_binary, success, text, workspace_binary};

fn hostprocess(args: &[&str]) -> Output {
    let cli = workspace_binary("hostprocess", "hostprocess");
    run_with_timeout(Command::new(cli).args(args), Duration::from_secs(120))
}

/// `node check --format json` on `config`: the exit code and each check's verdicts in order.
fn check(config: &Path) -> (Option<i32>, Vec<(String, String, String)>) {
    let config = config.to_string_lossy();
    let out = hostprocess(&["node", "check", "--config", &config, "--format", "json"]);
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node check printed no JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let verdicts = findings
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {findings}"))
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (field("check"), field("status"), field("detail"))
        })
        .collect();
    (out.status.code(), verdicts)
}

fn verdict<'a>(verdicts: &'a [(String, String, String)], check: &str) -> Vec<&'a str> {
    verdicts
        .iter()
        .filter(|(c, _, _)| c == check)
        .map(|(_, status, _)| status.as_str())
        .collect()
}

#[test]
fn node_install_registers_the_handler_a_pod_runs_and_uninstall_restores_the_config() {
    let mut containerd = Containerd::prepare(false);
    let config = containerd.config_path();
    let before = fs::read(&config).unwrap_or_else(|e| panic!("read {}: {e}", config.display()));
    let prefix = containerd.dir().join("bin");
    let drop_ins = containerd.dir().join("conf.d");
    let shim = shim_binary();
    let flags = [
        "--config",
        &config.to_string_lossy(),
        "--prefix",
        &prefix.to_string_lossy(),
        "--drop-in-dir",
        &drop_ins.to_string_lossy(),
    ]
    .map(str::to_string);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    // Before install: containerd has no such handler, and check says so and exits 1.
    let (code, verdicts) = check(&config);
    assert_eq!(code, Some(1), "{verdicts:#?}");
    assert_eq!(verdict(&verdicts, "handler"), ["fail"], "{verdicts:#?}");

    // --dry-run changes nothing.
    let mut dry = vec!["node", "install", "--dry-run"];
    dry.extend(&flags);
    let out = success(&hostprocess(&dry));
    assert!(out.contains("would install"), "{out}");
    assert_eq!(fs::read(&config).ok(), Some(before.clone()));
    assert!(!prefix.exists() && !drop_ins.exists());

    let shim_flag = shim.to_string_lossy();
    let mut install = vec!["node", "install", "--shim-binary", &shim_flag];
    install.extend(&flags);
    let out = success(&hostprocess(&install));
    assert!(
        out.contains("containerd must be restarted"),
        "install did not say containerd must be restarted: {out}"
    );
    for binary in ["hostprocess", "containerd-shim-hostprocess-v1"] {
        assert!(
            prefix.join(binary).is_file(),
            "{binary} not installed: {out}"
        );
    }
    assert_ne!(fs::read(&config).ok(), Some(before.clone()), "{out}");

    // containerd started with the installed config and only the prefix for the shim.
    containerd.launch(&prefix);
    let node = Node::on(containerd);
    let pod = node
        .run_pod(node.host_network_pod("installed"))
        .unwrap_or_else(|e| panic!("RunPodSandbox with the installed handler: {e}"));
    pod.start(&container("hello", "echo installed-handler-runs"));
    pod.wait_for_log("hello", "installed-handler-runs");

    // With the node set up, check passes: every prerequisite ok but /run, which may be a
    // disk here.
    let (code, verdicts) = check(&config);
    assert_eq!(code, Some(0), "{verdicts:#?}");
    for name in [
        "kernel",
        "cgroups",
        "overlayfs",
        "service account",
        "ephemeral uids",
        "shim",
        "handler",
        "sandbox image",
    ] {
        assert_eq!(verdict(&verdicts, name), ["ok"], "{name}: {verdicts:#?}");
    }
    assert_eq!(
        verdict(&verdicts, "annotations"),
        ["ok", "ok"],
        "{verdicts:#?}"
    );
    pod.remove();

    // Installing again changes nothing, so no restart.
    let out = success(&hostprocess(&install));
    assert!(out.contains("need not be restarted"), "{out}");

    let mut uninstall = vec!["node", "uninstall"];
    uninstall.extend(&flags);
    let out = success(&hostprocess(&uninstall));
    assert_eq!(
        text(&fs::read(&config).unwrap_or_default()),
        text(&before),
        "uninstall did not restore the config: {out}"
    );
    for binary in ["hostprocess", "containerd-shim-hostprocess-v1"] {
        assert!(!prefix.join(binary).exists(), "{binary} left: {out}");
    }
    assert!(
        !drop_ins.join("hostprocess.toml").exists(),
        "drop-in left: {out}"
    );
    let backup = format!("{}.hostprocess-backup", config.display());
    assert!(!Path::new(&backup).exists(), "backup left: {out}");
}
