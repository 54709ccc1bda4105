//! §6: `delete` works after a crash of whatever created the container. The creating CLI is
//! SIGKILLed at several points of `create`; `delete --force` must then remove everything it
//! had made: cgroups, the namespace pin and volume, the state, the ephemeral uid claim, and
//! the (held) init process.

mod support;

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Live processes other than this test whose command line has `id` as an argument (the
/// forked init before it execs, and the CLI's detached watcher, still carry the CLI's argv).
fn processes_with_arg(id: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == id.as_bytes()) && !is_gone(pid) {
            found.push(pid);
        }
    }
    found
}

/// When to SIGKILL the creating CLI.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    After(Duration),
    StateDir,
    StateFile,
    Cgroup,
    Claim,
    NamespacePin,
    /// The CLI has forked the init (a second process carries the id in its argv).
    InitForked,
}

fn reached(point: KillPoint, rt: &Runtime, id: &str, spawned: Instant, cli: u32) -> bool {
    let dir = rt.root().join(id);
    match point {
        KillPoint::After(d) => spawned.elapsed() >= d,
        KillPoint::StateDir => dir.exists(),
        KillPoint::StateFile => dir.join("state.json").exists(),
        KillPoint::Cgroup => Path::new("/sys/fs/cgroup/memory/hostprocess")
            .join(id)
            .exists(),
        KillPoint::Claim => fs::read_dir(rt.claims_dir())
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        KillPoint::NamespacePin => host_mount_points()
            .iter()
            .any(|p| Path::new(p) == dir.join("mntns")),
        KillPoint::InitForked => processes_with_arg(id).iter().any(|p| *p != cli),
    }
}

/// Runs `create` to its end once and returns how long it took.
fn create_duration(group: &HostGroup) -> Duration {
    let rt = Runtime::new();
    let id = unique_id("timing");
    let source = open_dir();
    let dest = open_dir();
    let bundle = crash_bundle(group, source.path(), dest.path());
    let _c = rt.guard(&id);
    let started = Instant::now();
    rt.create(&id, &bundle).ok("create");
    started.elapsed()
}

fn crash_bundle(group: &HostGroup, source: &Path, dest: &Path) -> Bundle {
    Bundle::new()
        .user_name(&group.name)
        .set(
            &["linux", "resources", "memory"],
            json!({ "limit": 64 << 20 }),
        )
        .bind(source, &dest.join("m").to_string_lossy(), &[])
        .file("payload", "x")
        .args(&["/bin/sleep", "60"])
}

fn kill_create_at(point: KillPoint, group: &HostGroup) {
    let rt = Runtime::new();
    let id = unique_id("crash");
    let source = open_dir();
    let dest = open_dir();
    let bundle = crash_bundle(group, source.path(), dest.path());
    let mut cmd = rt.command(&["create", "-b", &bundle.path().to_string_lossy(), &id]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let spawned = Instant::now();
    let mut child: Child = cmd.spawn().unwrap();
    let mut finished = false;
    loop {
        if reached(point, &rt, &id, spawned, child.id()) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        assert!(spawned.elapsed() < CLI_TIMEOUT, "create hangs");
        std::hint::spin_loop();
    }
    let _ = child.kill();
    let _ = child.wait();

    rt.delete_force(&id).ok(&format!(
        "delete --force after create was killed at {point:?} (finished: {finished})"
    ));
    let left = rt.leftovers(&id, &format!("hostprocess/{id}"));
    let stray = {
        let mut stray = processes_with_arg(&id);
        // The watcher of a completed create exits right after init dies.
        if !stray.is_empty() {
            wait_until(Duration::from_secs(2), || {
                stray = processes_with_arg(&id);
                stray.is_empty()
            });
        }
        stray
    };
    if !left.is_empty() || !stray.is_empty() {
        for pid in &stray {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        rt.assert_gone(&id);
        panic!("create killed at {point:?}: processes left behind: {stray:?}");
    }
    // The id is free again.
    let _c = rt.guard(&id);
    rt.create(&id, &bundle)
        .ok(&format!("create again after the crash at {point:?}"));
    assert_eq!(rt.status(&id), "created");
}

#[test]
fn delete_cleans_up_after_create_was_killed_at_each_step() {
    let group = HostGroup::new();
    let mut points = vec![
        KillPoint::After(Duration::ZERO),
        KillPoint::StateDir,
        KillPoint::StateFile,
        KillPoint::Cgroup,
        KillPoint::Claim,
        KillPoint::NamespacePin,
        KillPoint::InitForked,
    ];
    // And at fractions of a whole create's duration on this machine.
    let whole = create_duration(&group);
    for percent in [10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95, 100] {
        points.push(KillPoint::After(whole * percent / 100));
    }
    for point in points {
        kill_create_at(point, &group);
    }
}

#[test]
fn delete_cleans_up_after_a_foreground_run_was_killed() {
    let rt = Runtime::new();
    let id = unique_id("runkilled");
    let dir = open_dir();
    let pid_file = dir.path().join("init.pid");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let _c = rt.guard(&id);
    let mut cmd = rt.command(&[
        "run",
        "-b",
        &bundle.path().to_string_lossy(),
        "--pid-file",
        &pid_file.to_string_lossy(),
        &id,
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let init: u32 = wait_for_file(&pid_file, Duration::from_secs(5))
        .trim()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rt.status(&id), "running", "the container outlives its CLI");
    rt.delete_force(&id).ok("delete --force");
    assert!(is_gone(init));
    rt.assert_gone(&id);
}

#[test]
fn delete_cleans_up_when_the_state_records_a_dead_init() {
    // The init of a created container dies on its own (OOM killer, an admin's kill -9):
    // `start` says so, and delete (without --force) cleans up.
    let rt = Runtime::new();
    let id = unique_id("deadinit");
    let _c = rt.guard(&id);
    rt.create(&id, &Bundle::new().args(&["/bin/sleep", "60"]))
        .ok("create");
    let pid = rt.pid(&id);
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(3), || is_gone(pid)));
    assert_eq!(rt.status(&id), "stopped");
    rt.start(&id).fails_with("stopped");
    rt.delete(&id).ok("delete");
    rt.assert_gone(&id);
}

/// Runs a verb with SIGKILL after `after`; returns whether it had finished by itself.
fn kill_verb_after(rt: &Runtime, args: &[&str], after: Duration) -> bool {
    let mut cmd = rt.command(args);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let spawned = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut finished = false;
    while spawned.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        std::hint::spin_loop();
    }
    let _ = child.kill();
    let _ = child.wait();
    finished
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

#[test]
fn a_delete_killed_midway_can_be_repeated_to_the_end() {
    let group = HostGroup::new();
    let source = open_dir();
    let dest = open_dir();
    let bundle = crash_bundle(&group, source.path(), dest.path());
    let rt = Runtime::new();
    let probe = unique_id("deltime");
    rt.create(&probe, &bundle).ok("create");
    let whole = timed(|| {
        rt.delete_force(&probe).ok("delete --force");
    });
    for percent in [5, 15, 30, 45, 60, 75, 90] {
        let id = unique_id("delkill");
        let _c = rt.guard(&id);
        rt.create(&id, &bundle).ok("create");
        rt.start(&id).ok("start");
        let pid = rt.pid(&id);
        let finished = kill_verb_after(&rt, &["delete", "--force", &id], whole * percent / 100);
        rt.delete_force(&id).ok(&format!(
            "delete --force after a delete killed at {percent}% (finished: {finished})"
        ));
        assert!(is_gone(pid), "{percent}%");
        rt.assert_gone(&id);
    }
}

#[test]
fn a_start_killed_midway_leaves_a_container_that_starts_or_runs() {
    let rt = Runtime::new();
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let probe = unique_id("starttime");
    let _p = rt.guard(&probe);
    rt.create(&probe, &bundle).ok("create");
    let whole = timed(|| {
        rt.start(&probe).ok("start");
    });
    for percent in (5..=100).step_by(5) {
        let id = unique_id("startkill");
        let _c = rt.guard(&id);
        rt.create(&id, &bundle).ok("create");
        let pid = rt.pid(&id);
        let finished = kill_verb_after(&rt, &["start", &id], whole * percent / 100);
        // Let a released init reach its exec.
        std::thread::sleep(Duration::from_millis(200));
        let running = !is_gone(pid)
            && fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("/bin/sleep"));
        let status = rt.status(&id);
        let context = format!("start killed at {percent}% (finished: {finished})");
        if running {
            assert_eq!(
                status, "running",
                "{context}: the command runs, but the state says {status}"
            );
        } else {
            assert_eq!(status, "created", "{context}: the held init is gone");
            // A second start must finish (a hang here is a bug, not a slow machine).
            rt.output_of(rt.command(&["start", &id]), Duration::from_secs(10))
                .ok(&format!("{context}: start again"));
        }
    }
}
