//! A job's cgroups as data: how the host mounts cgroups (`layout`), the job's directories in
//! each hierarchy (`CgroupRecord`, named by [`plan_record`]), the file writes its limits become
//! (`settings`) and systemd's `slice:prefix:name` paths (`systemd`). `sys::linux::cgroup` makes,
//! writes, reads and removes what these name.

pub mod layout;
pub mod settings;
pub mod systemd;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::resources::ResourceRequest;

use layout::{Kind, Layout, V1_CONTROLLERS};

/// The cgroup directories of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupRecord {
    /// The job's path below each hierarchy's root.
    pub relative: String,
    /// The kind of host the job was made on (a record written before it was noted was made
    /// on this host: then it is this host's).
    #[cfg_attr(
        target_os = "linux",
        serde(default = "crate::sys::linux::cgroup::layout::this_hosts_kind")
    )]
    #[cfg_attr(not(target_os = "linux"), serde(default))]
    pub layout: Kind,
    /// The job's directory in the v2 tree (on a pure v2 host, where limits go too).
    pub unified: Option<PathBuf>,
    /// v1 controller name → the job's directory in that hierarchy.
    pub v1: Vec<(String, PathBuf)>,
    /// The file (in the container's state directory) that lists each job directory this
    /// container made, written as it makes them: it signals and removes only those, never a
    /// directory of the same name another container made first. Empty in a record written
    /// before the runtime noted ownership: then every directory counts as made.
    #[serde(default)]
    pub made: PathBuf,
    /// What this process made, when it is the one creating or updating the job: the truth
    /// about ownership, which the list on disk may lack after a crash between a `mkdir` and
    /// its note.
    #[serde(skip)]
    pub made_now: Option<Vec<PathBuf>>,
    /// The systemd unit of a job given as `slice:prefix:name`: where systemd is init, the job
    /// is also that transient scope.
    #[serde(default)]
    pub unit: Option<systemd::Unit>,
}

/// Names the job's directories (nothing is made). `v2_freeze`: the host's v2 tree has
/// `cgroup.freeze` (Linux 5.2 and later), so no v1 freezer is joined.
pub fn plan_record(
    layout: &Layout,
    relative: &str,
    request: &ResourceRequest,
    v2_freeze: bool,
) -> CgroupRecord {
    let relative = relative.trim_start_matches('/');
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for (controller, mount) in layout.v1() {
        let wanted = match controller.as_str() {
            "cpu" => request.cpu_cap.is_some() || request.cpu_weight.is_some(),
            "cpuset" => request.cpuset_cpus.is_some() || request.cpuset_mems.is_some(),
            "freezer" => layout.unified().is_none() || !v2_freeze,
            c => V1_CONTROLLERS.contains(&c),
        };
        if wanted {
            v1.push((controller.clone(), mount.join(relative)));
        }
    }
    // A controller co-mounted with a joined one (cpu,cpuacct) is joined with it: it is the
    // same directory, which a later join could not make again.
    for (controller, mount) in layout.v1() {
        let dir = mount.join(relative);
        if v1.iter().any(|(_, d)| *d == dir) && !v1.iter().any(|(c, _)| c == controller) {
            v1.push((controller.clone(), dir));
        }
    }
    CgroupRecord {
        relative: relative.to_string(),
        layout: layout.kind(),
        unified: layout.unified().map(|u| u.join(relative)),
        v1,
        made: PathBuf::new(),
        made_now: None,
        unit: None,
    }
}

/// Every distinct directory of the job (co-mounted v1 controllers share one).
pub fn dirs(record: &CgroupRecord) -> Vec<&Path> {
    let mut out: Vec<&Path> = Vec::new();
    for dir in record
        .unified
        .iter()
        .map(PathBuf::as_path)
        .chain(record.v1.iter().map(|(_, d)| d.as_path()))
    {
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// The job's directory that holds a controller's files (v1: that hierarchy; v2: the job).
pub fn controller_dir<'a>(record: &'a CgroupRecord, controller: &str) -> Option<&'a Path> {
    if record.layout == Kind::V2 {
        return record.unified.as_deref();
    }
    record
        .v1
        .iter()
        .find(|(c, _)| c == controller)
        .map(|(_, d)| d.as_path())
}

/// The v1 hierarchies' `tasks` files a new process writes "0" into (it joins the v2 tree at
/// fork). While the process has one thread, `tasks` moves all of it, and moving the writing
/// thread itself skips the kernel's global threadgroup lock, whose first taker after a quiet
/// spell waits for an RCU grace period (5–30 ms here; `cgroup.procs` always takes it).
pub fn v1_tasks_files(record: &CgroupRecord) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for (_, dir) in &record.v1 {
        let file = dir.join("tasks");
        if !files.contains(&file) && Some(dir) != record.unified.as_ref() {
            files.push(file);
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::layout::tests::HYBRID;
    use super::*;

    #[test]
    fn cpuset_is_joined_only_when_asked_for() {
        let hybrid = Layout::from_mountinfo(HYBRID);
        let record = plan_record(
            &hybrid,
            "/hostprocess/c1",
            &ResourceRequest::default(),
            true,
        );
        assert!(!record.v1.iter().any(|(c, _)| c == "cpuset" || c == "cpu"));
        assert!(record.v1.iter().any(|(c, _)| c == "memory"));
        let request = ResourceRequest {
            cpuset_cpus: Some("0".into()),
            ..ResourceRequest::default()
        };
        let record = plan_record(&hybrid, "/hostprocess/c1", &request, true);
        assert!(record
            .v1
            .iter()
            .any(|(c, d)| c == "cpuset" && d == Path::new("/sys/fs/cgroup/cpuset/hostprocess/c1")));
    }

    #[test]
    fn a_hybrid_job_joins_v1_cpuacct_and_what_is_co_mounted_with_it() {
        let hybrid = Layout::from_mountinfo(HYBRID);
        let record = plan_record(
            &hybrid,
            "/hostprocess/c1",
            &ResourceRequest::default(),
            true,
        );
        assert!(
            record.v1.iter().any(|(c, _)| c == "cpuacct"),
            "v1 cpuacct.usage must be the job's own: {record:?}"
        );
        let co_mounted = Layout::from_mountinfo(
            "35 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        );
        let record = plan_record(
            &co_mounted,
            "/hostprocess/c1",
            &ResourceRequest::default(),
            true,
        );
        let dir = Path::new("/sys/fs/cgroup/cpu,cpuacct/hostprocess/c1");
        for controller in ["cpu", "cpuacct"] {
            assert!(
                record.v1.iter().any(|(c, d)| c == controller && d == dir),
                "{controller} shares the directory: {record:?}"
            );
        }
    }

    #[test]
    fn the_v1_freezer_is_joined_only_where_the_v2_tree_cannot_freeze() {
        let freezer = "35 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                       36 25 0:31 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
                       37 25 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        let joins_freezer = |layout: &Layout, v2_freeze: bool| {
            plan_record(
                layout,
                "/hostprocess/c1",
                &ResourceRequest::default(),
                v2_freeze,
            )
            .v1
            .iter()
            .any(|(c, _)| c == "freezer")
        };
        let hybrid = Layout::from_mountinfo(freezer);
        assert!(!joins_freezer(&hybrid, true), "cgroup.freeze does it");
        assert!(joins_freezer(&hybrid, false), "a kernel before 5.2");
        let v1_only = Layout::from_mountinfo(&freezer.replace("cgroup2 cgroup2", "tmpfs tmpfs"));
        assert_eq!(v1_only.kind(), Kind::V1);
        assert!(joins_freezer(&v1_only, true), "no v2 tree to freeze");
    }

    #[test]
    fn the_record_names_each_directory_once_and_each_controllers_home() {
        let hybrid = Layout::from_mountinfo(HYBRID);
        let record = plan_record(&hybrid, "hostprocess/c1", &ResourceRequest::default(), true);
        assert_eq!(record.relative, "hostprocess/c1");
        assert_eq!(record.layout, Kind::Hybrid);
        let unified = Path::new("/sys/fs/cgroup/unified/hostprocess/c1");
        assert_eq!(record.unified.as_deref(), Some(unified));
        let memory = Path::new("/sys/fs/cgroup/memory/hostprocess/c1");
        assert_eq!(controller_dir(&record, "memory"), Some(memory));
        assert_eq!(controller_dir(&record, "cpuset"), None, "not joined");
        let all = dirs(&record);
        assert_eq!(all.first(), Some(&unified), "the v2 tree first");
        assert_eq!(all.len(), 1 + record.v1.len());
        assert!(v1_tasks_files(&record).contains(&memory.join("tasks")));
        assert!(!v1_tasks_files(&record).contains(&unified.join("tasks")));

        let v2 = Layout::from_mountinfo("30 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw");
        let record = plan_record(&v2, "/hostprocess/c1", &ResourceRequest::default(), true);
        let job = Path::new("/sys/fs/cgroup/hostprocess/c1");
        assert_eq!(
            controller_dir(&record, "memory"),
            Some(job),
            "a v2 job's limits are in its own directory"
        );
        assert_eq!(dirs(&record), vec![job]);
        assert!(v1_tasks_files(&record).is_empty());
    }
}
