//! Windows: the job is a named job object, the view a silo with bind-filter mappings (or the
//! fallback layout without the bind filter), the volume a directory or the image's layers
//! mounted through the HCS storage API, the account a logon token. The decisions live in
//! `sys::winlogic`; this module makes the system calls.
//!
//! Container volumes: an `ImageSource::Directory` (or a single layer directory) is used as it
//! is; containerd's `windows-layer` mount (`ImageSource::Layers`: the scratch layer, then its
//! parents) is activated and prepared as the reference does for process-isolated containers,
//! and the volume it becomes is mounted at the mount point.
//!
//! Process creation differs from the reference in one place: on silo hosts the reference starts
//! every command as `cmd /c <command>` because `CreateProcess` looks the image up from the
//! runtime's view, which cannot see the silo's `C:\hpc`. Here the command is resolved in the
//! container's view and the image is passed by the host path behind it, so the command runs
//! directly (no `cmd` in between, quoting kept).

mod account;
mod console;
mod job;
mod layers;
mod live;
mod process;
mod supervisor;
mod volume;
mod win;

use std::os::windows::io::OwnedHandle;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::SystemServices::JOB_OBJECT_QUERY;
use windows_sys::Win32::System::Threading::{INFINITE, PROCESS_QUERY_LIMITED_INFORMATION};

use crate::error::{Error, Result};
use crate::plan::mounts::{MountError, Propagation};
use crate::plan::{ContainerPlan, ImageSource, Layout, ProcessPlan, ResourceRequest};
use crate::sys::winlogic::account::{account_plan, ephemeral_for_group, AccountPlan};
use crate::sys::winlogic::cmdline::{
    self, command_line_from_args, to_backslashes, FileSystem, Kind, SearchPaths,
};
use crate::sys::winlogic::env::{container_environment, env_value};
use crate::sys::winlogic::layers::{volume_source, LayerMount, VolumeSource};
use crate::sys::winlogic::limits::{job_limits, IoLimit, JobLimits};
use crate::sys::winlogic::mounts::{
    choose_layout, is_under, mount_destination, mount_point_env, rebase_text, silo_bindings,
    volume_attach, volume_links, working_directory, Binding, ContainerView, ViewFs, VolumeAttach,
    VolumeLayout, VolumeLink,
};
use crate::sys::winlogic::signal::{signal_action, SignalAction, TERMINATED_EXIT_CODE};
use crate::sys::{JobStats, Platform, ProcessInfo};

pub use account::sweep_ephemeral_account;
pub use supervisor::run_supervisor_if_requested;

use job::{Job, Notifier};
use process::{Launch, Launched, ProcessIo};
use win::{raw, HostFs};

#[derive(Debug, Clone, Copy, Default)]
pub struct Windows;

/// Where the threads suspended by `pause` are listed, in the container's state directory.
const FROZEN_FILE: &str = "frozen.json";
/// Made once init's main thread has been released, in the container's state directory: whether
/// init is held is the runtime's knowledge, not something to learn by suspending the thread.
const RELEASED_FILE: &str = "released";

/// Notes that init has been released. Written after the thread is resumed: a crash in between
/// leaves init looking held, and a second `start` resumes a running thread, which is harmless.
fn mark_released(record: &Record) -> Result<()> {
    let marker = record.state_dir.join(RELEASED_FILE);
    std::fs::write(&marker, b"").map_err(|e| Error::io("write", marker, e))
}

/// Everything made for one container, named before it is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub state_dir: PathBuf,
    /// The job object's name (`JobContainer_<id>`, in the global namespace).
    pub job_name: String,
    pub layout: VolumeLayout,
    /// Where the volume appears (`C:\hpc`, or `C:\hpc\<id>` in the fallback layout).
    pub mount_point: String,
    /// The plan's spelling of the mount point, which it used when expanding
    /// `CONTAINER_SANDBOX_MOUNT_POINT`.
    pub plan_mount_point: String,
    /// The host directory of the container volume.
    pub volume: String,
    pub volume_read_only: bool,
    pub volume_attach: VolumeAttach,
    /// The silo's mappings: the volume first, then the mounts.
    pub bindings: Vec<Binding>,
    /// Each mount: destination (container path) → source (host path).
    pub mounts: Vec<Binding>,
    /// Mount links inside the volume.
    pub links: Vec<VolumeLink>,
    pub account: AccountPlan,
    pub init: Option<InitRecord>,
    /// The job's I/O cap as last set, so that an `update` without one clears it.
    #[serde(default)]
    pub io_limit: Option<IoLimit>,
    /// The image layers `create` mounts as the volume (the volume's path is known once they are
    /// mounted).
    #[serde(default)]
    pub layers: Option<LayerMount>,
}

/// The init process, with its main thread, which `release` resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRecord {
    pub pid: u32,
    pub thread_id: u32,
    pub start_time: u64,
}

/// Standard I/O of a new process. `None` is the `NUL` device.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedHandle>,
    pub stdout: Option<OwnedHandle>,
    pub stderr: Option<OwnedHandle>,
    /// Run under a pseudo console (ConPTY): `stdin` is the read end of the console's input
    /// pipe, `stdout` the write end of its output pipe (without them: no input, output to
    /// `NUL`); `stderr` is unused (a console merges it into its output).
    pub terminal: bool,
    /// The console's (width, height); the process's console size, else 80x25, when `None`.
    pub console_size: Option<(u16, u16)>,
}

fn limits_for(id: &str, resources: &ResourceRequest) -> Result<JobLimits> {
    let limits =
        job_limits(resources, win::host_cpus()).map_err(|e| Error::container(id, e.to_string()))?;
    for ignored in &limits.ignored {
        log::debug!("container {id}: not applied to the job object: {ignored}");
    }
    Ok(limits)
}

/// Where the volume comes from: a directory, or image layers to mount at `create`.
fn volume_source_of(plan: &ContainerPlan) -> Result<VolumeSource> {
    let source = match &plan.volume.image {
        ImageSource::Directory(path) => {
            VolumeSource::Directory(to_backslashes(&path.to_string_lossy()))
        }
        ImageSource::Layers { lower, upper, work } => {
            if upper.is_some() || work.is_some() {
                log::debug!(
                    "container {}: upper and work directories are not used on Windows",
                    plan.id
                );
            }
            let lower: Vec<String> = lower
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            volume_source(&lower).map_err(|e| Error::container(&plan.id, e.to_string()))?
        }
    };
    if let VolumeSource::Directory(path) = &source {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::container(
                    &plan.id,
                    format!("the container volume {path} is not a directory"),
                ))
            }
            Err(e) => return Err(Error::io("open the container volume", path, e)),
        }
    }
    Ok(source)
}

/// Makes `volume` the container's volume: how it is attached, the links and the silo's mappings
/// all follow from its path.
fn place_volume(record: &mut Record, volume: String) {
    record.links = volume_links(&volume, &record.mounts);
    record.volume_attach = volume_attach(&volume);
    record.bindings = match record.layout {
        VolumeLayout::Silo => silo_bindings(
            &record.mount_point,
            &volume,
            record.volume_read_only,
            &record.mounts,
        ),
        VolumeLayout::Fallback => Vec::new(),
    };
    record.volume = volume;
}

/// The job, from this process's own handle or opened by name; `None` when it is gone.
fn job_for(record: &Record) -> Result<Option<live::JobHandles>> {
    if let Some(found) = live::job(&record.id) {
        return Ok(Some(found));
    }
    Ok(Job::open(&record.job_name)?.map(|job| (Arc::new(job), None)))
}

fn stopped(record: &Record) -> Error {
    Error::container(
        &record.id,
        "its job object is gone: the container has stopped",
    )
}

/// Starts a process of the container: environment, working directory and command resolved in
/// the container's view.
fn start_process(
    record: &Record,
    process: &ProcessPlan,
    stdio: Stdio,
    token: &OwnedHandle,
    job: &Job,
    suspended: bool,
) -> Result<Launched> {
    let view = ContainerView {
        bindings: &record.bindings,
    };
    let fs = ViewFs {
        view,
        host: &HostFs,
    };
    let rebase = |text: &str| match record.layout {
        VolumeLayout::Fallback => rebase_text(text, &record.plan_mount_point, &record.mount_point),
        VolumeLayout::Silo => text.to_string(),
    };
    let account_env = account::environment(raw(token))?;
    let spec_env: Vec<String> = process.env.iter().map(|e| rebase(e)).collect();
    let windows_dir = win::windows_dir();
    let env = container_environment(
        &account_env,
        &spec_env,
        &mount_point_env(&record.mount_point),
        &windows_dir,
    );

    let cwd = working_directory(
        &process.cwd.to_string_lossy(),
        &record.plan_mount_point,
        &record.mount_point,
        &fs,
    )
    .map_err(|e| Error::container(&record.id, format!("working directory: {e}")))?;
    // Directories below the volume or the mount point are made without following links the
    // image may hold.
    let make_dir = |path: &str| match [&record.volume, &record.mount_point]
        .into_iter()
        .find(|root| is_under(path, root))
    {
        Some(root) => volume::create_dir_below(root, path),
        None => std::fs::create_dir_all(path)
            .map_err(|e| Error::io("create the working directory", path, e)),
    };
    if cwd.create {
        make_dir(&view.to_host(&cwd.path))?;
    }
    if record.layout == VolumeLayout::Silo && HostFs.kind(&cwd.path) != Kind::Directory {
        // Process creation checks the working directory from the runtime's view, which does
        // not see the silo's mappings: an empty directory at the same host path satisfies it,
        // as in the reference.
        make_dir(&cwd.path)?;
    }

    let command_line = rebase(&command_line_from_args(&process.args));
    let search = SearchPaths {
        work_dir: cwd.path.clone(),
        path_env: env_value(&env, "PATH").unwrap_or_default().to_string(),
        system_dir: win::system_dir(),
        windows_dir,
    };
    let resolved = cmdline::resolve(&command_line, &search, &fs)
        .map_err(|e| Error::container(&record.id, e.to_string()))?;
    let application = view.to_host(&resolved.application);

    let io = if stdio.terminal {
        // A terminal without stdin (Kubernetes allows it) reads from a pipe with no writer, and
        // one without stdout writes to NUL.
        let input = match stdio.stdin {
            Some(input) => input,
            None => {
                let (reader, writer) = std::io::pipe()
                    .map_err(|e| Error::sys("create the console's input pipe", e))?;
                drop(writer);
                reader.into()
            }
        };
        let output = match stdio.stdout {
            Some(output) => output,
            None => process::null_device()?,
        };
        let (width, height) = stdio
            .console_size
            .or(process.console_size.map(|(height, width)| (width, height)))
            .filter(|(w, h)| *w > 0 && *h > 0)
            .unwrap_or(console::DEFAULT_SIZE);
        ProcessIo::Console(console::PseudoConsole::create(
            &input, &output, width, height,
        )?)
    } else {
        ProcessIo::Handles {
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
        }
    };
    process::launch(Launch {
        token: raw(token),
        application: &application,
        command_line: &resolved.command_line,
        env: &env,
        cwd: &cwd.path,
        job,
        io,
        suspended,
    })
}

/// The account's token: the one this process logged on, or a new logon (an ephemeral user gets
/// a new password for it; none is ever stored).
fn token_for(record: &Record) -> Result<Arc<OwnedHandle>> {
    if let Some(token) = live::token(&record.id) {
        return Ok(token);
    }
    let password = match account::ephemeral_user(&record.account) {
        Some(user) => Some(account::reset_password(user)?),
        None => None,
    };
    let token = Arc::new(account::token(&record.account, password.as_deref())?);
    live::set_token(&record.id, Arc::clone(&token));
    Ok(token)
}

/// Resumes the threads `pause` suspended and forgets them.
fn thaw(record: &Record) -> Result<()> {
    let marker = record.state_dir.join(FROZEN_FILE);
    let text = match std::fs::read(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", marker, e)),
    };
    let threads: Vec<(u32, u32)> = serde_json::from_slice(&text).map_err(|e| {
        Error::container(&record.id, format!("{} is corrupt: {e}", marker.display()))
    })?;
    process::resume_threads(&threads);
    std::fs::remove_file(&marker).map_err(|e| Error::io("remove", marker, e))
}

impl Windows {
    /// Resizes the pseudo console of a process that this process started with a terminal.
    pub fn resize_console(
        record: &Record,
        process: &ProcessInfo,
        width: u16,
        height: u16,
    ) -> Result<()> {
        live::with_console(&record.id, process, |console| console.resize(width, height)).unwrap_or_else(|| {
            Err(Error::container(
                &record.id,
                format!(
                    "process {} has no pseudo console in this process (it has no terminal, has exited, or was started by another process)",
                    process.pid
                ),
            ))
        })
    }

    /// Waits for a process of a container to exit and returns its exit code; `None` on
    /// timeout, forever without one. The exit code of a process that has already gone is
    /// known only to the process that started it.
    pub fn wait_exit(process: &ProcessInfo, timeout: Option<Duration>) -> Result<Option<u32>> {
        let timeout_ms = timeout.map_or(INFINITE, |t| {
            t.as_millis().min(u128::from(INFINITE - 1)) as u32
        });
        if let Some(handle) = live::process_handle(process) {
            return process::wait_exit(raw(&*handle), timeout_ms);
        }
        match process::open(process, SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION)? {
            Some(handle) => process::wait_exit(raw(&handle), timeout_ms),
            None => Err(Error::sys(
                format!("wait for process {}", process.pid),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it has exited and only the process that started it knows its exit code",
                ),
            )),
        }
    }

    /// Drops the handle and console this process keeps for a process of the container, once
    /// its exit status has been collected.
    pub fn forget_process(record: &Record, process: &ProcessInfo) {
        live::forget(&record.id, process);
    }
}

impl Platform for Windows {
    type Record = Record;
    type Stdio = Stdio;
    type ReleasedView = ();

    fn prepare(&self, plan: &ContainerPlan, state_dir: &Path) -> Result<Record> {
        let id = &plan.id;
        let plan_mount_point = plan.volume.mount_point.to_string_lossy().into_owned();
        let bind_filter = volume::bind_filter().is_some();
        let (layout, mount_point) =
            choose_layout(plan.volume.layout, &plan_mount_point, id, bind_filter)
                .map_err(|e| Error::container(id, format!("sandbox mount point: {e}")))?;
        if plan.volume.layout == Layout::Bind && layout == VolumeLayout::Fallback {
            log::warn!("container {id}: the bind filter (bindfltapi.dll) is not on this host: the volume is at {mount_point} without a private view");
        }
        let source = volume_source_of(plan)?;
        if layout == VolumeLayout::Fallback && plan.volume.read_only {
            log::warn!("container {id}: root.readonly cannot be enforced without the bind filter");
        }

        let mut mounts = Vec::with_capacity(plan.mounts.len());
        for mount in &plan.mounts {
            let destination = mount.destination.to_string_lossy().into_owned();
            let container_path =
                mount_destination(&destination).map_err(|e| MountError::Destination {
                    destination: destination.clone(),
                    reason: e.to_string(),
                })?;
            let source = to_backslashes(&mount.source.to_string_lossy());
            if let Err(e) = std::fs::metadata(&source) {
                return Err(MountError::Source {
                    path: source,
                    reason: format!("cannot be opened on the host: {e}"),
                }
                .into());
            }
            if mount.propagation == Propagation::Shared {
                log::debug!(
                    "container {id}: mount {container_path}: a bind-filter mapping passes what the container makes below it to {source}"
                );
            }
            mounts.push(Binding {
                container_path,
                host_path: source,
                read_only: mount.read_only,
            });
        }
        if layout == VolumeLayout::Fallback && std::fs::symlink_metadata(&mount_point).is_ok() {
            return Err(Error::container(
                id,
                format!("the sandbox mount point {mount_point} already exists; delete the container that uses it"),
            ));
        }

        let account = account_plan(&plan.account, &win::computer_name())?;
        let account = match &account {
            AccountPlan::Local { user } if account::is_local_group(user)? => {
                ephemeral_for_group(account, id)
            }
            _ => account,
        };
        limits_for(id, &plan.resources)?;

        let mut record = Record {
            id: id.clone(),
            state_dir: state_dir.to_path_buf(),
            job_name: format!("JobContainer_{id}"),
            layout,
            links: Vec::new(),
            volume_attach: VolumeAttach::default(),
            mount_point,
            plan_mount_point,
            volume: String::new(),
            volume_read_only: plan.volume.read_only,
            bindings: Vec::new(),
            mounts,
            account,
            init: None,
            io_limit: None,
            layers: None,
        };
        match source {
            VolumeSource::Directory(volume) => place_volume(&mut record, volume),
            // Mounted by `create`, which then places the volume; named here so that `delete`
            // unmounts them after any crash.
            VolumeSource::Layers(layers) => record.layers = Some(layers),
        }
        Ok(record)
    }

    fn create(
        &self,
        plan: &ContainerPlan,
        record: &mut Record,
        stdio: Stdio,
        hold: bool,
    ) -> Result<ProcessInfo> {
        let limits = limits_for(&record.id, &plan.resources)?;
        let job = Arc::new(Job::create(&record.job_name)?);
        job.apply(&limits, None)?;
        record.io_limit = limits.io;
        if let Err(e) = job.enable_io_attribution() {
            log::debug!("container {}: {e}", record.id);
        }
        let notifier = match Notifier::start(&job) {
            Ok(notifier) => Some(Arc::new(notifier)),
            Err(e) => {
                log::warn!(
                    "container {}: no job notifications, waits will poll: {e}",
                    record.id
                );
                None
            }
        };
        live::insert(&record.id, Arc::clone(&job), notifier);
        if let Some(layers) = &record.layers {
            let volume = layers::mount(layers)?;
            place_volume(record, volume);
        }
        volume::setup(record, &job)?;

        account::enable_process_privileges();
        let password = match &record.account {
            AccountPlan::Ephemeral { group, user } => {
                Some(account::create_ephemeral(&record.id, user, group)?)
            }
            _ => None,
        };
        let token = Arc::new(account::token(&record.account, password.as_deref())?);
        live::set_token(&record.id, Arc::clone(&token));

        // Init starts suspended: it gets its handle to the job first (so the job lives as long
        // as init, even after this process exits), then runs unless held for `start`.
        let launched = start_process(record, &plan.process, stdio, &token, &job, true)?;
        record.init = Some(InitRecord {
            pid: launched.info.pid,
            thread_id: launched.thread_id,
            start_time: launched.info.start_time,
        });
        let handed = job
            .duplicate_into(raw(&launched.process), JOB_OBJECT_QUERY)
            .and_then(|()| match hold {
                true => Ok(()),
                false => process::resume_thread(launched.info.pid, launched.thread_id)
                    .and_then(|()| mark_released(record)),
            });
        if let Err(e) = handed {
            process::abandon(raw(&launched.process));
            return Err(e);
        }
        let info = launched.info;
        live::add_process(&record.id, launched);
        Ok(info)
    }

    fn init(&self, record: &Record) -> Option<ProcessInfo> {
        record.init.map(|init| ProcessInfo {
            pid: init.pid,
            start_time: init.start_time,
        })
    }

    fn release(&self, record: &Record) -> Result<()> {
        let init = record
            .init
            .ok_or_else(|| Error::container(&record.id, "there is no init process to release"))?;
        let info = ProcessInfo {
            pid: init.pid,
            start_time: init.start_time,
        };
        if process::open(&info, SYNCHRONIZE)?.is_none() {
            return Err(Error::container(
                &record.id,
                format!("init process {} has exited", init.pid),
            ));
        }
        process::resume_thread(init.pid, init.thread_id)?;
        mark_released(record)
    }

    fn is_held(&self, record: &Record) -> bool {
        record.init.is_some() && !record.state_dir.join(RELEASED_FILE).exists()
    }

    fn exec(
        &self,
        _plan: &ContainerPlan,
        record: &Record,
        process: &ProcessPlan,
        stdio: Stdio,
    ) -> Result<ProcessInfo> {
        let (job, _) = job_for(record)?.ok_or_else(|| stopped(record))?;
        account::enable_process_privileges();
        let token = token_for(record)?;
        let launched = start_process(record, process, stdio, &token, &job, false)?;
        let info = launched.info;
        live::add_process(&record.id, launched);
        Ok(info)
    }

    fn is_running(&self, process: &ProcessInfo) -> bool {
        process::is_running(process)
    }

    fn signal(&self, process: &ProcessInfo, signal: i32) -> Result<()> {
        match signal_action(signal).map_err(|e| Error::sys("signal", std::io::Error::other(e)))? {
            SignalAction::Probe => process::probe(process),
            SignalAction::Terminate => process::terminate(process),
            SignalAction::Control(event) => process::control(process, event),
        }
    }

    fn signal_job(&self, record: &Record, signal: i32) -> Result<()> {
        let action =
            signal_action(signal).map_err(|e| Error::sys("signal", std::io::Error::other(e)))?;
        let Some((job, _)) = job_for(record)? else {
            return Ok(());
        };
        match action {
            SignalAction::Probe => Ok(()),
            SignalAction::Terminate => job.terminate(TERMINATED_EXIT_CODE),
            SignalAction::Control(event) => process::control_job(&job, event),
        }
    }

    fn job_pids(&self, record: &Record) -> Result<Vec<u32>> {
        match job_for(record)? {
            Some((job, _)) => job.pids(),
            None => Ok(Vec::new()),
        }
    }

    fn wait_job_empty(&self, record: &Record, timeout: Duration) -> Result<bool> {
        match job_for(record)? {
            Some((job, notifier)) => job::wait_empty(&job, notifier.as_deref(), timeout),
            None => Ok(true),
        }
    }

    fn set_frozen(&self, record: &Record, frozen: bool) -> Result<()> {
        if !frozen {
            return thaw(record);
        }
        let marker = record.state_dir.join(FROZEN_FILE);
        if marker.exists() {
            return Ok(());
        }
        let (job, _) = job_for(record)?.ok_or_else(|| stopped(record))?;
        let threads = process::suspend_job(&job)?;
        let text = serde_json::to_vec(&threads).map_err(|e| {
            Error::container(&record.id, format!("encode the suspended threads: {e}"))
        })?;
        let tmp = record.state_dir.join(".frozen.json.tmp");
        let written = std::fs::write(&tmp, text)
            .map_err(|e| Error::io("write", &tmp, e))
            .and_then(|()| {
                std::fs::rename(&tmp, &marker).map_err(|e| Error::io("rename", &marker, e))
            });
        if written.is_err() {
            process::resume_threads(&threads);
        }
        written
    }

    fn is_frozen(&self, record: &Record) -> bool {
        record.state_dir.join(FROZEN_FILE).exists()
    }

    fn update(&self, record: &mut Record, resources: &ResourceRequest) -> Result<()> {
        let limits = limits_for(&record.id, resources)?;
        let (job, _) = job_for(record)?.ok_or_else(|| stopped(record))?;
        job.apply(&limits, record.io_limit)?;
        record.io_limit = limits.io;
        Ok(())
    }

    fn stats(&self, record: &Record) -> Result<JobStats> {
        match job_for(record)? {
            Some((job, _)) => job.stats(),
            None => Ok(JobStats::default()),
        }
    }

    /// A job object counts no OOM kills (its stats report none): nothing to open or read.
    fn oom_kills(&self, _record: &Record) -> Result<u64> {
        Ok(0)
    }

    fn supervise_detached(
        &self,
        record: &Record,
        init: &ProcessInfo,
        grace: Duration,
    ) -> Result<()> {
        supervisor::spawn(record, init, grace)
    }

    /// No view is kept apart from the job's processes here: nothing to let go of early.
    fn release_view(&self, _record: &Record) -> Result<()> {
        Ok(())
    }

    fn destroy(&self, record: &Record) -> Result<()> {
        let mut first: Option<Error> = None;
        let mut note = |result: Result<()>| {
            if let Err(e) = result {
                log::warn!("container {}: {e}", record.id);
                first.get_or_insert(e);
            }
        };
        let live = live::remove(&record.id);
        let job = match &live {
            Some(container) => Some(Arc::clone(&container.job)),
            None => match Job::open(&record.job_name) {
                Ok(job) => job.map(Arc::new),
                Err(e) => {
                    note(Err(e));
                    None
                }
            },
        };
        if let Some(job) = &job {
            note(thaw(record));
            if job.active_processes().unwrap_or(1) > 0 {
                note(job.terminate(TERMINATED_EXIT_CODE));
                let notifier = live.as_ref().and_then(|c| c.notifier.as_deref());
                note(job::wait_empty(job, notifier, Duration::from_secs(10)).map(|_| ()));
            }
        }
        note(volume::teardown(record, job.as_deref()));
        if let Some(layers) = &record.layers {
            note(layers::unmount(layers));
        }
        if let Some(user) = account::ephemeral_user(&record.account) {
            note(account::delete_ephemeral(&record.id, user));
        }
        for name in [FROZEN_FILE, RELEASED_FILE] {
            let marker = record.state_dir.join(name);
            if marker.exists() {
                note(std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e)));
            }
        }
        // Closing this process's job handle: KILL_ON_JOB_CLOSE ends anything still left once no
        // other handle is open.
        drop(job);
        drop(live);
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
