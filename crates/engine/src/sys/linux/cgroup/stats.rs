//! The job's figures, read from the v2 tree's files or the v1 controllers' own.

use std::fs;
use std::path::{Path, PathBuf};

use super::layout::Kind;
use super::CgroupRecord;
use crate::sys::JobStats;

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

fn v2_cpu(s: &mut JobStats, dir: &Path) {
    s.cpu_usage_ns = keyed(&dir.join("cpu.stat"), "usage_usec") * 1000;
    s.cpu_user_ns = keyed(&dir.join("cpu.stat"), "user_usec") * 1000;
    s.cpu_system_ns = keyed(&dir.join("cpu.stat"), "system_usec") * 1000;
}

pub fn stats(record: &CgroupRecord) -> JobStats {
    let mut s = JobStats::default();
    if record.layout == Kind::V2 {
        if let Some(dir) = &record.unified {
            v2(&mut s, dir);
        }
        return s;
    }
    let v1 = |c: &str| {
        record
            .v1
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, d)| d.clone())
    };
    v1_stats(&mut s, record.unified.as_deref(), v1);
    s
}

fn v2(s: &mut JobStats, dir: &Path) {
    v2_cpu(s, dir);
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
}

fn v1_stats(s: &mut JobStats, unified: Option<&Path>, v1: impl Fn(&str) -> Option<PathBuf>) {
    // The v2 tree's cpu.stat counts user and system time in µs where cpuacct.stat counts
    // clock ticks: it is read wherever it exists (a hybrid job is in v1 cpuacct too, for the
    // tools that read it there).
    if let Some(dir) = unified {
        v2_cpu(s, dir);
    } else if let Some(dir) = v1("cpuacct") {
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
