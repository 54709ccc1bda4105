//! Job-wide resource limits (§5): what the spec and the hcsshim annotations ask for, merged and
//! validated once. Each platform turns a [`ResourceRequest`] into its own settings (cgroup files
//! on Linux, job-object limits on Windows).

use crate::annotations;
use crate::spec::{LinuxResources, Spec, WindowsResources};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "invalid spec - Windows Container CPU Count: '{count}', Limit: '{limit}', and Weight: '{weight}' are mutually exclusive"
    )]
    CpuMutuallyExclusive { count: u64, limit: u64, weight: u64 },
    #[error("invalid spec - {field} must be {range}, was {value}")]
    OutOfRange {
        field: &'static str,
        range: &'static str,
        value: String,
    },
    #[error("invalid annotation {key}={value:?}: expected an unsigned integer")]
    BadAnnotation { key: &'static str, value: String },
    #[error("conflicting limits: {0}")]
    Conflict(String),
}

/// A CPU cap on the whole job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CpuCap {
    /// This many of the host's CPUs (clamped to the host's count).
    Count(u64),
    /// Hundredths of a percent of the whole host, 1–10000.
    Maximum(u64),
    /// A CFS quota and period in microseconds, as `linux.resources.cpu` gives them.
    Quota { quota: i64, period: u64 },
}

/// The job's CPU share among other jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CpuWeight {
    /// cgroup v1 `cpu.shares`, 2–262144 (`linux.resources.cpu.shares`).
    LinuxShares(u64),
    /// Windows shares, 1–10000 (`windows.resources.cpu.shares`, processor weight annotation).
    WindowsShares(u64),
}

/// Which I/O figure a throttle limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IoRate {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceThrottle {
    pub major: u64,
    pub minor: u64,
    pub rate_kind: IoRate,
    pub rate: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceRequest {
    pub memory_limit: Option<u64>,
    pub cpu_cap: Option<CpuCap>,
    pub cpu_weight: Option<CpuWeight>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<u64>,
    /// Per-device throttles from `linux.resources.blockIO`.
    pub device_throttles: Vec<DeviceThrottle>,
    /// Job-wide I/O caps (Windows storage fields and annotations), bytes and operations per second.
    pub io_bps: Option<u64>,
    pub io_iops: Option<u64>,
}

impl ResourceRequest {
    pub fn is_empty(&self) -> bool {
        *self == ResourceRequest::default()
    }
}

/// Merges `linux.resources`, `windows.resources` and the hcsshim annotations (annotations win).
pub fn resource_request(spec: &Spec) -> Result<ResourceRequest, ResourceError> {
    let linux = spec
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let windows = spec
        .windows
        .as_ref()
        .and_then(|w| w.resources.clone())
        .unwrap_or_default();
    let mut request = from_linux(&linux)?;
    merge_windows(&mut request, &windows, spec)?;
    Ok(request)
}

/// Applies `update`'s resources (a `linux.resources` or `windows.resources` document) on top of
/// the current request.
pub fn updated_request(
    current: &ResourceRequest,
    linux: Option<&LinuxResources>,
    windows: Option<&WindowsResources>,
) -> Result<ResourceRequest, ResourceError> {
    let mut next = current.clone();
    if let Some(linux) = linux {
        // -1 is runc's "no limit": it removes a limit rather than leaving it as it is.
        if linux.memory.as_ref().and_then(|m| m.limit) == Some(-1) {
            next.memory_limit = None;
        }
        if linux.cpu.as_ref().and_then(|c| c.quota) == Some(-1) {
            next.cpu_cap = None;
        }
        if linux.pids.as_ref().is_some_and(|p| p.limit == -1) {
            next.pids_limit = None;
        }
        let update = from_linux(linux)?;
        if update.memory_limit.is_some() {
            next.memory_limit = update.memory_limit;
        }
        if update.cpu_cap.is_some() {
            next.cpu_cap = update.cpu_cap;
        }
        if update.cpu_weight.is_some() {
            next.cpu_weight = update.cpu_weight;
        }
        if update.cpuset_cpus.is_some() {
            next.cpuset_cpus = update.cpuset_cpus;
        }
        if update.cpuset_mems.is_some() {
            next.cpuset_mems = update.cpuset_mems;
        }
        if update.pids_limit.is_some() {
            next.pids_limit = update.pids_limit;
        }
        if !update.device_throttles.is_empty() {
            next.device_throttles = update.device_throttles;
        }
    }
    if let Some(windows) = windows {
        let mut update = ResourceRequest::default();
        merge_windows(&mut update, windows, &Spec::default())?;
        if update.memory_limit.is_some() {
            next.memory_limit = update.memory_limit;
        }
        if update.cpu_cap.is_some() || update.cpu_weight.is_some() {
            next.cpu_cap = update.cpu_cap;
            next.cpu_weight = update.cpu_weight;
        }
        if update.io_bps.is_some() {
            next.io_bps = update.io_bps;
        }
        if update.io_iops.is_some() {
            next.io_iops = update.io_iops;
        }
    }
    Ok(next)
}

fn from_linux(linux: &LinuxResources) -> Result<ResourceRequest, ResourceError> {
    let mut request = ResourceRequest::default();
    if let Some(memory) = &linux.memory {
        request.memory_limit = match memory.limit {
            Some(limit) if limit > 0 => Some(limit as u64),
            Some(-1) | Some(0) | None => None,
            Some(other) => {
                return Err(ResourceError::OutOfRange {
                    field: "linux.resources.memory.limit",
                    range: "positive or -1",
                    value: other.to_string(),
                })
            }
        };
    }
    if let Some(cpu) = &linux.cpu {
        if let Some(quota) = cpu.quota.filter(|q| *q > 0) {
            let period = cpu.period.unwrap_or(100_000);
            if !(1000..=1_000_000).contains(&period) {
                return Err(ResourceError::OutOfRange {
                    field: "linux.resources.cpu.period",
                    range: "1000-1000000 microseconds",
                    value: period.to_string(),
                });
            }
            if quota < 1000 {
                return Err(ResourceError::OutOfRange {
                    field: "linux.resources.cpu.quota",
                    range: "at least 1000 microseconds, or -1",
                    value: quota.to_string(),
                });
            }
            request.cpu_cap = Some(CpuCap::Quota { quota, period });
        }
        if let Some(shares) = cpu.shares.filter(|s| *s > 0) {
            request.cpu_weight = Some(CpuWeight::LinuxShares(shares.clamp(2, 262_144)));
        }
        request.cpuset_cpus = cpu.cpus.clone().filter(|s| !s.is_empty());
        request.cpuset_mems = cpu.mems.clone().filter(|s| !s.is_empty());
    }
    if let Some(pids) = &linux.pids {
        request.pids_limit = (pids.limit > 0).then_some(pids.limit as u64);
    }
    if let Some(block_io) = &linux.block_io {
        let lists = [
            (&block_io.throttle_read_bps_device, IoRate::ReadBps),
            (&block_io.throttle_write_bps_device, IoRate::WriteBps),
            (&block_io.throttle_read_iops_device, IoRate::ReadIops),
            (&block_io.throttle_write_iops_device, IoRate::WriteIops),
        ];
        for (devices, rate_kind) in lists {
            for device in devices {
                if device.major < 0 || device.minor < 0 {
                    return Err(ResourceError::OutOfRange {
                        field: "linux.resources.blockIO throttle device",
                        range: "a non-negative major:minor",
                        value: format!("{}:{}", device.major, device.minor),
                    });
                }
                request.device_throttles.push(DeviceThrottle {
                    major: device.major as u64,
                    minor: device.minor as u64,
                    rate_kind,
                    rate: device.rate,
                });
            }
        }
    }
    Ok(request)
}

fn annotation_u64(spec: &Spec, key: &'static str) -> Result<Option<u64>, ResourceError> {
    match spec.annotation(key) {
        None => Ok(None),
        Some(value) => {
            value
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ResourceError::BadAnnotation {
                    key,
                    value: value.to_string(),
                })
        }
    }
}

fn merge_windows(
    request: &mut ResourceRequest,
    windows: &WindowsResources,
    spec: &Spec,
) -> Result<(), ResourceError> {
    // Memory: the reference keeps whole MiB only (bytes / MiB, then * MiB).
    let memory_mb = match annotation_u64(spec, annotations::MEMORY_SIZE_MB)? {
        Some(mb) => Some(mb),
        None => windows
            .memory
            .as_ref()
            .and_then(|m| m.limit)
            .map(|bytes| bytes / MIB),
    };
    if let Some(mb) = memory_mb.filter(|mb| *mb > 0) {
        let bytes = mb.checked_mul(MIB).ok_or(ResourceError::OutOfRange {
            field: "memory limit",
            range: "below 2^64 bytes",
            value: format!("{mb} MiB"),
        })?;
        if let Some(linux) = request.memory_limit.filter(|l| *l != bytes) {
            if spec.annotation(annotations::MEMORY_SIZE_MB).is_none() {
                return Err(ResourceError::Conflict(format!(
                    "linux.resources.memory.limit ({linux}) and windows.resources.memory.limit ({bytes}) differ; set one"
                )));
            }
        }
        request.memory_limit = Some(bytes);
    }

    let cpu = windows.cpu.clone().unwrap_or_default();
    let count = annotation_u64(spec, annotations::PROCESSOR_COUNT)?
        .or(cpu.count)
        .unwrap_or(0);
    let limit = annotation_u64(spec, annotations::PROCESSOR_LIMIT)?
        .or(cpu.maximum.map(u64::from))
        .unwrap_or(0);
    let weight = annotation_u64(spec, annotations::PROCESSOR_WEIGHT)?
        .or(cpu.shares.map(u64::from))
        .unwrap_or(0);
    let set = [count, limit, weight].iter().filter(|v| **v != 0).count();
    if set > 1 {
        return Err(ResourceError::CpuMutuallyExclusive {
            count,
            limit,
            weight,
        });
    }
    if limit > 10_000 {
        return Err(ResourceError::OutOfRange {
            field: "windows.resources.cpu.maximum",
            range: "1-10000",
            value: limit.to_string(),
        });
    }
    if weight > 10_000 {
        return Err(ResourceError::OutOfRange {
            field: "windows.resources.cpu.shares",
            range: "0-10000",
            value: weight.to_string(),
        });
    }
    let windows_cap = match (count, limit) {
        (0, 0) => None,
        (count, 0) => Some(CpuCap::Count(count)),
        (_, limit) => Some(CpuCap::Maximum(limit)),
    };
    if let Some(cap) = windows_cap {
        if let Some(CpuCap::Quota { .. }) = request.cpu_cap {
            return Err(ResourceError::Conflict(
                "linux.resources.cpu.quota and a Windows CPU count or maximum are both set; set one"
                    .into(),
            ));
        }
        request.cpu_cap = Some(cap);
    }
    if weight != 0 {
        if let Some(CpuWeight::LinuxShares(_)) = request.cpu_weight {
            return Err(ResourceError::Conflict(
                "linux.resources.cpu.shares and a Windows CPU weight are both set; set one".into(),
            ));
        }
        request.cpu_weight = Some(CpuWeight::WindowsShares(weight));
    }

    let storage = windows.storage.clone().unwrap_or_default();
    if let Some(bps) = annotation_u64(spec, annotations::STORAGE_BANDWIDTH_MAXIMUM)?
        .or(storage.bps)
        .filter(|v| *v > 0)
    {
        request.io_bps = Some(bps);
    }
    if let Some(iops) = annotation_u64(spec, annotations::STORAGE_IOPS_MAXIMUM)?
        .or(storage.iops)
        .filter(|v| *v > 0)
    {
        request.io_iops = Some(iops);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn spec_with(linux: Option<LinuxResources>, windows: Option<WindowsResources>) -> Spec {
        Spec {
            linux: linux.map(|resources| Linux {
                resources: Some(resources),
                ..Linux::default()
            }),
            windows: windows.map(|resources| Windows {
                resources: Some(resources),
                ..Windows::default()
            }),
            ..Spec::default()
        }
    }

    fn windows_cpu(
        count: Option<u64>,
        maximum: Option<u16>,
        shares: Option<u16>,
    ) -> WindowsResources {
        WindowsResources {
            cpu: Some(WindowsCpu {
                count,
                maximum,
                shares,
            }),
            ..WindowsResources::default()
        }
    }

    #[test]
    fn windows_cpu_fields_are_mutually_exclusive_with_the_reference_text() {
        let spec = spec_with(None, Some(windows_cpu(Some(2), Some(5000), None)));
        let err = resource_request(&spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid spec - Windows Container CPU Count: '2', Limit: '5000', and Weight: '0' are mutually exclusive"
        );
    }

    #[test]
    fn processor_annotation_overrides_the_spec_field_before_the_exclusivity_check() {
        let mut spec = spec_with(None, Some(windows_cpu(Some(2), None, None)));
        spec.annotations
            .insert(annotations::PROCESSOR_WEIGHT.into(), "300".into());
        assert!(matches!(
            resource_request(&spec),
            Err(ResourceError::CpuMutuallyExclusive {
                count: 2,
                limit: 0,
                weight: 300
            })
        ));
        spec.annotations
            .insert(annotations::PROCESSOR_COUNT.into(), "0".into());
        // An annotation of 0 counts as "set to 0": the count is gone, the weight stays.
        let request = resource_request(&spec).unwrap();
        assert_eq!(request.cpu_cap, None);
        assert_eq!(request.cpu_weight, Some(CpuWeight::WindowsShares(300)));
    }

    #[test]
    fn windows_memory_keeps_whole_mebibytes_only() {
        let spec = spec_with(
            None,
            Some(WindowsResources {
                memory: Some(WindowsMemory {
                    limit: Some(200 * MIB + 12345),
                }),
                ..WindowsResources::default()
            }),
        );
        assert_eq!(
            resource_request(&spec).unwrap().memory_limit,
            Some(200 * MIB)
        );
    }

    #[test]
    fn memory_annotation_is_in_megabytes_and_wins() {
        let mut spec = spec_with(
            Some(LinuxResources {
                memory: Some(LinuxMemory {
                    limit: Some(1 << 30),
                    ..LinuxMemory::default()
                }),
                ..LinuxResources::default()
            }),
            None,
        );
        spec.annotations
            .insert(annotations::MEMORY_SIZE_MB.into(), "64".into());
        assert_eq!(
            resource_request(&spec).unwrap().memory_limit,
            Some(64 * MIB)
        );
    }

    #[test]
    fn linux_quota_and_windows_count_conflict() {
        let spec = spec_with(
            Some(LinuxResources {
                cpu: Some(LinuxCpu {
                    quota: Some(50_000),
                    period: Some(100_000),
                    ..LinuxCpu::default()
                }),
                ..LinuxResources::default()
            }),
            Some(windows_cpu(Some(1), None, None)),
        );
        assert!(matches!(
            resource_request(&spec),
            Err(ResourceError::Conflict(_))
        ));
    }

    #[test]
    fn cpu_maximum_above_10000_is_refused() {
        let spec = spec_with(None, Some(windows_cpu(None, Some(10_001), None)));
        assert!(matches!(
            resource_request(&spec),
            Err(ResourceError::OutOfRange { .. })
        ));
    }

    #[test]
    fn bad_annotation_names_the_key() {
        let mut spec = Spec::default();
        spec.annotations
            .insert(annotations::PROCESSOR_COUNT.into(), "two".into());
        let err = resource_request(&spec).unwrap_err().to_string();
        assert!(err.contains(annotations::PROCESSOR_COUNT), "{err}");
    }

    #[test]
    fn linux_section_maps_each_limit() {
        let spec = spec_with(
            Some(LinuxResources {
                memory: Some(LinuxMemory {
                    limit: Some(64 << 20),
                    ..LinuxMemory::default()
                }),
                cpu: Some(LinuxCpu {
                    shares: Some(512),
                    quota: Some(20_000),
                    period: Some(100_000),
                    cpus: Some("0".into()),
                    mems: None,
                }),
                pids: Some(LinuxPids { limit: 32 }),
                block_io: Some(LinuxBlockIo {
                    throttle_read_bps_device: vec![ThrottleDevice {
                        major: 8,
                        minor: 0,
                        rate: 1000,
                    }],
                    ..LinuxBlockIo::default()
                }),
            }),
            None,
        );
        let request = resource_request(&spec).unwrap();
        assert_eq!(request.memory_limit, Some(64 << 20));
        assert_eq!(
            request.cpu_cap,
            Some(CpuCap::Quota {
                quota: 20_000,
                period: 100_000
            })
        );
        assert_eq!(request.cpu_weight, Some(CpuWeight::LinuxShares(512)));
        assert_eq!(request.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(request.pids_limit, Some(32));
        assert_eq!(request.device_throttles.len(), 1);
    }

    #[test]
    fn update_with_minus_one_removes_limits() {
        let current = ResourceRequest {
            memory_limit: Some(100 << 20),
            cpu_cap: Some(CpuCap::Count(1)),
            pids_limit: Some(10),
            ..ResourceRequest::default()
        };
        let linux = LinuxResources {
            memory: Some(LinuxMemory {
                limit: Some(-1),
                ..LinuxMemory::default()
            }),
            cpu: Some(LinuxCpu {
                quota: Some(-1),
                ..LinuxCpu::default()
            }),
            pids: Some(LinuxPids { limit: -1 }),
            ..LinuxResources::default()
        };
        let next = updated_request(&current, Some(&linux), None).unwrap();
        assert_eq!(next, ResourceRequest::default());
    }

    #[test]
    fn update_replaces_only_the_given_limits() {
        let current = ResourceRequest {
            memory_limit: Some(100 << 20),
            pids_limit: Some(10),
            ..ResourceRequest::default()
        };
        let linux = LinuxResources {
            pids: Some(LinuxPids { limit: 20 }),
            ..LinuxResources::default()
        };
        let next = updated_request(&current, Some(&linux), None).unwrap();
        assert_eq!(next.memory_limit, Some(100 << 20));
        assert_eq!(next.pids_limit, Some(20));
    }
}
