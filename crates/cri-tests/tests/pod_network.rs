//! §7's opt-in pod network through Kubernetes' CRI: a pod with the annotation
//! `hostprocess.io/network: pod` and its own network namespace is accepted, containerd's CRI
//! makes the namespace and runs CNI in it, and every process of the pod's containers runs
//! there — with the host's PID namespace, filesystem and accounts as always.
//!
//! The node's CNI plugin is the test's own: it gives the pod's namespace one end of a real veth
//! pair whose other end is on a bridge in a network namespace the test makes, with addresses
//! from a documentation range (RFC 5737). Nothing touches the host's own interfaces.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

mod kubelet;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_cri::v1::{ContainerConfig, NamespaceMode};
use kubelet::{assert_nothing_left, container, exec_stdout, Node};
use support::image::HELLO_TEXT;
use support::{text, unique_id};

const NETWORK: &str = "hostprocess.io/network";
/// The bridge's address, in the test's own namespace.
const GATEWAY: &str = "198.51.100.1";
/// The address the plugin gives the pod.
const POD_ADDRESS: &str = "198.51.100.2";
/// The pod's interface, as containerd's CRI names it.
const POD_INTERFACE: &str = "eth0";
const IP: &str = "/usr/sbin/ip";

/// The CNI plugin: ADD makes a veth pair in the pod's namespace and moves its peer onto the
/// bridge, DEL removes the peer (and so the pair), CHECK looks for the address, VERSION says
/// what it speaks. It logs each call and what `ip` said to `@LOG@`.
const PLUGIN: &str = r#"#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec 2>>'@LOG@'
conf=$(cat)
version=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
version=${version:-0.4.0}
peer="hpcv$(printf '%.11s' "$CNI_CONTAINERID")"
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME" >&2
fail() {
  printf '{"cniVersion":"%s","code":100,"msg":"%s"}' "$version" "$1"
  exit 1
}
in_pod() { nsenter --net="$CNI_NETNS" "$@" >&2; }
case "$CNI_COMMAND" in
ADD)
  in_pod ip link add "$CNI_IFNAME" type veth peer name "$peer" netns '@BRIDGE@' || fail "make the veth pair"
  ip -n '@BRIDGE@' link set "$peer" master br0 up >&2 || fail "put the peer on the bridge"
  in_pod ip addr add '@ADDRESS@/24' dev "$CNI_IFNAME" || fail "give the address"
  in_pod ip link set "$CNI_IFNAME" up || fail "bring the interface up"
  printf '{"cniVersion":"%s","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","address":"@ADDRESS@/24","gateway":"@GATEWAY@","interface":0}]}' \
    "$version" "$CNI_IFNAME" "$CNI_NETNS" ;;
DEL)
  ip -n '@BRIDGE@' link del "$peer" >&2 || true ;;
CHECK)
  nsenter --net="$CNI_NETNS" ip -o addr show dev "$CNI_IFNAME" | grep -q ' @ADDRESS@/24 ' || fail "no address" ;;
VERSION)
  printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
esac
exit 0
"#;

/// A network namespace of the test's own (`ip netns add`) with the bridge `br0` at
/// [`GATEWAY`]; deleting the namespace removes the bridge and every peer on it.
struct TestBridge {
    name: String,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new(IP)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        text(&out.stderr).trim()
    );
    text(&out.stdout)
}

impl TestBridge {
    fn new() -> TestBridge {
        let bridge = TestBridge {
            name: unique_id("hpc-br"),
        };
        ip(&["netns", "add", &bridge.name]);
        let n = bridge.name.as_str();
        ip(&["-n", n, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{GATEWAY}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", n, "link", "set", "br0", "up"]);
        bridge
    }

    /// The veth ends left on the bridge's side.
    fn peers(&self) -> Vec<String> {
        ip(&["-n", &self.name, "-o", "link", "show", "type", "veth"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let deleted = Command::new(IP)
            .args(["netns", "delete", &self.name])
            .status();
        if !deleted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("cleanup: ip netns delete {}: {deleted:?}", self.name);
        }
    }
}

/// Makes the test's plugin the node's pod network: the private containerd's CNI config names
/// the plugin `hpc-fake`, and CRI runs the binary of that name at each call (no reload).
/// Returns the plugin's log.
fn install_pod_network(node: &Node, bridge: &TestBridge) -> PathBuf {
    let log = node.containerd.dir().join("cni-plugin.log");
    let plugin = node.containerd.dir().join("cni/bin/hpc-fake");
    let script = PLUGIN
        .replace("@LOG@", &log.to_string_lossy())
        .replace("@BRIDGE@", &bridge.name)
        .replace("@ADDRESS@", POD_ADDRESS)
        .replace("@GATEWAY@", GATEWAY);
    fs::write(&plugin, script)
        .and_then(|()| fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)))
        .unwrap_or_else(|e| panic!("write {}: {e}", plugin.display()));
    log
}

/// The namespace the plugin was given for the pod (`ADD <pod> <netns> eth0` in its log).
fn pod_namespace(log: &Path, pod: &str) -> PathBuf {
    let log = fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ADD", id, netns, ifname] if *id == pod && *ifname == POD_INTERFACE => {
                    Some(PathBuf::from(netns))
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("the plugin was not asked to ADD pod {pod}: {log}"))
}

/// A container of the pod's network, with the namespace options the kubelet gives a container
/// of a pod without `hostNetwork`.
fn in_pod_network(mut config: ContainerConfig) -> ContainerConfig {
    if let Some(options) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|c| c.namespace_options.as_mut())
    {
        options.network = NamespaceMode::Pod as i32;
    }
    config
}

/// `net:[<inode>]`, as `readlink /proc/<pid>/ns/net` shows a namespace.
fn namespace_link(path: &Path) -> String {
    let inode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino();
    format!("net:[{inode}]")
}

fn own_namespace(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Interface names of a `/proc/<pid>/net/dev` text.
fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_string())
        .collect()
}

/// Processes whose network namespace is `link`.
fn processes_in_namespace(link: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_string_lossy() == link)
        })
        .collect()
}

#[test]
fn a_pod_that_opts_in_runs_every_process_in_the_network_namespace_cni_set_up() {
    let node = Node::start();
    let bridge = TestBridge::new();
    let plugin_log = install_pod_network(&node, &bridge);
    let mut config = node.pod_config("pod-network", NamespaceMode::Pod);
    config.annotations.insert(NETWORK.into(), "pod".into());
    let pod = node
        .run_pod(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    assert_eq!(node.cri.pod_sandbox_ips(&pod.id), [POD_ADDRESS]);
    let netns = pod_namespace(&plugin_log, &pod.id);
    let pod_ns = namespace_link(&netns);
    let host_ns = own_namespace("net");
    assert_ne!(pod_ns, host_ns);

    // Init and a child of it (each `$(...)` forks) report their namespaces.
    let agent = pod.start(&in_pod_network(container(
        "agent",
        "echo \"net $(readlink /proc/self/ns/net)\"; echo \"pid $(readlink /proc/self/ns/pid)\"; \
         echo \"volume $(cat $CONTAINER_SANDBOX_MOUNT_POINT/hello.txt)\"; exec sleep 300",
    )));
    pod.wait_for_log("agent", &format!("net {pod_ns}"));
    pod.wait_for_log("agent", &format!("pid {}", own_namespace("pid")));
    pod.wait_for_log("agent", &format!("volume {}", HELLO_TEXT.trim_end()));

    // An exec runs there too, and sees the pod's interface and address, not the host's.
    assert_eq!(
        exec_stdout(&node, &agent, &["readlink", "/proc/self/ns/net"]),
        pod_ns
    );
    let addresses = exec_stdout(&node, &agent, &[IP, "-o", "-4", "addr", "show"]);
    assert!(
        addresses
            .lines()
            .any(|l| l.contains(POD_INTERFACE) && l.contains(&format!(" {POD_ADDRESS}/24 "))),
        "{addresses}"
    );
    let seen = interfaces(&exec_stdout(&node, &agent, &["cat", "/proc/self/net/dev"]));
    let expected: BTreeSet<String> = ["lo", POD_INTERFACE].map(String::from).into();
    assert_eq!(seen, expected);
    let host = interfaces(&fs::read_to_string("/proc/self/net/dev").unwrap_or_default());
    assert!(
        host.iter().any(|i| !expected.contains(i)),
        "the host has no interface of its own to tell apart: {host:?}"
    );
    // The pair is real: the bridge answers across it.
    exec_stdout(
        &node,
        &agent,
        &["/bin/busybox", "ping", "-c", "1", "-W", "10", GATEWAY],
    );
    assert_eq!(bridge.peers().len(), 1, "one peer on the bridge");

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, std::slice::from_ref(&agent));
    assert!(!netns.exists(), "{} is left", netns.display());
    assert_eq!(bridge.peers(), Vec::<String>::new(), "veth peers are left");
    assert_eq!(
        processes_in_namespace(&pod_ns),
        Vec::<i32>::new(),
        "processes are left in the pod's network namespace"
    );
}

#[test]
fn without_the_annotation_a_pod_with_its_own_network_is_still_refused() {
    let node = Node::start();
    let bridge = TestBridge::new();
    let plugin_log = install_pod_network(&node, &bridge);
    let mut config = node.pod_config("no-opt-in", NamespaceMode::Pod);
    config.annotations.insert(NETWORK.into(), "host".into());
    let Err(status) = node.run_pod(config) else {
        panic!("a pod with its own network namespace was accepted without opting in");
    };
    assert!(
        status
            .message()
            .contains("hostNetwork is required if Pod contains HostProcess containers"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("hostprocess.io/network: pod"),
        "{}",
        status.message()
    );
    // CRI set the network up, then tore it down when the runtime refused.
    let log = fs::read_to_string(&plugin_log).unwrap_or_default();
    assert!(log.lines().any(|l| l.starts_with("ADD ")), "{log}");
    assert!(log.lines().any(|l| l.starts_with("DEL ")), "{log}");
    assert_eq!(bridge.peers(), Vec::<String>::new(), "veth peers are left");
    assert!(node.cri.list_pod_sandboxes().is_empty());
}
