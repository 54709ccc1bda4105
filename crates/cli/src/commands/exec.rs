use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hostprocess_engine::spec::{Process, Spec};
use hostprocess_engine::Engine;

use crate::terminal;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Command and arguments (unless --process gives a process.json).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json with the whole process.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process has started, leaving it running.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty's controller end (with --tty).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Ignored: every process of a HostProcess container runs as the container's account.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Pass this many extra descriptors (3, 4, …) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

pub fn run(args: Args, engine: &Engine) -> Result<u8> {
    let container = engine.load(&args.id)?;
    let process = match &args.process {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("read '{}'", path.display()))?;
            serde_json::from_slice::<Process>(&text)
                .with_context(|| format!("parse process '{}'", path.display()))?
        }
        None => {
            if args.command.is_empty() {
                bail!("exec needs a command or --process");
            }
            // Like runc: start from the container's own process, then apply the flags.
            let mut process = Spec::load(container.bundle())
                .ok()
                .and_then(|s| s.process)
                .unwrap_or_default();
            process.args = args.command.clone();
            process.command_line = None;
            process.terminal = args.tty;
            if let Some(cwd) = &args.cwd {
                process.cwd = cwd.clone();
            }
            process.env.extend(args.env.iter().cloned());
            process
        }
    };
    if args.user.is_some() {
        log::debug!("exec --user ignored: the container's account is fixed");
    }
    let stdio = terminal::stdio(
        process.terminal,
        args.console_socket.as_deref(),
        args.detach,
        args.preserve_fds,
    )?;
    let signals = if args.detach {
        None
    } else {
        Some(super::ForwardedSignals::block()?)
    };
    let info = container.exec(&process, stdio)?;
    if let Some(pid_file) = &args.pid_file {
        super::write_pid_file(pid_file, info.pid)?;
    }
    match signals {
        Some(signals) => signals.wait(info.pid),
        None => Ok(0),
    }
}
