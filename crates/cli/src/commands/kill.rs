use anyhow::Result;
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Signal name or number (default SIGTERM).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal every process of the container, not only init.
    #[arg(short, long)]
    pub all: bool,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let signal = super::parse_signal(&args.signal)?;
    engine.load(&args.id)?.kill(signal, args.all)?;
    Ok(())
}
