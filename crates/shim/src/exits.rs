//! Process exits: containerd-shim's SIGCHLD reaper (on Windows, the per-process watchers of
//! `sys`) reports each reaped pid to its monitor; one thread here turns them into process
//! state and `TaskExit` events. When an init exits, the rest of its job is stopped first (§6),
//! so containerd learns of the exit only once nothing of the container runs any more: on a
//! thread of its own, for the grace period, unless nothing of the job is left. Once the exit is
//! published, the container's view is let go of while containerd handles it.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use log::{debug, error};

use crate::container::Container;
use crate::events::Events;
use crate::process::Process;
use crate::task::Shared;

/// Subscribes to the reaper before any process can exist, then handles exits on a thread.
pub fn start(shared: Arc<Shared>) {
    let subscription = match monitor_subscribe(Topic::Pid) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot subscribe to process exits: {e}");
            return;
        }
    };
    let spawned = thread::Builder::new().name("exits".into()).spawn(move || {
        for event in subscription.rx.iter() {
            if let Subject::Pid(pid) = event.subject {
                on_exit(&shared, pid, event.exit_code);
            }
        }
    });
    if let Err(e) = spawned {
        error!("cannot start the exit handler: {e}");
    }
}

/// How long an exit waits for a terminal's last output to be copied (a daemon that keeps the
/// terminal open must not hold the exit back).
const TERMINAL_OUTPUT_WAIT: Duration = Duration::from_secs(1);

fn on_exit(shared: &Arc<Shared>, pid: i32, code: i32) {
    let (Ok(pid), Ok(status)) = (u32::try_from(pid), u32::try_from(code)) else {
        return;
    };
    // Containerd handles the exit meanwhile; other calls need not wait for the view.
    if let Some(stopped) = record_exit(shared, pid, status) {
        stopped.release_view();
    }
}

/// Handles one reaped pid under the lifecycle lock; returns the container whose exit it
/// published with nothing of its job left.
fn record_exit(shared: &Arc<Shared>, pid: u32, status: u32) -> Option<Arc<Container>> {
    // Under the lifecycle lock, every process that was forked is registered.
    let _lifecycle = shared.lifecycle();
    for container in shared.containers() {
        if container.init.pid() == pid && container.init.exit().is_none() {
            debug!(
                "container {}: init {pid} exited (status {status})",
                container.id
            );
            // The usual end: nothing of the job left and no terminal output to wait for, so
            // the exit is published here, before any other exit is handled.
            if !container.init.stdio.terminal && !container.rest_may_run() {
                publish_oom(&container, &shared.events);
                publish_exit(&container, &container.init, status, &shared.events);
                return Some(container);
            }
            let events = shared.events.clone();
            let spawned = thread::Builder::new()
                .name(format!("init-exit-{}", container.id))
                .spawn(move || init_exited(&container, status, &events));
            if let Err(e) = spawned {
                error!("init of container exited, cannot stop the rest of its job: {e}");
            }
            return None;
        }
        if let Some(exec) = container.exec_by_pid(pid) {
            publish_oom(&container, &shared.events);
            publish_exit(&container, &exec, status, &shared.events);
            return None;
        }
    }
    debug!("reaped pid {pid} (status {status}): not a process the shim started");
    None
}

fn init_exited(container: &Container, status: u32, events: &Events) {
    container.terminate_rest();
    publish_oom(container, events);
    publish_exit(container, &container.init, status, events);
    container.release_view();
}

/// Records a process's exit and tells containerd, once.
pub fn publish_exit(container: &Container, process: &Process, status: u32, events: &Events) {
    process.wait_output_copied(TERMINAL_OUTPUT_WAIT);
    let Some(exit) = process.exited(status) else {
        return;
    };
    let mut event = TaskExit::new();
    event.container_id = container.id.clone();
    event.id = if process.exec_id.is_empty() {
        container.id.clone()
    } else {
        process.exec_id.clone()
    };
    event.pid = process.pid();
    event.exit_status = exit.status;
    event.exited_at = Some(exit.timestamp()).into();
    events.publish(event);
}

/// An OOM kill precedes the exit it causes, as containerd's own shims report it.
pub fn publish_oom(container: &Container, events: &Events) {
    if container.take_new_oom_kill() {
        let mut event = TaskOOM::new();
        event.container_id = container.id.clone();
        events.publish(event);
    }
}
