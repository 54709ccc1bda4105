//! A private containerd for one test: its own root, state, socket and hostprocess state root
//! under a unique temporary directory, the built shim first on its `PATH`, and a `Drop` that
//! removes everything it made even when the test failed.
//!
//! Which containerd: the machine's (1.6 on Debian 12), or with `HPC_CONTAINERD_VERSION=1.7.24`
//! (or `2.1.9`, or any version Debian's archive has) that release's binaries, fetched once as
//! Debian's `.deb` with apt's own state and sources list under `target/containerd/` and unpacked
//! there with `dpkg -x`: the machine's packages are never touched.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{
    ensure_installed, image, on_path, run_with_timeout, shim_binary, success, text,
    try_run_with_timeout, unique_id,
};

/// How long one `ctr` call may take before the test fails.
const CTR_TIMEOUT: Duration = Duration::from_secs(120);
/// The env variable that moves the shim's engine state root (default
/// `/run/containerd/hostprocess`) so a test sees only its own containers.
pub const SHIM_ROOT_ENV: &str = "HOSTPROCESS_SHIM_ROOT";

pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    shim_root: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Installs containerd when it is missing, then starts a private instance with the shipped
    /// runtime handler and the built shim, and waits until it answers.
    pub fn start() -> Containerd {
        let mut containerd = Containerd::prepare(true);
        let shim = shim_binary();
        let shim_dir = shim.parent().expect("the shim binary has a directory");
        containerd.launch(shim_dir);
        containerd
    }

    /// Makes the instance's directories and configuration (with the runtime handler or without,
    /// for tests that register it themselves) and starts nothing yet: see [`Containerd::launch`].
    pub fn prepare(with_handler: bool) -> Containerd {
        ensure_installed(|| on_path("runc"), &["runc"]);
        let dir = std::env::temp_dir().join(unique_id("hpc-ctrd"));
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "root",
            "state",
            "opt",
            "cni/net.d",
            "cni/bin",
            "hostprocess",
        ] {
            fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.join(sub).display()));
        }
        install_fake_cni(&dir.join("cni"));
        let containerd = Containerd {
            socket: dir.join("containerd.sock"),
            shim_root: dir.join("hostprocess"),
            dir,
            child: None,
        };
        let config = containerd.config_path();
        fs::write(&config, containerd.config(with_handler))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        containerd
    }

    /// The configuration file this instance starts with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }

    /// Starts the prepared instance with `shim_dir` first on its `PATH` (after the release's
    /// own binaries) and waits until it answers.
    pub fn launch(&mut self, shim_dir: &Path) {
        let release = Release::get();
        let log_path = self.log_path();
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", log_path.display()));
        // The release's own shims (runc's) before the machine's.
        let release_dir = release
            .bin_dir
            .as_ref()
            .map(|dir| format!("{}:", dir.display()))
            .unwrap_or_default();
        let path = format!(
            "{release_dir}{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new(release.binary("containerd"))
            .arg("--config")
            .arg(self.config_path())
            .env("PATH", path)
            .env(SHIM_ROOT_ENV, &self.shim_root)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start containerd: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    /// The configuration of this instance, in the config version of the containerd under test.
    fn config(&self, with_handler: bool) -> String {
        let mut config = match Release::get().config_version {
            3 => self.config_v3(),
            _ => self.config_v2(),
        };
        if with_handler {
            let version = Release::get().config_version;
            config.push_str(&format!(
                "\n# The CRI runtime handler \"hostprocess\", as deploy/ ships it:\n{}\n",
                shipped_runtime_handler(version)
            ));
        }
        config
    }

    /// What every config version says alike: this instance's own directories and sockets,
    /// debug logs, and containerd's `opt` plugin under its directory.
    fn config_common(&self, version: u32) -> String {
        let d = self.dir.display();
        format!(
            r#"version = {version}
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = ""

[debug]
  level = "debug"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
"#
        )
    }

    /// containerd 2.x: CRI split into plugins `io.containerd.cri.v1.images` (the sandbox image
    /// is a pinned image) and `io.containerd.cri.v1.runtime` (runtimes, CNI); NRI, on by default
    /// in 2.x, is off so parallel instances do not compete for its host-wide socket.
    fn config_v3(&self) -> String {
        let d = self.dir.display();
        let shim_root = self.shim_root.display();
        self.config_common(3)
            + &format!(
                r#"  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_port = "0"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{d}/cni/bin"]
      conf_dir = "{d}/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
# hostprocess state root of this instance: {shim_root}
"#,
                pause = image::PAUSE_IMAGE,
            )
    }

    /// containerd 1.6 and 1.7: config version 2, CRI in one plugin.
    fn config_v2(&self) -> String {
        let d = self.dir.display();
        let shim_root = self.shim_root.display();
        self.config_common(2)
            + &format!(
                r#"  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    restrict_oom_score_adj = true
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
# hostprocess state root of this instance: {shim_root}
"#,
                pause = image::PAUSE_IMAGE,
            )
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "containerd exited at start ({status}):\n{}",
                        self.log_tail(60)
                    );
                }
            }
            let is_socket = fs::metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket());
            if is_socket {
                let version = try_run_with_timeout(
                    &mut self.ctr_command(&["version"]),
                    Duration::from_secs(10),
                );
                if version.is_ok_and(|o| o.status.success()) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer on {} within 30 s:\n{}",
                self.socket.display(),
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding everything of this instance.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shim's engine state root for `namespace` (one directory per live container).
    pub fn shim_root(&self, namespace: &str) -> PathBuf {
        self.shim_root.join(namespace)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The last `lines` lines of containerd's log (which includes the shims' logs).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(Release::get().binary("ctr"));
        command.arg("--address").arg(&self.socket).args(args);
        command
    }

    /// Runs `ctr --address <socket> ARGS` and returns its output (see [`success`]).
    pub fn ctr(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.ctr_command(args), CTR_TIMEOUT)
    }

    /// `ctr` in a namespace other than `default`.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Output {
        let mut all = vec!["--namespace", namespace];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// The PID and STATUS columns of `ctr -n NAMESPACE tasks ls` for task `id` (`None` when
    /// containerd has no such task).
    pub fn task_row(&self, namespace: &str, id: &str) -> Option<(u32, String)> {
        let out = success(&self.ctr_in(namespace, &["tasks", "ls"]));
        out.lines().find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [task, pid, status] if *task == id => Some((pid.parse().ok()?, status.to_string())),
                _ => None,
            }
        })
    }

    /// Builds and imports the busybox test image ([`image::BUSYBOX_IMAGE`]) into `namespace`.
    pub fn import_busybox(&self, namespace: &str) {
        let tar = self.dir.join("busybox-image.tar");
        image::write_busybox_image(&tar, image::BUSYBOX_IMAGE, &["/bin/sh"])
            .unwrap_or_else(|e| panic!("build {}: {e}", tar.display()));
        self.import(namespace, &tar);
    }

    /// Builds and imports the CRI sandbox image ([`image::PAUSE_IMAGE`]) into `namespace`.
    pub fn import_pause(&self, namespace: &str) {
        let tar = self.dir.join("pause-image.tar");
        image::write_busybox_image(&tar, image::PAUSE_IMAGE, image::PAUSE_CMD)
            .unwrap_or_else(|e| panic!("build {}: {e}", tar.display()));
        self.import(namespace, &tar);
    }

    pub fn import(&self, namespace: &str, tar: &Path) {
        let tar = tar.to_string_lossy();
        success(&self.ctr_in(namespace, &["images", "import", &tar]));
    }

    /// Best effort: kill and remove every task and container of every namespace.
    fn remove_all_containers(&self) {
        let quick = Duration::from_secs(30);
        let lines = |args: &[&str]| -> Vec<String> {
            try_run_with_timeout(&mut self.ctr_command(args), quick)
                .map(|o| text(&o.stdout))
                .unwrap_or_default()
                .lines()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .filter(|l| !l.is_empty())
                .collect()
        };
        for ns in lines(&["namespaces", "ls", "-q"]) {
            let tasks = lines(&["-n", &ns, "tasks", "ls", "-q"]);
            for task in &tasks {
                let kill = ["-n", &ns, "tasks", "kill", "-a", "-s", "SIGKILL", task];
                let _ = try_run_with_timeout(&mut self.ctr_command(&kill), quick);
            }
            for task in &tasks {
                let rm = ["-n", &ns, "tasks", "rm", "-f", task];
                let _ = try_run_with_timeout(&mut self.ctr_command(&rm), quick);
            }
            for container in lines(&["-n", &ns, "containers", "ls", "-q"]) {
                let rm = ["-n", &ns, "containers", "rm", &container];
                let _ = try_run_with_timeout(&mut self.ctr_command(&rm), quick);
            }
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Shims outlive containerd: sweep hostprocess containers left in this instance's state root
    /// through the shim's own crash-cleanup action, then kill every shim of this instance.
    fn stop_shims(&self) {
        let socket = self.socket.to_string_lossy().into_owned();
        for namespace in read_dir_names(&self.shim_root) {
            for id in read_dir_names(&self.shim_root.join(&namespace)) {
                let bundle = self
                    .dir
                    .join("state/io.containerd.runtime.v2.task")
                    .join(&namespace)
                    .join(&id);
                let cwd = if bundle.is_dir() {
                    bundle.clone()
                } else {
                    self.dir.clone()
                };
                let mut delete = Command::new(shim_binary());
                delete
                    .args(["-namespace", &namespace, "-address", &socket, "-id", &id])
                    .arg("-bundle")
                    .arg(&bundle)
                    .arg("delete")
                    .current_dir(cwd)
                    .env(SHIM_ROOT_ENV, &self.shim_root)
                    .env("TTRPC_ADDRESS", format!("{socket}.ttrpc"));
                match try_run_with_timeout(&mut delete, Duration::from_secs(60)) {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => eprintln!("cleanup: shim delete {id}: {}", text(&o.stderr)),
                    Err(e) => eprintln!("cleanup: {e}"),
                }
            }
        }
        for pid in processes_with_arg(&socket) {
            // SAFETY: kill(2) with a pid read from /proc; at worst it is already gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    fn unmount_all(&self) {
        for mount_point in mounts_under(&self.dir) {
            let Ok(c_path) = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes())
            else {
                continue;
            };
            // SAFETY: umount2(2) with a NUL-terminated path.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- containerd log ({}), last lines ---\n{}",
                self.log_path().display(),
                self.log_tail(200)
            );
        }
        if self.child.is_some() {
            self.remove_all_containers();
        }
        self.stop_daemon();
        self.stop_shims();
        self.unmount_all();
        if std::env::var_os("HPC_KEEP_TEST_DIRS").is_none() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("cleanup: remove {}: {e}", self.dir.display());
            }
        }
    }
}

/// The shipped configuration of the CRI runtime handler for containerd's config `version`
/// (2: containerd 1.6/1.7, 3: containerd 2.x).
pub fn shipped_handler_path(version: u8) -> PathBuf {
    let name = match version {
        3 => "containerd-hostprocess-v3.toml",
        _ => "containerd-hostprocess.toml",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

/// The runtime section of the shipped configuration for config `version` (everything but its
/// `version` line), so the tests run the configuration users are told to install.
fn shipped_runtime_handler(version: u8) -> String {
    let path = shipped_handler_path(version);
    let shipped =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let plugin = match version {
        3 => "io.containerd.cri.v1.runtime",
        _ => "io.containerd.grpc.v1.cri",
    };
    assert!(
        shipped.contains(&format!(
            "[plugins.\"{plugin}\".containerd.runtimes.hostprocess]"
        )),
        "{} registers no hostprocess runtime handler under {plugin}",
        path.display()
    );
    shipped
        .lines()
        .filter(|line| !line.trim_start().starts_with("version"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The containerd under test: `HPC_CONTAINERD_VERSION` names a release fetched from Debian's
/// archive; unset, the machine's own (installed when missing).
pub struct Release {
    /// The directory holding the release's `containerd`, `ctr` and runc shim; `None` for the
    /// machine's, found on `PATH`.
    bin_dir: Option<PathBuf>,
    /// The config version it reads: 2 (1.6, 1.7) or 3 (2.x).
    pub config_version: u8,
    /// What `containerd --version` prints.
    pub version: String,
}

/// The environment variable choosing the containerd release the end-to-end tests run against.
pub const CONTAINERD_VERSION_ENV: &str = "HPC_CONTAINERD_VERSION";

impl Release {
    pub fn get() -> &'static Release {
        static RELEASE: OnceLock<Release> = OnceLock::new();
        RELEASE.get_or_init(|| {
            let wanted = std::env::var(CONTAINERD_VERSION_ENV).unwrap_or_default();
            let bin_dir = if wanted.is_empty() {
                ensure_installed(|| on_path("containerd") && on_path("ctr"), &["containerd"]);
                None
            } else {
                Some(fetch_release(&wanted))
            };
            let mut release = Release {
                bin_dir,
                config_version: 2,
                version: String::new(),
            };
            let out = run_with_timeout(
                Command::new(release.binary("containerd")).arg("--version"),
                Duration::from_secs(30),
            );
            release.version = success(&out).trim().to_string();
            // "containerd github.com/containerd/containerd/v2 2.1.9 …"
            let number = release.version.split_whitespace().nth(2).unwrap_or("");
            assert!(
                wanted.is_empty() || number.starts_with(&wanted),
                "{CONTAINERD_VERSION_ENV}={wanted} but the fetched containerd is {number}"
            );
            if !number.starts_with('1') {
                release.config_version = 3;
            }
            eprintln!("containerd under test: {}", release.version);
            release
        })
    }

    /// A binary of this release (`containerd`, `ctr`).
    pub fn binary(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }
}

/// Debian suites that carry the containerd releases the project is tested with (1.7 in
/// trixie, 2.x in sid).
const DEBIAN_SOURCES: &str = "deb http://deb.debian.org/debian trixie main\n\
                              deb http://deb.debian.org/debian sid main\n";

/// Fetches Debian's `containerd` package of upstream `version` into
/// `target/containerd/<version>` (once; later runs reuse it) and returns its `usr/bin`.
fn fetch_release(version: &str) -> PathBuf {
    let cache = target_dir().join("containerd");
    let root = cache.join(version);
    let bin = root.join("usr/bin");
    if bin.join("containerd").is_file() {
        return bin;
    }
    let apt = cache.join("apt");
    for dir in ["state/lists/partial", "cache/archives/partial", "download"] {
        fs::create_dir_all(apt.join(dir))
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", apt.join(dir).display()));
    }
    let sources = apt.join("sources.list");
    let status = apt.join("state/status");
    fs::write(&sources, DEBIAN_SOURCES)
        .and_then(|()| fs::write(&status, ""))
        .unwrap_or_else(|e| panic!("write {}: {e}", sources.display()));
    // apt with a state of its own: its lists, cache and (empty) dpkg status are this cache's.
    let options = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::State={}", apt.join("state").display()),
        format!("Dir::State::status={}", status.display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt_get = |args: &[&str], cwd: &Path| {
        let mut command = Command::new("apt-get");
        for option in &options {
            command.arg("-o").arg(option);
        }
        command.args(args).current_dir(cwd);
        success(&run_with_timeout(&mut command, Duration::from_secs(600)));
    };
    let download = apt.join("download");
    apt_get(&["-q", "update"], &download);
    apt_get(
        &["-q", "download", &format!("containerd={version}*")],
        &download,
    );
    let deb = fs::read_dir(&download)
        .unwrap_or_else(|e| panic!("read {}: {e}", download.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("containerd_{version}")))
        })
        .unwrap_or_else(|| panic!("apt-get download left no containerd_{version}*.deb"));
    // Unpacked beside its final place, then renamed, so a concurrent test binary never sees
    // half a release.
    let partial = cache.join(unique_id(&format!("{version}.partial")));
    let mut unpack = Command::new("dpkg");
    unpack.arg("-x").arg(&deb).arg(&partial);
    success(&run_with_timeout(&mut unpack, Duration::from_secs(300)));
    if fs::rename(&partial, &root).is_err() {
        // Another test binary got there first.
        let _ = fs::remove_dir_all(&partial);
    }
    assert!(
        bin.join("containerd").is_file(),
        "{} has no usr/bin/containerd",
        deb.display()
    );
    bin
}

/// The target directory of the running test (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the test binary's path: {e}"));
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()))
}

/// A CNI plugin that configures nothing: ADD answers an address for the interface it is given,
/// everything else succeeds. With it, containerd's CRI makes pod networks (a named network
/// namespace, then CNI ADD) without touching the host's network, so a pod that is not on the
/// host network reaches the runtime instead of failing at "cni config not initialized".
const FAKE_CNI_PLUGIN: &str = r#"#!/bin/sh
conf=$(cat)
version=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
case "$CNI_COMMAND" in
ADD)
  printf '{"cniVersion":"%s","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","address":"192.0.2.2/24","interface":0}]}' \
    "${version:-0.4.0}" "$CNI_IFNAME" "$CNI_NETNS" ;;
VERSION)
  printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
esac
exit 0
"#;

/// The fake plugin as the pod network and as CRI's own loopback network.
fn install_fake_cni(cni: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for name in ["hpc-fake", "loopback"] {
        let plugin = cni.join("bin").join(name);
        fs::write(&plugin, FAKE_CNI_PLUGIN)
            .and_then(|()| fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)))
            .unwrap_or_else(|e| panic!("write {}: {e}", plugin.display()));
    }
    let conf = cni.join("net.d/10-hpc-fake.conflist");
    let list = r#"{"cniVersion":"0.4.0","name":"hpc-fake","plugins":[{"type":"hpc-fake"}]}"#;
    fs::write(&conf, list).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Containerd {
    /// Where containerd-shim puts the socket of the shim serving `group` (a container id, or
    /// the pod's group) in `namespace`.
    pub fn shim_socket(&self, namespace: &str, group: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let key = self.socket.join(namespace).join(group);
        let hash: String = Sha256::digest(key.to_string_lossy().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        PathBuf::from("/run/containerd/s").join(hash)
    }

    /// Pids of every serving hostprocess shim of this instance (not `start`/`delete` runs): a
    /// serving shim is its `start` action forked, with the action named `serve` instead.
    pub fn serving_shims(&self) -> Vec<i32> {
        let socket = self.socket.to_string_lossy().into_owned();
        processes_with_arg(&socket)
            .into_iter()
            .filter(|pid| {
                let args = cmdline(*pid);
                let is_shim = args
                    .first()
                    .is_some_and(|a| a.ends_with("containerd-shim-hostprocess-v1"));
                is_shim && args.last().is_some_and(|a| a == "serve")
            })
            .collect()
    }
}

/// The arguments of a process (empty when it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Pids of processes whose command line is exactly `args`.
pub fn processes_running(args: &[&str]) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            !zombie && cmdline(*pid) == args
        })
        .collect()
}

/// Pids of processes whose command line has `arg` as one argument.
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(octal, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
