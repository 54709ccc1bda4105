use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// The shell to complete for; e.g. `hostprocess completion bash >
    /// /etc/bash_completion.d/hostprocess`.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::Cli::command(),
        "hostprocess",
        &mut script,
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
        .context("write the completion script")
}
