//! A bind-layout view is built in a new mount namespace, a slave of the host's, by a thread of
//! its own (`unshare` moves only the calling thread), while the caller opens the mounts'
//! sources on the host and goes on with its own work (the job's cgroups). The namespace is kept
//! alive by a bind mount of its nsfs file in the state directory, which every process of the
//! container joins with `setns`.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};

use nix::mount::{mount, MsFlags};

use super::mounts::{execute, open_source};
use super::walk::ensure_host_mount_point;
use super::{sys_err, VolumeRecord};
use crate::error::{Error, Result};
use crate::plan::ContainerPlan;
use crate::sys::linuxlogic::view::{plan_view, HostSource, ViewAction, ViewPlan};

/// A container's view on its way: started by [`View::start`], completed by [`View::finish`].
pub struct View<'scope, 'env, T, F> {
    id: &'env str,
    building: Building<'scope, T, F>,
}

enum Building<'scope, T, F> {
    /// Symlink layout: built by [`View::finish`] in the host's namespace, then `inside` runs.
    Later { actions: Vec<ViewAction>, inside: F },
    /// Bind layout: a thread builds it meanwhile, runs `inside` in it and hands back a
    /// descriptor of its namespace (which keeps the namespace alive until it is pinned).
    Meanwhile {
        pin: PathBuf,
        builder: ScopedJoinHandle<'scope, Result<(OwnedFd, T)>>,
    },
}

impl<'scope, 'env, T, F> View<'scope, 'env, T, F>
where
    T: Send + 'scope,
    F: FnOnce() -> Result<T> + Send + 'scope,
{
    /// Plans the view of `plan` (the volume `record` names, owned by the account `owner`) and,
    /// in the bind layout, starts building it in a thread of `scope`: the mounts' sources are
    /// opened, and missing host mount points made, in the host's view before this returns.
    /// `inside` runs in the complete view (resolution of the command, working directory).
    pub fn start(
        scope: &'scope Scope<'scope, 'env>,
        plan: &'env ContainerPlan,
        record: &VolumeRecord,
        owner: (u32, u32),
        inside: F,
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
        let (trees_tx, trees_rx) = mpsc::channel::<Vec<OwnedFd>>();
        // The builder starts first: the host-side work below overlaps its start.
        let builder = scope.spawn(move || {
            let trees = || {
                trees_rx
                    .recv()
                    .map_err(|_| Error::container(id, "the mounts were not opened on the host"))
            };
            build_namespace(id, &actions, trees)?;
            let inside = inside()?;
            let ns = fs::File::open("/proc/thread-self/ns/mnt")
                .map_err(|e| Error::io("open", "/proc/thread-self/ns/mnt", e))?;
            Ok((OwnedFd::from(ns), inside))
        });
        // On failure the sender goes out of scope, which stops the builder.
        let _ = trees_tx.send(open_on_host(&sources)?);
        fs::File::create(&pin).map_err(|e| Error::io("create", &pin, e))?;
        Ok(View {
            id,
            building: Building::Meanwhile { pin, builder },
        })
    }

    /// Completes the view after the caller's `job` and returns what `inside` gave. A view
    /// building in its namespace is completed and pinned even when the job failed, so that one
    /// teardown removes it all; the symlink layout's view is built only after a job that was
    /// made.
    pub fn finish(self, job: Result<()>) -> Result<T> {
        match self.building {
            Building::Later { actions, inside } => {
                job?;
                execute(self.id, &actions, || Ok(Vec::new()))?;
                inside()
            }
            Building::Meanwhile { pin, builder } => {
                let (ns, inside) = builder
                    .join()
                    .map_err(|_| Error::container(self.id, "the view builder stopped"))??;
                let ns_path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
                mount(
                    Some(&ns_path),
                    pin.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| sys_err(format!("pin mount namespace at '{}'", pin.display()), e))?;
                job?;
                Ok(inside)
            }
        }
    }
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
