use anyhow::Result;
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Kill the container first if it still runs; no error if it does not exist.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    engine.delete(&args.id, args.force)?;
    Ok(())
}
