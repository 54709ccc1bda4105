//! The container lifecycle (§6), the same for the CLI and the shim: create validates everything
//! before any side effect, start only releases the prepared init, delete works from any process
//! and after any crash.
//!
//! # Locking
//!
//! The operations that change what the state file says take the container's lock
//! ([`StateRoot::lock`]) and read the state again under it: `create` (it holds the lock of the
//! directory it makes until the state says created), `start` (the phase), `update` (the
//! resources, and a record that may name a controller joined late) and `delete` (the state
//! file itself, and what it names is torn down only if it is still the container that was
//! loaded: same `created`). Two of them on one container run one after the other, so none
//! writes a state another has just replaced, and none tears down what another is making or
//! releasing (`start_and_delete_serialise_on_the_containers_lock` pins that). `release_view`
//! writes no state but tears down part of what the record names, so it takes the lock too and
//! acts only on the same container, stopped; what the kernel still does after it (the view's
//! namespace taken down) runs once the lock is let go of.
//!
//! `exec`, `kill`, `pause` and `resume` write no state, so they take no lock (a lock would make
//! them wait behind a slow delete for up to the lock timeout). They act on the live kernel
//! objects instead and check them there: the init process by its pid and start time
//! ([`Platform::is_running`], through [`Container::status`]; `kill` of init checks it again as
//! it signals, so a reused pid is never signalled), then the job the record names (its cgroup
//! directories on Linux, its job object's name on Windows): `exec` and `pause`/`resume` act on
//! it only after `status` found init running and, for `pause`/`resume`, the job's freezer in
//! the expected state. `kill --all` signals the job the record names and checks nothing
//! first: after a delete it finds no job and signals nothing. A job whose container was
//! deleted and made again under the same id between the check and the call is the one case
//! left, as with runc.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::{self, ContainerPlan, ImageSource, PlanOptions};
use crate::spec::{LinuxResources, Process, Spec, WindowsResources};
use crate::state::{self, Phase, State, StateRoot};
use crate::sys::{self, Current, JobStats, Platform, ProcessInfo};

pub type Stdio = <Current as Platform>::Stdio;

/// The live status of a container, as runc names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// How to create a container; `S` is the platform's standard I/O.
#[derive(Default)]
pub struct CreateOptions<S = Stdio> {
    pub stdio: S,
    /// Overrides the bundle's `root.path` (containerd gives the rootfs as mounts).
    pub image: Option<ImageSource>,
    /// Start the command right away instead of holding init until `start` (`run`).
    pub start_now: bool,
}

/// The runtime: a state root, the runtime-wide settings and the platform that makes the
/// containers (this host's, unless a caller passes another: the lifecycle's tests do).
pub struct Engine<P: Platform = Current> {
    options: PlanOptions,
    root: StateRoot,
    platform: Arc<P>,
}

impl<P: Platform> Clone for Engine<P> {
    fn clone(&self) -> Self {
        Engine {
            options: self.options.clone(),
            root: self.root.clone(),
            platform: Arc::clone(&self.platform),
        }
    }
}

impl<P: Platform> std::fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine of this host's platform.
    pub fn new(options: PlanOptions) -> Engine {
        Engine::with_platform(options, Current)
    }
}

impl<P: Platform> Engine<P> {
    /// The engine of any platform.
    pub fn with_platform(options: PlanOptions, platform: P) -> Engine<P> {
        let root = StateRoot::new(options.root.clone()).with_lock_timeout(options.lock_timeout);
        Engine {
            options,
            root,
            platform: Arc::new(platform),
        }
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    fn container(&self, state: State<P::Record>) -> Container<P> {
        Container {
            root: self.root.clone(),
            platform: Arc::clone(&self.platform),
            state,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// Plans the bundle's spec without touching the host: what `create` would refuse.
    pub fn plan(
        &self,
        id: &str,
        bundle: &Path,
        image: Option<ImageSource>,
    ) -> Result<(Spec, ContainerPlan)> {
        let bundle = absolute(bundle)?;
        let spec = Spec::load(&bundle)?;
        let plan = plan::plan(id, &bundle, &spec, &self.options, image)?;
        Ok((spec, plan))
    }

    /// Creates a container from a bundle. Every check runs before the first side effect; if a
    /// later step fails, everything made so far is removed before the error is returned.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions<P::Stdio>,
    ) -> Result<Container<P>> {
        let bundle = absolute(bundle)?;
        let (_, plan) = self.plan(id, &bundle, options.image.clone())?;
        self.create_planned(plan, options)
    }

    /// [`Engine::create`] for a plan the caller made with [`Engine::plan`] (to look at it
    /// first, e.g. whether the process wants a terminal).
    pub fn create_planned(
        &self,
        plan: ContainerPlan,
        options: CreateOptions<P::Stdio>,
    ) -> Result<Container<P>> {
        let id = plan.id.clone();
        let id = id.as_str();
        if self.root.dir(id).exists() {
            return Err(Error::Exists(id.to_string()));
        }
        let bundle = plan.bundle.clone();
        let dir = self.root.dir(id);
        let mut record = self.platform.prepare(&plan, &dir)?;

        // From here on, side effects: the record names all of them before they are made.
        let (dir, _lock) = self.root.create_dir(id)?;
        let mut state = State {
            id: id.to_string(),
            bundle: bundle.clone(),
            created: state::rfc3339_now(),
            phase: Phase::Creating,
            written_init: None,
            owner: owner(),
            plan,
            record: record.clone(),
        };
        if let Err(e) = self.root.save(&state) {
            let _ = self.root.remove_dir(id);
            return Err(e);
        }
        let made =
            self.platform
                .create(&state.plan, &mut record, options.stdio, !options.start_now);
        state.record = record;
        // The init is kept in the record (`Platform::init`).
        if let Err(e) = made {
            if let Err(cleanup) = self.platform.destroy(&state.record) {
                log::warn!("container {id}: cleanup after failed create: {cleanup}");
            }
            let _ = self.root.remove_dir(id);
            return Err(e);
        }
        state.phase = if options.start_now {
            Phase::Running
        } else {
            Phase::Created
        };
        state.written_init = self.platform.init(&state.record);
        if let Err(e) = self.root.save(&state) {
            let _ = self.platform.destroy(&state.record);
            let _ = self.root.remove_dir(id);
            return Err(e);
        }
        log::debug!("container {id}: created in {}", dir.display());
        Ok(self.container(state))
    }

    pub fn load(&self, id: &str) -> Result<Container<P>> {
        plan::validate_id(id)?;
        Ok(self.container(self.root.load(id)?))
    }

    pub fn list(&self) -> Result<Vec<Container<P>>> {
        let mut containers = Vec::new();
        for id in self.root.ids()? {
            match self.load(&id) {
                Ok(c) => containers.push(c),
                Err(e) if e.is_not_found() => {}
                // One unreadable container hides none of the others.
                Err(e @ Error::CorruptState { .. }) => {
                    log::warn!("{e}; not listed (delete --force {id} removes it)")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(containers)
    }

    /// Deletes a container by id; `force` kills it first when it still runs. Deleting a
    /// container that does not exist is an error only without `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        plan::validate_id(id)?;
        // Loaded under the lock, so what it tears down is the container there now.
        let loaded = self
            .root
            .lock(id)
            .and_then(|lock| Ok((lock, self.load(id)?)));
        match loaded {
            Ok((_lock, container)) => container.delete_locked(force),
            Err(Error::NotFound(_)) if force => self.root.remove_dir(id),
            Err(e @ Error::CorruptState { .. }) if force => {
                let _lock = self.root.lock(id)?;
                log::warn!("{e}; removing what its directory holds (its job and account, named only in that file, cannot be found)");
                self.platform.destroy_unrecorded(&self.root.dir(id))?;
                self.root.remove_dir(id)
            }
            Err(e) => Err(e),
        }
    }
}

/// One container, as loaded from its state.
pub struct Container<P: Platform = Current> {
    root: StateRoot,
    platform: Arc<P>,
    state: State<P::Record>,
}

impl<P: Platform> Clone for Container<P> {
    fn clone(&self) -> Self {
        Container {
            root: self.root.clone(),
            platform: Arc::clone(&self.platform),
            state: self.state.clone(),
        }
    }
}

impl<P: Platform> std::fmt::Debug for Container<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("root", &self.root)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// runc's `state` output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: u32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    pub owner: String,
}

impl<P: Platform> Container<P> {
    pub fn id(&self) -> &str {
        &self.state.id
    }

    pub fn bundle(&self) -> &Path {
        &self.state.bundle
    }

    pub fn plan(&self) -> &ContainerPlan {
        &self.state.plan
    }

    pub fn init(&self) -> Option<ProcessInfo> {
        self.platform.init(&self.state.record)
    }

    pub fn record(&self) -> &P::Record {
        &self.state.record
    }

    pub fn created(&self) -> &str {
        &self.state.created
    }

    pub fn owner(&self) -> &str {
        &self.state.owner
    }

    pub fn mount_point(&self) -> &Path {
        &self.state.plan.volume.mount_point
    }

    pub fn status(&self) -> Status {
        match (self.state.phase, self.init()) {
            (Phase::Creating, _) => Status::Creating,
            (_, None) => Status::Stopped,
            (phase, Some(init)) => {
                if !self.platform.is_running(&init) {
                    Status::Stopped
                } else if phase == Phase::Created && self.platform.is_held(&self.state.record) {
                    Status::Created
                } else if self.platform.is_frozen(&self.state.record) {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
        }
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: "1.0.2".into(),
            id: self.state.id.clone(),
            pid: match status {
                Status::Stopped | Status::Creating => 0,
                _ => self.init().map_or(0, |i| i.pid),
            },
            status,
            bundle: self.state.bundle.clone(),
            rootfs: self.state.plan.volume.mount_point.clone(),
            created: self.state.created.clone(),
            annotations: self.state.plan.annotations.clone(),
            owner: self.state.owner.clone(),
        }
    }

    fn refuse(&self, status: Status, what: &str) -> Error {
        Error::BadState {
            id: self.state.id.clone(),
            status: status.to_string(),
            what: what.to_string(),
        }
    }

    /// Releases the held init so it runs its command.
    pub fn start(&mut self) -> Result<()> {
        let _lock = self.root.lock(&self.state.id)?;
        self.state = self.root.load(&self.state.id)?;
        match self.status() {
            Status::Created => self.platform.release(&self.state.record)?,
            // An earlier start released init and died before it could say so.
            Status::Running | Status::Paused if self.state.phase == Phase::Created => {}
            status => return Err(self.refuse(status, "only a created container can be started")),
        }
        self.state.phase = Phase::Running;
        self.state.written_init = self.platform.init(&self.state.record);
        // The workload runs now, whatever happens to the state file: like runc, start has
        // succeeded. The status is read from the process, so a phase left at "created" still
        // reads as running.
        if let Err(e) = self.root.save(&self.state) {
            log::warn!(
                "container {}: started, but its state could not be saved: {e}",
                self.state.id
            );
        }
        Ok(())
    }

    /// Runs another process in the container's job, view and account.
    pub fn exec(&self, process: &Process, stdio: P::Stdio) -> Result<ProcessInfo> {
        match self.status() {
            Status::Running | Status::Created => {}
            status => return Err(self.refuse(status, "exec needs a created or running container")),
        }
        let plan = &self.state.plan;
        // Without a PATH in the exec spec, the standard one: the caller's own PATH (a shim's
        // is containerd's) says nothing about the container.
        let process = plan::process::process_plan(process, &plan.volume.mount_point, None)?;
        self.platform
            .exec(plan, &self.state.record, &process, stdio)
    }

    /// Signals init, or with `all` every process of the job.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        if all {
            return self.platform.signal_job(&self.state.record, signal);
        }
        match (self.status(), self.init()) {
            (Status::Stopped, _) | (_, None) => {
                Err(self.refuse(Status::Stopped, "nothing to signal"))
            }
            (_, Some(init)) => self.platform.signal(&init, signal),
        }
    }

    /// Signals one process of the container (an exec'd process), checking that its pid was
    /// not reused.
    pub fn signal_process(&self, process: &ProcessInfo, signal: i32) -> Result<()> {
        self.platform.signal(process, signal)
    }

    pub fn pause(&self) -> Result<()> {
        match self.status() {
            Status::Running => self.platform.set_frozen(&self.state.record, true),
            status => Err(self.refuse(status, "only a running container can be paused")),
        }
    }

    pub fn resume(&self) -> Result<()> {
        match self.status() {
            Status::Paused => self.platform.set_frozen(&self.state.record, false),
            status => Err(self.refuse(status, "only a paused container can be resumed")),
        }
    }

    /// Changes limits live; the new limits are kept in the state.
    pub fn update(
        &mut self,
        linux: Option<&LinuxResources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        let _lock = self.root.lock(&self.state.id)?;
        self.state = self.root.load(&self.state.id)?;
        let next = plan::resources::updated_request(&self.state.plan.resources, linux, windows)?;
        self.platform.update(&mut self.state.record, &next)?;
        self.state.plan.resources = next;
        self.state.written_init = self.platform.init(&self.state.record);
        self.root.save(&self.state)
    }

    pub fn stats(&self) -> Result<JobStats> {
        self.platform.stats(&self.state.record)
    }

    /// The job's OOM kill count (what `stats` reports as `oom_kills`), read alone.
    pub fn oom_kills(&self) -> Result<u64> {
        self.platform.oom_kills(&self.state.record)
    }

    pub fn pids(&self) -> Result<Vec<u32>> {
        self.platform.job_pids(&self.state.record)
    }

    /// What follows the exit of init (§6): SIGTERM to the rest of the job, then SIGKILL once
    /// the grace period is over. Returns whether anything had to be killed. It stops as soon
    /// as the container is no longer the one its state root holds under its id: deleted, and
    /// the id perhaps used again, the job at its cgroup path is not this container's.
    pub fn terminate_rest(&self) -> Result<bool> {
        sys::terminate_rest(
            &*self.platform,
            &self.state.record,
            self.state.plan.grace_period,
            || self.is_current(),
        )
    }

    /// Is this container still the one its state root holds under its id (same `created`)?
    fn is_current(&self) -> bool {
        self.root
            .load::<P::Record>(&self.state.id)
            .is_ok_and(|now| now.created == self.state.created)
    }

    /// Hands §6's init-exit rule to a watcher that outlives the caller (the CLI's `create`).
    pub fn supervise_detached(&self) -> Result<()> {
        match self.init() {
            Some(init) => self.platform.supervise_detached(
                &self.state.record,
                &init,
                self.state.plan.grace_period,
            ),
            None => Ok(()),
        }
    }

    /// Removes the container: kills what is left (only with `force` if it still runs), then
    /// tears down the view, the volume, the job and any ephemeral account. Idempotent.
    pub fn delete(self, force: bool) -> Result<()> {
        // A delete racing this one may have removed the container since it was loaded: then
        // it is gone, which is what was asked for. A state that cannot be read is torn down.
        match self.lock_if_still_here()? {
            Some((_lock, _readable)) => self.delete_locked(force),
            None => Ok(()),
        }
    }

    /// The container's lock, when its directory still holds this container: `None` when it is
    /// gone, or its id is a new container's by now (which is not this one to act on). With the
    /// lock, whether its state could be read again (an unreadable state is still this one's
    /// directory, for the caller to weigh).
    fn lock_if_still_here(&self) -> Result<Option<(state::Lock, Result<()>)>> {
        let id = &self.state.id;
        let lock = match self.root.lock(id) {
            Err(Error::NotFound(_)) => return Ok(None),
            lock => lock?,
        };
        match self.root.load::<P::Record>(id) {
            Err(Error::NotFound(_)) => Ok(None),
            Ok(now) if now.created != self.state.created => Ok(None),
            Ok(_) => Ok(Some((lock, Ok(())))),
            Err(e) => Ok(Some((lock, Err(e)))),
        }
    }

    /// Once the container has stopped — init gone, nothing of its job left — lets go of its
    /// private view now instead of at delete ([`Platform::release_view`]): nothing can enter
    /// it any more (exec needs a created or running container), and what the kernel does to
    /// take it down (the volume's unmount among it) is then off delete's path. The volume's
    /// files stay until delete. Does nothing, and says so with `false`, for a container that
    /// still runs or is gone (or whose id is another container's by now).
    pub fn release_view(&self) -> Result<bool> {
        let released = {
            let Some((_lock, readable)) = self.lock_if_still_here()? else {
                return Ok(false);
            };
            readable?;
            // Init is in the job: an empty job is a stopped container.
            if !self.platform.job_pids(&self.state.record)?.is_empty() {
                return Ok(false);
            }
            self.platform.release_view(&self.state.record)?
        };
        // The kernel finishes taking the view down (the volume's unmount) out of the lock: a
        // delete arriving meanwhile need not wait for it.
        drop(released);
        Ok(true)
    }

    /// [`Container::delete`] with the container's lock held and its state current.
    fn delete_locked(self, force: bool) -> Result<()> {
        let status = self.status();
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(self.refuse(status, "stop it first or use delete --force to kill it"));
        }
        self.platform.destroy(&self.state.record)?;
        self.root.remove_dir(&self.state.id)
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
    Ok(cwd.join(path))
}

fn owner() -> String {
    std::env::var("USER").unwrap_or_default()
}

#[cfg(test)]
mod tests;
