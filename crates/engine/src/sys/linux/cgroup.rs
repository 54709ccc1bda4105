//! The job on Linux: one cgroup, on a pure cgroup v2 host or on a v1/hybrid host (v1
//! controllers for limits and accounting, plus the v2 tree for `cgroup.kill`, `cgroup.freeze`
//! and `cgroup.events` when it is mounted).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::resources::{CpuCap, CpuWeight, IoRate, ResourceRequest};
use crate::sys::JobStats;

/// v1 controllers a job always joins: accounting (CPU, memory, processes, I/O) and the
/// common limits. `cpu` joins only for CPU limits, `cpuset` for cpusets, and `freezer` only
/// where the v2 tree has no `cgroup.freeze`: every hierarchy joined costs a mkdir, a write and
/// an rmdir on the start path.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "blkio"];
const V1_OPTIONAL: &[&str] = &["cpu", "cpuacct", "cpuset", "freezer"];
const CFS_PERIOD: u64 = 100_000;
const MIN_CFS_QUOTA: u64 = 1_000;
/// Where cgroup filesystems are mounted on every distribution a node runs.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupRecord {
    /// The job's path below each hierarchy's root.
    pub relative: String,
    /// The job's directory in the v2 tree (pure v2: where limits go too).
    pub unified: Option<PathBuf>,
    /// True on a pure v2 host.
    pub unified_only: bool,
    /// v1 controller name → the job's directory in that hierarchy.
    pub v1: Vec<(String, PathBuf)>,
}

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub unified: Option<PathBuf>,
    pub unified_only: bool,
    /// v1 controller → mount point (co-mounted controllers share one).
    pub v1: Vec<(String, PathBuf)>,
}

impl Hierarchy {
    /// A pure v2 host is known from one `statfs` of /sys/fs/cgroup (as runc knows it); any
    /// other is read from `/proc/self/mountinfo`, whose first read by a process costs ~0.1 ms.
    pub fn detect() -> Result<Hierarchy> {
        if let Some(hierarchy) = root_filesystem().and_then(Self::from_root_filesystem) {
            return Ok(hierarchy);
        }
        let mut text = String::with_capacity(16 * 1024);
        fs::File::open("/proc/self/mountinfo")
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        Ok(Self::from_mountinfo(&text))
    }

    /// The whole hierarchy when the filesystem at /sys/fs/cgroup tells it: cgroup2 there
    /// means a pure v2 host.
    pub fn from_root_filesystem(kind: nix::sys::statfs::FsType) -> Option<Hierarchy> {
        (kind == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(|| Hierarchy {
            unified: Some(PathBuf::from(CGROUP_ROOT)),
            unified_only: true,
            v1: Vec::new(),
        })
    }

    pub fn from_mountinfo(text: &str) -> Hierarchy {
        let mut unified = None;
        let mut v1 = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let super_options = right.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" => unified = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for option in super_options.split(',') {
                        if V1_CONTROLLERS.contains(&option) || V1_OPTIONAL.contains(&option) {
                            v1.push((option.to_string(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        Hierarchy {
            unified_only: unified.is_some() && v1.is_empty(),
            unified,
            v1,
        }
    }
}

fn root_filesystem() -> Option<nix::sys::statfs::FsType> {
    nix::sys::statfs::statfs(CGROUP_ROOT)
        .ok()
        .map(|root| root.filesystem_type())
}

/// Whether /sys/fs/cgroup itself is cgroup2 (a pure v2 host; a hybrid host is not).
pub fn is_unified_only() -> bool {
    root_filesystem() == Some(nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// One file write that applies a limit: the controller (v1) or "" (v2), the file, the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

fn setting(controller: &'static str, file: &'static str, value: impl ToString) -> Setting {
    Setting {
        controller,
        file,
        value: value.to_string(),
    }
}

/// CPU quota (µs per [`CFS_PERIOD`]-style period) for a cap: a count of CPUs becomes that many
/// periods, a maximum in hundredths of a percent of the host becomes that share of all CPUs.
pub fn cfs_quota(cap: CpuCap, host_cpus: u64) -> (u64, u64) {
    let host_cpus = host_cpus.max(1);
    match cap {
        CpuCap::Count(count) => (count.clamp(1, host_cpus) * CFS_PERIOD, CFS_PERIOD),
        CpuCap::Maximum(maximum) => (
            (maximum.clamp(1, 10_000) * host_cpus * CFS_PERIOD / 10_000).max(MIN_CFS_QUOTA),
            CFS_PERIOD,
        ),
        CpuCap::Quota { quota, period } => (quota.max(MIN_CFS_QUOTA as i64) as u64, period),
    }
}

/// cgroup v2 `cpu.weight` (1–10000): v1 shares by runc's conversion, Windows shares as they are.
pub fn cpu_weight(weight: CpuWeight) -> u64 {
    match weight {
        CpuWeight::LinuxShares(shares) => {
            let shares = shares.clamp(2, 262_144);
            1 + (shares - 2) * 9_999 / 262_142
        }
        CpuWeight::WindowsShares(shares) => shares.clamp(1, 10_000),
    }
}

/// cgroup v1 `cpu.shares` (2–262144): the inverse of [`cpu_weight`] for Windows shares.
pub fn cpu_shares(weight: CpuWeight) -> u64 {
    match weight {
        CpuWeight::LinuxShares(shares) => shares.clamp(2, 262_144),
        CpuWeight::WindowsShares(shares) => 2 + (shares.clamp(1, 10_000) - 1) * 262_142 / 9_999,
    }
}

/// The per-device throttles, with the job-wide caps spread over every disk of the host.
fn throttles(request: &ResourceRequest, disks: &[(u64, u64)]) -> Vec<(u64, u64, IoRate, u64)> {
    let mut out: Vec<(u64, u64, IoRate, u64)> = request
        .device_throttles
        .iter()
        .map(|t| (t.major, t.minor, t.rate_kind, t.rate))
        .collect();
    for &(major, minor) in disks {
        if let Some(bps) = request.io_bps {
            out.push((major, minor, IoRate::ReadBps, bps));
            out.push((major, minor, IoRate::WriteBps, bps));
        }
        if let Some(iops) = request.io_iops {
            out.push((major, minor, IoRate::ReadIops, iops));
            out.push((major, minor, IoRate::WriteIops, iops));
        }
    }
    out
}

/// The file writes for a cgroup v2 job.
pub fn v2_settings(
    request: &ResourceRequest,
    host_cpus: u64,
    disks: &[(u64, u64)],
) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(limit) = request.memory_limit {
        out.push(setting("", "memory.max", limit));
    }
    if let Some(cap) = request.cpu_cap {
        let (quota, period) = cfs_quota(cap, host_cpus);
        out.push(setting("", "cpu.max", format!("{quota} {period}")));
    }
    if let Some(weight) = request.cpu_weight {
        out.push(setting("", "cpu.weight", cpu_weight(weight)));
    }
    if let Some(cpus) = &request.cpuset_cpus {
        out.push(setting("", "cpuset.cpus", cpus));
    }
    if let Some(mems) = &request.cpuset_mems {
        out.push(setting("", "cpuset.mems", mems));
    }
    if let Some(pids) = request.pids_limit {
        out.push(setting("", "pids.max", pids));
    }
    // io.max takes one line per device with every key that applies to it.
    let mut devices: Vec<((u64, u64), Vec<String>)> = Vec::new();
    for (major, minor, kind, rate) in throttles(request, disks) {
        let key = match kind {
            IoRate::ReadBps => "rbps",
            IoRate::WriteBps => "wbps",
            IoRate::ReadIops => "riops",
            IoRate::WriteIops => "wiops",
        };
        let entry = format!("{key}={rate}");
        match devices.iter_mut().find(|(d, _)| *d == (major, minor)) {
            Some((_, keys)) => keys.push(entry),
            None => devices.push(((major, minor), vec![entry])),
        }
    }
    for ((major, minor), keys) in devices {
        out.push(setting(
            "",
            "io.max",
            format!("{major}:{minor} {}", keys.join(" ")),
        ));
    }
    out
}

/// The file writes for a cgroup v1 job.
pub fn v1_settings(
    request: &ResourceRequest,
    host_cpus: u64,
    disks: &[(u64, u64)],
) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(limit) = request.memory_limit {
        out.push(setting("memory", "memory.limit_in_bytes", limit));
    }
    if let Some(cap) = request.cpu_cap {
        let (quota, period) = cfs_quota(cap, host_cpus);
        out.push(setting("cpu", "cpu.cfs_period_us", period));
        out.push(setting("cpu", "cpu.cfs_quota_us", quota));
    }
    if let Some(weight) = request.cpu_weight {
        out.push(setting("cpu", "cpu.shares", cpu_shares(weight)));
    }
    if let Some(cpus) = &request.cpuset_cpus {
        out.push(setting("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = &request.cpuset_mems {
        out.push(setting("cpuset", "cpuset.mems", mems));
    }
    if let Some(pids) = request.pids_limit {
        out.push(setting("pids", "pids.max", pids));
    }
    for (major, minor, kind, rate) in throttles(request, disks) {
        let file = match kind {
            IoRate::ReadBps => "blkio.throttle.read_bps_device",
            IoRate::WriteBps => "blkio.throttle.write_bps_device",
            IoRate::ReadIops => "blkio.throttle.read_iops_device",
            IoRate::WriteIops => "blkio.throttle.write_iops_device",
        };
        out.push(setting("blkio", file, format!("{major}:{minor} {rate}")));
    }
    out
}

/// The host's whole disks (`/sys/block`, without loop and ram devices), as major:minor.
pub fn host_disks() -> Vec<(u64, u64)> {
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut disks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        if let Ok(dev) = fs::read_to_string(entry.path().join("dev")) {
            if let Some((major, minor)) = dev.trim().split_once(':') {
                if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                    disks.push((major, minor));
                }
            }
        }
    }
    disks.sort();
    disks
}

/// Writes `value` to `dir/file`, naming the file on failure.
pub fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| {
        Error::io(
            "write",
            &path,
            std::io::Error::new(e.kind(), format!("{e} (value {value:?})")),
        )
    })
}

/// Applies settings: v2 settings go to `unified`, v1 settings to their controller's directory.
pub fn apply(record: &CgroupRecord, settings: &[Setting]) -> Result<()> {
    for s in settings {
        let dir = if s.controller.is_empty() {
            record.unified.as_deref()
        } else {
            record
                .v1
                .iter()
                .find(|(c, _)| c == s.controller)
                .map(|(_, d)| d.as_path())
        };
        match dir {
            Some(dir) => write_file(dir, s.file, &s.value)?,
            None => {
                return Err(Error::sys(
                    format!("set {}", s.file),
                    std::io::Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "the {} controller is not available on this host",
                            if s.controller.is_empty() {
                                "cgroup v2"
                            } else {
                                s.controller
                            }
                        ),
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The settings for this host's cgroup layout.
pub fn settings_for(
    record: &CgroupRecord,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<Setting> {
    let disks = if request.io_bps.is_some() || request.io_iops.is_some() {
        host_disks()
    } else {
        Vec::new()
    };
    if record.unified_only {
        v2_settings(request, host_cpus, &disks)
    } else {
        v1_settings(request, host_cpus, &disks)
    }
}

/// What `update` writes: the settings of the new request, and the kernel's "no limit" for each
/// limit the request no longer has, in the controllers the job has joined.
pub fn update_settings(
    record: &CgroupRecord,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<Setting> {
    let mut out = settings_for(record, request, host_cpus);
    let joined = |c: &str| record.v1.iter().any(|(n, _)| n == c);
    if record.unified_only {
        if request.memory_limit.is_none() {
            out.push(setting("", "memory.max", "max"));
        }
        if request.cpu_cap.is_none() {
            out.push(setting("", "cpu.max", format!("max {CFS_PERIOD}")));
        }
        if request.cpu_weight.is_none() {
            out.push(setting("", "cpu.weight", 100));
        }
        if request.pids_limit.is_none() {
            out.push(setting("", "pids.max", "max"));
        }
    } else {
        if request.memory_limit.is_none() && joined("memory") {
            out.push(setting("memory", "memory.limit_in_bytes", -1));
        }
        if request.cpu_cap.is_none() && joined("cpu") {
            out.push(setting("cpu", "cpu.cfs_quota_us", -1));
        }
        if request.cpu_weight.is_none() && joined("cpu") {
            out.push(setting("cpu", "cpu.shares", 1024));
        }
        if request.pids_limit.is_none() && joined("pids") {
            out.push(setting("pids", "pids.max", "max"));
        }
    }
    out
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uname) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uname.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let have_major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let have_minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (have_major, have_minor) >= (major, minor)
}

/// Names the job's directories (nothing is made).
pub fn plan_record(
    hierarchy: &Hierarchy,
    relative: &str,
    request: &ResourceRequest,
) -> CgroupRecord {
    let relative = relative.trim_start_matches('/');
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    if !hierarchy.unified_only {
        for (controller, mount) in &hierarchy.v1 {
            let wanted = match controller.as_str() {
                "cpu" => request.cpu_cap.is_some() || request.cpu_weight.is_some(),
                // The v2 tree's cpu.stat has the job's CPU time without any controller.
                "cpuacct" => hierarchy.unified.is_none(),
                "cpuset" => request.cpuset_cpus.is_some() || request.cpuset_mems.is_some(),
                // cgroup.freeze exists in every non-root v2 cgroup since Linux 5.2.
                "freezer" => hierarchy.unified.is_none() || !kernel_at_least(5, 2),
                c => V1_CONTROLLERS.contains(&c),
            };
            if wanted {
                v1.push((controller.clone(), mount.join(relative)));
            }
        }
    }
    CgroupRecord {
        relative: relative.to_string(),
        unified: hierarchy.unified.as_ref().map(|u| u.join(relative)),
        unified_only: hierarchy.unified_only,
        v1,
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

/// Makes the directories and applies the limits. A v1 cpuset directory gets its parent's CPUs
/// and memory nodes first, as the kernel refuses tasks in an empty cpuset.
pub fn create(record: &CgroupRecord, request: &ResourceRequest, host_cpus: u64) -> Result<()> {
    for dir in dirs(record) {
        let is_cpuset = record.v1.iter().any(|(c, d)| c == "cpuset" && d == dir);
        make_dir(dir, is_cpuset)?;
    }
    if record.unified_only {
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

/// Makes the job's own directory, which must be new, and any missing ancestor (which may
/// exist, or be made meanwhile by another container): one mkdir in the usual case.
fn make_dir(dir: &Path, is_cpuset: bool) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Error::io(
                "create cgroup",
                dir,
                std::io::Error::new(ErrorKind::AlreadyExists, "a cgroup of that name exists"),
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
    inherit_cpuset(dir, is_cpuset)
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
    let result = (|| -> Result<()> {
        for (controller, dir) in &missing {
            make_dir(dir, controller == "cpuset")?;
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
    if !was_frozen {
        set_frozen(record, false)?;
    }
    result
}

/// The job's directory that holds a controller's files (v1: that hierarchy; v2: the job).
pub fn controller_dir<'a>(record: &'a CgroupRecord, controller: &str) -> Option<&'a Path> {
    if record.unified_only {
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
                Err(e) if e.kind() == ErrorKind::NotFound && !unified.exists() => {}
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

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn keyed(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

pub fn stats(record: &CgroupRecord) -> JobStats {
    let mut s = JobStats::default();
    let v1 = |c: &str| {
        record
            .v1
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, d)| d.clone())
    };
    if record.unified_only {
        let Some(dir) = &record.unified else { return s };
        s.cpu_usage_ns = keyed(&dir.join("cpu.stat"), "usage_usec") * 1000;
        s.cpu_user_ns = keyed(&dir.join("cpu.stat"), "user_usec") * 1000;
        s.cpu_system_ns = keyed(&dir.join("cpu.stat"), "system_usec") * 1000;
        s.memory_usage_bytes = read_u64(&dir.join("memory.current"));
        s.memory_peak_bytes = read_u64(&dir.join("memory.peak"));
        s.memory_limit_bytes = read_u64(&dir.join("memory.max"));
        s.memory_cache_bytes = keyed(&dir.join("memory.stat"), "file");
        s.oom_kills = keyed(&dir.join("memory.events"), "oom_kill");
        s.pids_current = read_u64(&dir.join("pids.current"));
        s.pids_limit = read_u64(&dir.join("pids.max"));
        if let Ok(io) = fs::read_to_string(dir.join("io.stat")) {
            for line in io.lines() {
                for field in line.split(' ').skip(1) {
                    let (k, v) = field.split_once('=').unwrap_or_default();
                    let v: u64 = v.parse().unwrap_or(0);
                    match k {
                        "rbytes" => s.io_read_bytes += v,
                        "wbytes" => s.io_write_bytes += v,
                        "rios" => s.io_read_ops += v,
                        "wios" => s.io_write_ops += v,
                        _ => {}
                    }
                }
            }
        }
        return s;
    }
    if let Some(dir) = &record.unified {
        s.cpu_usage_ns = keyed(&dir.join("cpu.stat"), "usage_usec") * 1000;
        s.cpu_user_ns = keyed(&dir.join("cpu.stat"), "user_usec") * 1000;
        s.cpu_system_ns = keyed(&dir.join("cpu.stat"), "system_usec") * 1000;
    }
    if let Some(dir) = v1("cpuacct") {
        s.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"));
        let ticks = clock_ticks();
        s.cpu_user_ns = keyed(&dir.join("cpuacct.stat"), "user") * 1_000_000_000 / ticks;
        s.cpu_system_ns = keyed(&dir.join("cpuacct.stat"), "system") * 1_000_000_000 / ticks;
    }
    if let Some(dir) = v1("memory") {
        s.memory_usage_bytes = read_u64(&dir.join("memory.usage_in_bytes"));
        s.memory_peak_bytes = read_u64(&dir.join("memory.max_usage_in_bytes"));
        s.memory_limit_bytes = read_u64(&dir.join("memory.limit_in_bytes"));
        s.memory_cache_bytes = keyed(&dir.join("memory.stat"), "cache");
        s.oom_kills = keyed(&dir.join("memory.oom_control"), "oom_kill");
    }
    if let Some(dir) = v1("pids") {
        s.pids_current = read_u64(&dir.join("pids.current"));
        s.pids_limit = read_u64(&dir.join("pids.max"));
    }
    if let Some(dir) = v1("blkio") {
        for (file, bytes) in [
            ("blkio.throttle.io_service_bytes_recursive", true),
            ("blkio.throttle.io_serviced_recursive", false),
        ] {
            if let Ok(text) = fs::read_to_string(dir.join(file)) {
                for line in text.lines() {
                    let parts: Vec<&str> = line.split(' ').collect();
                    if let [_, op, value] = parts.as_slice() {
                        let v: u64 = value.parse().unwrap_or(0);
                        match (*op, bytes) {
                            ("Read", true) => s.io_read_bytes += v,
                            ("Write", true) => s.io_write_bytes += v,
                            ("Read", false) => s.io_read_ops += v,
                            ("Write", false) => s.io_write_ops += v,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    s
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Removes the job's directories; they must be empty of processes. Missing ones are skipped.
pub fn destroy(record: &CgroupRecord) -> Result<()> {
    for dir in dirs(record) {
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
    use crate::plan::resources::DeviceThrottle;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
36 25 0:31 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
37 25 0:32 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct
38 25 0:33 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
39 25 0:34 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
40 25 0:35 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
41 25 0:36 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn detects_a_hybrid_host_and_a_pure_v2_host() {
        let hybrid = Hierarchy::from_mountinfo(HYBRID);
        assert!(!hybrid.unified_only);
        assert_eq!(
            hybrid.unified,
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert!(hybrid.v1.iter().any(|(c, _)| c == "memory"));
        assert!(!hybrid.v1.iter().any(|(c, _)| c.contains("systemd")));
        let v2 = Hierarchy::from_mountinfo(
            "30 25 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
        );
        assert!(v2.unified_only);
        assert_eq!(
            Hierarchy::from_root_filesystem(nix::sys::statfs::CGROUP2_SUPER_MAGIC),
            Some(v2),
            "a cgroup2 /sys/fs/cgroup reads as the same pure v2 host without mountinfo"
        );
        assert_eq!(
            Hierarchy::from_root_filesystem(nix::sys::statfs::TMPFS_MAGIC),
            None,
            "a hybrid or v1 host (tmpfs at /sys/fs/cgroup) is read from mountinfo"
        );
    }

    #[test]
    fn this_host_is_detected_as_its_mounts_say() {
        let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        assert_eq!(
            Hierarchy::detect().expect("detect"),
            Hierarchy::from_mountinfo(&text)
        );
    }

    #[test]
    fn cpuset_is_joined_only_when_asked_for() {
        let hybrid = Hierarchy::from_mountinfo(HYBRID);
        let record = plan_record(&hybrid, "/hostprocess/c1", &ResourceRequest::default());
        assert!(!record.v1.iter().any(|(c, _)| c == "cpuset" || c == "cpu"));
        assert!(record.v1.iter().any(|(c, _)| c == "memory"));
        let request = ResourceRequest {
            cpuset_cpus: Some("0".into()),
            ..ResourceRequest::default()
        };
        let record = plan_record(&hybrid, "/hostprocess/c1", &request);
        assert!(record
            .v1
            .iter()
            .any(|(c, d)| c == "cpuset" && d == Path::new("/sys/fs/cgroup/cpuset/hostprocess/c1")));
    }

    #[test]
    fn cpu_count_and_maximum_become_a_quota_over_the_host_cpus() {
        assert_eq!(cfs_quota(CpuCap::Count(1), 4), (100_000, 100_000));
        assert_eq!(
            cfs_quota(CpuCap::Count(8), 4),
            (400_000, 100_000),
            "clamped to the host"
        );
        // 50% of a 4-CPU host is 2 CPUs.
        assert_eq!(cfs_quota(CpuCap::Maximum(5_000), 4), (200_000, 100_000));
        // The kernel's minimum quota.
        assert_eq!(cfs_quota(CpuCap::Maximum(1), 1), (1_000, 100_000));
    }

    #[test]
    fn shares_map_to_weights_both_ways() {
        assert_eq!(cpu_weight(CpuWeight::LinuxShares(2)), 1);
        assert_eq!(cpu_weight(CpuWeight::LinuxShares(1024)), 39);
        assert_eq!(cpu_weight(CpuWeight::LinuxShares(262_144)), 10_000);
        assert_eq!(cpu_weight(CpuWeight::WindowsShares(5_000)), 5_000);
        assert_eq!(cpu_shares(CpuWeight::WindowsShares(1)), 2);
        assert_eq!(cpu_shares(CpuWeight::WindowsShares(10_000)), 262_144);
    }

    fn request() -> ResourceRequest {
        ResourceRequest {
            memory_limit: Some(64 << 20),
            cpu_cap: Some(CpuCap::Count(1)),
            cpu_weight: Some(CpuWeight::WindowsShares(500)),
            pids_limit: Some(16),
            device_throttles: vec![DeviceThrottle {
                major: 8,
                minor: 0,
                rate_kind: IoRate::ReadBps,
                rate: 1_000_000,
            }],
            io_iops: Some(100),
            ..ResourceRequest::default()
        }
    }

    #[test]
    fn v2_files_hold_the_values_the_formulas_give() {
        let tmp = tempfile::tempdir().unwrap();
        let record = CgroupRecord {
            unified: Some(tmp.path().to_path_buf()),
            unified_only: true,
            ..CgroupRecord::default()
        };
        apply(&record, &v2_settings(&request(), 2, &[(8, 0), (253, 0)])).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.path().join(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("cpu.max"), "100000 100000");
        assert_eq!(read("cpu.weight"), "500");
        assert_eq!(read("pids.max"), "16");
        // The last io.max line written is the last device's.
        assert_eq!(read("io.max"), "253:0 riops=100 wiops=100");
        let lines: Vec<String> = v2_settings(&request(), 2, &[(8, 0), (253, 0)])
            .into_iter()
            .filter(|s| s.file == "io.max")
            .map(|s| s.value)
            .collect();
        assert_eq!(
            lines,
            vec![
                "8:0 rbps=1000000 riops=100 wiops=100",
                "253:0 riops=100 wiops=100"
            ]
        );
    }

    #[test]
    fn v1_settings_go_to_each_controller() {
        let settings = v1_settings(&request(), 2, &[]);
        let find = |f: &str| {
            settings
                .iter()
                .find(|s| s.file == f)
                .map(|s| (s.controller, s.value.clone()))
        };
        assert_eq!(
            find("memory.limit_in_bytes"),
            Some(("memory", "67108864".into()))
        );
        assert_eq!(find("cpu.cfs_quota_us"), Some(("cpu", "100000".into())));
        assert_eq!(
            find("cpu.shares"),
            Some(("cpu", cpu_shares(CpuWeight::WindowsShares(500)).to_string()))
        );
        assert_eq!(find("pids.max"), Some(("pids", "16".into())));
        assert_eq!(
            find("blkio.throttle.read_bps_device"),
            Some(("blkio", "8:0 1000000".into()))
        );
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

    #[test]
    fn a_limit_without_its_controller_is_a_clear_error() {
        let record = CgroupRecord::default();
        let err = apply(&record, &[setting("memory", "memory.limit_in_bytes", 1)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("memory controller is not available"),
            "{err}"
        );
    }
}
