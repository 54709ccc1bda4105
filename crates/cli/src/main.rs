//! `hostprocess`: a runc-compatible CLI for HostProcess containers. Each verb lives in
//! `commands/<verb>.rs`; the engine does the work.

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

#[derive(Parser)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[command(
    name = "hostprocess",
    version,
    about = "Run HostProcess containers from OCI bundles (runc-compatible)"
)]
struct Cli {
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
