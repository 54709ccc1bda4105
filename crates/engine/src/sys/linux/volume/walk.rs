//! Walks that open directories without following a symlink another user could change: on the
//! host (component by component from `/`, following only root's own links) and inside the
//! volume (following none); what is checked is what gets made or mounted on.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::plan::mounts::{relative_components, MountError};

/// Opens `components` below the directory `root` without following any symlink, creating
/// missing directories; returns the last directory's descriptor.
/// One path component as a C string, for the walks that go a component at a time; `what` is
/// the whole path the error names.
pub(super) fn component_c(part: &str, what: &Path) -> Result<CString> {
    CString::new(part.as_bytes()).map_err(|_| {
        Error::io(
            "use",
            what,
            std::io::Error::new(ErrorKind::InvalidInput, "NUL byte"),
        )
    })
}

pub(super) fn open_dirs_nofollow(
    root: RawFd,
    components: &[String],
    what: &Path,
) -> Result<OwnedFd> {
    // SAFETY: dup of a valid descriptor; the result is owned below.
    let mut current = unsafe { OwnedFd::from_raw_fd(libc::fcntl(root, libc::F_DUPFD_CLOEXEC, 0)) };
    for part in components {
        let name = component_c(part, what)?;
        // SAFETY: plain syscalls on a valid directory descriptor and a C string.
        unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o755) };
        let fd = unsafe {
            libc::openat(
                current.as_raw_fd(),
                name.as_ptr(),
                libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_RDONLY,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            let reason = if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                format!(
                    "'{part}' is a symlink or not a directory inside the volume; not following it"
                )
            } else {
                e.to_string()
            };
            return Err(Error::Mount(MountError::Destination {
                destination: what.display().to_string(),
                reason,
            }));
        }
        // SAFETY: fd was just returned by openat and is owned from here.
        current = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(current)
}

/// Creates a directory inside the volume without following symlinks (a working directory the
/// image does not have).
pub fn make_dir_in_volume(volume: &Path, path: &Path) -> Result<()> {
    let rel = path.strip_prefix(volume).unwrap_or(path);
    let root = fs::File::open(volume).map_err(|e| Error::io("open", volume, e))?;
    open_dirs_nofollow(root.as_raw_fd(), &relative_components(rel), path).map(drop)
}

/// The directory that holds `destination`'s host mount point, opened by the walk that follows
/// no symlink another user could have planted (`create`: missing directories are made with
/// that mode), and the mount point's name in it. `op` names the operation in an I/O error.
fn host_mount_point_parent(
    destination: &Path,
    create: Option<u32>,
    op: &'static str,
) -> Result<(OwnedFd, CString)> {
    let (Some(parent), Some(name)) = (destination.parent(), destination.file_name()) else {
        return Err(destination_refused(
            destination,
            "names no mount point".into(),
        ));
    };
    let dir = open_host_dir(parent, create).map_err(|e| match e {
        WalkError::Untrusted(reason) => destination_refused(destination, reason),
        WalkError::Io(e) => Error::io(op, destination, e),
    })?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| destination_refused(destination, "contains a NUL byte".into()))?;
    Ok((dir, name))
}

fn destination_refused(destination: &Path, reason: String) -> Error {
    Error::Mount(MountError::Destination {
        destination: destination.display().to_string(),
        reason,
    })
}

/// The host mount point of `destination`, opened by the same walk that made it (in the view
/// being built): what was checked is what gets mounted on, even if a user's symlink was
/// swapped in meanwhile. None for a final symlink of root's, which the host check allowed: it
/// is followed by path.
pub(super) fn open_host_mount_point(destination: &Path) -> Result<Option<OwnedFd>> {
    let (dir, name) = host_mount_point_parent(destination, None, "open")?;
    // SAFETY: openat on a valid directory descriptor and a C string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            "open",
            destination,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just returned by openat and is owned from here.
    let at = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = stat_at(&at, c"").map_err(|e| Error::io("inspect", destination, e))?;
    Ok((st.st_mode & libc::S_IFMT != libc::S_IFLNK).then_some(at))
}

/// Makes sure a mount point exists on the host for a destination (an empty directory, or an
/// empty file when the source is not a directory). These are left in place on delete, like
/// the sandbox mount point itself: other containers may use them. Nothing is made through a
/// symlink another user could have planted (see [`open_host_dir`]).
pub(super) fn ensure_host_mount_point(destination: &Path, source_is_dir: bool) -> Result<()> {
    let (dir, name) = host_mount_point_parent(destination, Some(0o755), "create")?;
    match stat_at(&dir, &name) {
        Ok(st) => {
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                let holder = stat_at(&dir, c".").map_err(|e| {
                    destination_refused(
                        destination,
                        format!("inspect the directory holding it: {e}"),
                    )
                })?;
                if st.st_uid != 0 || holder.st_uid != 0 {
                    return Err(destination_refused(destination, format!(
                        "'{}' is a symlink that uid {} could change; not following it (mount on the real path instead)",
                        destination.display(),
                        if st.st_uid != 0 { st.st_uid } else { holder.st_uid }
                    )));
                }
            }
            // Every pod's /etc/hosts, /etc/resolv.conf and /etc/hostname are such mounts: the
            // usual case, not one to warn of.
            log::debug!(
                "mount destination '{}' exists on the host and is shadowed for this container",
                destination.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // SAFETY: mkdirat/openat on a valid directory descriptor and a C string.
            let rc = if source_is_dir {
                unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) }
            } else {
                let fd = unsafe {
                    libc::openat(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_WRONLY
                            | libc::O_CLOEXEC,
                        0o644 as libc::c_uint,
                    )
                };
                if fd >= 0 {
                    // SAFETY: fd was just returned by openat; closing it once.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                fd.min(0)
            };
            let e = std::io::Error::last_os_error();
            if rc < 0 && e.kind() != ErrorKind::AlreadyExists {
                return Err(Error::io("create", destination, e));
            }
            Ok(())
        }
        Err(e) => Err(Error::io("inspect", destination, e)),
    }
}

/// `fstatat` without following a final symlink.
pub(super) fn stat_at(dir: &OwnedFd, name: &std::ffi::CStr) -> std::io::Result<libc::stat> {
    // SAFETY: fstatat on a valid directory descriptor and a C string, into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Why a walk of host directories stopped.
#[derive(Debug)]
pub(super) enum WalkError {
    /// A symlink that a user other than root could change.
    Untrusted(String),
    Io(std::io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Untrusted(reason) => f.write_str(reason),
            WalkError::Io(e) => e.fmt(f),
        }
    }
}

/// Opens the host directory `path` (absolute, no `..`) component by component from `/`
/// (an `O_PATH` descriptor), making missing directories with mode `make` when given. A
/// symlink on the way is followed only when it and the directory holding it belong to root,
/// as the host's own links do (`/var/run -> /run`): one that another user made, or could
/// replace, is refused, so nothing is ever made or mounted where such a user points it.
pub(super) fn open_host_dir(
    path: &Path,
    make: Option<u32>,
) -> std::result::Result<OwnedFd, WalkError> {
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_os_string()),
            _ => None,
        })
        .collect();
    let open = |dir: RawFd, name: &std::ffi::CStr| {
        // SAFETY: openat on a valid directory descriptor and a C string.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            // SAFETY: fd was just returned by openat and is owned from here.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let mut links_followed = 0;
    'walk: loop {
        let mut dir = open(libc::AT_FDCWD, c"/").map_err(WalkError::Io)?;
        let mut walked = PathBuf::from("/");
        for (i, part) in pending.iter().enumerate() {
            walked.push(part);
            let name = CString::new(part.as_bytes()).map_err(|_| {
                WalkError::Io(std::io::Error::new(ErrorKind::InvalidInput, "NUL byte"))
            })?;
            let mut opened = open(dir.as_raw_fd(), &name);
            if let (Err(e), Some(mode)) = (&opened, make) {
                if e.kind() == ErrorKind::NotFound {
                    // SAFETY: mkdirat/fchmodat on a valid directory descriptor and a C string.
                    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } == 0 {
                        // The mode exactly, whatever the umask.
                        unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) };
                    }
                    opened = open(dir.as_raw_fd(), &name);
                }
            }
            let e = match opened {
                Ok(next) => {
                    dir = next;
                    continue;
                }
                Err(e) => e,
            };
            if !matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                return Err(WalkError::Io(e));
            }
            let st = stat_at(&dir, &name).map_err(WalkError::Io)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                return Err(WalkError::Io(std::io::Error::from_raw_os_error(
                    libc::ENOTDIR,
                )));
            }
            let holder = stat_at(&dir, c".").map_err(WalkError::Io)?;
            if st.st_uid != 0 || holder.st_uid != 0 {
                return Err(WalkError::Untrusted(format!(
                    "'{}' is a symlink that uid {} could change; not following it",
                    walked.display(),
                    if st.st_uid != 0 {
                        st.st_uid
                    } else {
                        holder.st_uid
                    }
                )));
            }
            links_followed += 1;
            if links_followed > 40 {
                return Err(WalkError::Io(std::io::Error::from_raw_os_error(
                    libc::ELOOP,
                )));
            }
            let target = fs::read_link(&walked).map_err(WalkError::Io)?;
            // Only root can change the links followed so far: resolving `..` by name is safe.
            let base = walked.parent().unwrap_or(Path::new("/")).join(target);
            let mut resolved: Vec<std::ffi::OsString> = Vec::new();
            for c in base.components() {
                match c {
                    std::path::Component::Normal(p) => resolved.push(p.to_os_string()),
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    _ => {}
                }
            }
            resolved.extend(pending[i + 1..].iter().cloned());
            pending = resolved;
            continue 'walk;
        }
        return Ok(dir);
    }
}
