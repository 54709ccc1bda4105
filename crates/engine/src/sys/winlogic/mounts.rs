//! Paths in the container's view (§2): where the volume and each mount appear, how a container
//! path maps to the host path behind it, and the working directory.
//!
//! Two layouts, as in the reference:
//! - **silo** (bind filter present, the default): the job is promoted to a silo and the bind filter
//!   maps the volume at the sandbox mount point (`C:\hpc`) and each mount at its destination, for
//!   this container only;
//! - **fallback** (no bind filter, or the symlink layout asked for): the volume is reachable at a
//!   host path unique to the container (`C:\hpc\<id>`) and each mount is a symlink inside the
//!   volume.

use serde::{Deserialize, Serialize};

use super::cmdline::{drive_of, join, normalize, to_backslashes, FileSystem, Kind};
use crate::plan::Layout;

/// The drive a rooted path without a drive (`/var/run/x`) is on, as containerd decides.
pub const SYSTEM_DRIVE: &str = "C:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// containerd's text for a bare drive destination.
    #[error("destination path can not be {drive} drive")]
    DriveRoot { drive: String },
    #[error("path {path:?} is relative; give an absolute path such as C:\\dir or /dir")]
    Relative { path: String },
    #[error("path {path:?} must not contain '..'")]
    DotDot { path: String },
    #[error("path {path:?} is a network or device path; give a path on a local drive")]
    NotLocal { path: String },
}

/// How the container volume is presented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeLayout {
    #[default]
    Silo,
    Fallback,
}

/// How the fallback layout makes the volume reachable at its mount point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeAttach {
    /// A directory symbolic link to the volume's directory.
    #[default]
    Symlink,
    /// `SetVolumeMountPoint` of a `\\?\Volume{GUID}\` path, as the reference does.
    MountPoint,
}

/// One bind-filter mapping: `container_path` shows `host_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub container_path: String,
    pub host_path: String,
    pub read_only: bool,
}

/// A symlink inside the volume that reaches a mount (`<volume>\<destination>` → source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLink {
    /// Host path of the link.
    pub path: String,
    /// The mount's source.
    pub target: String,
}

/// A Windows container path: `/` becomes `\`, a rooted path gets drive `C:` (`/var/run/x` →
/// `C:\var\run\x`), `.` and repeated separators go, and the drive letter is upper-case. Relative
/// paths, `..`, and network or device paths are refused. A bare drive (`C:`) is kept as `C:\`.
pub fn container_path(path: &str) -> Result<String, PathError> {
    let raw = to_backslashes(path.trim());
    if raw.starts_with(r"\\") {
        return Err(PathError::NotLocal {
            path: path.to_string(),
        });
    }
    let absolute = match drive_of(&raw) {
        Some(drive) => {
            let rest = &raw[2..];
            if !rest.is_empty() && !rest.starts_with('\\') {
                return Err(PathError::Relative {
                    path: path.to_string(),
                });
            }
            format!("{}{rest}", drive.to_ascii_uppercase())
        }
        None if raw.starts_with('\\') => format!("{SYSTEM_DRIVE}{raw}"),
        None => {
            return Err(PathError::Relative {
                path: path.to_string(),
            })
        }
    };
    if absolute.split('\\').any(|part| part == "..") {
        return Err(PathError::DotDot {
            path: path.to_string(),
        });
    }
    Ok(normalize(&absolute))
}

/// Is `path` a drive root (`C:\`)?
pub fn is_drive_root(path: &str) -> bool {
    path.len() == 3 && drive_of(path).is_some() && path.ends_with('\\')
}

/// A mount destination as a container path; a drive root is refused with containerd's text.
pub fn mount_destination(destination: &str) -> Result<String, PathError> {
    let path = container_path(destination)?;
    if is_drive_root(&path) {
        return Err(PathError::DriveRoot {
            drive: path[..1].to_string(),
        });
    }
    Ok(path)
}

/// The reference's `stripDriveLetter`: `C:` → `.`, `C:\x` → `\x`, anything else unchanged.
pub fn strip_drive_letter(path: &str) -> String {
    match drive_of(path) {
        Some(_) if path.len() == 2 => ".".to_string(),
        Some(_) => path[2..].to_string(),
        None => path.to_string(),
    }
}

/// Where a container path lands inside the volume: `<volume>\<path without its drive>`.
pub fn path_in_volume(volume: &str, path: &str) -> String {
    normalize(&join(volume, &strip_drive_letter(path)))
}

/// Is `path` `prefix` or below it (whole components, case-insensitive)?
pub fn is_under(path: &str, prefix: &str) -> bool {
    relative_to(path, prefix).is_some()
}

/// `path` below `prefix`, without a leading separator (`""` for `prefix` itself).
pub fn relative_to(path: &str, prefix: &str) -> Option<String> {
    let path = normalize(path);
    let prefix = normalize(prefix);
    let prefix = prefix.trim_end_matches('\\');
    let head = path.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    match &path[prefix.len()..] {
        "" => Some(String::new()),
        rest if rest.starts_with('\\') => Some(rest.trim_start_matches('\\').to_string()),
        _ => None,
    }
}

/// `path` moved from below `from` to below `to`.
pub fn rebase(path: &str, from: &str, to: &str) -> Option<String> {
    relative_to(path, from).map(|rest| {
        if rest.is_empty() {
            normalize(to)
        } else {
            normalize(&join(to, &rest))
        }
    })
}

/// Is this a `\\?\Volume{GUID}\` path?
pub fn is_volume_guid_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.starts_with(r"\\?\volume{") && lower.trim_end_matches('\\').ends_with('}')
}

/// How the fallback layout attaches `volume` at its mount point.
pub fn volume_attach(volume: &str) -> VolumeAttach {
    if is_volume_guid_path(volume) {
        VolumeAttach::MountPoint
    } else {
        VolumeAttach::Symlink
    }
}

/// The layout and the sandbox mount point. The plan's mount point (the bind layout's `/hpc` or
/// the rootfs-location annotation) becomes a Windows path. Without the bind filter a bind layout
/// falls back to `<mount point>\<id>`, as the reference does (`C:\hpc\<id>`); the symlink layout's
/// mount point already names the container.
pub fn choose_layout(
    layout: Layout,
    plan_mount_point: &str,
    id: &str,
    bind_filter: bool,
) -> Result<(VolumeLayout, String), PathError> {
    let mount_point = container_path(plan_mount_point)?;
    if is_drive_root(&mount_point) {
        return Err(PathError::DriveRoot {
            drive: mount_point[..1].to_string(),
        });
    }
    Ok(match (layout, bind_filter) {
        (Layout::Bind, true) => (VolumeLayout::Silo, mount_point),
        (Layout::Bind, false) => (VolumeLayout::Fallback, join(&mount_point, id)),
        (Layout::Symlink, _) => (VolumeLayout::Fallback, mount_point),
    })
}

/// `CONTAINER_SANDBOX_MOUNT_POINT`'s value: the mount point with a trailing `\`, as the
/// reference sets it.
pub fn mount_point_env(mount_point: &str) -> String {
    format!("{}\\", mount_point.trim_end_matches('\\'))
}

/// Replaces the plan's spelling of the mount point where the plan expanded
/// `$CONTAINER_SANDBOX_MOUNT_POINT` (or joined a relative path) in a value: at the start of the
/// value or after a blank, `=`, `;`, a quote or a shell operator (`& | < > ( ) ,`), and followed
/// by the end, a separator, a blank, `;`, a quote or a shell operator. Needed when the real
/// mount point differs from the plan's (the fallback layout's `C:\hpc\<id>`).
pub fn rebase_text(text: &str, from: &str, to: &str) -> String {
    if from.is_empty() || from == to || !text.contains(from) {
        return text.to_string();
    }
    let operator = |c: char| matches!(c, '&' | '|' | '<' | '>' | '(' | ')' | ',');
    let starts = |c: char| c.is_whitespace() || operator(c) || matches!(c, '=' | ';' | '"' | '\'');
    let ends =
        |c: char| c.is_whitespace() || operator(c) || matches!(c, '\\' | '/' | ';' | '"' | '\'');
    let mut out = String::with_capacity(text.len() + to.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back().or(previous);
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_none_or(starts) && after.is_none_or(ends) {
            out.push_str(to);
        } else {
            out.push_str(from);
        }
        previous = from.chars().next_back();
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// The silo's mappings: the volume at the mount point, then each mount at its destination.
pub fn silo_bindings(
    mount_point: &str,
    volume: &str,
    volume_read_only: bool,
    mounts: &[Binding],
) -> Vec<Binding> {
    let mut bindings = vec![Binding {
        container_path: mount_point.to_string(),
        host_path: volume.to_string(),
        read_only: volume_read_only,
    }];
    bindings.extend_from_slice(mounts);
    bindings
}

/// `<volume>\<destination>` → source for each mount: the mounts of the fallback layout, and the
/// backward-compatible paths of the silo layout.
pub fn volume_links(volume: &str, mounts: &[Binding]) -> Vec<VolumeLink> {
    mounts
        .iter()
        .map(|m| VolumeLink {
            path: path_in_volume(volume, &m.container_path),
            target: m.host_path.clone(),
        })
        .collect()
}

/// Maps container paths to the host paths behind them (the silo's bindings; none for the
/// fallback layout, where container paths are host paths).
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    pub bindings: &'a [Binding],
}

impl ContainerView<'_> {
    /// The host path behind `path`: the deepest binding that holds it, or the path itself.
    pub fn to_host(&self, path: &str) -> String {
        let best = self
            .bindings
            .iter()
            .filter_map(|b| relative_to(path, &b.container_path).map(|rest| (b, rest)))
            .max_by_key(|(b, _)| normalize(&b.container_path).trim_end_matches('\\').len());
        match best {
            Some((binding, rest)) if rest.is_empty() => normalize(&binding.host_path),
            Some((binding, rest)) => normalize(&join(&binding.host_path, &rest)),
            None => normalize(path),
        }
    }
}

/// A [`FileSystem`] that answers for container paths by looking at the host paths behind them.
pub struct ViewFs<'a> {
    pub view: ContainerView<'a>,
    pub host: &'a dyn FileSystem,
}

impl FileSystem for ViewFs<'_> {
    fn kind(&self, path: &str) -> Kind {
        self.host.kind(&self.view.to_host(path))
    }
}

/// The working directory a process gets, in the container's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingDir {
    pub path: String,
    /// It exists nowhere: create it (inside the volume).
    pub create: bool,
}

/// The working directory (§3): none, `/`, `\` or a drive root means the sandbox mount point; a
/// path under the plan's spelling of the mount point is moved under the real one; a directory
/// that does not exist in the view but exists inside the volume is the volume's (kubernetes
/// #112885); one that exists nowhere is created inside the volume.
pub fn working_directory(
    cwd: &str,
    plan_mount_point: &str,
    mount_point: &str,
    fs: &dyn FileSystem,
) -> Result<WorkingDir, PathError> {
    let trimmed = cwd.trim();
    let as_backslashes = to_backslashes(trimmed);
    let is_root = trimmed.is_empty()
        || as_backslashes == "\\"
        || (drive_of(&as_backslashes).is_some() && as_backslashes.len() <= 3);
    let path = if is_root {
        normalize(mount_point)
    } else {
        let plan_spellings = [
            Some(to_backslashes(plan_mount_point)),
            container_path(plan_mount_point).ok(),
        ];
        match plan_spellings
            .iter()
            .flatten()
            .find_map(|from| rebase(&as_backslashes, from, mount_point))
        {
            Some(path) => path,
            None => container_path(trimmed)?,
        }
    };
    if fs.kind(&path) == Kind::Directory {
        return Ok(WorkingDir {
            path,
            create: false,
        });
    }
    if is_under(&path, mount_point) {
        return Ok(WorkingDir { path, create: true });
    }
    let in_volume = path_in_volume(mount_point, &path);
    let create = fs.kind(&in_volume) != Kind::Directory;
    Ok(WorkingDir {
        path: in_volume,
        create,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::winlogic::cmdline::tests::MemFs;

    #[test]
    fn rooted_destinations_get_the_c_drive() {
        assert_eq!(mount_destination("/var/run/x").unwrap(), r"C:\var\run\x");
        assert_eq!(mount_destination(r"\var\run\x").unwrap(), r"C:\var\run\x");
        assert_eq!(mount_destination(r"/var\run\x").unwrap(), r"C:\var\run\x");
        assert_eq!(mount_destination(r"d:\data\").unwrap(), r"D:\data");
        assert_eq!(mount_destination("C:/a/./b//c").unwrap(), r"C:\a\b\c");
    }

    #[test]
    fn a_bare_drive_destination_is_refused_with_containerds_text() {
        for destination in ["C:", r"C:\", "c:/"] {
            assert_eq!(
                mount_destination(destination).unwrap_err().to_string(),
                "destination path can not be C drive",
                "{destination}"
            );
        }
        assert_eq!(
            mount_destination("D:").unwrap_err(),
            PathError::DriveRoot { drive: "D".into() }
        );
    }

    #[test]
    fn relative_dotdot_and_network_destinations_are_refused() {
        assert!(matches!(
            mount_destination("var/x"),
            Err(PathError::Relative { .. })
        ));
        assert!(matches!(
            mount_destination("C:var"),
            Err(PathError::Relative { .. })
        ));
        assert!(matches!(
            mount_destination(r"C:\a\..\b"),
            Err(PathError::DotDot { .. })
        ));
        assert!(matches!(
            mount_destination(r"\\server\share\x"),
            Err(PathError::NotLocal { .. })
        ));
    }

    #[test]
    fn strip_drive_letter_follows_the_reference() {
        assert_eq!(strip_drive_letter("C:"), ".");
        assert_eq!(strip_drive_letter(r"C:\var\x"), r"\var\x");
        assert_eq!(strip_drive_letter(r"\var\x"), r"\var\x");
        assert_eq!(
            path_in_volume(r"C:\hpc\c1", r"C:\var\run\x"),
            r"C:\hpc\c1\var\run\x"
        );
        assert_eq!(path_in_volume(r"C:\hpc\c1", "C:"), r"C:\hpc\c1");
    }

    #[test]
    fn bind_layout_uses_the_silo_or_falls_back_per_container() {
        assert_eq!(
            choose_layout(Layout::Bind, "/hpc", "c1", true).unwrap(),
            (VolumeLayout::Silo, r"C:\hpc".to_string())
        );
        assert_eq!(
            choose_layout(Layout::Bind, "/hpc", "c1", false).unwrap(),
            (VolumeLayout::Fallback, r"C:\hpc\c1".to_string())
        );
        assert_eq!(
            choose_layout(Layout::Symlink, r"C:\state\hpc\c1", "c1", true).unwrap(),
            (VolumeLayout::Fallback, r"C:\state\hpc\c1".to_string())
        );
        assert!(choose_layout(Layout::Bind, r"C:\", "c1", true).is_err());
        assert_eq!(mount_point_env(r"C:\hpc"), r"C:\hpc\");
        assert_eq!(mount_point_env(r"C:\hpc\"), r"C:\hpc\");
    }

    #[test]
    fn volume_guid_paths_are_mounted_others_linked() {
        let guid = r"\\?\Volume{5a4c7e5a-1b2c-4d3e-8f9a-0b1c2d3e4f5a}\";
        assert!(is_volume_guid_path(guid));
        assert_eq!(volume_attach(guid), VolumeAttach::MountPoint);
        assert_eq!(volume_attach(r"C:\snapshots\12"), VolumeAttach::Symlink);
    }

    fn bindings() -> Vec<Binding> {
        silo_bindings(
            r"C:\hpc",
            r"D:\snap\7",
            false,
            &[
                Binding {
                    container_path: r"C:\var\run\secrets".into(),
                    host_path: r"C:\kubelet\pods\p\secrets".into(),
                    read_only: true,
                },
                Binding {
                    container_path: r"C:\hpc\data".into(),
                    host_path: r"E:\data".into(),
                    read_only: false,
                },
            ],
        )
    }

    #[test]
    fn container_paths_map_to_the_deepest_binding() {
        let bindings = bindings();
        let view = ContainerView {
            bindings: &bindings,
        };
        assert_eq!(
            view.to_host(r"C:\hpc\app\run.exe"),
            r"D:\snap\7\app\run.exe"
        );
        assert_eq!(view.to_host(r"c:\HPC"), r"D:\snap\7");
        assert_eq!(view.to_host(r"C:\hpc\data\x"), r"E:\data\x");
        assert_eq!(
            view.to_host(r"C:\var\run\secrets\token"),
            r"C:\kubelet\pods\p\secrets\token"
        );
        assert_eq!(
            view.to_host(r"C:\hpc2\x"),
            r"C:\hpc2\x",
            "a sibling is not below"
        );
        assert_eq!(view.to_host(r"C:\Windows\System32"), r"C:\Windows\System32");
    }

    #[test]
    fn links_land_inside_the_volume() {
        let links = volume_links(r"D:\snap\7", &bindings()[1..]);
        assert_eq!(links[0].path, r"D:\snap\7\var\run\secrets");
        assert_eq!(links[0].target, r"C:\kubelet\pods\p\secrets");
    }

    #[test]
    fn relative_to_compares_whole_components_without_case() {
        assert_eq!(
            relative_to(r"C:\hpc\a\b", r"c:\HPC\").as_deref(),
            Some(r"a\b")
        );
        assert_eq!(relative_to(r"C:\hpc", r"C:\hpc").as_deref(), Some(""));
        assert_eq!(relative_to(r"C:\hpcx", r"C:\hpc"), None);
        assert_eq!(
            rebase(r"\hpc\work", r"\hpc", r"C:\hpc\c1").as_deref(),
            Some(r"C:\hpc\c1\work")
        );
    }

    #[test]
    fn plan_spelling_of_the_mount_point_is_rebased_in_values() {
        let to = r"C:\hpc\c1";
        assert_eq!(
            rebase_text("/hpc/bin/app.exe", "/hpc", to),
            r"C:\hpc\c1/bin/app.exe"
        );
        assert_eq!(rebase_text("A=/hpc", "/hpc", to), r"A=C:\hpc\c1");
        assert_eq!(rebase_text("x;/hpc;y", "/hpc", to), r"x;C:\hpc\c1;y");
        assert_eq!(
            rebase_text("\"/hpc\\a b\"", "/hpc", to),
            "\"C:\\hpc\\c1\\a b\""
        );
        assert_eq!(
            rebase_text("/hpc2 C:/hpc a/hpc", "/hpc", to),
            "/hpc2 C:/hpc a/hpc"
        );
        assert_eq!(rebase_text("/hpc /hpc", "/hpc", to), r"C:\hpc\c1 C:\hpc\c1");
        assert_eq!(rebase_text("/hpc", "/hpc", "/hpc"), "/hpc");
        assert_eq!(
            rebase_text(r"echo C:\hpc& (type C:\hpc\a)|more", r"C:\hpc", to),
            r"echo C:\hpc\c1& (type C:\hpc\c1\a)|more"
        );
    }

    #[test]
    fn no_cwd_or_a_root_cwd_is_the_mount_point() {
        let fs = MemFs::new(&[], &[r"C:\hpc"]);
        for cwd in ["", "/", "\\", "C:", r"C:\"] {
            assert_eq!(
                working_directory(cwd, "/hpc", r"C:\hpc", &fs).unwrap(),
                WorkingDir {
                    path: r"C:\hpc".into(),
                    create: false
                },
                "{cwd:?}"
            );
        }
    }

    #[test]
    fn a_cwd_under_the_plans_mount_point_moves_with_it() {
        let fs = MemFs::new(&[], &[r"C:\hpc\c1\work"]);
        assert_eq!(
            working_directory(r"/hpc\work", "/hpc", r"C:\hpc\c1", &fs).unwrap(),
            WorkingDir {
                path: r"C:\hpc\c1\work".into(),
                create: false
            }
        );
    }

    #[test]
    fn a_cwd_missing_on_the_host_but_in_the_volume_is_the_volumes() {
        let fs = MemFs::new(&[], &[r"C:\hpc\debug"]);
        assert_eq!(
            working_directory("/debug", "/hpc", r"C:\hpc", &fs).unwrap(),
            WorkingDir {
                path: r"C:\hpc\debug".into(),
                create: false
            }
        );
        let fs = MemFs::new(&[], &[r"C:\debug", r"C:\hpc\debug"]);
        assert_eq!(
            working_directory(r"C:\debug", "/hpc", r"C:\hpc", &fs)
                .unwrap()
                .path,
            r"C:\debug",
            "the host's directory comes first"
        );
    }

    #[test]
    fn a_cwd_missing_everywhere_is_created_in_the_volume() {
        let fs = MemFs::new(&[], &[r"C:\hpc"]);
        assert_eq!(
            working_directory(r"C:\nowhere", "/hpc", r"C:\hpc", &fs).unwrap(),
            WorkingDir {
                path: r"C:\hpc\nowhere".into(),
                create: true
            }
        );
        assert_eq!(
            working_directory(r"C:\hpc\new", "/hpc", r"C:\hpc", &fs).unwrap(),
            WorkingDir {
                path: r"C:\hpc\new".into(),
                create: true
            }
        );
    }

    #[test]
    fn a_command_in_the_silo_resolves_to_the_host_file_behind_it() {
        use crate::sys::winlogic::cmdline::{resolve, SearchPaths};
        let bindings = bindings();
        let view = ContainerView {
            bindings: &bindings,
        };
        let host = MemFs::new(&[r"D:\snap\7\agnhost", r"C:\Windows\System32\cmd.exe"], &[]);
        let fs = ViewFs { view, host: &host };
        let search = SearchPaths {
            work_dir: r"C:\hpc".into(),
            path_env: r"C:\Windows\System32;C:\hpc\".into(),
            system_dir: r"C:\Windows\System32".into(),
            windows_dir: r"C:\Windows".into(),
        };
        let resolved = resolve("agnhost netexec --http-port=80", &search, &fs).unwrap();
        assert_eq!(resolved.application.to_lowercase(), r"c:\hpc\agnhost");
        assert_eq!(view.to_host(&resolved.application), r"D:\snap\7\agnhost");
        assert_eq!(resolved.command_line, "agnhost netexec --http-port=80");
    }

    #[test]
    fn the_fallback_layout_rebases_an_expanded_command() {
        let line = rebase_text(r"/hpc\agnhost serve-hostname", "/hpc", r"C:\hpc\c1");
        assert_eq!(line, r"C:\hpc\c1\agnhost serve-hostname");
    }

    #[test]
    fn the_view_answers_for_container_paths() {
        let bindings = bindings();
        let host = MemFs::new(&[r"D:\snap\7\app\run.exe"], &[]);
        let fs = ViewFs {
            view: ContainerView {
                bindings: &bindings,
            },
            host: &host,
        };
        assert_eq!(fs.kind(r"C:\hpc\app\run.exe"), Kind::File);
        assert_eq!(fs.kind(r"C:\hpc\app"), Kind::Directory);
        assert_eq!(fs.kind(r"D:\snap\7\app\run.exe"), Kind::File);
        assert_eq!(fs.kind(r"C:\app\run.exe"), Kind::Missing);
    }
}
