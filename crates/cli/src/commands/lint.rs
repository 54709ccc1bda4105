use std::path::PathBuf;

use anyhow::{Context, Result};
use hostprocess_lint::{Format, LintOptions};

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Kubernetes manifests (multi-document YAML): files, directories (their *.yaml and *.yml
    /// files, recursively, in name order) or - for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// RuntimeClass names that select HostProcess containers (repeat for several).
    #[arg(long = "runtime-class", value_name = "NAME", default_value = hostprocess_lint::DEFAULT_RUNTIME_CLASS)]
    pub runtime_classes: Vec<String>,
    /// Output format: text lines, one JSON object, or a SARIF 2.1.0 log.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Sarif,
}

/// Reports every finding and everything that could not be read; exits 0 when clean, 1 when a
/// rule is broken, 2 when a file or document could not be read (whatever the findings).
pub fn run(args: Args) -> Result<u8> {
    let options = LintOptions::with_runtime_classes(args.runtime_classes);
    let outcome = hostprocess_lint::lint_paths(&args.files, &mut std::io::stdin().lock(), &options);
    let format = match args.format {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
        OutputFormat::Sarif => Format::Sarif,
    };
    hostprocess_lint::render(
        &outcome,
        format,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .context("write the report")?;
    Ok(outcome.exit_code())
}
