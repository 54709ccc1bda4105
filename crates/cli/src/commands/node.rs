//! `hostprocess node install|uninstall|check`: put the runtime on a node, take it off again,
//! and say whether a node can run HostProcess containers. The containerd configuration edits
//! are in `node_config.rs`, the checks in `node_check.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};

use super::node_check;
use super::node_config::{self, ConfigVersion};

/// containerd's configuration unless `--config` says otherwise.
const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";
/// Where the binaries go unless `--prefix` says otherwise.
const DEFAULT_PREFIX: &str = "/usr/local/bin";
/// The binaries a node needs: the CLI and the shim containerd finds on its PATH.
pub const CLI_BINARY: &str = "hostprocess";
pub const SHIM_BINARY: &str = "containerd-shim-hostprocess-v1";

#[derive(Subcommand)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub enum NodeCommand {
    /// Install the binaries and register the CRI runtime handler "hostprocess" with containerd.
    Install(InstallArgs),
    /// Undo `node install`: remove the binaries, the drop-in and the config lines it added.
    Uninstall(TargetArgs),
    /// Check whether this node can run HostProcess containers (one line per prerequisite).
    Check(CheckArgs),
}

/// Where containerd's configuration and the binaries are.
#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct TargetArgs {
    /// containerd's configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The directory of configuration drop-ins that the config imports
    /// (default: conf.d beside the config).
    #[arg(long = "drop-in-dir")]
    pub drop_in_dir: Option<PathBuf>,
    /// The directory the binaries are installed into.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: PathBuf,
    /// containerd's config version (2: containerd 1.6/1.7, 3: containerd 2.x); default: the
    /// config's `version`, else from `containerd --version`.
    #[arg(long = "config-version", value_parser = clap::value_parser!(u8).range(2..=3))]
    pub config_version: Option<u8>,
    /// Leave the binaries alone (a package installed them): only register or unregister the
    /// runtime handler.
    #[arg(long = "config-only")]
    pub config_only: bool,
    /// Print what would change and change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The hostprocess binary to install (default: the running one).
    #[arg(long = "hostprocess-binary")]
    pub hostprocess_binary: Option<PathBuf>,
    /// The shim binary to install (default: containerd-shim-hostprocess-v1 beside the running
    /// hostprocess).
    #[arg(long = "shim-binary")]
    pub shim_binary: Option<PathBuf>,
}

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct CheckArgs {
    /// containerd's configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The CRI runtime handler to look for.
    #[arg(long, default_value = node_config::HANDLER)]
    pub handler: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    Json,
}

pub fn run(command: NodeCommand) -> Result<u8> {
    match command {
        NodeCommand::Install(args) => install(&args).map(|()| 0),
        NodeCommand::Uninstall(args) => uninstall(&args).map(|()| 0),
        NodeCommand::Check(args) => node_check::run(&args),
    }
}

impl TargetArgs {
    fn drop_in_dir(&self) -> PathBuf {
        self.drop_in_dir.clone().unwrap_or_else(|| {
            self.config
                .parent()
                .unwrap_or(Path::new("/"))
                .join("conf.d")
        })
    }

    /// The config version to write: the flag, the config's own `version`, else what the
    /// installed containerd reads.
    fn config_version(&self, config_text: Option<&str>) -> Result<ConfigVersion> {
        if let Some(version) = self.config_version {
            return ConfigVersion::from_number(i64::from(version));
        }
        if let Some(text) = config_text {
            let declared = node_config::declared_version(text)
                .with_context(|| format!("read '{}'", self.config.display()))?;
            if let Some(version) = declared {
                return ConfigVersion::from_number(version);
            }
        }
        match containerd_version() {
            Some(version) => Ok(ConfigVersion::for_containerd(&version)),
            None => bail!(
                "cannot tell which config version to write: '{}' has no `version` and no containerd is on PATH; pass --config-version 2 (containerd 1.6/1.7) or 3 (2.x)",
                self.config.display()
            ),
        }
    }
}

/// The version `containerd --version` prints (`1.6.20~ds1`, `2.1.9+unknown`), if it runs.
pub fn containerd_version() -> Option<String> {
    let out = Command::new("containerd").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "containerd github.com/containerd/containerd[/v2] 2.1.9 <revision>"
    text.split_whitespace().nth(2).map(str::to_string)
}

/// Reads a file that may be missing.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read '{}'", path.display())),
    }
}

/// Writes a file whole: a temporary file beside it, then a rename.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp-hostprocess");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("write '{}'", path.display()))
}

/// The permissions a rewritten config keeps: its own (it may hold registry credentials), or
/// containerd's usual 0644 for a new one.
fn config_mode(config: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(config).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

/// Says what was (or, with --dry-run, would be) done.
fn report(dry_run: bool, action: &str) {
    if dry_run {
        println!("would {action}");
    } else {
        println!("{action}");
    }
}

/// The binaries to install and their names in the prefix (none with --config-only).
fn binary_sources(args: &InstallArgs) -> Result<Vec<(PathBuf, &'static str)>> {
    if args.target.config_only {
        return Ok(Vec::new());
    }
    let running = std::env::current_exe().context("the running hostprocess binary's path")?;
    let cli = args.hostprocess_binary.clone().unwrap_or(running.clone());
    let shim = match &args.shim_binary {
        Some(shim) => shim.clone(),
        None => running
            .parent()
            .map(|dir| dir.join(SHIM_BINARY))
            .filter(|shim| shim.is_file())
            .with_context(|| {
                format!(
                    "no {SHIM_BINARY} beside '{}'; pass --shim-binary PATH",
                    running.display()
                )
            })?,
    };
    Ok(vec![(cli, CLI_BINARY), (shim, SHIM_BINARY)])
}

fn install(args: &InstallArgs) -> Result<()> {
    let target = &args.target;
    let dry = target.dry_run;
    // Decide everything before the first change.
    let original = read_optional(&target.config)?;
    let version = target.config_version(original.as_deref())?;
    let drop_in_dir = target.drop_in_dir();
    let plan = node_config::plan_install(original.as_deref(), version, &drop_in_dir).with_context(
        || {
            format!(
                "register the runtime handler in '{}'",
                target.config.display()
            )
        },
    )?;
    let mut binaries = Vec::new();
    for (source, name) in binary_sources(args)? {
        let bytes =
            std::fs::read(&source).with_context(|| format!("read '{}'", source.display()))?;
        let dest = target.prefix.join(name);
        let current = std::fs::read(&dest).ok();
        binaries.push((dest, bytes, current));
    }

    let mut config_changed = false;
    if !dry && !binaries.is_empty() {
        std::fs::create_dir_all(&target.prefix)
            .with_context(|| format!("create '{}'", target.prefix.display()))?;
    }
    for (dest, bytes, current) in &binaries {
        if current.as_ref() == Some(bytes) {
            println!("'{}' is up to date", dest.display());
            continue;
        }
        if !dry {
            write_atomically(dest, bytes, 0o755)?;
        }
        report(dry, &format!("install '{}'", dest.display()));
    }
    if let Some((path, contents)) = &plan.drop_in {
        if read_optional(path)?.as_deref() != Some(contents.as_str()) {
            if !dry {
                std::fs::create_dir_all(&drop_in_dir)
                    .with_context(|| format!("create '{}'", drop_in_dir.display()))?;
                write_atomically(path, contents.as_bytes(), 0o644)?;
            }
            report(
                dry,
                &format!(
                    "write '{}' (config version {})",
                    path.display(),
                    version.number()
                ),
            );
            config_changed = true;
        }
    }
    if let Some(config) = &plan.config {
        let backup = node_config::backup_path(&target.config);
        if !dry {
            if let Some(original) = &original {
                if !backup.exists() {
                    write_atomically(&backup, original.as_bytes(), 0o600)?;
                }
            }
            write_atomically(
                &target.config,
                config.as_bytes(),
                config_mode(&target.config),
            )?;
        }
        for change in &plan.changes {
            report(
                dry,
                &format!("change '{}': {change}", target.config.display()),
            );
        }
        if original.is_some() {
            report(
                dry,
                &format!("keep the previous config as '{}'", backup.display()),
            );
        }
        config_changed = true;
    }
    let path = node_check::containerd_path_of(&target.config);
    if !target.config_only && !path.is_empty() && !path.contains(&target.prefix) {
        println!(
            "warning: '{}' is not on the running containerd's PATH; containerd will not find {SHIM_BINARY} there",
            target.prefix.display()
        );
    }
    if config_changed {
        println!("containerd must be restarted to load the runtime handler \"{}\" (e.g. systemctl restart containerd)", node_config::HANDLER);
    } else {
        println!("containerd need not be restarted: its configuration did not change");
    }
    Ok(())
}

fn uninstall(args: &TargetArgs) -> Result<()> {
    let dry = args.dry_run;
    let drop_in_dir = args.drop_in_dir();
    let original = read_optional(&args.config)?;
    let plan = node_config::plan_uninstall(original.as_deref(), &drop_in_dir);
    let mut config_changed = false;
    let binaries: &[&str] = if args.config_only {
        &[]
    } else {
        &[CLI_BINARY, SHIM_BINARY]
    };
    for name in binaries {
        let dest = args.prefix.join(name);
        if dest.exists() {
            if !dry {
                std::fs::remove_file(&dest)
                    .with_context(|| format!("remove '{}'", dest.display()))?;
            }
            report(dry, &format!("remove '{}'", dest.display()));
        }
    }
    for path in node_config::drop_in_paths(&drop_in_dir) {
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        if !node_config::is_our_drop_in(&text) {
            println!(
                "warning: kept '{}': it was changed since install; remove it by hand",
                path.display()
            );
            continue;
        }
        if !dry {
            std::fs::remove_file(&path).with_context(|| format!("remove '{}'", path.display()))?;
        }
        report(dry, &format!("remove '{}'", path.display()));
        config_changed = true;
    }
    let backup = node_config::backup_path(&args.config);
    match plan {
        node_config::Uninstall::Unchanged => {}
        node_config::Uninstall::Rewrite { config, changes } => {
            if !dry {
                write_atomically(&args.config, config.as_bytes(), config_mode(&args.config))?;
            }
            for change in &changes {
                report(
                    dry,
                    &format!("change '{}': {change}", args.config.display()),
                );
            }
            config_changed = true;
            if let Some(saved) = read_optional(&backup)? {
                if saved == config {
                    if !dry {
                        std::fs::remove_file(&backup)
                            .with_context(|| format!("remove '{}'", backup.display()))?;
                    }
                    report(
                        dry,
                        &format!(
                            "remove '{}' (identical to the config again)",
                            backup.display()
                        ),
                    );
                } else {
                    println!(
                        "kept '{}': the config was edited since install and keeps those edits",
                        backup.display()
                    );
                }
            }
        }
        node_config::Uninstall::Remove => {
            if !dry {
                std::fs::remove_file(&args.config)
                    .with_context(|| format!("remove '{}'", args.config.display()))?;
            }
            report(
                dry,
                &format!("remove '{}' (install created it)", args.config.display()),
            );
            config_changed = true;
        }
    }
    // The drop-in directory, when it is left empty and the config no longer names it.
    let still_named = read_optional(&args.config)?
        .is_some_and(|text| text.contains(&*drop_in_dir.to_string_lossy()));
    let empty = std::fs::read_dir(&drop_in_dir).is_ok_and(|mut d| d.next().is_none());
    if config_changed && empty && !still_named {
        if !dry {
            std::fs::remove_dir(&drop_in_dir)
                .with_context(|| format!("remove '{}'", drop_in_dir.display()))?;
        }
        report(
            dry,
            &format!("remove the empty '{}'", drop_in_dir.display()),
        );
    }
    if config_changed {
        println!(
            "containerd must be restarted to drop the runtime handler \"{}\"",
            node_config::HANDLER
        );
    } else {
        println!("containerd need not be restarted: its configuration did not change");
    }
    Ok(())
}
