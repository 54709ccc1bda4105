//! Job-object limits from a [`ResourceRequest`] (§5), with the reference's formulas.
//!
//! A job object has one CPU control at a time: a hard-capped rate (hundredths of a percent of the
//! whole host, 1–10000) or a weight (1–9). Memory is a job-wide commit limit; I/O is a job-wide
//! rate control; a pids limit is the job's active-process limit; a cpuset becomes the job's
//! affinity on processor group 0.

use crate::plan::resources::{CpuCap, CpuWeight, ResourceRequest};

/// The largest CPU rate: all of the host.
pub const CPU_RATE_MAX: u32 = 10_000;
/// The job-object weight range.
pub const JOB_WEIGHT_MIN: u32 = 1;
pub const JOB_WEIGHT_MAX: u32 = 9;
/// Windows CPU shares range up to this value (`windows.resources.cpu.shares`).
pub const WINDOWS_SHARES_MAX: u64 = 10_000;
/// The Windows share that maps to the default job weight (5), and the cgroup v1 default share it
/// stands for.
const WINDOWS_SHARES_DEFAULT: u64 = 5_000;
const LINUX_SHARES_DEFAULT: u64 = 1_024;

/// The job's CPU control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuControl {
    /// `JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP` at this rate (1–10000).
    HardCap(u32),
    /// `JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED` with this weight (1–9).
    Weight(u32),
}

/// `SetIoRateControlInformationJobObject` figures; zero means "no cap" for that figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IoLimit {
    pub max_bandwidth: i64,
    pub max_iops: i64,
}

impl IoLimit {
    /// Both figures zero: what clears a cap.
    pub const NONE: IoLimit = IoLimit {
        max_bandwidth: 0,
        max_iops: 0,
    };
}

/// The I/O rate control to set on a job that has `current` when `wanted` is asked for: the
/// wanted cap, or a cleared one when a cap is there and no longer wanted; `None` when nothing
/// needs setting (`update` must not leave an old cap behind).
pub fn io_rate_to_set(current: Option<IoLimit>, wanted: Option<IoLimit>) -> Option<IoLimit> {
    match (current, wanted) {
        (_, Some(wanted)) => Some(wanted),
        (Some(current), None) if current != IoLimit::NONE => Some(IoLimit::NONE),
        _ => None,
    }
}

/// Everything a job object is set to for one [`ResourceRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLimits {
    /// `JOB_OBJECT_LIMIT_JOB_MEMORY`, bytes.
    pub memory_bytes: Option<u64>,
    pub cpu: Option<CpuControl>,
    /// `JOB_OBJECT_LIMIT_AFFINITY` mask (processor group 0).
    pub affinity: Option<u64>,
    /// `JOB_OBJECT_LIMIT_ACTIVE_PROCESS`.
    pub active_processes: Option<u32>,
    pub io: Option<IoLimit>,
    /// Requested settings a job object cannot express, for a debug line.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The reference's text.
    #[error("memory limit specified exceeds the max size")]
    MemoryTooLarge,
    #[error("{field} of {value} does not fit a job object (at most {max})")]
    TooLarge {
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error(
        "linux.resources.blockIO throttles name Linux block devices (major:minor) and do not apply on Windows: use windows.resources.storage.bps/iops (or the io.microsoft.container.storage.qos annotations) instead"
    )]
    DeviceThrottles,
    #[error("cpuset {cpus:?}: {reason}")]
    Cpuset { cpus: String, reason: String },
}

/// CPU count → rate: `count * 10000 / hostCPUs`, the count clamped to the host's CPUs and the
/// rate at least 1 (hcsshim `calculateJobCPURate` after `NormalizeProcessorCount`).
pub fn cpu_rate_from_count(count: u64, host_cpus: u32) -> u32 {
    let host = u64::from(host_cpus.max(1));
    let count = count.min(host);
    let rate = count * u64::from(CPU_RATE_MAX) / host;
    rate.max(1) as u32
}

/// CPU maximum → rate: taken as it is, kept within 1–10000.
pub fn cpu_rate_from_maximum(maximum: u64) -> u32 {
    maximum.clamp(1, u64::from(CPU_RATE_MAX)) as u32
}

/// CFS quota and period → rate: the share of the whole host the quota stands for,
/// `quota * 10000 / (period * hostCPUs)`, within 1–10000.
pub fn cpu_rate_from_quota(quota: i64, period: u64, host_cpus: u32) -> u32 {
    let quota = u128::try_from(quota.max(0)).unwrap_or(0);
    let denominator = u128::from(period.max(1)) * u128::from(host_cpus.max(1));
    let rate = quota * u128::from(CPU_RATE_MAX) / denominator;
    rate.clamp(1, u128::from(CPU_RATE_MAX)) as u32
}

/// Windows shares (0–10000) → job weight: `1 + 8 * shares / 10000` (hcsshim
/// `calculateJobCPUWeight`); 0 means no weight.
pub fn job_weight_from_windows_shares(shares: u64) -> Option<u32> {
    if shares == 0 {
        return None;
    }
    let shares = shares.min(WINDOWS_SHARES_MAX);
    Some(JOB_WEIGHT_MIN + (8 * shares / WINDOWS_SHARES_MAX) as u32)
}

/// cgroup v1 `cpu.shares` (2–262144) → Windows shares (1–10000), proportionally so that the
/// cgroup default (1024) lands on the share that gives the default job weight (5000 → 5):
/// `shares * 5000 / 1024`, within 1–10000. So 2 → 9 (weight 1), 512 → 2500 (weight 3),
/// 1024 → 5000 (weight 5), 2048 and above → 10000 (weight 9).
pub fn windows_shares_from_linux(shares: u64) -> u64 {
    let scaled =
        u128::from(shares) * u128::from(WINDOWS_SHARES_DEFAULT) / u128::from(LINUX_SHARES_DEFAULT);
    scaled.clamp(1, u128::from(WINDOWS_SHARES_MAX)) as u64
}

/// A cpuset list (`0-3,6`) → an affinity mask on processor group 0.
pub fn cpuset_mask(cpus: &str, host_cpus: u32) -> Result<u64, LimitError> {
    let bad = |reason: String| LimitError::Cpuset {
        cpus: cpus.to_string(),
        reason,
    };
    let limit = host_cpus.clamp(1, 64);
    let mut mask = 0u64;
    for part in cpus.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| bad(format!("{part:?} is not a CPU number or range")))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(bad(format!("range {part:?} is reversed")));
        }
        if last >= limit {
            return Err(bad(if last >= 64 {
                "CPUs above 63 are in other processor groups, which a job affinity cannot name"
                    .to_string()
            } else {
                format!("the host has CPUs 0-{}", limit - 1)
            }));
        }
        for cpu in first..=last {
            mask |= 1 << cpu;
        }
    }
    if mask == 0 {
        return Err(bad("no CPU is named".into()));
    }
    Ok(mask)
}

/// The job-object settings for `request` on a host with `host_cpus` logical processors. A CPU
/// cap wins over a weight (a job has one CPU control), as in the reference.
pub fn job_limits(request: &ResourceRequest, host_cpus: u32) -> Result<JobLimits, LimitError> {
    let mut limits = JobLimits::default();
    if let Some(memory) = request.memory_limit {
        if memory == u64::MAX || usize::try_from(memory).is_err() {
            return Err(LimitError::MemoryTooLarge);
        }
        limits.memory_bytes = Some(memory);
    }
    let weight = request.cpu_weight.and_then(|w| match w {
        CpuWeight::WindowsShares(s) => job_weight_from_windows_shares(s),
        CpuWeight::LinuxShares(s) => job_weight_from_windows_shares(windows_shares_from_linux(s)),
    });
    limits.cpu = match request.cpu_cap {
        Some(cap) => {
            if weight.is_some() {
                limits
                    .ignored
                    .push("the CPU weight (a job has one CPU control; the CPU cap is used)".into());
            }
            Some(CpuControl::HardCap(match cap {
                CpuCap::Count(count) => cpu_rate_from_count(count, host_cpus),
                CpuCap::Maximum(maximum) => cpu_rate_from_maximum(maximum),
                CpuCap::Quota { quota, period } => cpu_rate_from_quota(quota, period, host_cpus),
            }))
        }
        None => weight.map(CpuControl::Weight),
    };
    if let Some(cpus) = request.cpuset_cpus.as_deref() {
        limits.affinity = Some(cpuset_mask(cpus, host_cpus)?);
    }
    if let Some(mems) = &request.cpuset_mems {
        limits.ignored.push(format!(
            "cpuset mems {mems:?} (NUMA placement is left to Windows)"
        ));
    }
    if let Some(pids) = request.pids_limit {
        let max = u64::from(u32::MAX);
        limits.active_processes = Some(u32::try_from(pids).map_err(|_| LimitError::TooLarge {
            field: "the pids limit",
            value: pids,
            max,
        })?);
    }
    if !request.device_throttles.is_empty() {
        return Err(LimitError::DeviceThrottles);
    }
    if request.io_bps.is_some() || request.io_iops.is_some() {
        let signed = |field, value: Option<u64>| -> Result<i64, LimitError> {
            let value = value.unwrap_or(0);
            i64::try_from(value).map_err(|_| LimitError::TooLarge {
                field,
                value,
                max: i64::MAX as u64,
            })
        };
        limits.io = Some(IoLimit {
            max_bandwidth: signed("the storage bandwidth limit", request.io_bps)?,
            max_iops: signed("the storage IOPS limit", request.io_iops)?,
        });
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::resources::{DeviceThrottle, IoRate};

    #[test]
    fn count_to_rate_matches_the_reference_cases() {
        // hcsshim cpurate_test.go: (host, count) → rate.
        assert_eq!(cpu_rate_from_count(1, 10), 1000);
        assert_eq!(cpu_rate_from_count(5, 10), 5000);
        assert_eq!(cpu_rate_from_count(5, 20), 2500);
        assert_eq!(cpu_rate_from_count(1, 1), 10000);
        assert_eq!(cpu_rate_from_count(0, 1), 1);
    }

    #[test]
    fn count_above_the_host_is_clamped_to_the_whole_host() {
        assert_eq!(cpu_rate_from_count(64, 8), 10000);
        assert_eq!(
            cpu_rate_from_count(1, 0),
            10000,
            "a host reporting 0 CPUs counts as 1"
        );
    }

    #[test]
    fn a_tiny_count_share_is_at_least_rate_1() {
        assert_eq!(cpu_rate_from_count(1, 20_000), 1);
    }

    #[test]
    fn maximum_is_taken_as_is_within_range() {
        assert_eq!(cpu_rate_from_maximum(2500), 2500);
        assert_eq!(cpu_rate_from_maximum(0), 1);
        assert_eq!(cpu_rate_from_maximum(20_000), 10000);
    }

    #[test]
    fn quota_is_a_share_of_the_whole_host() {
        // Half a CPU on a 4-CPU host is 12.5% of the host.
        assert_eq!(cpu_rate_from_quota(50_000, 100_000, 4), 1250);
        // Two CPUs' worth on 4 CPUs is half the host.
        assert_eq!(cpu_rate_from_quota(200_000, 100_000, 4), 5000);
        // More than the host is the whole host; a sliver is rate 1.
        assert_eq!(cpu_rate_from_quota(1_000_000, 100_000, 4), 10000);
        assert_eq!(cpu_rate_from_quota(1000, 1_000_000, 64), 1);
        assert_eq!(cpu_rate_from_quota(i64::MAX, 1000, 1), 10000);
    }

    #[test]
    fn windows_shares_to_weight_follows_the_reference_formula() {
        assert_eq!(job_weight_from_windows_shares(0), None);
        assert_eq!(job_weight_from_windows_shares(1), Some(1));
        assert_eq!(job_weight_from_windows_shares(1249), Some(1));
        assert_eq!(job_weight_from_windows_shares(1250), Some(2));
        assert_eq!(job_weight_from_windows_shares(5000), Some(5));
        assert_eq!(job_weight_from_windows_shares(10_000), Some(9));
    }

    #[test]
    fn linux_shares_keep_the_default_in_the_middle() {
        assert_eq!(windows_shares_from_linux(1024), 5000);
        assert_eq!(windows_shares_from_linux(2), 9);
        assert_eq!(windows_shares_from_linux(512), 2500);
        assert_eq!(windows_shares_from_linux(2048), 10_000);
        assert_eq!(windows_shares_from_linux(262_144), 10_000);
        let weight = |s| job_weight_from_windows_shares(windows_shares_from_linux(s));
        assert_eq!(weight(2), Some(1));
        assert_eq!(weight(1024), Some(5));
        assert_eq!(weight(262_144), Some(9));
    }

    #[test]
    fn cap_wins_over_weight_and_says_so() {
        let request = ResourceRequest {
            cpu_cap: Some(CpuCap::Quota {
                quota: 100_000,
                period: 100_000,
            }),
            cpu_weight: Some(CpuWeight::LinuxShares(512)),
            ..ResourceRequest::default()
        };
        let limits = job_limits(&request, 8).unwrap();
        assert_eq!(limits.cpu, Some(CpuControl::HardCap(1250)));
        assert_eq!(limits.ignored.len(), 1);
    }

    #[test]
    fn each_cpu_request_maps_to_its_control() {
        let with = |cap, weight| ResourceRequest {
            cpu_cap: cap,
            cpu_weight: weight,
            ..ResourceRequest::default()
        };
        let cpu = |r: ResourceRequest| job_limits(&r, 4).unwrap().cpu;
        assert_eq!(
            cpu(with(Some(CpuCap::Count(2)), None)),
            Some(CpuControl::HardCap(5000))
        );
        assert_eq!(
            cpu(with(Some(CpuCap::Maximum(300)), None)),
            Some(CpuControl::HardCap(300))
        );
        assert_eq!(
            cpu(with(None, Some(CpuWeight::WindowsShares(10_000)))),
            Some(CpuControl::Weight(9))
        );
        assert_eq!(cpu(with(None, None)), None);
    }

    #[test]
    fn memory_pids_and_io_are_carried_over() {
        let request = ResourceRequest {
            memory_limit: Some(200 << 20),
            pids_limit: Some(64),
            io_bps: Some(1 << 20),
            ..ResourceRequest::default()
        };
        let limits = job_limits(&request, 4).unwrap();
        assert_eq!(limits.memory_bytes, Some(200 << 20));
        assert_eq!(limits.active_processes, Some(64));
        assert_eq!(
            limits.io,
            Some(IoLimit {
                max_bandwidth: 1 << 20,
                max_iops: 0
            })
        );
    }

    #[test]
    fn memory_of_u64_max_is_refused_with_the_reference_text() {
        let request = ResourceRequest {
            memory_limit: Some(u64::MAX),
            ..ResourceRequest::default()
        };
        assert_eq!(
            job_limits(&request, 1).unwrap_err().to_string(),
            "memory limit specified exceeds the max size"
        );
    }

    #[test]
    fn io_and_pids_that_overflow_the_job_fields_are_refused() {
        let request = ResourceRequest {
            io_iops: Some(u64::MAX),
            ..ResourceRequest::default()
        };
        assert!(matches!(
            job_limits(&request, 1),
            Err(LimitError::TooLarge { .. })
        ));
        let request = ResourceRequest {
            pids_limit: Some(u64::from(u32::MAX) + 1),
            ..ResourceRequest::default()
        };
        assert!(matches!(
            job_limits(&request, 1),
            Err(LimitError::TooLarge { .. })
        ));
    }

    #[test]
    fn linux_device_throttles_are_refused_with_what_to_use_instead() {
        let request = ResourceRequest {
            device_throttles: vec![DeviceThrottle {
                major: 8,
                minor: 0,
                rate_kind: IoRate::ReadBps,
                rate: 1000,
            }],
            ..ResourceRequest::default()
        };
        let err = job_limits(&request, 4).unwrap_err().to_string();
        assert!(err.contains("windows.resources.storage"), "{err}");
    }

    #[test]
    fn cpusets_become_a_group_0_affinity_mask() {
        assert_eq!(cpuset_mask("0-3,6", 8).unwrap(), 0b0100_1111);
        assert_eq!(cpuset_mask(" 1 , 2 ", 4).unwrap(), 0b110);
        assert!(cpuset_mask("4", 4).is_err(), "CPU 4 of a 4-CPU host");
        assert!(cpuset_mask("3-1", 8).is_err());
        assert!(cpuset_mask("x", 8).is_err());
        assert!(cpuset_mask("", 8).is_err());
        let err = cpuset_mask("70", 128).unwrap_err().to_string();
        assert!(err.contains("processor groups"), "{err}");
        assert_eq!(cpuset_mask("63", 64).unwrap(), 1 << 63);
    }

    #[test]
    fn cpuset_mems_are_reported_as_ignored() {
        let request = ResourceRequest {
            cpuset_mems: Some("0".into()),
            ..ResourceRequest::default()
        };
        let limits = job_limits(&request, 4).unwrap();
        assert_eq!(limits.ignored.len(), 1);
        assert_eq!(limits.affinity, None);
    }

    #[test]
    fn an_io_cap_no_longer_wanted_is_cleared() {
        let cap = IoLimit {
            max_bandwidth: 1 << 20,
            max_iops: 0,
        };
        assert_eq!(io_rate_to_set(Some(cap), None), Some(IoLimit::NONE));
        assert_eq!(io_rate_to_set(None, Some(cap)), Some(cap));
        assert_eq!(io_rate_to_set(Some(IoLimit::NONE), Some(cap)), Some(cap));
        assert_eq!(io_rate_to_set(Some(IoLimit::NONE), None), None);
        assert_eq!(io_rate_to_set(None, None), None);
    }
}
