//! containerd's Events service on a connection of the shim's own, called on the event
//! forwarder's thread: a request written, then its answer read. ttrpc's client would add two
//! threads to every shim, one that sends and one that receives, the latter waking every 10 ms
//! for as long as the shim lives.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use containerd_shim::protos::api::ForwardRequest;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::proto::{
    MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_RESPONSE,
};
use containerd_shim::protos::ttrpc::{Code, MessageHeader, Request, Response};

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const METHOD: &str = "Forward";

/// A connection to containerd's Events service at a socket path. A connection that failed
/// (containerd restarted, or an answer that did not come in time and may still arrive) is
/// dropped and made again for the next event.
pub struct EventsConnection {
    address: String,
    timeout: Duration,
    stream: Option<UnixStream>,
    /// ttrpc's client streams are odd-numbered.
    next_stream: u32,
}

/// Connects to containerd's Events service at `address` (a path, as in `TTRPC_ADDRESS`); each
/// send and each answer is given `timeout`.
pub fn connect_events(address: &str, timeout: Duration) -> Result<EventsConnection, String> {
    let mut connection = EventsConnection {
        address: address.to_string(),
        timeout,
        stream: None,
        next_stream: 1,
    };
    connection.stream = Some(connection.connect()?);
    Ok(connection)
}

impl EventsConnection {
    fn connect(&self) -> Result<UnixStream, String> {
        let stream = UnixStream::connect(&self.address)
            .and_then(|s| {
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                Ok(s)
            })
            .map_err(|e| format!("connect to {}: {e}", self.address))?;
        Ok(stream)
    }

    /// Sends one event to containerd and waits for its answer.
    pub fn forward(&mut self, request: &ForwardRequest) -> Result<(), String> {
        let stream_id = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(2);
        let message = request_message(stream_id, request, self.timeout)?;
        let stream = match self.stream.as_mut() {
            Some(stream) => stream,
            None => self.stream.insert(self.connect()?),
        };
        let answer = exchange(stream, stream_id, &message);
        if answer.is_err() {
            self.stream = None;
        }
        let response = answer.map_err(|e| format!("{SERVICE}/{METHOD}: {e}"))?;
        let status = response.status.get_or_default();
        if status.code() != Code::OK {
            return Err(format!(
                "{SERVICE}/{METHOD}: {:?}: {}",
                status.code(),
                status.message
            ));
        }
        Ok(())
    }
}

/// The framed ttrpc request that forwards `request`.
fn request_message(
    stream_id: u32,
    request: &ForwardRequest,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut call = Request::new();
    call.service = SERVICE.to_string();
    call.method = METHOD.to_string();
    call.timeout_nano = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
    call.payload = request.write_to_bytes().map_err(|e| e.to_string())?;
    let body = call.write_to_bytes().map_err(|e| e.to_string())?;
    let length = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MESSAGE_LENGTH_MAX)
        .ok_or_else(|| format!("an event of {} bytes is too large to send", body.len()))?;
    let mut message: Vec<u8> = MessageHeader::new_request(stream_id, length).into();
    message.extend_from_slice(&body);
    Ok(message)
}

/// Writes `message` and reads until the answer to `stream_id` (an answer to an earlier
/// request that timed out is skipped).
fn exchange<S: Read + Write>(
    stream: &mut S,
    stream_id: u32,
    message: &[u8],
) -> io::Result<Response> {
    stream.write_all(message)?;
    loop {
        let mut header = [0u8; MESSAGE_HEADER_LENGTH];
        stream.read_exact(&mut header)?;
        let header = MessageHeader::from(header);
        let length = header.length as usize;
        if length > MESSAGE_LENGTH_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an answer of {length} bytes is larger than ttrpc sends"),
            ));
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        if header.type_ != MESSAGE_TYPE_RESPONSE || header.stream_id != stream_id {
            continue;
        }
        return Response::parse_from_bytes(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use containerd_shim::protos::api::Empty;
    use containerd_shim::protos::shim::events::ForwardRequest;
    use containerd_shim::protos::ttrpc::{self, Server, TtrpcContext};
    use containerd_shim::protos::{create_events, Events};

    use super::*;

    /// containerd's side: ttrpc's own server, keeping what it was sent.
    #[derive(Default)]
    struct Containerd {
        topics: Mutex<Vec<String>>,
    }

    impl Events for Containerd {
        fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
            let topic = req.envelope.topic.clone();
            if topic == "/refused" {
                return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    Code::INVALID_ARGUMENT,
                    "not this one",
                )));
            }
            self.topics.lock().unwrap().push(topic);
            Ok(Empty::new())
        }
    }

    fn event(topic: &str) -> ForwardRequest {
        let mut request = ForwardRequest::new();
        request.envelope.mut_or_insert_default().topic = topic.to_string();
        request
    }

    fn serve(path: &std::path::Path, containerd: &Arc<Containerd>) -> Server {
        let methods: HashMap<_, _> = create_events(containerd.clone());
        let mut server = Server::new()
            .bind(&format!("unix://{}", path.display()))
            .unwrap()
            .register_service(methods);
        server.start().unwrap();
        server
    }

    /// A containerd's Events service on a socket of a temporary directory, and a connection
    /// to it.
    struct Served {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        containerd: Arc<Containerd>,
        server: Server,
        connection: EventsConnection,
    }

    fn served() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd.sock.ttrpc");
        let containerd = Arc::new(Containerd::default());
        let server = serve(&path, &containerd);
        let connection = connect_events(&path.to_string_lossy(), Duration::from_secs(5)).unwrap();
        Served {
            _dir: dir,
            path,
            containerd,
            server,
            connection,
        }
    }

    #[test]
    fn events_reach_ttrpcs_server_in_order_and_a_refusal_is_an_error() {
        let Served {
            _dir,
            containerd,
            server,
            mut connection,
            ..
        } = served();
        connection.forward(&event("/tasks/create")).unwrap();
        connection.forward(&event("/tasks/start")).unwrap();
        let err = connection.forward(&event("/refused")).unwrap_err();
        assert!(err.contains("INVALID_ARGUMENT: not this one"), "{err}");
        connection.forward(&event("/tasks/exit")).unwrap();
        assert_eq!(
            *containerd.topics.lock().unwrap(),
            ["/tasks/create", "/tasks/start", "/tasks/exit"]
        );
        server.shutdown();
    }

    #[test]
    fn a_connection_that_failed_is_made_again_for_the_next_event() {
        let Served {
            _dir,
            path,
            containerd,
            server,
            mut connection,
        } = served();
        connection.forward(&event("/tasks/create")).unwrap();
        // containerd restarts.
        server.shutdown();
        std::fs::remove_file(&path).unwrap();
        assert!(connection.forward(&event("/tasks/lost")).is_err());
        let server = serve(&path, &containerd);
        connection.forward(&event("/tasks/exit")).unwrap();
        assert_eq!(
            *containerd.topics.lock().unwrap(),
            ["/tasks/create", "/tasks/exit"]
        );
        server.shutdown();
    }
}
