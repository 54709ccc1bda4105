use std::path::PathBuf;

use anyhow::Result;
use hostprocess_engine::{CreateOptions, Engine};

use crate::terminal;

#[derive(clap::Args)]
pub struct Args {
    pub id: String,
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not wait: leave the container running.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (delete it later).
    #[arg(long)]
    pub keep: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long = "no-pivot", hide = true)]
    pub no_pivot: bool,
    #[arg(long = "no-new-keyring", hide = true)]
    pub no_new_keyring: bool,
}

pub fn run(args: Args, engine: &Engine) -> Result<u8> {
    let bundle = super::bundle_or_cwd(args.bundle)?;
    let (_, plan) = engine.plan(&args.id, &bundle, None)?;
    let stdio = terminal::stdio(
        plan.process.terminal,
        args.console_socket.as_deref(),
        args.detach,
        args.preserve_fds,
    )?;
    if !args.detach {
        // Daemonized descendants of the container are reaped here, not left as zombies.
        super::set_subreaper();
    }
    let container = engine.create_planned(
        plan,
        CreateOptions {
            stdio,
            start_now: true,
            ..CreateOptions::default()
        },
    )?;
    let init = container.init().map(|i| i.pid).unwrap_or(0);
    if let Some(pid_file) = &args.pid_file {
        super::write_pid_file(pid_file, init)?;
    }
    if args.detach {
        container.supervise_detached()?;
        return Ok(0);
    }
    let code = super::wait_forwarding_signals(init)?;
    container.terminate_rest()?;
    if !args.keep {
        container.delete(true)?;
    }
    Ok(code)
}
