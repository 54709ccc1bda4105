use anyhow::Result;
use hostprocess_engine::{CreateOptions, Engine};

use super::BundleArgs;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Do not wait: leave the container running.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (delete it later).
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args, engine: &Engine) -> Result<u8> {
    let (plan, stdio) = args.bundle.plan(engine, args.detach)?;
    let signals = if args.detach {
        None
    } else {
        // Daemonized descendants of the container are reaped here, not left as zombies.
        super::set_subreaper();
        Some(super::ForwardedSignals::block()?)
    };
    let container = engine.create_planned(
        plan,
        CreateOptions {
            stdio,
            start_now: true,
            ..CreateOptions::default()
        },
    )?;
    let init = container.init().map(|i| i.pid).unwrap_or(0);
    if let Some(pid_file) = &args.bundle.pid_file {
        super::write_pid_file(pid_file, init)?;
    }
    let Some(signals) = signals else {
        container.supervise_detached()?;
        return Ok(0);
    };
    let code = signals.wait(init)?;
    container.terminate_rest()?;
    if !args.keep {
        container.delete(true)?;
    }
    Ok(code)
}
