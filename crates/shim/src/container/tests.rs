//! Both halves of [`Kind`] without root: a pod sandbox needs no engine, and a workload runs on
//! the engine's recording platform, its state root in a temporary directory. The fake makes no
//! process and has no reaper: a test ends a process (`Fake::exit`) and reports its exit to the
//! shim (`Process::exited`) itself, as the exit monitor would.

use containerd_shim::protos::api::Status as TaskStatus;
use containerd_shim::protos::ttrpc::Code;
use hostprocess_engine::sys::fake::{Call, Fake, FakeHost, FakeRecord, Op};

use super::*;

const SIGHUP: u32 = 1;

fn sandbox() -> Container {
    let mut req = CreateTaskRequest::new();
    req.id = "p1".into();
    req.bundle = "/run/p1".into();
    Container::sandbox(&req, Spec::default())
}

fn refused(result: Result<impl std::fmt::Debug>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "{what}: {err}");
    assert!(
        err.message.starts_with(&format!(
            "pod sandbox p1: {what}: the sandbox of a HostProcess pod runs no process"
        )),
        "{what}: {err}"
    );
}

#[test]
fn a_pod_sandbox_refuses_what_needs_a_process() {
    let container = sandbox();
    let spec = Any::new();
    refused(
        container.add_exec("e1", &spec, StdioPaths::default()),
        "exec",
    );
    refused(container.pause(), "pause");
    refused(container.resume(), "resume");
    let mut resources = Any::new();
    resources.value = b"{}".to_vec();
    refused(container.update(&resources), "update");
    let err = container.start_exec("e1").expect_err("start of an exec");
    assert_eq!(err.code, Code::NOT_FOUND, "{err}");
    assert_eq!(
        container.process("e1").err().map(|e| e.code),
        Some(Code::NOT_FOUND)
    );
}

#[test]
fn a_pod_sandbox_is_never_paused_and_has_no_process_or_figures() {
    let container = sandbox();
    assert_eq!(container.start(), Ok(0));
    assert_eq!(container.init.status(), Status::Running);
    assert!(container.is_sandbox());
    assert!(!container.is_paused());
    assert!(container.pids().unwrap().is_empty());
    assert!(container.stats().is_ok());
    assert!(!container.take_new_oom_kill());
    assert!(container.exec_by_pid(0).is_none());
}

#[test]
fn a_pod_sandbox_ends_on_the_signals_a_pause_process_ends_on() {
    let container = sandbox();
    container.start().unwrap();
    assert_eq!(container.kill("", SIGHUP, false), Ok(None));
    assert_eq!(container.kill("", SIGTERM as u32, false), Ok(Some(0)));
    assert_eq!(container.kill("", SIGINT as u32, true), Ok(Some(0)));
    assert_eq!(container.kill("", SIGKILL as u32, false), Ok(Some(KILLED)));
    let err = container.kill("e1", SIGTERM as u32, false).unwrap_err();
    assert_eq!(err.code, Code::NOT_FOUND, "{err}");
    container.init.exited(0);
    let err = container.kill("", SIGTERM as u32, false).unwrap_err();
    assert_eq!(err.code, Code::NOT_FOUND, "{err}");
}

#[test]
fn deleting_a_pod_sandbox_ends_it_as_killed_unless_it_ended_before() {
    let container = sandbox();
    container.start().unwrap();
    let (pid, exit) = container.delete().unwrap();
    assert_eq!((pid, exit.status), (0, KILLED));
    assert_eq!(container.init.exit(), Some(exit));

    let container = sandbox();
    container.start().unwrap();
    let stopped = container.init.exited(0).unwrap();
    assert_eq!(container.delete(), Ok((0, stopped)));
}

// The workload half, on the engine's recording platform.

/// The shim's engine on the fake, and the fake to look at and steer.
struct Host(FakeHost);

impl std::ops::Deref for Host {
    type Target = FakeHost;
    fn deref(&self) -> &FakeHost {
        &self.0
    }
}

fn host() -> Host {
    Host(FakeHost::new())
}

impl Host {
    fn create(&self, id: &str) -> Result<Container<Fake>> {
        let mut req = CreateTaskRequest::new();
        req.id = id.into();
        req.bundle = "/bundle".into();
        let spec = hostprocess_engine::spec::example_spec(vec!["/bin/true".into()]);
        Container::create(&self.engine, &req, spec)
    }

    /// A started workload, with the calls that made it forgotten.
    fn running(&self, id: &str) -> Container<Fake> {
        let container = self.create(id).unwrap();
        container.start().unwrap();
        self.fake.clear_calls();
        container
    }

    /// What the engine finds the container to be, as a process other than the shim would.
    fn status(&self, id: &str) -> EngineStatus {
        self.another_engine().load(id).unwrap().status()
    }

    fn record(&self, id: &str) -> FakeRecord {
        self.engine.load(id).unwrap().record().clone()
    }
}

fn call(op: Op, target: impl ToString, detail: impl ToString) -> Call {
    Call {
        op,
        target: target.to_string(),
        detail: detail.to_string(),
    }
}

fn exec_spec() -> Any {
    let process = hostprocess_engine::spec::example_spec(vec!["/bin/echo".into(), "hi".into()])
        .process
        .unwrap();
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = serde_json::to_vec(&process).unwrap();
    spec
}

fn task_status(container: &Container<Fake>) -> TaskStatus {
    container
        .init
        .status()
        .task_status(|| container.is_paused())
}

#[test]
fn a_workload_is_created_with_its_init_held_and_start_releases_it() {
    let h = host();
    let container = h.create("w1").unwrap();
    assert!(!container.is_sandbox());
    assert_eq!(container.pod_network(), None);
    let pid = container.init.pid();
    assert_eq!(
        h.fake.calls()[1],
        call(Op::Create, "w1", "hold=true"),
        "{:?}",
        h.fake.calls()
    );
    assert_eq!(container.init.status(), Status::Created);
    assert_eq!(task_status(&container), TaskStatus::CREATED);
    assert_eq!(h.status("w1"), EngineStatus::Created);

    h.fake.clear_calls();
    assert_eq!(container.start(), Ok(pid));
    assert_eq!(h.fake.ops(), [Op::Release]);
    assert_eq!(container.init.status(), Status::Running);
    assert_eq!(task_status(&container), TaskStatus::RUNNING);
    assert_eq!(h.status("w1"), EngineStatus::Running);
    assert_eq!(container.pids().unwrap().len(), 1);

    let err = container.start().unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "{err}");
    assert_eq!(
        h.fake.ops(),
        [Op::Release],
        "a second start releases nothing"
    );
}

#[test]
fn each_oom_kill_in_the_job_is_taken_once() {
    let h = host();
    let container = h.running("w1");
    let record = h.record("w1");
    assert!(!container.take_new_oom_kill());
    for _ in 0..2 {
        let child = h.fake.spawn_in_job(&record, false);
        h.fake.oom_kill(&record, child.pid);
    }
    assert!(container.take_new_oom_kill(), "two kills, reported once");
    assert!(!container.take_new_oom_kill());
    let child = h.fake.spawn_in_job(&record, false);
    h.fake.oom_kill(&record, child.pid);
    assert!(container.take_new_oom_kill());
    assert!(!container.take_new_oom_kill());
}

#[test]
fn once_init_has_exited_the_rest_of_the_job_may_run_until_it_is_seen_empty() {
    let h = host();
    let container = h.running("w1");
    let record = h.record("w1");
    assert!(container.rest_may_run(), "init runs");
    let daemon = h.fake.spawn_in_job(&record, false);
    h.fake.exit(container.init.pid());
    assert!(container.rest_may_run(), "a daemon init left");
    h.fake.exit(daemon.pid);
    assert!(!container.rest_may_run());
    assert!(!sandbox().rest_may_run());
}

#[test]
fn paused_is_what_the_engines_freezer_says() {
    let h = host();
    let container = h.running("w1");
    assert!(!container.is_paused());

    container.pause().unwrap();
    assert_eq!(h.fake.calls(), [call(Op::SetFrozen, "w1", true)]);
    assert!(container.is_paused());
    assert_eq!(task_status(&container), TaskStatus::PAUSED);
    let err = container.pause().unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "{err}");

    container.resume().unwrap();
    assert!(!container.is_paused());
    assert_eq!(task_status(&container), TaskStatus::RUNNING);
    let err = container.resume().unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "{err}");

    // Another process freezes and thaws the job: the shim asks the engine, so it sees both.
    let cli = h.another_engine().load("w1").unwrap();
    cli.pause().unwrap();
    assert!(container.is_paused());
    assert_eq!(task_status(&container), TaskStatus::PAUSED);
    cli.resume().unwrap();
    assert!(!container.is_paused());
}

#[test]
fn kill_of_init_and_kill_all_reach_the_platform() {
    let h = host();
    let container = h.running("w1");
    let init = container.init.pid();
    let daemon = h.fake.spawn_in_job(&h.record("w1"), true);

    assert_eq!(container.kill("", SIGHUP, false), Ok(None));
    assert_eq!(h.fake.calls(), [call(Op::Signal, init, SIGHUP)]);

    h.fake.clear_calls();
    assert_eq!(container.kill("", SIGHUP, true), Ok(None));
    assert_eq!(h.fake.calls(), [call(Op::SignalJob, "w1", SIGHUP)]);
    let pids: Vec<u32> = container.pids().unwrap().iter().map(|p| p.pid).collect();
    assert_eq!(pids, [init, daemon.pid]);

    // A frozen job cannot die: SIGKILL thaws it.
    container.pause().unwrap();
    h.fake.clear_calls();
    assert_eq!(container.kill("", SIGKILL as u32, true), Ok(None));
    assert_eq!(
        h.fake.calls(),
        [
            call(Op::SignalJob, "w1", SIGKILL),
            call(Op::SetFrozen, "w1", false)
        ]
    );
    assert!(container.pids().unwrap().is_empty());

    // Init ended; until the shim hears of it, signalling it is the engine's refusal.
    h.fake.clear_calls();
    let err = container.kill("", SIGTERM as u32, false).unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "{err}");
    assert!(h.fake.ops().is_empty());
    container.init.exited(KILLED);
    let err = container.kill("", SIGTERM as u32, false).unwrap_err();
    assert_eq!(err.code, Code::NOT_FOUND, "{err}");
    assert!(h.fake.ops().is_empty());
}

#[test]
fn containerds_calls_on_an_exit_are_not_held_while_the_view_is_released() {
    let h = host();
    let container = h.running("w1");
    h.fake.exit(container.init.pid());
    container.init.exited(0);
    let gate = h.fake.gate(Op::ReleaseView);
    std::thread::scope(|scope| {
        let releasing = scope.spawn(|| container.release_view());
        gate.wait_reached();
        // What containerd's CRI sends on a TaskExit before its delete: the state, then a
        // kill of the whole job. They answer while the release waits at its gate.
        let (answered, answers) = std::sync::mpsc::channel();
        let container = &container;
        scope.spawn(move || {
            let _ = answered.send((
                task_status(container),
                container.kill("", SIGKILL as u32, true),
                container.pids().map(|p| p.len()),
            ));
        });
        let answer = answers.recv_timeout(Duration::from_secs(10));
        gate.open();
        releasing.join().unwrap();
        let (status, kill, pids) = answer.expect("state and kill answered during the release");
        assert_eq!(status, TaskStatus::STOPPED);
        assert_eq!(kill, Ok(None));
        assert_eq!(pids, Ok(0));
    });
    assert_eq!(
        h.fake.ops(),
        [Op::ReleaseView, Op::SignalJob, Op::ViewGone],
        "the release was reached first, the kill answered while it waited"
    );
}

#[test]
fn exec_runs_in_a_running_workload_and_is_refused_when_paused_or_stopped() {
    let h = host();
    let container = h.running("w1");
    container
        .add_exec("e1", &exec_spec(), StdioPaths::default())
        .unwrap();
    let pid = container.start_exec("e1").unwrap();
    assert_eq!(h.fake.calls(), [call(Op::Exec, "w1", "/bin/echo hi")]);
    let exec = container.process("e1").unwrap();
    assert_eq!(exec.status(), Status::Running);
    assert!(container.exec_by_pid(pid).is_some());
    assert_eq!(container.pids().unwrap().len(), 2);
    h.fake.clear_calls();
    container.kill("e1", SIGTERM as u32, false).unwrap();
    assert_eq!(h.fake.calls(), [call(Op::Signal, pid, SIGTERM)]);

    container
        .add_exec("e2", &exec_spec(), StdioPaths::default())
        .unwrap();
    container.pause().unwrap();
    h.fake.clear_calls();
    let err = container.start_exec("e2").unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "paused: {err}");
    assert!(h.fake.ops().is_empty(), "paused: {:?}", h.fake.calls());
    assert_eq!(container.process("e2").unwrap().status(), Status::Created);
    container.resume().unwrap();

    // Init has ended: the engine finds the container stopped before the shim hears of it.
    h.fake.exit(container.init.pid());
    h.fake.clear_calls();
    let err = container.start_exec("e2").unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "stopped: {err}");
    assert!(h.fake.ops().is_empty(), "stopped: {:?}", h.fake.calls());
    container.init.exited(0);
    let err = container
        .add_exec("e3", &exec_spec(), StdioPaths::default())
        .unwrap_err();
    assert_eq!(err.code, Code::FAILED_PRECONDITION, "stopped: {err}");
    assert!(container.process("e3").is_err());
}

#[test]
fn delete_after_init_exited_tears_everything_down_and_reports_the_exit() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "delete_after_init_exited_tears_everything_down_and_reports_the_exit",
    ) {
        return;
    }
    let h = host();
    let container = h.running("w1");
    let record = h.record("w1");
    let init = container.init.pid();
    h.fake.exit(init);
    container.init.exited(3);
    h.fake.clear_calls();
    let (pid, exit) = container.delete().unwrap();
    assert_eq!((pid, exit.status), (init, 3));
    assert_eq!(h.fake.ops(), [Op::Destroy]);
    assert!(!h.fake.job_exists(&record));
    assert!(!h.engine.root().join("w1").exists());
}

#[test]
fn a_running_workload_is_not_deleted_without_force_by_the_engine_and_the_shim_forces() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "a_running_workload_is_not_deleted_without_force_by_the_engine_and_the_shim_forces",
    ) {
        return;
    }
    let h = host();
    let container = h.running("w1");
    let record = h.record("w1");
    let err = h.another_engine().delete("w1", false).unwrap_err();
    assert!(
        matches!(err, hostprocess_engine::Error::BadState { .. }),
        "{err}"
    );
    assert!(h.fake.ops().is_empty());
    assert_eq!(h.status("w1"), EngineStatus::Running);

    // The Task API's delete refuses a running init before it gets here; what is left of the
    // job (an init that has not been reaped yet, daemons) is killed with it.
    let (pid, exit) = container.delete().unwrap();
    assert_eq!((pid, exit.status), (container.init.pid(), KILLED));
    assert_eq!(h.fake.ops(), [Op::Destroy]);
    assert!(!h.fake.job_exists(&record));
    assert!(!h.engine.root().join("w1").exists());
}

#[test]
fn a_failed_platform_create_leaves_nothing() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "a_failed_platform_create_leaves_nothing",
    ) {
        return;
    }
    let h = host();
    h.fake.fail_next(Op::Create);
    let err = h.create("w1").err().expect("the create fails");
    assert_eq!(err.code, Code::UNKNOWN, "{err}");
    assert_eq!(h.fake.ops(), [Op::Prepare, Op::Create, Op::Destroy]);
    assert!(!h.engine.root().join("w1").exists());
    assert!(h.engine.list().unwrap().is_empty());

    // Nothing is left in the way of the same id.
    let container = h.create("w1").unwrap();
    assert_eq!(container.start(), Ok(container.init.pid()));
}
