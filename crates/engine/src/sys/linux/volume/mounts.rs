//! The view's actions as system calls: the image mounted as the volume, each mount's source
//! cloned on the host and attached at its destination, propagation, read-only attributes, and
//! the paths inside the volume that reach a mount.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::walk::{
    component_c, make_dir_in_volume, open_dirs_nofollow, open_host_dir, open_host_mount_point,
    stat_at, WalkError,
};
use super::{cstring, sys_err};
use crate::error::{Error, Result};
use crate::plan::mounts::{relative_components, MountError};
use crate::sys::linuxlogic::view::{
    AttachAt, ChangePropagation, DirAttrs, ImageMount, LinkLayer, ViewAction, Writable,
};

/// Takes the view's actions in order, in the calling thread's mount namespace (`id`: the
/// container's). `trees` gives the mounts' sources, opened on the host, when the first is
/// attached.
pub(super) fn execute(
    id: &str,
    actions: &[ViewAction],
    trees: impl FnOnce() -> Result<Vec<OwnedFd>>,
) -> Result<()> {
    let mut trees = Some(trees);
    let mut opened: Vec<Option<OwnedFd>> = Vec::new();
    let mut actions = actions.iter().peekable();
    while let Some(action) = actions.next() {
        match action {
            ViewAction::MakeMountPoint { path } => {
                open_host_dir(path, Some(0o755)).map_err(|e| match e {
                    WalkError::Untrusted(reason) => Error::container(
                        id,
                        format!("sandbox mount point '{}': {reason}", path.display()),
                    ),
                    WalkError::Io(e) => Error::io("create", path, e),
                })?;
            }
            ViewAction::MakeLinkLayer(layer) => make_link_layer(layer)?,
            ViewAction::MountImage { image, at } => {
                // A bound image made read-only next (nothing added in between) gets both of
                // its attributes in one call.
                let read_only = matches!(
                    (image, actions.peek()),
                    (ImageMount::Bind { .. }, Some(ViewAction::ReadOnly { path })) if path == at
                );
                if read_only {
                    actions.next();
                }
                mount_image(image, at, read_only)?
            }
            ViewAction::MakeDirInVolume { volume, path } => make_dir_in_volume(volume, path)?,
            ViewAction::Attach {
                index,
                destination,
                at,
            } => {
                if let Some(trees) = trees.take() {
                    opened = trees()?.into_iter().map(Some).collect();
                }
                let tree = opened
                    .get_mut(*index)
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        Error::container(
                            id,
                            format!(
                                "the source of the mount at '{}' was not opened on the host",
                                destination.display()
                            ),
                        )
                    })?;
                let at = match at {
                    AttachAt::Volume => None,
                    AttachAt::Host => open_host_mount_point(destination)?,
                };
                move_mount_to(&tree, destination, at.as_ref())?;
            }
            ViewAction::SetPropagation { path, propagation } => propagate(path, *propagation)?,
            ViewAction::ReadOnly { path } => set_read_only_recursive(path)?,
            ViewAction::Reach {
                volume,
                destination,
                target,
                read_only,
            } => reach_from_volume(volume, destination, target, *read_only)?,
        }
    }
    Ok(())
}

/// Mounts the volume at `target` (in the calling thread's namespace): the image bound, without
/// setuid or devices (and read-only with `bound_read_only`), or the overlay (which has no
/// setuid, no devices either), its writable layer made and given to the container's account
/// first.
fn mount_image(image: &ImageMount, target: &Path, bound_read_only: bool) -> Result<()> {
    let writable = match image {
        ImageMount::Bind { image } => {
            bind_recursive(image, target)?;
            let read_only = if bound_read_only {
                libc::MOUNT_ATTR_RDONLY
            } else {
                0
            };
            return set_mount_attrs(target, NO_PRIVILEGE | read_only);
        }
        ImageMount::Overlay { writable, .. } => writable,
    };
    if let Some(writable) = writable {
        make_writable_layer(writable)?;
    }
    let data = image.overlay_data().unwrap_or_default();
    // The image's setuid programs and device nodes grant nothing (§4): a container's
    // privileges are its account's.
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| {
        sys_err(
            format!("mount overlay on '{}' ({data})", target.display()),
            e,
        )
    })
}

/// The overlay's upper directory (ours, made here, or containerd's) is given to the container's
/// account, private to it when asked.
fn make_writable_layer(layer: &Writable) -> Result<()> {
    let Writable {
        upper,
        work,
        scratch,
        owner,
        private,
    } = layer;
    if let Some(scratch) = scratch {
        // The scratch directory is the container's own and new: one mkdir each.
        fs::create_dir_all(scratch).map_err(|e| Error::io("create", scratch, e))?;
        for d in [upper, work] {
            fs::create_dir(d).map_err(|e| Error::io("create", d, e))?;
        }
    }
    nix::unistd::chown(
        upper,
        Some(nix::unistd::Uid::from_raw(owner.0)),
        Some(nix::unistd::Gid::from_raw(owner.1)),
    )
    .map_err(|e| {
        sys_err(
            format!("give '{}' to the container's account", upper.display()),
            e,
        )
    })?;
    if *private {
        fs::set_permissions(upper, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("make private", upper, e))?;
    }
    Ok(())
}

/// Binds `source` and the mounts below it on `target`.
fn bind_recursive(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        sys_err(
            format!("bind '{}' on '{}'", source.display(), target.display()),
            e,
        )
    })
}

/// Makes `$CONTAINER_SANDBOX_MOUNT_POINT/<destination>` reach `target`: a symlink to it, or,
/// where the image already has that path, a bind mount of it over that path. No image symlink
/// is ever followed on the way.
fn reach_from_volume(
    volume: &Path,
    destination: &Path,
    target: &Path,
    read_only: bool,
) -> Result<()> {
    let parts = relative_components(destination);
    let Some((last, parents)) = parts.split_last() else {
        return Ok(());
    };
    let inside = volume.join(parts.join("/"));
    let root = fs::File::open(volume).map_err(|e| Error::io("open", volume, e))?;
    let dir = open_dirs_nofollow(root.as_raw_fd(), parents, destination)?;
    let name = component_c(last, destination)?;
    let target_c = cstring(target)?;
    // SAFETY: symlinkat on a valid directory descriptor with C strings.
    let rc = unsafe { libc::symlinkat(target_c.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.kind() != ErrorKind::AlreadyExists {
        return Err(Error::io("symlink", inside, e));
    }
    let st = stat_at(&dir, &name).map_err(|e| Error::io("stat", &inside, e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        // Made by the link layer, or by an earlier run on the same writable layer: it reaches
        // the target already, and is left as it is.
        if link_at(&dir, &name).is_some_and(|link| link == target) {
            return Ok(());
        }
        return Err(Error::Mount(MountError::Destination {
            destination: destination.display().to_string(),
            reason: format!(
                "'{}' is a symlink in the image; not following it",
                Path::new("/").join(parts.join("/")).display()
            ),
        }));
    }
    bind_recursive(target, &inside)?;
    if read_only {
        set_read_only_recursive(&inside)?;
    }
    Ok(())
}

/// The target of the symlink `name` in `dir`.
fn link_at(dir: &OwnedFd, name: &std::ffi::CStr) -> Option<std::path::PathBuf> {
    nix::fcntl::readlinkat(dir, name)
        .ok()
        .map(std::path::PathBuf::from)
}

/// Makes the link layer: a new directory (in the container's state directory, which only root
/// enters), the directories on the way with the image's owner and mode where it has them, and
/// the links.
fn make_link_layer(layer: &LinkLayer) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o755);
    builder
        .create(&layer.dir)
        .map_err(|e| Error::io("create", &layer.dir, e))?;
    for (path, attrs) in &layer.dirs {
        let path = layer.dir.join(path);
        builder
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        if let Some(DirAttrs { mode, uid, gid }) = attrs {
            std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))
                .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(*mode)))
                .map_err(|e| Error::io("set the image's owner and mode on", &path, e))?;
        }
    }
    for (path, target) in &layer.links {
        let path = layer.dir.join(path);
        std::os::unix::fs::symlink(target, &path).map_err(|e| Error::io("symlink", &path, e))?;
    }
    Ok(())
}

/// Attaches `tree` at `destination`: on the opened mount point `at` when given (so the path is
/// not resolved again), else at the path.
fn move_mount_to(tree: &OwnedFd, destination: &Path, at: Option<&OwnedFd>) -> Result<()> {
    let c = cstring(destination)?;
    let (to_dir, to_path, flags) = match at {
        Some(at) => (
            at.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        ),
        None => (libc::AT_FDCWD, c.as_ptr(), libc::MOVE_MOUNT_F_EMPTY_PATH),
    };
    // SAFETY: move_mount(2) with valid descriptors and C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            to_dir,
            to_path,
            flags as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(Error::io(
            "mount at",
            destination,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The mount attributes of a container volume: no setuid, no devices.
const NO_PRIVILEGE: u64 = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;

fn set_read_only_recursive(destination: &Path) -> Result<()> {
    set_mount_attrs(destination, libc::MOUNT_ATTR_RDONLY)
}

/// Sets mount attributes (`MOUNT_ATTR_*`) on the mount at `destination` and every mount below.
fn set_mount_attrs(destination: &Path, attrs: u64) -> Result<()> {
    let c = cstring(destination)?;
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) with a valid C string and a properly sized struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(Error::io(
            "set mount attributes of",
            destination,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn propagate(destination: &Path, propagation: ChangePropagation) -> Result<()> {
    let flag = match propagation {
        ChangePropagation::Slave => MsFlags::MS_SLAVE,
        ChangePropagation::Private => MsFlags::MS_PRIVATE,
    };
    mount(
        None::<&str>,
        destination,
        None::<&str>,
        flag | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| sys_err(format!("set propagation of '{}'", destination.display()), e))
}

/// Opens a mount source once, checks what it is and clones the very object checked: a source
/// swapped for a FIFO after [`check`] looked at it is still refused. Returns the clone and
/// whether it is a directory.
pub(super) fn open_source(source: &Path) -> Result<(OwnedFd, bool)> {
    let c = cstring(source)?;
    // SAFETY: open(2) with a C string; the result is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Mount(MountError::Source {
            path: source.display().to_string(),
            reason: std::io::Error::last_os_error().to_string(),
        }));
    }
    // SAFETY: fd was just returned by open and is owned from here.
    let opened = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = stat_at(&opened, c"").map_err(|e| Error::io("inspect", source, e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFIFO {
        return Err(Error::Mount(MountError::NamedPipe {
            path: source.display().to_string(),
        }));
    }
    // SAFETY: open_tree(2) on a valid descriptor with an empty path; returns a new descriptor
    // or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            opened.as_raw_fd(),
            c"".as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                | (libc::AT_RECURSIVE | libc::AT_EMPTY_PATH) as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(Error::io(
            "clone mount",
            source,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: tree is a fresh descriptor owned from here.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    Ok((tree, st.st_mode & libc::S_IFMT == libc::S_IFDIR))
}

pub(super) fn detach(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys_err(format!("unmount '{}'", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link already at the path (the link layer's, or one an earlier run left in a writable
    /// layer used again) is kept when it reaches the target, and refused as before when it
    /// leads anywhere else: nothing is ever mounted through it.
    #[test]
    fn a_link_already_reaching_the_target_is_kept_and_any_other_refused() {
        let volume = tempfile::tempdir().unwrap();
        fs::create_dir(volume.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hosts", volume.path().join("etc/hosts")).unwrap();
        let hosts = Path::new("/etc/hosts");
        reach_from_volume(volume.path(), hosts, hosts, false).expect("the link is kept");
        assert_eq!(
            fs::read_link(volume.path().join("etc/hosts")).unwrap(),
            hosts
        );

        let err = reach_from_volume(volume.path(), hosts, Path::new("/elsewhere"), false)
            .expect_err("a link to somewhere else is refused")
            .to_string();
        assert!(err.contains("is a symlink in the image"), "{err}");
    }
}
