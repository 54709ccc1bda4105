//! A full disk under the state root or the claims directory: what started keeps running and
//! is reported as such, and what failed leaves nothing.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

#[test]
fn a_claim_that_cannot_be_written_leaves_no_claim_file() {
    let group = HostGroup::new();
    let dir = open_dir();
    let claims = Tmpfs::mount(dir.path(), "4k");
    claims.fill();
    let rt = Runtime::new()
        .with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63400-63401")
        .with_env(
            "HOSTPROCESS_EPHEMERAL_UIDS_DIR",
            &claims.path().to_string_lossy(),
        );
    let id = unique_id("fullclaims");
    let bundle = Bundle::new()
        .args(&["/bin/sleep", "60"])
        .user_name(&group.name);
    let _c = rt.guard(&id);
    rt.create(&id, &bundle)
        .fails_with("No space left on device");
    let left: Vec<String> = fs::read_dir(claims.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("filler"))
        .collect();
    assert!(left.is_empty(), "claim files left: {left:?}");
}

#[test]
fn start_on_a_full_state_root_succeeds_and_the_container_runs() {
    let rt = Runtime::new();
    let root = Tmpfs::mount(rt.root(), "1m");
    let id = unique_id("fullroot");
    let out_dir = open_dir();
    let marker = out_dir.path().join("ran");
    let bundle = Bundle::new().sh(&format!("touch {}; exec sleep 60", marker.display()));
    let guard = rt.guard(&id);
    rt.create(&id, &bundle).ok("create");
    root.fill();
    let out = rt.start(&id).ok("start on a full state root");
    assert!(
        out.stderr_text().contains("could not be saved"),
        "a warning says the state was not saved: {}",
        out.stderr_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || marker.exists()),
        "the workload did not run"
    );
    assert_eq!(rt.status(&id), "running");
    drop(guard);
    drop(root);
}
