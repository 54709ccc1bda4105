//! Fixtures for the CLI's integration tests. They run as root against the real host: every
//! test gets its own state root, claims directory and bundles in temp dirs, unique container
//! ids, and a guard per container that deletes it and then checks that nothing of it is left
//! (cgroup directories, mounts, state, ephemeral uid claims, processes), even when the test
//! fails.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hostprocess_engine::sys::linuxlogic::mountinfo;
use serde_json::{json, Value};
use tempfile::TempDir;
// Not every test binary uses every helper (as for the rest of this module).
#[allow(unused_imports)]
pub use testkit::kernel::{block_io_accounting, no_active_swap, skipped};

/// The CLI under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hostprocess");
/// The longest any CLI call may take before the test fails (a hang is a bug).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(40);
/// Every cgroup hierarchy a job may have a directory in on this host.
pub const HIERARCHIES: &[&str] = &[
    "unified", "memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "cpuset",
];
/// The host's own python, reachable by any account (not a pyenv shim under /root).
pub const PYTHON: &str = "/usr/bin/python3";
pub const HOST_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A container id unique across parallel test processes and threads.
pub fn unique_id(tag: &str) -> String {
    format!("hpt{}-{}-{tag}", std::process::id(), next())
}

/// A short name unique across parallel tests, for users, groups and host paths.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), next())
}

/// A temp dir any account can enter and write (tests read back what workloads write there).
pub fn open_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hpt-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod temp dir");
    dir
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a file and returns its content.
pub fn wait_for_file(path: &Path, timeout: Duration) -> String {
    assert!(
        wait_until(timeout, || fs::read_to_string(path)
            .is_ok_and(|s| !s.is_empty())),
        "'{}' did not appear within {timeout:?}",
        path.display()
    );
    fs::read_to_string(path).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Processes

/// The state letter of a process (`R`, `S`, `Z` …), None when it does not exist.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// A process that exited holds no resources: gone, or a zombie nobody reaps (PID 1 here does
/// not reap).
pub fn is_gone(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z') | Some('X'))
}

/// A line of `/proc/<pid>/status`, without its key (`Uid`, `Gid`, `Groups`, `CapEff` …).
pub fn status_field(pid: u32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
        .trim()
        .to_string()
}

/// The numbers of a status line (`Uid: 0 0 0 0` → [0, 0, 0, 0]).
pub fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    status_field(pid, key)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// The target of `/proc/<pid>/ns/<ns>` (`net:[4026531840]`); `self` for the test process.
pub fn namespace(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Live (non-zombie) processes whose cgroup, in any hierarchy, is exactly `/<cgroup>`.
pub fn processes_in_cgroup(cgroup: &str) -> Vec<u32> {
    let wanted = format!("/{}", cgroup.trim_start_matches('/'));
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        let inside = text
            .lines()
            .any(|l| l.splitn(3, ':').nth(2) == Some(wanted.as_str()));
        if inside && !is_gone(pid) {
            found.push(pid);
        }
    }
    found
}

/// CPUs online, as the runtime counts them.
pub fn host_cpus() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(n > 0);
    n as u64
}

/// Mount points of the test's own mount namespace, read by the engine's mount table reader.
pub fn host_mount_points() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point.to_string_lossy().into_owned())
        .collect()
}

/// Lazily unmounts `path` (and anything below it first), ignoring what is not mounted.
pub fn unmount_all_under(path: &Path) {
    let prefix = path.to_string_lossy().into_owned();
    let mut points: Vec<String> = host_mount_points()
        .into_iter()
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Is this ephemeral uid claim (`<id>\n<state dir>\n`) held by container `id`?
pub fn is_claim_of(claim: &Path, id: &str) -> bool {
    fs::read_to_string(claim).is_ok_and(|owner| owner.lines().next() == Some(id))
}

/// A small tmpfs mounted on an existing directory (a state root or claims directory that
/// fills up), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `size` as mount(8) takes it (`4k`, `1m`).
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on '{}': {e}", path.display()));
        Tmpfs(path.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fills it up with `filler*` files: no data block is left.
    pub fn fill(&self) {
        let mut n = 0;
        while fs::write(self.0.join(format!("filler{n}")), vec![b'x'; 4096]).is_ok() {
            n += 1;
        }
        let _ = fs::write(self.0.join(format!("filler{n}")), b"x");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles

/// An OCI bundle in a temp dir: `config.json` (rewritten on every change) and `rootfs/`.
pub struct Bundle {
    dir: TempDir,
    spec: Value,
}

impl Bundle {
    /// A bundle whose process runs `/bin/true` as root, with the host's PATH.
    pub fn new() -> Bundle {
        Bundle::with_prefix("hpt-bundle-")
    }

    /// A bundle in a temp dir whose name starts with `prefix`.
    pub fn with_prefix(prefix: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut bundle = Bundle {
            dir,
            spec: json!({
                "ociVersion": "1.0.2",
                "root": { "path": "rootfs" },
                "process": {
                    "args": ["/bin/true"],
                    "env": [HOST_PATH],
                    "cwd": "",
                    "user": { "uid": 0, "gid": 0 }
                },
                "annotations": { "microsoft.com/hostprocess-container": "true" }
            }),
        };
        bundle.save();
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn spec(&self) -> &Value {
        &self.spec
    }

    fn save(&mut self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_string_pretty(&self.spec).unwrap(),
        )
        .expect("write config.json");
    }

    /// Sets the value at a path of object keys, creating objects on the way.
    pub fn set(mut self, path: &[&str], value: Value) -> Bundle {
        let mut at = &mut self.spec;
        for key in &path[..path.len() - 1] {
            if !at.get(*key).is_some_and(Value::is_object) {
                at[*key] = json!({});
            }
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        self.save();
        self
    }

    /// Removes a top-level or nested key.
    pub fn remove(mut self, path: &[&str]) -> Bundle {
        let mut at = &mut self.spec;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        if let Some(obj) = at.as_object_mut() {
            obj.remove(path[path.len() - 1]);
        }
        self.save();
        self
    }

    pub fn args(self, args: &[&str]) -> Bundle {
        self.set(&["process", "args"], json!(args))
    }

    /// The process is `/bin/sh -c <script>`.
    pub fn sh(self, script: &str) -> Bundle {
        self.args(&["/bin/sh", "-c", script])
    }

    pub fn env(mut self, entry: &str) -> Bundle {
        self.spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(entry));
        self.save();
        self
    }

    /// `process.user.username` (Windows form).
    pub fn user_name(self, name: &str) -> Bundle {
        self.set(&["process", "user"], json!({ "username": name }))
    }

    /// `process.user.uid/gid`.
    pub fn user_ids(self, uid: u32, gid: u32) -> Bundle {
        self.set(&["process", "user"], json!({ "uid": uid, "gid": gid }))
    }

    pub fn annotation(self, key: &str, value: &str) -> Bundle {
        self.set(&["annotations", key], json!(value))
    }

    pub fn mount(mut self, mount: Value) -> Bundle {
        if !self.spec["mounts"].is_array() {
            self.spec["mounts"] = json!([]);
        }
        self.spec["mounts"].as_array_mut().unwrap().push(mount);
        self.save();
        self
    }

    /// A bind mount of `source` at `destination` with extra options.
    pub fn bind(self, source: &Path, destination: &str, options: &[&str]) -> Bundle {
        let mut opts = vec!["rbind"];
        opts.extend_from_slice(options);
        self.mount(json!({
            "type": "bind",
            "source": source.to_string_lossy(),
            "destination": destination,
            "options": opts
        }))
    }

    /// Writes a file into the rootfs (parents made).
    pub fn file(self, rel: &str, content: &str) -> Bundle {
        let path = self.rootfs().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        self
    }

    /// Writes an executable file into the rootfs.
    pub fn script(self, rel: &str, content: &str) -> Bundle {
        let bundle = self.file(rel, content);
        let path = bundle.rootfs().join(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        bundle
    }

    /// Replaces config.json with raw text (malformed specs).
    pub fn raw_config(self, text: &str) -> Bundle {
        fs::write(self.dir.path().join("config.json"), text).unwrap();
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// Output helpers for CLI calls.
pub trait OutputExt {
    fn stdout_text(&self) -> String;
    fn stderr_text(&self) -> String;
    /// Panics with both streams unless the call succeeded.
    fn ok(self, what: &str) -> Output;
    /// Panics unless the call failed with `text` in its stderr.
    fn fails_with(self, text: &str) -> Output;
}

impl OutputExt for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn ok(self, what: &str) -> Output {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout_text(),
            self.stderr_text()
        );
        self
    }

    fn fails_with(self, text: &str) -> Output {
        assert!(
            !self.status.success(),
            "expected a failure mentioning {text:?}, but it succeeded:\nstdout: {}\nstderr: {}",
            self.stdout_text(),
            self.stderr_text()
        );
        assert!(
            self.stderr_text().contains(text),
            "expected {text:?} in stderr ({}):\n{}",
            self.status,
            self.stderr_text()
        );
        self
    }
}

/// The CLI with a private state root, claims directory and environment.
pub struct Runtime {
    root: TempDir,
    claims: TempDir,
    logs: TempDir,
    env: Vec<(OsString, OsString)>,
    calls: AtomicU32,
}

impl Runtime {
    pub fn new() -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("hpt-root-")
            .tempdir()
            .unwrap();
        let claims = tempfile::Builder::new()
            .prefix("hpt-claims-")
            .tempdir()
            .unwrap();
        let logs = tempfile::Builder::new()
            .prefix("hpt-logs-")
            .tempdir()
            .unwrap();
        let env = vec![(
            OsString::from("HOSTPROCESS_EPHEMERAL_UIDS_DIR"),
            claims.path().as_os_str().to_owned(),
        )];
        Runtime {
            root,
            claims,
            logs,
            env,
            calls: AtomicU32::new(0),
        }
    }

    /// Adds an environment variable to every CLI call.
    pub fn with_env(mut self, key: &str, value: &str) -> Runtime {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn claims_dir(&self) -> &Path {
        self.claims.path()
    }

    /// The CLI with `--root` and the environment; stdin is /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(self.root()).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a command to its end with stdout and stderr in files (a pipe would stay open as
    /// long as the container's processes hold it); fails the test after `timeout`.
    pub fn output_of(&self, mut cmd: Command, timeout: Duration) -> Output {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let out_path = self.logs.path().join(format!("{n}.out"));
        let err_path = self.logs.path().join(format!("{n}.err"));
        cmd.stdout(fs::File::create(&out_path).unwrap());
        cmd.stderr(fs::File::create(&err_path).unwrap());
        let mut child = cmd.spawn().expect("spawn the hostprocess CLI");
        let deadline = Instant::now() + timeout;
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} did not finish within {timeout:?}; stderr so far: {}",
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read(&err_path).unwrap_or_default(),
        }
    }

    /// `hostprocess --root <root> <args…>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.output_of(self.command(args), CLI_TIMEOUT)
    }

    pub fn create(&self, id: &str, bundle: &Bundle) -> Output {
        self.cli(&["create", "-b", &bundle.path().to_string_lossy(), id])
    }

    /// `create` whose stdout and stderr (and so the container's) go to `log`.
    pub fn create_logged(&self, id: &str, bundle: &Bundle, log: &Path) -> Output {
        let mut cmd = self.command(&["create", "-b", &bundle.path().to_string_lossy(), id]);
        let file = fs::File::create(log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let mut child = cmd.spawn().expect("spawn create");
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "create {id} hangs");
            std::thread::sleep(Duration::from_millis(2));
        };
        Output {
            status,
            stdout: Vec::new(),
            stderr: fs::read(log).unwrap_or_default(),
        }
    }

    pub fn start(&self, id: &str) -> Output {
        self.cli(&["start", id])
    }

    /// `run` in the foreground: waits for the container and exits with its code.
    pub fn run(&self, id: &str, bundle: &Bundle) -> Output {
        self.cli(&["run", "-b", &bundle.path().to_string_lossy(), id])
    }

    /// `run` with extra flags before the id.
    pub fn run_with(&self, id: &str, bundle: &Bundle, flags: &[&str]) -> Output {
        let b = bundle.path().to_string_lossy().into_owned();
        let mut args = vec!["run", "-b", b.as_str()];
        args.extend_from_slice(flags);
        args.push(id);
        self.cli(&args)
    }

    pub fn state(&self, id: &str) -> Output {
        self.cli(&["state", id])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.cli(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.cli(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.cli(&["delete", "--force", id])
    }

    /// `exec <id> -- <command…>` in the foreground.
    pub fn exec(&self, id: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", id, "--"];
        args.extend_from_slice(command);
        self.cli(&args)
    }

    /// The parsed `state` JSON; panics if `state` fails.
    pub fn state_json(&self, id: &str) -> Value {
        let out = self.state(id).ok(&format!("state {id}"));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("state {id} is not JSON ({e}): {}", out.stdout_text()))
    }

    pub fn status(&self, id: &str) -> String {
        self.state_json(id)["status"].as_str().unwrap().to_string()
    }

    /// The init pid the state reports (0 when stopped).
    pub fn pid(&self, id: &str) -> u32 {
        self.state_json(id)["pid"].as_u64().unwrap() as u32
    }

    /// Creates and starts a container; returns its guard and init pid (read before start, so
    /// an init that exits at once still has it).
    pub fn started(&self, id: &str, bundle: &Bundle) -> (ContainerGuard<'_>, u32) {
        let guard = self.guard(id);
        self.create(id, bundle).ok(&format!("create {id}"));
        let pid = self.pid(id);
        assert!(pid > 0, "a created container has an init pid");
        self.start(id).ok(&format!("start {id}"));
        (guard, pid)
    }

    /// Creates and starts a container whose output goes to `log`; returns its guard and init
    /// pid.
    pub fn started_logged(
        &self,
        id: &str,
        bundle: &Bundle,
        log: &Path,
    ) -> (ContainerGuard<'_>, u32) {
        let guard = self.guard(id);
        self.create_logged(id, bundle, log)
            .ok(&format!("create {id}"));
        let pid = self.pid(id);
        assert!(pid > 0, "a created container has an init pid");
        self.start(id).ok(&format!("start {id}"));
        (guard, pid)
    }

    /// What the runtime says about a container, for failure messages.
    pub fn describe(&self, id: &str) -> String {
        let state = self.state(id);
        let ps = self.cli(&["ps", "--format", "json", id]);
        format!(
            "state: {}{} ps: {}{}",
            state.stdout_text(),
            state.stderr_text(),
            ps.stdout_text(),
            ps.stderr_text()
        )
    }

    /// A guard for a container whose job is at the default cgroup path.
    pub fn guard(&self, id: &str) -> ContainerGuard<'_> {
        self.guard_at(id, &format!("hostprocess/{id}"))
    }

    /// A guard for a container whose job is at `cgroup` (its `linux.cgroupsPath`).
    pub fn guard_at(&self, id: &str, cgroup: &str) -> ContainerGuard<'_> {
        ContainerGuard {
            rt: self,
            id: id.to_string(),
            cgroup: cgroup.trim_start_matches('/').to_string(),
        }
    }

    /// Everything of container `id` still on the host; empty when it is completely gone.
    pub fn leftovers(&self, id: &str, cgroup: &str) -> Vec<String> {
        let mut left = Vec::new();
        let cgroup = cgroup.trim_start_matches('/');
        let state_dir = self.root().join(id);
        if state_dir.exists() {
            left.push(format!("state dir '{}'", state_dir.display()));
        }
        let symlink_volume = self.root().join("hpc").join(id);
        if symlink_volume.exists() {
            left.push(format!(
                "symlink-layout volume '{}'",
                symlink_volume.display()
            ));
        }
        for h in HIERARCHIES {
            let dir = Path::new("/sys/fs/cgroup").join(h).join(cgroup);
            if dir.exists() {
                left.push(format!("cgroup '{}'", dir.display()));
            }
        }
        for point in host_mount_points() {
            if point.split('/').any(|c| c == id) {
                left.push(format!("mount '{point}'"));
            }
        }
        if let Ok(entries) = fs::read_dir(self.claims_dir()) {
            for entry in entries.flatten() {
                if is_claim_of(&entry.path(), id) {
                    left.push(format!("ephemeral uid claim '{}'", entry.path().display()));
                }
            }
        }
        for pid in processes_in_cgroup(cgroup) {
            left.push(format!("process {pid} in the job"));
        }
        left
    }

    /// Removes by force whatever [`Runtime::leftovers`] found, so a failing test does not
    /// pollute the host.
    fn scrub(&self, id: &str, cgroup: &str) {
        let cgroup = cgroup.trim_start_matches('/');
        for pid in processes_in_cgroup(cgroup) {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        for point in host_mount_points() {
            if point.split('/').any(|c| c == id) {
                let _ = nix::mount::umount2(Path::new(&point), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for h in HIERARCHIES {
            let dir = Path::new("/sys/fs/cgroup").join(h).join(cgroup);
            wait_until(Duration::from_secs(2), || {
                fs::remove_dir(&dir).is_ok() || !dir.exists()
            });
        }
        let _ = fs::remove_dir_all(self.root().join(id));
        let _ = fs::remove_dir(self.root().join("hpc").join(id));
        if let Ok(entries) = fs::read_dir(self.claims_dir()) {
            for entry in entries.flatten() {
                if is_claim_of(&entry.path(), id) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Asserts that nothing of container `id` (default cgroup path) is left.
    pub fn assert_gone(&self, id: &str) {
        self.assert_gone_at(id, &format!("hostprocess/{id}"));
    }

    pub fn assert_gone_at(&self, id: &str, cgroup: &str) {
        let left = self.leftovers(id, cgroup);
        if !left.is_empty() {
            self.scrub(id, cgroup);
            panic!("container {id} left behind: {left:#?}");
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Containers are gone by now (their guards ran); unmount anything a failed test left
        // under the root so the temp dir can be removed.
        unmount_all_under(self.root.path());
    }
}

/// Deletes its container (`delete --force`) when dropped, then checks nothing is left.
pub struct ContainerGuard<'r> {
    rt: &'r Runtime,
    pub id: String,
    pub cgroup: String,
}

impl ContainerGuard<'_> {
    /// The job's directory in one hierarchy (`memory`, `cpu`, `unified` …).
    pub fn cgroup_dir(&self, hierarchy: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(&self.cgroup)
    }

    /// Reads a file of the job's cgroup.
    pub fn cgroup_file(&self, hierarchy: &str, file: &str) -> String {
        let path = self.cgroup_dir(hierarchy).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read '{}': {e}", path.display()))
            .trim()
            .to_string()
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let out = self.rt.delete_force(&self.id);
        let left = self.rt.leftovers(&self.id, &self.cgroup);
        if left.is_empty() && out.status.success() {
            return;
        }
        self.rt.scrub(&self.id, &self.cgroup);
        let message = format!(
            "cleanup of container {}: delete --force {} (stderr: {}); left behind: {left:#?}",
            self.id,
            out.status,
            out.stderr_text().trim()
        );
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// Exchanges two paths (`renameat2` with `RENAME_EXCHANGE`) over and over on a thread of its
/// own until dropped, also when the test panics: a race against whatever resolves one of them.
pub struct PathSwapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PathSwapper {
    pub fn start(a: &Path, b: &Path) -> PathSwapper {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, b) = (
            std::ffi::CString::new(a.as_os_str().as_encoded_bytes()).unwrap(),
            std::ffi::CString::new(b.as_os_str().as_encoded_bytes()).unwrap(),
        );
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: renameat2 with two valid C strings.
                unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
            }
        });
        PathSwapper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PathSwapper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host accounts

fn retry_admin(program: &str, args: &[&str]) {
    // useradd/groupadd fail while another test holds the passwd/group lock: retry.
    let mut last = None;
    for _ in 0..100 {
        let out = Command::new(program).args(args).output().expect(program);
        if out.status.success() {
            return;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = last.unwrap();
    panic!(
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn retry_admin_quiet(program: &str, args: &[&str]) {
    for _ in 0..100 {
        match Command::new(program).args(args).output() {
            Ok(out) if out.status.success() => return,
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("does not exist") => return,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A host group made for one test (removed on drop, even on panic).
pub struct HostGroup {
    pub name: String,
    pub gid: u32,
}

impl HostGroup {
    pub fn new() -> HostGroup {
        let name = unique_name("hptg");
        retry_admin("groupadd", &[&name]);
        let gid = nix::unistd::Group::from_name(&name)
            .unwrap()
            .expect("the new group exists")
            .gid
            .as_raw();
        HostGroup { name, gid }
    }
}

impl Drop for HostGroup {
    fn drop(&mut self) {
        retry_admin_quiet("groupdel", &[&self.name]);
    }
}

/// A host user made for one test, with its own primary group and one supplementary group
/// (all removed on drop, even on panic).
pub struct HostUser {
    pub name: String,
    pub uid: u32,
    pub primary: HostGroup,
    pub extra: HostGroup,
}

impl HostUser {
    pub fn new() -> HostUser {
        let primary = HostGroup::new();
        let extra = HostGroup::new();
        let name = unique_name("hptu");
        retry_admin(
            "useradd",
            &[
                "-M",
                "-N",
                "-g",
                &primary.name,
                "-G",
                &extra.name,
                "-d",
                "/nonexistent",
                "-s",
                "/bin/sh",
                &name,
            ],
        );
        let uid = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new user exists")
            .uid
            .as_raw();
        HostUser {
            name,
            uid,
            primary,
            extra,
        }
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        retry_admin_quiet("userdel", &[&self.name]);
    }
}
