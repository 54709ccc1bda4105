//! End-to-end test support: a private containerd ([`containerd::Containerd`]) that finds the
//! shim built by cargo, and OCI image tarballs made in Rust ([`image`]). Tests run as root.

#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod containerd;
pub mod image;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shim binary cargo built for this test run.
pub const SHIM_BINARY: &str = env!("CARGO_BIN_EXE_containerd-shim-hostprocess-v1");
/// The runtime name containerd maps to `containerd-shim-hostprocess-v1` on its PATH.
pub const HOSTPROCESS_RUNTIME: &str = "io.containerd.hostprocess.v1";
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// An id no other test of any concurrent run uses: `<prefix>-<pid>-<n>`.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command to completion, killing it when it takes longer than `timeout` (so a hung
/// containerd call fails the test instead of hanging the run).
#[track_caller]
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    try_run_with_timeout(command, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run_with_timeout`] that reports instead of panicking, for cleanup code in `Drop`.
pub fn try_run_with_timeout(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("wait for {what}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Polls `check` until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Installs Debian packages unless `present` says they are there already. Serialised within
/// this process; dpkg's own lock (waited for) serialises concurrent test binaries.
pub fn ensure_installed(present: impl Fn() -> bool, packages: &[&str]) {
    static APT: Mutex<()> = Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "update"])
            .status();
        assert!(install(), "apt-get install -y {}", packages.join(" "));
    }
    assert!(
        present(),
        "{} installed but still missing",
        packages.join(" ")
    );
}

/// True when `name` is an executable file in one of the `PATH` directories.
pub fn on_path(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .any(|dir| Path::new(dir).join(name).is_file());
    found
}

/// What `readlink /proc/self/ns/<kind>` prints on the host (e.g. `pid:[4026531836]`).
pub fn host_namespace(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a command succeeded and returns its stdout; the panic shows both streams.
#[track_caller]
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Cgroup directories named `name` anywhere in the first levels of every hierarchy (a
/// container's job is `<hierarchy>/<parent>/<id>`).
pub fn cgroup_dirs_named(name: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if depth > 0 {
                walk(&path, name, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 4, &mut found);
    found
}
