//! The container volume and the container's view of the filesystem (§2), made and removed.
//! What they are made of, and the order of the view's mount actions, is decided in
//! `sys::linuxlogic::view`; here the host is checked and the actions are executed:
//! `namespace` builds a bind-layout view on a thread of its own, `mounts` performs each action,
//! `walk` opens host and volume directories without following a symlink another user could
//! change, and `location` makes a symlink-layout volume's host path.

mod location;
mod mounts;
mod namespace;
mod walk;

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::plan::mounts::{relative_components, MountError};
use crate::plan::{ContainerPlan, Layout, Propagation};
use crate::sys::linuxlogic::{mountinfo, view};

pub use crate::sys::linuxlogic::view::{plan_record, VolumeRecord};
pub use location::make_host_mount_point;
pub use namespace::{in_view, Ready, Stage, View};
pub use walk::make_dir_in_volume;

fn sys_err(op: impl Into<String>, e: nix::Error) -> Error {
    Error::sys(op, std::io::Error::from(e))
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::io(
            "use",
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })
}

/// Checks the plan's paths against the host before anything is made: sources exist and are
/// not FIFOs, destinations do not pass through a symlink of the image, rshared mounts have a
/// shared source.
pub fn check(plan: &ContainerPlan, state_dir: &Path) -> Result<()> {
    if plan.volume.layout == Layout::Symlink {
        let default_location = state_dir.parent().unwrap_or(state_dir).join("hpc");
        location::check_host_location(plan, &default_location)?;
    }
    let lowers = view::lower_dirs(&plan.volume.image);
    for lower in &lowers {
        if !lower.is_dir() {
            return Err(Error::io(
                "use image root",
                lower,
                std::io::Error::new(ErrorKind::NotFound, "no such directory"),
            ));
        }
    }
    for m in &plan.mounts {
        let meta = fs::metadata(&m.source).map_err(|e| {
            Error::Mount(MountError::Source {
                path: m.source.display().to_string(),
                reason: e.to_string(),
            })
        })?;
        if meta.file_type().is_fifo() {
            return Err(Error::Mount(MountError::NamedPipe {
                path: m.source.display().to_string(),
            }));
        }
        // The legacy path $CONTAINER_SANDBOX_MOUNT_POINT/<destination> is made inside the
        // volume: refuse any image symlink on the way there.
        let parts = relative_components(&m.destination);
        for lower in &lowers {
            let mut at = lower.clone();
            for part in &parts[..parts.len().saturating_sub(1)] {
                at.push(part);
                if fs::symlink_metadata(&at).is_ok_and(|md| md.file_type().is_symlink()) {
                    return Err(Error::Mount(MountError::Destination {
                        destination: m.destination.display().to_string(),
                        reason: format!(
                            "'{}' is a symlink in the image; a mount path inside the volume may not pass through one",
                            Path::new("/").join(at.strip_prefix(lower).unwrap_or(&at)).display()
                        ),
                    }));
                }
            }
        }
        if m.propagation == Propagation::Shared {
            let (mount_point, shared) = mount_of(&m.source)?;
            if !shared {
                return Err(Error::Mount(MountError::Source {
                    path: m.source.display().to_string(),
                    reason: format!(
                        "rshared propagation needs a shared source mount, and '{}' is not shared; run `mount --make-rshared {}` first",
                        mount_point.display(),
                        mount_point.display()
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// The mount holding `path` and whether it is shared.
fn mount_of(path: &Path) -> Result<(PathBuf, bool)> {
    let path = fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))?;
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mounts = mountinfo::parse(&text);
    Ok(mountinfo::mount_holding(&mounts, &path)
        .map(|m| (m.mount_point.clone(), m.is_shared()))
        .unwrap_or((PathBuf::from("/"), false)))
}

/// Drops the bind layout's view: the pin of its mount namespace, the last reference but the
/// descriptor returned once no process runs in it. When that descriptor is closed, the kernel
/// takes the namespace down, and with it the volume mounted only there (its unmount syncs the
/// filesystem under the volume's upper layer); the volume's directories stay. Idempotent.
pub fn release_view(record: &VolumeRecord) -> Result<Option<OwnedFd>> {
    unpin(record, true)
}

/// Unmounts and removes the namespace's pin. With `hold`, a descriptor of the namespace, opened
/// first, keeps the namespace alive past its pin (an open once the pin is gone finds the plain
/// file under it, which holds nothing).
fn unpin(record: &VolumeRecord, hold: bool) -> Result<Option<OwnedFd>> {
    let Some(pin) = &record.ns_pin else {
        return Ok(None);
    };
    let namespace = if hold {
        fs::File::open(pin).ok().map(OwnedFd::from)
    } else {
        None
    };
    mounts::detach(pin)?;
    match fs::remove_file(pin) {
        Ok(()) => Ok(namespace),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(namespace),
        Err(e) => Err(Error::io("remove", pin, e)),
    }
}

/// Unmounts and removes what the volume and view are made of. Idempotent.
pub fn destroy(record: &VolumeRecord) -> Result<()> {
    // The namespace is taken down here, with its pin, before the volume's directories go.
    unpin(record, false)?;
    if let Some(host_mount) = &record.host_mount {
        mounts::detach(host_mount)?;
        match fs::remove_dir(host_mount) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", host_mount, e)),
        }
    }
    if let Some(scratch) = &record.scratch {
        // As the mount left it: an empty upper layer unless the workload wrote to it.
        crate::state::remove_tree(scratch, &[], &["work/work", "work", "upper"])
            .map_err(|e| Error::io("remove", scratch, e))?;
    }
    if let Some(links) = &record.links {
        crate::state::remove_tree(links, &[], &[]).map_err(|e| Error::io("remove", links, e))?;
    }
    Ok(())
}

/// [`destroy`] for a container whose record is unreadable: what its state directory holds (the
/// namespace pin, the scratch and link layers) and its volume at the default symlink-layout
/// location, which only the runtime makes. A volume at an annotation's location cannot be found.
pub fn destroy_unrecorded(state_dir: &Path) -> Result<()> {
    let host_mount = match (state_dir.parent(), state_dir.file_name()) {
        (Some(root), Some(id)) => Some(root.join("hpc").join(id)).filter(|p| p.exists()),
        _ => None,
    };
    destroy(&VolumeRecord {
        mount_point: host_mount.clone().unwrap_or_default(),
        ns_pin: Some(state_dir.join("mntns")),
        host_mount,
        scratch: Some(state_dir.join("volume")),
        links: Some(state_dir.join("links")),
    })
}

/// What a path is inside the current view, for command resolution.
pub fn file_kind(path: &Path) -> crate::plan::process::FileKind {
    use crate::plan::process::FileKind;
    match fs::metadata(path) {
        Err(_) => FileKind::Missing,
        Ok(md) if md.is_dir() => FileKind::Directory,
        Ok(_) => {
            let Ok(c) = cstring(path) else {
                return FileKind::Missing;
            };
            // SAFETY: access(2) with a valid C string.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                FileKind::Executable
            } else {
                FileKind::File
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    use std::os::fd::AsRawFd;

    use super::*;

    /// Unmounts the pin however the test ends, so that its directory can be removed.
    struct Pin(PathBuf);

    impl Drop for Pin {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }

    /// The descriptor `release_view` returns keeps the namespace, and what is mounted only in
    /// it, until it is dropped: where the kernel takes the view down is the caller's choice.
    #[test]
    fn a_released_views_namespace_lives_until_its_descriptor_is_dropped() {
        // SAFETY: geteuid has no effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (mounts)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = Pin(dir.path().join("mntns"));
        fs::File::create(&pin.0).unwrap();
        let volume = dir.path().join("volume");
        fs::create_dir(&volume).unwrap();
        // A namespace with a tmpfs mounted only in it, pinned as the engine pins a view.
        let ns = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).unwrap();
                    let none = None::<&str>;
                    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none).unwrap();
                    mount(
                        Some("tmpfs"),
                        &volume,
                        Some("tmpfs"),
                        MsFlags::empty(),
                        none,
                    )
                    .unwrap();
                    fs::File::open("/proc/thread-self/ns/mnt").unwrap()
                })
                .join()
                .unwrap()
        });
        let ns_path = format!("/proc/self/fd/{}", ns.as_raw_fd());
        let none = None::<&str>;
        mount(Some(ns_path.as_str()), &pin.0, none, MsFlags::MS_BIND, none).unwrap();
        drop(ns);

        let record = VolumeRecord {
            ns_pin: Some(pin.0.clone()),
            ..VolumeRecord::default()
        };
        let released = release_view(&record)
            .unwrap()
            .expect("the namespace's descriptor");
        assert!(!pin.0.exists(), "the pin is removed");
        let inside = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    unshare(CloneFlags::CLONE_FS).unwrap();
                    setns(&released, CloneFlags::CLONE_NEWNS).unwrap();
                    fs::read_to_string("/proc/thread-self/mountinfo").unwrap()
                })
                .join()
                .unwrap()
        });
        let tmpfs_there = inside.lines().any(|line| {
            line.split(' ').nth(4) == Some(&*volume.to_string_lossy()) && line.contains(" tmpfs ")
        });
        assert!(
            tmpfs_there,
            "the namespace and its tmpfs, until dropped:\n{inside}"
        );
        drop(released);
        assert_eq!(
            release_view(&record).unwrap().map(|_| ()),
            None,
            "idempotent"
        );
    }
}
