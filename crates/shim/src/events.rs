//! Task events to containerd, in order, from one forwarding thread: a Task API call only queues
//! its event and never waits on containerd. Between events, the thread also runs the shim's one
//! periodic check (`Events::watch`), which would otherwise need a thread of its own.
//!
//! The forwarder has a connection of its own to containerd's Events service (`sys`: on Linux
//! called on the forwarder's thread alone) and names each event's type from the compile-time
//! name of its message. The shim library's publisher looks
//! that name up in protobuf's reflection tables, which it builds on first use by decoding the
//! descriptors of the event's `.proto` file and its imports (`descriptor.proto` among them):
//! about a millisecond of CPU in a shim that lives for one pod. The library's publisher is
//! kept only when that connection cannot be made.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use containerd_shim::event::Event;
use containerd_shim::protos::api::ForwardRequest;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{CodedOutputStream, Message as ProtoMessage, MessageDyn};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::publisher::RemotePublisher;
use log::{debug, warn};

use crate::sys;

/// How long containerd gets to accept one event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Where containerd finds the ttrpc socket of its Events service (set for every shim).
pub const TTRPC_ADDRESS_ENV: &str = "TTRPC_ADDRESS";
/// The protobuf package of containerd's task events.
const EVENTS_PACKAGE: &str = "containerd.events";

enum Message {
    Event {
        topic: String,
        /// The message's name in its package (`TaskExit`).
        name: &'static str,
        event: Box<dyn MessageDyn + Send>,
    },
    /// Answered once every event queued before it is published.
    Flush(Sender<()>),
    /// Starts a periodic check (`Events::watch`).
    Watch(Watch),
}

/// A check the forwarder runs every `interval` until it answers false.
pub struct Watch {
    interval: Duration,
    check: Box<dyn FnMut() -> bool + Send>,
}

/// Where the forwarder sends events.
pub enum Sink {
    Direct(sys::EventsConnection),
    Library(RemotePublisher),
}

impl Sink {
    /// A connection of the shim's own to containerd's Events service, else the library's
    /// publisher, which `fallback` makes only then: it is one more connection to containerd
    /// and two more threads in every shim.
    pub fn connect<E>(fallback: impl FnOnce() -> Result<RemotePublisher, E>) -> Result<Sink, E> {
        let Ok(address) = std::env::var(TTRPC_ADDRESS_ENV) else {
            return fallback().map(Sink::Library);
        };
        match sys::connect_events(&address, PUBLISH_TIMEOUT) {
            Ok(connection) => Ok(Sink::Direct(connection)),
            Err(e) => {
                warn!("events: connect to {address}: {e}; using the library's publisher");
                fallback().map(Sink::Library)
            }
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: Sender<Message>,
}

/// The type URL containerd decodes an event by: its full protobuf name.
fn type_url(name: &str) -> String {
    format!("{EVENTS_PACKAGE}.{name}")
}

impl Events {
    /// Starts the forwarding thread that publishes to containerd for `namespace` on `sink`.
    pub fn start(sink: Sink, namespace: String) -> Events {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || forward(sink, &namespace, rx))
            .map_err(|e| warn!("cannot start the event forwarder: {e}"))
            .ok();
        Events { tx }
    }

    pub fn publish<E: Event + ProtoMessage + Send + 'static>(&self, event: E) {
        let topic = event.topic();
        debug!("event {topic}: {event}");
        let message = Message::Event {
            topic,
            name: E::NAME,
            event: Box::new(event),
        };
        if self.tx.send(message).is_err() {
            warn!("event dropped: the forwarder has stopped");
        }
    }

    /// Runs `check` on the forwarder's thread every `interval`, between events, until it
    /// answers false; a watch started while another runs replaces it.
    pub fn watch(&self, interval: Duration, check: impl FnMut() -> bool + Send + 'static) {
        let watch = Watch {
            interval,
            check: Box::new(check),
        };
        if self.tx.send(Message::Watch(watch)).is_err() {
            warn!("watch not started: the forwarder has stopped");
        }
    }

    /// Waits (at most `timeout`) until everything queued so far reached containerd, so the
    /// shim does not exit with a `TaskDelete` still queued.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = channel();
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }
}

// The tests that use it serve ttrpc on a unix socket.
#[cfg(all(test, unix))]
impl Events {
    /// Events that go nowhere, for tests of what publishes them.
    pub fn unsent() -> Events {
        let (tx, _) = channel();
        Events { tx }
    }
}

/// An event's encoding. `write_to_bytes_dyn` would look the message's name up in the
/// reflection tables, for an error message it might need.
fn encode(event: &dyn MessageDyn) -> Result<Vec<u8>, String> {
    let mut value = Vec::with_capacity(event.compute_size_dyn() as usize);
    let mut os = CodedOutputStream::vec(&mut value);
    event
        .write_to_with_cached_sizes_dyn(&mut os)
        .and_then(|()| os.flush())
        .map_err(|e| e.to_string())?;
    drop(os);
    Ok(value)
}

/// containerd's `Forward` request for one event.
fn forward_request(
    namespace: &str,
    topic: String,
    name: &str,
    event: &dyn MessageDyn,
) -> Result<ForwardRequest, String> {
    let mut any = Any::new();
    any.type_url = type_url(name);
    any.value = encode(event)?;
    let mut envelope = Envelope::new();
    envelope.timestamp = Some(Timestamp::now()).into();
    envelope.namespace = namespace.to_string();
    envelope.topic = topic;
    envelope.event = Some(any).into();
    let mut request = ForwardRequest::new();
    request.envelope = Some(envelope).into();
    Ok(request)
}

/// The next message; while a watch runs, its check in between, when its time comes. `None`
/// once every sender is gone.
fn next(rx: &Receiver<Message>, watch: &mut Option<(Watch, Instant)>) -> Option<Message> {
    loop {
        let Some((running, due)) = watch else {
            return rx.recv().ok();
        };
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(message) => return Some(message),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                if (running.check)() {
                    *due = Instant::now() + running.interval;
                } else {
                    *watch = None;
                }
            }
        }
    }
}

fn forward(mut sink: Sink, namespace: &str, rx: Receiver<Message>) {
    let mut watch = None;
    while let Some(message) = next(&rx, &mut watch) {
        let (topic, name, event) = match message {
            Message::Event { topic, name, event } => (topic, name, event),
            Message::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Message::Watch(started) => {
                let due = Instant::now() + started.interval;
                watch = Some((started, due));
                continue;
            }
        };
        let sent = match &mut sink {
            Sink::Direct(connection) => forward_request(namespace, topic.clone(), name, &*event)
                .and_then(|req| connection.forward(&req)),
            Sink::Library(publisher) => publisher
                .publish(
                    context::with_duration(PUBLISH_TIMEOUT),
                    &topic,
                    namespace,
                    event,
                )
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = sent {
            warn!("publish {topic} to containerd: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::events::task::{
        TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
        TaskResumed, TaskStart,
    };
    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    fn reflected<E: MessageFull>() -> (String, String) {
        (type_url(E::NAME), E::descriptor().full_name().to_string())
    }

    #[test]
    fn every_event_is_named_as_protobufs_reflection_names_it() {
        for (ours, reflection) in [
            reflected::<TaskCreate>(),
            reflected::<TaskStart>(),
            reflected::<TaskExit>(),
            reflected::<TaskDelete>(),
            reflected::<TaskExecAdded>(),
            reflected::<TaskExecStarted>(),
            reflected::<TaskPaused>(),
            reflected::<TaskResumed>(),
            reflected::<TaskOOM>(),
        ] {
            assert_eq!(ours, reflection);
        }
    }

    /// containerd's socket, listening but never answering: the watch needs no event sent.
    #[cfg(unix)]
    #[test]
    fn a_watch_runs_on_the_forwarder_until_it_answers_false() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd.sock.ttrpc");
        let _containerd = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let connection = sys::connect_events(&path.to_string_lossy(), PUBLISH_TIMEOUT).unwrap();
        let events = Events::start(Sink::Direct(connection), "ns".into());
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = checks.clone();
        events.watch(Duration::from_millis(10), move || {
            counted.fetch_add(1, Ordering::SeqCst) + 1 < 3
        });
        events.flush(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while checks.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            3,
            "checked until it answered false"
        );
        // A watch started again runs again.
        let again = checks.clone();
        events.watch(Duration::from_millis(10), move || {
            again.fetch_add(1, Ordering::SeqCst);
            false
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while checks.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(checks.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_forward_request_carries_the_event_as_the_library_would() {
        let mut exit = TaskExit::new();
        exit.container_id = "c1".into();
        exit.pid = 42;
        exit.exit_status = 3;
        let topic = exit.topic();
        let req = forward_request("k8s.io", topic, TaskExit::NAME, &exit).unwrap();
        let envelope = req.envelope.unwrap();
        assert_eq!(envelope.namespace, "k8s.io");
        assert_eq!(envelope.topic, "/tasks/exit");
        assert!(envelope.timestamp.seconds > 0);
        let any = envelope.event.unwrap();
        let library = containerd_shim::util::convert_to_any(Box::new(exit.clone())).unwrap();
        assert_eq!(any.type_url, library.type_url);
        assert_eq!(TaskExit::parse_from_bytes(&any.value).unwrap(), exit);
    }
}
