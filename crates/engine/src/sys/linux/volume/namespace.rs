//! A bind-layout view is built in a new mount namespace, a slave of the host's, by a thread of
//! its own (`unshare` moves only the calling thread), while the caller opens the mounts'
//! sources on the host and goes on with its own work (the job's cgroups). The namespace is kept
//! alive by a bind mount of its nsfs file in the state directory, which every process of the
//! container joins with `setns`. For an init held until `start`, where the plan allows it
//! (`linuxlogic::view::defer_links`), the view is pinned before its compatibility links into
//! the volume are made, so that the caller prepares init while the builder makes them; the
//! builder then resolves the process again in the complete view. Where the image leaves room
//! for them (`linuxlogic::view::layer_links`), the links are made before the overlay's mount,
//! in a layer of their own, and the builder only finds them there.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::thread::{Scope, ScopedJoinHandle};

use nix::mount::{mount, MsFlags};

use super::mounts::{execute, open_source};
use super::walk::ensure_host_mount_point;
use super::{sys_err, VolumeRecord};
use crate::error::{Error, Result};
use crate::plan::ContainerPlan;
use crate::sys::linuxlogic::view::{
    defer_links, layer_links, lower_dirs, plan_view, DirAttrs, HostSource, InImage, ViewAction,
    ViewPlan,
};

/// A container's view on its way: started by [`View::start`], completed by [`View::finish`].
pub struct View<'scope, 'env, T, F> {
    id: &'env str,
    building: Building<'scope, T, F>,
}

enum Building<'scope, T, F> {
    /// Symlink layout: built by [`View::finish`] in the host's namespace, then `inside` runs.
    Later { actions: Vec<ViewAction>, inside: F },
    /// Bind layout: a thread builds it meanwhile, runs `inside` in it and hands back a
    /// descriptor of its namespace (which keeps the namespace alive until it is pinned). With
    /// links deferred, `first` brings that descriptor and `inside`'s answer before the links,
    /// and the builder gives back only its answer in the complete view.
    Meanwhile {
        pin: PathBuf,
        builder: ScopedJoinHandle<'scope, Result<(Option<OwnedFd>, T)>>,
        first: Option<Receiver<(OwnedFd, Result<T>)>>,
    },
}

/// Where `inside` runs: in the complete view, or before the links into the volume are made
/// (then an error only means that the caller waits for the complete view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeLinks,
    Complete,
}

/// A view [`View::finish`] has pinned.
pub enum Ready<'scope, T> {
    /// Complete: what `inside` gave in it.
    Complete(T),
    /// Its links into the volume are being made: `first` is what `inside` gave before them,
    /// and [`Links::join`] gives what it gives in the complete view.
    Links { first: T, rest: Links<'scope, T> },
}

/// The builder of a view making its links.
pub struct Links<'scope, T> {
    id: String,
    builder: ScopedJoinHandle<'scope, Result<(Option<OwnedFd>, T)>>,
}

impl<T> Links<'_, T> {
    /// Waits for the links; what `inside` gave in the complete view.
    pub fn join(self) -> Result<T> {
        let (_, complete) = self
            .builder
            .join()
            .map_err(|_| Error::container(&self.id, "the view builder stopped"))??;
        Ok(complete)
    }
}

impl<'scope, 'env, T, F> View<'scope, 'env, T, F>
where
    T: Send + 'scope,
    F: FnMut(Stage) -> Result<T> + Send + 'scope,
{
    /// Plans the view of `plan` (the volume `record` names, owned by the account `owner`) and,
    /// in the bind layout, starts building it in a thread of `scope`: the mounts' sources are
    /// opened, and missing host mount points made, in the host's view before this returns.
    /// `inside` runs in the complete view (resolution of the command, working directory) and,
    /// for an `init_held` (one that runs nothing until `start`), also before the links.
    pub fn start(
        scope: &'scope Scope<'scope, 'env>,
        plan: &'env ContainerPlan,
        record: &VolumeRecord,
        owner: (u32, u32),
        init_held: bool,
        mut inside: F,
    ) -> Result<Self> {
        let id = plan.id.as_str();
        let (pin, sources, actions) = match plan_view(plan, record, owner)? {
            ViewPlan::Host { actions } => {
                return Ok(View {
                    id,
                    building: Building::Later { actions, inside },
                })
            }
            ViewPlan::Namespace {
                pin,
                sources,
                actions,
            } => (pin, sources, actions),
        };
        let actions = match &record.links {
            Some(dir) => {
                let lowers = lower_dirs(&plan.volume.image);
                layer_links(actions, &plan.volume.mount_point, dir, |path| {
                    in_image(&lowers, path)
                })
            }
            None => actions,
        };
        let (trees_tx, trees_rx) = mpsc::channel::<Vec<OwnedFd>>();
        let (actions, links) = if init_held {
            defer_links(actions, &plan.volume.mount_point)
        } else {
            (actions, Vec::new())
        };
        let (first_tx, first_rx) = mpsc::channel();
        let first = (!links.is_empty()).then_some(first_rx);
        // The builder starts first: the host-side work below overlaps its start.
        let builder = scope.spawn(move || {
            let trees = || {
                trees_rx
                    .recv()
                    .map_err(|_| Error::container(id, "the mounts were not opened on the host"))
            };
            build_namespace(id, &actions, trees)?;
            let ns = fs::File::open("/proc/thread-self/ns/mnt")
                .map(OwnedFd::from)
                .map_err(|e| Error::io("open", "/proc/thread-self/ns/mnt", e))?;
            if links.is_empty() {
                return Ok((Some(ns), inside(Stage::Complete)?));
            }
            // The receiver is gone only when the caller failed: it tears down.
            let _ = first_tx.send((ns, inside(Stage::BeforeLinks)));
            execute(id, &links, || Ok(Vec::new()))?;
            Ok((None, inside(Stage::Complete)?))
        });
        // On failure the sender goes out of scope, which stops the builder.
        let _ = trees_tx.send(open_on_host(&sources)?);
        fs::File::create(&pin).map_err(|e| Error::io("create", &pin, e))?;
        Ok(View {
            id,
            building: Building::Meanwhile {
                pin,
                builder,
                first,
            },
        })
    }

    /// Pins the view after the caller's `job` and returns what `inside` gave: in the complete
    /// view, or, while the builder makes the links, before them (when it gave something
    /// there). A view building in its namespace is pinned even when the job failed, so that
    /// one teardown removes it all (the scope waits for its builder); the symlink layout's view
    /// is built only after a job that was made.
    pub fn finish(self, job: Result<()>) -> Result<Ready<'scope, T>> {
        let id = self.id;
        let (pin, builder, first) = match self.building {
            Building::Later {
                actions,
                mut inside,
            } => {
                job?;
                execute(id, &actions, || Ok(Vec::new()))?;
                return inside(Stage::Complete).map(Ready::Complete);
            }
            Building::Meanwhile {
                pin,
                builder,
                first,
            } => (pin, builder, first),
        };
        // Before the links, unless the builder stopped before them.
        match first.and_then(|first| first.recv().ok()) {
            Some((ns, Ok(first))) => {
                pin_namespace(&ns, &pin)?;
                job?;
                Ok(Ready::Links {
                    first,
                    rest: Links {
                        id: id.to_string(),
                        builder,
                    },
                })
            }
            // Nothing to go on before the links (or none to make): the complete view's answer,
            // with the namespace from whichever message brought it.
            early => {
                let (built, complete) = builder
                    .join()
                    .map_err(|_| Error::container(id, "the view builder stopped"))??;
                let ns = early.map(|(ns, _)| ns).or(built).ok_or_else(|| {
                    Error::container(id, "the view builder gave no mount namespace")
                })?;
                pin_namespace(&ns, &pin)?;
                job?;
                Ok(Ready::Complete(complete))
            }
        }
    }
}

/// What the image's layers (`lowers`, top first) have at `path`, relative to each: the topmost
/// entry, never following a symlink at `path` itself (the host check refused any on the way).
fn in_image(lowers: &[PathBuf], path: &std::path::Path) -> InImage {
    use std::os::unix::fs::MetadataExt;
    for lower in lowers {
        match fs::symlink_metadata(lower.join(path)) {
            Ok(md) if md.is_dir() => {
                return InImage::Directory(DirAttrs {
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                })
            }
            Ok(_) => return InImage::Other,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return InImage::Other,
        }
    }
    InImage::Absent
}

/// Keeps the namespace `ns` alive at `pin` (a bind mount of its nsfs file).
fn pin_namespace(ns: &OwnedFd, pin: &std::path::Path) -> Result<()> {
    let ns_path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    mount(
        Some(&ns_path),
        pin,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| sys_err(format!("pin mount namespace at '{}'", pin.display()), e))
}

/// The sources of the plan's mounts, opened in the host's view, after making any missing mount
/// point outside the volume.
fn open_on_host(sources: &[HostSource]) -> Result<Vec<OwnedFd>> {
    let mut trees = Vec::new();
    for source in sources {
        let (tree, source_is_dir) = open_source(&source.source)?;
        if let Some(mount_point) = &source.host_mount_point {
            ensure_host_mount_point(mount_point, source_is_dir)?;
        }
        trees.push(tree);
    }
    Ok(trees)
}

/// In the builder thread: a new mount namespace, slave of the host's, where the view's actions
/// run (`trees`: the mounts' sources, opened on the host meanwhile).
fn build_namespace(
    id: &str,
    actions: &[ViewAction],
    trees: impl FnOnce() -> Result<Vec<OwnedFd>>,
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
    execute(id, actions, trees)
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
