use std::path::PathBuf;

use anyhow::Result;
use hostprocess_engine::{CreateOptions, Engine};

use crate::terminal;

#[derive(clap::Args)]
pub struct Args {
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

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let bundle = super::bundle_or_cwd(args.bundle)?;
    let (_, plan) = engine.plan(&args.id, &bundle, None)?;
    let stdio = terminal::stdio(
        plan.process.terminal,
        args.console_socket.as_deref(),
        true,
        args.preserve_fds,
    )?;
    let container = engine.create_planned(
        plan,
        CreateOptions {
            stdio,
            ..CreateOptions::default()
        },
    )?;
    let init = container.init().map(|i| i.pid).unwrap_or(0);
    if let Some(pid_file) = &args.pid_file {
        if let Err(e) = super::write_pid_file(pid_file, init) {
            let _ = container.delete(true);
            return Err(e);
        }
    }
    container.supervise_detached()?;
    Ok(())
}
