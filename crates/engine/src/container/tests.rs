//! The lifecycle's state machine on the recording platform: no root, no kernel feature, the
//! state root in a temporary directory.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::sys::fake::{Fake, FakeHost, FakeRecord, Op};
use crate::sys::Platform;

/// The engine on the fake, and the fake to look at and steer.
fn host() -> FakeHost {
    FakeHost::new()
}

impl FakeHost {
    fn plan(&self, id: &str) -> ContainerPlan {
        let spec = crate::spec::example_spec(vec!["/bin/true".into()]);
        plan::plan(id, Path::new("/bundle"), &spec, self.engine.options(), None).unwrap()
    }

    fn create(&self, id: &str) -> Result<Container<Fake>> {
        self.engine
            .create_planned(self.plan(id), CreateOptions::default())
    }

    /// A container in `status`, with the calls that made it forgotten.
    fn container(&self, id: &str, status: Status) -> Container<Fake> {
        let mut c = self.create(id).unwrap();
        match status {
            Status::Created => {}
            Status::Running => c.start().unwrap(),
            Status::Paused => {
                c.start().unwrap();
                c.pause().unwrap();
            }
            Status::Stopped => {
                c.start().unwrap();
                self.fake.exit(c.init().unwrap().pid);
            }
            Status::Creating => unreachable!("made by a crash, see its tests"),
        }
        assert_eq!(c.status(), status);
        self.fake.clear_calls();
        c
    }

    fn exists(&self, id: &str) -> bool {
        self.engine.root().join(id).exists()
    }
}

const STATES: [Status; 4] = [
    Status::Created,
    Status::Running,
    Status::Paused,
    Status::Stopped,
];

/// The status a refusal names, or `None` for success.
fn refused<T>(result: Result<T>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(Error::BadState { status, .. }) => Some(status),
        Err(e) => panic!("not a refusal: {e}"),
    }
}

fn process() -> Process {
    crate::spec::example_spec(vec!["/bin/echo".into(), "hi".into()])
        .process
        .unwrap()
}

#[test]
fn start_releases_a_created_container_and_refuses_every_other() {
    for status in STATES {
        let h = host();
        let mut c = h.container("a", status);
        let result = refused(c.start());
        if status == Status::Created {
            assert_eq!(result, None);
            assert_eq!(h.fake.ops(), [Op::Release]);
            assert_eq!(c.status(), Status::Running);
        } else {
            assert_eq!(result, Some(status.to_string()), "start when {status}");
            assert!(h.fake.ops().is_empty(), "start when {status}");
        }
    }
}

#[test]
fn kill_signals_init_unless_it_has_stopped() {
    for status in STATES {
        let h = host();
        let c = h.container("a", status);
        let result = refused(c.kill(sys::SIGTERM, false));
        if status == Status::Stopped {
            assert_eq!(result, Some("stopped".into()));
            assert!(h.fake.ops().is_empty());
        } else {
            assert_eq!(result, None, "kill when {status}");
            let calls = h.fake.calls();
            assert_eq!(h.fake.ops(), [Op::Signal], "kill when {status}");
            assert_eq!(calls[0].target, c.init().unwrap().pid.to_string());
            assert_eq!(calls[0].detail, sys::SIGTERM.to_string());
        }
    }
}

#[test]
fn kill_all_signals_the_job_in_every_state() {
    for status in STATES {
        let h = host();
        let c = h.container("a", status);
        assert_eq!(refused(c.kill(9, true)), None, "kill --all when {status}");
        assert_eq!(h.fake.ops(), [Op::SignalJob], "kill --all when {status}");
    }
}

#[test]
fn pause_freezes_only_a_running_container_and_resume_thaws_only_a_paused_one() {
    for status in STATES {
        let h = host();
        let c = h.container("a", status);
        let paused = refused(c.pause());
        match status {
            Status::Running => {
                assert_eq!(paused, None);
                assert_eq!(h.fake.calls()[0].detail, "true");
                assert_eq!(c.status(), Status::Paused);
            }
            _ => assert_eq!(paused, Some(status.to_string()), "pause when {status}"),
        }
        let h = host();
        let c = h.container("a", status);
        let resumed = refused(c.resume());
        match status {
            Status::Paused => {
                assert_eq!(resumed, None);
                assert_eq!(h.fake.calls()[0].detail, "false");
                assert_eq!(c.status(), Status::Running);
            }
            _ => {
                assert_eq!(resumed, Some(status.to_string()), "resume when {status}");
                assert!(h.fake.ops().is_empty(), "resume when {status}");
            }
        }
    }
}

#[test]
fn exec_runs_in_a_created_or_running_container_only() {
    for status in STATES {
        let h = host();
        let c = h.container("a", status);
        let result = refused(c.exec(&process(), ()));
        if matches!(status, Status::Created | Status::Running) {
            assert_eq!(result, None, "exec when {status}");
            assert_eq!(h.fake.ops(), [Op::Exec]);
            assert_eq!(h.fake.calls()[0].detail, "/bin/echo hi");
        } else {
            assert_eq!(result, Some(status.to_string()), "exec when {status}");
            assert!(h.fake.ops().is_empty(), "exec when {status}");
        }
    }
}

#[test]
fn update_reaches_the_platform_in_every_state_and_keeps_the_new_limits() {
    for status in STATES {
        let h = host();
        let mut c = h.container("a", status);
        let linux = crate::spec::LinuxResources {
            pids: Some(crate::spec::LinuxPids { limit: 64 }),
            ..Default::default()
        };
        c.update(Some(&linux), None).unwrap();
        assert_eq!(h.fake.ops(), [Op::Update], "update when {status}");
        assert_eq!(h.fake.calls()[0].detail, "Some(64)");
        let saved = h.another_engine().load("a").unwrap();
        assert_eq!(saved.plan().resources.pids_limit, Some(64));
    }
}

#[test]
fn delete_refuses_a_live_container_without_force_and_destroys_every_other() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "delete_refuses_a_live_container_without_force_and_destroys_every_other",
    ) {
        return;
    }
    for status in STATES {
        for force in [false, true] {
            let h = host();
            let c = h.container("a", status);
            let result = refused(c.delete(force));
            if !force && matches!(status, Status::Running | Status::Paused) {
                assert_eq!(result, Some(status.to_string()), "delete when {status}");
                assert!(h.fake.ops().is_empty());
                assert!(h.exists("a"));
            } else {
                assert_eq!(result, None, "delete (force {force}) when {status}");
                assert_eq!(h.fake.ops(), [Op::Destroy]);
                assert!(!h.exists("a"));
            }
        }
    }
}

#[test]
fn a_failed_platform_create_removes_everything() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "a_failed_platform_create_removes_everything",
    ) {
        return;
    }
    let h = host();
    h.fake.fail_next(Op::Create);
    assert!(h.create("a").is_err());
    assert_eq!(h.fake.ops(), [Op::Prepare, Op::Create, Op::Destroy]);
    assert!(!h.exists("a"), "no state directory is left");
    assert!(h.engine.list().unwrap().is_empty());
}

#[test]
fn a_failed_prepare_makes_nothing_and_leaves_nothing() {
    let h = host();
    h.fake.fail_next(Op::Prepare);
    assert!(h.create("a").is_err());
    assert_eq!(h.fake.ops(), [Op::Prepare]);
    assert!(!h.exists("a"));
}

#[test]
fn a_corrupt_state_is_removed_by_delete_force_only_through_its_directory() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "a_corrupt_state_is_removed_by_delete_force_only",
    ) {
        return;
    }
    let h = host();
    h.container("a", Status::Running);
    std::fs::write(h.engine.root().join("a").join("state.json"), "{").unwrap();
    assert!(matches!(
        h.engine.delete("a", false),
        Err(Error::CorruptState { .. })
    ));
    assert!(h.fake.ops().is_empty());
    h.engine.delete("a", true).unwrap();
    assert_eq!(
        h.fake.ops(),
        [Op::DestroyUnrecorded],
        "its record cannot be read"
    );
    assert!(!h.exists("a"));
}

/// Runs `f`, which is to crash (panic) as a process killed there would stop.
fn crashing<T>(f: impl FnOnce() -> T) {
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "it was to crash"
    );
}

#[test]
fn a_crash_after_the_directory_is_made_leaves_what_delete_force_removes() {
    let h = host();
    // The state directory and its lock are made; the crash comes before the state is saved.
    drop(h.engine.root.create_dir("a").unwrap());
    let engine = h.another_engine();
    assert!(engine.list().unwrap().is_empty());
    engine.delete("a", true).unwrap();
    assert!(!h.exists("a"));
    assert_eq!(h.fake.count(Op::Destroy), 0, "nothing was made");
}

#[test]
fn a_crash_at_any_step_of_create_leaves_nothing_or_what_delete_force_removes() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "a_crash_at_any_step_of_create_leaves_nothing_or_what_delete_force_removes",
    ) {
        return;
    }
    // Around each of the platform's steps: before anything is made, after the record is named
    // (then the directory and the state saved as creating), after the job and init are made but
    // before the state says so.
    let points: [(&str, Op); 4] = [
        ("before", Op::Prepare),
        ("after", Op::Prepare),
        ("before", Op::Create),
        ("after", Op::Create),
    ];
    for (when, op) in points {
        let h = host();
        match when {
            "before" => h.fake.crash_before(op),
            _ => h.fake.crash_after(op),
        }
        crashing(|| h.create("a"));
        let engine = h.another_engine();
        let job = match engine.load("a") {
            Err(Error::NotFound(_)) => {
                assert_eq!(
                    op,
                    Op::Prepare,
                    "{when} {op:?}: the state is saved before create"
                );
                assert!(!h.exists("a"), "{when} {op:?}");
                None
            }
            Ok(seen) => {
                assert_eq!(seen.status(), Status::Creating, "{when} {op:?}");
                let job: FakeRecord = seen.record().clone();
                let made = (when, op) == ("after", Op::Create);
                assert_eq!(h.fake.job_exists(&job), made, "{when} {op:?}");
                Some(job)
            }
            Err(e) => panic!("{when} {op:?}: {e}"),
        };
        engine.delete("a", true).unwrap();
        assert!(!h.exists("a"), "{when} {op:?}");
        assert_eq!(
            h.fake.count(Op::Destroy),
            usize::from(job.is_some()),
            "{when} {op:?}"
        );
        if let Some(job) = job {
            assert!(!h.fake.job_exists(&job), "{when} {op:?}: the job is gone");
        }
    }
}

#[test]
fn a_start_that_died_after_releasing_init_is_finished_by_the_next_start() {
    let h = host();
    let c = h.container("a", Status::Created);
    h.fake.crash_after(Op::Release);
    crashing(|| c.clone().start());
    let mut again = h.another_engine().load("a").unwrap();
    assert_eq!(
        again.state.phase,
        Phase::Created,
        "the crash came before the save"
    );
    assert_eq!(
        again.status(),
        Status::Running,
        "init runs: it was released"
    );
    again.start().unwrap();
    assert_eq!(h.fake.count(Op::Release), 1, "init is not released twice");
    let saved = h.another_engine().load("a").unwrap();
    assert_eq!(saved.state.phase, Phase::Running);
    assert!(again.start().is_err(), "now it is started for good");
}

#[test]
fn a_start_that_failed_before_releasing_init_can_be_tried_again() {
    let h = host();
    let mut c = h.container("a", Status::Created);
    h.fake.fail_next(Op::Release);
    assert!(c.start().is_err());
    assert_eq!(c.status(), Status::Created);
    c.start().unwrap();
    assert_eq!(h.fake.count(Op::Release), 2);
    assert_eq!(c.status(), Status::Running);
}

#[test]
fn racing_deletes_destroy_once_and_both_succeed() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "racing_deletes_destroy_once_and_both_succeed",
    ) {
        return;
    }
    let h = host();
    let first = h.container("a", Status::Stopped);
    let second = h.another_engine().load("a").unwrap();
    std::thread::scope(|s| {
        let gate = h.fake.gate(Op::Destroy);
        let one = s.spawn(|| first.delete(false));
        gate.wait_reached();
        let two = s.spawn(|| second.delete(false));
        // The second waits for the lock the first holds while it destroys.
        std::thread::sleep(Duration::from_millis(100));
        gate.open();
        one.join().unwrap().unwrap();
        two.join().unwrap().unwrap();
    });
    assert_eq!(h.fake.count(Op::Destroy), 1);
    assert!(!h.exists("a"));
}

#[test]
fn racing_deletes_by_id_with_force_destroy_once_and_both_succeed() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "racing_deletes_by_id_with_force_destroy_once_and_both_succeed",
    ) {
        return;
    }
    let h = host();
    h.container("a", Status::Running);
    let other = h.another_engine();
    std::thread::scope(|s| {
        let gate = h.fake.gate(Op::Destroy);
        let one = s.spawn(|| h.engine.delete("a", true));
        gate.wait_reached();
        let two = s.spawn(|| other.delete("a", true));
        std::thread::sleep(Duration::from_millis(100));
        gate.open();
        one.join().unwrap().unwrap();
        two.join().unwrap().unwrap();
    });
    assert_eq!(h.fake.count(Op::Destroy), 1);
}

#[test]
fn deleting_a_container_whose_id_was_used_again_leaves_the_new_one() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "deleting_a_container_whose_id_was_used_again_leaves_the_new_one",
    ) {
        return;
    }
    let h = host();
    let old = h.container("a", Status::Stopped);
    h.another_engine().delete("a", false).unwrap();
    let new = h.create("a").unwrap();
    h.fake.clear_calls();
    old.delete(true).unwrap();
    assert!(
        h.fake.ops().is_empty(),
        "nothing destroyed: {:?}",
        h.fake.calls()
    );
    assert!(h.exists("a"));
    assert_eq!(
        h.engine.load("a").unwrap().created(),
        new.created(),
        "the new container is still there"
    );
    assert!(h.fake.job_exists(new.record()));
}

/// Start and delete take the container's lock: a delete that comes while a start releases init
/// waits for it, and then tears down a container that has been started.
#[test]
fn start_and_delete_serialise_on_the_containers_lock() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "start_and_delete_serialise_on_the_containers_lock",
    ) {
        return;
    }
    let h = host();
    let mut c = h.container("a", Status::Created);
    let other = h.another_engine();
    std::thread::scope(|s| {
        let gate = h.fake.gate(Op::Release);
        let start = s.spawn(move || c.start());
        gate.wait_reached();
        let delete = s.spawn(|| other.delete("a", true));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            h.fake.count(Op::Destroy),
            0,
            "delete went ahead while start held the lock"
        );
        gate.open();
        start.join().unwrap().unwrap();
        delete.join().unwrap().unwrap();
    });
    assert_eq!(h.fake.ops(), [Op::Release, Op::Destroy]);
    assert!(!h.exists("a"));
}

#[test]
fn the_rest_of_the_job_gets_sigterm_then_sigkill_after_the_grace_period() {
    let h = host();
    let c = h.container("a", Status::Running);
    let stubborn = h.fake.spawn_in_job(c.record(), true);
    h.fake.exit(c.init().unwrap().pid);
    h.fake.clear_calls();
    let mut c = c;
    c.state.plan.grace_period = Duration::from_millis(120);
    let begun = std::time::Instant::now();
    assert!(c.terminate_rest().unwrap(), "something had to be killed");
    assert!(
        begun.elapsed() >= Duration::from_millis(120),
        "the grace period was given"
    );
    let signals: Vec<String> = h.fake.calls().into_iter().map(|c| c.detail).collect();
    assert_eq!(signals, ["15", "9"]);
    assert!(!h.fake.is_running(&stubborn));
}

#[test]
fn the_rest_of_a_frozen_job_is_thawed_then_sent_sigterm() {
    let h = host();
    let c = h.container("a", Status::Paused);
    h.fake.spawn_in_job(c.record(), false);
    h.fake.exit(c.init().unwrap().pid);
    h.fake.clear_calls();
    assert!(!c.terminate_rest().unwrap(), "SIGTERM was enough");
    assert_eq!(h.fake.ops(), [Op::SetFrozen, Op::SignalJob]);
    assert_eq!(h.fake.calls()[1].detail, "15");
}

#[test]
fn the_rest_of_a_deleted_containers_job_is_left_alone() {
    let h = host();
    let c = h.container("a", Status::Running);
    let daemon = h.fake.spawn_in_job(c.record(), false);
    h.fake.exit(c.init().unwrap().pid);
    // Deleted and made again under the same id: the job at its name is another's.
    std::fs::remove_file(h.engine.root().join("a").join("state.json")).unwrap();
    h.fake.clear_calls();
    assert!(!c.terminate_rest().unwrap());
    assert!(h.fake.ops().is_empty(), "{:?}", h.fake.calls());
    assert!(h.fake.is_running(&daemon));
}

#[test]
fn every_save_writes_the_init_where_earlier_builds_read_it() {
    // What a build from before the record kept the init reads of a state file.
    #[derive(serde::Deserialize)]
    struct EarlierState {
        init: Option<ProcessInfo>,
    }
    let host = host();
    let read_as_earlier = |id: &str| -> Option<ProcessInfo> {
        let text = std::fs::read(host.engine.root().join(id).join("state.json")).unwrap();
        serde_json::from_slice::<EarlierState>(&text).unwrap().init
    };
    let mut c = host.create("a").unwrap();
    let init = c.init().expect("a created container has its init");
    assert_eq!(read_as_earlier("a"), Some(init), "after create");
    c.start().unwrap();
    assert_eq!(read_as_earlier("a"), Some(init), "after start");
    c.update(None, None).unwrap();
    assert_eq!(read_as_earlier("a"), Some(init), "after update");
}

#[test]
fn the_view_is_released_early_only_for_a_stopped_container_whose_job_is_empty() {
    for status in STATES {
        let h = host();
        let c = h.container("a", status);
        let stopped = status == Status::Stopped;
        assert_eq!(c.release_view().unwrap(), stopped, "{status:?}");
        assert_eq!(
            h.fake.ops(),
            if stopped {
                vec![Op::ReleaseView, Op::ViewGone]
            } else {
                vec![]
            }
        );
    }

    let h = host();
    let c = h.container("a", Status::Running);
    h.fake.spawn_in_job(c.record(), false);
    h.fake.exit(c.init().unwrap().pid);
    assert_eq!(c.status(), Status::Stopped);
    assert!(
        !c.release_view().unwrap(),
        "a process of the job still runs"
    );
    assert_eq!(h.fake.count(Op::ReleaseView), 0);
}

#[test]
fn delete_after_the_view_was_released_early_tears_down_the_whole_container() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "delete_after_the_view_was_released_early_tears_down_the_whole_container",
    ) {
        return;
    }
    let h = host();
    let c = h.container("a", Status::Stopped);
    assert!(c.release_view().unwrap());
    c.delete(false).unwrap();
    assert_eq!(h.fake.ops(), [Op::ReleaseView, Op::ViewGone, Op::Destroy]);
    assert!(!h.exists("a"));
}

/// What the kernel still does once a view is released (on Linux the namespace's teardown, the
/// volume's unmount with the sync of the filesystem under it) happens out of the container's
/// lock: a delete arriving meanwhile takes the lock at once.
#[test]
fn the_lock_is_free_while_the_kernel_finishes_taking_a_released_view_down() {
    let h = host();
    let c = h.container("a", Status::Stopped);
    let gate = h.fake.gate(Op::ViewGone);
    std::thread::scope(|scope| {
        let releasing = scope.spawn(|| c.release_view());
        gate.wait_reached();
        let at_once = StateRoot::new(h.engine.root().to_path_buf())
            .with_lock_timeout(Duration::ZERO)
            .lock("a")
            .map(drop);
        gate.open();
        assert!(releasing.join().unwrap().unwrap());
        at_once.expect("the lock is free while the released view is taken down");
    });
    assert_eq!(h.fake.ops(), [Op::ReleaseView, Op::ViewGone]);
}

#[test]
fn the_view_of_a_deleted_container_or_of_its_ids_next_container_is_left_alone() {
    if !testkit::kernel::removes_a_file_deleted_while_open(
        "the_view_of_a_deleted_container_or_of_its_ids_next_container_is_left_alone",
    ) {
        return;
    }
    let h = host();
    let old = h.container("a", Status::Stopped);
    h.another_engine().delete("a", false).unwrap();
    h.fake.clear_calls();
    assert!(!old.release_view().unwrap(), "deleted");
    let new = h.container("a", Status::Stopped);
    assert!(!old.release_view().unwrap(), "another container now");
    assert_eq!(h.fake.count(Op::ReleaseView), 0);
    assert!(new.release_view().unwrap());
    assert_eq!(h.fake.count(Op::ReleaseView), 1);
}
