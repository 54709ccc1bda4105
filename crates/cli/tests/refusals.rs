//! §6 "create validates everything before any side effect": malformed and hostile specs fail
//! with a message that names the problem, and leave no cgroup, mount, volume, claim or state
//! behind. Nothing is created or written through a symlink the image controls (§2).

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;
use support::*;

/// `create` and `run` both refuse the bundle with `message`, leaving nothing behind.
fn refused(bundle: &Bundle, message: &str) {
    refused_in(&Runtime::new(), bundle, message);
}

fn refused_in(rt: &Runtime, bundle: &Bundle, message: &str) {
    for verb in ["create", "run"] {
        let id = unique_id("refused");
        let _c = rt.guard(&id);
        rt.cli(&[verb, "-b", &bundle.path().to_string_lossy(), &id])
            .fails_with(message);
        rt.assert_gone(&id);
    }
}

#[test]
fn bad_json_is_refused_with_its_position() {
    let bundle = Bundle::new()
        .raw_config("{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"/bin/true\",]}}");
    refused(&bundle, "invalid spec");
    refused(&bundle, "config.json");
    refused(&bundle, "line 1 column");
}

#[test]
fn a_spec_of_the_wrong_shape_is_refused() {
    let bundle = Bundle::new().set(&["process", "args"], json!("not a list"));
    refused(&bundle, "invalid spec");
}

#[test]
fn a_missing_config_is_refused() {
    let bundle = Bundle::new();
    fs::remove_file(bundle.path().join("config.json")).unwrap();
    refused_in(&Runtime::new(), &bundle, "config.json");
}

#[test]
fn a_missing_process_is_refused() {
    refused(&Bundle::new().remove(&["process"]), "process is missing");
}

#[test]
fn empty_args_are_refused() {
    refused(&Bundle::new().args(&[]), "the process has no command");
}

#[test]
fn a_missing_root_is_refused() {
    refused(&Bundle::new().remove(&["root"]), "root.path is missing");
}

#[test]
fn a_root_that_does_not_exist_is_refused() {
    let bundle = Bundle::new().set(&["root", "path"], json!("no-such-rootfs"));
    refused(&bundle, "no-such-rootfs");
}

#[test]
fn a_dot_dot_destination_is_refused() {
    let source = open_dir();
    let bundle = Bundle::new().bind(source.path(), "/tmp/../etc/hpt-escape", &[]);
    refused(&bundle, "must not contain '..'");
    assert!(!Path::new("/etc/hpt-escape").exists());
}

#[test]
fn a_relative_destination_is_refused() {
    let source = open_dir();
    let bundle = Bundle::new().bind(source.path(), "relative/x", &[]);
    refused(&bundle, "must be an absolute path");
}

#[test]
fn a_destination_over_the_sandbox_mount_point_is_refused() {
    let source = open_dir();
    refused(
        &Bundle::new().bind(source.path(), "/hpc", &[]),
        "sandbox mount point",
    );
    refused(
        &Bundle::new().bind(source.path(), "/", &[]),
        "sandbox mount point",
    );
}

#[test]
fn a_destination_through_an_image_symlink_is_refused_and_nothing_is_written_through_it() {
    let source = open_dir();
    fs::write(source.path().join("payload"), "x").unwrap();
    let name = unique_name("hpt-through-");
    let bundle = Bundle::new().args(&["/bin/true"]);
    symlink("/etc", bundle.rootfs().join("var")).unwrap();
    let bundle = bundle.bind(source.path(), &format!("/var/{name}/x"), &[]);
    let etc_target = Path::new("/etc").join(&name);
    let host_dest = Path::new("/var").join(&name);
    refused(&bundle, "is a symlink in the image");
    let escaped = etc_target.exists();
    let made_on_host = host_dest.exists();
    let _ = fs::remove_dir_all(&etc_target);
    let _ = fs::remove_dir_all(&host_dest);
    assert!(
        !escaped,
        "something was created through the image's symlink at {}",
        etc_target.display()
    );
    assert!(
        !made_on_host,
        "a refused spec made {} on the host",
        host_dest.display()
    );
}

#[test]
fn a_relative_image_symlink_deeper_in_the_path_is_refused_too() {
    let source = open_dir();
    let name = unique_name("hpt-deep-");
    let bundle = Bundle::new().args(&["/bin/true"]);
    fs::create_dir_all(bundle.rootfs().join("opt/app")).unwrap();
    symlink(
        "../../../../../../etc",
        bundle.rootfs().join("opt/app/conf"),
    )
    .unwrap();
    let bundle = bundle.bind(source.path(), &format!("/opt/app/conf/{name}/x"), &[]);
    refused(&bundle, "is a symlink in the image");
    let escaped = Path::new("/etc").join(&name).exists();
    let _ = fs::remove_dir_all(Path::new("/etc").join(&name));
    let _ = fs::remove_dir_all(Path::new("/opt/app/conf").join(&name));
    assert!(
        !escaped,
        "something was created in /etc through the image's symlink"
    );
}

#[test]
fn a_symlink_layout_destination_through_an_image_symlink_is_refused() {
    let source = open_dir();
    let name = unique_name("hpt-legacy-");
    let bundle = Bundle::new()
        .annotation("hostprocess.io/volume-layout", "symlink")
        .args(&["/bin/true"]);
    symlink("/etc", bundle.rootfs().join("data")).unwrap();
    let bundle = bundle.bind(source.path(), &format!("/data/{name}"), &[]);
    let rt = Runtime::new();
    refused_in(&rt, &bundle, "is a symlink in the image");
    let escaped = Path::new("/etc").join(&name).exists();
    let _ = fs::remove_file(Path::new("/etc").join(&name));
    assert!(
        !escaped,
        "a symlink was created in /etc through the image's symlink"
    );
}

#[test]
fn a_bad_account_name_is_refused() {
    refused(
        &Bundle::new().user_name("a\\b\\c"),
        "runAsUserName cannot contain more than one backslash",
    );
}

#[test]
fn conflicting_windows_cpu_limits_are_refused_with_the_reference_text() {
    let bundle = Bundle::new().set(
        &["windows", "resources", "cpu"],
        json!({ "count": 2, "maximum": 5000 }),
    );
    refused(
        &bundle,
        "invalid spec - Windows Container CPU Count: '2', Limit: '5000', and Weight: '0' are mutually exclusive",
    );
}

#[test]
fn conflicting_linux_and_windows_limits_are_refused() {
    let bundle = Bundle::new()
        .set(
            &["linux", "resources", "memory"],
            json!({ "limit": 64 << 20 }),
        )
        .set(
            &["windows", "resources", "memory"],
            json!({ "limit": 128 << 20 }),
        );
    refused(&bundle, "set one");
    let bundle = Bundle::new()
        .set(
            &["linux", "resources", "cpu"],
            json!({ "quota": 20000, "period": 100000 }),
        )
        .set(&["windows", "resources", "cpu"], json!({ "count": 1 }));
    refused(&bundle, "set one");
}

#[test]
fn out_of_range_limits_are_refused() {
    refused(
        &Bundle::new().set(
            &["windows", "resources", "cpu"],
            json!({ "maximum": 10001 }),
        ),
        "windows.resources.cpu.maximum must be 1-10000",
    );
    refused(
        &Bundle::new().annotation("io.microsoft.container.processor.count", "two"),
        "io.microsoft.container.processor.count",
    );
}

#[test]
fn a_nonexistent_mount_source_is_refused() {
    let dir = open_dir();
    let missing = dir.path().join("not-there");
    let dest = dir.path().join("dest");
    let bundle = Bundle::new().bind(&missing, &dest.to_string_lossy(), &[]);
    refused(&bundle, &format!("mount source \"{}\"", missing.display()));
    refused(&bundle, "No such file or directory");
    assert!(!dest.exists(), "nothing is made for a refused spec");
}

#[test]
fn a_command_that_does_not_exist_is_refused_listing_the_places_searched() {
    let bundle = Bundle::new()
        .set(&["process", "env"], json!(["PATH=/usr/bin:/bin"]))
        .args(&["hpt-no-such-command"]);
    refused(
        &bundle,
        "executable \"hpt-no-such-command\" not found; searched: /usr/bin/hpt-no-such-command, \
         /bin/hpt-no-such-command, /hpc/usr/bin/hpt-no-such-command, /hpc/bin/hpt-no-such-command, \
         /hpc/hpt-no-such-command",
    );
    refused(
        &Bundle::new().args(&["/hpt/no/such/command"]),
        "searched: /hpt/no/such/command, /hpc/hpt/no/such/command",
    );
}

#[test]
fn a_command_from_the_volume_runs_when_the_host_has_none() {
    // The positive side of command resolution: a bare name falls back to the volume's bin
    // dirs (also for the workload's own shell, through PATH), and an absolute path missing on
    // the host runs the volume's file.
    let rt = Runtime::new();
    for (args, want) in [
        (vec!["hpt-tool"], "tool from the volume\n"),
        (vec!["/bin/sh", "-c", "hpt-tool"], "tool from the volume\n"),
        (vec!["/app/run"], "run from the volume\n"),
    ] {
        let id = unique_id("volcmd");
        let _c = rt.guard(&id);
        let bundle = Bundle::new()
            .script("bin/hpt-tool", "#!/bin/sh\necho tool from the volume\n")
            .script("app/run", "#!/bin/sh\necho run from the volume\n")
            .args(&args);
        let out = rt.run(&id, &bundle).ok(&format!("run {args:?}"));
        assert_eq!(out.stdout_text(), want, "{args:?}");
    }
}

#[test]
fn a_cwd_missing_on_the_host_resolves_into_the_volume() {
    let rt = Runtime::new();
    let id = unique_id("cwd");
    let name = unique_name("hpt-app-");
    let bundle = Bundle::new()
        .file(&format!("{name}/here"), "x")
        .set(&["process", "cwd"], json!(format!("/{name}")))
        .sh("pwd; ls");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), format!("/hpc/{name}\nhere\n"));
    assert!(
        !Path::new("/").join(&name).exists(),
        "nothing is made on the host"
    );
}

#[test]
fn a_non_executable_command_is_refused() {
    let bundle = Bundle::new().file("tool", "#!/bin/sh\n").args(&["/tool"]);
    refused(&bundle, "is not executable");
}

#[test]
fn bad_annotations_and_cgroup_paths_are_refused() {
    refused(
        &Bundle::new().annotation("hostprocess.io/volume-layout", "overlay"),
        "expected \"bind\" or \"symlink\"",
    );
    refused(
        &Bundle::new().annotation("microsoft.com/hostprocess-rootfs-location", "relative/dir"),
        "expected an absolute path",
    );
    refused(
        &Bundle::new().annotation("hostprocess.io/grace-period-seconds", "soon"),
        "expected whole seconds",
    );
    refused(
        &Bundle::new().set(
            &["linux", "cgroupsPath"],
            json!("/hostprocess/../../escape"),
        ),
        "must not contain '..'",
    );
    refused(
        &Bundle::new().set(&["linux", "cgroupsPath"], json!("system.slice:hpt")),
        "systemd's slice:prefix:name",
    );
    assert!(!Path::new("/sys/fs/cgroup/memory/escape").exists());
}

#[test]
fn a_custom_cgroups_path_is_used_and_removed() {
    let rt = Runtime::new();
    let id = unique_id("cgpath");
    let parent = unique_name("hpt-parent-");
    let path = format!("/{parent}/{id}");
    let bundle = Bundle::new()
        .set(&["linux", "cgroupsPath"], json!(path))
        .args(&["/bin/sleep", "60"]);
    let guard = rt.guard_at(&id, &path);
    rt.create(&id, &bundle).ok("create");
    rt.start(&id).ok("start");
    let pid = rt.pid(&id);
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroups.contains(&format!(":memory:{path}\n")), "{cgroups}");
    assert!(guard.cgroup_dir("memory").exists());
    drop(guard);
    for h in HIERARCHIES {
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(&parent));
    }
}

#[test]
fn a_cgroup_that_exists_already_is_not_taken_over() {
    let rt = Runtime::new();
    let id = unique_id("cgtaken");
    let dir = Path::new("/sys/fs/cgroup/memory/hostprocess").join(&id);
    fs::create_dir_all(&dir).unwrap();
    let out = rt.create(&id, &Bundle::new().args(&["/bin/sleep", "60"]));
    let still_there = dir.exists();
    let _ = fs::remove_dir(&dir);
    out.fails_with("already exists");
    assert!(
        still_there,
        "a cgroup the runtime did not make is never removed"
    );
    rt.assert_gone(&id);
}

#[test]
fn errors_name_their_cause_once() {
    let rt = Runtime::new();
    let missing_root = Bundle::new().set(&["root", "path"], json!("no-such-rootfs"));
    let missing_config = Bundle::new();
    fs::remove_file(missing_config.path().join("config.json")).unwrap();
    for (bundle, cause) in [
        (&missing_root, "no such directory"),
        (&missing_config, "No such file or directory"),
    ] {
        let id = unique_id("msg");
        let _c = rt.guard(&id);
        let out = rt.create(&id, bundle).fails_with(cause);
        let text = out.stderr_text();
        assert_eq!(
            text.matches(cause).count(),
            1,
            "the cause is repeated: {text}"
        );
        assert_eq!(text.lines().count(), 1, "one clear line: {text}");
    }
}

#[test]
fn a_cwd_missing_everywhere_is_made_in_the_volume_not_on_the_host() {
    let rt = Runtime::new();
    let id = unique_id("newcwd");
    let name = unique_name("hpt-cwd-");
    let bundle = Bundle::new()
        .set(&["process", "cwd"], json!(format!("/{name}/deep")))
        .sh("pwd; touch made-here");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(out.stdout_text(), format!("/hpc/{name}/deep\n"));
    assert!(
        !Path::new("/").join(&name).exists(),
        "the cwd was made on the host"
    );
    assert!(
        !bundle.rootfs().join(&name).exists(),
        "the cwd was made in the image"
    );
}

#[test]
fn a_cwd_through_an_image_symlink_is_not_created_through_it() {
    let rt = Runtime::new();
    let name = unique_name("hpt-cwdlink-");
    let bundle = Bundle::new().args(&["/bin/true"]);
    symlink("/etc", bundle.rootfs().join("work")).unwrap();
    let bundle = bundle.set(&["process", "cwd"], json!(format!("/work/{name}")));
    let id = unique_id("cwdlink");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle);
    let escaped = Path::new("/etc").join(&name).exists();
    let _ = fs::remove_dir_all(Path::new("/etc").join(&name));
    assert!(
        !escaped,
        "the working directory was created in /etc through the image's symlink"
    );
    out.fails_with("symlink");
    rt.assert_gone(&id);
}

#[test]
fn a_pid_file_that_cannot_be_written_undoes_the_create() {
    let rt = Runtime::new();
    let id = unique_id("pidfile");
    let _c = rt.guard(&id);
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    rt.cli(&[
        "create",
        "-b",
        &bundle.path().to_string_lossy(),
        "--pid-file",
        "/nonexistent-dir/hpt/init.pid",
        &id,
    ])
    .fails_with("/nonexistent-dir/hpt");
    rt.assert_gone(&id);
}

#[test]
fn a_destination_that_is_an_image_symlink_is_never_mounted_through() {
    for layout in ["symlink", "bind"] {
        let rt = Runtime::new();
        let id = unique_id("lastlink");
        let victim = open_dir();
        let source = open_dir();
        fs::write(source.path().join("planted"), "x").unwrap();
        let name = unique_name("hpt-last-");
        let bundle = Bundle::new()
            .annotation("hostprocess.io/volume-layout", layout)
            .args(&["/bin/sleep", "60"]);
        symlink(victim.path(), bundle.rootfs().join(&name)).unwrap();
        let bundle = bundle.bind(source.path(), &format!("/{name}"), &[]);
        let _c = rt.guard(&id);
        let out = rt.create(&id, &bundle);
        let victim_str = victim.path().to_string_lossy().into_owned();
        let mounted = host_mount_points().contains(&victim_str);
        let planted = victim.path().join("planted").exists();
        unmount_all_under(victim.path());
        let _ = fs::remove_dir(Path::new("/").join(&name));
        assert!(
            !mounted,
            "{layout}: the mount went through the image's symlink onto the host"
        );
        assert!(
            !planted,
            "{layout}: the source is visible through the image's symlink"
        );
        if !out.status.success() {
            assert!(
                out.stderr_text().contains("symlink"),
                "{layout}: {}",
                out.stderr_text()
            );
            rt.assert_gone(&id);
        }
    }
}

#[test]
fn a_mount_point_that_cannot_be_made_on_the_host_fails_the_create_and_leaves_nothing() {
    // Found only while the view is built: a file stands where the destination's parent
    // directory should be made.
    let dir = open_dir();
    let source = dir.path().join("source");
    fs::create_dir(&source).unwrap();
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "").unwrap();
    let dest = blocker.join("dest");
    let bundle = Bundle::new().bind(&source, &dest.to_string_lossy(), &[]);
    refused(&bundle, &format!("create '{}'", dest.display()));
}
