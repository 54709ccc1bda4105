//! HostProcess pods through Kubernetes' CRI: a private containerd (1.6, 1.7 or 2.x) with the
//! `hostprocess` runtime handler, driven the way the kubelet drives it (RunPodSandbox,
//! CreateContainer, StartContainer, ExecSync, ContainerStats, StopContainer, StopPodSandbox,
//! RemovePodSandbox).
//! Each test has its own containerd and removes everything it made, failed or not.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

mod kubelet;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_cri::v1::{ContainerState, NamespaceMode, PodSandboxState};
use kubelet::{
    assert_cpu_and_memory_used, assert_nothing_left, container, ephemeral_claims_of, exec_stdout,
    processes_in_cgroups_of, run_as, with_annotation, with_mount, Node, K8S_NAMESPACE,
};
use support::image::{PAUSE_CMD, PAUSE_IMAGE};
use support::{text, unique_id, wait_until};

const HOSTPROCESS_CONTAINER: &str = "microsoft.com/hostprocess-container";
const INHERIT_USER: &str = "microsoft.com/hostprocess-inherit-user";
const ROOTFS_LOCATION: &str = "microsoft.com/hostprocess-rootfs-location";
const RUN_AS_USER: &str = "hostprocess.io/run-as-user";
const RUN_AS_USER_OF_CONTAINER: &str = "run-as-user.hostprocess.io/";
/// The reserved range of ephemeral uids (§4).
const EPHEMERAL_UIDS: std::ops::RangeInclusive<u32> = 61184..=65519;
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[test]
fn a_host_network_pod_runs_its_init_container_then_two_containers() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("multi"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    assert_eq!(
        node.cri.pod_sandbox_state(&pod.id),
        PodSandboxState::SandboxReady
    );

    // The sandbox is a task with no process: no pause process runs, not even the image's.
    assert_eq!(
        node.containerd.task_row(K8S_NAMESPACE, &pod.id),
        Some((0, "RUNNING".to_string())),
        "the sandbox task"
    );
    assert!(
        support::containerd::processes_running(PAUSE_CMD).is_empty(),
        "the sandbox image's command ({PAUSE_IMAGE}) runs"
    );

    let init = pod.start(&container(
        "init",
        "echo init-done; echo \"volume $CONTAINER_SANDBOX_MOUNT_POINT\"",
    ));
    let status = node.cri.wait_for_state(
        &init,
        ContainerState::ContainerExited,
        Duration::from_secs(30),
    );
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(pod.log_lines("init"), ["init-done", "volume /hpc"]);

    let a = pod.start(&container("a", "echo from-a; exec sleep 300"));
    let b = pod.start(&container("b", "echo from-b; exec sleep 300"));
    for (id, name) in [(&a, "a"), (&b, "b")] {
        node.cri.wait_for_state(
            id,
            ContainerState::ContainerRunning,
            Duration::from_secs(30),
        );
        pod.wait_for_log(name, &format!("from-{name}"));
    }
    let mut listed = node.cri.list_containers(&pod.id);
    listed.sort();
    let mut expected = vec![
        (init.clone(), ContainerState::ContainerExited),
        (a.clone(), ContainerState::ContainerRunning),
        (b.clone(), ContainerState::ContainerRunning),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        node.containerd.serving_shims().len(),
        1,
        "one shim serves the whole pod"
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert!(node.cri.list_pod_sandboxes().is_empty());
    assert_nothing_left(&node, &pod_id, &[init, a, b]);
}

/// A host user made for one test, removed when the test ends.
struct HostUser {
    name: String,
}

impl HostUser {
    fn new() -> HostUser {
        // useradd's names are at most 32 characters.
        let name = format!("hpcri{}", unique_id("u").replace('-', ""));
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/false",
                &name,
            ])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            text(&out.stderr)
        );
        HostUser { name }
    }

    fn uid(&self) -> String {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .expect("id");
        text(&out.stdout).trim().to_string()
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A host group made for one test, removed when the test ends.
struct HostGroup {
    name: String,
}

impl HostGroup {
    /// The name of a group that the test's workload makes; removed when the test ends.
    fn made_by_the_test() -> HostGroup {
        HostGroup {
            name: format!("hpcrig{}", unique_id("g").replace('-', "")),
        }
    }

    fn new() -> HostGroup {
        let group = HostGroup::made_by_the_test();
        let out = Command::new("groupadd")
            .args(["--system", &group.name])
            .output()
            .expect("run groupadd");
        assert!(
            out.status.success(),
            "groupadd {}: {}",
            group.name,
            text(&out.stderr)
        );
        group
    }

    fn gid(&self) -> String {
        let out = Command::new("getent")
            .args(["group", &self.name])
            .output()
            .expect("getent");
        text(&out.stdout)
            .split(':')
            .nth(2)
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for HostGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

#[test]
fn processes_and_exec_sync_run_as_the_containers_account() {
    let node = Node::start();
    let user = HostUser::new();
    let group = HostGroup::new();
    let pod = node
        .run_pod(node.host_network_pod("accounts"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let script = "echo \"uid $(id -u) gid $(id -g)\"; exec sleep 300";

    // hostprocess.io/run-as-user naming a host user.
    let named = pod.start(&with_annotation(
        container("named", script),
        RUN_AS_USER,
        &user.name,
    ));
    // The standard runAsUser / runAsGroup.
    let ids = pod.start(&run_as(container("ids", script), 4321, 4322));
    // A group: an ephemeral account in that group, for this container only.
    let ephemeral = pod.start(&with_annotation(
        container("ephemeral", script),
        RUN_AS_USER,
        &group.name,
    ));
    // A Windows-form service account: the runtime's unprivileged account (nobody).
    let service = pod.start(&with_annotation(
        container("service", script),
        RUN_AS_USER,
        "NT AUTHORITY\\LOCAL SERVICE",
    ));
    for name in ["named", "ids", "ephemeral", "service"] {
        let started = wait_until(Duration::from_secs(20), || !pod.log_lines(name).is_empty());
        assert!(started, "{name} logged nothing");
    }

    let uid = user.uid();
    assert_eq!(exec_stdout(&node, &named, &["id", "-u"]), uid);
    assert_eq!(
        pod.log_lines("named")[0].split(' ').nth(1),
        Some(uid.as_str())
    );

    assert_eq!(exec_stdout(&node, &ids, &["id", "-u"]), "4321");
    assert_eq!(exec_stdout(&node, &ids, &["id", "-g"]), "4322");
    assert_eq!(pod.log_lines("ids"), ["uid 4321 gid 4322"]);

    let ephemeral_uid: u32 = exec_stdout(&node, &ephemeral, &["id", "-u"])
        .parse()
        .expect("a numeric uid");
    assert!(EPHEMERAL_UIDS.contains(&ephemeral_uid), "{ephemeral_uid}");
    assert_eq!(exec_stdout(&node, &ephemeral, &["id", "-g"]), group.gid());
    assert_eq!(
        pod.log_lines("ephemeral"),
        [format!("uid {ephemeral_uid} gid {}", group.gid())]
    );
    assert_eq!(ephemeral_claims_of(&[&ephemeral]).len(), 1);

    let nobody = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .expect("id");
    assert_eq!(
        exec_stdout(&node, &service, &["id", "-u"]),
        text(&nobody.stdout).trim()
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[named, ids, ephemeral, service]);
}

#[test]
fn the_service_account_volume_is_readable_at_its_path_and_under_the_sandbox_mount_point() {
    let node = Node::start();
    let secrets = node.dir("serviceaccount");
    fs::write(secrets.join("token"), "token-of-the-test\n").expect("write token");
    fs::write(secrets.join("namespace"), "default").expect("write namespace");
    let pod = node
        .run_pod(node.host_network_pod("service-account"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let config = with_mount(
        container("agent", "exec sleep 300"),
        &secrets,
        SERVICE_ACCOUNT,
        true,
    );
    let id = pod.start(&config);
    node.cri.wait_for_state(
        &id,
        ContainerState::ContainerRunning,
        Duration::from_secs(30),
    );

    let token = format!("{SERVICE_ACCOUNT}/token");
    assert_eq!(
        exec_stdout(&node, &id, &["cat", &token]),
        "token-of-the-test"
    );
    let under_volume = format!("cat \"$CONTAINER_SANDBOX_MOUNT_POINT{SERVICE_ACCOUNT}/namespace\"");
    assert_eq!(
        exec_stdout(&node, &id, &["sh", "-c", &under_volume]),
        "default"
    );
    let write = node
        .cri
        .exec_sync(&id, &["touch", &format!("{SERVICE_ACCOUNT}/new")]);
    assert_ne!(write.exit_code, 0, "the read-only volume was writable");
    assert!(!secrets.join("new").exists());

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn container_stats_report_cpu_and_memory() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("stats"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let busy = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 300";
    let id = pod.start(&container("busy", busy));
    pod.wait_for_log("busy", "busy-done");

    let stats = node.cri.container_stats(&id);
    assert_cpu_and_memory_used(&stats);

    let listed = node.cri.list_container_stats(&pod.id);
    let ours = listed
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == id))
        .unwrap_or_else(|| panic!("ListContainerStats lacks {id}: {listed:?}"));
    assert_cpu_and_memory_used(ours);

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn stop_container_sends_sigterm_first_and_kills_after_the_grace_period() {
    let node = Node::start();
    let markers = node.dir("markers");
    let pod = node
        .run_pod(node.host_network_pod("stop"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let term_marker = markers.join("graceful-got-term");
    let graceful = format!(
        "trap 'echo term > {}; exit 0' TERM; echo ready; while :; do sleep 1 & wait $!; done",
        term_marker.display()
    );
    let graceful = pod.start(&container("graceful", &graceful));
    let stubborn = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let stubborn = pod.start(&container("stubborn", stubborn));
    pod.wait_for_log("graceful", "ready");
    pod.wait_for_log("stubborn", "ready");

    let started = Instant::now();
    node.cri
        .stop_container(&graceful, 10)
        .unwrap_or_else(|e| panic!("StopContainer graceful: {e}"));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM did not stop it: {took:?}"
    );
    assert_eq!(
        fs::read_to_string(&term_marker).unwrap_or_default(),
        "term\n",
        "the TERM trap did not run"
    );
    let status = node.cri.container_status(&graceful);
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");

    let timeout = 2;
    let started = Instant::now();
    node.cri
        .stop_container(&stubborn, timeout)
        .unwrap_or_else(|e| panic!("StopContainer stubborn: {e}"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(timeout as u64),
        "killed before the grace period ended: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "not killed after the grace period: {took:?}"
    );
    let status = node.cri.container_status(&stubborn);
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 137, "{status:?}");
    assert!(processes_in_cgroups_of(&[&graceful, &stubborn]).is_empty());

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[graceful, stubborn]);
}

#[test]
fn remove_pod_sandbox_leaves_no_process_mount_cgroup_volume_or_account_behind() {
    let node = Node::start();
    let group = HostGroup::new();
    let shared = node.dir("shared");
    fs::set_permissions(
        &shared,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod the shared directory");
    let pod = node
        .run_pod(node.host_network_pod("teardown"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let marker = format!("{}", 500_000 + std::process::id());
    // A daemon that leaves its session, an ephemeral account, a volume mount and a file in the
    // container volume: all running when the pod is stopped.
    let script = format!(
        "setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo data > \"$CONTAINER_SANDBOX_MOUNT_POINT/scratch\"; echo data > /mnt/shared/written; echo ready; exec sleep 300"
    );
    let config = with_mount(
        with_annotation(container("daemon", &script), RUN_AS_USER, &group.name),
        &shared,
        "/mnt/shared",
        false,
    );
    let daemon = pod.start(&config);
    let plain = pod.start(&container("plain", "echo ready; exec sleep 300"));
    pod.wait_for_log("daemon", "ready");
    pod.wait_for_log("plain", "ready");
    assert_eq!(
        support::containerd::processes_running(&["sleep", &marker]).len(),
        1,
        "the daemon did not start"
    );
    assert_eq!(ephemeral_claims_of(&[&daemon]).len(), 1);
    assert_eq!(
        fs::read_to_string(shared.join("written")).unwrap_or_default(),
        "data\n",
        "the volume mount did not reach the host directory"
    );

    // The kubelet deletes a pod with StopPodSandbox (which stops every container) and then
    // RemovePodSandbox.
    let pod_id = pod.id.clone();
    pod.remove();
    assert!(
        support::containerd::processes_running(&["sleep", &marker]).is_empty(),
        "the daemon outlived its pod"
    );
    assert_nothing_left(&node, &pod_id, &[daemon, plain]);
}

#[test]
fn a_pod_without_host_network_is_refused_with_the_kubelets_message() {
    let node = Node::start();
    let config = node.pod_config("own-network", NamespaceMode::Pod);
    let Err(status) = node.run_pod(config) else {
        panic!("a pod with its own network namespace was accepted");
    };
    let message = status.message();
    assert!(
        message.contains("hostNetwork is required if Pod contains HostProcess containers"),
        "{message}"
    );
    assert!(message.contains("set hostNetwork: true"), "{message}");
    // CRI made the pod's network namespace (and ran CNI) before asking the runtime; it
    // removes both when the runtime refuses.
    let netns = message
        .split_whitespace()
        .find(|word| word.contains("/netns/"))
        .map(|word| word.trim_end_matches(','));
    assert!(netns.is_some(), "{message}");
    assert!(netns.is_some_and(|path| !std::path::Path::new(path).exists()));
    assert!(node.cri.list_pod_sandboxes().is_empty());
    assert!(
        wait_until(Duration::from_secs(20), || node
            .containerd
            .serving_shims()
            .is_empty()),
        "the refused sandbox's shim did not exit"
    );
}

#[test]
fn a_container_whose_hostprocess_annotation_disagrees_with_its_pod_is_refused() {
    let node = Node::start();
    let mut config = node.host_network_pod("disagree");
    config
        .annotations
        .insert(HOSTPROCESS_CONTAINER.into(), "true".into());
    let pod = node
        .run_pod(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));

    // CRI makes the task (and so asks the runtime) at StartContainer.
    let refused = pod
        .create(&with_annotation(
            container("not-hostprocess", "exec sleep 300"),
            HOSTPROCESS_CONTAINER,
            "false",
        ))
        .unwrap_or_else(|e| panic!("CreateContainer: {e}"));
    let Err(status) = node.cri.start_container(&refused) else {
        panic!("a container that is not HostProcess started in a HostProcess pod");
    };
    assert!(
        status.message().contains(
            "pod spec and all containers inside must have the HostProcess field set to be valid"
        ),
        "{}",
        status.message()
    );
    assert_ne!(
        node.cri.container_status(&refused).state(),
        ContainerState::ContainerRunning
    );

    // The pod and its agreeing containers are unaffected.
    let agreeing = pod.start(&with_annotation(
        container("hostprocess", "echo ok; exec sleep 300"),
        HOSTPROCESS_CONTAINER,
        "true",
    ));
    let inheriting = pod.start(&container("inheriting", "echo ok; exec sleep 300"));
    pod.wait_for_log("hostprocess", "ok");
    pod.wait_for_log("inheriting", "ok");
    assert_eq!(
        node.cri.pod_sandbox_state(&pod.id),
        PodSandboxState::SandboxReady
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[refused, agreeing, inheriting]);
}

#[test]
fn pod_annotations_choose_the_account_and_the_sandbox_mount_point_of_every_container() {
    let node = Node::start();
    let location = node.dir("sandbox-mount-point").join("hpc");
    let mut config = node.host_network_pod("pod-annotations");
    config
        .annotations
        .insert(INHERIT_USER.into(), "true".into());
    config.annotations.insert(
        ROOTFS_LOCATION.into(),
        location.to_string_lossy().into_owned(),
    );
    let pod = node
        .run_pod(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    // The runtime's own account (root) wins over runAsUser.
    let id = pod.start(&run_as(
        container(
            "inherit",
            "echo \"$(id -u) $CONTAINER_SANDBOX_MOUNT_POINT\"; exec sleep 300",
        ),
        4321,
        4321,
    ));
    pod.wait_for_log("inherit", &format!("0 {}", location.display()));
    assert_eq!(exec_stdout(&node, &id, &["id", "-u"]), "0");

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn an_init_container_as_system_makes_a_group_and_the_main_container_runs_in_it() {
    let node = Node::start();
    let group = HostGroup::made_by_the_test();
    let mut config = node.host_network_pod("per-container-accounts");
    // The pod's account is SYSTEM; the main container's own annotation names the group.
    config
        .annotations
        .insert(RUN_AS_USER.into(), "NT AUTHORITY\\SYSTEM".into());
    config.annotations.insert(
        format!("{RUN_AS_USER_OF_CONTAINER}agent"),
        group.name.clone(),
    );
    let pod = node
        .run_pod(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));

    let setup = pod.start(&container(
        "setup",
        &format!(
            "/usr/sbin/groupadd --system {} && echo \"made by $(id -u)\"",
            group.name
        ),
    ));
    let status = node.cri.wait_for_state(
        &setup,
        ContainerState::ContainerExited,
        Duration::from_secs(30),
    );
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(pod.log_lines("setup"), ["made by 0"]);

    let agent = pod.start(&container(
        "agent",
        "echo \"uid $(id -u) gid $(id -g)\"; exec sleep 300",
    ));
    let started = wait_until(Duration::from_secs(20), || {
        !pod.log_lines("agent").is_empty()
    });
    assert!(started, "agent logged nothing");
    let uid: u32 = exec_stdout(&node, &agent, &["id", "-u"])
        .parse()
        .expect("a numeric uid");
    assert!(EPHEMERAL_UIDS.contains(&uid), "{uid}");
    assert_eq!(exec_stdout(&node, &agent, &["id", "-g"]), group.gid());
    assert_eq!(
        pod.log_lines("agent"),
        [format!("uid {uid} gid {}", group.gid())]
    );
    assert_eq!(ephemeral_claims_of(&[&agent]).len(), 1);

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[setup, agent]);
}
