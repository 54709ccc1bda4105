//! §4: a container never gains more than its account, and other local users get nothing from
//! the runtime: the volume honours no setuid bit or device node, the state and the symlink
//! layout's volumes are closed to other users, no lock can hang the runtime, and nothing is
//! made or mounted through another user's symlink or over a host directory.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use support::*;

/// Runs `script` with `/bin/sh` as `user` (its uid and primary gid, no other group).
fn as_user(user: &HostUser, script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={}", user.uid),
            &format!("--regid={}", user.primary.gid),
            "--clear-groups",
            "/bin/sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv")
}

/// A state root as an operator may have made it: any user may pass through and list it.
fn open_root(rt: &Runtime) {
    fs::set_permissions(rt.root(), fs::Permissions::from_mode(0o755)).unwrap();
}

/// An image holding a setuid-root copy of `id` and a device node (`/dev/null`'s numbers,
/// harmless if it ever opened).
fn privileged_image() -> Bundle {
    let bundle = Bundle::new().file("message.txt", "image\n");
    let id = bundle.rootfs().join("suid-id");
    fs::copy("/usr/bin/id", &id).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o4755)).unwrap();
    let status = Command::new("mknod")
        .args(["-m", "666"])
        .arg(bundle.rootfs().join("null-device"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success(), "mknod");
    bundle
}

#[test]
fn the_images_setuid_programs_and_device_nodes_grant_nothing_in_either_layout() {
    // A read-only root with nothing added is the image itself, bound rather than overlaid.
    for (layout, read_only) in [
        ("bind", false),
        ("symlink", false),
        ("bind", true),
        ("symlink", true),
    ] {
        let layout_name = format!("{layout}{}", if read_only { ", read-only" } else { "" });
        let layout_name = layout_name.as_str();
        let rt = Runtime::new();
        // The account must pass through the state root to its symlink-layout volume.
        fs::set_permissions(rt.root(), fs::Permissions::from_mode(0o711)).unwrap();
        let id = unique_id("nosuid");
        let bundle = privileged_image()
            .set(&["root", "readonly"], serde_json::json!(read_only))
            .annotation("hostprocess.io/volume-layout", layout)
            .user_name("NT AUTHORITY\\LOCAL SERVICE")
            .sh(
                "cd \"$CONTAINER_SANDBOX_MOUNT_POINT\"; echo \"euid=$(./suid-id -u)\"; \
                 if echo x > ./null-device; then echo DEVICE-OPENED; fi; cat message.txt",
            );
        let _c = rt.guard(&id);
        let layout = layout_name;
        let out = rt.run(&id, &bundle).ok(&format!("{layout}: run"));
        let text = out.stdout_text();
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
        assert!(text.contains("image\n"), "{layout}: {text}");
        assert!(
            text.contains(&format!("euid={nobody}\n")),
            "{layout}: the image's setuid-root program ran with another euid: {text}"
        );
        assert!(
            !text.contains("DEVICE-OPENED"),
            "{layout}: the image's device node opened: {text}"
        );
        assert!(
            out.stderr_text().contains("Permission denied"),
            "{layout}: {}",
            out.stderr_text()
        );
    }
}

#[test]
fn another_user_cannot_reach_a_symlink_layout_volume() {
    let rt = Runtime::new();
    open_root(&rt);
    let other = HostUser::new();
    let id = unique_id("symreach");
    let bundle = privileged_image()
        .annotation("hostprocess.io/volume-layout", "symlink")
        .user_name("NT AUTHORITY\\LOCAL SERVICE")
        .sh("echo secret > \"$CONTAINER_SANDBOX_MOUNT_POINT/written\"; exec sleep 60");
    let (_c, _) = rt.started(&id, &bundle);
    let volume = rt.root().join("hpc").join(&id);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || volume
            .join("written")
            .exists()),
        "the workload did not write its volume"
    );
    let attempt = as_user(
        &other,
        &format!(
            "ls {volume}/ && echo LISTED; cat {volume}/message.txt {volume}/written && echo READ; \
             {volume}/suid-id -u && echo RAN; ls {hpc}/ && echo LISTED-LOCATION",
            volume = volume.display(),
            hpc = volume.parent().unwrap().display()
        ),
    );
    let text = String::from_utf8_lossy(&attempt.stdout);
    for what in ["LISTED", "READ", "RAN", "LISTED-LOCATION"] {
        assert!(
            !text.lines().any(|l| l == what),
            "another user could do it ({what}): {text} {}",
            String::from_utf8_lossy(&attempt.stderr)
        );
    }
}

#[test]
fn another_user_can_neither_read_nor_lock_a_containers_state() {
    let rt = Runtime::new();
    open_root(&rt);
    let other = HostUser::new();
    let id = unique_id("statemode");
    let bundle = Bundle::new().env("SECRET=hunter2").sh("exec sleep 60");
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).ok("create");
    let dir = rt.root().join(&id);
    let attempt = as_user(
        &other,
        &format!(
            "cat {dir}/state.json && echo READ; flock -n -x {dir}/lock true && echo LOCKED; \
             ls {dir} && echo LISTED",
            dir = dir.display()
        ),
    );
    let text = String::from_utf8_lossy(&attempt.stdout);
    assert!(!text.contains("hunter2"), "the state was read: {text}");
    for what in ["READ", "LOCKED", "LISTED"] {
        assert!(
            !text.lines().any(|l| l == what),
            "another user could do it ({what}): {text}"
        );
    }
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("state.json")), 0o600);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    rt.start(&id).ok("start");
}

#[test]
fn a_lock_held_too_long_fails_naming_its_holder_instead_of_hanging() {
    let rt = Runtime::new().with_env("HOSTPROCESS_LOCK_TIMEOUT", "1");
    let id = unique_id("locktimeout");
    let bundle = Bundle::new().sh("exec sleep 60");
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).ok("create");
    let held = fs::File::open(rt.root().join(&id).join("lock")).unwrap();
    held.lock().unwrap();
    rt.start(&id)
        .fails_with(&format!("process {} holds it", std::process::id()));
    rt.delete_force(&id).fails_with("is still held after 1s");
    drop(held);
    rt.start(&id).ok("start once the lock is free");
}

/// A directory owned by `user` holding `conf -> target` (the link is the user's too).
fn users_dir_with_link(user: &HostUser, target: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hpt-user-")
        .tempdir()
        .unwrap();
    symlink(target, dir.path().join("conf")).unwrap();
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(user.uid)), None).unwrap();
    std::os::unix::fs::lchown(dir.path().join("conf"), Some(user.uid), None).unwrap();
    dir
}

#[test]
fn no_mount_point_is_made_through_another_users_symlink() {
    let user = HostUser::new();
    // A root-owned directory the user must not get root to write into (as /etc/cron.d).
    let victim = tempfile::Builder::new()
        .prefix("hpt-victim-")
        .tempdir()
        .unwrap();
    let theirs = users_dir_with_link(&user, victim.path());
    let source = open_dir();
    fs::write(source.path().join("payload"), "x").unwrap();
    let payload = source.path().join("payload");
    let conf = theirs.path().join("conf");
    let cases = [
        (source.path(), conf.join("made-dir")),
        (payload.as_path(), conf.join("made-file")),
        (payload.as_path(), conf.join("deeper/made-file")),
        // The link itself as the mount point.
        (source.path(), conf.clone()),
    ];
    for (source, destination) in cases {
        let rt = Runtime::new();
        let id = unique_id("usersymlink");
        let bundle = Bundle::new().bind(source, &destination.to_string_lossy(), &[]);
        let _c = rt.guard(&id);
        rt.create(&id, &bundle)
            .fails_with(&format!("is a symlink that uid {} could change", user.uid));
        let made: Vec<_> = fs::read_dir(victim.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            made.is_empty(),
            "{}: made through the user's symlink: {made:?}",
            destination.display()
        );
    }
}

#[test]
fn a_root_owned_symlink_on_the_way_to_a_mount_point_is_followed() {
    // The host's own links (/var/run -> /run) still work.
    let rt = Runtime::new();
    let real = tempfile::Builder::new()
        .prefix("hpt-real-")
        .tempdir()
        .unwrap();
    let links = tempfile::Builder::new()
        .prefix("hpt-links-")
        .tempdir()
        .unwrap();
    symlink(real.path(), links.path().join("to-real")).unwrap();
    let source = open_dir();
    fs::write(source.path().join("payload"), "through root's link\n").unwrap();
    let destination = links.path().join("to-real/mounted");
    let id = unique_id("rootlink");
    let bundle = Bundle::new()
        .bind(source.path(), &destination.to_string_lossy(), &[])
        .args(&["/bin/cat", &destination.join("payload").to_string_lossy()]);
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "through root's link\n");
    assert!(real.path().join("mounted").is_dir());
}

fn symlink_layout_at(location: &Path) -> Bundle {
    Bundle::new()
        .annotation("hostprocess.io/volume-layout", "symlink")
        .annotation(
            "microsoft.com/hostprocess-rootfs-location",
            &location.to_string_lossy(),
        )
}

/// A directory as the runtime makes a location: root's, closed to other users.
fn runtime_location() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hpt-loc-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

#[test]
fn the_symlink_layout_never_mounts_over_an_existing_host_directory() {
    let location = runtime_location();
    for holds_a_file in [true, false] {
        let rt = Runtime::new();
        let id = unique_id("collide");
        let existing = location.path().join(&id);
        fs::create_dir(&existing).unwrap();
        if holds_a_file {
            fs::write(existing.join("host-file"), "host").unwrap();
        }
        let _c = rt.guard(&id);
        rt.create(&id, &symlink_layout_at(location.path()))
            .fails_with("exists on the host");
        assert!(existing.is_dir(), "the host directory was removed");
        if holds_a_file {
            assert_eq!(
                fs::read_to_string(existing.join("host-file")).unwrap(),
                "host"
            );
        }
        assert!(
            !host_mount_points().contains(&existing.to_string_lossy().into_owned()),
            "mounted over the host directory"
        );
    }
    // And a location the runtime owns works.
    let rt = Runtime::new();
    let id = unique_id("ownloc");
    let _c = rt.guard(&id);
    let out = rt
        .run(
            &id,
            &symlink_layout_at(location.path()).sh("echo \"$CONTAINER_SANDBOX_MOUNT_POINT\""),
        )
        .ok("run at a location of the runtime's own");
    assert_eq!(
        out.stdout_text(),
        format!("{}\n", location.path().join(&id).display())
    );
}

#[test]
fn the_symlink_layout_refuses_a_location_the_runtime_does_not_own() {
    let user = HostUser::new();
    let users = tempfile::Builder::new()
        .prefix("hpt-uloc-")
        .tempdir()
        .unwrap();
    nix::unistd::chown(
        users.path(),
        Some(nix::unistd::Uid::from_raw(user.uid)),
        None,
    )
    .unwrap();
    let open = tempfile::Builder::new()
        .prefix("hpt-oloc-")
        .tempdir()
        .unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let cases: [(&Path, &str, String); 4] = [
        // Would mount over /etc.
        (Path::new("/"), "etc", "exists on the host".to_string()),
        (Path::new("/"), "", "is open to other users".to_string()),
        (users.path(), "", format!("belongs to uid {}", user.uid)),
        (open.path(), "", "is open to other users".to_string()),
    ];
    for (location, id, message) in cases {
        let rt = Runtime::new();
        let id = if id.is_empty() {
            unique_id("loc")
        } else {
            id.to_string()
        };
        // In a throwaway mount namespace: a runtime that got this wrong must not shadow the
        // host's /etc while the test runs.
        let bundle = symlink_layout_at(location);
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", BIN, "--root"])
            .arg(rt.root())
            .args(["create", "-b"])
            .arg(bundle.path())
            .arg(&id)
            .env("HOSTPROCESS_EPHEMERAL_UIDS_DIR", rt.claims_dir())
            .stdin(std::process::Stdio::null());
        let out = rt.output_of(cmd, CLI_TIMEOUT);
        if out.status.success() {
            let _ = rt.delete_force(&id);
        }
        out.fails_with(&message);
        assert!(!location.join(&id).exists() || id == "etc");
        assert!(!host_mount_points().contains(&location.join(&id).to_string_lossy().into_owned()));
        assert!(!rt.root().join(&id).exists(), "state left behind");
    }
}

#[test]
fn no_sandbox_mount_point_is_made_through_another_users_symlink() {
    let user = HostUser::new();
    let victim = tempfile::Builder::new()
        .prefix("hpt-victim-")
        .tempdir()
        .unwrap();
    let theirs = users_dir_with_link(&user, victim.path());
    let rt = Runtime::new();
    let id = unique_id("userloc");
    let location = theirs.path().join("conf/hpc");
    let bundle = Bundle::new().annotation(
        "microsoft.com/hostprocess-rootfs-location",
        &location.to_string_lossy(),
    );
    let _c = rt.guard(&id);
    rt.create(&id, &bundle)
        .fails_with(&format!("is a symlink that uid {} could change", user.uid));
    assert!(
        !victim.path().join("hpc").exists(),
        "the sandbox mount point was made through the user's symlink"
    );
}

#[test]
fn a_symlink_swapped_in_after_the_host_check_is_never_mounted_through() {
    // A user's directory holds a real `conf` and a `conf -> victim` link of theirs, traded as
    // fast as possible while containers mount on `<dir>/conf/mnt`: each create refuses the
    // link or mounts on the real directory, never on the victim's `mnt`.
    let user = HostUser::new();
    let victim = tempfile::Builder::new()
        .prefix("hpt-victim-")
        .tempdir()
        .unwrap();
    fs::create_dir(victim.path().join("mnt")).unwrap();
    let theirs = users_dir_with_link(&user, victim.path());
    let (link, real) = (theirs.path().join("conf"), theirs.path().join("real"));
    fs::create_dir_all(real.join("mnt")).unwrap();
    let source = open_dir();
    fs::write(source.path().join("payload"), "x").unwrap();
    let mut through = Vec::new();
    let swapper = PathSwapper::start(&link, &real);
    for round in 0..40 {
        let rt = Runtime::new();
        let id = unique_id("swaprace");
        let bundle = Bundle::new()
            .bind(source.path(), &link.join("mnt").to_string_lossy(), &[])
            .sh(&format!(
                "if [ -e {}/mnt/payload ]; then echo THROUGH; fi",
                victim.path().display()
            ));
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle);
        if out.status.success() && out.stdout_text().contains("THROUGH") {
            through.push(round);
        }
    }
    drop(swapper);
    assert!(
        through.is_empty(),
        "rounds that mounted through the user's symlink: {through:?}"
    );
}
