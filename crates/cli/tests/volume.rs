//! §2: every container gets a fresh volume made from the image (writable unless
//! root.readonly), at CONTAINER_SANDBOX_MOUNT_POINT; in the bind layout only the container sees
//! it, in the symlink layout it is a host path unique to the container.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::*;

const MESSAGE: &str = "this file came with the image\n";

fn image() -> Bundle {
    Bundle::new()
        .file("message.txt", MESSAGE)
        .file("sub/dir/deep.txt", "deep\n")
}

#[test]
fn sandbox_mount_point_is_set_and_holds_the_image_files() {
    let rt = Runtime::new();
    let id = unique_id("csmp");
    let bundle = image().sh(
        "echo \"mp=$CONTAINER_SANDBOX_MOUNT_POINT\"; echo \"cwd=$(pwd)\"; \
         cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\" \"$CONTAINER_SANDBOX_MOUNT_POINT/sub/dir/deep.txt\"",
    );
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    let text = out.stdout_text();
    assert!(text.contains("mp=/hpc\n"), "{text}");
    assert!(
        text.contains("cwd=/hpc\n"),
        "no cwd in the spec: the mount point\n{text}"
    );
    assert!(text.contains(MESSAGE), "{text}");
    assert!(text.contains("deep\n"), "{text}");
}

#[test]
fn the_mount_point_variable_is_expanded_in_args() {
    let rt = Runtime::new();
    let id = unique_id("expand");
    let bundle = image().args(&["/bin/cat", "$CONTAINER_SANDBOX_MOUNT_POINT/message.txt"]);
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), MESSAGE);
}

#[test]
fn a_file_written_by_one_container_is_absent_from_the_next() {
    let rt = Runtime::new();
    let bundle = image().sh(
        "cd \"$CONTAINER_SANDBOX_MOUNT_POINT\" && \
         if [ -e written.txt ]; then echo saw-previous; fi; \
         if [ \"$(cat message.txt)\" != 'this file came with the image' ]; then echo saw-changed; fi; \
         echo mine > written.txt && echo changed > message.txt && rm sub/dir/deep.txt && echo wrote",
    );
    for round in 0..2 {
        let id = unique_id("fresh");
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle).ok("run");
        let text = out.stdout_text();
        assert!(
            text.contains("wrote"),
            "round {round}: the volume is writable: {text}"
        );
        assert!(!text.contains("saw-previous"), "round {round}: {text}");
        assert!(!text.contains("saw-changed"), "round {round}: {text}");
    }
    // The bundle's rootfs is the read-only lower layer: untouched.
    let rootfs = bundle.rootfs();
    assert!(!rootfs.join("written.txt").exists());
    assert_eq!(
        fs::read_to_string(rootfs.join("message.txt")).unwrap(),
        MESSAGE
    );
    assert!(rootfs.join("sub/dir/deep.txt").exists());
}

#[test]
fn two_running_containers_each_see_only_their_own_volume() {
    let rt = Runtime::new();
    let a = unique_id("vola");
    let b = unique_id("volb");
    let bundle_a = image().sh("echo A > \"$CONTAINER_SANDBOX_MOUNT_POINT/only-a\"; exec sleep 60");
    let bundle_b = image().sh("echo B > \"$CONTAINER_SANDBOX_MOUNT_POINT/only-b\"; exec sleep 60");
    let (_ga, pid_a) = rt.started(&a, &bundle_a);
    let (_gb, pid_b) = rt.started(&b, &bundle_b);
    // Seen from the processes themselves (their root is in their own view).
    assert!(wait_until(Duration::from_secs(5), || {
        Path::new(&format!("/proc/{pid_a}/root/hpc/only-a")).exists()
            && Path::new(&format!("/proc/{pid_b}/root/hpc/only-b")).exists()
    }));
    let list = |id: &str| {
        rt.exec(
            id,
            &["/bin/sh", "-c", "ls \"$CONTAINER_SANDBOX_MOUNT_POINT\""],
        )
        .ok("exec ls")
        .stdout_text()
    };
    let seen_a = list(&a);
    let seen_b = list(&b);
    assert!(
        seen_a.contains("only-a") && !seen_a.contains("only-b"),
        "{seen_a}"
    );
    assert!(
        seen_b.contains("only-b") && !seen_b.contains("only-a"),
        "{seen_b}"
    );
    assert!(seen_a.contains("message.txt") && seen_b.contains("message.txt"));
    // The host sees neither volume at /hpc.
    for name in ["only-a", "only-b", "message.txt"] {
        assert!(
            !Path::new("/hpc").join(name).exists(),
            "/hpc/{name} is visible on the host"
        );
    }
    assert!(!Path::new(&format!("/proc/{pid_a}/root/hpc/only-b")).exists());
}

#[test]
fn the_rootfs_location_annotation_moves_the_mount_point() {
    let rt = Runtime::new();
    let id = unique_id("loc");
    let location = format!("/{}", unique_name("hpt-sandbox-"));
    let bundle = image()
        .annotation("microsoft.com/hostprocess-rootfs-location", &location)
        .sh("echo \"mp=$CONTAINER_SANDBOX_MOUNT_POINT\"; cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\"; pwd");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle);
    let _ = fs::remove_dir(&location);
    let out = out.ok("run");
    let text = out.stdout_text();
    assert!(text.contains(&format!("mp={location}\n")), "{text}");
    assert!(text.contains(MESSAGE), "{text}");
    assert!(text.ends_with(&format!("{location}\n")), "{text}");
}

#[test]
fn a_read_only_root_cannot_be_written_in_either_layout() {
    for layout in ["bind", "symlink"] {
        let rt = Runtime::new();
        let id = unique_id("roroot");
        let data = open_dir();
        let dest = format!("/{}", unique_name("hpt-ro-data-"));
        let bundle = image()
            .annotation("hostprocess.io/volume-layout", layout)
            .set(&["root", "readonly"], serde_json::json!(true))
            .bind(data.path(), &dest, &[])
            .sh(&format!(
                "cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\"; \
                 if echo x > \"$CONTAINER_SANDBOX_MOUNT_POINT/new\"; then echo WROTE; fi; \
                 if echo y > \"$CONTAINER_SANDBOX_MOUNT_POINT{dest}/through-link\"; then echo LINK-OK; fi"
            ));
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle).ok("run");
        let text = out.stdout_text();
        assert!(text.contains(MESSAGE), "{layout}: {text}");
        assert!(
            !text.contains("WROTE"),
            "{layout}: root.readonly is not honoured"
        );
        assert!(
            out.stderr_text().contains("Read-only file system"),
            "{layout}: {}",
            out.stderr_text()
        );
        assert!(!bundle.rootfs().join("new").exists());
        // A read-only root does not make the (rw) mounts read-only.
        assert!(
            text.contains("LINK-OK"),
            "{layout}: {text} {}",
            out.stderr_text()
        );
        assert!(data.path().join("through-link").exists(), "{layout}");
        let _ = std::fs::remove_dir(&dest);
    }
}

#[test]
fn symlink_layout_puts_the_volume_at_a_host_path_with_mounts_as_symlinks() {
    let rt = Runtime::new();
    let id = unique_id("symlink");
    let data = open_dir();
    fs::write(data.path().join("payload"), "from the host\n").unwrap();
    let bundle = image()
        .annotation("hostprocess.io/volume-layout", "symlink")
        .bind(data.path(), "/data/in", &[])
        .sh("echo \"mp=$CONTAINER_SANDBOX_MOUNT_POINT\"; \
             cat \"$CONTAINER_SANDBOX_MOUNT_POINT/data/in/payload\"; \
             echo container > \"$CONTAINER_SANDBOX_MOUNT_POINT/made-inside\"; exec sleep 60");
    let volume = rt.root().join("hpc").join(&id);
    let log = open_dir();
    let guard = rt.guard(&id);
    rt.create_logged(&id, &bundle, &log.path().join("out"))
        .ok("create");
    rt.start(&id).ok("start");
    let made = volume.join("made-inside");
    assert!(
        wait_until(Duration::from_secs(5), || made.exists()),
        "the host sees the volume at '{}'",
        volume.display()
    );
    let text = fs::read_to_string(log.path().join("out")).unwrap();
    assert!(
        text.contains(&format!("mp={}\n", volume.display())),
        "{text}"
    );
    assert!(text.contains("from the host"), "{text}");
    assert_eq!(
        fs::read_to_string(volume.join("message.txt")).unwrap(),
        MESSAGE
    );
    assert!(host_mount_points().contains(&volume.to_string_lossy().into_owned()));
    let link = volume.join("data/in");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), data.path());
    let out = rt
        .exec(
            &id,
            &[
                "/bin/sh",
                "-c",
                "pwd; cat \"$CONTAINER_SANDBOX_MOUNT_POINT/made-inside\"",
            ],
        )
        .ok("exec in the symlink layout");
    assert_eq!(
        out.stdout_text(),
        format!("{}\ncontainer\n", volume.display())
    );
    drop(guard);
    assert!(
        !volume.exists(),
        "the volume's host path is removed on delete"
    );
    // The bundle is untouched and the mount source keeps only its own file.
    assert!(!bundle.rootfs().join("made-inside").exists());
}

#[test]
fn bind_layout_links_mounts_under_the_mount_point_for_compatibility() {
    let rt = Runtime::new();
    let id = unique_id("compat");
    let data = open_dir();
    fs::write(data.path().join("payload"), "compat\n").unwrap();
    let dest = open_dir();
    let dest_path = dest.path().join("mnt");
    let bundle = image()
        .bind(data.path(), &dest_path.to_string_lossy(), &[])
        .sh(&format!(
            "cat {}/payload; cat \"$CONTAINER_SANDBOX_MOUNT_POINT{}/payload\"",
            dest_path.display(),
            dest_path.display()
        ));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), "compat\ncompat\n");
}

/// The compatibility links are made in a layer of their own, on top of the image: nothing is
/// written to the writable layer for them (on a node it is containerd's, on its disk), a
/// directory of the image on the way keeps its owner and mode, an unprivileged account reaches
/// the mount through its link, and the layer goes with the container.
#[test]
fn bind_layout_links_write_nothing_to_the_writable_layer() {
    let data = open_dir();
    fs::write(data.path().join("payload"), "linked\n").unwrap();
    // The destination's parent is in the image, owned by another account.
    let dest = open_dir();
    let parent = dest.path().join("conf");
    let d = parent.join("mnt").to_string_lossy().into_owned();
    let image_with_parent = || {
        let bundle = image().file(
            &format!("{}/from-image", &parent.to_string_lossy()[1..]),
            "image\n",
        );
        let in_image = bundle.rootfs().join(parent.strip_prefix("/").unwrap());
        std::os::unix::fs::chown(&in_image, Some(4321), Some(4322)).unwrap();
        fs::set_permissions(&in_image, fs::Permissions::from_mode(0o751)).unwrap();
        bundle.bind(data.path(), &d, &[])
    };
    for (uid, account) in [(0, "root"), (65534, "an unprivileged account")] {
        let rt = Runtime::new();
        let id = unique_id("linklayer");
        let upper = rt.root().join(&id).join("volume/upper");
        // The account cannot list the state directory: only root's run looks at the layer.
        let list_upper = if uid == 0 {
            format!("ls -A {}", upper.display())
        } else {
            String::new()
        };
        let bundle = image_with_parent().user_ids(uid, uid).sh(&format!(
            "v=\"$CONTAINER_SANDBOX_MOUNT_POINT\"; stat -c '%a %u %g' \"$v{p}\"; \
             readlink \"$v{d}\"; cat \"$v{d}/payload\"; echo upper:; {list_upper}",
            p = parent.display(),
        ));
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle).ok("run");
        assert_eq!(
            out.stdout_text(),
            format!("751 4321 4322\n{d}\nlinked\nupper:\n"),
            "{account}: the link reaches the mount, the image's directory keeps its owner and \
             mode, and the writable layer stays empty"
        );
        assert!(
            !rt.root().join(&id).exists(),
            "the state directory, and the link layer in it, are removed"
        );
    }
}

#[test]
fn the_volume_is_writable_by_the_containers_account() {
    // §1.1: a fresh, *writable* volume per container — also for the least-privileged
    // accounts the guide recommends (LocalService, an ephemeral group member).
    let group = HostGroup::new();
    for name in ["NT AUTHORITY\\Local service", group.name.as_str()] {
        let rt = Runtime::new();
        let id = unique_id("volwrite");
        let bundle = image().user_name(name).sh(
            "id -u; echo data > \"$CONTAINER_SANDBOX_MOUNT_POINT/state.txt\" && \
             cat \"$CONTAINER_SANDBOX_MOUNT_POINT/state.txt\"",
        );
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle);
        assert!(
            out.status.success() && out.stdout_text().ends_with("data\n"),
            "{name}: the account cannot write its own volume: {} {}",
            out.stdout_text(),
            out.stderr_text()
        );
    }
}

#[test]
fn a_read_only_root_still_gets_its_mounts() {
    let rt = Runtime::new();
    let id = unique_id("romounts");
    let data = open_dir();
    fs::write(data.path().join("payload"), "mounted\n").unwrap();
    let dest = open_dir();
    let d = dest.path().join("m").to_string_lossy().into_owned();
    let bundle = image()
        .set(&["root", "readonly"], serde_json::json!(true))
        .bind(data.path(), &d, &[])
        .sh(&format!("cat {d}/payload"));
    let _c = rt.guard(&id);
    let out = rt
        .run(&id, &bundle)
        .ok("run with root.readonly and a bind mount");
    assert_eq!(out.stdout_text(), "mounted\n");
}

/// §2: "In both layouts, $CONTAINER_SANDBOX_MOUNT_POINT/<destination> reaches every volume
/// mount" — also when the image has a directory at that path.
fn mount_over_an_image_directory_is_reachable_under_the_mount_point(layout: &str) {
    let rt = Runtime::new();
    let id = unique_id("overimg");
    let data = open_dir();
    fs::write(data.path().join("payload"), "from the mount\n").unwrap();
    // A destination unique to this test (the bind layout makes it on the host), present in
    // the image as a directory.
    let dest = open_dir();
    let d = dest.path().join("data").to_string_lossy().into_owned();
    let bundle = image()
        .annotation("hostprocess.io/volume-layout", layout)
        .file(&format!("{}/from-image", &d[1..]), "image\n")
        .bind(data.path(), &d, &[])
        .sh(&format!(
            "cat \"$CONTAINER_SANDBOX_MOUNT_POINT{d}/payload\""
        ));
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle);
    if out.status.success() {
        assert_eq!(out.stdout_text(), "from the mount\n");
    } else {
        // Refusing the spec with a clear error would also keep the promise.
        assert!(
            out.stderr_text().contains(&d) && !out.stderr_text().contains("No such file"),
            "{layout}: the mount is silently unreachable under the mount point: {}",
            out.stderr_text()
        );
    }
}

#[test]
fn symlink_layout_mount_over_an_image_directory_is_reachable() {
    mount_over_an_image_directory_is_reachable_under_the_mount_point("symlink");
}

#[test]
fn bind_layout_mount_over_an_image_directory_is_reachable_under_the_mount_point() {
    mount_over_an_image_directory_is_reachable_under_the_mount_point("bind");
}

#[test]
fn a_relative_root_is_made_absolute() {
    // runc makes --root absolute; the volume path handed to the workload and the paths kept in
    // the state must not depend on the caller's working directory.
    let base = open_dir();
    let id = unique_id("relroot");
    let claims = open_dir();
    let bundle = image()
        .annotation("hostprocess.io/volume-layout", "symlink")
        .sh("echo \"mp=$CONTAINER_SANDBOX_MOUNT_POINT\"; cd /; cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\"; exec sleep 60");
    let cli = |cwd: &Path, root: &str, args: &[&str]| {
        std::process::Command::new(BIN)
            .current_dir(cwd)
            .env("HOSTPROCESS_EPHEMERAL_UIDS_DIR", claims.path())
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let log = base.path().join("out");
    let root = base.path().join("rel");
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(base.path())
        .env("HOSTPROCESS_EPHEMERAL_UIDS_DIR", claims.path())
        .args(["--root", "rel", "create", "-b"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(base.path().join("err")).unwrap());
    let status = cmd.status().unwrap();
    let abs_root = root.to_string_lossy().into_owned();
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(base.path().join("err")).unwrap()
    );
    cli(base.path(), "rel", &["start", &id]).ok("start");
    let volume = root.join("hpc").join(&id);
    let seen = wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("mp=") && t.lines().count() >= 2)
            || fs::read_to_string(base.path().join("err")).is_ok_and(|t| !t.is_empty())
    });
    let text = fs::read_to_string(&log).unwrap();
    // Deleted from elsewhere, by the absolute path of the same root.
    let deleted = cli(Path::new("/"), &abs_root, &["delete", "--force", &id]);
    let mounted_after = host_mount_points().contains(&volume.to_string_lossy().into_owned());
    unmount_all_under(&root);
    assert!(seen, "no output: {text}");
    assert!(
        text.starts_with(&format!("mp={}\n", volume.display())),
        "CONTAINER_SANDBOX_MOUNT_POINT must be absolute: {text}"
    );
    assert!(text.contains(MESSAGE), "{text}");
    deleted.ok("delete --force by the absolute root");
    assert!(
        !mounted_after,
        "delete left the volume mounted at '{}'",
        volume.display()
    );
    assert!(
        processes_in_cgroup(&format!("hostprocess/{id}")).is_empty(),
        "processes left"
    );
}

#[test]
fn bundle_paths_with_commas_and_spaces_work() {
    // Legal directory names; the overlay's mount options must escape them.
    let rt = Runtime::new();
    let id = unique_id("comma");
    let bundle = Bundle::with_prefix("hpt bundle,with-comma-")
        .file("message.txt", MESSAGE)
        .sh("cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\"");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), MESSAGE);
}

#[test]
fn a_read_only_root_with_nothing_added_is_the_image_itself_in_either_layout() {
    for layout in ["bind", "symlink"] {
        let rt = Runtime::new();
        let id = unique_id("roimage");
        let scratch = rt.root().join(&id).join("volume");
        let bundle = image()
            .annotation("hostprocess.io/volume-layout", layout)
            .set(&["root", "readonly"], serde_json::json!(true))
            .sh(&format!(
                "cat \"$CONTAINER_SANDBOX_MOUNT_POINT/message.txt\"; \
                 if echo x > \"$CONTAINER_SANDBOX_MOUNT_POINT/new\"; then echo WROTE; fi; \
                 grep \" $CONTAINER_SANDBOX_MOUNT_POINT \" /proc/self/mountinfo; \
                 if [ -e {} ]; then echo SCRATCH; fi",
                scratch.display()
            ));
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle).ok("run");
        let text = out.stdout_text();
        assert!(text.contains(MESSAGE), "{layout}: {text}");
        assert!(!text.contains("WROTE"), "{layout}: written: {text}");
        assert!(
            out.stderr_text().contains("Read-only file system"),
            "{layout}: {}",
            out.stderr_text()
        );
        assert!(!bundle.rootfs().join("new").exists(), "{layout}");
        // The image bound read-only: no overlay, no scratch layer made for it.
        let volume_mount = text
            .lines()
            .find(|l| l.contains(" - "))
            .unwrap_or_else(|| panic!("{layout}: the volume is not a mount: {text}"));
        assert!(
            !volume_mount.contains(" - overlay "),
            "{layout}: {volume_mount}"
        );
        assert!(
            volume_mount.split(" - ").next().unwrap().contains(" ro"),
            "{layout}: {volume_mount}"
        );
        assert!(!text.contains("SCRATCH"), "{layout}: {text}");
    }
}
