//! `containerd-shim-hostprocess-v1`: the containerd runtime v2 shim (task API v2) for
//! HostProcess containers, runtime type `io.containerd.hostprocess.v1` (§8).
//!
//! containerd runs this binary with `start` (spawn or join the pod's shim and print its
//! address), with `delete` (clean up after a shim that died), or with no action (serve the Task
//! API). The engine runs in-process: every task operation is a call into `hostprocess-engine`.

mod container;
mod error;
mod events;
mod exits;
mod io;
mod logger;
mod metrics;
mod pod;
mod process;
mod rootfs;
mod service;
mod sys;
mod task;

/// musl's allocator (static build) took page faults and system calls on the shim's busy paths;
/// dlmalloc, as in the CLI.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The runtime type containerd maps to this binary's name.
pub const RUNTIME_ID: &str = "io.containerd.hostprocess.v1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-v" | "-version" | "--version"))
    {
        println!(
            "{}:",
            args.first().map_or("containerd-shim-hostprocess-v1", |a| a)
        );
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID} (task API v2)");
        return;
    }
    containerd_shim::run::<service::Service>(RUNTIME_ID, None);
}
