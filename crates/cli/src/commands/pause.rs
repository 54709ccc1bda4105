use anyhow::Result;
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn pause(args: Args, engine: &Engine) -> Result<()> {
    engine.load(&args.id)?.pause()?;
    Ok(())
}

pub fn resume(args: Args, engine: &Engine) -> Result<()> {
    engine.load(&args.id)?.resume()?;
    Ok(())
}
