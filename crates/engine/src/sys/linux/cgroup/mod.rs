//! The job on Linux: one cgroup, on a pure cgroup v2 host or on a v1/hybrid host (v1
//! controllers for limits and accounting, plus the v2 tree for `cgroup.kill`, `cgroup.freeze`
//! and `cgroup.events` when it is mounted).
//!
//! What the job is made of is decided in `sys::linuxlogic::cgroup` (the layout, the record of
//! the job's directories, the limits as file writes, systemd's paths); here it is executed:
//! `layout` reads how this host mounts cgroups, `settings` writes the limits, `stats` reads the
//! figures back, `scope` registers a job with systemd where it is init, `ownership` makes,
//! notes and removes the directories that are this container's, and this file makes the job,
//! joins controllers an update adds, and signals and freezes its processes.

pub mod layout;
mod ownership;
pub mod scope;
pub mod settings;
pub mod stats;

pub use crate::sys::linuxlogic::cgroup::systemd;
pub use crate::sys::linuxlogic::cgroup::{controller_dir, dirs, v1_tasks_files, CgroupRecord};

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::plan::resources::ResourceRequest;

pub use layout::{is_unified_only, Kind, Layout};
pub use ownership::{destroy, destroy_with, make_ancestor, owns_job, Ownership};
pub use settings::{apply, settings_for, update_settings, write_file};
pub use stats::stats;

use layout::kernel_at_least;
use ownership::{make_dir, MadeList};

/// Names the job's directories on this host (nothing is made).
pub fn plan_record(layout: &Layout, relative: &str, request: &ResourceRequest) -> CgroupRecord {
    // cgroup.freeze exists in every non-root v2 cgroup since Linux 5.2.
    crate::sys::linuxlogic::cgroup::plan_record(layout, relative, request, kernel_at_least(5, 2))
}

/// Makes the directories and applies the limits. A v1 cpuset directory gets its parent's CPUs
/// and memory nodes first, as the kernel refuses tasks in an empty cpuset.
pub fn create(record: &mut CgroupRecord, request: &ResourceRequest, host_cpus: u64) -> Result<()> {
    record.made_now = Some(Vec::new());
    let made_path = record.made.clone();
    let mut made = MadeList::open(&made_path)?;
    let result = (|| -> Result<()> {
        for dir in dirs(record) {
            let is_cpuset = record.v1.iter().any(|(c, d)| c == "cpuset" && d == dir);
            make_dir(dir, is_cpuset, &mut made)?;
        }
        Ok(())
    })();
    record.made_now = Some(made.dirs);
    result?;
    if record.layout == Kind::V2 {
        if let Some(leaf) = &record.unified {
            delegate_controllers(leaf, &record.relative)?;
        }
    }
    apply(record, &settings_for(record, request, host_cpus))
}

/// Controllers a v2 job uses, when the host has them.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

/// On cgroup v2 a job's limit files exist only if every ancestor enables the controller for
/// its children: enable, from the hierarchy's root down to the job's parent, each controller
/// the parent offers and does not enable yet.
pub fn delegate_controllers(leaf: &Path, relative: &str) -> Result<()> {
    let depth = relative.split('/').filter(|c| !c.is_empty()).count();
    let mut ancestors: Vec<&Path> = leaf.ancestors().skip(1).take(depth).collect();
    ancestors.reverse();
    for dir in ancestors {
        let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let missing: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            write_file(dir, "cgroup.subtree_control", &missing.join(" "))?;
        }
    }
    Ok(())
}

/// Joins the v1 controllers `wanted` has and the job lacks (a limit that `update` adds): the
/// directory is made and every process of the job moved into it while the job is frozen, so
/// none escapes by forking meanwhile.
pub fn join_missing(record: &mut CgroupRecord, wanted: &CgroupRecord) -> Result<()> {
    let missing: Vec<(String, PathBuf)> = wanted
        .v1
        .iter()
        .filter(|(c, _)| !record.v1.iter().any(|(have, _)| have == c))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let was_frozen = is_frozen(record);
    if !was_frozen {
        set_frozen(record, true)?;
    }
    let made_path = record.made.clone();
    let mut made = MadeList::open(&made_path)?;
    let result = (|| -> Result<()> {
        for (controller, dir) in &missing {
            make_dir(dir, controller == "cpuset", &mut made)?;
            record.v1.push((controller.clone(), dir.clone()));
            for pid in pids(record)? {
                match fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                    Ok(()) => {}
                    // Exited meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(Error::io("write", dir.join("cgroup.procs"), e)),
                }
            }
        }
        Ok(())
    })();
    if let Some(now) = &mut record.made_now {
        now.append(&mut made.dirs);
    }
    if !was_frozen {
        set_frozen(record, false)?;
    }
    result
}

fn read_pids(dir: &Path) -> Result<Vec<u32>> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", dir.join("cgroup.procs"), e)),
    }
}

pub fn pids(record: &CgroupRecord) -> Result<Vec<u32>> {
    // Every process of the job is in the v2 tree when there is one.
    if let Some(unified) = &record.unified {
        let mut pids = read_pids(unified)?;
        pids.sort_unstable();
        return Ok(pids);
    }
    let mut all = Vec::new();
    for dir in dirs(record) {
        for pid in read_pids(dir)? {
            if !all.contains(&pid) {
                all.push(pid);
            }
        }
    }
    all.sort_unstable();
    Ok(all)
}

/// Signals every process; SIGKILL goes through `cgroup.kill` where the kernel has it, which
/// also catches processes forked while the signal is on its way.
pub fn signal_all(record: &CgroupRecord, signal: i32) -> Result<()> {
    if signal == libc::SIGKILL {
        if let Some(unified) = &record.unified {
            let kill = unified.join("cgroup.kill");
            match fs::write(&kill, "1") {
                Ok(()) => return Ok(()),
                // No cgroup.kill (before Linux 5.14), or the job is gone already.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("write", kill, e)),
            }
        }
    }
    // Without cgroup.kill, repeat until no new process shows up.
    for _ in 0..20 {
        let pids = pids(record)?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in &pids {
            // SAFETY: kill(2) has no memory effects; a vanished pid is ESRCH, ignored.
            unsafe { libc::kill(*pid as libc::pid_t, signal) };
        }
        if signal != libc::SIGKILL {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub fn is_empty(record: &CgroupRecord) -> Result<bool> {
    if let Some(unified) = &record.unified {
        match fs::read_to_string(unified.join("cgroup.events")) {
            Ok(events) => return Ok(events.lines().any(|l| l == "populated 0")),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
            Err(_) => {}
        }
    }
    Ok(pids(record)?.is_empty())
}

pub fn wait_empty(record: &CgroupRecord, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if is_empty(record)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Freezes or thaws the job: `cgroup.freeze` in the v2 tree, else the v1 freezer.
pub fn set_frozen(record: &CgroupRecord, frozen: bool) -> Result<()> {
    if let Some(unified) = record
        .unified
        .as_ref()
        .filter(|u| u.join("cgroup.freeze").exists())
    {
        write_file(unified, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        for _ in 0..1000 {
            let events = fs::read_to_string(unified.join("cgroup.events")).unwrap_or_default();
            if events.lines().any(|l| l == want) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        return Err(Error::sys(
            "freeze",
            std::io::Error::new(
                ErrorKind::TimedOut,
                "the job did not reach the state in 1 s",
            ),
        ));
    }
    let Some((_, dir)) = record.v1.iter().find(|(c, _)| c == "freezer") else {
        return Err(Error::sys(
            "freeze",
            std::io::Error::new(ErrorKind::Unsupported, "no freezer on this host"),
        ));
    };
    let want = if frozen { "FROZEN" } else { "THAWED" };
    for _ in 0..1000 {
        write_file(dir, "freezer.state", want)?;
        if fs::read_to_string(dir.join("freezer.state"))
            .unwrap_or_default()
            .trim()
            == want
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(Error::sys(
        "freeze",
        std::io::Error::new(
            ErrorKind::TimedOut,
            "the job did not reach the state in 1 s",
        ),
    ))
}

pub fn is_frozen(record: &CgroupRecord) -> bool {
    if let Some(unified) = &record.unified {
        if let Ok(v) = fs::read_to_string(unified.join("cgroup.freeze")) {
            return v.trim() == "1";
        }
    }
    record
        .v1
        .iter()
        .find(|(c, _)| c == "freezer")
        .and_then(|(_, d)| fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() != "THAWED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_ancestors_enable_the_controllers_they_offer_down_to_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let parent = root.join("hostprocess");
        let leaf = parent.join("c1");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "cpu memory").unwrap();
        fs::write(parent.join("cgroup.controllers"), "cpu memory pids").unwrap();
        fs::write(parent.join("cgroup.subtree_control"), "").unwrap();
        delegate_controllers(&leaf, "/hostprocess/c1").unwrap();
        // A real cgroup.subtree_control applies "+x" writes; the file here just holds them.
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpuset +io +pids"
        );
        assert_eq!(
            fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert!(
            !leaf.join("cgroup.subtree_control").exists(),
            "the job itself delegates nothing"
        );
    }
}
