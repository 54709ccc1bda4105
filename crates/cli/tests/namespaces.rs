//! §1: a HostProcess container is a group of host processes, with no PID, network, IPC or UTS
//! isolation, even when the spec lists namespaces.

mod support;

use serde_json::json;
use support::*;

const SHARED: &[&str] = &["pid", "net", "ipc", "uts", "user", "cgroup"];

#[test]
fn init_runs_in_the_hosts_pid_net_ipc_and_uts_namespaces() {
    let rt = Runtime::new();
    let id = unique_id("ns");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, pid) = rt.started(&id, &bundle);
    for ns in SHARED {
        assert_eq!(
            namespace(&pid.to_string(), ns),
            namespace("self", ns),
            "the container's {ns} namespace is the host's"
        );
    }
    // The one namespace of its own: the private view of the bind layout. This also shows the
    // comparison above looks at the container's process, not at ours.
    assert_ne!(namespace(&pid.to_string(), "mnt"), namespace("self", "mnt"));
}

#[test]
fn namespaces_and_hostname_in_the_spec_are_ignored() {
    let rt = Runtime::new();
    let id = unique_id("nsspec");
    let bundle = Bundle::new()
        .args(&["/bin/sleep", "60"])
        .set(&["hostname"], json!("not-the-host"))
        .set(
            &["linux", "namespaces"],
            json!([
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "user"}, {"type": "cgroup"}
            ]),
        );
    let (_c, pid) = rt.started(&id, &bundle);
    for ns in SHARED {
        assert_eq!(
            namespace(&pid.to_string(), ns),
            namespace("self", ns),
            "{ns} namespace listed in the spec must not be created"
        );
    }
    let out = rt.exec(&id, &["/bin/hostname"]).ok("exec hostname");
    assert_eq!(
        out.stdout_text().trim(),
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "the spec's hostname does not apply"
    );
}

#[test]
fn exec_processes_share_the_host_namespaces_too() {
    let rt = Runtime::new();
    let id = unique_id("nsexec");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    let script = "for n in pid net ipc uts; do readlink /proc/self/ns/$n; done";
    let out = rt.exec(&id, &["/bin/sh", "-c", script]).ok("exec readlink");
    let want: Vec<String> = ["pid", "net", "ipc", "uts"]
        .iter()
        .map(|ns| namespace("self", ns))
        .collect();
    let got: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    assert_eq!(got, want);
}
