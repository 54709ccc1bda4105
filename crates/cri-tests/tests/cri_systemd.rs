//! A HostProcess pod under the kubelet's systemd cgroup driver: its `cgroup_parent` is a
//! `.slice`, containerd's CRI gives each container the cgroup path
//! `<pod>.slice:cri-containerd:<id>`, and with no systemd as PID 1 the engine makes the scope
//! where systemd would (`…/<pod>.slice/cri-containerd-<id>.scope`) in cgroupfs.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

mod kubelet;

use std::fs;
use std::path::Path;

use kubelet::{assert_cpu_and_memory_used, assert_nothing_left, container, Node, PodsCgroup};

/// Processes whose cgroup, in some hierarchy, is exactly `cgroup`.
fn processes_in(cgroup: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
                text.lines()
                    .any(|l| l.rsplit_once(':').is_some_and(|(_, path)| path == cgroup))
            })
        })
        .collect()
}

/// The directories of `cgroup` that exist, in every hierarchy this host mounts.
fn cgroup_dirs(cgroup: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(cgroup.trim_start_matches('/')))
        .filter(|dir| dir.is_dir())
        .map(|dir| dir.display().to_string())
        .collect()
}

#[test]
fn a_pod_under_a_systemd_slice_runs_in_its_scope_reports_stats_and_leaves_no_cgroup() {
    // Slice names use '-' only between levels, as the kubelet writes them.
    let top = format!("hpckube{}", std::process::id());
    // Dropped last: removes the slices the kubelet would have made and removed.
    let _slices = PodsCgroup(format!("/{top}.slice"));
    let node = Node::start();
    let mut config = node.host_network_pod("systemd");
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.replace('-', "_"))
        .unwrap_or_default();
    let parent = format!("/{top}.slice/{top}-besteffort.slice/{top}-besteffort-pod{uid}.slice");
    if let Some(linux) = config.linux.as_mut() {
        linux.cgroup_parent = parent.clone();
    }
    let pod = node
        .run_pod(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let busy = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 300";
    let id = pod.start(&container("busy", busy));
    pod.wait_for_log("busy", "busy-done");

    let scope = format!("{parent}/cri-containerd-{id}.scope");
    assert!(
        !processes_in(&scope).is_empty(),
        "no process of {id} sits in {scope}"
    );
    assert!(
        Path::new("/sys/fs/cgroup/memory")
            .join(scope.trim_start_matches('/'))
            .is_dir()
            || Path::new("/sys/fs/cgroup")
                .join(scope.trim_start_matches('/'))
                .is_dir(),
        "the scope's memory cgroup is missing"
    );
    let stats = node.cri.container_stats(&id);
    assert_cpu_and_memory_used(&stats);

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, std::slice::from_ref(&id));
    let left = cgroup_dirs(&scope);
    assert!(left.is_empty(), "the scope is left: {left:#?}");
}
