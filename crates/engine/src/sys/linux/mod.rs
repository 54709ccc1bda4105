//! Linux: the job is a cgroup (v2, or v1/hybrid), the view a mount namespace that is a slave of
//! the host's, the volume an overlay over the image, the account a uid/gid.

pub mod account;
pub mod cgroup;
pub mod process;
pub mod volume;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::process::{add_account_env, resolve, ResolvedProcess};
use crate::plan::{ContainerPlan, ProcessPlan, ResourceRequest};
use crate::sys::{JobStats, Platform, ProcessInfo, SIGKILL};

use account::{Account, Resolution};
use cgroup::CgroupRecord;
use volume::VolumeRecord;

#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

/// Everything made for one container, named before it is made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub cgroup: CgroupRecord,
    pub volume: VolumeRecord,
    pub resolution: Resolution,
    /// Set once the account is settled (an ephemeral uid is claimed at create).
    pub account: Option<Account>,
    pub exec_fifo: PathBuf,
    pub init: Option<ProcessInfo>,
    /// The container's state directory: with the id, the owner of its ephemeral uid claim.
    #[serde(default)]
    pub state_dir: PathBuf,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            id: String::new(),
            cgroup: CgroupRecord::default(),
            volume: VolumeRecord::default(),
            resolution: Resolution::Fixed(Account::default()),
            account: None,
            exec_fifo: PathBuf::new(),
            init: None,
            state_dir: PathBuf::new(),
        }
    }
}

/// Standard I/O of a new process. `None` is `/dev/null`.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// `stdin` is a terminal (a pty's follower end) that becomes the controlling terminal.
    pub terminal: bool,
    /// Descriptors 3 .. 3+N of the caller that the process keeps (runc's `--preserve-fds`).
    pub preserve_fds: u32,
}

/// The number of CPUs online.
pub fn host_cpus() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u64
    } else {
        1
    }
}

/// The job's path below each hierarchy's root: `linux.cgroupsPath` as a cgroupfs path, or
/// systemd's `slice:prefix:name` expanded as runc's systemd driver expands it (made directly in
/// cgroupfs, so a node's tools find the layout they expect), with its systemd unit.
fn job_path(plan: &ContainerPlan) -> Result<(String, Option<cgroup::systemd::Unit>)> {
    match &plan.job_path {
        None => Ok((format!("/hostprocess/{}", plan.id), None)),
        Some(path) if cgroup::systemd::is_systemd_path(path) => cgroup::systemd::Unit::parse(path)
            .map(|unit| (unit.relative_path(), Some(unit)))
            .map_err(|e| Error::Spec(format!("linux.cgroupsPath {path:?}: {e}"))),
        Some(path) if path.split('/').any(|c| c == "..") => Err(Error::Spec(format!(
            "linux.cgroupsPath {path:?} must not contain '..'"
        ))),
        Some(path) => Ok((path.clone(), None)),
    }
}

fn claim_owner(record: &Record) -> account::ClaimOwner<'_> {
    account::ClaimOwner {
        id: &record.id,
        state_dir: &record.state_dir,
    }
}

fn the_account(record: &Record) -> Result<&Account> {
    record
        .account
        .as_ref()
        .ok_or_else(|| Error::container(&record.id, "the container's account is not set up"))
}

/// Resolves the process inside the view as `resolve` sees it, creating a missing working
/// directory inside the volume.
fn resolve_in_view(plan: &ContainerPlan, process: &ProcessPlan) -> Result<ResolvedProcess> {
    let mount_point = &plan.volume.mount_point;
    let resolved = resolve(process, mount_point, &volume::file_kind)?;
    if resolved.create_cwd {
        volume::make_dir_in_volume(mount_point, &resolved.cwd)?;
    }
    Ok(resolved)
}

/// [`resolve_in_view`] at a stage of the view's building. Before the links into the volume,
/// only a resolution that makes nothing and whose working directory is outside the volume or
/// the volume itself (the usual one: a spec's `/`), never below it, where a link may yet be
/// made over it while init enters it; an error there only means that init is prepared once
/// the view is complete. The executable is looked up again when init runs it, by its path.
fn resolve_at(plan: &ContainerPlan, stage: volume::Stage) -> Result<ResolvedProcess> {
    let mount_point = &plan.volume.mount_point;
    if stage == volume::Stage::Complete {
        return resolve_in_view(plan, &plan.process);
    }
    let resolved = resolve(&plan.process, mount_point, &volume::file_kind)?;
    let below_the_volume = resolved.cwd.starts_with(mount_point) && resolved.cwd != *mount_point;
    if resolved.create_cwd || below_the_volume {
        return Err(Error::container(
            &plan.id,
            "the working directory is entered once the view is complete",
        ));
    }
    Ok(resolved)
}

/// The process the same for `exec`: what it runs, with which arguments and environment, where.
/// Before and after the links it always is: a link reaches the very path its mount was attached
/// at (`Reach`'s target is the destination), so every lookup through one finds what the lookup
/// of that path, made first, found; and the working directory is never below the volume.
fn same_process(a: &ResolvedProcess, b: &ResolvedProcess) -> bool {
    (&a.executable, &a.args, &a.env, &a.cwd) == (&b.executable, &b.args, &b.env, &b.cwd)
}

fn launch(
    plan: &ContainerPlan,
    record: &Record,
    mut resolved: ResolvedProcess,
    process: &ProcessPlan,
    exec_fifo: Option<PathBuf>,
) -> Result<process::Launch> {
    let account = the_account(record)?.clone();
    let home = if account.home.is_empty() {
        plan.volume.mount_point.to_string_lossy().into_owned()
    } else {
        account.home.clone()
    };
    add_account_env(&mut resolved.env, &home, &account.name);
    Ok(process::Launch {
        executable: resolved.executable,
        args: resolved.args,
        env: resolved.env,
        cwd: resolved.cwd,
        cgroup_v2: record.cgroup.unified.clone(),
        v1_tasks: cgroup::v1_tasks_files(&record.cgroup),
        pids_dir: plan
            .resources
            .pids_limit
            .and_then(|_| cgroup::controller_dir(&record.cgroup, "pids"))
            .map(Path::to_path_buf),
        mount_ns: record.volume.ns_pin.clone(),
        network_ns: plan.pod_network.clone(),
        account,
        rlimits: process.rlimits.clone(),
        no_new_privileges: process.no_new_privileges,
        exec_fifo,
        new_session: true,
    })
}

/// The job's systemd unit and a connection to systemd, when the job is a unit and systemd is
/// init. A job without a unit never connects (a connection to the system bus is a socket, an
/// authentication exchange and a `Hello` call).
fn with_systemd(
    record: &CgroupRecord,
) -> Option<(&cgroup::systemd::Unit, zbus::blocking::Connection)> {
    let unit = record.unit.as_ref()?;
    Some((unit, cgroup::scope::connect_to_systemd()?))
}

/// The identity of the job: device and inode of each of its cgroup directories. A job made
/// again at the same path (its id reused after a delete) has other inodes.
fn job_identity(record: &Record) -> Vec<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    cgroup::dirs(&record.cgroup)
        .into_iter()
        .map(|dir| std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}

impl Platform for Linux {
    type Record = Record;
    type Stdio = Stdio;
    type ReleasedView = Option<OwnedFd>;

    fn prepare(&self, plan: &ContainerPlan, state_dir: &Path) -> Result<Record> {
        let (relative, unit) = job_path(plan)?;
        let layout = cgroup::Layout::detect()?;
        let mut cgroup = cgroup::plan_record(&layout, &relative, &plan.resources);
        cgroup.made = state_dir.join("cgroups-made");
        cgroup.unit = unit;
        if cgroup.unified.is_none() && cgroup.v1.is_empty() {
            return Err(Error::container(
                &plan.id,
                "no cgroup filesystem is mounted on this host",
            ));
        }
        // A job directory that exists already is refused by its mkdir in `create` (the claim
        // on the path, which a look here could not make race-free anyway), and the failed
        // create removes what it made: no stat of each directory first.
        volume::check(plan, state_dir)?;
        let resolution = account::resolve(&plan.account, &plan.accounts)?;
        Ok(Record {
            id: plan.id.clone(),
            cgroup,
            volume: volume::plan_record(plan, state_dir),
            resolution,
            account: None,
            exec_fifo: state_dir.join("exec.fifo"),
            init: None,
            state_dir: state_dir.to_path_buf(),
        })
    }

    fn create(
        &self,
        plan: &ContainerPlan,
        record: &mut Record,
        stdio: Stdio,
        hold: bool,
    ) -> Result<ProcessInfo> {
        record.account = Some(match &record.resolution {
            Resolution::Fixed(account) => account.clone(),
            Resolution::EphemeralInGroup { group, gid, pool } => {
                account::claim_ephemeral(claim_owner(record), group, *gid, pool)?
            }
        });
        let owner = record.account.as_ref().map_or((0, 0), |a| (a.uid, a.gid));
        let fifo = if hold {
            process::make_exec_fifo(&record.exec_fifo)?;
            Some(record.exec_fifo.clone())
        } else {
            None
        };
        if plan.volume.layout == crate::plan::Layout::Symlink {
            volume::make_host_mount_point(plan, &mut record.volume)?;
        }
        let init = std::thread::scope(|scope| {
            let view = volume::View::start(scope, plan, &record.volume, owner, hold, |stage| {
                resolve_at(plan, stage)
            })?;
            // The job's cgroups are made while another thread builds a bind-layout view.
            let job = cgroup::create(&mut record.cgroup, &plan.resources, host_cpus());
            // With links to make, the process resolved before them is kept to compare.
            let (resolved, links) = match view.finish(job)? {
                volume::Ready::Complete(resolved) => (resolved, None),
                volume::Ready::Links { first, rest } => (first.clone(), Some((first, rest))),
            };
            // A held init is prepared while the builder makes the view's links into the volume,
            // when it makes any. On an error, the caller's teardown ends it with the job.
            let launch = launch(plan, record, resolved, &plan.process, fifo)?;
            let init = process::spawn(&launch, stdio);
            let Some((first, links)) = links else {
                return init;
            };
            let complete = links.join();
            let (init, complete) = (init?, complete?);
            if !same_process(&first, &complete) {
                return Err(Error::container(
                    &plan.id,
                    format!(
                        "the view's links changed the process from {:?} to {:?}",
                        first.executable, complete.executable
                    ),
                ));
            }
            Ok(init)
        })?;
        record.init = Some(init);
        // Connects to systemd only for a job that is a unit.
        if let Some((unit, bus)) = with_systemd(&record.cgroup) {
            let properties = cgroup::scope::scope_properties(
                &unit.slice,
                init.pid,
                record.cgroup.layout,
                &plan.resources,
                host_cpus(),
            );
            cgroup::scope::start(&bus, &unit.name, &properties)?;
        }
        Ok(init)
    }

    fn init(&self, record: &Record) -> Option<ProcessInfo> {
        record.init
    }

    fn release(&self, record: &Record) -> Result<()> {
        let init = record
            .init
            .ok_or_else(|| Error::container(&record.id, "the container has no init process"))?;
        process::release(&record.exec_fifo, &init)
    }

    fn is_held(&self, record: &Record) -> bool {
        record
            .init
            .is_some_and(|init| process::holds_exec_fifo(&init, &record.exec_fifo))
    }

    fn exec(
        &self,
        plan: &ContainerPlan,
        record: &Record,
        process: &ProcessPlan,
        stdio: Stdio,
    ) -> Result<ProcessInfo> {
        let resolved = volume::in_view(&record.volume, || resolve_in_view(plan, process))??;
        let launch = launch(plan, record, resolved, process, None)?;
        process::spawn(&launch, stdio)
    }

    fn is_running(&self, process: &ProcessInfo) -> bool {
        process::is_running(process)
    }

    fn signal(&self, process: &ProcessInfo, signal: i32) -> Result<()> {
        if !process::is_running(process) {
            return Err(Error::sys(
                format!("signal process {}", process.pid),
                std::io::Error::from_raw_os_error(libc::ESRCH),
            ));
        }
        // Any number the kernel takes: 0 (is it there?) and the real-time signals too.
        // SAFETY: kill(2) has no memory effects.
        if unsafe { libc::kill(process.pid as libc::pid_t, signal) } < 0 {
            return Err(Error::sys(
                format!("send signal {signal} to process {}", process.pid),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn signal_job(&self, record: &Record, signal: i32) -> Result<()> {
        cgroup::signal_all(&record.cgroup, signal)
    }

    fn job_pids(&self, record: &Record) -> Result<Vec<u32>> {
        cgroup::pids(&record.cgroup)
    }

    fn wait_job_empty(&self, record: &Record, timeout: Duration) -> Result<bool> {
        cgroup::wait_empty(&record.cgroup, timeout)
    }

    fn set_frozen(&self, record: &Record, frozen: bool) -> Result<()> {
        cgroup::set_frozen(&record.cgroup, frozen)
    }

    fn is_frozen(&self, record: &Record) -> bool {
        cgroup::is_frozen(&record.cgroup)
    }

    fn update(&self, record: &mut Record, resources: &ResourceRequest) -> Result<()> {
        let layout = cgroup::Layout::detect()?;
        let wanted = cgroup::plan_record(&layout, &record.cgroup.relative, resources);
        cgroup::join_missing(&mut record.cgroup, &wanted)?;
        cgroup::apply(
            &record.cgroup,
            &cgroup::update_settings(&record.cgroup, resources, host_cpus()),
        )?;
        if let Some((unit, bus)) = with_systemd(&record.cgroup) {
            let limits =
                cgroup::scope::limit_properties(record.cgroup.layout, resources, host_cpus());
            cgroup::scope::set_limits(&bus, &unit.name, &limits)?;
        }
        Ok(())
    }

    fn stats(&self, record: &Record) -> Result<JobStats> {
        Ok(cgroup::stats(&record.cgroup))
    }

    fn oom_kills(&self, record: &Record) -> Result<u64> {
        Ok(cgroup::stats::oom_kills(&record.cgroup))
    }

    fn supervise_detached(
        &self,
        record: &Record,
        init: &ProcessInfo,
        grace: Duration,
    ) -> Result<()> {
        let identity = job_identity(record);
        // SAFETY: pidfd_open(2) returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, init.pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(Error::sys("pidfd_open", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is fresh and owned from here.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the caller is single-threaded here (the CLI); the child only polls, signals
        // and exits.
        match unsafe { libc::fork() } {
            -1 => Err(Error::sys("fork", std::io::Error::last_os_error())),
            0 => {
                // SAFETY: plain system calls in the watcher process, which never returns.
                unsafe {
                    libc::setsid();
                    process::close_all_but(3, pidfd.as_raw_fd());
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    for target in 0..3 {
                        libc::dup2(null, target);
                    }
                    let mut pfd = libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    while libc::poll(&mut pfd, 1, -1) < 0 {}
                }
                // Stops once the job is gone or replaced: its identity is its directories'.
                let _ = crate::sys::terminate_rest(&Linux, record, grace, || {
                    job_identity(record) == identity
                });
                // SAFETY: leave without running the caller's destructors.
                unsafe { libc::_exit(0) }
            }
            _ => Ok(()),
        }
    }

    fn destroy_unrecorded(&self, state_dir: &Path) -> Result<()> {
        volume::destroy_unrecorded(state_dir)?;
        match std::fs::remove_file(state_dir.join("exec.fifo")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", state_dir.join("exec.fifo"), e))
            }
            _ => Ok(()),
        }
    }

    fn release_view(&self, record: &Record) -> Result<Option<OwnedFd>> {
        volume::release_view(&record.volume)
    }

    fn destroy(&self, record: &Record) -> Result<()> {
        // A job this container did not make (it lost the race for the path) is another's.
        let ownership = cgroup::Ownership::of(&record.cgroup);
        let owned = ownership.owns_job(&record.cgroup);
        if owned && !cgroup::is_empty(&record.cgroup)? {
            // A frozen job cannot die: thaw it after the kill is queued.
            cgroup::signal_all(&record.cgroup, SIGKILL)?;
            if cgroup::is_frozen(&record.cgroup) {
                cgroup::set_frozen(&record.cgroup, false)?;
            }
            cgroup::wait_empty(&record.cgroup, Duration::from_secs(10))?;
        }
        let scope = match (&record.cgroup.unit, owned) {
            (Some(unit), true) => cgroup::scope::connect_to_systemd()
                .map_or(Ok(()), |bus| cgroup::scope::stop(&bus, &unit.name)),
            _ => Ok(()),
        };
        let volume = volume::destroy(&record.volume);
        let job = scope.and(cgroup::destroy_with(&record.cgroup, &ownership));
        let account = match (&record.resolution, &record.account) {
            (
                _,
                Some(Account {
                    ephemeral_claim: Some(claim),
                    ..
                }),
            ) => account::release_claim(claim, claim_owner(record)),
            (Resolution::EphemeralInGroup { pool, .. }, _) => {
                account::sweep_claims(claim_owner(record), pool)
            }
            _ => Ok(()),
        };
        let _ = std::fs::remove_file(&record.exec_fifo);
        volume.and(job).and(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan running `/bin/true` in `cwd`, with its volume at `mount_point`.
    fn plan(cwd: &Path, mount_point: &Path) -> ContainerPlan {
        let options = crate::plan::PlanOptions::new(Path::new("/run/hostprocess-test"));
        let spec = crate::spec::example_spec(vec!["/bin/true".into()]);
        let mut plan =
            crate::plan::plan("c1", Path::new("/bundle"), &spec, &options, None).unwrap();
        plan.volume.mount_point = mount_point.to_path_buf();
        plan.process.cwd = cwd.to_path_buf();
        plan
    }

    #[test]
    fn init_is_prepared_before_the_links_only_with_a_working_directory_not_below_the_volume() {
        let volume = tempfile::tempdir().unwrap();
        let in_volume = volume.path().join("data");
        std::fs::create_dir(&in_volume).unwrap();
        let host = tempfile::tempdir().unwrap();

        let outside = plan(host.path(), volume.path());
        let early = resolve_at(&outside, volume::Stage::BeforeLinks).unwrap();
        assert_eq!(early.cwd, host.path());
        assert_eq!(
            resolve_at(&outside, volume::Stage::Complete).unwrap(),
            early
        );

        // The volume itself: a link is made inside it, never over it.
        let root = plan(volume.path(), volume.path());
        let early = resolve_at(&root, volume::Stage::BeforeLinks).unwrap();
        assert_eq!(early.cwd, volume.path());

        // A link may yet be made over a directory of the volume, or a missing one made.
        let inside = plan(&in_volume, volume.path());
        assert!(resolve_at(&inside, volume::Stage::BeforeLinks).is_err());
        assert_eq!(
            resolve_at(&inside, volume::Stage::Complete).unwrap().cwd,
            in_volume
        );
        let missing = plan(&volume.path().join("new"), volume.path());
        assert!(resolve_at(&missing, volume::Stage::BeforeLinks).is_err());
        assert!(!volume.path().join("new").exists(), "made before the links");
    }
}
