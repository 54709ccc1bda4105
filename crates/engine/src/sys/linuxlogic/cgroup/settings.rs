//! The limits as file writes: what a request becomes on a v2 job or in each v1 controller,
//! by runc's formulas where runc has one.

use super::layout::Kind;
use super::CgroupRecord;
use crate::plan::resources::{CpuCap, CpuWeight, IoRate, ResourceRequest};

const CFS_PERIOD: u64 = 100_000;
const MIN_CFS_QUOTA: u64 = 1_000;

/// Which of the job's directories a setting goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The job's directory in the v2 tree (a pure v2 host).
    Unified,
    /// The job's directory in this v1 controller's hierarchy.
    V1(&'static str),
}

/// One file write that applies a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub target: Target,
    pub file: &'static str,
    pub value: String,
}

fn v2(file: &'static str, value: impl ToString) -> Setting {
    Setting {
        target: Target::Unified,
        file,
        value: value.to_string(),
    }
}

pub(crate) fn v1(controller: &'static str, file: &'static str, value: impl ToString) -> Setting {
    Setting {
        target: Target::V1(controller),
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
        out.push(v2("memory.max", limit));
    }
    if let Some(cap) = request.cpu_cap {
        let (quota, period) = cfs_quota(cap, host_cpus);
        out.push(v2("cpu.max", format!("{quota} {period}")));
    }
    if let Some(weight) = request.cpu_weight {
        out.push(v2("cpu.weight", cpu_weight(weight)));
    }
    if let Some(cpus) = &request.cpuset_cpus {
        out.push(v2("cpuset.cpus", cpus));
    }
    if let Some(mems) = &request.cpuset_mems {
        out.push(v2("cpuset.mems", mems));
    }
    if let Some(pids) = request.pids_limit {
        out.push(v2("pids.max", pids));
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
        out.push(v2("io.max", format!("{major}:{minor} {}", keys.join(" "))));
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
        out.push(v1("memory", "memory.limit_in_bytes", limit));
    }
    if let Some(cap) = request.cpu_cap {
        let (quota, period) = cfs_quota(cap, host_cpus);
        out.push(v1("cpu", "cpu.cfs_period_us", period));
        out.push(v1("cpu", "cpu.cfs_quota_us", quota));
    }
    if let Some(weight) = request.cpu_weight {
        out.push(v1("cpu", "cpu.shares", cpu_shares(weight)));
    }
    if let Some(cpus) = &request.cpuset_cpus {
        out.push(v1("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = &request.cpuset_mems {
        out.push(v1("cpuset", "cpuset.mems", mems));
    }
    if let Some(pids) = request.pids_limit {
        out.push(v1("pids", "pids.max", pids));
    }
    for (major, minor, kind, rate) in throttles(request, disks) {
        let file = match kind {
            IoRate::ReadBps => "blkio.throttle.read_bps_device",
            IoRate::WriteBps => "blkio.throttle.write_bps_device",
            IoRate::ReadIops => "blkio.throttle.read_iops_device",
            IoRate::WriteIops => "blkio.throttle.write_iops_device",
        };
        out.push(v1("blkio", file, format!("{major}:{minor} {rate}")));
    }
    out
}

/// Whether the settings of `request` name the host's disks (job-wide I/O caps are spread over
/// every disk).
pub fn needs_disks(request: &ResourceRequest) -> bool {
    request.io_bps.is_some() || request.io_iops.is_some()
}

/// The settings for a job on a host of this kind; `disks` are the host's whole disks as
/// major:minor (read only when [`needs_disks`]).
pub fn settings_for(
    layout: Kind,
    request: &ResourceRequest,
    host_cpus: u64,
    disks: &[(u64, u64)],
) -> Vec<Setting> {
    match layout {
        Kind::V2 => v2_settings(request, host_cpus, disks),
        Kind::Hybrid | Kind::V1 => v1_settings(request, host_cpus, disks),
    }
}

/// What `update` writes: the settings of the new request, and the kernel's "no limit" for each
/// limit the request no longer has, in the controllers the job has joined.
pub fn update_settings(
    record: &CgroupRecord,
    request: &ResourceRequest,
    host_cpus: u64,
    disks: &[(u64, u64)],
) -> Vec<Setting> {
    let mut out = settings_for(record.layout, request, host_cpus, disks);
    let joined = |c: &str| record.v1.iter().any(|(n, _)| n == c);
    match record.layout {
        Kind::V2 => {
            if request.memory_limit.is_none() {
                out.push(v2("memory.max", "max"));
            }
            if request.cpu_cap.is_none() {
                out.push(v2("cpu.max", format!("max {CFS_PERIOD}")));
            }
            if request.cpu_weight.is_none() {
                out.push(v2("cpu.weight", 100));
            }
            if request.pids_limit.is_none() {
                out.push(v2("pids.max", "max"));
            }
        }
        Kind::Hybrid | Kind::V1 => {
            if request.memory_limit.is_none() && joined("memory") {
                out.push(v1("memory", "memory.limit_in_bytes", -1));
            }
            if request.cpu_cap.is_none() && joined("cpu") {
                out.push(v1("cpu", "cpu.cfs_quota_us", -1));
            }
            if request.cpu_weight.is_none() && joined("cpu") {
                out.push(v1("cpu", "cpu.shares", 1024));
            }
            if request.pids_limit.is_none() && joined("pids") {
                out.push(v1("pids", "pids.max", "max"));
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::resources::DeviceThrottle;

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

    pub(crate) fn request() -> ResourceRequest {
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
    fn v1_settings_go_to_each_controller() {
        let settings = v1_settings(&request(), 2, &[]);
        let find = |f: &str| {
            settings
                .iter()
                .find(|s| s.file == f)
                .map(|s| (s.target, s.value.clone()))
        };
        assert_eq!(
            find("memory.limit_in_bytes"),
            Some((Target::V1("memory"), "67108864".into()))
        );
        assert_eq!(
            find("cpu.cfs_quota_us"),
            Some((Target::V1("cpu"), "100000".into()))
        );
        assert_eq!(
            find("cpu.shares"),
            Some((
                Target::V1("cpu"),
                cpu_shares(CpuWeight::WindowsShares(500)).to_string()
            ))
        );
        assert_eq!(find("pids.max"), Some((Target::V1("pids"), "16".into())));
        assert_eq!(
            find("blkio.throttle.read_bps_device"),
            Some((Target::V1("blkio"), "8:0 1000000".into()))
        );
    }

    #[test]
    fn an_update_lifts_the_limits_it_no_longer_has_in_the_controllers_joined() {
        let limits_lifted = |record: &CgroupRecord| -> Vec<(Target, &'static str, String)> {
            update_settings(record, &ResourceRequest::default(), 2, &[])
                .into_iter()
                .map(|s| (s.target, s.file, s.value))
                .collect()
        };
        let v2_job = CgroupRecord {
            layout: Kind::V2,
            ..CgroupRecord::default()
        };
        assert_eq!(
            limits_lifted(&v2_job),
            vec![
                (Target::Unified, "memory.max", "max".to_string()),
                (Target::Unified, "cpu.max", "max 100000".to_string()),
                (Target::Unified, "cpu.weight", "100".to_string()),
                (Target::Unified, "pids.max", "max".to_string()),
            ]
        );
        let v1_job = CgroupRecord {
            layout: Kind::Hybrid,
            v1: vec![("memory".into(), "/m".into()), ("cpu".into(), "/c".into())],
            ..CgroupRecord::default()
        };
        assert_eq!(
            limits_lifted(&v1_job),
            vec![
                (
                    Target::V1("memory"),
                    "memory.limit_in_bytes",
                    "-1".to_string()
                ),
                (Target::V1("cpu"), "cpu.cfs_quota_us", "-1".to_string()),
                (Target::V1("cpu"), "cpu.shares", "1024".to_string()),
            ],
            "pids is not joined: nothing is written there"
        );
        let kept = update_settings(&v1_job, &request(), 2, &[]);
        assert!(
            !kept.iter().any(|s| s.value == "-1"),
            "a limit still asked for is set, not lifted: {kept:?}"
        );
    }
}
