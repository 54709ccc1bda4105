//! §3: the process — environment, expansion of the mount-point variable, working directory,
//! `commandLine`, rlimits and `noNewPrivileges`, and exec's own flags.

mod support;

use serde_json::json;
use support::*;

fn run_text(bundle: &Bundle) -> String {
    let rt = Runtime::new();
    let id = unique_id("proc");
    let _c = rt.guard(&id);
    let out = rt.run(&id, bundle).ok("run");
    out.stdout_text()
}

#[test]
fn environment_has_the_spec_the_mount_point_and_the_volume_bins_last() {
    let text = run_text(
        &Bundle::new()
            .set(
                &["process", "env"],
                json!([
                    "PATH=/usr/bin:/bin",
                    "A=$CONTAINER_SANDBOX_MOUNT_POINT/a",
                    "B=plain"
                ]),
            )
            .args(&["/usr/bin/env"]),
    );
    let env: Vec<&str> = text.lines().collect();
    for want in [
        "PATH=/usr/bin:/bin:/hpc/usr/bin:/hpc/bin",
        "A=/hpc/a",
        "B=plain",
        "CONTAINER_SANDBOX_MOUNT_POINT=/hpc",
        "HOME=/root",
        "USER=root",
        "LOGNAME=root",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert_eq!(
        env.iter().filter(|e| e.starts_with("PATH=")).count(),
        1,
        "{env:?}"
    );
}

#[test]
fn the_spec_can_override_home_and_user() {
    let text = run_text(
        &Bundle::new()
            .env("HOME=/custom")
            .env("USER=someone")
            .sh("echo $HOME $USER $LOGNAME"),
    );
    assert_eq!(text, "/custom someone root\n");
}

#[test]
fn all_four_spellings_of_the_variable_are_expanded_in_args() {
    let text = run_text(&Bundle::new().args(&[
        "/bin/echo",
        "$CONTAINER_SANDBOX_MOUNT_POINT",
        "${CONTAINER_SANDBOX_MOUNT_POINT}/b",
        "%CONTAINER_SANDBOX_MOUNT_POINT%/c",
        "$env:CONTAINER_SANDBOX_MOUNT_POINT/d",
    ]));
    assert_eq!(text, "/hpc /hpc/b /hpc/c /hpc/d\n");
}

#[test]
fn command_line_runs_through_the_shell() {
    let text = run_text(&Bundle::new().remove(&["process", "args"]).set(
        &["process", "commandLine"],
        json!("echo from-command-line %CONTAINER_SANDBOX_MOUNT_POINT% | tr a-z A-Z"),
    ));
    assert_eq!(text, "FROM-COMMAND-LINE /HPC\n");
}

#[test]
fn a_relative_cwd_is_inside_the_volume() {
    let text = run_text(
        &Bundle::new()
            .file("app/data/file", "x")
            .set(&["process", "cwd"], json!("app/data"))
            .sh("pwd; ls"),
    );
    assert_eq!(text, "/hpc/app/data\nfile\n");
}

#[test]
fn a_host_cwd_is_used_as_it_is() {
    let dir = open_dir();
    std::fs::write(dir.path().join("on-host"), "x").unwrap();
    let text = run_text(
        &Bundle::new()
            .set(&["process", "cwd"], json!(dir.path()))
            .sh("pwd; ls"),
    );
    assert_eq!(text, format!("{}\non-host\n", dir.path().display()));
}

#[test]
fn rlimits_lower_the_limits_and_no_new_privileges_is_set() {
    let text = run_text(
        &Bundle::new()
            .set(&["process", "noNewPrivileges"], json!(true))
            .set(
                &["process", "rlimits"],
                json!([{ "type": "RLIMIT_NOFILE", "soft": 100, "hard": 200 }]),
            )
            .sh("ulimit -Sn; ulimit -Hn; grep NoNewPrivs /proc/self/status"),
    );
    assert_eq!(text, "100\n200\nNoNewPrivs:\t1\n");
}

#[test]
fn an_unknown_rlimit_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("rlimit");
    let _c = rt.guard(&id);
    let bundle = Bundle::new().set(
        &["process", "rlimits"],
        json!([{ "type": "RLIMIT_BOGUS", "soft": 1, "hard": 1 }]),
    );
    rt.create(&id, &bundle).fails_with("RLIMIT_BOGUS");
    rt.assert_gone(&id);
}

/// The limit is refused while the container is planned, before create makes anything: here a
/// file holds the place of the container's state directory, which create would otherwise
/// report first.
#[test]
fn an_unknown_rlimit_is_refused_before_the_state_directory_or_cgroup_is_made() {
    let rt = Runtime::new();
    let id = unique_id("rlimitfirst");
    let _c = rt.guard(&id);
    let bundle = Bundle::new().set(
        &["process", "rlimits"],
        json!([{ "type": "RLIMIT_BOGUS", "soft": 1, "hard": 1 }]),
    );
    let placeholder = rt.root().join(&id);
    std::fs::write(&placeholder, "").unwrap();
    let refused = rt.create(&id, &bundle);
    std::fs::remove_file(&placeholder).unwrap();
    refused.fails_with("invalid spec: process.rlimits: unknown limit \"RLIMIT_BOGUS\"");
    assert_eq!(
        rt.leftovers(&id, &format!("hostprocess/{id}")),
        Vec::<String>::new()
    );
}

#[test]
fn exec_takes_env_and_cwd_flags_and_a_process_json() {
    let rt = Runtime::new();
    let id = unique_id("execflags");
    let bundle = Bundle::new().file("sub/f", "x").args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    let out = rt
        .cli(&[
            "exec",
            "-e",
            "HPT_X=42",
            "--cwd",
            "/hpc/sub",
            &id,
            "--",
            "/bin/sh",
            "-c",
            "echo $HPT_X; pwd; ls",
        ])
        .ok("exec -e --cwd");
    assert_eq!(out.stdout_text(), "42\n/hpc/sub\nf\n");

    let dir = open_dir();
    let process = dir.path().join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["/bin/sh", "-c", "echo $HPT_Y $CONTAINER_SANDBOX_MOUNT_POINT; pwd"],
            "env": ["PATH=/usr/bin:/bin", "HPT_Y=from-json"],
            "cwd": "/"
        })
        .to_string(),
    )
    .unwrap();
    let out = rt
        .cli(&["exec", "--process", &process.to_string_lossy(), &id])
        .ok("exec --process");
    assert_eq!(out.stdout_text(), "from-json /hpc\n/hpc\n");
}

#[test]
fn exec_of_a_missing_command_lists_the_places_searched() {
    let rt = Runtime::new();
    let id = unique_id("execmissing");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    rt.exec(&id, &["hpt-no-such-tool"])
        .fails_with("executable \"hpt-no-such-tool\" not found; searched: ");
    rt.exec(&unique_id("nobody-home"), &["/bin/true"])
        .fails_with("does not exist");
    assert_eq!(rt.status(&id), "running");
}

/// SigBlk and SigIgn of a container process, written by the process itself to `file`.
fn signal_masks(file: &std::path::Path) -> String {
    format!(
        "grep -E '^Sig(Blk|Ign):' /proc/self/status > {}",
        file.display()
    )
}

#[test]
fn processes_start_with_no_blocked_or_ignored_signal() {
    let rt = Runtime::new();
    let dir = open_dir();
    let clean = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";

    // run: the process is spawned sharing the runtime's memory until its exec.
    let ran = dir.path().join("run");
    let id = unique_id("sigrun");
    let _c = rt.guard(&id);
    rt.run(&id, &Bundle::new().sh(&signal_masks(&ran)))
        .ok("run");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), clean);

    // create + start: a held init is forked.
    let held = dir.path().join("held");
    let id = unique_id("sigheld");
    let _c = rt.guard(&id);
    rt.create(&id, &Bundle::new().sh(&signal_masks(&held)))
        .ok("create");
    rt.cli(&["start", &id]).ok("start");
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&held)
                .is_ok_and(|t| t.ends_with('\n') && t.lines().count() == 2)
        }),
        "the started init never wrote"
    );
    assert_eq!(std::fs::read_to_string(&held).unwrap(), clean);
}
