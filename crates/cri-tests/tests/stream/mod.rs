//! kubectl's side of the Kubernetes streaming protocols over WebSocket, spoken to the URLs
//! containerd's CRI streaming server hands out for `Exec`, `Attach` and `PortForward`.
//!
//! Each binary message starts with its channel number. `exec`/`attach` (`v4.channel.k8s.io`):
//! 0 stdin, 1 stdout, 2 stderr, 3 the error channel (a `metav1.Status` in JSON once the
//! command ends), 4 terminal resizes (`{"Width":w,"Height":h}`). `portforward`: per port a
//! data channel and an error channel, whose first message starts with the port (2 bytes,
//! little-endian). v4 has no half-close: stdin ends when the client closes the connection.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// The exec/attach protocol the kubelet's streaming server prefers: binary, with resizes.
pub const V4_CHANNEL: &str = "v4.channel.k8s.io";
/// The older exec/attach protocol (no resize channel, no exit status).
pub const CHANNEL: &str = "channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// exec/attach: the command's `metav1.Status` (v4), sent once it ended.
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;

/// How long a read may wait for the server before the test fails (a hung stream).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One WebSocket connection to a streaming URL.
pub struct Stream {
    ws: WebSocket<TcpStream>,
    /// The subprotocol the server chose.
    pub protocol: String,
    /// What came on each channel so far (ports stripped), by channel number.
    received: Vec<Vec<u8>>,
    /// Channels whose first message was seen (port forwarding strips a port from it).
    seen: Vec<bool>,
    port_forward: bool,
    closed: bool,
}

/// What an exec or attach stream gave once the server closed it.
#[derive(Debug)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error channel: `{"metadata":{},"status":"Success"}`, or a failure with the exit code.
    pub status: String,
}

impl Stream {
    /// Connects to an `Exec` or `Attach` URL (`http://…`) offering `protocols`, as kubectl does.
    pub fn exec(url: &str, protocols: &[&str]) -> Stream {
        Stream::connect(url, protocols, false)
    }

    /// Connects to a `PortForward` URL (the ports are those of the CRI request).
    pub fn port_forward(url: &str) -> Stream {
        Stream::connect(url, &[V4_CHANNEL], true)
    }

    fn connect(url: &str, protocols: &[&str], port_forward: bool) -> Stream {
        let ws_url = url
            .strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
            .unwrap_or_else(|| panic!("streaming URL {url:?} is not http://"));
        let host = ws_url["ws://".len()..]
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let tcp = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("read timeout on {host}: {e}"));
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .unwrap_or_else(|e| panic!("request for {ws_url}: {e}"));
        let offered = HeaderValue::from_str(&protocols.join(", "))
            .unwrap_or_else(|e| panic!("protocols {protocols:?}: {e}"));
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", offered);
        let (ws, response) = tungstenite::client(request, tcp)
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url}: {e}"));
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Stream {
            ws,
            protocol,
            received: vec![Vec::new(); 256],
            seen: vec![false; 256],
            port_forward,
            closed: false,
        }
    }

    /// Sends `data` on `channel`.
    pub fn send(&mut self, channel: u8, data: &[u8]) {
        let mut message = Vec::with_capacity(data.len() + 1);
        message.push(channel);
        message.extend_from_slice(data);
        self.ws
            .send(Message::binary(message))
            .unwrap_or_else(|e| panic!("send on channel {channel}: {e}"));
    }

    /// Sends a terminal size on the resize channel, as kubectl does when its terminal changes.
    pub fn resize(&mut self, width: u16, height: u16) {
        let size = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send(RESIZE, size.as_bytes());
    }

    /// Everything received on `channel` so far.
    pub fn received(&self, channel: u8) -> &[u8] {
        &self.received[usize::from(channel)]
    }

    /// Reads messages until `done` holds for the text received on `channel`; returns that
    /// text. Fails the test when the server closes first or stays silent for a minute.
    pub fn read_until(&mut self, channel: u8, done: impl Fn(&str) -> bool) -> String {
        loop {
            let text = String::from_utf8_lossy(self.received(channel)).into_owned();
            if done(&text) {
                return text;
            }
            assert!(
                self.read_one(),
                "the stream closed before channel {channel} had what was expected: {text:?} \
                 (error channel: {:?})",
                String::from_utf8_lossy(self.received(ERROR))
            );
        }
    }

    /// Reads until the server closes the connection (the command ended).
    pub fn finish(mut self) -> Finished {
        while self.read_one() {}
        Finished {
            stdout: self.received[usize::from(STDOUT)].clone(),
            stderr: self.received[usize::from(STDERR)].clone(),
            status: String::from_utf8_lossy(&self.received[usize::from(ERROR)]).into_owned(),
        }
    }

    /// Closes the connection from the client's side (kubectl's end of stdin in v4).
    pub fn close(mut self) {
        if let Err(e) = self.ws.close(None) {
            eprintln!("closing the stream: {e}");
            return;
        }
        // The close handshake completes when the server's close frame is read.
        while self.read_one() {}
    }

    /// Reads one message; false once the connection is closed.
    fn read_one(&mut self) -> bool {
        if self.closed {
            return false;
        }
        match self.ws.read() {
            Ok(Message::Binary(data)) => {
                if let Some((&channel, mut payload)) = data.split_first() {
                    let index = usize::from(channel);
                    if self.port_forward && !self.seen[index] && payload.len() >= 2 {
                        payload = &payload[2..];
                    }
                    self.seen[index] = true;
                    self.received[index].extend_from_slice(payload);
                }
                true
            }
            Ok(Message::Close(_)) => {
                self.closed = true;
                true
            }
            Ok(_) => true,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                self.closed = true;
                false
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                self.closed = true;
                false
            }
            Err(e) => panic!(
                "reading the stream: {e}; stdout so far: {:?}",
                String::from_utf8_lossy(self.received(STDOUT))
            ),
        }
    }
}
