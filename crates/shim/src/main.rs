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

/// `-h`/`-help`: what containerd passes, for a person who runs the binary by hand.
const USAGE: &str = "\
Usage: containerd-shim-hostprocess-v1 [flags] [start | delete]

The containerd runtime v2 shim for HostProcess containers (runtime type
io.containerd.hostprocess.v1, task API v2). containerd runs it; it is not meant to be run by
hand. Register it as a runtime in containerd's config and select it with a RuntimeClass.

Actions:
  start            start the pod's shim (or join the one serving its pod) and print its address
  delete           clean up after a shim of this bundle that died
  (none)           serve the task API on the socket containerd gave

A serving shim is its start action forked: its command line is the start action's with the
last word, start, made serve.

Flags (Go style: -flag value; --flag works too):
  -namespace NAME       containerd namespace of the task
  -id ID                task id
  -address ADDRESS      containerd's GRPC address
  -publish-binary PATH  the binary that publishes events to containerd
  -bundle DIR           the task's bundle (default: the working directory)
  -socket ADDRESS       the socket to serve
  -debug                log debug messages
  -v, -version          print the version and exit
  -h, -help             print this help and exit
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-h" | "-help" | "--help"))
    {
        print!("{USAGE}");
        return;
    }
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
