use anyhow::Result;
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    engine.load(&args.id)?.start()?;
    Ok(())
}
