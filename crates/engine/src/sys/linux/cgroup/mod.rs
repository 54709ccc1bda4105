//! The job on Linux: one cgroup, on a pure cgroup v2 host or on a v1/hybrid host (v1
//! controllers for limits and accounting, plus the v2 tree for `cgroup.kill`, `cgroup.freeze`
//! and `cgroup.events` when it is mounted).
//!
//! What the job is made of is decided in `sys::linuxlogic::cgroup` (the layout, the record of
//! the job's directories, the limits as file writes, systemd's paths); here it is executed:
//! `layout` reads how this host mounts cgroups, `settings` writes the limits, `stats` reads the
//! figures back, `scope` registers a job with systemd where it is init, and this file makes,
//! signals, freezes and removes the job's directories.

pub mod layout;
pub mod scope;
pub mod settings;
pub mod stats;

pub use crate::sys::linuxlogic::cgroup::systemd;
pub use crate::sys::linuxlogic::cgroup::{controller_dir, dirs, v1_tasks_files, CgroupRecord};

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::plan::resources::ResourceRequest;

pub use layout::{is_unified_only, Kind, Layout};
pub use settings::{apply, settings_for, update_settings, write_file};
pub use stats::stats;

use layout::kernel_at_least;

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

/// Makes the job's own directory, which must be new: the mkdir that succeeds is this
/// container's claim on the path, noted in `made` before anything else happens. Any missing
/// ancestor is made too (it may exist, or be made meanwhile by another container): one mkdir
/// in the usual case.
fn make_dir(dir: &Path, is_cpuset: bool, made: &mut MadeList) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Error::io(
                "create cgroup",
                dir,
                std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "a cgroup of that name exists: another container uses it",
                ),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                make_ancestor(parent, is_cpuset)?;
            }
            fs::create_dir(dir).map_err(|e| Error::io("create cgroup", dir, e))?;
        }
        Err(e) => return Err(Error::io("create cgroup", dir, e)),
    }
    if let Err(e) = made.note(dir) {
        let _ = fs::remove_dir(dir);
        return Err(e);
    }
    inherit_cpuset(dir, is_cpuset)
}

/// The list of job directories a container made, open for appending while it makes them.
struct MadeList<'a> {
    path: &'a Path,
    /// None for a record without a list (see [`CgroupRecord::made`]).
    file: Option<fs::File>,
    /// What was noted through this list.
    dirs: Vec<PathBuf>,
}

impl MadeList<'_> {
    fn open(path: &Path) -> Result<MadeList<'_>> {
        let file = if path.as_os_str().is_empty() {
            None
        } else {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io("open", path, e))?;
            Some(file)
        };
        Ok(MadeList {
            path,
            file,
            dirs: Vec::new(),
        })
    }

    /// Appends `dir` (one write of one line).
    fn note(&mut self, dir: &Path) -> Result<()> {
        self.dirs.push(dir.to_path_buf());
        let Some(mut file) = self.file.as_ref() else {
            return Ok(());
        };
        let mut line = dir.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        file.write_all(&line)
            .map_err(|e| Error::io("write", self.path, e))
    }
}

/// The directories the container made; None for a record without a list (all of them).
fn made_dirs(record: &CgroupRecord) -> Option<Vec<PathBuf>> {
    if let Some(now) = &record.made_now {
        return Some(now.clone());
    }
    if record.made.as_os_str().is_empty() {
        return None;
    }
    let text = fs::read(&record.made).unwrap_or_default();
    Some(
        text.split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| PathBuf::from(std::ffi::OsStr::from_bytes(line)))
            .collect(),
    )
}

fn is_made(made: &Option<Vec<PathBuf>>, dir: &Path) -> bool {
    made.as_ref()
        .is_none_or(|made| made.iter().any(|d| d == dir))
}

/// Whether every directory of the job is this container's: only then are its processes this
/// container's to signal.
pub fn owns_job(record: &CgroupRecord) -> bool {
    let made = made_dirs(record);
    dirs(record).into_iter().all(|dir| is_made(&made, dir))
}

fn make_ancestor(dir: &Path, is_cpuset: bool) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => inherit_cpuset(dir, is_cpuset),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                make_ancestor(parent, is_cpuset)?;
            }
            make_ancestor(dir, is_cpuset)
        }
        Err(e) => Err(Error::io("create cgroup", dir, e)),
    }
}

/// A new v1 cpuset directory starts empty, and the kernel refuses tasks in it: give it its
/// parent's CPUs and memory nodes.
fn inherit_cpuset(dir: &Path, is_cpuset: bool) -> Result<()> {
    if let (true, Some(parent)) = (is_cpuset, dir.parent()) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = fs::read_to_string(parent.join(file))
                .map_err(|e| Error::io("read", parent.join(file), e))?;
            write_file(dir, file, value.trim())?;
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

/// Removes the job's directories this container made; they must be empty of processes.
/// Missing ones are skipped.
pub fn destroy(record: &CgroupRecord) -> Result<()> {
    let made = made_dirs(record);
    // Read back after a crash: a directory the create made but had no time to note (killed
    // in its mkdir) is removed too while it is empty of processes, which a running job's
    // never is; nothing is killed for it.
    let after_a_crash = record.made_now.is_none() && made.is_some();
    for dir in dirs(record) {
        if !is_made(&made, dir) {
            if after_a_crash {
                let _ = fs::remove_dir(dir);
            }
            continue;
        }
        let mut tries = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                // Exiting processes leave the cgroup a moment after they are reaped.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(Error::io("remove cgroup", dir, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_a_container_made_are_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("memory/job");
        let theirs = tmp.path().join("pids/job");
        fs::create_dir_all(&theirs).unwrap();
        let mut record = CgroupRecord {
            v1: vec![
                ("memory".into(), mine.clone()),
                ("pids".into(), theirs.clone()),
            ],
            made: tmp.path().join("made"),
            ..CgroupRecord::default()
        };
        let mut made = MadeList::open(&record.made).unwrap();
        make_dir(&mine, false, &mut made).unwrap();
        let err = make_dir(&theirs, false, &mut made).unwrap_err();
        assert!(
            err.to_string().contains("another container uses it"),
            "{err}"
        );
        record.made_now = Some(made.dirs);
        assert!(!owns_job(&record), "half the job is another container's");
        destroy(&record).unwrap();
        assert!(!mine.exists(), "what it made is removed");
        assert!(theirs.exists(), "what it did not make is left alone");

        // Read back after a crash: the list on disk names what was noted; a directory made
        // but not noted yet goes only while empty (a file stands in for processes here).
        fs::create_dir(&mine).unwrap();
        fs::write(theirs.join("cgroup.procs"), "1").unwrap();
        let crashed = CgroupRecord {
            made_now: None,
            ..record.clone()
        };
        assert!(!owns_job(&crashed));
        destroy(&crashed).unwrap();
        assert!(!mine.exists(), "an empty job directory is removed");
        assert!(theirs.exists(), "a populated one is left alone");

        let legacy = CgroupRecord {
            made: PathBuf::new(),
            ..crashed
        };
        assert!(owns_job(&legacy), "a record without the list owns its job");
    }

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
