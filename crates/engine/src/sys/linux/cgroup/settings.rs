//! The limits written into the job's directories (what they are: `sys::linuxlogic::cgroup::
//! settings`), and the host's disks the I/O caps are spread over.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::CgroupRecord;
use crate::error::{Error, Result};
use crate::plan::resources::ResourceRequest;
use crate::sys::linuxlogic::cgroup::settings as plan;

pub use crate::sys::linuxlogic::cgroup::settings::{
    cfs_quota, cpu_shares, cpu_weight, v1_settings, v2_settings, Setting, Target,
};

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

/// Applies settings, each in the job's directory its target names.
pub fn apply(record: &CgroupRecord, settings: &[Setting]) -> Result<()> {
    for s in settings {
        let dir = match s.target {
            Target::Unified => record.unified.as_deref(),
            Target::V1(controller) => record
                .v1
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, d)| d.as_path()),
        };
        let Some(dir) = dir else {
            return Err(Error::sys(
                format!("set {}", s.file),
                std::io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the {} controller is not available on this host",
                        match s.target {
                            Target::Unified => "cgroup v2",
                            Target::V1(controller) => controller,
                        }
                    ),
                ),
            ));
        };
        write_file(dir, s.file, &s.value)?;
    }
    Ok(())
}

/// The settings for this host's cgroup layout.
pub fn settings_for(
    record: &CgroupRecord,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<Setting> {
    plan::settings_for(record.layout, request, host_cpus, &disks_for(request))
}

/// What `update` writes (see [`plan::update_settings`]).
pub fn update_settings(
    record: &CgroupRecord,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<Setting> {
    plan::update_settings(record, request, host_cpus, &disks_for(request))
}

fn disks_for(request: &ResourceRequest) -> Vec<(u64, u64)> {
    if plan::needs_disks(request) {
        host_disks()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::linuxlogic::cgroup::layout::Kind;
    use crate::sys::linuxlogic::cgroup::settings::tests::request;
    use crate::sys::linuxlogic::cgroup::settings::v1;

    #[test]
    fn v2_files_hold_the_values_the_formulas_give() {
        let tmp = tempfile::tempdir().unwrap();
        let record = CgroupRecord {
            unified: Some(tmp.path().to_path_buf()),
            layout: Kind::V2,
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
    fn a_limit_without_its_controller_is_a_clear_error() {
        let record = CgroupRecord::default();
        let err = apply(&record, &[v1("memory", "memory.limit_in_bytes", 1)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("memory controller is not available"),
            "{err}"
        );
    }
}
