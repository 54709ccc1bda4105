use anyhow::Result;
use hostprocess_engine::{CreateOptions, Engine};

use super::BundleArgs;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    #[command(flatten)]
    pub bundle: BundleArgs,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let args = args.bundle;
    let (plan, stdio) = args.plan(engine, true)?;
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
