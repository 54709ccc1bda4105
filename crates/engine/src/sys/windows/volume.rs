//! The container volume and mounts (§2).
//!
//! The volume is a directory (the bundle's root) or the volume the image's layers are mounted
//! as (`layers.rs`, from containerd's `windows-layer` mount).
//!
//! - Silo layout: the job becomes a silo and the bind filter (`bindfltapi.dll`, loaded at run
//!   time: hosts without it use the fallback) maps the volume at the mount point and each mount
//!   at its destination, for this container only (`BINDFLT_FLAG_USE_CURRENT_SILO_MAPPING`,
//!   read-only mounts with `BINDFLT_FLAG_READ_ONLY_MAPPING`). For backward compatibility each
//!   mount is also linked at `<volume>\<destination>`, best effort.
//! - Fallback layout: the volume is linked (or, for a `\\?\Volume{GUID}\` volume, mounted) at
//!   the container's own mount point and each mount is a symlink at `<volume>\<destination>`.
//!
//! Links are made one component at a time and never through a link or file that the image
//! placed in the volume.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use windows_sys::core::{HRESULT, PCWSTR};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Storage::FileSystem::{DeleteVolumeMountPointW, SetVolumeMountPointW};
use windows_sys::Win32::System::LibraryLoader::GetProcAddress;

use super::job::Job;
use super::win::{hresult_error, last_error, system_module, wide};
use super::Record;
use crate::error::{Error, Result};
use crate::sys::winlogic::mounts::{Binding, VolumeAttach, VolumeLayout, VolumeLink};

const BINDFLT_FLAG_READ_ONLY_MAPPING: u32 = 0x1;
const BINDFLT_FLAG_USE_CURRENT_SILO_MAPPING: u32 = 0x4;

type SetupFilter =
    unsafe extern "system" fn(HANDLE, u32, PCWSTR, PCWSTR, *const PCWSTR, u32) -> HRESULT;
type RemoveMapping = unsafe extern "system" fn(HANDLE, PCWSTR) -> HRESULT;

/// The bind filter's user-mode API.
pub struct BindFilter {
    setup: SetupFilter,
    remove: Option<RemoveMapping>,
}

/// The bind filter, loaded once from System32; `None` on hosts without it (unpatched Windows
/// Server 2019 and older), which use the fallback layout.
pub fn bind_filter() -> Option<&'static BindFilter> {
    static FILTER: OnceLock<Option<BindFilter>> = OnceLock::new();
    FILTER
        .get_or_init(|| {
            let module = system_module("bindfltapi.dll")?;
            // SAFETY: NUL-terminated export names; the exports have these signatures.
            unsafe {
                let setup = GetProcAddress(module, c"BfSetupFilter".as_ptr() as *const u8)?;
                let remove = GetProcAddress(module, c"BfRemoveMapping".as_ptr() as *const u8);
                Some(BindFilter {
                    setup: std::mem::transmute::<unsafe extern "system" fn() -> isize, SetupFilter>(
                        setup,
                    ),
                    remove: remove.map(|f| {
                        std::mem::transmute::<unsafe extern "system" fn() -> isize, RemoveMapping>(
                            f,
                        )
                    }),
                })
            }
        })
        .as_ref()
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Maps `binding` in the job's silo. The parent of the mapped path must exist on the host.
fn bind(filter: &BindFilter, job: &Job, binding: &Binding) -> Result<()> {
    let root = Path::new(&binding.container_path);
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    }
    let mut flags = BINDFLT_FLAG_USE_CURRENT_SILO_MAPPING;
    if binding.read_only {
        flags |= BINDFLT_FLAG_READ_ONLY_MAPPING;
    }
    let root_w = wide(&binding.container_path);
    let target_w = wide(&binding.host_path);
    // SAFETY: a silo job handle, NUL-terminated paths, no exception paths.
    let hr = unsafe {
        (filter.setup)(
            job.handle(),
            flags,
            root_w.as_ptr(),
            target_w.as_ptr(),
            std::ptr::null(),
            0,
        )
    };
    if hr < 0 {
        return Err(Error::sys(
            format!(
                "failed to bind target {:?} to root {:?} for job object {}",
                binding.host_path,
                binding.container_path,
                job.name()
            ),
            hresult_error(hr),
        ));
    }
    Ok(())
}

/// Makes the view: silo and mappings, or the fallback mount point; then the mount links.
pub fn setup(record: &Record, job: &Job) -> Result<()> {
    match record.layout {
        VolumeLayout::Silo => {
            let filter = bind_filter().ok_or_else(|| {
                Error::container(
                    &record.id,
                    "the bind filter (bindfltapi.dll) is no longer available on this host",
                )
            })?;
            job.promote_to_silo()?;
            // The mount point exists on the host before it is mapped (as in the reference), and
            // stays: process creation checks the working directory from the runtime's view.
            let mount_point = Path::new(&record.mount_point);
            std::fs::create_dir_all(mount_point).map_err(io_error("create", mount_point))?;
            for binding in &record.bindings {
                if binding.container_path != record.mount_point
                    && Path::new(&binding.container_path).exists()
                {
                    log::warn!(
                        "container {}: job container mount destination {} exists and will be shadowed",
                        record.id,
                        binding.container_path
                    );
                }
                bind(filter, job, binding)?;
            }
            for link in &record.links {
                if let Err(e) = make_link(&record.volume, link, false) {
                    log::warn!(
                        "container {}: backward-compatible mount link: {e}",
                        record.id
                    );
                }
            }
        }
        VolumeLayout::Fallback => {
            attach(record)?;
            for link in &record.links {
                make_link(&record.volume, link, true)?;
            }
        }
    }
    Ok(())
}

/// Undoes [`setup`] as far as it got; what is gone, or is not what this container made, is
/// left alone. Returns the first error after trying everything.
pub fn teardown(record: &Record, job: Option<&Job>) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut note = |result: Result<()>| {
        if let Err(e) = result {
            log::warn!("container {}: {e}", record.id);
            first.get_or_insert(e);
        }
    };
    if let (VolumeLayout::Silo, Some(job), Some(filter)) = (record.layout, job, bind_filter()) {
        if let Some(remove) = filter.remove {
            for binding in record.bindings.iter().rev() {
                let root = wide(&binding.container_path);
                // SAFETY: a job handle and a NUL-terminated path.
                let hr = unsafe { remove(job.handle(), root.as_ptr()) };
                if hr < 0 {
                    log::debug!(
                        "container {}: remove mapping {}: {}",
                        record.id,
                        binding.container_path,
                        hresult_error(hr)
                    );
                }
            }
        }
    }
    for link in record.links.iter().rev() {
        note(remove_link(link));
    }
    if record.layout == VolumeLayout::Fallback {
        note(detach(record));
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Makes the fallback mount point reach the volume.
fn attach(record: &Record) -> Result<()> {
    let mount_point = Path::new(&record.mount_point);
    if let Some(parent) = mount_point.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    }
    if std::fs::symlink_metadata(mount_point).is_ok() {
        return Err(Error::container(
            &record.id,
            format!(
                "the sandbox mount point {} already exists; delete the container that uses it",
                record.mount_point
            ),
        ));
    }
    match record.volume_attach {
        VolumeAttach::Symlink => std::os::windows::fs::symlink_dir(&record.volume, mount_point)
            .map_err(io_error("symlink", mount_point)),
        VolumeAttach::MountPoint => {
            std::fs::create_dir(mount_point).map_err(io_error("create", mount_point))?;
            let at = wide(format!("{}\\", record.mount_point.trim_end_matches('\\')));
            let volume = wide(format!("{}\\", record.volume.trim_end_matches('\\')));
            // SAFETY: NUL-terminated paths, both ending with a backslash as required.
            if unsafe { SetVolumeMountPointW(at.as_ptr(), volume.as_ptr()) } == 0 {
                let error = last_error();
                let _ = std::fs::remove_dir(mount_point);
                return Err(Error::io("mount volume", mount_point, error));
            }
            Ok(())
        }
    }
}

fn detach(record: &Record) -> Result<()> {
    let mount_point = Path::new(&record.mount_point);
    let Ok(meta) = std::fs::symlink_metadata(mount_point) else {
        return Ok(());
    };
    match record.volume_attach {
        VolumeAttach::Symlink => {
            let ours = meta.file_type().is_symlink()
                && std::fs::read_link(mount_point)
                    .is_ok_and(|t| same_path(&t, Path::new(&record.volume)));
            if ours {
                std::fs::remove_dir(mount_point).map_err(io_error("remove", mount_point))?;
            }
            Ok(())
        }
        VolumeAttach::MountPoint => {
            let at = wide(format!("{}\\", record.mount_point.trim_end_matches('\\')));
            // SAFETY: a NUL-terminated path ending with a backslash.
            if unsafe { DeleteVolumeMountPointW(at.as_ptr()) } == 0 {
                log::debug!(
                    "container {}: unmount {}: {}",
                    record.id,
                    record.mount_point,
                    last_error()
                );
            }
            match std::fs::remove_dir(mount_point) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", mount_point, e)),
            }
        }
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    let clean = |p: &Path| {
        p.to_string_lossy()
            .trim_end_matches('\\')
            .to_ascii_lowercase()
    };
    clean(a) == clean(b)
}

/// Creates `link` below `volume`, one directory at a time, refusing any component that is a
/// link or a file. With `required` an existing entry at the link's place is an error; without,
/// it is left and reported.
fn make_link(volume: &str, link: &VolumeLink, required: bool) -> Result<()> {
    let volume_path = Path::new(volume);
    let relative =
        crate::sys::winlogic::mounts::relative_to(&link.path, volume).ok_or_else(|| {
            Error::io(
                "link",
                &link.path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the link would land outside the volume",
                ),
            )
        })?;
    let parts: Vec<&str> = relative.split('\\').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err(Error::io(
            "link",
            &link.path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a mount cannot replace the volume itself",
            ),
        ));
    };
    let mut current = create_dirs_below(volume_path, parents)?;
    current.push(last);
    if std::fs::symlink_metadata(&current).is_ok() {
        let error = io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the volume already has an entry there",
        );
        if required {
            return Err(Error::io("link", &current, error));
        }
        log::info!("mount link {} left as it is: {error}", current.display());
        return Ok(());
    }
    let target = Path::new(&link.target);
    let made = if std::fs::metadata(target).is_ok_and(|m| m.is_dir()) {
        std::os::windows::fs::symlink_dir(target, &current)
    } else {
        std::os::windows::fs::symlink_file(target, &current)
    };
    made.map_err(io_error("symlink", &current))
}

/// Creates `parts` below `root` one directory at a time, refusing any existing component that
/// is a link or a file, and returns the deepest path.
fn create_dirs_below(root: &Path, parts: &[&str]) -> Result<PathBuf> {
    let mut current = PathBuf::from(root);
    for part in parts {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(Error::io(
                    "create",
                    &current,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a link or file is in the way; refusing to follow it",
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&current).map_err(io_error("create", &current))?;
            }
            Err(e) => return Err(Error::io("inspect", &current, e)),
        }
    }
    Ok(current)
}

/// Creates directory `path` below `root` (which must hold it) without following links.
pub fn create_dir_below(root: &str, path: &str) -> Result<()> {
    let relative = crate::sys::winlogic::mounts::relative_to(path, root).ok_or_else(|| {
        Error::io(
            "create",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, format!("not below {root}")),
        )
    })?;
    let parts: Vec<&str> = relative.split('\\').filter(|p| !p.is_empty()).collect();
    create_dirs_below(Path::new(root), &parts).map(drop)
}

/// Removes `link` if it is still the symlink this container made.
fn remove_link(link: &VolumeLink) -> Result<()> {
    use std::os::windows::fs::FileTypeExt;
    let path = Path::new(&link.path);
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let ours = meta.file_type().is_symlink()
        && std::fs::read_link(path).is_ok_and(|t| same_path(&t, Path::new(&link.target)));
    if !ours {
        return Ok(());
    }
    let removed = if meta.file_type().is_symlink_dir() {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(io_error("remove", path))
}
