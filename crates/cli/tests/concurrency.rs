//! §6 "State is persisted atomically … a CLI call or a restarted shim sees every container":
//! parallel CLI calls on one state root, parallel claims of ephemeral uids, racing deletes.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;

#[test]
fn parallel_creates_in_one_root_all_succeed_with_distinct_ephemeral_uids() {
    let group = HostGroup::new();
    let rt = Runtime::new();
    let bundle = Bundle::new()
        .user_name(&group.name)
        .args(&["/bin/sleep", "60"]);
    let ids: Vec<String> = (0..8).map(|_| unique_id("par")).collect();
    let guards: Vec<_> = ids.iter().map(|id| rt.guard(id)).collect();
    std::thread::scope(|s| {
        for id in &ids {
            let (rt, bundle) = (&rt, &bundle);
            s.spawn(move || {
                rt.create(id, bundle).ok(&format!("create {id}"));
                rt.start(id).ok(&format!("start {id}"));
            });
        }
    });
    let mut uids = HashSet::new();
    for id in &ids {
        let pid = rt.pid(id);
        let uid = status_ids(pid, "Uid")[0];
        assert!(uids.insert(uid), "uid {uid} given to two containers");
        assert_eq!(status_ids(pid, "Gid")[0], group.gid);
    }
    let listed = rt.cli(&["list", "-q"]).ok("list").stdout_text();
    let listed: HashSet<&str> = listed.lines().collect();
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{id} missing from list");
    }
    drop(guards);
    assert_eq!(
        std::fs::read_dir(rt.claims_dir()).unwrap().count(),
        0,
        "every claim is released"
    );
}

#[test]
fn racing_deletes_of_one_container_both_succeed_and_leave_nothing() {
    let rt = Runtime::new();
    let id = unique_id("race");
    let (_c, pid) = rt.started(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| rt.delete_force(&id))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in outs {
        out.ok("a racing delete --force");
    }
    assert!(is_gone(pid));
    rt.assert_gone(&id);
}

#[test]
fn state_during_start_sees_a_consistent_container() {
    let rt = Runtime::new();
    let id = unique_id("consistent");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).ok("create");
    std::thread::scope(|s| {
        let starter = s.spawn(|| rt.start(&id));
        for _ in 0..20 {
            let status = rt.status(&id);
            assert!(
                status == "created" || status == "running",
                "status {status} while starting"
            );
        }
        starter.join().unwrap().ok("start");
    });
    assert!(wait_until(Duration::from_secs(2), || rt.status(&id) == "running"));
}

#[test]
fn events_streams_stats_and_reports_an_oom_kill() {
    if let Err(why) = no_active_swap() {
        skipped("events_streams_stats_and_reports_an_oom_kill", &why);
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("oomevent");
    // Init survives; a child blows the limit a moment after start.
    let bundle = Bundle::new()
        .set(
            &["linux", "resources", "memory"],
            serde_json::json!({ "limit": 32 << 20 }),
        )
        .sh(&format!(
            "sleep 0.7; {PYTHON} -c \"b = b'x' * (200 << 20)\"; exec sleep 60"
        ));
    let (_c, _pid) = rt.started(&id, &bundle);
    let dir = open_dir();
    let log = dir.path().join("events");
    let mut cmd = rt.command(&["events", "--interval", "100ms", &id]);
    cmd.stdout(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let seen = wait_until(Duration::from_secs(8), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"type\":\"oom\""))
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"type\":\"stats\""), "{text}");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        first["data"]["memory"]["usage"]["limit"] == 32 << 20,
        "{text}"
    );
    assert!(seen, "no oom event: {text}");
}
