//! The container volume and the container's view of the filesystem (§2).
//!
//! The volume is an overlay: the image read-only below, a fresh upper directory per container.
//! Bind layout: a mount namespace, slave of the host's, built by a helper thread of the
//! creating process and kept alive by a bind mount of its nsfs file in the state directory;
//! every process of the container joins it with `setns`. Symlink layout: the volume is mounted
//! at a host path unique to the container and mounts are symlinks inside it.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::mounts::{relative_components, MountError};
use crate::plan::{ContainerPlan, ImageSource, Layout, Propagation, VolumeMount};
use crate::sys::linuxlogic::mountinfo;

/// Everything the volume and view of one container are made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub mount_point: PathBuf,
    /// Bind layout: the pinned mount namespace.
    pub ns_pin: Option<PathBuf>,
    /// Symlink layout: the overlay's mount in the host namespace.
    pub host_mount: Option<PathBuf>,
    /// Upper and work directories this runtime made (removed on delete).
    pub scratch: Option<PathBuf>,
}

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

/// Names the volume's parts (nothing is made).
pub fn plan_record(plan: &ContainerPlan, state_dir: &Path) -> VolumeRecord {
    let owns_scratch = !gives_upper(&plan.volume.image) && !is_the_image_itself(plan);
    VolumeRecord {
        mount_point: plan.volume.mount_point.clone(),
        ns_pin: (plan.volume.layout == Layout::Bind).then(|| state_dir.join("mntns")),
        host_mount: (plan.volume.layout == Layout::Symlink)
            .then(|| plan.volume.mount_point.clone()),
        scratch: owns_scratch.then(|| state_dir.join("volume")),
    }
}

/// Checks the plan's paths against the host before anything is made: sources exist and are
/// not FIFOs, destinations do not pass through a symlink of the image, rshared mounts have a
/// shared source.
pub fn check(plan: &ContainerPlan, state_dir: &Path) -> Result<()> {
    if plan.volume.layout == Layout::Symlink {
        let default_location = state_dir.parent().unwrap_or(state_dir).join("hpc");
        check_host_location(plan, &default_location)?;
    }
    let lowers = lower_dirs(&plan.volume.image);
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

/// Mode of a directory holding symlink-layout volumes: a container's account passes through it
/// to its own volume (whose top only that account enters); nobody else lists or changes it.
const LOCATION_MODE: u32 = 0o711;

/// Symlink layout, before anything is made: the volume's host path must not exist (it would be
/// shadowed, or removed on delete), and its location must be a directory the runtime owns and
/// keeps closed to other users (never `/`, `/etc` …). The runtime's own default location, under
/// the state root, is closed here if an older version left it open.
fn check_host_location(plan: &ContainerPlan, default_location: &Path) -> Result<()> {
    let target = &plan.volume.mount_point;
    match fs::symlink_metadata(target) {
        Ok(_) => return Err(target_exists(plan)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect", target, e)),
    }
    let location = target.parent().unwrap_or(Path::new("/"));
    let dir = match open_host_dir(location, None) {
        Ok(dir) => dir,
        // Made at create, closed to others.
        Err(_) if fs::symlink_metadata(location).is_err() => return Ok(()),
        Err(e) => return Err(location_refused(plan, e.to_string())),
    };
    let st = stat_at(&dir, c"").map_err(|e| Error::io("inspect", location, e))?;
    if location == default_location && st.st_uid == nix::unistd::geteuid().as_raw() {
        fs::set_permissions(location, fs::Permissions::from_mode(LOCATION_MODE))
            .map_err(|e| Error::io("close to other users", location, e))?;
        return Ok(());
    }
    owned_location(plan, &st)
}

/// A location holding volumes belongs to the runtime's user and is closed to others.
fn owned_location(plan: &ContainerPlan, st: &libc::stat) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(location_refused(
            plan,
            format!(
                "it belongs to uid {}, not to the runtime (uid {me})",
                st.st_uid
            ),
        ));
    }
    if st.st_mode & 0o066 != 0 {
        return Err(location_refused(
            plan,
            format!(
                "it is open to other users (mode {:o}); `chmod 711` it or choose a directory of the runtime's own",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(())
}

fn location_refused(plan: &ContainerPlan, reason: String) -> Error {
    let location = plan.volume.mount_point.parent().unwrap_or(Path::new("/"));
    Error::container(
        &plan.id,
        format!(
            "symlink-layout location '{}' cannot hold container volumes: {reason}",
            location.display()
        ),
    )
}

fn target_exists(plan: &ContainerPlan) -> Error {
    Error::container(
        &plan.id,
        format!(
            "'{}' exists on the host: a symlink-layout volume is mounted only on a path the runtime makes (choose another container id or rootfs location)",
            plan.volume.mount_point.display()
        ),
    )
}

/// Symlink layout: makes the volume's host path, `<location>/<id>`, refusing one that exists
/// (two runtimes racing, or a host directory made since [`check`]). When it is refused the
/// record no longer names it, so that cleanup never unmounts or removes a path it did not make.
pub fn make_host_mount_point(plan: &ContainerPlan, record: &mut VolumeRecord) -> Result<()> {
    let made = make_host_mount_point_at(plan);
    if made.is_err() {
        record.host_mount = None;
    }
    made
}

fn make_host_mount_point_at(plan: &ContainerPlan) -> Result<()> {
    let target = &plan.volume.mount_point;
    let location = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .ok_or_else(|| location_refused(plan, "the volume path has no name".into()))?;
    let dir = open_host_dir(location, Some(LOCATION_MODE))
        .map_err(|e| location_refused(plan, e.to_string()))?;
    let st = stat_at(&dir, c"").map_err(|e| Error::io("inspect", location, e))?;
    owned_location(plan, &st)?;
    let name = cstring(Path::new(name))?;
    // SAFETY: mkdirat on a valid directory descriptor and a C string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == ErrorKind::AlreadyExists {
            return Err(target_exists(plan));
        }
        return Err(Error::io("create", target, e));
    }
    Ok(())
}

fn lower_dirs(image: &ImageSource) -> Vec<PathBuf> {
    match image {
        ImageSource::Directory(dir) => vec![dir.clone()],
        ImageSource::Layers { lower, .. } => lower.clone(),
    }
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

/// The overlay's mount data. The upper directory (ours, or containerd's) is given to the
/// container's account so the volume is writable by it, as a fresh workspace should be. A
/// read-only root still gets an upper layer, so the compatibility links can be made; the
/// mount is made read-only once the view is complete.
fn overlay_data(plan: &ContainerPlan, record: &VolumeRecord, owner: (u32, u32)) -> Result<String> {
    let (lower, upper, work) = match &plan.volume.image {
        ImageSource::Directory(dir) => (vec![dir.clone()], None, None),
        ImageSource::Layers { lower, upper, work } => (lower.clone(), upper.clone(), work.clone()),
    };
    let lowerdir = lower
        .iter()
        .map(|l| escape_overlay_path(l))
        .collect::<Vec<_>>()
        .join(":");
    if is_the_image_itself(plan) {
        return Ok(format!("lowerdir={lowerdir}"));
    }
    let (upper, work) = match (upper, work, &record.scratch) {
        (Some(u), Some(w), _) => (u, w),
        (_, _, Some(scratch)) => {
            let (u, w) = (scratch.join("upper"), scratch.join("work"));
            // The scratch directory is the container's own and new: one mkdir each.
            fs::create_dir_all(scratch).map_err(|e| Error::io("create", scratch, e))?;
            for d in [&u, &w] {
                fs::create_dir(d).map_err(|e| Error::io("create", d, e))?;
            }
            (u, w)
        }
        _ => {
            return Err(Error::container(
                &plan.id,
                "the image gives no upper layer and no scratch directory was planned",
            ))
        }
    };
    nix::unistd::chown(
        &upper,
        Some(nix::unistd::Uid::from_raw(owner.0)),
        Some(nix::unistd::Gid::from_raw(owner.1)),
    )
    .map_err(|e| {
        sys_err(
            format!("give '{}' to the container's account", upper.display()),
            e,
        )
    })?;
    if plan.volume.layout == Layout::Symlink {
        // The upper directory is the volume's top directory, on a host path any user can
        // name: only its account enters it.
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("make private", &upper, e))?;
    }
    Ok(format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        escape_overlay_path(&upper),
        escape_overlay_path(&work)
    ))
}

/// overlayfs splits its options on `,` and `lowerdir` on `:`; a backslash escapes either.
fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

/// A read-only volume that nothing is added to (no mount, so no mount point in it) and that
/// has no writable layer of its own is the image itself: bound read-only (one layer) or
/// stacked read-only (several), with no scratch layer to make, probe and remove.
fn is_the_image_itself(plan: &ContainerPlan) -> bool {
    plan.volume.read_only && plan.mounts.is_empty() && !gives_upper(&plan.volume.image)
}

/// Whether containerd gave the image a writable layer of its own.
fn gives_upper(image: &ImageSource) -> bool {
    matches!(image, ImageSource::Layers { upper: Some(_), .. })
}

/// Mounts the volume at `target` (in the calling thread's namespace).
fn mount_volume(
    plan: &ContainerPlan,
    record: &VolumeRecord,
    target: &Path,
    owner: (u32, u32),
) -> Result<()> {
    if is_the_image_itself(plan) {
        let lowers = lower_dirs(&plan.volume.image);
        if let [image] = lowers.as_slice() {
            bind_recursive(image, target)?;
            return set_mount_attrs(target, NO_PRIVILEGE);
        }
    }
    let data = overlay_data(plan, record, owner)?;
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

/// Opens `components` below the directory `root` without following any symlink, creating
/// missing directories; returns the last directory's descriptor.
fn open_dirs_nofollow(root: RawFd, components: &[String], what: &Path) -> Result<OwnedFd> {
    // SAFETY: dup of a valid descriptor; the result is owned below.
    let mut current = unsafe { OwnedFd::from_raw_fd(libc::fcntl(root, libc::F_DUPFD_CLOEXEC, 0)) };
    for part in components {
        let name = CString::new(part.as_bytes()).map_err(|_| {
            Error::io(
                "use",
                what,
                std::io::Error::new(ErrorKind::InvalidInput, "NUL byte"),
            )
        })?;
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

/// Makes `$CONTAINER_SANDBOX_MOUNT_POINT/<destination>` reach a mount: a symlink to `target`,
/// or, where the image already has that path, a bind mount of `source` over it. No image
/// symlink is ever followed on the way.
fn reach_from_volume(
    volume: &Path,
    destination: &Path,
    target: &Path,
    source: &Path,
    read_only: bool,
) -> Result<()> {
    let parts = relative_components(destination);
    let Some((last, parents)) = parts.split_last() else {
        return Ok(());
    };
    let inside = volume.join(parts.join("/"));
    let root = fs::File::open(volume).map_err(|e| Error::io("open", volume, e))?;
    let dir = open_dirs_nofollow(root.as_raw_fd(), parents, destination)?;
    let name = CString::new(last.as_bytes()).map_err(|_| {
        Error::io(
            "use",
            destination,
            std::io::Error::new(ErrorKind::InvalidInput, "NUL byte"),
        )
    })?;
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
    // SAFETY: fstatat on a valid directory descriptor, without following a final symlink.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(Error::io("stat", inside, std::io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Error::Mount(MountError::Destination {
            destination: destination.display().to_string(),
            reason: format!(
                "'{}' is a symlink in the image; not following it",
                Path::new("/").join(parts.join("/")).display()
            ),
        }));
    }
    bind_recursive(source, &inside)?;
    if read_only {
        set_read_only_recursive(&inside)?;
    }
    Ok(())
}

/// Creates a directory inside the volume without following symlinks (a working directory the
/// image does not have).
pub fn make_dir_in_volume(volume: &Path, path: &Path) -> Result<()> {
    let rel = path.strip_prefix(volume).unwrap_or(path);
    let root = fs::File::open(volume).map_err(|e| Error::io("open", volume, e))?;
    open_dirs_nofollow(root.as_raw_fd(), &relative_components(rel), path).map(drop)
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

/// The directory that holds `m`'s host mount point, opened by the walk that follows no symlink
/// another user could have planted (`create`: missing directories are made with that mode),
/// and the mount point's name in it. `op` names the operation in an I/O error.
fn host_mount_point_parent(
    m: &VolumeMount,
    create: Option<u32>,
    op: &'static str,
) -> Result<(OwnedFd, CString)> {
    let (Some(parent), Some(name)) = (m.destination.parent(), m.destination.file_name()) else {
        return Err(destination_refused(m, "names no mount point".into()));
    };
    let dir = open_host_dir(parent, create).map_err(|e| match e {
        WalkError::Untrusted(reason) => destination_refused(m, reason),
        WalkError::Io(e) => Error::io(op, &m.destination, e),
    })?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| destination_refused(m, "contains a NUL byte".into()))?;
    Ok((dir, name))
}

fn destination_refused(m: &VolumeMount, reason: String) -> Error {
    Error::Mount(MountError::Destination {
        destination: m.destination.display().to_string(),
        reason,
    })
}

/// The host mount point of `m`, opened by the same walk that made it (in the view being
/// built): what was checked is what gets mounted on, even if a user's symlink was swapped in
/// meanwhile. None for a final symlink of root's, which the host check allowed: it is
/// followed by path.
fn open_host_mount_point(m: &VolumeMount) -> Result<Option<OwnedFd>> {
    let (dir, name) = host_mount_point_parent(m, None, "open")?;
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
            &m.destination,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just returned by openat and is owned from here.
    let at = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = stat_at(&at, c"").map_err(|e| Error::io("inspect", &m.destination, e))?;
    Ok((st.st_mode & libc::S_IFMT != libc::S_IFLNK).then_some(at))
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

/// Makes sure a mount point exists on the host for a destination (an empty directory, or an
/// empty file when the source is not a directory). These are left in place on delete, like
/// the sandbox mount point itself: other containers may use them. Nothing is made through a
/// symlink another user could have planted (see [`open_host_dir`]).
fn ensure_host_mount_point(m: &VolumeMount, source_is_dir: bool) -> Result<()> {
    let (dir, name) = host_mount_point_parent(m, Some(0o755), "create")?;
    match stat_at(&dir, &name) {
        Ok(st) => {
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                let holder = stat_at(&dir, c".").map_err(|e| {
                    destination_refused(m, format!("inspect the directory holding it: {e}"))
                })?;
                if st.st_uid != 0 || holder.st_uid != 0 {
                    return Err(destination_refused(m, format!(
                        "'{}' is a symlink that uid {} could change; not following it (mount on the real path instead)",
                        m.destination.display(),
                        if st.st_uid != 0 { st.st_uid } else { holder.st_uid }
                    )));
                }
            }
            log::warn!(
                "mount destination '{}' exists on the host and is shadowed for this container",
                m.destination.display()
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
                return Err(Error::io("create", &m.destination, e));
            }
            Ok(())
        }
        Err(e) => Err(Error::io("inspect", &m.destination, e)),
    }
}

/// `fstatat` without following a final symlink.
fn stat_at(dir: &OwnedFd, name: &std::ffi::CStr) -> std::io::Result<libc::stat> {
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
enum WalkError {
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
fn open_host_dir(path: &Path, make: Option<u32>) -> std::result::Result<OwnedFd, WalkError> {
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

fn propagate(destination: &Path, propagation: Propagation) -> Result<()> {
    let flag = match propagation {
        // Shared: the clone is already in its source's peer group.
        Propagation::Shared => return Ok(()),
        Propagation::Slave => MsFlags::MS_SLAVE,
        Propagation::Private => MsFlags::MS_PRIVATE,
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

/// Builds the volume and the view. Returns after the view is complete; `inside` runs in the
/// view before that (resolution of the command, working directory), and `meanwhile` on the
/// calling thread while another builds the view (the two CPUs of a small node both work).
/// Everything is built even when `meanwhile` fails, so that one teardown removes it all.
pub fn build<T: Send>(
    plan: &ContainerPlan,
    record: &VolumeRecord,
    owner: (u32, u32),
    meanwhile: impl FnOnce() -> Result<()>,
    inside: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let mount_point = &plan.volume.mount_point;
    match plan.volume.layout {
        Layout::Symlink => {
            // The host path was made by `make_host_mount_point`.
            meanwhile()?;
            mount_volume(plan, record, mount_point, owner)?;
            for m in &plan.mounts {
                reach_from_volume(
                    mount_point,
                    &m.destination,
                    &m.source,
                    &m.source,
                    m.read_only,
                )?;
            }
            if plan.volume.read_only {
                set_read_only_recursive(mount_point)?;
            }
            inside()
        }
        Layout::Bind => {
            let pin = record
                .ns_pin
                .as_ref()
                .ok_or_else(|| Error::container(&plan.id, "bind layout without a namespace pin"))?;
            std::thread::scope(|scope| {
                let (trees_tx, trees_rx) = std::sync::mpsc::channel::<Vec<OwnedFd>>();
                let (built_tx, built_rx) = std::sync::mpsc::channel::<Result<(OwnedFd, T)>>();
                // The builder starts first: the host-side work below overlaps its start. It
                // hands over a descriptor of its namespace, which keeps the namespace alive:
                // it need not wait for the pin, and has ended by the time the scope does.
                scope.spawn(move || {
                    let trees = || {
                        trees_rx.recv().map_err(|_| {
                            Error::container(&plan.id, "the mounts were not opened on the host")
                        })
                    };
                    let built = build_namespace(plan, record, trees, owner).and_then(|()| {
                        let inside = inside()?;
                        let ns = fs::File::open("/proc/thread-self/ns/mnt")
                            .map_err(|e| Error::io("open", "/proc/thread-self/ns/mnt", e))?;
                        Ok((OwnedFd::from(ns), inside))
                    });
                    let _ = built_tx.send(built);
                });
                // Mount sources are opened, and missing mount points made, in the host's view.
                // (On failure the sender goes out of scope, which stops the builder.)
                let _ = trees_tx.send(open_on_host(plan)?);
                fs::File::create(pin).map_err(|e| Error::io("create", pin, e))?;
                let meanwhile = meanwhile();
                let (ns, inside) = built_rx
                    .recv()
                    .map_err(|_| Error::container(&plan.id, "the view builder stopped"))??;
                let ns_path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
                mount(
                    Some(&ns_path),
                    pin.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| sys_err(format!("pin mount namespace at '{}'", pin.display()), e))?;
                meanwhile?;
                Ok(inside)
            })
        }
    }
}

/// The sources of the plan's mounts, opened in the host's view, after making any missing mount
/// point outside the volume.
fn open_on_host(plan: &ContainerPlan) -> Result<Vec<OwnedFd>> {
    let mut trees = Vec::new();
    for m in &plan.mounts {
        let (tree, source_is_dir) = open_source(&m.source)?;
        if !m.destination.starts_with(&plan.volume.mount_point) {
            ensure_host_mount_point(m, source_is_dir)?;
        }
        trees.push(tree);
    }
    Ok(trees)
}

/// Opens a mount source once, checks what it is and clones the very object checked: a source
/// swapped for a FIFO after [`check`] looked at it is still refused. Returns the clone and
/// whether it is a directory.
fn open_source(source: &Path) -> Result<(OwnedFd, bool)> {
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

/// In a thread: a new mount namespace, slave of the host's, with the volume and the mounts
/// (`trees`: the mounts' sources, opened on the host meanwhile).
fn build_namespace(
    plan: &ContainerPlan,
    record: &VolumeRecord,
    trees: impl FnOnce() -> Result<Vec<OwnedFd>>,
    owner: (u32, u32),
) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS)
        .map_err(|e| sys_err("unshare mount namespace", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| sys_err("make / a slave mount", e))?;
    let mount_point = &plan.volume.mount_point;
    // Made on the host (the file systems are shared), never through a user's symlink.
    open_host_dir(mount_point, Some(0o755)).map_err(|e| match e {
        WalkError::Untrusted(reason) => Error::container(
            &plan.id,
            format!("sandbox mount point '{}': {reason}", mount_point.display()),
        ),
        WalkError::Io(e) => Error::io("create", mount_point, e),
    })?;
    mount_volume(plan, record, mount_point, owner)?;
    for (m, tree) in plan.mounts.iter().zip(trees()?) {
        let at = if m.destination.starts_with(mount_point) {
            make_dir_in_volume(mount_point, &m.destination)?;
            None
        } else {
            open_host_mount_point(m)?
        };
        move_mount_to(&tree, &m.destination, at.as_ref())?;
        propagate(&m.destination, m.propagation)?;
        if m.read_only {
            set_read_only_recursive(&m.destination)?;
        }
        if !m.destination.starts_with(mount_point) {
            reach_from_volume(
                mount_point,
                &m.destination,
                &m.destination,
                &m.destination,
                m.read_only,
            )?;
        }
    }
    if plan.volume.read_only {
        set_read_only_recursive(mount_point)?;
    }
    Ok(())
}

/// Runs `f` inside the container's view (a thread that joins the pinned namespace).
pub fn in_view<T: Send>(record: &VolumeRecord, f: impl FnOnce() -> T + Send) -> Result<T> {
    let Some(pin) = &record.ns_pin else {
        return Ok(f());
    };
    let ns = fs::File::open(pin).map_err(|e| Error::io("open", pin, e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(|e| sys_err("unshare fs", e))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| sys_err(format!("join mount namespace '{}'", pin.display()), e))?;
                Ok(f())
            })
            .join()
            .map_err(|_| Error::sys("view", std::io::Error::other("the view thread panicked")))?
    })
}

fn detach(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys_err(format!("unmount '{}'", path.display()), e)),
    }
}

/// Unmounts and removes what the volume and view are made of. Idempotent.
pub fn destroy(record: &VolumeRecord) -> Result<()> {
    if let Some(pin) = &record.ns_pin {
        detach(pin)?;
        match fs::remove_file(pin) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", pin, e)),
        }
    }
    if let Some(host_mount) = &record.host_mount {
        detach(host_mount)?;
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
    Ok(())
}

/// [`destroy`] for a container whose record is unreadable: what its state directory holds (the
/// namespace pin, the scratch layers) and its volume at the default symlink-layout location,
/// which only the runtime makes. A volume at an annotation's location cannot be found.
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
