//! The symlink layout's host path for a volume, `<location>/<id>`: made only by the runtime, in
//! a location the runtime owns and keeps closed to other users.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::cstring;
use super::walk::{open_host_dir, stat_at};
use super::VolumeRecord;
use crate::error::{Error, Result};
use crate::plan::ContainerPlan;

/// Mode of a directory holding symlink-layout volumes: a container's account passes through it
/// to its own volume (whose top only that account enters); nobody else lists or changes it.
const LOCATION_MODE: u32 = 0o711;

/// Symlink layout, before anything is made: the volume's host path must not exist (it would be
/// shadowed, or removed on delete), and its location must be a directory the runtime owns and
/// keeps closed to other users (never `/`, `/etc` …). The runtime's own default location, under
/// the state root, is closed here if an older version left it open.
pub(super) fn check_host_location(plan: &ContainerPlan, default_location: &Path) -> Result<()> {
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
