//! §8: runc's global flags (`--log`, `--log-format`, `--debug`) and per-verb flags that tools
//! driving runc rely on (`--preserve-fds`, `--pid-file`).

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn open_fds(pid: u32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().parse().unwrap(),
                fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn preserve_fds_passes_exactly_that_many_extra_descriptors() {
    let rt = Runtime::new();
    let id = unique_id("preserve");
    let dir = open_dir();
    let three = dir.path().join("three");
    let four = dir.path().join("four");
    fs::write(&three, "three").unwrap();
    fs::write(&four, "four").unwrap();
    let f3 = fs::File::open(&three).unwrap();
    let f4 = fs::File::open(&four).unwrap();
    let (r3, r4) = (f3.as_raw_fd(), f4.as_raw_fd());
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let mut cmd = rt.command(&[
        "create",
        "--preserve-fds",
        "1",
        "-b",
        &bundle.path().to_string_lossy(),
        &id,
    ]);
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Through high numbers first, so neither source is overwritten; dup2 onto the
            // same number would keep close-on-exec, so clear it explicitly.
            let (t3, t4) = (
                libc::fcntl(r3, libc::F_DUPFD_CLOEXEC, 200),
                libc::fcntl(r4, libc::F_DUPFD_CLOEXEC, 200),
            );
            for (from, to) in [(t3, 3), (t4, 4)] {
                if from < 0 || libc::dup2(from, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let _c = rt.guard(&id);
    rt.output_of(cmd, CLI_TIMEOUT).ok("create --preserve-fds 1");
    rt.start(&id).ok("start");
    // `start` returns once init has left its wait; until init has run `exec`, it still holds
    // the runtime's close-on-exec descriptors (its report pipe). Count them after the exec.
    let pid = rt.pid(&id);
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"/bin/sleep\0"))
        }),
        "init did not exec /bin/sleep"
    );
    let fds = open_fds(pid);
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    assert_eq!(
        fds[3].1,
        three.to_string_lossy(),
        "fd 3 is the caller's fd 3"
    );
}

#[test]
fn log_format_json_writes_errors_as_json_lines_to_the_log_file() {
    // containerd's go-runc reads the last error's "msg" from this file.
    let rt = Runtime::new();
    let dir = open_dir();
    let log = dir.path().join("runtime.log");
    let missing = dir.path().join("no-bundle");
    let out = rt.cli(&[
        "--log",
        &log.to_string_lossy(),
        "--log-format",
        "json",
        "create",
        "-b",
        &missing.to_string_lossy(),
        &unique_id("log"),
    ]);
    assert!(!out.status.success());
    let text = fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {text}"));
    assert_eq!(last["level"], "error", "{last}");
    assert!(
        last["msg"].as_str().unwrap().contains("config.json"),
        "{last}"
    );
    assert!(last["time"].is_string(), "{last}");
    assert!(
        out.stderr_text().contains("config.json"),
        "and one line on stderr"
    );
}

#[test]
fn debug_says_which_spec_settings_do_not_apply() {
    let rt = Runtime::new();
    let id = unique_id("debug");
    let dir = open_dir();
    let log = dir.path().join("debug.log");
    let bundle = Bundle::new()
        .set(&["hostname"], json!("elsewhere"))
        .set(&["linux", "namespaces"], json!([{ "type": "pid" }]))
        .mount(json!({ "destination": "/proc", "type": "proc", "source": "proc" }));
    let _c = rt.guard(&id);
    rt.cli(&[
        "--debug",
        "--log",
        &log.to_string_lossy(),
        "run",
        "-b",
        &bundle.path().to_string_lossy(),
        &id,
    ])
    .ok("run --debug");
    let text = fs::read_to_string(&log).unwrap();
    for what in ["hostname", "linux.namespaces", "/proc"] {
        assert!(
            text.lines()
                .any(|l| l.contains("level=debug") && l.contains(what)),
            "no debug line about {what}: {text}"
        );
    }
    // Without --debug, nothing of the sort.
    let quiet = dir.path().join("quiet.log");
    let id2 = unique_id("quiet");
    let _c2 = rt.guard(&id2);
    rt.cli(&[
        "--log",
        &quiet.to_string_lossy(),
        "run",
        "-b",
        &bundle.path().to_string_lossy(),
        &id2,
    ])
    .ok("run");
    assert!(!fs::read_to_string(&quiet)
        .unwrap_or_default()
        .contains("level=debug"));
}

#[test]
fn create_writes_the_init_pid_file() {
    let rt = Runtime::new();
    let id = unique_id("pidf");
    let dir = open_dir();
    let pid_file = dir.path().join("init.pid");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let _c = rt.guard(&id);
    rt.cli(&[
        "create",
        "--pid-file",
        &pid_file.to_string_lossy(),
        "-b",
        &bundle.path().to_string_lossy(),
        &id,
    ])
    .ok("create --pid-file");
    let pid: u32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(pid, rt.pid(&id));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn every_verb_has_its_own_help_line() {
    let rt = Runtime::new();
    for (verb, first_line) in [
        ("create", "Create a container from a bundle"),
        ("run", "Create and start a container"),
        ("exec", "Run another process in a container"),
        ("delete", "Delete a container"),
    ] {
        let out = rt.cli(&[verb, "--help"]);
        assert!(out.status.success(), "{verb} --help: {out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.starts_with(first_line),
            "{verb} --help starts with its own description, got:\n{help}"
        );
    }
}
