//! Every daily kubectl verb on a HostProcess pod, through containerd's CRI as the kubelet drives
//! it: `Exec`, `Attach` and `PortForward` hand out URLs on containerd's streaming server, which
//! the test speaks to as kubectl does (WebSocket, `v4.channel.k8s.io`: [`stream`]); logs,
//! probes, restarts, ephemeral containers and live resource updates are the CRI calls the
//! kubelet makes for them. Each test has its own containerd and removes everything it made.
#![cfg(target_os = "linux")]

#[path = "../../shim/tests/support/mod.rs"]
mod support;

mod kubelet;
mod stream;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::{
    AttachRequest, ContainerConfig, ContainerState, ExecRequest, LinuxContainerResources,
    NamespaceMode,
};
use kubelet::{assert_nothing_left, container, processes_in_cgroups_of, with_annotation, Node};
use stream::{Stream, CHANNEL, STDIN, STDOUT, V4_CHANNEL};
use support::image::{HELLO_PATH, HELLO_TEXT};
use support::{text, wait_until};

/// The pod or container annotation choosing the container volume's layout.
const VOLUME_LAYOUT: &str = "hostprocess.io/volume-layout";

/// The status the error channel carries when a command exits 0.
const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

/// `stdin: true` and `tty: true`, as `kubectl run -it` or `kubectl debug -it` ask for.
fn interactive(mut config: ContainerConfig) -> ContainerConfig {
    config.stdin = true;
    config.tty = true;
    config
}

fn exec_request(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|a| a.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

/// The complete line of `text` (a terminal's: `\r\n` ends lines) that starts with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest.find('\n')?;
    Some(rest[..end].trim_end_matches('\r'))
}

/// A port on the node's loopback address nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener
        .local_addr()
        .expect("the bound port's address")
        .port()
}

/// An HTTP/1.0 GET of `path` on the node's loopback `port` (what an httpGet probe sends): the
/// whole response.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut connection = TcpStream::connect(("127.0.0.1", port))?;
    connection.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(connection, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    connection.read_to_string(&mut response)?;
    Ok(response)
}

/// A host directory served on 127.0.0.1:`port` by busybox's httpd, run by a container.
fn httpd_container(name: &str, root: &Path, port: u16) -> ContainerConfig {
    container(
        name,
        &format!(
            "exec busybox httpd -f -p 127.0.0.1:{port} -h {}",
            root.display()
        ),
    )
}

/// The files of the container's cgroup (every hierarchy) that hold `file`: v1 controllers
/// and a v2 tree, found from its process's `/proc/<pid>/cgroup`.
fn cgroup_file(pid: i32, file: &str) -> Option<PathBuf> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let relative = path.trim_start_matches('/');
        let candidates: Vec<PathBuf> = if controllers.is_empty() {
            vec![
                Path::new("/sys/fs/cgroup").join(relative).join(file),
                Path::new("/sys/fs/cgroup/unified")
                    .join(relative)
                    .join(file),
            ]
        } else {
            vec![Path::new("/sys/fs/cgroup")
                .join(controllers)
                .join(relative)
                .join(file)]
        };
        candidates.into_iter().find(|p| p.exists())
    })
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn exec_it_carries_input_and_output_and_resizes_reach_the_terminal() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("exec-it"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let id = pod.start(&container("main", "exec sleep 300"));

    // `kubectl exec -it main -- sh`: a shell on a terminal that reports each line it reads
    // with the terminal's size.
    let script = r#"while read l; do echo "in:$l size:$(stty size)"; done; echo bye"#;
    let url = node
        .cri
        .exec_url(exec_request(&id, &["/bin/sh", "-c", script], true, true))
        .unwrap_or_else(|e| panic!("Exec: {e}"));
    let mut session = Stream::exec(&url, &[V4_CHANNEL, CHANNEL]);
    assert_eq!(session.protocol, V4_CHANNEL);

    // A resize travels on its own channel (containerd's ResizePty) while a line travels on
    // stdin: a line may overtake the resize, so lines go until one reports the new size.
    let mut line = 0;
    for (width, height) in [(100u16, 30u16), (132, 50)] {
        session.resize(width, height);
        let want = format!("size:{height} {width}");
        let mut reported = Vec::new();
        loop {
            line += 1;
            session.send(STDIN, format!("{line}\n").as_bytes());
            let prefix = format!("in:{line} ");
            let output = session.read_until(STDOUT, |t| line_starting(t, &prefix).is_some());
            let report = line_starting(&output, &prefix)
                .unwrap_or_default()
                .to_string();
            if report.ends_with(&want) {
                break;
            }
            reported.push(report);
            assert!(
                reported.len() < 50,
                "the terminal never became {width}x{height}: {reported:#?}"
            );
        }
    }
    // ^D on the terminal ends `read`; the shell exits 0 and the error channel says so.
    session.send(STDIN, b"\x04");
    let finished = session.finish();
    let output = text(&finished.stdout);
    assert!(output.contains("bye"), "{output:?}");
    assert_eq!(finished.status, SUCCESS, "{output:?}");

    // A command's exit code reaches kubectl through the error channel.
    let url = node
        .cri
        .exec_url(exec_request(&id, &["/bin/sh", "-c", "exit 3"], false, true))
        .unwrap_or_else(|e| panic!("Exec: {e}"));
    let finished = Stream::exec(&url, &[V4_CHANNEL]).finish();
    assert!(
        finished.status.contains(r#""reason":"NonZeroExitCode""#)
            && finished.status.contains(r#""message":"3""#),
        "{:?}",
        finished.status
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn attach_reaches_a_running_containers_stdin_and_terminal_and_detaches() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("attach"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let config = interactive(container(
        "main",
        r#"while read l; do echo "got:$l"; done; echo stdin-closed"#,
    ));
    let id = pod.start(&config);
    let attach = AttachRequest {
        container_id: id.clone(),
        stdin: true,
        tty: true,
        stdout: true,
        stderr: false,
    };

    // Two `kubectl attach -it` sessions one after the other: leaving the first (closing the
    // connection) neither ends the container nor closes its stdin.
    for word in ["hello", "again"] {
        let url = node
            .cri
            .attach_url(attach.clone())
            .unwrap_or_else(|e| panic!("Attach: {e}"));
        let mut session = Stream::exec(&url, &[V4_CHANNEL, CHANNEL]);
        assert_eq!(session.protocol, V4_CHANNEL);
        session.send(STDIN, format!("{word}\n").as_bytes());
        let want = format!("got:{word}");
        session.read_until(STDOUT, |t| line_starting(t, &want).is_some());
        session.close();
        pod.wait_for_log("main", &want);
        assert_eq!(
            node.cri.container_status(&id).state(),
            ContainerState::ContainerRunning,
            "detaching ended the container"
        );
    }
    assert!(
        !pod.log_lines("main").iter().any(|l| l == "stdin-closed"),
        "{:#?}",
        pod.log_lines("main")
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn logs_follow_continues_in_a_new_file_after_the_kubelet_rotates_the_log() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("logs"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let id = pod.start(&container(
        "main",
        "i=0; while :; do i=$((i+1)); echo \"line $i\"; sleep 0.05; done",
    ));
    pod.wait_for_log("main", "line 3");

    // The kubelet's rotation: rename the file, then ask the runtime to reopen it.
    let log = pod.log_directory().join("main.log");
    let rotated = pod.log_directory().join("main.log.20261207-000000");
    fs::rename(&log, &rotated).expect("rename the container's log");
    node.cri
        .reopen_container_log(&id)
        .unwrap_or_else(|e| panic!("ReopenContainerLog: {e}"));
    let numbers = |lines: Vec<String>| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect()
    };
    let new_lines = || numbers(pod.log_lines("main"));
    assert!(
        wait_until(Duration::from_secs(20), || new_lines().len() >= 3),
        "nothing was written to the new log: {:?}",
        new_lines()
    );
    let old = fs::read_to_string(&rotated).expect("read the rotated log");
    let old: Vec<u64> = numbers(
        old.lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
            .collect(),
    );
    let new = new_lines();
    // `kubectl logs -f` follows the new file from where the rotated one ended: no line lost,
    // none twice.
    assert_eq!(old.first(), Some(&1), "{old:?}");
    assert_eq!(
        new.first().copied(),
        old.last().map(|n| n + 1),
        "rotated ends {:?}, new starts {:?}",
        old.last(),
        new.first()
    );

    // A container that is not running has no log to reopen.
    node.cri
        .stop_container(&id, 0)
        .unwrap_or_else(|e| panic!("StopContainer: {e}"));
    let refused = node
        .cri
        .reopen_container_log(&id)
        .expect_err("ReopenContainerLog of a stopped container");
    assert!(
        refused.message().contains("container is not running"),
        "{refused:?}"
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn cp_copies_both_ways_with_tar_through_exec() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("cp"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let id = pod.start(&container("main", "exec sleep 300"));

    // `kubectl cp pod:/hpc/hello.txt .`: `tar cf - -C /hpc hello.txt` in the container (the
    // host's tar; the container volume is at $CONTAINER_SANDBOX_MOUNT_POINT, /hpc).
    let url = node
        .cri
        .exec_url(exec_request(
            &id,
            &["tar", "cf", "-", "-C", "/hpc", HELLO_PATH],
            false,
            false,
        ))
        .unwrap_or_else(|e| panic!("Exec: {e}"));
    let finished = Stream::exec(&url, &[V4_CHANNEL]).finish();
    assert_eq!(finished.status, SUCCESS, "{}", text(&finished.stderr));
    let mut archive = tar::Archive::new(finished.stdout.as_slice());
    let mut files = Vec::new();
    for entry in archive.entries().expect("the archive's entries") {
        let mut entry = entry.expect("an archive entry");
        let path = entry.path().expect("an entry's path").display().to_string();
        let mut content = String::new();
        entry
            .read_to_string(&mut content)
            .expect("an entry's content");
        files.push((path, content));
    }
    assert_eq!(files, [(HELLO_PATH.to_string(), HELLO_TEXT.to_string())]);

    // `kubectl cp ./data pod:/hpc/up`: `tar xmf - -C /hpc` reading the archive on stdin. v4
    // streams end stdin by closing the connection (containerd then closes the exec's stdin).
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "up/data.bin", data.as_slice())
        .expect("add a file to the archive");
    let archive = builder.into_inner().expect("finish the archive");
    let url = node
        .cri
        .exec_url(exec_request(
            &id,
            &["tar", "xmf", "-", "-C", "/hpc"],
            true,
            false,
        ))
        .unwrap_or_else(|e| panic!("Exec: {e}"));
    let mut upload = Stream::exec(&url, &[V4_CHANNEL]);
    for chunk in archive.chunks(16 * 1024) {
        upload.send(STDIN, chunk);
    }
    upload.close();
    let copied = || {
        node.cri
            .try_exec_sync(&id, &["cat", "/hpc/up/data.bin"], 30)
            .is_ok_and(|r| r.exit_code == 0 && r.stdout == data)
    };
    assert!(
        wait_until(Duration::from_secs(30), copied),
        "the uploaded file is not in the container volume"
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn port_forward_reaches_a_port_the_container_listens_on_on_the_nodes_loopback() {
    let node = Node::start();
    let site = node.dir("site");
    fs::write(
        site.join("index.html"),
        "served by a HostProcess container\n",
    )
    .expect("write the page");
    let port = free_port();
    let pod = node
        .run_pod(node.host_network_pod("port-forward"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let id = pod.start(&httpd_container("web", &site, port));
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on 127.0.0.1:{port}"
    );

    // `kubectl port-forward pod/port-forward 8080:<port>`: one connection through the stream.
    let url = node
        .cri
        .port_forward_url(&pod.id, &[i32::from(port)])
        .unwrap_or_else(|e| panic!("PortForward: {e}"));
    let mut tunnel = Stream::port_forward(&url);
    tunnel.send(0, b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let response = tunnel.read_until(0, |t| t.contains("served by a HostProcess container"));
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
    assert_eq!(text(tunnel.received(1)), "", "the port's error channel");
    tunnel.close();

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn debug_adds_an_ephemeral_container_that_sees_its_target_and_takes_input() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("debug"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let marker = 600_000 + std::process::id();
    let app = pod.start(&container("app", &format!("exec sleep {marker}")));

    // `kubectl debug -it pod/debug --image=busybox --target=app`: the kubelet adds a container
    // to the running pod that targets app's process namespace, then attaches to it.
    let mut config = interactive(container(
        "debugger-x7k2p",
        r#"while read -r l; do eval "$l"; done"#,
    ));
    let options = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("the container's namespace options");
    options.pid = NamespaceMode::Target as i32;
    options.target_id = app.clone();
    let debugger = pod.start(&config);
    let url = node
        .cri
        .attach_url(AttachRequest {
            container_id: debugger.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .unwrap_or_else(|e| panic!("Attach: {e}"));
    let mut session = Stream::exec(&url, &[V4_CHANNEL]);
    // The debugger reads the target's process from the host's /proc (host PID).
    let target = format!("sleep {marker}");
    let mut target_pid = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            target_pid = processes_in_cgroups_of(&[&app])
                .into_iter()
                .find(|(_, cmdline)| *cmdline == target)
                .map(|(pid, _)| pid);
            target_pid.is_some()
        }),
        "app's process {target:?} does not run"
    );
    let pid = target_pid.unwrap_or_default();
    // The command line echoes on the terminal: only the answer's line starts with "seen:".
    let command = format!(
        "echo \"see\"\"n:$(tr '\\0' ' ' < /proc/{pid}/cmdline)volume:$CONTAINER_SANDBOX_MOUNT_POINT\"\n"
    );
    session.send(STDIN, command.as_bytes());
    let output = session.read_until(STDOUT, |t| line_starting(t, "seen:").is_some());
    assert_eq!(
        line_starting(&output, "seen:"),
        Some(format!("seen:{target} volume:/hpc").as_str()),
        "{output:?}"
    );
    session.close();
    assert_eq!(
        node.cri.list_containers(&pod.id).len(),
        2,
        "the ephemeral container joined the pod"
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[app, debugger]);
}

#[test]
fn probes_exec_with_a_timeout_and_http_and_tcp_on_the_nodes_loopback() {
    let node = Node::start();
    let site = node.dir("site");
    fs::write(site.join("healthz"), "ok\n").expect("write the health page");
    let port = free_port();
    let pod = node
        .run_pod(node.host_network_pod("probes"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let id = pod.start(&httpd_container("web", &site, port));

    // exec probes: ExecSync with the probe's timeoutSeconds; the exit code decides.
    let ok = node
        .cri
        .try_exec_sync(&id, &["/bin/sh", "-c", "test -d /hpc"], 1)
        .unwrap_or_else(|e| panic!("exec probe: {e}"));
    assert_eq!(ok.exit_code, 0, "{ok:?}");
    let failing = node
        .cri
        .try_exec_sync(&id, &["/bin/sh", "-c", "exit 3"], 1)
        .unwrap_or_else(|e| panic!("exec probe: {e}"));
    assert_eq!(failing.exit_code, 3, "{failing:?}");
    // A probe that outlives its timeout fails with containerd's error, and its process is
    // killed.
    let marker = format!("{}", 700_000 + std::process::id());
    let timed_out = node
        .cri
        .try_exec_sync(&id, &["sleep", &marker], 1)
        .expect_err("an exec probe past its timeout");
    assert!(
        timed_out.message().contains("timeout 1s exceeded"),
        "{timed_out:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            support::containerd::processes_running(&["sleep", &marker]).is_empty()
        }),
        "the timed-out probe's process still runs"
    );

    // tcpSocket and httpGet probes connect to the node's address (host network).
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "tcpSocket probe: nothing listens on 127.0.0.1:{port}"
    );
    let response = http_get(port, "/healthz").expect("httpGet probe");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response:?}");
    let missing = http_get(port, "/missing").expect("httpGet probe");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing:?}");

    // Once the container stops, the tcpSocket probe fails.
    node.cri
        .stop_container(&id, 2)
        .unwrap_or_else(|e| panic!("StopContainer: {e}"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}

#[test]
fn a_crashed_container_restarts_as_attempt_one_with_a_fresh_volume() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("restart"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let script = r#"v="$CONTAINER_SANDBOX_MOUNT_POINT"; if test -e "$v/left-by-attempt"; then echo "volume has $(cat "$v/left-by-attempt")"; else echo fresh-volume; fi; echo "$ATTEMPT" > "$v/left-by-attempt"; exit 1"#;
    let mut ids = Vec::new();
    // Both volume layouts: a private view with the volume at /hpc, and a host path per
    // container.
    for layout in ["bind", "symlink"] {
        let name = format!("crasher-{layout}");
        let attempt = |n: u32| {
            let mut config = with_annotation(container(&name, script), VOLUME_LAYOUT, layout);
            if let Some(metadata) = config.metadata.as_mut() {
                metadata.attempt = n;
            }
            config.log_path = format!("{name}-{n}.log");
            config.envs.push(k8s_cri::v1::KeyValue {
                key: "ATTEMPT".into(),
                value: n.to_string(),
            });
            config
        };
        let first = pod.start(&attempt(0));
        let status = node.cri.wait_for_state(
            &first,
            ContainerState::ContainerExited,
            Duration::from_secs(30),
        );
        assert_eq!(status.exit_code, 1, "{status:?}");
        // The kubelet keeps the crashed container (its logs) and makes the next attempt.
        let second = pod.start(&attempt(1));
        let status = node.cri.wait_for_state(
            &second,
            ContainerState::ContainerExited,
            Duration::from_secs(30),
        );
        assert_eq!(status.exit_code, 1, "{status:?}");
        assert_eq!(status.metadata.map(|m| m.attempt), Some(1));
        assert_eq!(pod.log_lines(&format!("{name}-0")), ["fresh-volume"]);
        assert_eq!(
            pod.log_lines(&format!("{name}-1")),
            ["fresh-volume"],
            "{layout} layout"
        );

        // The kubelet's garbage collection removes the old attempt; the new one stays.
        node.cri
            .remove_container(&first)
            .unwrap_or_else(|e| panic!("RemoveContainer: {e}"));
        let left: Vec<String> = node
            .cri
            .list_containers(&pod.id)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(left.contains(&second) && !left.contains(&first), "{left:?}");
        ids.extend([first, second]);
    }

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &ids);
}

#[test]
fn update_container_resources_changes_memory_and_cpu_limits_live() {
    let node = Node::start();
    let pod = node
        .run_pod(node.host_network_pod("resize"))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let mut config = container("main", "exec sleep 300");
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            ..LinuxContainerResources::default()
        });
    }
    let id = pod.start(&config);
    let pids = processes_in_cgroups_of(&[&id]);
    let pid = pids.first().map(|p| p.0).unwrap_or_else(|| {
        panic!("no process in the container's cgroup: {pids:?}");
    });
    let v2 = cgroup_file(pid, "memory.max").is_some();
    let (memory_file, cpu_file) = if v2 {
        ("memory.max", "cpu.max")
    } else {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us")
    };
    let memory = cgroup_file(pid, memory_file).expect("the container's memory limit file");
    let cpu = cgroup_file(pid, cpu_file).expect("the container's CPU quota file");
    let quota = |q: u64| {
        if v2 {
            format!("{q} 100000")
        } else {
            q.to_string()
        }
    };
    assert_eq!(read_trimmed(&memory), (256u64 << 20).to_string());
    assert_eq!(read_trimmed(&cpu), quota(50_000));

    // A pod resize (or `kubectl set resources` on a static pod): the kubelet updates the
    // running container in place.
    node.cri
        .update_container_resources(
            &id,
            LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 20_000,
                cpu_shares: 256,
                memory_limit_in_bytes: 128 << 20,
                ..LinuxContainerResources::default()
            },
        )
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
    assert_eq!(read_trimmed(&memory), (128u64 << 20).to_string());
    assert_eq!(read_trimmed(&cpu), quota(20_000));
    assert_eq!(
        node.cri.container_status(&id).state(),
        ContainerState::ContainerRunning
    );
    assert_eq!(processes_in_cgroups_of(&[&id]).len(), pids.len());

    let pod_id = pod.id.clone();
    pod.remove();
    assert_nothing_left(&node, &pod_id, &[id]);
}
