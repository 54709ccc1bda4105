//! §8: what tools that drive runc (go-runc, containerd's runc shim, scripts) send and read:
//! the stats event's shape, Go durations, the global flags go-runc passes, signals by number
//! and real-time name, a spec runc itself accepts, and logrus lines that parse.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn events_into_a_closed_pipe_ends_quietly() {
    let rt = Runtime::new();
    let id = unique_id("evpipe");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    let mut cmd = rt.command(&["events", "--interval", "0.01", &id]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn events");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"type\":\"stats\""), "{first}");
    // The reader is gone (as with `events | head -1`): the next event finds a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "events into a closed pipe: {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn events_interval_takes_go_durations() {
    let rt = Runtime::new();
    let id = unique_id("evdur");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    for interval in ["500ms", "1m30s", "2"] {
        let out = rt
            .cli(&["events", "--stats", "--interval", interval, &id])
            .ok(&format!("events --interval {interval}"));
        let event: Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
        assert_eq!(event["type"], "stats");
    }
    rt.cli(&["events", "--stats", "--interval", "5parsecs", &id])
        .fails_with("invalid --interval \"5parsecs\"");
}

#[test]
fn the_global_flags_go_runc_passes_are_accepted() {
    let rt = Runtime::new();
    let id = unique_id("goflags");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let _c = rt.guard(&id);
    let b = bundle.path().to_string_lossy().into_owned();
    let go_runc = [
        "--criu",
        "/usr/sbin/criu",
        "--rootless=false",
        "--systemd-cgroup",
    ];
    let with = |args: &[&str]| -> Vec<String> {
        go_runc.iter().chain(args).map(|s| s.to_string()).collect()
    };
    for args in [
        with(&["create", "-b", &b, &id]),
        with(&["start", &id]),
        with(&["ps", &id]),
        with(&["kill", &id, "KILL"]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rt.cli(&args).ok(&args.join(" "));
    }
    rt.cli(&["--rootless", "auto", "--debug", "delete", "--force", &id])
        .ok("delete with --rootless auto");
    rt.cli(&["--rootless=sometimes", "list"])
        .fails_with("sometimes");
}

/// A process that writes `got <signal>` to `log` for each signal it receives.
fn signal_recorder(log: &std::path::Path) -> Bundle {
    Bundle::new().args(&[
        PYTHON,
        "-c",
        &format!(
            "import signal, time\n\
             def got(n, _):\n    open({log:?}, 'a').write(f'got {{n}}\\n')\n\
             for n in (signal.SIGRTMIN, signal.SIGRTMIN + 3, signal.SIGRTMAX - 1):\n    \
             signal.signal(n, got)\n\
             open({log:?}, 'a').write('ready\\n')\n\
             while True: time.sleep(1)\n",
            log = log.display().to_string()
        ),
    ])
}

#[test]
fn kill_zero_checks_existence_and_real_time_signals_reach_init() {
    let rt = Runtime::new();
    let id = unique_id("rtsig");
    let dir = open_dir();
    let log = dir.path().join("signals");
    let (_c, _pid) = rt.started(&id, &signal_recorder(&log));
    wait_for_file(&log, Duration::from_secs(10));
    rt.kill(&id, "0").ok("kill 0 of a running container");
    for (signal, number) in [("34", 34), ("SIGRTMIN+3", 37), ("RTMAX-1", 63)] {
        rt.kill(&id, signal).ok(&format!("kill {signal}"));
        let line = format!("got {number}\n");
        assert!(
            wait_until(Duration::from_secs(10), || fs::read_to_string(&log)
                .is_ok_and(|t| t.contains(&line))),
            "{signal} did not reach init: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }
    rt.kill(&id, "SIGRTMIN+40")
        .fails_with("unknown signal \"SIGRTMIN+40\"");
    rt.kill(&id, "KILL").ok("kill KILL");
    assert!(wait_until(Duration::from_secs(10), || rt.status(&id) == "stopped"));
    rt.kill(&id, "0").fails_with("stopped");
}

fn nulls(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Null => found.push(at.to_string()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls(item, &format!("{at}[{i}]"), found);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                nulls(item, &format!("{at}.{key}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn spec_writes_no_nulls_and_an_absolute_cwd() {
    let dir = open_dir();
    let rt = Runtime::new();
    rt.cli(&["spec", "-b", &dir.path().to_string_lossy()])
        .ok("spec");
    let spec: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    let mut found = Vec::new();
    nulls(&spec, "", &mut found);
    assert!(found.is_empty(), "nulls at {found:?} in {spec:#}");
    assert_eq!(spec["process"]["cwd"], "/", "{spec:#}");
}

#[test]
fn log_lines_escape_quotes_as_logrus_does() {
    let rt = Runtime::new();
    let dir = open_dir();
    let log = dir.path().join("log");
    rt.cli(&["--log", &log.to_string_lossy(), "kill", "c1", "FOO"])
        .fails_with("unknown signal \"FOO\"");
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.trim_end()
            .ends_with(r#" level=error msg="unknown signal \"FOO\"""#),
        "{text}"
    );
}
