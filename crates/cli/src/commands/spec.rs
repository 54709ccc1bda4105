use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Bundle directory to write config.json into (default: current directory).
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let bundle = super::bundle_or_cwd(args.bundle)?;
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} exists; remove it first", path.display());
    }
    let spec = hostprocess_engine::spec::example_spec(vec!["sh".into()]);
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write '{}'", path.display()))
}
