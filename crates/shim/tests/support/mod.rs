//! End-to-end test support: a private containerd ([`containerd::Containerd`]) that finds the
//! shim built by cargo, and OCI image tarballs made in Rust ([`image`]). Tests run as root.
//! The CRI tests (`crates/cri-tests`) use this module too, by path.

#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod containerd;
pub mod image;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The shim's package and binary name.
pub const SHIM: &str = "containerd-shim-hostprocess-v1";
/// The runtime name containerd maps to `containerd-shim-hostprocess-v1` on its PATH.
pub const HOSTPROCESS_RUNTIME: &str = "io.containerd.hostprocess.v1";
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// The shim binary: the one cargo built for this test run in the shim's own tests, else the
/// workspace's (see [`workspace_binary`]).
pub fn shim_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_containerd-shim-hostprocess-v1") {
        Some(path) => PathBuf::from(path),
        None => workspace_binary(SHIM, SHIM),
    }
}

/// Binary `name` of workspace package `package`, from the target directory and profile of the
/// running test. Cargo gives a binary's path (`CARGO_BIN_EXE_<name>`) only to its own
/// package's tests, so another package's tests find it there and, when it is missing or older
/// than a source file of the workspace, build it first with the cargo running the tests (the
/// target directory is not locked while tests run). Built once per test binary.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let binary = profile_dir.join(name);
    if modified(&binary).is_none_or(|built| built < newest_workspace_source()) {
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .map(|p| if p == "debug" { "dev" } else { p })
            .unwrap_or("dev");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(&cargo)
            .args([
                "build",
                "--package",
                package,
                "--bin",
                name,
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .unwrap_or_else(|e| panic!("run {cargo}: {e}"));
        assert!(status.success(), "cargo build --package {package} failed");
    }
    assert!(binary.is_file(), "{} was not built", binary.display());
    built.push((name.to_string(), binary.clone()));
    binary
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the sources binaries are built from: `Cargo.lock` and every
/// file under the `src` directories and manifests of the workspace's crates.
fn newest_workspace_source() -> SystemTime {
    static NEWEST: OnceLock<SystemTime> = OnceLock::new();
    *NEWEST.get_or_init(|| {
        fn walk(dir: &Path, newest: &mut SystemTime) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path, newest);
                } else if let Some(time) = modified(&path) {
                    *newest = (*newest).max(time);
                }
            }
        }
        let root = workspace_root();
        let mut newest = modified(&root.join("Cargo.lock")).unwrap_or(SystemTime::UNIX_EPOCH);
        let crates = std::fs::read_dir(root.join("crates"))
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::new());
        for krate in crates {
            walk(&krate.join("src"), &mut newest);
            if let Some(time) = modified(&krate.join("Cargo.toml")) {
                newest = newest.max(time);
            }
        }
        newest
    })
}

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
