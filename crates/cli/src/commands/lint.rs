use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Kubernetes YAML files (Pods and workload templates; multi-document files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// RuntimeClass names that select HostProcess containers.
    #[arg(long = "runtime-class", default_value = hostprocess_lint::DEFAULT_RUNTIME_CLASS)]
    pub runtime_classes: Vec<String>,
}

/// Prints every finding; exits 1 when any is an error.
pub fn run(args: Args) -> Result<u8> {
    let options = hostprocess_lint::LintOptions::with_runtime_classes(args.runtime_classes);
    let mut errors = false;
    for file in &args.files {
        let findings = hostprocess_lint::lint_file_with(file, &options)?;
        for finding in &findings {
            println!("{finding}");
        }
        errors |= hostprocess_lint::has_errors(&findings);
    }
    Ok(u8::from(errors))
}
