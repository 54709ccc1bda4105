//! Volume mounts (§2): which of the spec's mounts apply, and how.

use std::path::{Component, Path, PathBuf};

use crate::spec::Mount;
use crate::sys::winlogic::mounts::{is_under, mount_destination, PathError};

const NAMED_PIPE_PREFIX: &str = r"\\.\pipe\";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("invalid OCI spec - a mount must have both source and a destination (mount {index})")]
    Incomplete { index: usize },
    #[error(
        "named pipe mounts are not supported for HostProcess containers: {path} - open the pipe at its host path instead"
    )]
    NamedPipe { path: String },
    #[error("mount destination {destination:?} must be an absolute path")]
    RelativeDestination { destination: String },
    #[error("mount destination {destination:?} must not contain '..'")]
    DotDot { destination: String },
    #[error(
        "mount destination {destination:?} would replace the sandbox mount point {mount_point:?}"
    )]
    OverMountPoint {
        destination: String,
        mount_point: String,
    },
    #[error("mount destination {destination:?}: {reason}")]
    Destination { destination: String, reason: String },
    #[error("mount source {path:?}: {reason}")]
    Source { path: String, reason: String },
}

/// Mount propagation, as runc reads `rprivate`/`rslave`/`rshared` (and the non-recursive forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Private,
    Slave,
    Shared,
}

/// A host path made visible at `destination` for this container only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// A spec mount that does not apply to a host process, kept for the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMount {
    pub destination: String,
    pub kind: String,
}

/// Splits the spec's mounts into volume mounts (the bind mounts) and skipped kernel-filesystem
/// mounts, refusing incomplete, named-pipe and `..` mounts.
pub fn volume_mounts(
    mounts: &[Mount],
    mount_point: &Path,
    bundle: &Path,
) -> Result<(Vec<VolumeMount>, Vec<SkippedMount>), MountError> {
    let mut volume = Vec::new();
    let mut skipped = Vec::new();
    for (index, mount) in mounts.iter().enumerate() {
        let source = mount.source.clone().unwrap_or_default();
        if source.starts_with(NAMED_PIPE_PREFIX) || mount.destination.starts_with(NAMED_PIPE_PREFIX)
        {
            return Err(MountError::NamedPipe { path: source });
        }
        let is_bind = mount.kind.as_deref() == Some("bind")
            || mount.options.iter().any(|o| o == "bind" || o == "rbind");
        if !is_bind {
            skipped.push(SkippedMount {
                destination: mount.destination.clone(),
                kind: mount.kind.clone().unwrap_or_default(),
            });
            continue;
        }
        if source.is_empty() || mount.destination.is_empty() {
            return Err(MountError::Incomplete { index });
        }
        let destination = checked_destination(&mount.destination)?;
        let over_mount_point = if cfg!(windows) {
            is_under(
                &mount_point.to_string_lossy(),
                &destination.to_string_lossy(),
            )
        } else {
            mount_point.starts_with(&destination)
        };
        if over_mount_point {
            return Err(MountError::OverMountPoint {
                destination: mount.destination.clone(),
                mount_point: mount_point.display().to_string(),
            });
        }
        let mut read_only = false;
        let mut propagation = Propagation::Slave;
        for option in &mount.options {
            match option.as_str() {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "private" | "rprivate" => propagation = Propagation::Private,
                "slave" | "rslave" => propagation = Propagation::Slave,
                "shared" | "rshared" => propagation = Propagation::Shared,
                _ => {}
            }
        }
        // As runc does: a relative source is relative to the bundle, never to the caller.
        let source = Path::new(&source);
        volume.push(VolumeMount {
            source: if source.is_absolute() {
                source.to_path_buf()
            } else {
                bundle.join(source)
            },
            destination,
            read_only,
            propagation,
        });
    }
    Ok((volume, skipped))
}

/// An absolute destination without `..`; `.` and repeated separators are dropped. On Windows a
/// destination keeps its drive (`D:\data`) and a rooted one (`/data`) is on the system drive.
pub fn checked_destination(destination: &str) -> Result<PathBuf, MountError> {
    if cfg!(windows) {
        return windows_destination(destination);
    }
    let path = Path::new(destination);
    if !path.is_absolute() {
        return Err(MountError::RelativeDestination {
            destination: destination.to_string(),
        });
    }
    let mut clean = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => {
                return Err(MountError::DotDot {
                    destination: destination.to_string(),
                })
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(clean)
}

/// [`checked_destination`] for Windows: `C:\data`, `D:\data`, `/data` (`C:\data`); not a drive
/// root, a relative, network or device path.
pub fn windows_destination(destination: &str) -> Result<PathBuf, MountError> {
    mount_destination(destination)
        .map(PathBuf::from)
        .map_err(|e| match e {
            PathError::Relative { .. } => MountError::RelativeDestination {
                destination: destination.to_string(),
            },
            PathError::DotDot { .. } => MountError::DotDot {
                destination: destination.to_string(),
            },
            other => MountError::Destination {
                destination: destination.to_string(),
                reason: other.to_string(),
            },
        })
}

/// The path components of `destination` below `/`, for walking them inside the volume.
pub fn relative_components(destination: &Path) -> Vec<String> {
    destination
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(source: &str, destination: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.into(),
            kind: Some("bind".into()),
            source: Some(source.into()),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The default sandbox mount point, as the plan spells it on this platform.
    const MOUNT_POINT: &str = if cfg!(windows) { r"C:\hpc" } else { "/hpc" };

    fn plan(mounts: &[Mount]) -> Result<(Vec<VolumeMount>, Vec<SkippedMount>), MountError> {
        volume_mounts(mounts, Path::new(MOUNT_POINT), Path::new("/bundle"))
    }

    #[test]
    fn default_kernel_filesystem_mounts_are_skipped() {
        let proc_mount = Mount {
            destination: "/proc".into(),
            kind: Some("proc".into()),
            source: Some("proc".into()),
            options: vec![],
        };
        let (volume, skipped) = plan(&[proc_mount, bind("/data", "/data", &["rbind"])]).unwrap();
        assert_eq!(volume.len(), 1);
        assert_eq!(skipped[0].destination, "/proc");
    }

    #[test]
    fn bind_options_without_a_bind_type_count_as_bind() {
        let mut mount = bind("/a", "/b", &["rbind", "ro"]);
        mount.kind = None;
        let (volume, _) = plan(&[mount]).unwrap();
        assert!(volume[0].read_only);
    }

    #[test]
    fn propagation_options_are_read_like_runc() {
        let (volume, _) = plan(&[
            bind("/a", "/a", &["rbind", "rshared"]),
            bind("/b", "/b", &["rbind", "rprivate"]),
            bind("/c", "/c", &["rbind"]),
        ])
        .unwrap();
        assert_eq!(volume[0].propagation, Propagation::Shared);
        assert_eq!(volume[1].propagation, Propagation::Private);
        assert_eq!(volume[2].propagation, Propagation::Slave);
    }

    #[test]
    fn named_pipe_sources_are_refused_with_what_to_do() {
        let err = plan(&[bind(r"\\.\pipe\docker_engine", "/pipe", &[])]).unwrap_err();
        assert!(err
            .to_string()
            .contains("open the pipe at its host path instead"));
    }

    #[test]
    fn relative_sources_are_relative_to_the_bundle() {
        let (volume, _) = plan(&[bind("data", "/data", &[])]).unwrap();
        assert_eq!(volume[0].source, Path::new("/bundle").join("data"));
    }

    #[test]
    fn dot_dot_destinations_are_refused() {
        assert!(matches!(
            plan(&[bind("/a", "/var/../etc", &[])]),
            Err(MountError::DotDot { .. })
        ));
    }

    #[test]
    fn relative_destinations_are_refused() {
        assert!(matches!(
            plan(&[bind("/a", "var/x", &[])]),
            Err(MountError::RelativeDestination { .. })
        ));
    }

    #[test]
    fn a_mount_over_the_sandbox_mount_point_is_refused() {
        assert!(matches!(
            plan(&[bind("/a", "/hpc", &[])]),
            Err(MountError::OverMountPoint { .. })
        ));
    }

    #[test]
    fn incomplete_bind_mounts_are_refused() {
        assert!(matches!(
            plan(&[bind("", "/x", &[])]),
            Err(MountError::Incomplete { index: 0 })
        ));
    }

    #[test]
    fn destinations_are_cleaned() {
        let clean = checked_destination("/var//run/./secrets/").unwrap();
        let expected = if cfg!(windows) {
            r"C:\var\run\secrets"
        } else {
            "/var/run/secrets"
        };
        assert_eq!(clean, PathBuf::from(expected));
        assert_eq!(relative_components(&clean), vec!["var", "run", "secrets"]);
    }

    #[test]
    fn windows_destinations_keep_their_drive_and_rooted_ones_are_on_the_system_drive() {
        let ok = |d: &str| windows_destination(d).unwrap();
        assert_eq!(ok(r"D:\data"), PathBuf::from(r"D:\data"));
        assert_eq!(ok("d:/x//./y/"), PathBuf::from(r"D:\x\y"));
        assert_eq!(ok("/data"), PathBuf::from(r"C:\data"));
        assert!(matches!(
            windows_destination("data"),
            Err(MountError::RelativeDestination { .. })
        ));
        assert!(matches!(
            windows_destination(r"C:\a\..\b"),
            Err(MountError::DotDot { .. })
        ));
        assert!(matches!(
            windows_destination("D:"),
            Err(MountError::Destination { .. })
        ));
        assert!(matches!(
            windows_destination(r"\\server\share"),
            Err(MountError::Destination { .. })
        ));
    }

    #[cfg(windows)]
    #[test]
    fn a_mount_on_another_drive_keeps_its_drive() {
        let (volume, _) = plan(&[
            bind(r"C:\src", r"D:\data", &[]),
            bind(r"C:\src", "/data", &[]),
        ])
        .unwrap();
        assert_eq!(volume[0].destination, PathBuf::from(r"D:\data"));
        assert_eq!(volume[1].destination, PathBuf::from(r"C:\data"));
    }
}
