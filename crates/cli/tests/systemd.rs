//! systemd's `slice:prefix:name` cgroup paths (the kubelet's systemd cgroup driver): without
//! systemd as PID 1 the job is made in cgroupfs at the path runc's systemd driver expands it
//! to, and every verb works on it as on a cgroupfs job.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Removes the slice directories a test made above its job (the runtime leaves a job's
/// parents in place, as runc does), deepest first, even when the test fails.
struct Slices(Vec<String>);

impl Drop for Slices {
    fn drop(&mut self) {
        for slice in self.0.iter().rev() {
            for h in HIERARCHIES {
                let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(slice));
            }
        }
    }
}

/// The pods figure of `events --stats`, in whichever shape the CLI prints it.
fn pids_current(event: &Value) -> Option<u64> {
    let data = &event["data"];
    data.pointer("/pids/current")
        .or_else(|| data.get("pids_current"))
        .and_then(Value::as_u64)
}

#[test]
fn a_systemd_path_is_a_scope_in_its_expanded_slice_and_every_verb_works_on_it() {
    let rt = Runtime::new();
    let id = unique_id("sd");
    let top = unique_name("hpts");
    let pod = format!("{top}-pod{}", std::process::id());
    let slices = Slices(vec![
        format!("{top}.slice"),
        format!("{top}.slice/{pod}.slice"),
    ]);
    let job = format!("{}/cri-containerd-{id}.scope", slices.0[1]);
    let bundle = Bundle::new()
        .set(
            &["linux", "cgroupsPath"],
            json!(format!("{pod}.slice:cri-containerd:{id}")),
        )
        .sh("sleep 60 & while :; do sleep 0.05; done");
    let guard = rt.guard_at(&id, &job);
    rt.create(&id, &bundle).ok("create");
    rt.start(&id).ok("start");
    let pid = rt.pid(&id);
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let (_, path) = line.rsplit_once(':').unwrap();
        if line.contains(":memory:") || line.starts_with("0::") {
            assert_eq!(path, format!("/{job}"), "{line}");
        }
    }
    assert!(guard.cgroup_dir("memory").exists());

    rt.cli(&["update", "--memory", "104857600", &id])
        .ok("update");
    assert_eq!(
        fs::read_to_string(guard.cgroup_dir("memory").join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "104857600"
    );
    let stats = rt.cli(&["events", "--stats", &id]).ok("events --stats");
    let event: Value = serde_json::from_str(stats.stdout_text().trim()).unwrap();
    assert!(
        pids_current(&event).is_some_and(|n| n >= 2),
        "the job's processes are counted: {event}"
    );
    rt.cli(&["pause", &id]).ok("pause");
    assert_eq!(rt.status(&id), "paused");
    let v2_freeze = Path::new("/sys/fs/cgroup/unified")
        .join(&job)
        .join("cgroup.freeze");
    let frozen = match fs::read_to_string(&v2_freeze) {
        Ok(value) => value.trim() == "1",
        Err(_) => fs::read_to_string(guard.cgroup_dir("freezer").join("freezer.state"))
            .is_ok_and(|state| state.trim() == "FROZEN"),
    };
    assert!(frozen, "pause froze the job's cgroup");
    rt.cli(&["resume", &id]).ok("resume");
    rt.cli(&["kill", "--all", &id, "KILL"]).ok("kill --all");
    assert!(wait_until(Duration::from_secs(5), || processes_in_cgroup(
        &job
    )
    .is_empty()));
    rt.delete(&id).ok("delete");
    drop(guard);
    rt.assert_gone_at(&id, &job);
}

#[test]
fn invalid_systemd_paths_are_refused_with_the_rule_they_break() {
    let rt = Runtime::new();
    for (path, rule) in [
        ("system.slice:hpt", "slice:prefix:name"),
        ("a--b.slice:hpt:x", "non-empty names"),
        ("system:hpt:x", "ends in"),
    ] {
        let id = unique_id("sdbad");
        let _c = rt.guard(&id);
        let out = rt.create(
            &id,
            &Bundle::new()
                .set(&["linux", "cgroupsPath"], json!(path))
                .args(&["/bin/true"]),
        );
        out.fails_with(rule);
        rt.assert_gone(&id);
    }
}
