use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Directory to write the pages into (it must exist), e.g. /usr/local/share/man/man1.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes `hostprocess.1` and `hostprocess-VERB.1` for every verb, from the same definitions
/// as `--help`.
pub fn run(args: Args) -> Result<()> {
    clap_mangen::generate_to(crate::Cli::command(), &args.dir)
        .with_context(|| format!("write man pages into '{}'", args.dir.display()))
}
