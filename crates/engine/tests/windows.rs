//! The Windows backend, executed: real job objects, processes, pipes and console events, on a
//! Windows host or under Wine (`.ci/wine`). What the host lacks is probed and reported as
//! SKIPPED by name, never counted as a pass.
//!
//! The processes run as the runtime's own account (`microsoft.com/hostprocess-inherit-user`):
//! Wine has no real logon tokens. Their working directory is outside the volume unless a test
//! says otherwise: Wine 8 cannot make the link that puts the volume at its mount point.
#![cfg(windows)]

use std::io::{BufRead, BufReader, Read};
use std::os::windows::io::OwnedHandle;
use std::path::{Path, PathBuf};

use hostprocess_engine::plan::PlanOptions;
use hostprocess_engine::spec::Process;
use hostprocess_engine::sys::windows::{Stdio, Windows};
use hostprocess_engine::sys::{Platform, ProcessInfo};
use hostprocess_engine::{Container, CreateOptions, Engine, Status};
use windows_sys::Win32::System::JobObjects::OpenJobObjectW;
use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

/// The runtime's `PATH` in these tests.
const RUNTIME_PATH: &str = r"C:\runtime-only\bin";

/// The exit code of a terminated process (the reference's).
const TERMINATED: u32 = 1;

/// A bundle and a state root in a temporary directory; force-deletes its container on drop.
struct Fixture {
    tmp: tempfile::TempDir,
    bundle: PathBuf,
    engine: Engine,
    id: String,
}

impl Fixture {
    fn new(name: &str, process: serde_json::Value, annotations: serde_json::Value) -> Fixture {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs")).expect("rootfs");
        std::fs::write(bundle.join("rootfs").join("hello.txt"), "from the image")
            .expect("image file");
        let mut process = process;
        if process.get("cwd").is_none() {
            process["cwd"] = tmp.path().to_string_lossy().into_owned().into();
        }
        let mut annotations = annotations;
        annotations["microsoft.com/hostprocess-inherit-user"] = "true".into();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": { "path": "rootfs" },
            "process": process,
            "annotations": annotations,
        });
        std::fs::write(bundle.join("config.json"), spec.to_string()).expect("config.json");
        let mut options = PlanOptions::new(tmp.path().join("state"));
        // The runtime's own PATH, which must never replace the account's.
        options.host_path = Some(RUNTIME_PATH.to_string());
        let engine = Engine::new(options);
        Fixture {
            tmp,
            bundle,
            engine,
            id: format!("{name}-{}", std::process::id()),
        }
    }

    fn create(&self, stdio: Stdio) -> Container {
        self.engine
            .create(
                &self.id,
                &self.bundle,
                CreateOptions {
                    stdio,
                    ..CreateOptions::default()
                },
            )
            .expect("create")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.engine.delete(&self.id, true);
    }
}

/// The read end of a pipe that is a process's standard output and error.
struct Output {
    reader: BufReader<std::io::PipeReader>,
}

fn piped() -> (Stdio, Output) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let writer: OwnedHandle = writer.into();
    let stderr = writer.try_clone().expect("clone the pipe");
    (
        Stdio {
            stdout: Some(writer),
            stderr: Some(stderr),
            ..Stdio::default()
        },
        Output {
            reader: BufReader::new(reader),
        },
    )
}

impl Output {
    /// The next line (the process is still running).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line.trim_end().to_string()
    }

    /// Everything until every writer has closed.
    fn rest(mut self) -> String {
        let mut text = String::new();
        self.reader.read_to_string(&mut text).expect("read output");
        text
    }
}

fn cmd(line: &str) -> serde_json::Value {
    serde_json::json!({ "args": ["cmd.exe", "/c", line] })
}

/// The test program (`examples/win-probe.rs`), which `cargo test` builds with the examples.
fn probe_exe() -> String {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let probe = dir.join("examples").join("win-probe.exe");
    assert!(
        probe.is_file(),
        "{} is missing: run the whole suite (cargo test -p hostprocess-engine) or build the examples first",
        probe.display()
    );
    probe.to_string_lossy().into_owned()
}

fn probe(args: &[&str]) -> serde_json::Value {
    let mut all = vec![probe_exe()];
    all.extend(args.iter().map(|a| a.to_string()));
    serde_json::json!({ "args": all })
}

fn wait(process: &ProcessInfo) -> Option<u32> {
    Windows::wait_exit(process, None).expect("wait for the process")
}

fn job_exists(id: &str) -> bool {
    let name: Vec<u16> = format!("Global\\JobContainer_{id}")
        .encode_utf16()
        .chain([0])
        .collect();
    // JOB_OBJECT_QUERY
    // SAFETY: a NUL-terminated name.
    let handle = unsafe { OpenJobObjectW(0x0004, 0, name.as_ptr()) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: a handle this function owns.
    drop(unsafe { <OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(handle) });
    true
}

/// Whether the job object goes: the system frees it once the last process that was in it is
/// released, which Wine does a little after the process exits (polled, up to 10 s).
fn job_goes(id: &str) -> bool {
    comes_true(|| !job_exists(id))
}

/// Whether `done` comes true, polled every 50 ms for up to 10 s.
fn comes_true(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Does this host report a process's private working set (Windows 10 1809 and later)?
fn reports_private_working_sets() -> bool {
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS_EX2,
    };
    let mut counters = PROCESS_MEMORY_COUNTERS_EX2 {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS_EX2>() as u32,
        ..Default::default()
    };
    // SAFETY: this process's pseudo handle and a structure of the size given.
    let ok = unsafe {
        K32GetProcessMemoryInfo(
            windows_sys::Win32::System::Threading::GetCurrentProcess(),
            &mut counters as *mut PROCESS_MEMORY_COUNTERS_EX2 as *mut _,
            counters.cb,
        )
    };
    ok != 0 && counters.PrivateWorkingSetSize > 0
}

fn pid_exists(pid: u32) -> bool {
    // SAFETY: plain call.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: a handle this function owns.
    let handle =
        unsafe { <OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(handle) };
    let mut code = 0u32;
    // SAFETY: a valid handle and out-parameter.
    let ok = unsafe {
        windows_sys::Win32::System::Threading::GetExitCodeProcess(
            std::os::windows::io::AsRawHandle::as_raw_handle(&handle),
            &mut code,
        )
    };
    ok != 0 && code == 259 // STILL_ACTIVE
}

#[test]
fn a_held_init_runs_on_start_and_reports_its_output_and_exit_code() {
    let fixture = Fixture::new(
        "held",
        cmd("echo started& exit /b 3"),
        serde_json::json!({}),
    );
    let (stdio, output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    assert_eq!(container.status(), Status::Created);
    assert!(Windows.is_held(container.record()));
    container.start().expect("start");
    assert!(!Windows.is_held(container.record()));
    assert_eq!(wait(&init), Some(3));
    assert_eq!(output.rest().trim(), "started");
    assert_eq!(container.status(), Status::Stopped);
}

#[test]
fn a_released_init_that_is_paused_is_not_taken_for_a_held_one() {
    // A start that released init and died before it saved the new phase, then a pause: the
    // suspended main thread must not make init look held.
    let fixture = Fixture::new("released", probe(&["sleep"]), serde_json::json!({}));
    let (stdio, mut output) = piped();
    let container = fixture.create(stdio);
    let record = container.record();
    assert!(Windows.is_held(record));
    Windows.release(record).expect("release");
    assert_eq!(output.line(), "ready");
    Windows.set_frozen(record, true).expect("freeze");
    assert!(!Windows.is_held(record));
    assert_eq!(container.status(), Status::Paused);
    Windows.set_frozen(record, false).expect("thaw");
}

#[test]
fn args_and_environment_are_as_planned_with_the_mount_point_and_path() {
    let fixture = Fixture::new(
        "env",
        serde_json::json!({
            "args": ["cmd.exe", "/c",
                "echo args=%CONTAINER_SANDBOX_MOUNT_POINT% $CONTAINER_SANDBOX_MOUNT_POINT ${CONTAINER_SANDBOX_MOUNT_POINT} $env:CONTAINER_SANDBOX_MOUNT_POINT& set"],
            "env": ["GREETING=hello", "TOOL=$CONTAINER_SANDBOX_MOUNT_POINT\\bin\\tool.exe"],
        }),
        serde_json::json!({}),
    );
    let (stdio, output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(wait(&init), Some(0));
    let text = output.rest();
    let mount_point = format!(r"C:\hpc\{}", fixture.id);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim_end().to_string())
            })
            .unwrap_or_else(|| panic!("{name} is not in the environment:\n{text}"))
    };
    assert_eq!(var("args"), [mount_point.as_str(); 4].join(" "));
    assert_eq!(
        var("CONTAINER_SANDBOX_MOUNT_POINT"),
        format!(r"{mount_point}\")
    );
    assert_eq!(var("GREETING"), "hello");
    assert_eq!(var("TOOL"), format!(r"{mount_point}\bin\tool.exe"));
    // The account's PATH (with the system directory), then the mount point, PowerShell and
    // WMI, as the reference builds it; nothing of the runtime's Unix-style default.
    let path = var("PATH");
    let entries: Vec<&str> = path.split(';').collect();
    assert!(
        entries
            .iter()
            .any(|e| e.to_ascii_lowercase().ends_with(r"\system32")),
        "{path}"
    );
    assert!(
        path.ends_with(&format!(
            r";{mount_point}\;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem"
        )),
        "{path}"
    );
    assert!(!path.contains(RUNTIME_PATH), "{path}");
    assert!(!path.contains('/'), "{path}");
}

#[test]
fn a_command_line_runs_as_it_is() {
    let fixture = Fixture::new(
        "cmdline",
        serde_json::json!({ "commandLine": r#"cmd.exe /c echo "a  b"& exit /b 6"# }),
        serde_json::json!({}),
    );
    let (stdio, output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(wait(&init), Some(6));
    assert_eq!(output.rest().trim(), r#""a  b""#);
}

#[test]
fn exec_runs_in_the_same_job_and_pids_list_a_grandchild() {
    let fixture = Fixture::new("exec", probe(&["parent"]), serde_json::json!({}));
    let (stdio, mut output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    let grandchild: u32 = output.line().parse().expect("the grandchild's pid");

    let (exec_stdio, exec_output) = piped();
    let exec = container
        .exec(
            &Process {
                args: vec!["cmd.exe".into(), "/c".into(), "echo exec& exit /b 4".into()],
                cwd: fixture.tmp.path().to_string_lossy().into_owned(),
                ..Process::default()
            },
            exec_stdio,
        )
        .expect("exec");
    assert_eq!(wait(&exec), Some(4));
    assert_eq!(exec_output.rest().trim(), "exec");

    let pids = container.pids().expect("pids");
    assert!(pids.contains(&init.pid), "{pids:?}");
    assert!(pids.contains(&grandchild), "{pids:?} lacks {grandchild}");
    container.kill(9, true).expect("kill --all");
    assert_eq!(wait(&init), Some(TERMINATED));
}

#[test]
fn stats_count_the_processes_working_sets_and_pause_and_resume_work() {
    let fixture = Fixture::new("pause", probe(&["sleep"]), serde_json::json!({}));
    let (stdio, mut output) = piped();
    let mut container = fixture.create(stdio);
    container.start().expect("start");
    assert_eq!(output.line(), "ready");
    let stats = container.stats().expect("stats");
    assert!(stats.pids_current >= 1, "{stats:?}");
    if reports_private_working_sets() {
        assert!(stats.memory_private_working_set_bytes > 0, "{stats:?}");
    } else {
        testkit::kernel::skipped(
            "stats_count_the_processes_working_sets_and_pause_and_resume_work (working set)",
            "this host reports no private working set (PROCESS_MEMORY_COUNTERS_EX2; Wine 8)",
        );
    }
    container.pause().expect("pause");
    assert_eq!(container.status(), Status::Paused);
    container.resume().expect("resume");
    assert_eq!(container.status(), Status::Running);
}

#[test]
fn sigterm_runs_the_ctrl_shutdown_handler() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let marker = tmp.path().join("shutdown");
    let fixture = Fixture::new(
        "term",
        probe(&["shutdown", &marker.to_string_lossy()]),
        serde_json::json!({}),
    );
    let (stdio, mut output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(output.line(), "ready");
    container.kill(15, false).expect("SIGTERM");
    assert_eq!(wait(&init), Some(7), "the handler's exit code");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("the handler's marker"),
        "CTRL_SHUTDOWN"
    );
}

#[test]
fn sigkill_terminates() {
    let fixture = Fixture::new("kill", probe(&["sleep"]), serde_json::json!({}));
    let (stdio, mut output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(output.line(), "ready");
    container.kill(9, false).expect("SIGKILL");
    assert_eq!(wait(&init), Some(TERMINATED));
}

#[test]
fn when_init_exits_the_rest_is_shut_down_after_the_grace_period() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let marker = tmp.path().join("stubborn");
    let fixture = Fixture::new(
        "grace",
        cmd("echo started"),
        serde_json::json!({ "hostprocess.io/grace-period-seconds": "1" }),
    );
    let (stdio, output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    let (exec_stdio, mut exec_output) = piped();
    let stubborn = container
        .exec(
            &Process {
                args: vec![
                    probe_exe(),
                    "stubborn".into(),
                    marker.to_string_lossy().into(),
                ],
                cwd: tmp.path().to_string_lossy().into_owned(),
                ..Process::default()
            },
            exec_stdio,
        )
        .expect("exec");
    assert_eq!(exec_output.line(), "ready");
    container.start().expect("start");
    assert_eq!(wait(&init), Some(0));
    assert_eq!(output.rest().trim(), "started");

    assert!(container.terminate_rest().expect("terminate the rest"));
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        "CTRL_SHUTDOWN"
    );
    assert_eq!(wait(&stubborn), Some(TERMINATED));
    assert!(container.pids().expect("pids").is_empty());
}

#[test]
fn delete_leaves_no_job_process_or_state() {
    let fixture = Fixture::new("delete", probe(&["parent"]), serde_json::json!({}));
    let (stdio, mut output) = piped();
    let mut container = fixture.create(stdio);
    container.start().expect("start");
    let grandchild: u32 = output.line().parse().expect("the grandchild's pid");
    assert!(job_exists(&fixture.id));
    let state = fixture.engine.root().join(&fixture.id);
    assert!(state.is_dir());

    let deleted = fixture.engine.delete(&fixture.id, true);
    assert!(job_goes(&fixture.id), "the job object is gone");
    assert!(!pid_exists(grandchild), "the grandchild was killed");
    assert!(!Path::new(&format!(r"C:\hpc\{}", fixture.id)).exists());
    if testkit::kernel::removes_a_file_deleted_while_open(
        "delete_leaves_no_job_process_or_state (state directory)",
    ) {
        deleted.expect("delete");
        assert!(!state.exists(), "the state directory is gone");
    } else {
        eprintln!("the locked state directory stays until the next delete: {deleted:?}");
    }
    fixture
        .engine
        .delete(&fixture.id, true)
        .expect("a second delete");
    assert!(!state.exists(), "the state directory is gone");
}

#[test]
fn the_job_is_killed_when_its_last_handle_closes() {
    // A runtime starts a container whose init starts a grandchild and exits, and the runtime
    // exits without deleting it: once neither holds the job, KILL_ON_JOB_CLOSE ends the rest.
    let fixture = Fixture::new("close", probe(&["parent-exit"]), serde_json::json!({}));
    let mut runtime = std::process::Command::new(probe_exe())
        .arg("runtime")
        .arg(fixture.engine.root())
        .arg(&fixture.bundle)
        .arg(&fixture.id)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the runtime");
    let mut line = String::new();
    BufReader::new(runtime.stdout.take().expect("the runtime's output"))
        .read_line(&mut line)
        .expect("read the grandchild's pid");
    let grandchild: u32 = line.trim().parse().expect("the grandchild's pid");
    assert!(runtime.wait().expect("the runtime's exit").success());
    assert!(process_goes(grandchild), "the grandchild outlived its job");
    assert!(job_goes(&fixture.id), "the job object is gone");
}

#[test]
fn a_create_that_fails_after_the_launch_leaves_no_process() {
    // The state directory is missing, so recording that init was released fails after init was
    // launched and resumed: the process must not be left running in the job.
    let fixture = Fixture::new("abandon", probe(&["sleep"]), serde_json::json!({}));
    let (_, plan) = fixture
        .engine
        .plan(&fixture.id, &fixture.bundle, None)
        .expect("plan");
    let missing = fixture.tmp.path().join("no-such-state-directory");
    let mut record = Windows.prepare(&plan, &missing).expect("prepare");
    struct Destroy<'a>(&'a hostprocess_engine::sys::windows::Record);
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            let _ = Windows.destroy(self.0);
        }
    }
    let created = Windows.create(&plan, &mut record, Stdio::default(), false);
    let _destroy = Destroy(&record);
    assert!(created.is_err(), "{created:?}");
    let init = record.init.expect("init was launched");
    assert!(process_goes(init.pid), "init was left running");
}

/// Whether process `pid` goes (polled, up to 10 s: Wine ends a job's processes a little after
/// its last handle closes).
fn process_goes(pid: u32) -> bool {
    comes_true(|| !pid_exists(pid))
}

#[test]
fn the_volume_is_reachable_at_its_mount_point() {
    let probe_link = tempfile::tempdir().expect("temporary directory");
    let link = probe_link.path().join("link");
    let made = std::os::windows::fs::symlink_dir(probe_link.path(), &link).is_ok()
        && std::fs::metadata(&link).is_ok_and(|m| m.is_dir());
    if !made {
        testkit::kernel::skipped(
            "the_volume_is_reachable_at_its_mount_point",
            "this host makes no directory symbolic links (Wine 8's CreateSymbolicLinkW does nothing)",
        );
        return;
    }
    let fixture = Fixture::new(
        "volume",
        serde_json::json!({ "args": ["cmd.exe", "/c", "type hello.txt"], "cwd": "" }),
        serde_json::json!({}),
    );
    let (stdio, output) = piped();
    let mut container = fixture.create(stdio);
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(wait(&init), Some(0));
    assert_eq!(output.rest().trim(), "from the image");
}

#[test]
fn a_terminal_without_stdin_runs() {
    let fixture = Fixture::new(
        "tty",
        serde_json::json!({ "args": ["cmd.exe", "/c", "exit /b 5"], "terminal": true }),
        serde_json::json!({}),
    );
    let (reader, writer) = std::io::pipe().expect("pipe");
    let stdio = Stdio {
        stdout: Some(writer.into()),
        terminal: true,
        ..Stdio::default()
    };
    let created = fixture.engine.create(
        &fixture.id,
        &fixture.bundle,
        CreateOptions {
            stdio,
            ..CreateOptions::default()
        },
    );
    let mut container = match created {
        Err(e) if e.to_string().contains("CreatePseudoConsole") => {
            testkit::kernel::skipped("a_terminal_without_stdin_runs", &e.to_string());
            return;
        }
        created => created.expect("create with a terminal and no stdin"),
    };
    // The console's output is drained so that it never blocks (Wine's ConPTY writes none).
    let drain = std::thread::spawn(move || {
        let mut reader = reader;
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let init = container.init().expect("init");
    container.start().expect("start");
    assert_eq!(wait(&init), Some(5));
    // Closes the console, whose output pipe the drain reads to its end (the state directory's
    // removal is `delete_leaves_no_job_process_or_state`'s).
    let _ = fixture.engine.delete(&fixture.id, true);
    let _ = drain.join();
}
