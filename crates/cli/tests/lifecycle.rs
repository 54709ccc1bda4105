//! §6 and §8: the runc-compatible lifecycle — create, start, state, kill, delete, pause,
//! resume, exec, ps, list, events, run, spec.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

#[test]
fn create_start_kill_walk_through_created_running_stopped() {
    let rt = Runtime::new();
    let id = unique_id("life");
    let out_dir = open_dir();
    let marker = out_dir.path().join("ran");
    let bundle = Bundle::new().sh(&format!("touch {}; exec sleep 60", marker.display()));
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).ok("create");

    let state = rt.state_json(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], json!(id));
    assert_eq!(state["bundle"], json!(bundle.path()));
    let pid = state["pid"].as_u64().unwrap() as u32;
    assert!(
        pid > 0 && !is_gone(pid),
        "a created container has a live init: {state}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the command must not run before start");
    assert!(
        processes_in_cgroup(&format!("hostprocess/{id}")).contains(&pid),
        "the held init is already in the job"
    );

    rt.start(&id).ok("start");
    assert!(
        wait_until(Duration::from_secs(5), || marker.exists()),
        "start runs the command"
    );
    let state = rt.state_json(&id);
    assert_eq!(state["status"], "running");
    assert_eq!(
        state["pid"].as_u64().unwrap() as u32,
        pid,
        "init keeps its pid across start"
    );
    rt.start(&id)
        .fails_with("only a created container can be started");

    rt.kill(&id, "TERM").ok("kill");
    assert!(wait_until(Duration::from_secs(5), || is_gone(pid)));
    assert!(wait_until(Duration::from_secs(5), || rt.status(&id) == "stopped"));
    assert_eq!(rt.pid(&id), 0, "a stopped container reports no pid");
    rt.kill(&id, "KILL").fails_with("stopped");
    rt.delete(&id)
        .ok("delete of a stopped container needs no --force");
    rt.assert_gone(&id);
}

#[test]
fn delete_refuses_a_running_container_without_force_and_is_idempotent_with_it() {
    let rt = Runtime::new();
    let id = unique_id("del");
    let (_c, pid) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    rt.delete(&id).fails_with("delete --force");
    assert_eq!(
        rt.status(&id),
        "running",
        "a refused delete changes nothing"
    );
    assert!(!is_gone(pid));
    rt.delete_force(&id).ok("delete --force");
    assert!(is_gone(pid));
    rt.assert_gone(&id);
    rt.delete_force(&id).ok("a second delete --force");
    rt.delete(&id).fails_with("does not exist");
    rt.state(&id).fails_with("does not exist");
}

#[test]
fn delete_of_a_created_container_kills_its_held_init() {
    let rt = Runtime::new();
    let id = unique_id("delcreated");
    let _c = rt.guard(&id);
    rt.create(&id, &Bundle::new().args(&["/bin/sleep", "60"]))
        .ok("create");
    let pid = rt.pid(&id);
    rt.delete(&id).ok("delete of a created container");
    assert!(is_gone(pid), "the held init is killed");
    rt.assert_gone(&id);
}

#[test]
fn kill_all_signals_every_process_of_the_job() {
    let rt = Runtime::new();
    let id = unique_id("killall");
    let out_dir = open_dir();
    let pidfile = out_dir.path().join("child");
    let bundle = Bundle::new().sh(&format!(
        "sleep 60 & echo $! > {}; trap '' TERM; while :; do sleep 0.1; done",
        pidfile.display()
    ));
    let (_c, init) = rt.started(&id, &bundle);
    let child: u32 = wait_for_file(&pidfile, Duration::from_secs(5))
        .trim()
        .parse()
        .unwrap();
    rt.kill(&id, "TERM").ok("kill TERM (init ignores it)");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!is_gone(child), "kill without --all signals init only");
    rt.cli(&["kill", "--all", &id, "KILL"]).ok("kill --all");
    assert!(wait_until(Duration::from_secs(5), || is_gone(child) && is_gone(init)));
}

#[test]
fn pause_freezes_and_resume_thaws_the_job() {
    let rt = Runtime::new();
    let id = unique_id("pause");
    let out_dir = open_dir();
    let counter = out_dir.path().join("counter");
    let bundle = Bundle::new().sh(&format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.02; done",
        counter.display()
    ));
    let (_c, _pid) = rt.started(&id, &bundle);
    let read = || fs::read_to_string(&counter).unwrap_or_default();
    wait_for_file(&counter, Duration::from_secs(5));
    rt.cli(&["pause", &id]).ok("pause");
    assert_eq!(rt.status(&id), "paused");
    let frozen = read();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(), frozen, "a paused job makes no progress");
    rt.cli(&["pause", &id])
        .fails_with("only a running container can be paused");
    rt.cli(&["resume", &id]).ok("resume");
    assert_eq!(rt.status(&id), "running");
    assert!(
        wait_until(Duration::from_secs(3), || read() != frozen),
        "resumed"
    );
    rt.cli(&["resume", &id])
        .fails_with("only a paused container can be resumed");
}

#[test]
fn a_paused_container_can_be_deleted_with_force() {
    let rt = Runtime::new();
    let id = unique_id("pausedel");
    let (_c, pid) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    rt.cli(&["pause", &id]).ok("pause");
    rt.delete(&id).fails_with("delete --force");
    rt.delete_force(&id)
        .ok("delete --force of a paused container");
    assert!(wait_until(Duration::from_secs(3), || is_gone(pid)));
    rt.assert_gone(&id);
}

#[test]
fn exec_runs_in_the_same_job_and_account() {
    let user = HostUser::new();
    let rt = Runtime::new();
    let id = unique_id("exec");
    let bundle = Bundle::new()
        .user_name(&user.name)
        .args(&["/bin/sleep", "60"]);
    let (_c, init) = rt.started(&id, &bundle);
    let out = rt
        .exec(
            &id,
            &["/bin/sh", "-c", "id -u; id -g; cat /proc/self/cgroup; echo $CONTAINER_SANDBOX_MOUNT_POINT; readlink /proc/self/ns/mnt"],
        )
        .ok("exec");
    let text = out.stdout_text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(user.uid.to_string().as_str()), "{text}");
    assert_eq!(
        lines.next(),
        Some(user.primary.gid.to_string().as_str()),
        "{text}"
    );
    let init_cgroups = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    for line in init_cgroups.lines() {
        assert!(
            text.contains(line),
            "exec is not in the job's cgroup {line}: {text}"
        );
    }
    assert!(text.contains(&format!("/hostprocess/{id}")), "{text}");
    assert!(text.contains("\n/hpc\n"), "{text}");
    assert!(
        text.trim_end()
            .ends_with(&namespace(&init.to_string(), "mnt")),
        "exec joins the view: {text}"
    );
}

#[test]
fn exec_returns_the_process_exit_code_and_refuses_a_stopped_container() {
    let rt = Runtime::new();
    let id = unique_id("execcode");
    let (_c, pid) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    let out = rt.exec(&id, &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    rt.kill(&id, "KILL").ok("kill");
    assert!(wait_until(Duration::from_secs(5), || is_gone(pid)));
    rt.exec(&id, &["/bin/true"]).fails_with("stopped");
}

#[test]
fn exec_detached_process_is_in_the_job_and_listed_by_ps() {
    let rt = Runtime::new();
    let id = unique_id("execd");
    let out_dir = open_dir();
    let pid_file = out_dir.path().join("exec.pid");
    let (_c, init) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    rt.cli(&[
        "exec",
        "-d",
        "--pid-file",
        &pid_file.to_string_lossy(),
        &id,
        "/bin/sleep",
        "60",
    ])
    .ok("exec -d");
    let exec_pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = rt.cli(&["ps", "--format", "json", &id]).ok("ps");
    let pids: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pids.contains(&init), "{pids:?}");
    assert!(pids.contains(&exec_pid), "{pids:?}");
}

#[test]
fn ps_json_lists_init_and_its_children() {
    let rt = Runtime::new();
    let id = unique_id("ps");
    let (_c, init) = rt.started(&id, &Bundle::new().sh("sleep 60 & sleep 60 & wait"));
    let mut pids: Vec<u32> = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let out = rt.cli(&["ps", "--format", "json", &id]).ok("ps");
            pids = serde_json::from_slice(&out.stdout).unwrap();
            pids.len() == 3
        }),
        "{pids:?}"
    );
    assert!(pids.contains(&init));
    let table = rt.cli(&["ps", &id]).ok("ps table").stdout_text();
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert_eq!(
        table.lines().count(),
        4,
        "header and three processes: {table}"
    );
}

#[test]
fn list_shows_the_root_s_containers() {
    let rt = Runtime::new();
    let id = unique_id("list");
    let (_c, _pid) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    let out = rt.cli(&["list", "--format", "json"]).ok("list");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["status"], "running");
    let quiet = rt.cli(&["list", "-q"]).ok("list -q").stdout_text();
    assert_eq!(quiet, format!("{id}\n"));
}

#[test]
fn events_stats_reports_memory_cpu_and_pids() {
    let rt = Runtime::new();
    let id = unique_id("events");
    let bundle = Bundle::new()
        .set(&["linux", "resources", "pids"], json!({ "limit": 50 }))
        .args(&[
            PYTHON,
            "-c",
            "b = b'x' * (8 << 20); import time; time.sleep(60)",
        ]);
    let (_c, _pid) = rt.started(&id, &bundle);
    std::thread::sleep(Duration::from_millis(500));
    let out = rt.cli(&["events", "--stats", &id]).ok("events --stats");
    let text = out.stdout_text();
    assert_eq!(text.lines().count(), 1, "one event: {text}");
    let event: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], json!(id));
    let data = &event["data"];
    // runc's shape (libcontainer's types.Stats), which go-runc decodes.
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() >= 8 << 20,
        "{data}"
    );
    assert!(
        data["memory"]["usage"]["max"].as_u64().unwrap()
            >= data["memory"]["usage"]["usage"].as_u64().unwrap(),
        "{data}"
    );
    let cpu = &data["cpu"]["usage"];
    assert!(cpu["total"].as_u64().unwrap() > 0, "{data}");
    assert!(
        cpu["kernel"].as_u64().unwrap() + cpu["user"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(data["pids"]["current"], json!(1), "{data}");
    assert_eq!(data["pids"]["limit"], json!(50), "{data}");
}

#[test]
fn run_exits_with_the_containers_exit_code() {
    let rt = Runtime::new();
    for code in [0, 3, 42] {
        let id = unique_id("code");
        let _c = rt.guard(&id);
        let bundle = Bundle::new().sh(&format!("echo out; echo err >&2; exit {code}"));
        let out = rt.run(&id, &bundle);
        assert_eq!(out.status.code(), Some(code), "{}", out.stderr_text());
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
        rt.assert_gone(&id);
    }
    let id = unique_id("sig");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &Bundle::new().sh("kill -TERM $$"));
    assert_eq!(out.status.code(), Some(128 + 15), "killed by SIGTERM");
}

#[test]
fn run_detached_leaves_a_running_container() {
    let rt = Runtime::new();
    let id = unique_id("rund");
    let out_dir = open_dir();
    let pid_file = out_dir.path().join("init.pid");
    let _c = rt.guard(&id);
    rt.run_with(
        &id,
        &Bundle::new().args(&["/bin/sleep", "60"]),
        &["-d", "--pid-file", &pid_file.to_string_lossy()],
    )
    .ok("run -d");
    let pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn run_gives_the_process_stdin() {
    let rt = Runtime::new();
    let id = unique_id("stdin");
    let _c = rt.guard(&id);
    let dir = open_dir();
    let input = dir.path().join("input");
    fs::write(&input, "through stdin\n").unwrap();
    let bundle = Bundle::new().args(&["/bin/cat"]);
    let mut cmd = rt.command(&["run", "-b", &bundle.path().to_string_lossy(), &id]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = rt.output_of(cmd, CLI_TIMEOUT).ok("run cat");
    assert_eq!(out.stdout_text(), "through stdin\n");
}

#[test]
fn spec_writes_a_config_that_run_accepts() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    rt.cli(&["spec", "-b", &bundle.to_string_lossy()])
        .ok("spec");
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(
        spec["annotations"]["microsoft.com/hostprocess-container"],
        "true"
    );
    spec["process"]["args"] = json!(["/bin/sh", "-c", "echo spec-ok; id -u"]);
    fs::write(&path, spec.to_string()).unwrap();
    fs::create_dir(bundle.join("rootfs")).unwrap();
    let id = unique_id("spec");
    let _c = rt.guard(&id);
    let out = rt
        .cli(&["run", "-b", &bundle.to_string_lossy(), &id])
        .ok("run of the spec's config");
    assert_eq!(out.stdout_text(), "spec-ok\n0\n");
    rt.cli(&["spec", "-b", &bundle.to_string_lossy()])
        .fails_with("exists");
}

#[test]
fn a_second_create_with_the_same_id_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("dup");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, pid) = rt.started(&id, &bundle);
    rt.create(&id, &bundle).fails_with("already exists");
    assert_eq!(
        rt.status(&id),
        "running",
        "the first container is untouched"
    );
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn invalid_ids_are_refused_before_anything_is_made() {
    let rt = Runtime::new();
    let bundle = Bundle::new();
    for bad in ["../escape", "a/b", "a b"] {
        rt.create(bad, &bundle).fails_with("invalid container id");
    }
    assert!(!rt.root().parent().unwrap().join("escape").exists());
    assert_eq!(fs::read_dir(rt.root()).map(|d| d.count()).unwrap_or(0), 0);
    assert!(!Path::new("/sys/fs/cgroup/memory/escape").exists());
}

#[test]
fn features_describes_the_runtime() {
    let out = Runtime::new().cli(&["features"]).ok("features");
    let features: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        features["linux"]["namespaces"],
        json!([]),
        "no namespaces are made"
    );
    assert!(features["mountOptions"]
        .as_array()
        .unwrap()
        .contains(&json!("rshared")));
}

#[test]
fn run_forwards_sigterm_to_the_container() {
    let rt = Runtime::new();
    let id = unique_id("fwd");
    let dir = open_dir();
    let ready = dir.path().join("ready");
    let bundle = Bundle::new().sh(&format!(
        "trap 'echo got-term; exit 5' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    ));
    let _c = rt.guard(&id);
    let log = dir.path().join("out");
    let mut cmd = rt.command(&["run", "-b", &bundle.path().to_string_lossy(), &id]);
    cmd.stdout(fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(5), || ready.exists()));
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut status = None;
    assert!(wait_until(Duration::from_secs(5), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(
        status.unwrap().code(),
        Some(5),
        "run exits with the container's code"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), "got-term\n");
    rt.assert_gone(&id);
}

#[test]
fn events_stats_counts_the_jobs_disk_io() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    if let Err(why) = block_io_accounting(dir.path()) {
        skipped("events_stats_counts_the_jobs_disk_io", &why);
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("iostats");
    let file = dir.path().join("io");
    let bundle = Bundle::new().sh(&format!(
        "dd if=/dev/zero of={f} bs=1M count=8 oflag=direct 2>/dev/null && \
         dd if={f} of=/dev/null bs=1M iflag=direct 2>/dev/null && echo io-done; exec sleep 60",
        f = file.display()
    ));
    let log = dir.path().join("out");
    let (_c, _pid) = rt.started_logged(&id, &bundle, &log);
    assert!(wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("io-done"))
    }));
    let out = rt.cli(&["events", "--stats", &id]).ok("events --stats");
    let event: Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
    let blkio = &event["data"]["blkio"];
    let op = |list: &str, op: &str| {
        blkio[list]
            .as_array()
            .and_then(|entries| entries.iter().find(|e| e["op"] == op))
            .and_then(|e| e["value"].as_u64())
            .unwrap_or_else(|| panic!("no {op} in {list}: {blkio}"))
    };
    assert!(op("ioServiceBytesRecursive", "Write") >= 8 << 20, "{blkio}");
    assert!(op("ioServiceBytesRecursive", "Read") >= 8 << 20, "{blkio}");
    assert!(op("ioServicedRecursive", "Write") > 0, "{blkio}");
}
