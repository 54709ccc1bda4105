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
    v1_stats(&mut s, record.unified.as_deref(), |c| v1_dir(record, c));
    s
}

/// The job's OOM kill count alone, the figure `stats` reports: one file read where the whole
/// set reads a dozen (the shim asks at every exit and, while a container runs, every second).
pub fn oom_kills(record: &CgroupRecord) -> u64 {
    if record.layout == Kind::V2 {
        return record.unified.as_deref().map_or(0, v2_oom_kills);
    }
    v1_dir(record, "memory").map_or(0, |dir| v1_oom_kills(&dir))
}

/// The job's directory in the v1 hierarchy of controller `c`.
fn v1_dir(record: &CgroupRecord, c: &str) -> Option<PathBuf> {
    record
        .v1
        .iter()
        .find(|(n, _)| n == c)
        .map(|(_, d)| d.clone())
}

fn v2_oom_kills(dir: &Path) -> u64 {
    keyed(&dir.join("memory.events"), "oom_kill")
}

fn v1_oom_kills(memory: &Path) -> u64 {
    keyed(&memory.join("memory.oom_control"), "oom_kill")
}

fn v2(s: &mut JobStats, dir: &Path) {
    v2_cpu(s, dir);
    s.memory_usage_bytes = read_u64(&dir.join("memory.current"));
    s.memory_peak_bytes = read_u64(&dir.join("memory.peak"));
    s.memory_limit_bytes = read_u64(&dir.join("memory.max"));
    s.memory_cache_bytes = keyed(&dir.join("memory.stat"), "file");
    s.oom_kills = v2_oom_kills(dir);
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
        s.oom_kills = v1_oom_kills(&dir);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(layout: Kind, unified: Option<&Path>, memory: Option<&Path>) -> CgroupRecord {
        CgroupRecord {
            layout,
            unified: unified.map(Path::to_path_buf),
            v1: memory
                .map(|m| vec![("memory".to_string(), m.to_path_buf())])
                .unwrap_or_default(),
            ..CgroupRecord::default()
        }
    }

    #[test]
    fn the_oom_kill_count_is_the_one_the_whole_stats_report() {
        let dir = tempfile::tempdir().unwrap();
        let (unified, memory) = (dir.path().join("unified"), dir.path().join("memory"));
        fs::create_dir_all(&unified).unwrap();
        fs::create_dir_all(&memory).unwrap();
        fs::write(
            unified.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 3\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
        )
        .unwrap();
        let v2 = record(Kind::V2, Some(&unified), None);
        assert_eq!(oom_kills(&v2), 2);
        assert_eq!(oom_kills(&v2), stats(&v2).oom_kills);
        // A hybrid job's memory controller is v1: its count is there, as its stats read it.
        for layout in [Kind::Hybrid, Kind::V1] {
            let v1 = record(layout, Some(&unified), Some(&memory));
            assert_eq!(oom_kills(&v1), 5, "{layout:?}");
            assert_eq!(oom_kills(&v1), stats(&v1).oom_kills, "{layout:?}");
        }
    }

    #[test]
    fn a_job_without_its_memory_files_has_no_oom_kills() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(&record(Kind::V2, Some(dir.path()), None)), 0);
        assert_eq!(oom_kills(&record(Kind::V2, None, None)), 0);
        assert_eq!(oom_kills(&record(Kind::V1, None, Some(dir.path()))), 0);
        assert_eq!(oom_kills(&record(Kind::Hybrid, Some(dir.path()), None)), 0);
    }
}
