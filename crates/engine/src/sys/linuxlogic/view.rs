//! The container volume and the container's view of the filesystem (§2) as data: what the
//! volume is made of ([`VolumeRecord`], named before anything is made), and the ordered mount
//! actions that build the view ([`plan_view`]), which `sys::linux::volume` executes.
//!
//! The volume is an overlay: the image read-only below, a fresh upper directory per container
//! (or the image itself, bound, when nothing is ever written or mounted in it). Bind layout:
//! the mount sources are opened in the host's view, then a new mount namespace gets the volume
//! at its mount point and each mount at its destination. Symlink layout: the volume is mounted
//! at a host path unique to the container, and each mount is reached through a symlink inside
//! it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::mounts::relative_components;
use crate::plan::{ContainerPlan, ImageSource, Layout, Propagation, VolumeMount, VolumePlan};

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
    /// Bind layout with mounts: the layer that holds the compatibility links, below the
    /// writable one (removed on delete). Absent from the records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<PathBuf>,
}

/// Names the volume's parts (nothing is made).
pub fn plan_record(plan: &ContainerPlan, state_dir: &Path) -> VolumeRecord {
    record_for(&plan.volume, &plan.mounts, state_dir)
}

/// The volume's parts for a volume plan and the mounts added to it; the namespace pin and the
/// scratch layer go in the container's state directory.
pub fn record_for(volume: &VolumePlan, mounts: &[VolumeMount], state_dir: &Path) -> VolumeRecord {
    let owns_scratch = !gives_upper(&volume.image) && !is_the_image_itself(volume, mounts);
    VolumeRecord {
        mount_point: volume.mount_point.clone(),
        ns_pin: (volume.layout == Layout::Bind).then(|| state_dir.join("mntns")),
        host_mount: (volume.layout == Layout::Symlink).then(|| volume.mount_point.clone()),
        scratch: owns_scratch.then(|| state_dir.join("volume")),
        links: (volume.layout == Layout::Bind && !mounts.is_empty())
            .then(|| state_dir.join("links")),
    }
}

/// The image's directories, top first.
pub fn lower_dirs(image: &ImageSource) -> Vec<PathBuf> {
    match image {
        ImageSource::Directory(dir) => vec![dir.clone()],
        ImageSource::Layers { lower, .. } => lower.clone(),
    }
}

/// A read-only volume that nothing is added to (no mount, so no mount point in it) and that
/// has no writable layer of its own is the image itself: bound read-only (one layer) or
/// stacked read-only (several), with no scratch layer to make, probe and remove.
pub fn is_the_image_itself(volume: &VolumePlan, mounts: &[VolumeMount]) -> bool {
    volume.read_only && mounts.is_empty() && !gives_upper(&volume.image)
}

/// Whether containerd gave the image a writable layer of its own.
pub fn gives_upper(image: &ImageSource) -> bool {
    matches!(image, ImageSource::Layers { upper: Some(_), .. })
}

/// How the image becomes the volume. Either way the image's setuid programs and device nodes
/// grant nothing (§4): a container's privileges are its account's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageMount {
    /// The image's one directory, bound with the mounts below it.
    Bind { image: PathBuf },
    /// An overlay of the image's layers; without a writable layer, a read-only stack.
    Overlay {
        lower: Vec<PathBuf>,
        writable: Option<Writable>,
    },
}

/// The writable layer of an overlay volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The runtime's own scratch directory, new, that holds `upper` and `work`: the three are
    /// made before the mount.
    pub scratch: Option<PathBuf>,
    /// The container's account (uid, gid), given the upper directory so that the volume is
    /// writable by it, as a fresh workspace should be.
    pub owner: (u32, u32),
    /// Only the owner enters the upper directory: in the symlink layout it is the volume's top
    /// directory, on a host path any user can name.
    pub private: bool,
}

impl ImageMount {
    /// The overlay's mount data (`lowerdir=…[,upperdir=…,workdir=…]`); None for a bind.
    pub fn overlay_data(&self) -> Option<String> {
        let ImageMount::Overlay { lower, writable } = self else {
            return None;
        };
        let lowerdir = lower
            .iter()
            .map(|l| escape_overlay_path(l))
            .collect::<Vec<_>>()
            .join(":");
        Some(match writable {
            None => format!("lowerdir={lowerdir}"),
            Some(w) => format!(
                "lowerdir={lowerdir},upperdir={},workdir={}",
                escape_overlay_path(&w.upper),
                escape_overlay_path(&w.work)
            ),
        })
    }
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

/// Where a mount's source is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachAt {
    /// The destination's path, inside the volume (made by the action before).
    Volume,
    /// The host mount point, opened by the walk that follows no symlink another user could
    /// have planted (made, when missing, while the sources were opened on the host).
    Host,
}

/// A mount's propagation, where the clone of its source does not have it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangePropagation {
    Slave,
    Private,
}

/// One step of building the view, in the order they are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewAction {
    /// Make the volume's mount point on the host (mode 0755), following no symlink another
    /// user could change.
    MakeMountPoint { path: PathBuf },
    /// Make the layer of compatibility links the overlay mounted next has as its top lower
    /// layer.
    MakeLinkLayer(LinkLayer),
    /// Mount the image as the volume at `at`.
    MountImage { image: ImageMount, at: PathBuf },
    /// Make a directory and its parents inside the volume, following no symlink.
    MakeDirInVolume { volume: PathBuf, path: PathBuf },
    /// Attach the clone of the source of the plan's mount `index` (opened on the host) at its
    /// destination.
    Attach {
        index: usize,
        destination: PathBuf,
        at: AttachAt,
    },
    /// Set the propagation of the mount at `path` and of the mounts below it.
    SetPropagation {
        path: PathBuf,
        propagation: ChangePropagation,
    },
    /// Make the mount at `path` and every mount below it read-only.
    ReadOnly { path: PathBuf },
    /// Make `$CONTAINER_SANDBOX_MOUNT_POINT/<destination>` reach `target`: a symlink to it, or,
    /// where the image has that path already, a bind mount of `target` over it (read-only
    /// with `read_only`). No image symlink is ever followed on the way.
    Reach {
        volume: PathBuf,
        destination: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
}

/// A mount source to open in the host's view before the view's namespace gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    pub source: PathBuf,
    /// A destination outside the volume: its mount point is made on the host when missing.
    pub host_mount_point: Option<PathBuf>,
}

/// How the view is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewPlan {
    /// Symlink layout: the actions run in the host's mount namespace.
    Host { actions: Vec<ViewAction> },
    /// Bind layout: `sources` (one per mount of the plan, in order) are opened in the host's
    /// view, the actions run in a new mount namespace, a slave of the host's, and the
    /// namespace is pinned at `pin`.
    Namespace {
        pin: PathBuf,
        sources: Vec<HostSource>,
        actions: Vec<ViewAction>,
    },
}

/// The view of the container `plan` describes, with the volume `record` names; `owner` is the
/// container's account (uid, gid). Nothing is made.
pub fn plan_view(
    plan: &ContainerPlan,
    record: &VolumeRecord,
    owner: (u32, u32),
) -> Result<ViewPlan> {
    view_for(&plan.id, &plan.volume, &plan.mounts, record, owner)
}

/// [`plan_view`] for the container `id`'s volume plan and mounts.
pub fn view_for(
    id: &str,
    volume: &VolumePlan,
    mounts: &[VolumeMount],
    record: &VolumeRecord,
    owner: (u32, u32),
) -> Result<ViewPlan> {
    let mount_point = &volume.mount_point;
    let image = image_mount(id, volume, mounts, record, owner)?;
    let mut actions = Vec::new();
    match volume.layout {
        Layout::Symlink => {
            // The host path was made by the symlink layout's own step before.
            actions.push(ViewAction::MountImage {
                image,
                at: mount_point.clone(),
            });
            for m in mounts {
                actions.push(ViewAction::Reach {
                    volume: mount_point.clone(),
                    destination: m.destination.clone(),
                    target: m.source.clone(),
                    read_only: m.read_only,
                });
            }
            if volume.read_only {
                actions.push(ViewAction::ReadOnly {
                    path: mount_point.clone(),
                });
            }
            Ok(ViewPlan::Host { actions })
        }
        Layout::Bind => {
            let pin = record
                .ns_pin
                .clone()
                .ok_or_else(|| Error::container(id, "bind layout without a namespace pin"))?;
            let mut sources = Vec::new();
            // Made on the host (the file systems are shared), never through a user's symlink.
            actions.push(ViewAction::MakeMountPoint {
                path: mount_point.clone(),
            });
            actions.push(ViewAction::MountImage {
                image,
                at: mount_point.clone(),
            });
            for (index, m) in mounts.iter().enumerate() {
                let in_volume = m.destination.starts_with(mount_point);
                sources.push(HostSource {
                    source: m.source.clone(),
                    host_mount_point: (!in_volume).then(|| m.destination.clone()),
                });
                if in_volume {
                    actions.push(ViewAction::MakeDirInVolume {
                        volume: mount_point.clone(),
                        path: m.destination.clone(),
                    });
                }
                actions.push(ViewAction::Attach {
                    index,
                    destination: m.destination.clone(),
                    at: if in_volume {
                        AttachAt::Volume
                    } else {
                        AttachAt::Host
                    },
                });
                let propagation = match m.propagation {
                    // The clone is already in its source's peer group.
                    Propagation::Shared => None,
                    Propagation::Slave => Some(ChangePropagation::Slave),
                    Propagation::Private => Some(ChangePropagation::Private),
                };
                if let Some(propagation) = propagation {
                    actions.push(ViewAction::SetPropagation {
                        path: m.destination.clone(),
                        propagation,
                    });
                }
                if m.read_only {
                    actions.push(ViewAction::ReadOnly {
                        path: m.destination.clone(),
                    });
                }
                if !in_volume {
                    actions.push(ViewAction::Reach {
                        volume: mount_point.clone(),
                        destination: m.destination.clone(),
                        target: m.destination.clone(),
                        read_only: m.read_only,
                    });
                }
            }
            if volume.read_only {
                actions.push(ViewAction::ReadOnly {
                    path: mount_point.clone(),
                });
            }
            Ok(ViewPlan::Namespace {
                pin,
                sources,
                actions,
            })
        }
    }
}

/// A bind-layout view's actions split in two: what the container's process needs before it
/// can be prepared, and the compatibility links into the volume (`Reach`, with the volume made
/// read-only after them), which can be made while it is. The split is made only where it
/// changes nothing the actions do (`links_are_independent`). Otherwise everything is `now`.
pub fn defer_links(
    actions: Vec<ViewAction>,
    mount_point: &Path,
) -> (Vec<ViewAction>, Vec<ViewAction>) {
    if !links_are_independent(&actions, mount_point)
        || !actions
            .iter()
            .any(|a| matches!(a, ViewAction::Reach { .. }))
    {
        return (actions, Vec::new());
    }
    actions.into_iter().partition(|action| match action {
        ViewAction::Reach { .. } => false,
        ViewAction::ReadOnly { path } => path != mount_point,
        _ => true,
    })
}

/// Whether the compatibility links can be made at another point of the view's building than
/// after each mount, with the same result: no mount inside the volume (an attach there would
/// cover a link, or receive it) and none at or above the volume's mount point (its
/// propagation or read-only setting would reach the links).
fn links_are_independent(actions: &[ViewAction], mount_point: &Path) -> bool {
    actions.iter().all(|action| match action {
        ViewAction::MakeDirInVolume { .. } => false,
        ViewAction::Attach {
            at: AttachAt::Volume,
            ..
        } => false,
        ViewAction::Attach { destination, .. }
        | ViewAction::SetPropagation {
            path: destination, ..
        } => !mount_point.starts_with(destination),
        ViewAction::ReadOnly { path } => path == mount_point || !mount_point.starts_with(path),
        _ => true,
    })
}

/// What the image has at a path inside the volume: the entry of the topmost layer that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InImage {
    Absent,
    Directory(DirAttrs),
    /// Anything else, or a path that cannot be looked at.
    Other,
}

/// A directory's owner and permission bits (with setuid, setgid and sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A read-only layer made before the overlay is mounted, on top of the image's layers, that
/// holds the compatibility links, so that making them writes nothing to the writable layer
/// (which is containerd's, on its disk: each link there took a copy-up of its directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLayer {
    pub dir: PathBuf,
    /// The directories on the way to the links, parents first, relative to `dir`: with the
    /// image's owner and mode where the image has them (the overlay shows the topmost layer's),
    /// else made as the links' walk makes a missing directory.
    pub dirs: Vec<(PathBuf, Option<DirAttrs>)>,
    /// Each link (relative to `dir`) and its target.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// Moves the compatibility links the image leaves room for into a link layer at `dir`: its
/// making goes before the overlay's mount, which gets it as its top lower layer. A link goes
/// there when the image has nothing at its path and only directories on the way
/// (`in_image` answers for a path relative to the volume); its `Reach` stays, and finds it
/// made (or, where the writable layer already has that path, does what it always did). Done
/// only where the links may be made at any point (`links_are_independent`), no link's path
/// is on the way to another's, and the volume is an overlay with a writable layer.
pub fn layer_links(
    mut actions: Vec<ViewAction>,
    mount_point: &Path,
    dir: &Path,
    in_image: impl Fn(&Path) -> InImage,
) -> Vec<ViewAction> {
    let overlay = actions.iter().position(|action| {
        matches!(action, ViewAction::MountImage {
            image: ImageMount::Overlay { writable: Some(_), .. },
            at,
        } if at == mount_point)
    });
    let Some(overlay) = overlay.filter(|_| links_are_independent(&actions, mount_point)) else {
        return actions;
    };
    let reached: Vec<(Vec<String>, &PathBuf)> = actions
        .iter()
        .filter_map(|action| match action {
            ViewAction::Reach {
                volume,
                destination,
                target,
                ..
            } if volume == mount_point => Some((relative_components(destination), target)),
            _ => None,
        })
        .collect();
    let nested = reached.iter().enumerate().any(|(i, (a, _))| {
        a.is_empty()
            || reached
                .iter()
                .enumerate()
                .any(|(j, (b, _))| i != j && b.starts_with(a))
    });
    if nested {
        return actions;
    }
    let mut layer = LinkLayer {
        dir: dir.to_path_buf(),
        dirs: Vec::new(),
        links: Vec::new(),
    };
    // Links share their directories (`/etc` for three of the CRI's): each path of the image is
    // looked at once, on the way to the builder's start.
    let mut probed: Vec<(PathBuf, InImage)> = Vec::new();
    let mut look = |path: &Path| match probed.iter().find(|(p, _)| p == path) {
        Some((_, found)) => *found,
        None => {
            let found = in_image(path);
            probed.push((path.to_path_buf(), found));
            found
        }
    };
    for (parts, target) in &reached {
        // Joined with `/` as the paths of the Linux host are, whichever host runs this logic.
        let prefix = |depth: usize| PathBuf::from(parts[..depth].join("/"));
        let mut on_the_way = Vec::new();
        let room = (1..parts.len()).all(|depth| {
            let path = prefix(depth);
            let attrs = match look(&path) {
                InImage::Absent => None,
                InImage::Directory(attrs) => Some(attrs),
                InImage::Other => return false,
            };
            on_the_way.push((path, attrs));
            true
        });
        let path = prefix(parts.len());
        if !room || look(&path) != InImage::Absent {
            continue;
        }
        for made in on_the_way {
            if !layer.dirs.iter().any(|(p, _)| *p == made.0) {
                layer.dirs.push(made);
            }
        }
        layer.links.push((path, (*target).clone()));
    }
    if layer.links.is_empty() {
        return actions;
    }
    if let ViewAction::MountImage {
        image: ImageMount::Overlay { lower, .. },
        ..
    } = &mut actions[overlay]
    {
        lower.insert(0, layer.dir.clone());
    }
    actions.insert(overlay, ViewAction::MakeLinkLayer(layer));
    actions
}

/// The image as the volume: bound when it is the volume itself and one directory, else an
/// overlay whose writable layer is containerd's or, failing that, the runtime's scratch
/// directory. A read-only volume still gets a writable layer when mounts are added, so that
/// the compatibility links can be made; it is made read-only once the view is complete.
fn image_mount(
    id: &str,
    volume: &VolumePlan,
    mounts: &[VolumeMount],
    record: &VolumeRecord,
    owner: (u32, u32),
) -> Result<ImageMount> {
    let lower = lower_dirs(&volume.image);
    if is_the_image_itself(volume, mounts) {
        if let [image] = lower.as_slice() {
            return Ok(ImageMount::Bind {
                image: image.clone(),
            });
        }
        return Ok(ImageMount::Overlay {
            lower,
            writable: None,
        });
    }
    let given = match &volume.image {
        ImageSource::Layers {
            upper: Some(upper),
            work: Some(work),
            ..
        } => Some((upper.clone(), work.clone())),
        _ => None,
    };
    let (upper, work, scratch) = match (given, &record.scratch) {
        (Some((upper, work)), _) => (upper, work, None),
        (None, Some(scratch)) => (
            scratch.join("upper"),
            scratch.join("work"),
            Some(scratch.clone()),
        ),
        (None, None) => {
            return Err(Error::container(
                id,
                "the image gives no upper layer and no scratch directory was planned",
            ))
        }
    };
    Ok(ImageMount::Overlay {
        lower,
        writable: Some(Writable {
            upper,
            work,
            scratch,
            owner,
            private: volume.layout == Layout::Symlink,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, destination: &str, read_only: bool, p: Propagation) -> VolumeMount {
        VolumeMount {
            source: source.into(),
            destination: destination.into(),
            read_only,
            propagation: p,
        }
    }

    fn volume(layout: Layout, image: ImageSource, read_only: bool) -> VolumePlan {
        VolumePlan {
            layout,
            mount_point: "/c/vol".into(),
            image,
            read_only,
        }
    }

    fn record(volume: &VolumePlan, mounts: &[VolumeMount]) -> VolumeRecord {
        record_for(volume, mounts, Path::new("/state"))
    }

    fn view(volume: VolumePlan, mounts: Vec<VolumeMount>) -> Result<ViewPlan> {
        let record = record(&volume, &mounts);
        view_for("c1", &volume, &mounts, &record, (1000, 1001))
    }

    fn image() -> ImageSource {
        ImageSource::Directory("/img".into())
    }

    fn scratch_overlay(private: bool) -> ImageMount {
        ImageMount::Overlay {
            lower: vec!["/img".into()],
            writable: Some(Writable {
                upper: "/state/volume/upper".into(),
                work: "/state/volume/work".into(),
                scratch: Some("/state/volume".into()),
                owner: (1000, 1001),
                private,
            }),
        }
    }

    #[test]
    fn a_bind_view_mounts_the_volume_then_each_mount_in_order_then_makes_it_read_only() {
        let plan = view(
            volume(Layout::Bind, image(), true),
            vec![
                mount("/src/a", "/c/vol/in/a", false, Propagation::Private),
                mount("/src/b", "/host/b", true, Propagation::Shared),
                mount("/src/c", "/host/c", false, Propagation::Slave),
            ],
        )
        .expect("a view");
        let ViewPlan::Namespace {
            pin,
            sources,
            actions,
        } = plan
        else {
            panic!("the bind layout builds a namespace: {plan:?}");
        };
        assert_eq!(pin, Path::new("/state/mntns"));
        assert_eq!(
            sources,
            [
                HostSource {
                    source: "/src/a".into(),
                    host_mount_point: None
                },
                HostSource {
                    source: "/src/b".into(),
                    host_mount_point: Some("/host/b".into())
                },
                HostSource {
                    source: "/src/c".into(),
                    host_mount_point: Some("/host/c".into())
                },
            ],
            "a mount point outside the volume is made on the host"
        );
        use ViewAction::*;
        let vol = PathBuf::from("/c/vol");
        assert_eq!(
            actions,
            [
                MakeMountPoint { path: vol.clone() },
                MountImage {
                    image: scratch_overlay(false),
                    at: vol.clone()
                },
                MakeDirInVolume {
                    volume: vol.clone(),
                    path: "/c/vol/in/a".into()
                },
                Attach {
                    index: 0,
                    destination: "/c/vol/in/a".into(),
                    at: AttachAt::Volume
                },
                SetPropagation {
                    path: "/c/vol/in/a".into(),
                    propagation: ChangePropagation::Private
                },
                Attach {
                    index: 1,
                    destination: "/host/b".into(),
                    at: AttachAt::Host
                },
                ReadOnly {
                    path: "/host/b".into()
                },
                Reach {
                    volume: vol.clone(),
                    destination: "/host/b".into(),
                    target: "/host/b".into(),
                    read_only: true
                },
                Attach {
                    index: 2,
                    destination: "/host/c".into(),
                    at: AttachAt::Host
                },
                SetPropagation {
                    path: "/host/c".into(),
                    propagation: ChangePropagation::Slave
                },
                Reach {
                    volume: vol.clone(),
                    destination: "/host/c".into(),
                    target: "/host/c".into(),
                    read_only: false
                },
                ReadOnly { path: vol },
            ]
        );
    }

    fn actions_of(plan: ViewPlan) -> Vec<ViewAction> {
        match plan {
            ViewPlan::Namespace { actions, .. } => actions,
            ViewPlan::Host { .. } => panic!("not a bind view"),
        }
    }

    fn is_link(action: &ViewAction) -> bool {
        matches!(action, ViewAction::Reach { .. })
    }

    #[test]
    fn a_views_links_are_deferred_when_no_mount_is_in_or_above_the_volume() {
        let mounts = vec![
            mount("/s/hosts", "/etc/hosts", false, Propagation::Private),
            mount("/s/log", "/dev/termination-log", true, Propagation::Slave),
        ];
        for read_only in [false, true] {
            let all =
                actions_of(view(volume(Layout::Bind, image(), read_only), mounts.clone()).unwrap());
            let (now, later) = defer_links(all.clone(), Path::new("/c/vol"));
            assert!(now.iter().all(|a| !is_link(a)), "{now:#?}");
            assert_eq!(later.iter().filter(|a| is_link(a)).count(), 2, "{later:#?}");
            // Each part keeps the plan's order; the volume is made read-only after its links.
            let in_order = |part: &[ViewAction]| {
                let mut rest = all.iter();
                part.iter().all(|a| rest.any(|b| b == a))
            };
            assert!(in_order(&now) && in_order(&later));
            let volume_read_only = ViewAction::ReadOnly {
                path: "/c/vol".into(),
            };
            assert_eq!(
                later.last() == Some(&volume_read_only),
                read_only,
                "{later:#?}"
            );
            assert!(!now.contains(&volume_read_only));
            assert_eq!(now.len() + later.len(), all.len());
        }
    }

    #[test]
    fn a_views_links_stay_in_place_when_a_mount_is_in_or_above_the_volume() {
        for (destination, why) in [
            ("/c/vol/data", "a mount inside the volume"),
            ("/c", "a mount above the volume"),
        ] {
            let mounts = vec![
                mount("/s/hosts", "/etc/hosts", false, Propagation::Private),
                mount("/s/data", destination, false, Propagation::Private),
            ];
            let all = actions_of(view(volume(Layout::Bind, image(), false), mounts).unwrap());
            let (now, later) = defer_links(all.clone(), Path::new("/c/vol"));
            assert_eq!(now, all, "{why}");
            assert!(later.is_empty(), "{why}");
        }
    }

    #[test]
    fn a_symlink_view_reaches_each_source_from_the_volume_on_the_host() {
        let plan = view(
            volume(Layout::Symlink, image(), false),
            vec![
                mount("/src/a", "/host/a", true, Propagation::Slave),
                mount("/src/b", "/c/vol/b", false, Propagation::Private),
            ],
        )
        .expect("a view");
        let vol = PathBuf::from("/c/vol");
        assert_eq!(
            plan,
            ViewPlan::Host {
                actions: vec![
                    ViewAction::MountImage {
                        image: scratch_overlay(true),
                        at: vol.clone()
                    },
                    ViewAction::Reach {
                        volume: vol.clone(),
                        destination: "/host/a".into(),
                        target: "/src/a".into(),
                        read_only: true
                    },
                    ViewAction::Reach {
                        volume: vol,
                        destination: "/c/vol/b".into(),
                        target: "/src/b".into(),
                        read_only: false
                    },
                ]
            },
            "no namespace, no propagation: the symlinks lead to the sources themselves"
        );
    }

    #[test]
    fn a_read_only_volume_with_nothing_added_is_the_image_itself() {
        let actions = |plan: ViewPlan| match plan {
            ViewPlan::Host { actions } | ViewPlan::Namespace { actions, .. } => actions,
        };
        let bound = actions(view(volume(Layout::Bind, image(), true), vec![]).unwrap());
        assert_eq!(
            bound[1],
            ViewAction::MountImage {
                image: ImageMount::Bind {
                    image: "/img".into()
                },
                at: "/c/vol".into()
            }
        );
        let layers = ImageSource::Layers {
            lower: vec!["/l1".into(), "/l2".into()],
            upper: None,
            work: None,
        };
        let stacked = actions(view(volume(Layout::Symlink, layers, true), vec![]).unwrap());
        let ViewAction::MountImage { image, .. } = &stacked[0] else {
            panic!("{stacked:?}");
        };
        assert_eq!(
            image.overlay_data().as_deref(),
            Some("lowerdir=/l1:/l2"),
            "several layers are stacked read-only, with no scratch layer"
        );
    }

    #[test]
    fn containerds_writable_layer_is_used_and_paths_are_escaped_for_overlayfs() {
        let layers = ImageSource::Layers {
            lower: vec!["/l:1".into(), "/l,2".into()],
            upper: Some("/snap/up\\per".into()),
            work: Some("/snap/work".into()),
        };
        let plan = view(volume(Layout::Bind, layers, false), vec![]).unwrap();
        let ViewPlan::Namespace { actions, .. } = plan else {
            panic!("{plan:?}");
        };
        let ViewAction::MountImage { image, .. } = &actions[1] else {
            panic!("{actions:?}");
        };
        let ImageMount::Overlay {
            writable: Some(writable),
            ..
        } = image
        else {
            panic!("{image:?}");
        };
        assert_eq!(
            writable.scratch, None,
            "containerd's layer, nothing to make"
        );
        assert_eq!(writable.owner, (1000, 1001));
        assert!(!writable.private);
        assert_eq!(
            image.overlay_data().as_deref(),
            Some("lowerdir=/l\\:1:/l\\,2,upperdir=/snap/up\\\\per,workdir=/snap/work")
        );
    }

    #[test]
    fn a_view_that_cannot_be_built_is_refused_before_anything_is_made() {
        let no_work = ImageSource::Layers {
            lower: vec!["/l".into()],
            upper: Some("/snap/upper".into()),
            work: None,
        };
        let v = volume(Layout::Symlink, no_work, false);
        let no_scratch = record(&v, &[]);
        assert_eq!(no_scratch.scratch, None);
        let err = view_for("c1", &v, &[], &no_scratch, (0, 0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no upper layer and no scratch directory"),
            "{err}"
        );

        let v = volume(Layout::Bind, image(), false);
        let no_pin = VolumeRecord {
            ns_pin: None,
            ..record(&v, &[])
        };
        let err = view_for("c1", &v, &[], &no_pin, (0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a namespace pin"), "{err}");
    }

    #[test]
    fn the_record_names_a_scratch_layer_only_when_the_runtime_makes_one() {
        let a_mount = [mount("/src", "/host/x", false, Propagation::Private)];
        let bind = record(&volume(Layout::Bind, image(), false), &[]);
        assert_eq!(
            bind,
            VolumeRecord {
                mount_point: "/c/vol".into(),
                ns_pin: Some("/state/mntns".into()),
                host_mount: None,
                scratch: Some("/state/volume".into()),
                links: None,
            }
        );
        let with_a_mount = record(&volume(Layout::Bind, image(), false), &a_mount);
        assert_eq!(with_a_mount.links, Some("/state/links".into()));
        let symlink = record(&volume(Layout::Symlink, image(), true), &a_mount);
        assert_eq!(symlink.host_mount, Some("/c/vol".into()));
        assert_eq!(symlink.ns_pin, None);
        assert_eq!(
            symlink.links, None,
            "the symlink layout's links are on the host"
        );
        assert_eq!(
            symlink.scratch,
            Some("/state/volume".into()),
            "a read-only volume with a mount gets a layer for its links"
        );
        let image_itself = record(&volume(Layout::Bind, image(), true), &[]);
        assert_eq!(image_itself.scratch, None, "nothing is written");
        let containerds = ImageSource::Layers {
            lower: vec!["/l".into()],
            upper: Some("/snap/upper".into()),
            work: Some("/snap/work".into()),
        };
        let given = record(&volume(Layout::Bind, containerds, false), &a_mount);
        assert_eq!(given.scratch, None, "containerd's layer is used");
    }

    /// The image as `layer_links` sees it: `/etc` a directory (owner 7, mode 0750), `/etc/hosts`
    /// a file, `/bin` a symlink.
    fn busybox_like(path: &Path) -> InImage {
        match path.to_str().unwrap() {
            "etc" => InImage::Directory(DirAttrs {
                mode: 0o750,
                uid: 7,
                gid: 8,
            }),
            "etc/hosts" | "bin" => InImage::Other,
            _ => InImage::Absent,
        }
    }

    fn bind_view(mounts: Vec<VolumeMount>) -> Vec<ViewAction> {
        actions_of(view(volume(Layout::Bind, image(), false), mounts).unwrap())
    }

    #[test]
    fn links_the_image_leaves_room_for_go_in_a_layer_on_top_of_it() {
        let all = bind_view(vec![
            mount("/s/resolv", "/etc/resolv.conf", false, Propagation::Private),
            mount("/s/hosts", "/etc/hosts", false, Propagation::Private),
            mount("/s/log", "/dev/termination-log", true, Propagation::Private),
            mount("/s/tool", "/bin/tool", false, Propagation::Private),
        ]);
        let vol = Path::new("/c/vol");
        let layered = layer_links(all.clone(), vol, Path::new("/state/links"), busybox_like);
        assert_eq!(
            layered.len(),
            all.len() + 1,
            "one action more: {layered:#?}"
        );
        let at = layered
            .iter()
            .position(|a| matches!(a, ViewAction::MakeLinkLayer(_)))
            .expect("the layer is made");
        let ViewAction::MakeLinkLayer(layer) = &layered[at] else {
            unreachable!()
        };
        assert_eq!(
            *layer,
            LinkLayer {
                dir: "/state/links".into(),
                dirs: vec![
                    (
                        "etc".into(),
                        Some(DirAttrs {
                            mode: 0o750,
                            uid: 7,
                            gid: 8
                        })
                    ),
                    ("dev".into(), None),
                ],
                links: vec![
                    ("etc/resolv.conf".into(), "/etc/resolv.conf".into()),
                    ("dev/termination-log".into(), "/dev/termination-log".into()),
                ],
            },
            "the image's file (/etc/hosts) and a path through its symlink (/bin) are left to \
             their Reach; a directory of the image keeps its owner and mode"
        );
        let ViewAction::MountImage {
            image: ImageMount::Overlay { lower, writable },
            ..
        } = &layered[at + 1]
        else {
            panic!("the overlay is mounted right after: {layered:#?}");
        };
        assert_eq!(
            *lower,
            [PathBuf::from("/state/links"), PathBuf::from("/img")],
            "the layer is the top lower layer"
        );
        assert!(writable.is_some(), "the writable layer stays");
        let reaches = |actions: &[ViewAction]| actions.iter().filter(|a| is_link(a)).count();
        assert_eq!(
            reaches(&layered),
            4,
            "every Reach stays, and checks its link"
        );
    }

    #[test]
    fn each_path_of_the_image_is_looked_at_once() {
        let all = bind_view(vec![
            mount("/s/hosts", "/etc/hosts.pod", false, Propagation::Private),
            mount("/s/name", "/etc/hostname", false, Propagation::Private),
            mount("/s/resolv", "/etc/resolv.conf", false, Propagation::Private),
        ]);
        let looked = std::cell::RefCell::new(Vec::new());
        let layered = layer_links(all, Path::new("/c/vol"), Path::new("/state/links"), |p| {
            looked.borrow_mut().push(p.to_path_buf());
            busybox_like(p)
        });
        assert!(layered
            .iter()
            .any(|a| matches!(a, ViewAction::MakeLinkLayer(l) if l.links.len() == 3)));
        let looked = looked.into_inner();
        assert_eq!(
            looked.iter().filter(|p| *p == Path::new("etc")).count(),
            1,
            "{looked:?}"
        );
        assert_eq!(looked.len(), 4, "/etc and each link's path: {looked:?}");
    }

    #[test]
    fn no_link_layer_where_the_links_depend_on_their_place_or_on_each_other() {
        let vol = Path::new("/c/vol");
        let dir = Path::new("/state/links");
        let cases = [
            (
                vec![
                    mount("/s/hosts", "/etc/hosts", false, Propagation::Private),
                    mount("/s/data", "/c/vol/data", false, Propagation::Private),
                ],
                "a mount inside the volume",
            ),
            (
                vec![
                    mount("/s/a", "/opt/a", false, Propagation::Private),
                    mount("/s/b", "/opt/a/b", false, Propagation::Private),
                ],
                "one link's path on the way to another's",
            ),
            (
                vec![mount("/s/hosts", "/etc/hosts", false, Propagation::Private)],
                "the image has the only link's path",
            ),
        ];
        for (mounts, why) in cases {
            let all = bind_view(mounts);
            assert_eq!(
                layer_links(all.clone(), vol, dir, busybox_like),
                all,
                "{why}"
            );
        }
        let bound = actions_of(view(volume(Layout::Bind, image(), true), vec![]).unwrap());
        assert_eq!(
            layer_links(bound.clone(), vol, dir, busybox_like),
            bound,
            "no links, no layer"
        );
    }

    #[test]
    fn a_layered_views_links_are_still_deferred_and_the_layer_is_made_first() {
        let all = bind_view(vec![mount(
            "/s/resolv",
            "/etc/resolv.conf",
            false,
            Propagation::Private,
        )]);
        let layered = layer_links(
            all,
            Path::new("/c/vol"),
            Path::new("/state/links"),
            busybox_like,
        );
        let (now, later) = defer_links(layered, Path::new("/c/vol"));
        assert!(matches!(now[1], ViewAction::MakeLinkLayer(_)), "{now:#?}");
        assert!(later.iter().all(is_link) && later.len() == 1, "{later:#?}");
    }
}
