//! Spec → plan: every decision about a container made from its spec, as plain data, before any
//! side effect. Platforms execute plans; nothing here touches the host.

pub mod account;
pub mod mounts;
pub mod network;
pub mod process;
pub mod resources;
pub mod rlimits;
pub mod run_as_user_name;
pub mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::annotations;
use crate::error::{Error, Result};
use crate::spec::Spec;

pub use account::{AccountName, AccountRequest, WellKnownAccount};
pub use mounts::{Propagation, VolumeMount};
pub use process::{ProcessPlan, ResolvedProcess};
pub use resources::ResourceRequest;
pub use settings::AccountSettings;

/// The default sandbox mount point of the bind layout.
pub const DEFAULT_MOUNT_POINT: &str = "/hpc";
/// Time the rest of the job gets between SIGTERM and SIGKILL once init has exited (§6).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// How the container volume is presented (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// A private view of the host tree with the volume at the mount point and mounts at their
    /// destinations.
    Bind,
    /// The volume at a host path unique to the container, mounts as symlinks inside it.
    Symlink,
}

/// Where the image's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// A directory (an OCI bundle's `root.path`), used read-only as the lower layer.
    Directory(PathBuf),
    /// Layers given by containerd: lower directories (top first) and, when containerd made
    /// them, its own upper and work directories.
    Layers {
        lower: Vec<PathBuf>,
        upper: Option<PathBuf>,
        work: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub layout: Layout,
    /// The path every process gets in `CONTAINER_SANDBOX_MOUNT_POINT`.
    pub mount_point: PathBuf,
    pub image: ImageSource,
    pub read_only: bool,
}

/// Settings of the runtime, not of one container. The binaries read the environment's once,
/// here ([`PlanOptions::from_env`]); nothing below reads it again.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// State root (`--root`).
    pub root: PathBuf,
    pub default_layout: Layout,
    pub grace_period: Duration,
    /// The runtime's own `PATH`, used when the spec has none.
    pub host_path: Option<String>,
    /// How long an operation waits for another's lock on a container
    /// (`HOSTPROCESS_LOCK_TIMEOUT`).
    pub lock_timeout: Duration,
    /// How container accounts map to the host's users (`HOSTPROCESS_*_ACCOUNT`,
    /// `HOSTPROCESS_EPHEMERAL_UIDS`, `HOSTPROCESS_EPHEMERAL_UIDS_DIR`).
    pub accounts: AccountSettings,
}

impl PlanOptions {
    /// Options with the state root at `root` and every setting at its default: nothing is
    /// read from the environment.
    pub fn new(root: impl Into<PathBuf>) -> PlanOptions {
        PlanOptions::from_vars(root, &|_| None)
    }

    /// Options with the state root at `root` and the settings of the runtime's environment.
    pub fn from_env(root: impl Into<PathBuf>) -> PlanOptions {
        PlanOptions::from_vars(root, &|name| std::env::var_os(name))
    }

    /// Options with the state root at `root`, made absolute (as runc does) so that no path
    /// derived from it depends on the caller's working directory, and the settings `vars`
    /// gives.
    pub fn from_vars(root: impl Into<PathBuf>, vars: settings::Vars<'_>) -> PlanOptions {
        let root = root.into();
        PlanOptions {
            root: std::path::absolute(&root).unwrap_or(root),
            default_layout: Layout::Bind,
            grace_period: DEFAULT_GRACE_PERIOD,
            host_path: vars("PATH").and_then(|path| path.into_string().ok()),
            lock_timeout: settings::lock_timeout(vars),
            accounts: AccountSettings::from_vars(vars),
        }
    }
}

/// Everything decided about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    pub id: String,
    pub bundle: PathBuf,
    pub volume: VolumePlan,
    pub mounts: Vec<VolumeMount>,
    pub account: AccountRequest,
    pub process: ProcessPlan,
    pub resources: ResourceRequest,
    /// `linux.cgroupsPath`, when the spec gives one.
    pub job_path: Option<String>,
    pub grace_period: Duration,
    pub annotations: BTreeMap<String, String>,
    /// The pod's network namespace every process joins (§7, opt-in); `None`: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_network: Option<PathBuf>,
    /// The runtime's account settings, read when the platform prepares the container (before
    /// anything is stored). Not stored: what a later operation needs of them is in the
    /// platform's record.
    #[serde(skip)]
    pub accounts: AccountSettings,
}

/// The longest grace period the annotation may ask for: a day. Waits are measured on the
/// monotonic clock, which a period near 2^63 s would overflow.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads the grace-period annotation: whole seconds, at most [`MAX_GRACE_PERIOD`].
fn grace_period(value: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::Spec(format!(
            "annotation {}={value:?}: {why}",
            annotations::GRACE_PERIOD
        ))
    };
    let seconds: u64 = value
        .trim()
        .parse()
        .map_err(|_| bad("expected whole seconds"))?;
    if seconds > MAX_GRACE_PERIOD.as_secs() {
        return Err(bad(&format!(
            "at most {} seconds (a day) are allowed",
            MAX_GRACE_PERIOD.as_secs()
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// Container ids follow runc's rule: letters, digits, `_`, `+`, `-`, `.`; not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| Error::InvalidId {
        id: id.to_string(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > 1024 {
        return Err(bad("it is longer than 1024 characters"));
    }
    if id == "." || id == ".." {
        return Err(bad("it must not be '.' or '..'"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return Err(bad(
            "only letters, digits, '_', '+', '-' and '.' are allowed",
        ));
    }
    Ok(())
}

/// Plans a container from its spec. `image` overrides the spec's `root.path` (containerd gives
/// the rootfs as mounts).
pub fn plan(
    id: &str,
    bundle: &Path,
    spec: &Spec,
    options: &PlanOptions,
    image: Option<ImageSource>,
) -> Result<ContainerPlan> {
    validate_id(id)?;
    let layout = match spec.annotation(annotations::VOLUME_LAYOUT) {
        None => options.default_layout,
        Some("bind") => Layout::Bind,
        Some("symlink") => Layout::Symlink,
        Some(other) => {
            return Err(Error::Spec(format!(
                "annotation {}={other:?}: expected \"bind\" or \"symlink\"",
                annotations::VOLUME_LAYOUT
            )))
        }
    };
    let location = spec
        .annotation(annotations::ROOTFS_LOCATION)
        .filter(|l| !l.is_empty());
    let mount_point = if cfg!(windows) {
        windows_mount_point(layout, location, &options.root, id)?
    } else {
        mount_point(layout, location, &options.root, id)?
    };
    let image = match image {
        Some(image) => image,
        None => {
            let root = spec
                .root
                .as_ref()
                .filter(|r| !r.path.is_empty())
                .ok_or_else(|| {
                    Error::Spec("root.path is missing: the bundle has no image root".into())
                })?;
            let path = Path::new(&root.path);
            ImageSource::Directory(if path.is_absolute() {
                path.to_path_buf()
            } else {
                bundle.join(path)
            })
        }
    };
    let (mounts, skipped) = mounts::volume_mounts(&spec.mounts, &mount_point, bundle)?;
    for skip in &skipped {
        log::debug!(
            "container {id}: mount {} ({}) skipped: a HostProcess container sees the host's",
            skip.destination,
            skip.kind
        );
    }
    let pod_network = network::pod_network(spec)?;
    if let Some(netns) = &pod_network {
        log::debug!(
            "container {id}: joins the pod's network namespace {} ({}={})",
            netns.display(),
            annotations::NETWORK,
            network::POD
        );
    }
    for setting in spec.ignored_isolation_settings() {
        log::debug!("container {id}: {setting} does not apply to a HostProcess container");
    }
    let process = spec
        .process
        .as_ref()
        .ok_or_else(|| Error::Spec("process is missing".into()))?;
    let grace_period = match spec.annotation(annotations::GRACE_PERIOD) {
        None => options.grace_period,
        Some(v) => grace_period(v)?,
    };
    Ok(ContainerPlan {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        volume: VolumePlan {
            layout,
            mount_point: mount_point.clone(),
            image,
            read_only: spec.root.as_ref().is_some_and(|r| r.readonly),
        },
        mounts,
        account: account::account_request(spec)?,
        process: process::process_plan(process, &mount_point, options.host_path.as_deref())?,
        resources: resources::resource_request(spec)?,
        job_path: spec
            .linux
            .as_ref()
            .and_then(|l| l.cgroups_path.clone())
            .filter(|p| !p.is_empty()),
        grace_period,
        annotations: spec.annotations.clone(),
        pod_network,
        accounts: options.accounts.clone(),
    })
}

fn bad_location(location: &str) -> Error {
    Error::Spec(format!(
        "annotation {}={location:?}: expected an absolute path without '..'",
        annotations::ROOTFS_LOCATION
    ))
}

/// The sandbox mount point: the rootfs-location annotation or `/hpc`, and in the symlink layout
/// a directory per container below it (or below the state root).
fn mount_point(layout: Layout, location: Option<&str>, root: &Path, id: &str) -> Result<PathBuf> {
    if let Some(location) = location {
        if !Path::new(location).is_absolute() || location.split('/').any(|c| c == "..") {
            return Err(bad_location(location));
        }
    }
    let mount_point = match (layout, location) {
        (Layout::Bind, Some(location)) => PathBuf::from(location),
        (Layout::Bind, None) => PathBuf::from(DEFAULT_MOUNT_POINT),
        (Layout::Symlink, Some(location)) => Path::new(location).join(id),
        (Layout::Symlink, None) => root.join("hpc").join(id),
    };
    if mount_point == Path::new("/") {
        return Err(Error::Spec("the sandbox mount point cannot be '/'".into()));
    }
    Ok(mount_point)
}

/// [`mount_point`] on Windows: a location keeps its drive, and a rooted one (`/hpc`, the
/// default) is on the system drive (`C:\hpc`).
fn windows_mount_point(
    layout: Layout,
    location: Option<&str>,
    root: &Path,
    id: &str,
) -> Result<PathBuf> {
    use crate::sys::winlogic::mounts::{container_path, is_drive_root};
    let base = match (layout, location) {
        (_, Some(location)) => container_path(location).map_err(|_| bad_location(location))?,
        (Layout::Bind, None) => container_path(DEFAULT_MOUNT_POINT)
            .map_err(|e| Error::Spec(format!("the sandbox mount point: {e}")))?,
        (Layout::Symlink, None) => return Ok(root.join("hpc").join(id)),
    };
    if is_drive_root(&base) {
        return Err(Error::Spec(format!(
            "the sandbox mount point cannot be the drive root {base}"
        )));
    }
    Ok(PathBuf::from(match layout {
        Layout::Bind => base,
        Layout::Symlink => format!("{}\\{id}", base.trim_end_matches('\\')),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Process, Root};

    fn spec() -> Spec {
        Spec {
            root: Some(Root {
                path: "rootfs".into(),
                readonly: false,
            }),
            process: Some(Process {
                args: vec!["/bin/true".into()],
                ..Process::default()
            }),
            ..Spec::default()
        }
    }

    #[test]
    fn a_grace_period_beyond_a_day_is_refused() {
        let options = PlanOptions::new("/run/hostprocess");
        let mut s = spec();
        for (value, ok) in [
            ("0", true),
            ("86400", true),
            ("86401", false),
            ("9223372036854775808", false),
            ("18446744073709551615", false),
            ("99999999999999999999", false),
            ("-1", false),
        ] {
            s.annotations
                .insert(annotations::GRACE_PERIOD.into(), value.into());
            let planned = plan("c1", Path::new("/b"), &s, &options, None);
            assert_eq!(planned.is_ok(), ok, "{value}: {planned:?}");
            if let Err(e) = planned {
                assert!(e.to_string().contains(annotations::GRACE_PERIOD), "{e}");
            }
        }
    }

    #[test]
    fn ids_follow_runc_rules() {
        assert!(validate_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    /// A path as the plan spells it on this platform (a rooted one on the system drive).
    fn native(unix: &str) -> PathBuf {
        if cfg!(windows) {
            PathBuf::from(format!("C:{}", unix.replace('/', "\\")))
        } else {
            PathBuf::from(unix)
        }
    }

    #[test]
    fn bind_layout_uses_hpc_unless_the_annotation_moves_it() {
        let options = PlanOptions::new("/run/hostprocess");
        let p = plan("c1", Path::new("/b"), &spec(), &options, None).unwrap();
        assert_eq!(p.volume.mount_point, native("/hpc"));
        assert_eq!(
            p.volume.image,
            ImageSource::Directory(Path::new("/b").join("rootfs"))
        );
        let mut s = spec();
        s.annotations
            .insert(annotations::ROOTFS_LOCATION.into(), "/opt/sandbox".into());
        let p = plan("c1", Path::new("/b"), &s, &options, None).unwrap();
        assert_eq!(p.volume.mount_point, native("/opt/sandbox"));
    }

    #[test]
    fn windows_mount_points_keep_their_drive_and_rooted_ones_are_on_the_system_drive() {
        let at = |layout, location| windows_mount_point(layout, location, Path::new("/r"), "c1");
        assert_eq!(at(Layout::Bind, None).unwrap(), PathBuf::from(r"C:\hpc"));
        assert_eq!(
            at(Layout::Bind, Some(r"D:\sandbox")).unwrap(),
            PathBuf::from(r"D:\sandbox")
        );
        assert_eq!(
            at(Layout::Bind, Some("/opt/sandbox")).unwrap(),
            PathBuf::from(r"C:\opt\sandbox")
        );
        assert_eq!(
            at(Layout::Symlink, Some("d:/hp")).unwrap(),
            PathBuf::from(r"D:\hp\c1")
        );
        for bad in ["sandbox", r"C:\a\..\b", r"\\server\share", "C:", r"D:\"] {
            assert!(at(Layout::Bind, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn symlink_layout_puts_the_volume_under_the_state_root() {
        let mut s = spec();
        s.annotations
            .insert(annotations::VOLUME_LAYOUT.into(), "symlink".into());
        let p = plan(
            "c1",
            Path::new("/b"),
            &s,
            &PlanOptions::new("/run/hp"),
            None,
        )
        .unwrap();
        let root = PlanOptions::new("/run/hp").root;
        assert_eq!(p.volume.mount_point, root.join("hpc").join("c1"));
        assert_eq!(p.volume.layout, Layout::Symlink);
    }

    #[test]
    fn missing_process_and_root_are_refused() {
        let options = PlanOptions::new("/r");
        let mut s = spec();
        s.process = None;
        assert!(plan("c", Path::new("/b"), &s, &options, None)
            .unwrap_err()
            .to_string()
            .contains("process is missing"));
        let mut s = spec();
        s.root = None;
        assert!(plan("c", Path::new("/b"), &s, &options, None)
            .unwrap_err()
            .to_string()
            .contains("root.path is missing"));
    }

    #[test]
    fn the_plan_records_the_pods_network_namespace_only_when_the_pod_opts_in() {
        let options = PlanOptions::new("/r");
        let mut s = spec();
        s.linux = Some(crate::spec::Linux {
            namespaces: vec![
                serde_json::json!({"type": "network", "path": "/var/run/netns/cni-1"}),
            ],
            ..crate::spec::Linux::default()
        });
        let p = plan("c", Path::new("/b"), &s, &options, None).unwrap();
        assert_eq!(p.pod_network, None, "ignored without the annotation");
        s.annotations
            .insert(annotations::NETWORK.into(), network::POD.into());
        let p = plan("c", Path::new("/b"), &s, &options, None).unwrap();
        assert_eq!(p.pod_network, Some(PathBuf::from("/var/run/netns/cni-1")));
        s.annotations
            .insert(annotations::NETWORK.into(), "bridge".into());
        assert!(plan("c", Path::new("/b"), &s, &options, None).is_err());
    }

    fn with_rlimits(limits: serde_json::Value) -> Spec {
        let mut s = spec();
        if let Some(process) = s.process.as_mut() {
            process.rlimits = serde_json::from_value(limits).unwrap();
        }
        s
    }

    #[test]
    fn an_unknown_rlimit_is_refused_when_planned_on_linux() {
        let s = with_rlimits(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
            {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}
        ]));
        let planned = plan("c", Path::new("/b"), &s, &PlanOptions::new("/r"), None);
        if cfg!(windows) {
            // Limits do not apply to a Windows process: none is planned, none refused.
            assert_eq!(planned.unwrap().process.rlimits, Vec::new());
        } else {
            assert_eq!(
                planned.unwrap_err().to_string(),
                "invalid spec: process.rlimits: unknown limit \"RLIMIT_BOGUS\""
            );
        }
    }

    #[test]
    fn known_rlimits_are_planned_as_typed_limits_on_linux() {
        let s = with_rlimits(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]));
        let planned = plan("c", Path::new("/b"), &s, &PlanOptions::new("/r"), None).unwrap();
        let expected = if cfg!(windows) {
            Vec::new()
        } else {
            use rlimits::{Rlimit, RlimitKind};
            vec![
                Rlimit {
                    kind: RlimitKind::Nofile,
                    soft: 10,
                    hard: 20,
                },
                Rlimit {
                    kind: RlimitKind::Core,
                    soft: 0,
                    hard: 0,
                },
            ]
        };
        assert_eq!(planned.process.rlimits, expected);
    }

    #[test]
    fn unknown_layout_annotation_is_refused() {
        let mut s = spec();
        s.annotations
            .insert(annotations::VOLUME_LAYOUT.into(), "overlay".into());
        assert!(plan("c", Path::new("/b"), &s, &PlanOptions::new("/r"), None).is_err());
    }
}
