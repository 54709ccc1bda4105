//! A container acts only on what it made (§4, §6): a leftover watcher never touches a new
//! container that reuses the id, and ephemeral uid claims are released only by their owner,
//! or once their owner is provably gone.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

/// Live processes other than this test whose command line is `hostprocess … create … <id>`:
/// a create in progress, or the detached watcher it forked.
fn watchers_of(id: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&id.as_bytes()) && args.contains(&&b"create"[..]) && !is_gone(pid) {
            found.push(pid);
        }
    }
    found
}

/// Stops a process (SIGSTOP) until dropped, then lets it go on (SIGCONT).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: kill(2) has no memory effects.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        assert!(wait_until(Duration::from_secs(10), || process_state(pid) == Some('T')));
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[test]
fn a_leftover_watcher_never_kills_a_new_container_with_the_same_id() {
    let rt = Runtime::new();
    let id = unique_id("reuse");
    // Init leaves a daemon that ignores SIGTERM, so its watcher waits out the grace period.
    let old = Bundle::new()
        .sh("trap '' TERM; sleep 60 & exit 0")
        .annotation("hostprocess.io/grace-period-seconds", "3");
    let (guard, _pid) = rt.started(&id, &old);
    assert!(
        wait_until(Duration::from_secs(10), || rt.status(&id) == "stopped"),
        "init did not exit"
    );
    let watchers = watchers_of(&id);
    assert_eq!(watchers.len(), 1, "one watcher: {watchers:?}");
    let watcher = watchers[0];
    {
        // The watcher does not run while the id is deleted and used again (as on a busy
        // host): when it wakes, a job is at the path it watched, but not its job.
        let _stopped = Stopped::new(watcher);
        rt.delete_force(&id).ok("delete --force");
        let new = Bundle::new().args(&["/bin/sleep", "60"]);
        rt.create(&id, &new).ok("create again");
        rt.start(&id).ok("start again");
    }
    assert!(
        wait_until(Duration::from_secs(30), || is_gone(watcher)),
        "the old watcher did not finish"
    );
    assert_eq!(
        rt.status(&id),
        "running",
        "the old watcher killed the new container: {}",
        rt.describe(&id)
    );
    drop(guard);
}

#[test]
fn a_finished_run_never_kills_a_new_container_with_the_same_id() {
    let rt = Runtime::new();
    let id = unique_id("rerun");
    let dir = open_dir();
    let termed = dir.path().join("termed");
    let ready = dir.path().join("ready");
    // Init leaves a daemon that notes SIGTERM and lives on, so run waits out the grace period;
    // it exits once the daemon's trap is set.
    let old = Bundle::new()
        .sh(&format!(
            "sh -c 'trap \"echo term >> {termed}\" TERM; touch {ready}; \
             while :; do sleep 0.05; done' & \
             while [ ! -e {ready} ]; do sleep 0.01; done; exit 0",
            termed = termed.display(),
            ready = ready.display()
        ))
        .annotation("hostprocess.io/grace-period-seconds", "3");
    let guard = rt.guard(&id);
    let mut run = rt.command(&["run", "-b", &old.path().to_string_lossy(), &id]);
    run.stdout(fs::File::create(dir.path().join("run.out")).unwrap())
        .stderr(fs::File::create(dir.path().join("run.err")).unwrap());
    let mut run = run.spawn().expect("spawn run");
    // Killed however the test ends.
    let run_pid = run.id();
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _reap = Reap(run_pid);
    assert!(
        wait_until(Duration::from_secs(10), || termed.exists()),
        "run did not signal the rest of the job: {}",
        fs::read_to_string(dir.path().join("run.err")).unwrap_or_default()
    );
    {
        // run does not get to go on while the id is deleted and used again.
        let _stopped = Stopped::new(run_pid);
        rt.delete_force(&id).ok("delete --force");
        let new = Bundle::new().args(&["/bin/sleep", "60"]);
        rt.create(&id, &new).ok("create again");
        rt.start(&id).ok("start again");
    }
    let finished = wait_until(Duration::from_secs(30), || {
        run.try_wait().ok().flatten().is_some()
    });
    assert!(finished, "run did not finish");
    assert_eq!(
        rt.status(&id),
        "running",
        "the finished run killed the new container: {}",
        rt.describe(&id)
    );
    drop(guard);
}

#[test]
fn a_failed_create_leaves_another_roots_claim_of_the_same_id() {
    let group = HostGroup::new();
    let one = Runtime::new().with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63300-63300");
    let other = Runtime::new()
        .with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63300-63300")
        .with_env(
            "HOSTPROCESS_EPHEMERAL_UIDS_DIR",
            &one.claims_dir().to_string_lossy(),
        );
    let id = unique_id("tworoots");
    let bundle = Bundle::new()
        .args(&["/bin/sleep", "60"])
        .user_name(&group.name);
    let cgroup = format!("hostprocess/{id}-other");
    // Dropped last: its check for leftovers looks for mounts by id, as the first root's are.
    let _other = other.guard_at(&id, &cgroup);
    let (_c, _pid) = one.started(&id, &bundle);
    let claim = one.claims_dir().join("63300");
    let held = fs::read_to_string(&claim).unwrap();
    {
        let elsewhere = Bundle::new()
            .args(&["/bin/sleep", "60"])
            .user_name(&group.name)
            .set(&["linux", "cgroupsPath"], serde_json::json!(cgroup));
        other
            .create(&id, &elsewhere)
            .fails_with("no free ephemeral uid");
    }
    assert_eq!(
        fs::read_to_string(&claim).ok().as_deref(),
        Some(held.as_str()),
        "the other root's failed create released this root's claim"
    );
}

#[test]
fn claims_of_containers_that_are_provably_gone_are_taken_over() {
    let group = HostGroup::new();
    let rt = Runtime::new().with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63500-63501");
    let gone_state = rt.root().join("long-gone");
    // An empty claim (what a full /run left before claims were written whole), one whose
    // container's state directory is gone, and none of a live container.
    fs::write(rt.claims_dir().join("63500"), "").unwrap();
    fs::write(
        rt.claims_dir().join("63501"),
        format!("long-gone\n{}\n", gone_state.display()),
    )
    .unwrap();
    let bundle = Bundle::new()
        .args(&["/bin/sleep", "60"])
        .user_name(&group.name);
    let a = unique_id("takeover");
    let b = unique_id("takeover");
    let (_ga, pid_a) = rt.started(&a, &bundle);
    let (_gb, pid_b) = rt.started(&b, &bundle);
    let mut uids = [status_ids(pid_a, "Uid")[0], status_ids(pid_b, "Uid")[0]];
    uids.sort();
    assert_eq!(uids, [63500, 63501]);
    // A live claim is never taken over: the range is full now.
    let c = unique_id("takeover");
    let _gc = rt.guard(&c);
    rt.create(&c, &bundle).fails_with("no free ephemeral uid");
}
