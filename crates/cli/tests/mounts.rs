//! §2 mount rules: bind mounts at their destination for this container only, `ro`, propagation
//! (rshared for CSI plugins), named pipes refused, unix sockets supported.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// A host directory bind-mounted on itself and made shared; unmounted (with whatever was
/// mounted below it) on drop.
struct SharedDir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl SharedDir {
    fn new() -> SharedDir {
        let tmp = open_dir();
        let path = tmp.path().join("shared");
        fs::create_dir(&path).unwrap();
        let p = path.to_string_lossy().into_owned();
        for args in [vec!["--bind", &p, &p], vec!["--make-shared", &p]] {
            let out = Command::new("mount").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                out.stderr_text()
            );
        }
        SharedDir { _tmp: tmp, path }
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        unmount_all_under(&self.path);
    }
}

#[test]
fn a_bind_mount_is_visible_at_its_destination_for_this_container_only() {
    let rt = Runtime::new();
    let id = unique_id("bind");
    let source = open_dir();
    fs::write(source.path().join("payload"), "payload\n").unwrap();
    let dest = open_dir();
    let dest_path = dest.path().join("target");
    let d = dest_path.to_string_lossy().into_owned();
    let bundle = Bundle::new().bind(source.path(), &d, &[]).sh(&format!(
        "cat {d}/payload; cat \"$CONTAINER_SANDBOX_MOUNT_POINT{d}/payload\"; \
             echo from-container > {d}/written; exec sleep 60"
    ));
    let log = open_dir();
    let _c = rt.guard(&id);
    rt.create_logged(&id, &bundle, &log.path().join("out"))
        .ok("create");
    rt.start(&id).ok("start");
    let written = source.path().join("written");
    assert!(
        wait_until(Duration::from_secs(5), || written.exists()),
        "a write through the mount reaches the source"
    );
    let text = fs::read_to_string(log.path().join("out")).unwrap();
    assert_eq!(text, "payload\npayload\n");
    // The host's own path is shadowed only inside the container.
    assert!(
        !dest_path.join("payload").exists(),
        "the mount leaked to the host"
    );
    assert!(!host_mount_points().contains(&d));
}

/// A mount over a path the host has is what every pod's /etc/hosts is: the container sees the
/// mount, the host keeps its file, and nothing is said about it at the default log level.
#[test]
fn a_mount_over_an_existing_host_file_is_the_usual_case_and_logs_nothing() {
    let rt = Runtime::new();
    let id = unique_id("overhost");
    let source = open_dir();
    fs::write(source.path().join("hosts"), "from the pod\n").unwrap();
    let dest = open_dir();
    let host_file = dest.path().join("hosts");
    fs::write(&host_file, "the host's\n").unwrap();
    let d = host_file.to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .bind(&source.path().join("hosts"), &d, &[])
        .sh(&format!("cat {d}"));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "from the pod\n");
    assert_eq!(out.stderr_text(), "", "no warning for the usual case");
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "the host's\n");
}

#[test]
fn a_read_only_mount_refuses_writes() {
    let rt = Runtime::new();
    let id = unique_id("ro");
    let ro_source = open_dir();
    let rw_source = open_dir();
    fs::write(ro_source.path().join("payload"), "ro\n").unwrap();
    let dest = open_dir();
    let ro = dest.path().join("ro").to_string_lossy().into_owned();
    let rw = dest.path().join("rw").to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .bind(ro_source.path(), &ro, &["ro"])
        .bind(rw_source.path(), &rw, &["rw"])
        .sh(&format!(
            "cat {ro}/payload; \
             if echo x > {ro}/new; then echo WROTE-RO; fi; \
             if echo x > \"$CONTAINER_SANDBOX_MOUNT_POINT{ro}/new2\"; then echo WROTE-RO-LINK; fi; \
             echo y > {rw}/new && echo WROTE-RW"
        ));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    let text = out.stdout_text();
    assert!(text.starts_with("ro\n"), "{text}");
    assert!(!text.contains("WROTE-RO"), "ro is not enforced: {text}");
    assert!(
        text.contains("WROTE-RW"),
        "the rw mount must be writable: {text}"
    );
    assert!(
        out.stderr_text().contains("Read-only file system"),
        "{}",
        out.stderr_text()
    );
    assert!(!ro_source.path().join("new").exists());
    assert!(!ro_source.path().join("new2").exists());
    assert!(rw_source.path().join("new").exists());
}

#[test]
fn an_rshared_mount_makes_container_mounts_visible_on_the_host() {
    let rt = Runtime::new();
    let id = unique_id("rshared");
    let shared = SharedDir::new();
    let dest = open_dir();
    let d = dest.path().join("csi").to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .bind(&shared.path, &d, &["rshared"])
        .sh(&format!(
            "mkdir -p {d}/vol && mount -t tmpfs -o size=1m hpt-csi {d}/vol && \
             echo published > {d}/vol/marker && echo mounted; exec sleep 60"
        ));
    let log = open_dir();
    let _c = rt.guard(&id);
    rt.create_logged(&id, &bundle, &log.path().join("out"))
        .ok("create");
    rt.start(&id).ok("start");
    let marker = shared.path.join("vol/marker");
    let seen = wait_until(Duration::from_secs(5), || marker.exists());
    let text = fs::read_to_string(log.path().join("out")).unwrap();
    assert!(
        text.contains("mounted"),
        "the container could not mount: {text}"
    );
    assert!(
        seen,
        "a tmpfs mounted by the container under an rshared mount is not visible on the host at '{}'",
        marker.display()
    );
    assert!(host_mount_points().contains(&shared.path.join("vol").to_string_lossy().into_owned()));
}

#[test]
fn rshared_needs_a_shared_source_and_says_how_to_get_one() {
    let rt = Runtime::new();
    let id = unique_id("rsharedpriv");
    let source = open_dir();
    let dest = open_dir();
    let bundle = Bundle::new()
        .bind(
            source.path(),
            &dest.path().join("x").to_string_lossy(),
            &["rshared"],
        )
        .args(&["/bin/true"]);
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).fails_with("mount --make-rshared");
    rt.assert_gone(&id);
}

#[test]
fn host_mounts_made_after_create_propagate_into_the_view() {
    let rt = Runtime::new();
    let id = unique_id("slave");
    let shared = SharedDir::new();
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, pid) = rt.started(&id, &bundle);
    let sub = shared.path.join("late");
    fs::create_dir(&sub).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "hpt-late"])
        .arg(&sub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr_text());
    fs::write(sub.join("marker"), "late\n").unwrap();
    let inside = PathBuf::from(format!("/proc/{pid}/root{}/marker", sub.display()));
    assert!(
        wait_until(Duration::from_secs(3), || inside.exists()),
        "a host mount made after create does not reach the container's view"
    );
}

#[test]
fn a_fifo_source_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("fifo");
    let dir = open_dir();
    let fifo = dir.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let bundle = Bundle::new().bind(&fifo, &dir.path().join("dest").to_string_lossy(), &[]);
    let _c = rt.guard(&id);
    let out = rt
        .create(&id, &bundle)
        .fails_with("open the pipe at its host path instead");
    assert!(
        out.stderr_text().contains(&*fifo.to_string_lossy()),
        "{}",
        out.stderr_text()
    );
    rt.assert_gone(&id);
    assert!(
        !dir.path().join("dest").exists(),
        "nothing is made for a refused spec"
    );
}

#[test]
fn a_windows_named_pipe_source_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("npipe");
    let bundle = Bundle::new().mount(json!({
        "type": "bind",
        "source": "\\\\.\\pipe\\x",
        "destination": "/run/x",
        "options": ["rbind"]
    }));
    let _c = rt.guard(&id);
    let out = rt
        .create(&id, &bundle)
        .fails_with("open the pipe at its host path instead");
    assert!(
        out.stderr_text().contains("\\\\.\\pipe\\x"),
        "{}",
        out.stderr_text()
    );
    rt.assert_gone(&id);
}

#[test]
fn a_unix_socket_can_be_mounted_and_used() {
    let rt = Runtime::new();
    let id = unique_id("sock");
    let dir = open_dir();
    let socket = dir.path().join("host.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let dest = open_dir();
    let d = dest
        .path()
        .join("run/app.sock")
        .to_string_lossy()
        .into_owned();
    let client = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect('{d}'); \
         s.sendall(b'hello through the mount'); s.close()"
    );
    let bundle = Bundle::new()
        .bind(&socket, &d, &[])
        .args(&[PYTHON, "-c", &client]);
    let _c = rt.guard(&id);
    rt.run(&id, &bundle).ok("run");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut stream, _) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the container never connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello through the mount");
}

#[test]
fn kernel_filesystem_mounts_of_default_specs_are_skipped() {
    let rt = Runtime::new();
    let id = unique_id("procmnt");
    let device = ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/tty0"]
        .into_iter()
        .find(|d| Path::new(d).exists())
        .expect("a host device");
    // What `runc spec` and containerd put in every spec: the container must keep the host's.
    let bundle = Bundle::new()
        .mount(json!({"destination": "/proc", "type": "proc", "source": "proc"}))
        .mount(
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        )
        .mount(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                      "options": ["nosuid", "noexec", "nodev", "ro"]}),
        )
        .sh(&format!(
            "test -e /proc/1/cmdline && test -e /sys/fs/cgroup/memory && test -e {device} && \
             test \"$(ls /dev | wc -l)\" -gt 10 && echo host-view"
        ));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "host-view\n", "{}", out.stderr_text());
}

/// Mounts a tmpfs with a marker at `dir/name` on the host.
fn host_tmpfs(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join(name);
    fs::create_dir_all(&sub).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "hpt-prop"])
        .arg(&sub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr_text());
    fs::write(sub.join("marker"), "x").unwrap();
    sub
}

/// Whether a host mount made under a shared source after create reaches the container's view
/// through a mount with `option`.
fn host_mount_reaches_container(option: &str) -> bool {
    let rt = Runtime::new();
    let id = unique_id("prop");
    let shared = SharedDir::new();
    let dest = open_dir();
    let d = dest.path().join("m").to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .bind(&shared.path, &d, &[option])
        .args(&["/bin/sleep", "60"]);
    let (_c, pid) = rt.started(&id, &bundle);
    host_tmpfs(&shared.path, "late");
    let inside = PathBuf::from(format!("/proc/{pid}/root{d}/late/marker"));
    wait_until(Duration::from_secs(2), || inside.exists())
}

#[test]
fn rslave_mounts_receive_host_mounts() {
    assert!(host_mount_reaches_container("rslave"));
}

#[test]
fn rprivate_mounts_do_not_receive_host_mounts() {
    assert!(!host_mount_reaches_container("rprivate"));
}

#[test]
fn rslave_mounts_do_not_send_container_mounts_to_the_host() {
    let rt = Runtime::new();
    let id = unique_id("slaveback");
    let shared = SharedDir::new();
    let dest = open_dir();
    let d = dest.path().join("m").to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .bind(&shared.path, &d, &["rslave"])
        .sh(&format!(
            "mkdir -p {d}/vol && mount -t tmpfs -o size=1m hpt-back {d}/vol && \
         touch {d}/vol/marker && echo mounted; exec sleep 60"
        ));
    let log = open_dir();
    let _c = rt.guard(&id);
    rt.create_logged(&id, &bundle, &log.path().join("out"))
        .ok("create");
    rt.start(&id).ok("start");
    assert!(wait_until(Duration::from_secs(5), || {
        fs::read_to_string(log.path().join("out")).is_ok_and(|t| t.contains("mounted"))
    }));
    assert!(
        !shared.path.join("vol/marker").exists(),
        "an rslave mount propagated a container mount to the host"
    );
}

#[test]
fn a_single_file_can_be_mounted() {
    let rt = Runtime::new();
    let id = unique_id("filemount");
    let dir = open_dir();
    let token = dir.path().join("token");
    fs::write(&token, "secret-token\n").unwrap();
    let dest = open_dir();
    let d = dest
        .path()
        .join("var/run/secrets/token")
        .to_string_lossy()
        .into_owned();
    let bundle = Bundle::new().bind(&token, &d, &["ro"]).sh(&format!(
        "cat {d}; cat \"$CONTAINER_SANDBOX_MOUNT_POINT{d}\""
    ));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "secret-token\nsecret-token\n");
}

#[test]
fn a_mount_under_the_sandbox_mount_point_lands_in_the_volume() {
    let rt = Runtime::new();
    let id = unique_id("inside");
    let dir = open_dir();
    fs::write(dir.path().join("settings"), "inside the volume\n").unwrap();
    let bundle = Bundle::new()
        .bind(dir.path(), "/hpc/config", &["ro"])
        .sh("cat \"$CONTAINER_SANDBOX_MOUNT_POINT/config/settings\"");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "inside the volume\n");
    assert!(
        !Path::new("/hpc/config").exists(),
        "made on the host's /hpc"
    );
    assert!(
        !bundle.rootfs().join("config").exists(),
        "made in the image"
    );
}

#[test]
fn a_relative_mount_source_is_relative_to_the_bundle() {
    // As runc does: `root.path` and bind sources given relative are the bundle's, whatever
    // the caller's working directory.
    let rt = Runtime::new();
    let id = unique_id("relsrc");
    let dest = open_dir();
    let d = dest.path().join("m").to_string_lossy().into_owned();
    let bundle = Bundle::new()
        .mount(json!({ "type": "bind", "source": "data", "destination": d, "options": ["rbind"] }))
        .sh(&format!("cat {d}/f"));
    fs::create_dir(bundle.path().join("data")).unwrap();
    fs::write(bundle.path().join("data/f"), "from the bundle\n").unwrap();
    let decoy = open_dir();
    fs::create_dir(decoy.path().join("data")).unwrap();
    fs::write(decoy.path().join("data/f"), "from the caller's cwd\n").unwrap();
    let mut cmd = rt.command(&["run", "-b", &bundle.path().to_string_lossy(), &id]);
    cmd.current_dir(decoy.path());
    let _c = rt.guard(&id);
    let out = rt.output_of(cmd, CLI_TIMEOUT).ok("run");
    assert_eq!(out.stdout_text(), "from the bundle\n");
}

/// The working directory is entered in the complete view: inside the volume, at a path the
/// image has and a mount's compatibility path covers, the process is in the mounted
/// directory, not in the image's under it.
#[test]
fn a_working_directory_in_the_volume_that_a_mount_covers_is_the_mounted_one() {
    let rt = Runtime::new();
    let id = unique_id("cwd-link");
    let source = open_dir();
    fs::write(source.path().join("payload"), "mounted\n").unwrap();
    let dest = open_dir();
    let d = dest.path().join("data").to_string_lossy().into_owned();
    let in_volume = d.trim_start_matches('/').to_string();
    let bundle = Bundle::new()
        .file(&format!("{in_volume}/from-image"), "image\n")
        .bind(source.path(), &d, &[])
        .set(&["process", "cwd"], json!(in_volume))
        .sh("pwd; ls");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), format!("/hpc/{in_volume}\npayload\n"));
}
