//! The job's cgroup: systemd's `slice:prefix:name` paths (the kubelet's systemd cgroup
//! driver), made in cgroupfs without systemd as PID 1 at the path runc's systemd driver expands
//! them to; a cgroup path claimed by one container only, whatever races for it; v1 accounting
//! on hybrid hosts.

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

/// Containers that raced for one cgroup path: deleted together, then checked for leftovers,
/// so no check runs while another racer still holds the path.
struct Racers<'a> {
    containers: Vec<(&'a Runtime, String)>,
    cgroup: String,
}

impl Drop for Racers<'_> {
    fn drop(&mut self) {
        for (rt, id) in &self.containers {
            rt.delete_force(id);
        }
        let left: Vec<String> = self
            .containers
            .iter()
            .flat_map(|(rt, id)| rt.leftovers(id, &self.cgroup))
            .collect();
        if left.is_empty() {
            return;
        }
        for (rt, id) in &self.containers {
            // Scrubs what is left, then panics: caught while already unwinding.
            let check = || rt.assert_gone_at(id, &self.cgroup);
            if std::thread::panicking() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
            } else {
                check();
            }
        }
    }
}

/// Creates `racers` at once; returns which of them succeeded.
fn race(racers: &[(&Runtime, &str)], bundle: &Bundle) -> Vec<bool> {
    std::thread::scope(|s| {
        let handles: Vec<_> = racers
            .iter()
            .map(|(rt, id)| s.spawn(move || rt.create(id, bundle)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread").status.success())
            .collect()
    })
}

/// The winner of a race holds the job: its init lives in the cgroup, which exists.
fn assert_winner_intact(rt: &Runtime, id: &str, cgroup: &str, round: usize) {
    let pid = rt.pid(id);
    assert!(
        !is_gone(pid),
        "round {round}: the loser's cleanup killed the winner {id}"
    );
    assert!(
        processes_in_cgroup(cgroup).contains(&pid),
        "round {round}: the winner's init {pid} is no longer in '{cgroup}'"
    );
}

#[test]
fn racing_creates_of_one_cgroup_path_never_harm_the_winner() {
    let rt = Runtime::new();
    let parent = unique_name("hpt-race-");
    let _parent = Slices(vec![parent.clone()]);
    for round in 0..15 {
        let cgroup = format!("{parent}/job{round}");
        let (a, b) = (unique_id("racea"), unique_id("raceb"));
        let _racers = Racers {
            containers: vec![(&rt, a.clone()), (&rt, b.clone())],
            cgroup: cgroup.clone(),
        };
        let bundle = Bundle::new()
            .set(&["linux", "cgroupsPath"], json!(format!("/{cgroup}")))
            .args(&["/bin/sleep", "60"]);
        let won = race(&[(&rt, &a), (&rt, &b)], &bundle);
        assert_ne!(won, [true, true], "round {round}: both took one cgroup");
        for (id, won) in [(&a, won[0]), (&b, won[1])] {
            if won {
                assert_winner_intact(&rt, id, &cgroup, round);
            } else {
                rt.assert_gone(id);
            }
        }
    }
}

#[test]
fn the_same_id_in_two_state_roots_never_tears_down_the_other() {
    let (first, second) = (Runtime::new(), Runtime::new());
    for round in 0..10 {
        let id = unique_id("tworoots");
        let cgroup = format!("hostprocess/{id}");
        let _racers = Racers {
            containers: vec![(&first, id.clone()), (&second, id.clone())],
            cgroup: cgroup.clone(),
        };
        let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
        let won = race(&[(&first, &id), (&second, &id)], &bundle);
        assert_ne!(won, [true, true], "round {round}: both took one cgroup");
        let Some(winner) = won.iter().position(|w| *w) else {
            continue;
        };
        let (winner, loser) = if winner == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        assert_winner_intact(winner, &id, &cgroup, round);
        loser
            .create(&id, &bundle)
            .fails_with("another container uses it");
        loser.delete_force(&id).ok("delete --force where it lost");
        assert_winner_intact(winner, &id, &cgroup, round);
    }
}

#[test]
fn a_hybrid_hosts_v1_cpuacct_counts_the_containers_own_cpu_time() {
    let cpuacct = Path::new("/sys/fs/cgroup/cpuacct");
    if !cpuacct.join("cpuacct.usage").exists() {
        skipped(
            "a_hybrid_hosts_v1_cpuacct_counts_the_containers_own_cpu_time",
            "no v1 cpuacct hierarchy at /sys/fs/cgroup/cpuacct",
        );
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("cpuacct");
    let (guard, pid) = rt.started(&id, &Bundle::new().sh("while :; do :; done"));
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&format!(":cpuacct:/hostprocess/{id}\n")),
        "{cgroups}"
    );
    let usage = || {
        fs::read_to_string(guard.cgroup_dir("cpuacct").join("cpuacct.usage"))
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || usage() > 10_000_000),
        "the job's own cpuacct.usage counts its busy loop: {}",
        usage()
    );
    let root_usage: u64 = fs::read_to_string(cpuacct.join("cpuacct.usage"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(usage() < root_usage, "the job's figure is not the root's");
}
