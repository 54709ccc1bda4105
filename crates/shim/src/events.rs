//! Task events to containerd, in order, from one forwarding thread: a Task API call only queues
//! its event and never waits on containerd.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::publisher::RemotePublisher;
use log::{debug, warn};

/// How long containerd gets to accept one event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

enum Message {
    Event {
        topic: String,
        event: Box<dyn MessageDyn + Send>,
    },
    /// Answered once every event queued before it is published.
    Flush(Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: Sender<Message>,
}

impl Events {
    /// Starts the forwarding thread that publishes to containerd for `namespace`.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || forward(publisher, &namespace, rx))
            .map_err(|e| warn!("cannot start the event forwarder: {e}"))
            .ok();
        Events { tx }
    }

    pub fn publish<E: Event + Send + 'static>(&self, event: E) {
        let topic = event.topic();
        debug!("event {topic}: {event}");
        let message = Message::Event {
            topic,
            event: Box::new(event),
        };
        if self.tx.send(message).is_err() {
            warn!("event dropped: the forwarder has stopped");
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

fn forward(publisher: RemotePublisher, namespace: &str, rx: Receiver<Message>) {
    for message in rx {
        match message {
            Message::Event { topic, event } => {
                let ctx = context::with_duration(PUBLISH_TIMEOUT);
                if let Err(e) = publisher.publish(ctx, &topic, namespace, event) {
                    warn!("publish {topic} to containerd: {e}");
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
