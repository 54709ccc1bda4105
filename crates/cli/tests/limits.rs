//! §5: job-wide limits from `linux.resources`, `windows.resources` and the hcsshim annotations,
//! as cgroup v1 settings on this hybrid host, enforced on the whole job and changed live.

mod support;

use std::fs;
use std::time::Duration;

use serde_json::json;
use support::*;

const MIB: u64 = 1024 * 1024;

fn sleeper() -> Bundle {
    Bundle::new().args(&["/bin/sleep", "60"])
}

#[test]
fn a_memory_hog_is_oom_killed_at_its_limit() {
    if let Err(why) = no_active_swap() {
        skipped("a_memory_hog_is_oom_killed_at_its_limit", &why);
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("oom");
    let bundle = Bundle::new()
        .set(
            &["linux", "resources", "memory"],
            json!({ "limit": 64 * MIB }),
        )
        .args(&[
            PYTHON,
            "-c",
            "b = b'x' * (300 << 20); print('survived', len(b))",
        ]);
    let _c = rt.guard(&id);
    let out = rt.run_with(&id, &bundle, &["--keep"]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "run exits 128+SIGKILL for an OOM-killed init; stdout {} stderr {}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(!out.stdout_text().contains("survived"));
    let events = rt.cli(&["events", "--stats", &id]).ok("events --stats");
    let stats: serde_json::Value =
        serde_json::from_str(events.stdout_text().lines().last().unwrap()).unwrap();
    assert!(
        stats["data"]["memory"]["raw"]["oom_kill"].as_u64().unwrap() >= 1,
        "the OOM kill is counted: {stats}"
    );
    assert_eq!(
        stats["data"]["memory"]["usage"]["limit"],
        json!(64 * MIB),
        "{stats}"
    );
}

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    let rt = Runtime::new();
    let id = unique_id("pids");
    let fork_loop = "\
import os, sys, time
children, error = 0, ''
for _ in range(50):
    try:
        pid = os.fork()
    except OSError as e:
        error = e.strerror
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
print(children, error)
sys.stdout.flush()
";
    let bundle = Bundle::new()
        .set(&["linux", "resources", "pids"], json!({ "limit": 16 }))
        .args(&[PYTHON, "-c", fork_loop]);
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    let text = out.stdout_text();
    let (count, error) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let count: u32 = count.parse().unwrap_or_else(|_| panic!("{text}"));
    assert!(
        count <= 15,
        "{count} children next to init under pids.limit 16"
    );
    assert!(count >= 1, "{text}");
    assert_eq!(error, "Resource temporarily unavailable");
}

#[test]
fn the_pids_limit_holds_for_the_whole_job_including_exec() {
    let rt = Runtime::new();
    let id = unique_id("pidsjob");
    let bundle = Bundle::new()
        .set(&["linux", "resources", "pids"], json!({ "limit": 4 }))
        .sh("sleep 60 & sleep 60 & exec sleep 60");
    let (c, _pid) = rt.started(&id, &bundle);
    assert_eq!(c.cgroup_file("pids", "pids.max"), "4");
    assert!(wait_until(Duration::from_secs(3), || c
        .cgroup_file("pids", "pids.current")
        == "3"));
    // One more fits, the one after that does not.
    let out = rt.exec(&id, &["/bin/sh", "-c", "sleep 30 & echo started; wait"]);
    assert!(
        !out.status.success() || !out.stdout_text().contains("started"),
        "a fifth process started in a job limited to 4: {}",
        out.stdout_text()
    );
}

#[test]
fn windows_cpu_count_becomes_a_quota_of_that_many_cpus() {
    let rt = Runtime::new();
    let id = unique_id("cpucount");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "count": 1 }));
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "100000");
}

#[test]
fn windows_cpu_maximum_becomes_that_share_of_all_host_cpus() {
    let rt = Runtime::new();
    let id = unique_id("cpumax");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "maximum": 5000 }));
    let (c, _) = rt.started(&id, &bundle);
    // 50% of the host: half of every CPU's period.
    let want = host_cpus() * 100_000 / 2;
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), want.to_string());
}

#[test]
fn windows_cpu_shares_become_v1_cpu_shares() {
    let rt = Runtime::new();
    let id = unique_id("cpushares");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "shares": 5000 }));
    let (c, _) = rt.started(&id, &bundle);
    // Windows shares are a cgroup v2 weight (1-10000); v1 shares are runc's inverse of its
    // shares→weight conversion: 2 + (w - 1) * 262142 / 9999.
    let want = 2 + (5000 - 1) * 262_142 / 9_999;
    assert_eq!(c.cgroup_file("cpu", "cpu.shares"), want.to_string());
    assert_eq!(
        c.cgroup_file("cpu", "cpu.cfs_quota_us"),
        "-1",
        "shares alone set no cap"
    );
}

#[test]
fn linux_cpu_settings_are_written_as_given() {
    let rt = Runtime::new();
    let id = unique_id("linuxcpu");
    let bundle = sleeper().set(
        &["linux", "resources", "cpu"],
        json!({ "shares": 512, "quota": 25000, "period": 50000 }),
    );
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(c.cgroup_file("cpu", "cpu.shares"), "512");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_period_us"), "50000");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "25000");
}

#[test]
fn hcsshim_annotations_override_the_spec() {
    let rt = Runtime::new();
    let id = unique_id("annot");
    let bundle = sleeper()
        .set(
            &["windows", "resources", "memory"],
            json!({ "limit": 64 * MIB }),
        )
        .annotation("io.microsoft.container.memory.sizeinmb", "96")
        .annotation("io.microsoft.container.processor.count", "1");
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (96 * MIB).to_string()
    );
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "100000");
}

#[test]
fn windows_memory_limit_is_the_job_memory_limit() {
    let rt = Runtime::new();
    let id = unique_id("winmem");
    let bundle = sleeper().set(
        &["windows", "resources", "memory"],
        json!({ "limit": 80 * MIB }),
    );
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (80 * MIB).to_string()
    );
}

#[test]
fn windows_storage_bandwidth_throttles_every_host_disk() {
    let disks: Vec<String> = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram")
        })
        .filter_map(|e| fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().to_string())
        .collect();
    assert!(!disks.is_empty(), "this host has a disk");
    let rt = Runtime::new();
    let id = unique_id("bps");
    let bundle = sleeper().set(
        &["windows", "resources", "storage"],
        json!({ "bps": 1048576 }),
    );
    let (c, _) = rt.started(&id, &bundle);
    let read = c.cgroup_file("blkio", "blkio.throttle.read_bps_device");
    let write = c.cgroup_file("blkio", "blkio.throttle.write_bps_device");
    for disk in &disks {
        assert!(read.contains(&format!("{disk} 1048576")), "{disk}: {read}");
        assert!(
            write.contains(&format!("{disk} 1048576")),
            "{disk}: {write}"
        );
    }
}

#[test]
fn update_changes_memory_and_pids_limits_live() {
    let rt = Runtime::new();
    let id = unique_id("update");
    let bundle = sleeper()
        .set(
            &["linux", "resources", "memory"],
            json!({ "limit": 64 * MIB }),
        )
        .set(&["linux", "resources", "pids"], json!({ "limit": 20 }));
    let (c, pid) = rt.started(&id, &bundle);
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );

    let memory = (128 * MIB).to_string();
    rt.cli(&["update", "--memory", &memory, &id])
        .ok("update --memory");
    assert_eq!(c.cgroup_file("memory", "memory.limit_in_bytes"), memory);
    assert_eq!(c.cgroup_file("pids", "pids.max"), "20", "other limits stay");

    rt.cli(&["update", "--pids-limit", "30", &id])
        .ok("update --pids-limit");
    assert_eq!(c.cgroup_file("pids", "pids.max"), "30");
    assert_eq!(c.cgroup_file("memory", "memory.limit_in_bytes"), memory);

    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(&doc, json!({ "memory": { "limit": 96 * MIB } }).to_string()).unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r linux");
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (96 * MIB).to_string()
    );

    fs::write(
        &doc,
        json!({ "windows": { "memory": { "limit": 80 * MIB } } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r windows");
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (80 * MIB).to_string()
    );

    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn update_changes_the_cpu_cap_of_a_capped_container() {
    let rt = Runtime::new();
    let id = unique_id("updcpu");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "maximum": 5000 }));
    let (c, _) = rt.started(&id, &bundle);
    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(
        &doc,
        json!({ "windows": { "cpu": { "count": 1 } } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r windows cpu");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "100000");
    rt.cli(&[
        "update",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "100000",
        &id,
    ])
    .ok("update --cpu-quota");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "30000");
}

#[test]
fn update_adds_a_cpu_cap_to_a_container_created_without_one() {
    // runc and §5 allow any limit to be set live, not only the ones given at create.
    let rt = Runtime::new();
    let id = unique_id("updaddcpu");
    let (c, _) = rt.started(&id, &sleeper());
    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(
        &doc,
        json!({ "windows": { "cpu": { "count": 1 } } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r windows cpu.count on an uncapped container");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "100000");
    let pid = rt.pid(&id);
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups
            .lines()
            .any(|l| l.contains(":cpu:") && l.ends_with(&c.cgroup)),
        "init is in the job's cpu cgroup: {cgroups}"
    );
}

#[test]
fn update_refuses_conflicting_windows_cpu_limits() {
    let rt = Runtime::new();
    let id = unique_id("updconf");
    let bundle = sleeper().set(&["linux", "resources", "cpu"], json!({ "shares": 512 }));
    let (c, _) = rt.started(&id, &bundle);
    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(
        &doc,
        json!({ "windows": { "cpu": { "count": 1, "maximum": 5000 } } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .fails_with("are mutually exclusive");
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(c.cgroup_file("cpu", "cpu.shares"), "512");
}

#[test]
fn cpuset_from_the_spec_is_applied() {
    let rt = Runtime::new();
    let id = unique_id("cpuset");
    let bundle = sleeper().set(&["linux", "resources", "cpu"], json!({ "cpus": "0" }));
    let (c, pid) = rt.started(&id, &bundle);
    assert_eq!(c.cgroup_file("cpuset", "cpuset.cpus"), "0");
    assert_eq!(status_field(pid, "Cpus_allowed_list"), "0");
}

#[test]
fn update_sets_cpuset_cpus_live() {
    let rt = Runtime::new();
    let id = unique_id("updcpuset");
    let (c, pid) = rt.started(&id, &sleeper());
    rt.cli(&["update", "--cpuset-cpus", "0", &id])
        .ok("update --cpuset-cpus on a container created without cpusets");
    assert_eq!(c.cgroup_file("cpuset", "cpuset.cpus"), "0");
    assert_eq!(status_field(pid, "Cpus_allowed_list"), "0");
}

#[test]
fn update_switching_windows_cpu_count_to_shares_removes_the_cap() {
    // The Windows CPU fields are mutually exclusive: an update to shares replaces the count.
    let rt = Runtime::new();
    let id = unique_id("updswitch");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "count": 1 }));
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "100000");
    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(
        &doc,
        json!({ "windows": { "cpu": { "shares": 5000 } } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r windows cpu.shares");
    assert_eq!(
        c.cgroup_file("cpu", "cpu.shares"),
        (2 + (5000 - 1) * 262_142 / 9_999).to_string()
    );
    assert_eq!(
        c.cgroup_file("cpu", "cpu.cfs_quota_us"),
        "-1",
        "the count is replaced by shares, but the job is still capped"
    );
}

#[test]
fn update_with_minus_one_removes_memory_and_cpu_caps_like_runc() {
    let rt = Runtime::new();
    let id = unique_id("updunset");
    let bundle = sleeper()
        .set(
            &["linux", "resources", "memory"],
            json!({ "limit": 64 * MIB }),
        )
        .set(
            &["linux", "resources", "cpu"],
            json!({ "quota": 50000, "period": 100000 }),
        );
    let (c, _) = rt.started(&id, &bundle);
    let unlimited = fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .unwrap()
        .trim()
        .to_string();
    let dir = open_dir();
    let doc = dir.path().join("resources.json");
    fs::write(
        &doc,
        json!({ "memory": { "limit": -1 }, "cpu": { "quota": -1 } }).to_string(),
    )
    .unwrap();
    rt.cli(&["update", "-r", &doc.to_string_lossy(), &id])
        .ok("update -r with -1");
    assert_eq!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        unlimited,
        "memory.limit -1 (unlimited) was ignored"
    );
    assert_eq!(
        c.cgroup_file("cpu", "cpu.cfs_quota_us"),
        "-1",
        "cpu.quota -1 (no cap) was ignored"
    );
}

#[test]
fn update_flags_accept_minus_one_as_runc_does() {
    let rt = Runtime::new();
    let id = unique_id("updflags");
    let bundle = sleeper().set(
        &["linux", "resources", "memory"],
        json!({ "limit": 64 * MIB }),
    );
    let (c, _) = rt.started(&id, &bundle);
    rt.cli(&["update", "--memory", "-1", "--cpu-quota", "-1", &id])
        .ok("update --memory -1 --cpu-quota -1");
    assert_ne!(
        c.cgroup_file("memory", "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
}

#[test]
fn an_exec_memory_hog_is_charged_to_the_job_and_killed() {
    if let Err(why) = no_active_swap() {
        skipped("an_exec_memory_hog_is_charged_to_the_job_and_killed", &why);
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("exechog");
    let bundle = sleeper().set(
        &["linux", "resources", "memory"],
        json!({ "limit": 48 * MIB }),
    );
    let (_c, init) = rt.started(&id, &bundle);
    let out = rt.exec(
        &id,
        &[PYTHON, "-c", "b = b'x' * (300 << 20); print('survived')"],
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "{} {}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(!is_gone(init), "the OOM killer picks the hog, not init");
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn exec_into_a_job_at_its_pids_limit_fails_clearly() {
    let rt = Runtime::new();
    let id = unique_id("execpids");
    let bundle = sleeper().set(&["linux", "resources", "pids"], json!({ "limit": 1 }));
    let (_c, _init) = rt.started(&id, &bundle);
    let out = rt.exec(&id, &["/bin/true"]);
    assert!(
        !out.status.success(),
        "a second process in a job limited to 1"
    );
    assert!(
        out.stderr_text()
            .contains("Resource temporarily unavailable"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn a_windows_cpu_count_above_the_hosts_is_clamped_to_all_cpus() {
    let rt = Runtime::new();
    let id = unique_id("cpuclamp");
    let bundle = sleeper().set(&["windows", "resources", "cpu"], json!({ "count": 512 }));
    let (c, _) = rt.started(&id, &bundle);
    assert_eq!(
        c.cgroup_file("cpu", "cpu.cfs_quota_us"),
        (host_cpus() * 100_000).to_string()
    );
}
