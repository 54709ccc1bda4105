use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use hostprocess_engine::spec::{
    LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, WindowsResources,
};
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// JSON resources file (`linux.resources` shape, or {"windows": …}); `-` reads stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (-1: none).
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// CPU time in microseconds the job may use per period (-1: no limit).
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// Length of the CPU period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (cgroup v1 shares, converted to a weight on cgroup v2).
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPUs the job may run on (e.g. 0-3,6).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the job may allocate from (e.g. 0-1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes in the job (-1: no limit).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

#[derive(serde::Deserialize)]
struct WindowsDocument {
    windows: WindowsResources,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let mut linux: Option<LinuxResources> = None;
    let mut windows: Option<WindowsResources> = None;
    if let Some(path) = &args.resources {
        let mut text = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("read stdin")?;
        } else {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("read '{}'", path.display()))?;
        }
        if let Ok(doc) = serde_json::from_str::<WindowsDocument>(&text) {
            windows = Some(doc.windows);
        } else {
            linux = Some(serde_json::from_str(&text).context("parse resources JSON")?);
        }
    }
    let flags = LinuxResources {
        memory: args.memory.map(|limit| LinuxMemory {
            limit: Some(limit),
            ..LinuxMemory::default()
        }),
        cpu: (args.cpu_quota.is_some()
            || args.cpu_share.is_some()
            || args.cpuset_cpus.is_some()
            || args.cpuset_mems.is_some())
        .then(|| LinuxCpu {
            shares: args.cpu_share,
            quota: args.cpu_quota,
            period: args.cpu_period,
            cpus: args.cpuset_cpus.clone(),
            mems: args.cpuset_mems.clone(),
        }),
        pids: args.pids_limit.map(|limit| LinuxPids { limit }),
        block_io: None,
    };
    if flags.memory.is_some() || flags.cpu.is_some() || flags.pids.is_some() {
        linux = Some(flags);
    }
    engine
        .load(&args.id)?
        .update(linux.as_ref(), windows.as_ref())?;
    Ok(())
}
