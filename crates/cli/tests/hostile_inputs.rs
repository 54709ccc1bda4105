//! Inputs an unlucky operator or another local user can hand the runtime: specs of an OCI
//! version it cannot read, a pid file path with a planted symlink, a corrupt state file, a
//! mount source swapped for a FIFO while create runs. Each is refused clearly or handled, and
//! leaves nothing behind.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;
use support::*;

#[test]
fn a_missing_or_unknown_oci_version_is_refused_and_nothing_is_made() {
    let cases = [
        (
            Bundle::new().remove(&["ociVersion"]),
            "ociVersion is missing",
        ),
        (
            Bundle::new().set(&["ociVersion"], json!("2.0.0")),
            "ociVersion \"2.0.0\" is not supported",
        ),
        (
            Bundle::new().set(&["ociVersion"], json!("latest")),
            "is not a version",
        ),
    ];
    for (bundle, message) in cases {
        let rt = Runtime::new();
        let id = unique_id("ociversion");
        rt.create(&id, &bundle).fails_with(message);
        rt.assert_gone(&id);
    }
    // What containerd and runc write is read.
    for version in ["1.0.2-dev", "1.1.0", "1.2.0"] {
        let rt = Runtime::new();
        let id = unique_id("ociok");
        let _c = rt.guard(&id);
        rt.run(&id, &Bundle::new().set(&["ociVersion"], json!(version)))
            .ok(version);
    }
}

#[test]
fn a_pid_file_is_never_written_through_a_planted_symlink() {
    let rt = Runtime::new();
    let dir = open_dir();
    let elsewhere = tempfile::tempdir().unwrap();
    let victims = ["victim-tmp", "victim-pid"].map(|v| elsewhere.path().join(v));
    for victim in &victims {
        fs::write(victim, "not yours").unwrap();
    }
    let pid_file = dir.path().join("init.pid");
    // The temporary name an earlier version used, and the pid file itself.
    symlink(&victims[0], dir.path().join("init.tmp-hostprocess")).unwrap();
    symlink(&victims[1], &pid_file).unwrap();
    let id = unique_id("pidfile");
    let _c = rt.guard(&id);
    rt.cli(&[
        "create",
        "-b",
        &Bundle::new().path().to_string_lossy(),
        "--pid-file",
        &pid_file.to_string_lossy(),
        &id,
    ])
    .ok("create");
    for victim in &victims {
        assert_eq!(
            fs::read_to_string(victim).unwrap(),
            "not yours",
            "written through a symlink: {}",
            victim.display()
        );
    }
    assert!(!fs::symlink_metadata(&pid_file).unwrap().is_symlink());
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap(),
        rt.pid(&id).to_string()
    );
    let mut left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["init.pid", "init.tmp-hostprocess"],
        "a temporary file is left"
    );
}

fn corrupt(rt: &Runtime, id: &str) {
    fs::write(rt.root().join(id).join("state.json"), "{\"id\": ").unwrap();
}

#[test]
fn list_shows_the_others_when_one_state_file_is_corrupt() {
    let rt = Runtime::new();
    let (broken, fine) = (unique_id("corrupt"), unique_id("fine"));
    let bundle = Bundle::new().sh("exec sleep 60");
    let (_b, _) = rt.started(&broken, &bundle);
    let (_f, _) = rt.started(&fine, &bundle);
    let state = fs::read(rt.root().join(&broken).join("state.json")).unwrap();
    corrupt(&rt, &broken);
    let out = rt
        .cli(&["list", "-q"])
        .ok("list with one corrupt state file");
    fs::write(rt.root().join(&broken).join("state.json"), state).unwrap();
    assert_eq!(out.stdout_text(), format!("{fine}\n"));
    assert!(
        out.stderr_text()
            .contains(&format!("container {broken}: state file"))
            && out.stderr_text().contains("is corrupt"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn delete_force_removes_what_the_directory_of_a_corrupt_container_holds() {
    for layout in ["bind", "symlink"] {
        let rt = Runtime::new();
        let id = unique_id("corruptdel");
        let bundle = Bundle::new()
            .annotation("hostprocess.io/volume-layout", layout)
            .file("message.txt", "image\n");
        let guard = rt.guard(&id);
        rt.run_with(&id, &bundle, &["--keep"]).ok("run --keep");
        assert!(
            !rt.leftovers(&id, &guard.cgroup).is_empty(),
            "{layout}: --keep keeps the container"
        );
        corrupt(&rt, &id);
        rt.delete(&id).fails_with("is corrupt");
        rt.delete_force(&id)
            .ok(&format!("{layout}: delete --force of a corrupt container"));
        // Its job is named only in the corrupt file: that is all that may be left.
        let left: Vec<String> = rt
            .leftovers(&id, &guard.cgroup)
            .into_iter()
            .filter(|l| !l.starts_with("cgroup "))
            .collect();
        assert!(left.is_empty(), "{layout}: left behind: {left:#?}");
        for h in HIERARCHIES {
            let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(&guard.cgroup));
        }
    }
}

#[test]
fn a_mount_source_swapped_for_a_fifo_during_create_is_never_mounted() {
    // A directory and a FIFO trade places as fast as they can while containers are made
    // with the directory's path as a mount source: each create refuses the FIFO or mounts the
    // directory, never the FIFO.
    let area = open_dir();
    let source = area.path().join("source");
    let other = area.path().join("other");
    fs::create_dir(&source).unwrap();
    nix::unistd::mkfifo(&other, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let area_path = area.path().to_path_buf();
    let mut mounted_fifo = Vec::new();
    let swapper = PathSwapper::start(&source, &other);
    for round in 0..40 {
        // A new mount point each round, made from what the source is at that moment.
        let destination = area_path.join(format!("mounted-{round}"));
        let destination = destination.to_string_lossy();
        let bundle = Bundle::new()
            .bind(&source, &destination, &[])
            .sh(&format!("if [ -p {destination} ]; then echo FIFO; fi"));
        let rt = Runtime::new();
        let id = unique_id("fiforace");
        let _c = rt.guard(&id);
        let out = rt.run(&id, &bundle);
        if out.status.success() && out.stdout_text().contains("FIFO") {
            mounted_fifo.push(round);
        }
    }
    drop(swapper);
    assert!(
        mounted_fifo.is_empty(),
        "rounds that mounted the FIFO: {mounted_fifo:?}"
    );
}
