//! How cgroups are mounted on this host: a pure v2 tree, v1 controllers beside a
//! controller-less v2 tree (hybrid), or v1 alone.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// v1 controllers a job always joins: accounting (CPU, memory, processes, I/O) and the
/// common limits. `cpu` joins only for CPU limits, `cpuset` for cpusets, and `freezer` only
/// where the v2 tree has no `cgroup.freeze`: every hierarchy joined costs a mkdir, a write and
/// an rmdir on the start path.
/// `cpuacct` joins on hybrid hosts too, although the v2 tree's `cpu.stat` has the job's CPU
/// time: tools that read v1 `cpuacct.usage` must find the job's own figure, not the root's.
pub const V1_CONTROLLERS: &[&str] = &["memory", "pids", "blkio", "cpuacct"];
pub const V1_OPTIONAL: &[&str] = &["cpu", "cpuset", "freezer"];
/// Where cgroup filesystems are mounted on every distribution a node runs.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which kind of host a job was made on: it decides where limits are written and read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every controller in one cgroup2 tree.
    V2,
    /// v1 controllers for limits and accounting, a v2 tree for kill, freeze and events.
    Hybrid,
    /// v1 controllers only.
    #[default]
    V1,
}

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V2 {
        root: PathBuf,
    },
    Hybrid {
        unified: PathBuf,
        /// v1 controller → mount point (co-mounted controllers share one).
        v1: Vec<(String, PathBuf)>,
    },
    V1 {
        v1: Vec<(String, PathBuf)>,
    },
}

impl Layout {
    /// A pure v2 host is known from one `statfs` of /sys/fs/cgroup (as runc knows it); any
    /// other is read from `/proc/self/mountinfo`, whose first read by a process costs ~0.1 ms.
    pub fn detect() -> Result<Layout> {
        if let Some(layout) = root_filesystem().and_then(Self::from_root_filesystem) {
            return Ok(layout);
        }
        let mut text = String::with_capacity(16 * 1024);
        fs::File::open("/proc/self/mountinfo")
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        Ok(Self::from_mountinfo(&text))
    }

    /// The whole layout when the filesystem at /sys/fs/cgroup tells it: cgroup2 there means a
    /// pure v2 host.
    pub fn from_root_filesystem(kind: nix::sys::statfs::FsType) -> Option<Layout> {
        (kind == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(|| Layout::V2 {
            root: PathBuf::from(CGROUP_ROOT),
        })
    }

    pub fn from_mountinfo(text: &str) -> Layout {
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
        match unified {
            Some(root) if v1.is_empty() => Layout::V2 { root },
            Some(unified) => Layout::Hybrid { unified, v1 },
            None => Layout::V1 { v1 },
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Layout::V2 { .. } => Kind::V2,
            Layout::Hybrid { .. } => Kind::Hybrid,
            Layout::V1 { .. } => Kind::V1,
        }
    }

    /// The v2 tree's root, where there is one.
    pub fn unified(&self) -> Option<&Path> {
        match self {
            Layout::V2 { root } => Some(root),
            Layout::Hybrid { unified, .. } => Some(unified),
            Layout::V1 { .. } => None,
        }
    }

    /// The v1 controllers' mount points (none on a pure v2 host).
    pub fn v1(&self) -> &[(String, PathBuf)] {
        match self {
            Layout::V2 { .. } => &[],
            Layout::Hybrid { v1, .. } | Layout::V1 { v1 } => v1,
        }
    }
}

/// This host's kind of layout (v1 when it cannot be read).
pub fn this_hosts_kind() -> Kind {
    Layout::detect().map(|l| l.kind()).unwrap_or_default()
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

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uname) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uname.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let have_major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let have_minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (have_major, have_minor) >= (major, minor)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
36 25 0:31 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
37 25 0:32 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct
38 25 0:33 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
39 25 0:34 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
40 25 0:35 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
41 25 0:36 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn detects_a_hybrid_host_and_a_pure_v2_host() {
        let hybrid = Layout::from_mountinfo(HYBRID);
        assert_eq!(hybrid.kind(), Kind::Hybrid);
        assert_eq!(hybrid.unified(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert!(hybrid.v1().iter().any(|(c, _)| c == "memory"));
        assert!(!hybrid.v1().iter().any(|(c, _)| c.contains("systemd")));
        let v2 = Layout::from_mountinfo(
            "30 25 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
        );
        assert_eq!(v2.kind(), Kind::V2);
        assert_eq!(
            Layout::from_root_filesystem(nix::sys::statfs::CGROUP2_SUPER_MAGIC),
            Some(v2),
            "a cgroup2 /sys/fs/cgroup reads as the same pure v2 host without mountinfo"
        );
        assert_eq!(
            Layout::from_root_filesystem(nix::sys::statfs::TMPFS_MAGIC),
            None,
            "a hybrid or v1 host (tmpfs at /sys/fs/cgroup) is read from mountinfo"
        );
    }

    #[test]
    fn this_host_is_detected_as_its_mounts_say() {
        let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        assert_eq!(
            Layout::detect().expect("detect"),
            Layout::from_mountinfo(&text)
        );
    }
}
