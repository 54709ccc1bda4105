//! §1.2 and §6: no process outlives its container — not one that daemonizes (setsid and a
//! double fork), not one that ignores SIGTERM; when init exits, the rest of the job gets
//! SIGTERM and, after the grace period, SIGKILL.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const DAEMON: &str = "#!/bin/sh
# $1: where to write the daemon's pid; $2: ignore-term to survive SIGTERM.
if [ \"$2\" = ignore-term ]; then trap '' TERM; fi
echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"
while :; do sleep 0.2; done
";

/// A bundle whose init starts a daemon (setsid, then a double fork through a shell that
/// exits), waits until it wrote its pid, then either stays or exits.
fn daemonizing(pid_file: &Path, ignore_term: bool, init_stays: bool) -> Bundle {
    let mode = if ignore_term { "ignore-term" } else { "" };
    let after = if init_stays {
        "exec sleep 60"
    } else {
        "exit 0"
    };
    Bundle::new().script("daemon.sh", DAEMON).sh(&format!(
        "setsid /bin/sh -c '/bin/sh \"$CONTAINER_SANDBOX_MOUNT_POINT/daemon.sh\" {p} {mode} &' \
         </dev/null >/dev/null 2>&1; \
         while [ ! -s {p} ]; do sleep 0.02; done; {after}",
        p = pid_file.display()
    ))
}

/// Waits for the daemon's pid file; on failure, says what the container was doing.
fn daemon_pid(rt: &Runtime, id: &str, pid_file: &Path, log: &Path) -> u32 {
    let found = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    assert!(
        found,
        "the daemon of {id} never wrote its pid; output: {:?}; {}",
        std::fs::read_to_string(log).unwrap_or_default(),
        rt.describe(id)
    );
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn session_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[3].parse().unwrap()
}

#[test]
fn a_daemonized_process_stays_in_the_job_and_dies_with_kill_and_delete() {
    let rt = Runtime::new();
    let id = unique_id("daemon");
    let dir = open_dir();
    let pid_file = dir.path().join("daemon.pid");
    let log = dir.path().join("out");
    let bundle = daemonizing(&pid_file, false, true);
    let (_c, init) = rt.started_logged(&id, &bundle, &log);
    let daemon = daemon_pid(&rt, &id, &pid_file, &log);
    assert_ne!(
        session_of(daemon),
        session_of(init),
        "the daemon has its own session"
    );
    assert!(
        processes_in_cgroup(&format!("hostprocess/{id}")).contains(&daemon),
        "setsid and a double fork do not leave the job"
    );
    let out = rt.cli(&["ps", "--format", "json", &id]).ok("ps");
    let pids: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pids.contains(&daemon), "ps lists the daemon: {pids:?}");

    rt.kill(&id, "KILL").ok("kill");
    rt.delete_force(&id).ok("delete --force");
    assert!(is_gone(daemon), "the daemon outlived kill + delete");
    assert!(is_gone(init));
    rt.assert_gone(&id);
}

#[test]
fn a_daemon_is_stopped_when_init_exits() {
    let rt = Runtime::new();
    let id = unique_id("initexit");
    let dir = open_dir();
    let pid_file = dir.path().join("daemon.pid");
    let bundle =
        daemonizing(&pid_file, false, false).annotation("hostprocess.io/grace-period-seconds", "1");
    let log = dir.path().join("out");
    let (_c, init) = rt.started_logged(&id, &bundle, &log);
    let daemon = daemon_pid(&rt, &id, &pid_file, &log);
    assert!(
        wait_until(Duration::from_secs(5), || is_gone(init)),
        "init exits"
    );
    assert!(
        wait_until(Duration::from_secs(4), || is_gone(daemon)),
        "the daemon survived its init by more than the grace period"
    );
    assert_eq!(rt.status(&id), "stopped");
    assert!(processes_in_cgroup(&format!("hostprocess/{id}")).is_empty());
}

/// Starts a SIGTERM-ignoring daemon whose init exits, and returns how long the daemon lived
/// after init, checking it was still alive at `alive_at`.
fn daemon_lifetime_after_init(
    grace: Option<&str>,
    alive_at: Duration,
    limit: Duration,
) -> Duration {
    let rt = Runtime::new();
    let id = unique_id("graceful");
    let dir = open_dir();
    let pid_file = dir.path().join("daemon.pid");
    let mut bundle = daemonizing(&pid_file, true, false);
    if let Some(grace) = grace {
        bundle = bundle.annotation("hostprocess.io/grace-period-seconds", grace);
    }
    let log = dir.path().join("out");
    let (_c, init) = rt.started_logged(&id, &bundle, &log);
    let daemon = daemon_pid(&rt, &id, &pid_file, &log);
    assert!(
        wait_until(Duration::from_secs(5), || is_gone(init)),
        "init exits"
    );
    let init_exit = Instant::now();
    std::thread::sleep(alive_at);
    assert!(
        !is_gone(daemon),
        "a daemon that ignores SIGTERM was killed before the grace period ended"
    );
    assert!(
        wait_until(limit, || is_gone(daemon)),
        "a daemon that ignores SIGTERM outlived the grace period (no SIGKILL)"
    );
    init_exit.elapsed()
}

#[test]
fn a_daemon_ignoring_sigterm_is_killed_after_the_annotated_grace_period() {
    let lived = daemon_lifetime_after_init(
        Some("2"),
        Duration::from_millis(1000),
        Duration::from_secs(5),
    );
    assert!(lived >= Duration::from_millis(1500), "{lived:?}");
}

#[test]
fn a_daemon_ignoring_sigterm_is_killed_after_the_default_five_seconds() {
    let lived =
        daemon_lifetime_after_init(None, Duration::from_millis(3500), Duration::from_secs(6));
    assert!(lived >= Duration::from_millis(4500), "{lived:?}");
}

#[test]
fn run_returns_only_once_the_rest_of_the_job_is_gone() {
    let rt = Runtime::new();
    let id = unique_id("rungrace");
    let dir = open_dir();
    let pid_file = dir.path().join("daemon.pid");
    let bundle =
        daemonizing(&pid_file, true, false).annotation("hostprocess.io/grace-period-seconds", "1");
    let _c = rt.guard(&id);
    let started = Instant::now();
    let out = rt.run(&id, &bundle);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    let daemon: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_gone(daemon), "the daemon outlived `run`");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the grace period was given"
    );
    rt.assert_gone(&id);
}

#[test]
fn a_daemon_started_by_exec_is_stopped_by_delete() {
    let rt = Runtime::new();
    let id = unique_id("execdaemon");
    let dir = open_dir();
    let pid_file = dir.path().join("daemon.pid");
    let bundle = Bundle::new()
        .script("daemon.sh", DAEMON)
        .args(&["/bin/sleep", "60"]);
    let (_c, _init) = rt.started(&id, &bundle);
    let launcher = format!(
        "setsid /bin/sh -c '/bin/sh \"$CONTAINER_SANDBOX_MOUNT_POINT/daemon.sh\" {} ignore-term &' \
         </dev/null >/dev/null 2>&1",
        pid_file.display()
    );
    rt.exec(&id, &["/bin/sh", "-c", &launcher]).ok("exec");
    let daemon: u32 = wait_for_file(&pid_file, Duration::from_secs(5))
        .trim()
        .parse()
        .unwrap();
    rt.delete_force(&id).ok("delete --force");
    assert!(is_gone(daemon), "a daemon started by exec outlived delete");
    rt.assert_gone(&id);
}
