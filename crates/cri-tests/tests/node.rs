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

use k8s_cri::v1::{ContainerState, ImageSpec, KeyValue, NamespaceMode};
use kubelet::{container, with_mount, Node, K8S_NAMESPACE};
use serde_json::Value;
use support::containerd::Containerd;
use support::{run_with_timeout, shim_binary, success, text, workspace_binary};
use testkit::kernel::skipped;

/// The runtime handler of containerd's default runtime, runc, in the test configuration.
const RUNC_HANDLER: &str = "runc";

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
    assert!(!drop_ins.exists(), "drop-in directory left: {out}");
    let backup = format!("{}.hostprocess-backup", config.display());
    assert!(!Path::new(&backup).exists(), "backup left: {out}");
}

/// The image of deploy/install-daemonset.yaml (an OCI tarball from `scripts/install-image`,
/// named by `HPC_INSTALL_IMAGE`) imports into a private containerd, and its entrypoint, run
/// the way the DaemonSet runs it (containerd's default runtime runc, privileged, host network
/// and PID namespace, the node's paths mounted at the same place, the DaemonSet's `args` after
/// the image's entrypoint), installs there.
#[test]
fn the_install_image_imports_and_its_entrypoint_installs_into_a_private_containerd() {
    const TEST: &str =
        "the_install_image_imports_and_its_entrypoint_installs_into_a_private_containerd";
    let Some(image) = std::env::var_os("HPC_INSTALL_IMAGE") else {
        skipped(
            TEST,
            "HPC_INSTALL_IMAGE names no image tarball (scripts/dist && scripts/install-image make one; .ci/run does)",
        );
        return;
    };
    let mut containerd = Containerd::prepare(false);
    let config = containerd.config_path();
    let before = fs::read(&config).unwrap_or_else(|e| panic!("read {}: {e}", config.display()));
    let shim = shim_binary();
    containerd.launch(shim.parent().unwrap_or(Path::new("/")));
    containerd.import(K8S_NAMESPACE, Path::new(&image));
    let reference = success(&containerd.ctr_in(K8S_NAMESPACE, &["images", "ls", "-q"]))
        .lines()
        .find(|l| l.contains("hostprocess-install"))
        .unwrap_or_else(|| {
            panic!(
                "{} imported no hostprocess-install image",
                Path::new(&image).display()
            )
        })
        .to_string();
    let node = Node::on(containerd);

    let dir = node.containerd.dir().to_string_lossy().into_owned();
    let prefix = format!("{dir}/bin");
    let drop_ins = format!("{dir}/conf.d");
    let config_flag = config.to_string_lossy().into_owned();
    // The DaemonSet's pod: privileged, host PID and network.
    let mut pod_config = node.pod_config("hostprocess-install", NamespaceMode::Node);
    if let Some(context) = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.privileged = true;
        if let Some(namespaces) = context.namespace_options.as_mut() {
            namespaces.pid = NamespaceMode::Node as i32;
        }
    }
    let pod = node
        .run_pod_with(pod_config, RUNC_HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox with runc: {e}"));
    let mut install = container("install", "");
    install.command.clear();
    install.image = Some(ImageSpec {
        image: reference.clone(),
        ..ImageSpec::default()
    });
    install.args = [
        "--config",
        &config_flag,
        "--prefix",
        &prefix,
        "--drop-in-dir",
        &drop_ins,
    ]
    .map(str::to_string)
    .to_vec();
    install.envs.push(KeyValue {
        key: "HOSTPROCESS_INSTALL_ONCE".into(),
        value: "1".into(),
    });
    if let Some(context) = install
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.privileged = true;
        if let Some(namespaces) = context.namespace_options.as_mut() {
            namespaces.pid = NamespaceMode::Node as i32;
        }
    }
    let install = with_mount(install, Path::new(&dir), &dir, false);
    let id = pod.start(&install);
    let status = node.cri.wait_for_state(
        &id,
        ContainerState::ContainerExited,
        Duration::from_secs(60),
    );
    let log = pod.log_lines("install");
    assert_eq!(status.exit_code, 0, "the entrypoint failed: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("containerd must be restarted")),
        "{log:#?}"
    );
    // The image's static binaries, installed executable.
    for binary in ["hostprocess", "containerd-shim-hostprocess-v1"] {
        use std::os::unix::fs::PermissionsExt;
        let installed = Path::new(&prefix).join(binary);
        let bytes = fs::read(&installed)
            .unwrap_or_else(|e| panic!("read {}: {e}\n{log:#?}", installed.display()));
        let mode = fs::metadata(&installed).map_or(0, |m| m.permissions().mode());
        assert!(
            bytes.starts_with(b"\x7fELF") && mode & 0o111 != 0,
            "{}",
            installed.display()
        );
    }
    let cli = Path::new(&prefix).join("hostprocess");
    success(&run_with_timeout(
        Command::new(&cli).arg("--version"),
        Duration::from_secs(30),
    ));
    let (_, verdicts) = check(&config);
    assert_eq!(verdict(&verdicts, "handler"), ["ok"], "{verdicts:#?}");
    pod.remove();

    let out = success(&hostprocess(&[
        "node",
        "uninstall",
        "--config",
        &config_flag,
        "--prefix",
        &prefix,
        "--drop-in-dir",
        &drop_ins,
    ]));
    assert_eq!(
        text(&fs::read(&config).unwrap_or_default()),
        text(&before),
        "uninstall did not restore the config: {out}"
    );
}
