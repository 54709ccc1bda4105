//! Proves the end-to-end harness itself: a private containerd, an image built in Rust, and runc
//! (containerd's default runtime) running it. When this fails, the shim tests cannot be trusted.
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;
use support::containerd::Containerd;

use support::image::{BUSYBOX_IMAGE, HELLO_PATH, HELLO_TEXT, PAUSE_IMAGE};
use support::{success, unique_id, wait_until, RUNC_RUNTIME};

#[test]
fn ctr_run_with_runc_works_in_the_private_containerd() {
    let containerd = Containerd::start();
    containerd.import_busybox("default");
    let id = unique_id("runc");
    let out = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNC_RUNTIME,
        BUSYBOX_IMAGE,
        &id,
        "echo",
        "hi",
    ]);
    assert_eq!(success(&out), "hi\n");

    let id = unique_id("runc-hello");
    let path = format!("/{HELLO_PATH}");
    let out = containerd.ctr(&["run", "--rm", BUSYBOX_IMAGE, &id, "cat", &path]);
    assert_eq!(success(&out), HELLO_TEXT);

    let containers = success(&containerd.ctr(&["containers", "ls", "-q"]));
    assert_eq!(containers.trim(), "", "run --rm left containers behind");
}

#[test]
fn the_pause_image_runs_until_sigterm_and_exits_zero() {
    let containerd = Containerd::start();
    containerd.import_pause("k8s.io");
    let images = success(&containerd.ctr_in("k8s.io", &["images", "ls", "-q"]));
    assert!(images.lines().any(|l| l == PAUSE_IMAGE), "{images}");
    let id = unique_id("pause");
    success(&containerd.ctr_in("k8s.io", &["run", "-d", PAUSE_IMAGE, &id]));
    let status = || {
        let tasks = success(&containerd.ctr_in("k8s.io", &["tasks", "ls"]));
        tasks
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(10), || status() == "RUNNING"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(), "RUNNING", "the pause process did not stay up");
    success(&containerd.ctr_in("k8s.io", &["tasks", "kill", &id]));
    assert!(
        wait_until(Duration::from_secs(10), || status() == "STOPPED"),
        "SIGTERM did not stop the pause process"
    );
    // `ctr tasks rm` fails with the task's exit code when it is not 0.
    success(&containerd.ctr_in("k8s.io", &["tasks", "rm", &id]));
    success(&containerd.ctr_in("k8s.io", &["containers", "rm", &id]));
}
