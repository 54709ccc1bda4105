//! The shim end to end: a private containerd runs HostProcess containers with
//! `--runtime io.containerd.hostprocess.v1`, driven with `ctr` the way a user would.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::containerd::{mounts_under, processes_running, Containerd};
use support::image::{BUSYBOX_IMAGE, HELLO_PATH, HELLO_TEXT};
use support::{
    cgroup_dirs_named, host_namespace, run_with_timeout, success, text, unique_id, wait_until,
    HOSTPROCESS_RUNTIME,
};
use testkit::kernel::{no_active_swap, skipped};

fn containerd() -> Containerd {
    let containerd = Containerd::start();
    containerd.import_busybox("default");
    containerd
}

/// `ctr run [FLAGS] --runtime hostprocess IMAGE ID ARGS...`
fn run(containerd: &Containerd, flags: &[&str], id: &str, args: &[&str]) -> Output {
    let mut all = vec!["run", "--runtime", HOSTPROCESS_RUNTIME];
    all.extend_from_slice(flags);
    all.push(BUSYBOX_IMAGE);
    all.push(id);
    all.extend_from_slice(args);
    containerd.ctr(&all)
}

/// The STATUS column of `ctr task ls` for `id` (empty when containerd has no such task).
fn task_status(containerd: &Containerd, id: &str) -> String {
    task_row(containerd, id).map(|(_, s)| s).unwrap_or_default()
}

fn task_pid(containerd: &Containerd, id: &str) -> u32 {
    task_row(containerd, id)
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("no task {id}"))
}

fn task_row(containerd: &Containerd, id: &str) -> Option<(u32, String)> {
    containerd.task_row("default", id)
}

fn wait_for_status(containerd: &Containerd, id: &str, status: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || task_status(containerd, id)
            == status),
        "task {id} did not become {status}; it is {:?}",
        task_status(containerd, id)
    );
}

/// Removes a stopped task and its container.
fn remove(containerd: &Containerd, id: &str) {
    success(&containerd.ctr(&["tasks", "rm", id]));
    success(&containerd.ctr(&["containers", "rm", id]));
}

/// The lines of this process's mount table that name `id`.
fn mounts_naming(id: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_string)
        .collect()
}

/// Nothing of the container is left on the host: engine state, mounts, cgroups.
fn assert_nothing_left(containerd: &Containerd, id: &str) {
    let state = containerd.shim_root("default").join(id);
    assert!(
        wait_until(Duration::from_secs(20), || !state.exists()),
        "engine state {} is left",
        state.display()
    );
    let mounts = mounts_naming(id);
    assert!(mounts.is_empty(), "mounts are left: {mounts:#?}");
    let cgroups = cgroup_dirs_named(id);
    assert!(cgroups.is_empty(), "cgroups are left: {cgroups:#?}");
    let socket = containerd.shim_socket("default", id);
    assert!(
        wait_until(Duration::from_secs(10), || !socket.exists()),
        "the shim's socket {} is left",
        socket.display()
    );
}

#[test]
fn run_rm_prints_the_output_and_returns_the_exit_code() {
    let containerd = containerd();
    let id = unique_id("out");
    let out = run(
        &containerd,
        &["--rm"],
        &id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(text(&out.stdout), "to-stdout\n");
    assert!(
        text(&out.stderr).contains("to-stderr"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_nothing_left(&containerd, &id);
}

#[test]
fn the_shims_log_reaches_containerds_log_one_line_per_record_a_containers_life_at_debug() {
    let containerd = containerd();
    let id = unique_id("log");
    success(&run(&containerd, &["--rm"], &id, &["true"]));
    let log = fs::read_to_string(containerd.log_path()).expect("read containerd's log");
    let lines: Vec<&str> = log.lines().collect();
    // The serving shim's one line at info level, the first it writes.
    let serving = "msg=\"serving namespace ";
    let at = lines
        .iter()
        .position(|l| l.contains(" level=info ") && l.contains(serving))
        .unwrap_or_else(|| panic!("no line {serving:?} in containerd's log:\n{log}"));
    assert!(
        lines[at].starts_with("time=\""),
        "not a logrus line: {}",
        lines[at]
    );
    assert!(
        !lines.get(at + 1).is_some_and(|l| l.is_empty()),
        "a blank line follows the shim's line:\n{}",
        lines[at..lines.len().min(at + 3)].join("\n")
    );
    // A container's life (created, deleted) is told at debug level, which this containerd
    // asks for: at its default level, containerd's log gets no line per container from the
    // shim, as from its own shims.
    let created = format!("msg=\"container {id}: created, init pid ");
    let line = lines
        .iter()
        .find(|l| l.contains(&created))
        .unwrap_or_else(|| panic!("no line {created:?} in containerd's log:\n{log}"));
    assert!(line.contains(" level=debug "), "{line}");
}

#[test]
fn the_container_shares_the_hosts_namespaces() {
    let containerd = containerd();
    let id = unique_id("ns");
    let kinds = ["pid", "net", "ipc", "uts"];
    let paths: Vec<String> = kinds.iter().map(|k| format!("/proc/self/ns/{k}")).collect();
    let mut args = vec!["readlink"];
    args.extend(paths.iter().map(String::as_str));
    let out = success(&run(&containerd, &["--rm"], &id, &args));
    let expected: Vec<String> = kinds.iter().map(|k| host_namespace(k)).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn the_sandbox_mount_point_holds_the_image() {
    let containerd = containerd();
    let id = unique_id("volume");
    let script = format!(
        "echo \"$CONTAINER_SANDBOX_MOUNT_POINT\"; cat \"$CONTAINER_SANDBOX_MOUNT_POINT/{HELLO_PATH}\""
    );
    let out = success(&run(&containerd, &["--rm"], &id, &["sh", "-c", &script]));
    let (mount_point, rest) = out.split_once('\n').expect("two lines");
    assert!(mount_point.starts_with('/'), "{out}");
    assert_eq!(rest, HELLO_TEXT);
    assert!(
        !std::path::Path::new(mount_point).join(HELLO_PATH).exists(),
        "the volume is visible on the host at {mount_point}"
    );
}

#[test]
fn a_detached_container_serves_exec_ps_pause_resume_metrics_and_kill() {
    let containerd = containerd();
    let events = EventsLog::start(&containerd, "events.log");
    let id = unique_id("detached");
    success(&run(&containerd, &["-d"], &id, &["sleep", "300"]));
    wait_for_status(&containerd, &id, "RUNNING");
    let init = task_pid(&containerd, &id);
    assert!(containerd.shim_socket("default", &id).exists());

    let exec = containerd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec-ok; exit 4",
    ]);
    assert_eq!(text(&exec.stdout), "exec-ok\n");
    assert_eq!(exec.status.code(), Some(4), "{}", text(&exec.stderr));

    // An exec runs as the container's account, in the container's job (cgroups).
    let inside = success(&containerd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e2",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/cgroup",
    ]));
    let status = fs::read_to_string(format!("/proc/{init}/status")).expect("init's status");
    let init_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .expect("init's uid");
    let init_cgroups = fs::read_to_string(format!("/proc/{init}/cgroup")).expect("init's cgroups");
    assert_eq!(inside, format!("{init_uid}\n{init_cgroups}"));
    assert!(init_cgroups.contains(&id), "{init_cgroups}");

    let ps = success(&containerd.ctr(&["tasks", "ps", &id]));
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&init.to_string())),
        "init {init} missing from ps:\n{ps}"
    );

    success(&containerd.ctr(&["tasks", "pause", &id]));
    wait_for_status(&containerd, &id, "PAUSED");
    success(&containerd.ctr(&["tasks", "resume", &id]));
    wait_for_status(&containerd, &id, "RUNNING");
    events.assert_published(
        &id,
        &[
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/paused",
            "/tasks/resumed",
        ],
    );
    let started = events.line("/tasks/exec-started", &id).unwrap_or_default();
    assert!(started.contains("\"exec_id\":\"e1\""), "{started}");

    let metrics = success(&containerd.ctr(&["tasks", "metrics", &id]));
    let value = |key: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(key)).then(|| cols.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    let memory = value("memory.usage_in_bytes").max(value("memory.usage"));
    assert!(memory > 0, "no memory figure in:\n{metrics}");
    // cgroup v1: cpuacct.usage (ns); v2: cpu.usage_usec.
    let cpu = value("cpuacct.usage").max(value("cpu.usage_usec"));
    assert!(cpu > 0, "no CPU figure in:\n{metrics}");
    assert!(value("pids.current") >= 1, "no pids figure in:\n{metrics}");

    success(&containerd.ctr(&["tasks", "kill", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn kill_all_stops_every_process_of_the_job() {
    let containerd = containerd();
    let id = unique_id("killall");
    let marker = format!("{}", 200_000 + std::process::id());
    let script = format!("sleep {marker} & sleep {marker} & wait");
    success(&run(&containerd, &["-d"], &id, &["sh", "-c", &script]));
    assert!(
        wait_until(Duration::from_secs(10), || processes_running(&[
            "sleep", &marker
        ])
        .len()
            == 2),
        "the two children did not start"
    );
    success(&containerd.ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    assert!(processes_running(&["sleep", &marker]).is_empty());
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn real_time_signals_reach_init() {
    let containerd = containerd();
    let id = unique_id("rtsig");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("signals");
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    let script = format!(
        "trap 'echo got37 >> {log}' 37; trap 'echo got63 >> {log}' 63; echo ready >> {log}; \
         while :; do sleep 0.05; done",
        log = log.display()
    );
    success(&run(&containerd, &["-d"], &id, &["sh", "-c", &script]));
    assert!(
        wait_until(Duration::from_secs(10), || log_text().contains("ready")),
        "init did not start"
    );
    for (signal, line) in [("SIGRTMIN+3", "got37"), ("63", "got63")] {
        success(&containerd.ctr(&["tasks", "kill", "--signal", signal, &id]));
        assert!(
            wait_until(Duration::from_secs(10), || log_text().contains(line)),
            "{signal} did not reach init: {}",
            log_text()
        );
    }
    success(&containerd.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn when_init_exits_no_process_of_the_job_survives() {
    let containerd = containerd();
    let id = unique_id("orphans");
    let marker = format!("{}", 300_000 + std::process::id());
    let script = format!("setsid sleep {marker} </dev/null >/dev/null 2>&1 & sleep 1; exit 0");
    let out = run(&containerd, &["--rm"], &id, &["sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        processes_running(&["sleep", &marker]).is_empty(),
        "a daemonized process outlived its container"
    );
    assert_nothing_left(&containerd, &id);
}

/// Once init has exited with nothing of its job left, the view is let go of before containerd
/// deletes the task: the namespace's pin and the volume's mount in it are gone, the files the
/// container wrote stay (here in containerd's snapshot) until delete, and delete still leaves
/// nothing.
#[test]
fn a_stopped_containers_view_is_released_before_delete_and_its_files_stay() {
    let containerd = containerd();
    let id = unique_id("released");
    let written = format!("{id}.written");
    let script = format!("echo kept > \"$CONTAINER_SANDBOX_MOUNT_POINT/{written}\"");
    success(&run(&containerd, &["-d"], &id, &["sh", "-c", &script]));
    wait_for_status(&containerd, &id, "STOPPED");
    let pin = containerd.shim_root("default").join(&id).join("mntns");
    assert!(
        wait_until(Duration::from_secs(10), || !pin.exists()),
        "the view's pin {} is still there after the exit",
        pin.display()
    );
    let mounted = mounts_naming(&id);
    assert!(mounted.is_empty(), "still mounted: {mounted:#?}");
    let kept = find_file(containerd.dir(), &written);
    let kept = kept.unwrap_or_else(|| panic!("{written} is not in containerd's snapshot"));
    assert_eq!(fs::read_to_string(&kept).unwrap(), "kept\n");
    assert_eq!(task_status(&containerd, &id), "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

/// The first file named `name` below `dir` (symlinks not followed).
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// `ctr events` writing what containerd publishes to a file; killed when dropped. ctr prints
/// only the events it could decode.
struct EventsLog<'a> {
    containerd: &'a Containerd,
    path: std::path::PathBuf,
    ctr: std::process::Child,
    /// A namespace of our own, labelled until `ctr events` reports it (it subscribes
    /// asynchronously); removed when dropped.
    probe: String,
}

impl<'a> EventsLog<'a> {
    /// Returns once `ctr events` is subscribed.
    fn start(containerd: &'a Containerd, name: &str) -> EventsLog<'a> {
        let path = containerd.dir().join(name);
        let ctr = Command::new("ctr")
            .arg("--address")
            .arg(containerd.socket())
            .arg("events")
            .stdout(fs::File::create(&path).expect("events log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let probe = unique_id("probe");
        let log = EventsLog {
            containerd,
            path,
            ctr,
            probe,
        };
        success(&containerd.ctr(&["namespaces", "create", &log.probe]));
        let mut n = 0;
        let subscribed = wait_until(Duration::from_secs(10), || {
            n += 1;
            let label = format!("n={n}");
            success(&containerd.ctr(&["namespaces", "label", &log.probe, &label]));
            log.text().contains(&log.probe)
        });
        assert!(subscribed, "ctr events printed nothing:\n{}", log.text());
        log
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits until an event of each topic names `id`.
    fn assert_published(&self, id: &str, topics: &[&str]) {
        let all_seen = wait_until(Duration::from_secs(10), || {
            topics.iter().all(|t| self.line(t, id).is_some())
        });
        assert!(
            all_seen,
            "events {topics:?} of {id} missing:\n{}",
            self.text()
        );
    }

    /// The line of the first event with `topic` that names `id`.
    fn line(&self, topic: &str, id: &str) -> Option<String> {
        let quoted = format!("\"{id}\"");
        self.text()
            .lines()
            .find(|l| l.contains(&format!(" {topic} ")) && l.contains(&quoted))
            .map(str::to_string)
    }
}

impl Drop for EventsLog<'_> {
    fn drop(&mut self) {
        let _ = self.ctr.kill();
        let _ = self.ctr.wait();
        let _ = self.containerd.ctr(&["namespaces", "rm", &self.probe]);
    }
}

#[test]
fn every_task_event_of_a_run_reaches_containerd_and_decodes() {
    let containerd = containerd();
    let events = EventsLog::start(&containerd, "events.log");
    let id = unique_id("events");
    let out = run(&containerd, &["--rm"], &id, &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let topics = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ];
    events.assert_published(&id, &topics);
    let exit = events.line("/tasks/exit", &id).unwrap_or_default();
    assert!(exit.contains("\"exit_status\":3"), "{exit}");
}

#[test]
fn the_memory_limit_is_enforced_and_the_oom_is_reported() {
    if let Err(why) = no_active_swap() {
        skipped("the_memory_limit_is_enforced_and_the_oom_is_reported", &why);
        return;
    }
    let containerd = containerd();
    let events = EventsLog::start(&containerd, "events.log");
    let id = unique_id("oom");
    let out = run(
        &containerd,
        &["--rm", "--memory-limit", "33554432"],
        &id,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let oom_seen = wait_until(Duration::from_secs(5), || {
        events.line("/tasks/oom", &id).is_some()
    });
    assert!(oom_seen, "no /tasks/oom event:\n{}", events.text());
}

/// Runs a ctr command line under script(1): `ctr -t` needs a terminal of its own.
fn in_terminal(command: &str) -> Output {
    run_with_timeout(
        Command::new("script").args(["-qec", command, "/dev/null"]),
        Duration::from_secs(60),
    )
}

#[test]
fn a_terminal_is_a_pty_for_init_and_exec() {
    let containerd = containerd();
    let address = containerd.socket().display().to_string();
    let id = unique_id("tty");
    let out = in_terminal(&format!(
        "ctr --address {address} run --rm -t --runtime {HOSTPROCESS_RUNTIME} {BUSYBOX_IMAGE} {id} tty"
    ));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/dev/pts/"),
        "{stdout}\n{}",
        text(&out.stderr)
    );

    let id = unique_id("tty-exec");
    success(&run(&containerd, &["-d"], &id, &["sleep", "300"]));
    wait_for_status(&containerd, &id, "RUNNING");
    let out = in_terminal(&format!(
        "ctr --address {address} tasks exec -t --exec-id t1 {id} sh -c 'tty; stty size'"
    ));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/dev/pts/"),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn a_killed_shim_is_cleaned_up_by_containerd() {
    // Two containers of one pod, so one shim serves both.
    let containerd = containerd();
    let group = unique_id("crash-pod");
    let annotation = format!("io.containerd.runc.v2.group={group}");
    let ids = [unique_id("crash-a"), unique_id("crash-b")];
    let marker = format!("{}", 400_000 + std::process::id());
    for id in &ids {
        success(&run(
            &containerd,
            &["-d", "--annotation", &annotation],
            id,
            &["sleep", &marker],
        ));
        wait_for_status(&containerd, id, "RUNNING");
    }
    let shims = containerd.serving_shims();
    assert_eq!(shims.len(), 1, "one serving shim for the pod: {shims:?}");
    // SAFETY: kill(2) on the shim's pid.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(30), || processes_running(&[
            "sleep", &marker
        ])
        .is_empty()),
        "a container's process outlived its shim's cleanup"
    );
    for id in &ids {
        assert_nothing_left(&containerd, id);
        assert!(mounts_under(&containerd.shim_root("default").join(id)).is_empty());
    }
    assert!(!containerd.shim_socket("default", &group).exists());
}

#[test]
fn twenty_containers_run_in_parallel() {
    let containerd = containerd();
    let ids: Vec<String> = (0..20).map(|i| unique_id(&format!("par{i}"))).collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = ids
            .iter()
            .map(|id| {
                let containerd = &containerd;
                scope.spawn(move || run(containerd, &["--rm"], id, &["echo", id]))
            })
            .collect();
        for (id, handle) in ids.iter().zip(runs) {
            let out = handle.join().expect("run thread");
            assert_eq!(success(&out), format!("{id}\n"));
        }
    });
    for id in &ids {
        assert_nothing_left(&containerd, id);
    }
}

#[test]
fn a_named_pipe_mount_is_refused_with_the_engines_message() {
    let containerd = containerd();
    let fifo = containerd.dir().join("a-pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let id = unique_id("pipe");
    let mount = format!(
        "type=bind,src={},dst=/pipe,options=rbind:ro",
        fifo.display()
    );
    let out = run(&containerd, &["--rm", "--mount", &mount], &id, &["true"]);
    assert!(!out.status.success(), "a FIFO mount was accepted");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("open the pipe at its host path instead"),
        "ctr's error lacks the engine's message: {stderr}"
    );
    assert_nothing_left(&containerd, &id);
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    use containerd_shim_protos::api::UpdateTaskRequest;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::shim_sync::{Client, TaskClient};
    use containerd_shim_protos::ttrpc::context;

    let containerd = containerd();
    let id = unique_id("update");
    success(&run(
        &containerd,
        &["-d", "--memory-limit", "33554432"],
        &id,
        &["sleep", "300"],
    ));
    wait_for_status(&containerd, &id, "RUNNING");
    // ctr has no `update`: call the shim's Task API as containerd's CRI would.
    let bundle = containerd
        .dir()
        .join("state/io.containerd.runtime.v2.task/default")
        .join(&id);
    let address = fs::read_to_string(bundle.join("address")).expect("the shim wrote its address");
    let client = TaskClient::new(Client::connect(address.trim()).expect("connect to the shim"));
    let mut resources = Any::new();
    resources.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    resources.value = br#"{"memory":{"limit":67108864}}"#.to_vec();
    let mut request = UpdateTaskRequest::new();
    request.id = id.clone();
    request.resources = Some(resources).into();
    client
        .update(context::with_timeout(10_000_000_000), &request)
        .expect("update");
    let metrics = success(&containerd.ctr(&["tasks", "metrics", &id]));
    assert!(
        metrics
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["memory.limit_in_bytes", "67108864"]),
        "the new limit is not in effect:\n{metrics}"
    );
    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn checkpoint_is_refused_with_a_reason() {
    let containerd = containerd();
    let id = unique_id("checkpoint");
    success(&run(&containerd, &["-d"], &id, &["sleep", "300"]));
    wait_for_status(&containerd, &id, "RUNNING");
    let out = containerd.ctr(&["tasks", "checkpoint", &id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("checkpoint is not supported"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(task_status(&containerd, &id), "RUNNING");
    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn the_containers_of_a_pod_share_one_shim() {
    let containerd = containerd();
    let group = format!("io.containerd.runc.v2.group={}", unique_id("pod"));
    let (first, second) = (unique_id("pod-a"), unique_id("pod-b"));
    for id in [&first, &second] {
        success(&run(
            &containerd,
            &["-d", "--annotation", &group],
            id,
            &["sleep", "300"],
        ));
        wait_for_status(&containerd, id, "RUNNING");
    }
    let shims = containerd.serving_shims();
    assert_eq!(shims.len(), 1, "one shim serves the pod: {shims:?}");

    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &first]));
    wait_for_status(&containerd, &first, "STOPPED");
    remove(&containerd, &first);
    assert_eq!(task_status(&containerd, &second), "RUNNING");
    assert_eq!(
        containerd.serving_shims(),
        shims,
        "the pod's shim outlives one container"
    );

    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &second]));
    wait_for_status(&containerd, &second, "STOPPED");
    remove(&containerd, &second);
    assert!(
        wait_until(Duration::from_secs(10), || containerd
            .serving_shims()
            .is_empty()),
        "the shim did not exit after its last container"
    );
    assert_nothing_left(&containerd, &first);
    assert_nothing_left(&containerd, &second);
    let group = group.split_once('=').map_or("", |(_, g)| g);
    assert!(!containerd.shim_socket("default", group).exists());
}

/// `ctr run` annotations that make a task the sandbox of pod `id`, as containerd's CRI does.
fn sandbox_annotations(id: &str) -> [String; 4] {
    [
        "--annotation".into(),
        "io.kubernetes.cri.container-type=sandbox".into(),
        "--annotation".into(),
        format!("io.kubernetes.cri.sandbox-id={id}"),
    ]
}

#[test]
fn a_pod_sandbox_runs_no_process_and_ends_like_a_pause_process() {
    let containerd = containerd();
    let id = unique_id("sandbox");
    let marker = format!("{}", 600_000 + std::process::id());
    let annotations = sandbox_annotations(&id);
    let mut flags = vec!["-d", "--net-host"];
    flags.extend(annotations.iter().map(String::as_str));
    success(&run(&containerd, &flags, &id, &["sleep", &marker]));
    wait_for_status(&containerd, &id, "RUNNING");
    assert_eq!(task_pid(&containerd, &id), 0);
    assert!(
        processes_running(&["sleep", &marker]).is_empty(),
        "the sandbox ran its command"
    );
    let ps = success(&containerd.ctr(&["tasks", "ps", &id]));
    assert_eq!(ps.lines().count(), 1, "ps lists processes:\n{ps}");
    let exec = containerd.ctr(&["tasks", "exec", "--exec-id", "e1", &id, "true"]);
    assert!(!exec.status.success(), "exec into a sandbox was accepted");
    assert!(
        text(&exec.stderr).contains("runs no process"),
        "{}",
        text(&exec.stderr)
    );

    // A pause process ignores signals it has no handler for, and exits 0 on SIGTERM.
    success(&containerd.ctr(&["tasks", "kill", "-s", "SIGHUP", &id]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(task_status(&containerd, &id), "RUNNING");
    success(&containerd.ctr(&["tasks", "kill", &id]));
    wait_for_status(&containerd, &id, "STOPPED");
    // `ctr tasks rm` fails with the task's exit status when it is not 0.
    remove(&containerd, &id);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn a_pod_sandbox_with_its_own_network_namespace_is_refused() {
    let containerd = containerd();
    let id = unique_id("sandbox-net");
    let annotations = sandbox_annotations(&id);
    // Without --net-host, ctr's spec asks for a new network namespace.
    let mut flags = vec!["--rm"];
    flags.extend(annotations.iter().map(String::as_str));
    let out = run(&containerd, &flags, &id, &["true"]);
    assert!(!out.status.success(), "a sandbox with its own network ran");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("hostNetwork is required if Pod contains HostProcess containers")
            && stderr.contains("asks for a new network namespace")
            && stderr.contains("set hostNetwork: true"),
        "{stderr}"
    );
    assert_nothing_left(&containerd, &id);
}

/// Removes a test's slice directories (which the kubelet would make and remove) in every
/// cgroup hierarchy, deepest first, even when the test fails.
struct Slices(Vec<String>);

impl Drop for Slices {
    fn drop(&mut self) {
        let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let hierarchies: Vec<_> = hierarchies
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        for slice in self.0.iter().rev() {
            for hierarchy in &hierarchies {
                let _ = fs::remove_dir(hierarchy.join(slice));
            }
        }
    }
}

#[test]
fn a_systemd_cgroup_path_is_served_like_a_cgroupfs_one_and_cleaned_up_after_a_shim_crash() {
    let top = format!("hpcshim{}", std::process::id());
    let pod = format!("{top}-pod1");
    let _slices = Slices(vec![
        format!("{top}.slice"),
        format!("{top}.slice/{pod}.slice"),
    ]);
    let containerd = containerd();
    let id = unique_id("sdcg");
    let scope = format!("/{top}.slice/{pod}.slice/cri-containerd-{id}.scope");
    let cgroups_path = format!("{pod}.slice:cri-containerd:{id}");
    let marker = format!("{}", 600_000 + std::process::id());
    let script = format!("sleep {marker} & exec sleep 300");
    success(&run(
        &containerd,
        &["-d", "--cgroup", &cgroups_path],
        &id,
        &["sh", "-c", &script],
    ));
    wait_for_status(&containerd, &id, "RUNNING");
    let init = task_pid(&containerd, &id);
    let cgroups = fs::read_to_string(format!("/proc/{init}/cgroup")).expect("init's cgroups");
    assert!(
        cgroups
            .lines()
            .any(|l| l.ends_with(&format!(":memory:{scope}")) || l == format!("0::{scope}")),
        "init is not in {scope}:\n{cgroups}"
    );

    success(&containerd.ctr(&["tasks", "pause", &id]));
    wait_for_status(&containerd, &id, "PAUSED");
    success(&containerd.ctr(&["tasks", "resume", &id]));
    wait_for_status(&containerd, &id, "RUNNING");
    let metrics = success(&containerd.ctr(&["tasks", "metrics", &id]));
    let pids = metrics
        .lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some("pids.current")).then(|| cols.next()?.parse::<u64>().ok())?
        })
        .unwrap_or(0);
    assert!(
        pids >= 2,
        "the scope's processes are not counted:\n{metrics}"
    );

    // The shim dies; containerd's cleanup (the shim's delete) removes the job.
    let shims = containerd.serving_shims();
    assert_eq!(shims.len(), 1, "one serving shim: {shims:?}");
    // SAFETY: kill(2) on the shim's pid.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(30), || processes_running(&[
            "sleep", &marker
        ])
        .is_empty()),
        "a process of the scope outlived its shim's cleanup"
    );
    assert_nothing_left(&containerd, &id);
    let left: Vec<_> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join(scope.trim_start_matches('/')))
                .filter(|dir| dir.exists())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "the scope is left: {left:#?}");
}
