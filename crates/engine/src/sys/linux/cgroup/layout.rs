//! Reading how this host mounts cgroups (what the layout is and how it is told apart:
//! `sys::linuxlogic::cgroup::layout`), and the kernel's version.

use std::fs;

use crate::error::{Error, Result};
use crate::sys::linuxlogic::cgroup::layout::CGROUP_ROOT;

pub use crate::sys::linuxlogic::cgroup::layout::{Kind, Layout, V1_CONTROLLERS, V1_OPTIONAL};

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
        (kind == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(Layout::v2_at_cgroup_root)
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
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sys::linuxlogic::cgroup::layout::tests::HYBRID;

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
