//! The engine's job-wide figures in the message containerd decodes for this host: cgroup v1
//! `Metrics` (also on hybrid hosts), cgroup v2 `Metrics`, or hcsshim's `Statistics` on Windows.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageFull;
use containerd_shim::protos::windows::stats as windows;
use hostprocess_engine::JobStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// Chosen by `sys` on Linux only, like `CgroupV2`.
    #[cfg_attr(windows, allow(dead_code))]
    CgroupV1,
    #[cfg_attr(windows, allow(dead_code))]
    CgroupV2,
    /// Chosen by `sys` on Windows only.
    #[cfg_attr(unix, allow(dead_code))]
    Windows,
}

/// Packs the figures as containerd's typeurl expects: the message's full protobuf name as the
/// type URL, no `type.googleapis.com/` prefix.
pub fn to_any(stats: &JobStats, format: MetricsFormat) -> Result<Any, String> {
    match format {
        MetricsFormat::CgroupV1 => pack(&cgroup_v1(stats)),
        MetricsFormat::CgroupV2 => pack(&cgroup_v2(stats)),
        MetricsFormat::Windows => pack(&windows_statistics(stats)),
    }
}

fn pack<M: MessageFull>(message: &M) -> Result<Any, String> {
    let mut any = Any::new();
    any.type_url = M::descriptor().full_name().to_string();
    any.value = message
        .write_to_bytes()
        .map_err(|e| format!("encode {}: {e}", any.type_url))?;
    Ok(any)
}

pub fn cgroup_v1(s: &JobStats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let pids = m.pids.mut_or_insert_default();
    pids.current = s.pids_current;
    pids.limit = s.pids_limit;
    let usage = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
    usage.total = s.cpu_usage_ns;
    usage.user = s.cpu_user_ns;
    usage.kernel = s.cpu_system_ns;
    let memory = m.memory.mut_or_insert_default();
    memory.cache = s.memory_cache_bytes;
    memory.total_cache = s.memory_cache_bytes;
    let entry = memory.usage.mut_or_insert_default();
    entry.usage = s.memory_usage_bytes;
    entry.max = s.memory_peak_bytes;
    entry.limit = s.memory_limit_bytes;
    m.memory_oom_control.mut_or_insert_default().oom_kill = s.oom_kills;
    let blkio = m.blkio.mut_or_insert_default();
    let entry = |op: &str, value: u64| {
        let mut e = v1::BlkIOEntry::new();
        e.op = op.into();
        e.value = value;
        e
    };
    blkio.io_service_bytes_recursive = vec![
        entry("Read", s.io_read_bytes),
        entry("Write", s.io_write_bytes),
        entry("Total", s.io_read_bytes + s.io_write_bytes),
    ];
    blkio.io_serviced_recursive = vec![
        entry("Read", s.io_read_ops),
        entry("Write", s.io_write_ops),
        entry("Total", s.io_read_ops + s.io_write_ops),
    ];
    m
}

pub fn cgroup_v2(s: &JobStats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let pids = m.pids.mut_or_insert_default();
    pids.current = s.pids_current;
    pids.limit = s.pids_limit;
    let cpu = m.cpu.mut_or_insert_default();
    cpu.usage_usec = s.cpu_usage_ns / 1000;
    cpu.user_usec = s.cpu_user_ns / 1000;
    cpu.system_usec = s.cpu_system_ns / 1000;
    let memory = m.memory.mut_or_insert_default();
    memory.usage = s.memory_usage_bytes;
    memory.max_usage = s.memory_peak_bytes;
    memory.usage_limit = s.memory_limit_bytes;
    memory.file = s.memory_cache_bytes;
    m.memory_events.mut_or_insert_default().oom_kill = s.oom_kills;
    let mut io = v2::IOEntry::new();
    io.rbytes = s.io_read_bytes;
    io.wbytes = s.io_write_bytes;
    io.rios = s.io_read_ops;
    io.wios = s.io_write_ops;
    m.io.mut_or_insert_default().usage = vec![io];
    m
}

pub fn windows_statistics(s: &JobStats) -> windows::Statistics {
    let mut c = windows::WindowsContainerStatistics::new();
    let processor = c.processor.mut_or_insert_default();
    processor.total_runtime_ns = s.cpu_usage_ns;
    processor.runtime_user_ns = s.cpu_user_ns;
    processor.runtime_kernel_ns = s.cpu_system_ns;
    let memory = c.memory.mut_or_insert_default();
    memory.memory_usage_commit_bytes = s.memory_usage_bytes;
    memory.memory_usage_commit_peak_bytes = s.memory_peak_bytes;
    memory.memory_usage_private_working_set_bytes = s.memory_private_working_set_bytes;
    let storage = c.storage.mut_or_insert_default();
    storage.read_count_normalized = s.io_read_ops;
    storage.read_size_bytes = s.io_read_bytes;
    storage.write_count_normalized = s.io_write_ops;
    storage.write_size_bytes = s.io_write_bytes;
    let mut statistics = windows::Statistics::new();
    statistics.set_windows(c);
    statistics
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    fn stats() -> JobStats {
        JobStats {
            cpu_usage_ns: 3_000_000,
            cpu_user_ns: 2_000_000,
            cpu_system_ns: 1_000_000,
            memory_usage_bytes: 4096,
            memory_peak_bytes: 8192,
            memory_limit_bytes: 1 << 20,
            oom_kills: 1,
            pids_current: 2,
            io_read_bytes: 10,
            io_write_bytes: 20,
            ..JobStats::default()
        }
    }

    #[test]
    fn v1_metrics_decode_with_containerds_type_url() {
        let any = to_any(&stats(), MetricsFormat::CgroupV1).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 3_000_000);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.max, 8192);
        assert_eq!(m.memory.usage.limit, 1 << 20);
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.memory_oom_control.oom_kill, 1);
        assert_eq!(m.blkio.io_service_bytes_recursive[2].value, 30);
    }

    #[test]
    fn v2_metrics_use_microseconds() {
        let any = to_any(&stats(), MetricsFormat::CgroupV2).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 3000);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.io.usage[0].wbytes, 20);
    }

    #[test]
    fn windows_statistics_use_hcsshims_message() {
        let any = to_any(&stats(), MetricsFormat::Windows).unwrap();
        assert_eq!(any.type_url, "containerd.runhcs.stats.v1.Statistics");
        let s = windows::Statistics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(s.windows().processor.total_runtime_ns, 3_000_000);
    }

    #[test]
    fn windows_private_working_set_is_the_processes_not_the_commit() {
        let stats = JobStats {
            memory_private_working_set_bytes: 1024,
            ..stats()
        };
        let any = to_any(&stats, MetricsFormat::Windows).unwrap();
        let s = windows::Statistics::parse_from_bytes(&any.value).unwrap();
        let memory = &s.windows().memory;
        assert_eq!(memory.memory_usage_private_working_set_bytes, 1024);
        assert_eq!(memory.memory_usage_commit_bytes, 4096);
    }
}
