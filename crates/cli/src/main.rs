//! `hostprocess`: a runc-compatible CLI for HostProcess containers, with no daemon. Each verb
//! lives in `commands/<verb>.rs` (plus `node`, `lint`, `completion` and `man`); the engine does
//! the work. `quick_parse` reads the command lines a shim or script sends without clap (clap
//! answers everything else), `terminal` gives a process the CLI's stdio or a pty through
//! `--console-socket`, `logger` writes runc's `--log`/`--log-format`.

mod commands;
mod logger;
mod quick_parse;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// musl's allocator made the static build's start-up (argument parsing, the spec, the state)
/// take ~0.4 ms longer than glibc's; dlmalloc brings it back.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Where containers' state lives unless `--root` says otherwise (runc's is /run/runc).
const DEFAULT_ROOT: &str = "/run/hostprocess";

/// `-v`/`--version`, as runc prints it (clap puts the binary's name before it); the spec
/// version is the newest one `features` reports (`ociVersionMax`).
const VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("HOSTPROCESS_COMMIT"),
    "\nspec: 1.2.0"
);

#[derive(Parser)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[command(
    name = "hostprocess",
    version = VERSION,
    disable_version_flag = true,
    about = "Run HostProcess containers from OCI bundles (runc-compatible)"
)]
struct Cli {
    /// Print the version, the commit it was built from and the OCI spec version.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
    /// Root directory for container state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility; cgroups are managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (go-runc passes it); checkpoints are not supported.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility: a HostProcess container runs with the caller's rights.
    #[arg(long, global = true, hide = true, value_parser = ["true", "false", "auto"])]
    rootless: Option<String>,
    #[command(subcommand)]
    command: commands::Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = quick_parse::cli(std::env::args_os()).unwrap_or_else(Cli::parse);
    logger::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if let Some(criu) = &cli.criu {
        log::debug!("--criu {criu:?} ignored: checkpoints are not supported");
    }
    if let Some(rootless) = &cli.rootless {
        log::debug!("--rootless={rootless} ignored: the container runs with the caller's rights");
    }
    let engine = commands::engine(&cli.root);
    match commands::dispatch(cli.command, &engine) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = format!("{e:#}");
            log::error!("{message}");
            if cli.log.is_some() || cli.log_format == LogFormat::Json {
                eprintln!("hostprocess: {message}");
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every argument of `command` and its subcommands that has no help text, as `verb <ARG>`.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if command
            .get_about()
            .is_none_or(|about| about.to_string().trim().is_empty())
        {
            missing.push(format!("{path} (the command itself)"));
        }
        for arg in command.get_arguments() {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_verb_flag_and_argument_has_help() {
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        undocumented(&command, "hostprocess", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
