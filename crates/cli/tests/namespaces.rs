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

/// A network namespace made for the test with `ip netns add`, deleted on drop.
struct TestNetns {
    name: String,
    path: std::path::PathBuf,
}

impl TestNetns {
    fn new() -> TestNetns {
        let name = unique_id("hpc-net");
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        TestNetns {
            path: std::path::Path::new("/var/run/netns").join(&name),
            name,
        }
    }

    fn link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        format!("net:[{}]", std::fs::metadata(&self.path).unwrap().ino())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn with_network_namespace(bundle: Bundle, path: &std::path::Path) -> Bundle {
    bundle.set(
        &["linux", "namespaces"],
        json!([{"type": "pid"}, {"type": "network", "path": path}, {"type": "mount"}]),
    )
}

#[test]
fn with_the_pod_network_annotation_init_and_exec_join_the_specs_network_namespace() {
    let rt = Runtime::new();
    let netns = TestNetns::new();
    let id = unique_id("podnet");
    let bundle = with_network_namespace(Bundle::new().args(&["/bin/sleep", "60"]), &netns.path)
        .annotation("hostprocess.io/network", "pod");
    let (_c, pid) = rt.started(&id, &bundle);
    assert_eq!(namespace(&pid.to_string(), "net"), netns.link());
    assert_ne!(netns.link(), namespace("self", "net"));
    for ns in ["pid", "ipc", "uts", "user", "cgroup"] {
        assert_eq!(
            namespace(&pid.to_string(), ns),
            namespace("self", ns),
            "{ns}"
        );
    }
    let script = "readlink /proc/self/ns/net; (readlink /proc/self/ns/net)";
    let out = rt.exec(&id, &["/bin/sh", "-c", script]).ok("exec readlink");
    assert_eq!(out.stdout_text(), format!("{0}\n{0}\n", netns.link()));
}

#[test]
fn without_the_annotation_the_specs_network_namespace_is_ignored() {
    let rt = Runtime::new();
    let netns = TestNetns::new();
    let id = unique_id("hostnet");
    let bundle = with_network_namespace(Bundle::new().args(&["/bin/sleep", "60"]), &netns.path);
    let (_c, pid) = rt.started(&id, &bundle);
    assert_eq!(namespace(&pid.to_string(), "net"), namespace("self", "net"));
}

#[test]
fn a_pod_network_that_is_not_a_network_namespace_is_refused_and_leaves_nothing() {
    let rt = Runtime::new();
    let id = unique_id("badnet");
    let missing = std::path::Path::new("/var/run/netns").join(unique_id("hpc-missing"));
    let bundle = with_network_namespace(Bundle::new().args(&["/bin/sleep", "60"]), &missing)
        .annotation("hostprocess.io/network", "pod");
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).fails_with(&format!(
        "open the pod's network namespace '{}'",
        missing.display()
    ));
    assert_eq!(
        rt.leftovers(&id, &format!("hostprocess/{id}")),
        Vec::<String>::new()
    );

    let not_netns = with_network_namespace(
        Bundle::new().args(&["/bin/sleep", "60"]),
        std::path::Path::new("/proc/self/ns/ipc"),
    )
    .annotation("hostprocess.io/network", "pod");
    rt.create(&id, &not_netns)
        .fails_with("it is not a network namespace");
    assert_eq!(
        rt.leftovers(&id, &format!("hostprocess/{id}")),
        Vec::<String>::new()
    );

    let new = Bundle::new()
        .args(&["/bin/sleep", "60"])
        .set(&["linux", "namespaces"], json!([{"type": "network"}]))
        .annotation("hostprocess.io/network", "pod");
    rt.create(&id, &new)
        .fails_with("asks for a new network namespace");
}
