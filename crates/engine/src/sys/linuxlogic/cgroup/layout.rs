//! How cgroups are mounted on a host: a pure v2 tree, v1 controllers beside a controller-less
//! v2 tree (hybrid), or v1 alone, read from the host's mount table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sys::linuxlogic::mountinfo;

/// v1 controllers a job always joins: accounting (CPU, memory, processes, I/O) and the
/// common limits. `cpu` joins only for CPU limits, `cpuset` for cpusets, and `freezer` only
/// where the v2 tree has no `cgroup.freeze`: every hierarchy joined costs a mkdir, a write and
/// an rmdir on the start path.
/// `cpuacct` joins on hybrid hosts too, although the v2 tree's `cpu.stat` has the job's CPU
/// time: tools that read v1 `cpuacct.usage` must find the job's own figure, not the root's.
pub const V1_CONTROLLERS: &[&str] = &["memory", "pids", "blkio", "cpuacct"];
pub const V1_OPTIONAL: &[&str] = &["cpu", "cpuset", "freezer"];
/// Where cgroup filesystems are mounted on every distribution a node runs.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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
    /// A pure v2 host with its tree at /sys/fs/cgroup, as a cgroup2 filesystem there tells.
    pub fn v2_at_cgroup_root() -> Layout {
        Layout::V2 {
            root: PathBuf::from(CGROUP_ROOT),
        }
    }

    /// The layout the host's mount table (`/proc/self/mountinfo`) shows: the last cgroup2
    /// mount is the v2 tree, each v1 controller a job may join is found at its cgroup mount.
    pub fn from_mountinfo(text: &str) -> Layout {
        let mut unified = None;
        let mut v1 = Vec::new();
        for mount in mountinfo::parse(text) {
            match mount.fs_type {
                "cgroup2" => unified = Some(mount.mount_point),
                "cgroup" => {
                    for option in mount.super_options {
                        if V1_CONTROLLERS.contains(&option) || V1_OPTIONAL.contains(&option) {
                            v1.push((option.to_string(), mount.mount_point.clone()));
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
    fn a_cgroup_mount_point_with_an_escaped_space_is_read_as_the_path_it_is() {
        let layout = Layout::from_mountinfo(
            "35 25 0:30 / /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw\n\
             38 25 0:33 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory",
        );
        assert_eq!(layout.unified(), Some(Path::new("/sys/fs/cgroup/uni fied")));
        assert_eq!(
            layout.v1(),
            [(
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/mem ory")
            )]
        );
    }
}
