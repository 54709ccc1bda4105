//! One module per verb; each parses its flags and calls the engine.

mod completion;
pub mod create;
pub mod delete;
mod events;
mod exec;
mod features;
pub mod kill;
mod lint;
mod list;
mod man;
mod node;
mod node_check;
mod node_config;
mod pause;
mod ps;
pub mod run;
mod spec;
pub mod start;
pub mod state;
mod update;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use hostprocess_engine::plan::PlanOptions;
use hostprocess_engine::Engine;

#[derive(Subcommand)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[command(defer = true)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(create::Args),
    /// Let a created container run its process.
    Start(start::Args),
    /// Create and start a container, attached to its output, and exit with its exit code.
    Run(run::Args),
    /// Print the state of a container as JSON.
    State(state::Args),
    /// Send a signal to the container's init, or to every process with --all.
    Kill(kill::Args),
    /// Delete a container and everything it made.
    Delete(delete::Args),
    /// Run another process in a container.
    Exec(exec::Args),
    /// List the processes of a container.
    Ps(ps::Args),
    /// List containers.
    List(list::Args),
    /// Print container events (stats, OOM).
    Events(events::Args),
    /// Freeze every process of a container.
    Pause(pause::Args),
    /// Thaw a paused container.
    Resume(pause::Args),
    /// Change a running container's limits.
    Update(update::Args),
    /// Print what this runtime supports, as JSON.
    Features,
    /// Write a ready HostProcess config.json into a bundle.
    Spec(spec::Args),
    /// Check Kubernetes manifests against the HostProcess rules.
    Lint(lint::Args),
    /// Install the runtime on this node, remove it, or check the node's prerequisites.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Write the manual pages (hostprocess.1 and one per verb) into a directory.
    Man(man::Args),
}

pub fn engine(root: &Path) -> Engine {
    Engine::new(PlanOptions::from_env(root))
}

/// Runs a verb; the value is the process exit code.
pub fn dispatch(command: Command, engine: &Engine) -> Result<u8> {
    match command {
        Command::Create(a) => create::run(a, engine).map(|()| 0),
        Command::Start(a) => start::run(a, engine).map(|()| 0),
        Command::Run(a) => run::run(a, engine),
        Command::State(a) => state::run(a, engine).map(|()| 0),
        Command::Kill(a) => kill::run(a, engine).map(|()| 0),
        Command::Delete(a) => delete::run(a, engine).map(|()| 0),
        Command::Exec(a) => exec::run(a, engine),
        Command::Ps(a) => ps::run(a, engine).map(|()| 0),
        Command::List(a) => list::run(a, engine).map(|()| 0),
        Command::Events(a) => events::run(a, engine).map(|()| 0),
        Command::Pause(a) => pause::pause(a, engine).map(|()| 0),
        Command::Resume(a) => pause::resume(a, engine).map(|()| 0),
        Command::Update(a) => update::run(a, engine).map(|()| 0),
        Command::Features => features::run().map(|()| 0),
        Command::Spec(a) => spec::run(a).map(|()| 0),
        Command::Lint(a) => lint::run(a),
        Command::Completion(a) => completion::run(a).map(|()| 0),
        Command::Man(a) => man::run(a).map(|()| 0),
        Command::Node(c) => node::run(c),
    }
}

// The flags `create` and `run` share with runc (a plain comment: a doc comment would become
// the help text of both commands).
#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct BundleArgs {
    /// Container id.
    pub id: String,
    /// Path to the bundle (default: current directory).
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
    /// Write the init process's pid here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty's controller end (process.terminal).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra descriptors (3, 4, …) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility (a HostProcess container has no root to pivot).
    #[arg(long = "no-pivot", hide = true)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-new-keyring", hide = true)]
    pub no_new_keyring: bool,
}

impl BundleArgs {
    /// Plans the bundle and sets up the init's stdio (a detached init needs a console socket
    /// for a terminal).
    pub fn plan(
        &self,
        engine: &Engine,
        detached: bool,
    ) -> Result<(
        hostprocess_engine::plan::ContainerPlan,
        hostprocess_engine::container::Stdio,
    )> {
        let bundle = bundle_or_cwd(self.bundle.clone())?;
        let (_, plan) = engine.plan(&self.id, &bundle, None)?;
        let stdio = crate::terminal::stdio(
            plan.process.terminal,
            self.console_socket.as_deref(),
            detached,
            self.preserve_fds,
        )?;
        Ok((plan, stdio))
    }
}

/// Writes a pid file atomically, as runc does: into a new file of a fresh name beside it
/// (`O_EXCL`, so nothing planted there is written through), then renamed over it.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .with_context(|| format!("pid file '{}' names no file", path.display()))?;
    for _ in 0..16 {
        let mut random = std::collections::hash_map::RandomState::new().build_hasher();
        random.write_u32(pid);
        let tmp = path.with_file_name(format!(
            ".{}.{:016x}",
            name.to_string_lossy(),
            random.finish()
        ));
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create '{}'", tmp.display())),
        };
        let written = file
            .write_all(pid.to_string().as_bytes())
            .with_context(|| format!("write '{}'", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("write pid file '{}'", path.display()))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        return written;
    }
    anyhow::bail!(
        "write pid file '{}': no free temporary name beside it",
        path.display()
    )
}

/// A bundle path, defaulting to the current directory.
pub fn bundle_or_cwd(bundle: Option<PathBuf>) -> Result<PathBuf> {
    match bundle {
        Some(b) => Ok(b),
        None => std::env::current_dir().context("current directory"),
    }
}

/// The termination signals `run` and `exec` forward to the container's process. They are
/// blocked before the process is made, so one that arrives while it starts is forwarded, not
/// fatal to the CLI (new processes start with no signal blocked).
pub struct ForwardedSignals(nix::sys::signal::SigSet);

impl ForwardedSignals {
    pub fn block() -> Result<ForwardedSignals> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
        ] {
            set.add(s);
        }
        set.thread_block().context("block signals")?;
        Ok(ForwardedSignals(set))
    }

    /// Waits for the child process `pid`, forwarding every other blocked signal to it; returns
    /// a shell-style exit code (128 + signal when it was killed).
    pub fn wait(self, pid: u32) -> Result<u8> {
        use nix::sys::signal::Signal;
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let target = nix::unistd::Pid::from_raw(pid as i32);
        loop {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p == target => return Ok(code as u8),
                    Ok(WaitStatus::Signaled(p, sig, _)) if p == target => {
                        return Ok(128 + sig as u8)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            let signal = self.0.wait().context("wait for a signal")?;
            if signal != Signal::SIGCHLD {
                let _ = nix::sys::signal::kill(target, signal);
            }
        }
    }
}

/// Runs one container process to the end for `run` and `exec`: optional pid file, then wait.
pub fn set_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}
