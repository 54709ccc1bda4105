//! §3 stdio: `process.terminal` gets a pty whose controller end goes to `--console-socket`
//! (runc's protocol: one SCM_RIGHTS message), and the process has it as its controlling
//! terminal.

mod support;

use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;
use support::*;

/// Receives the pty controller the runtime sends over the console socket.
fn receive_pty(listener: &UnixListener) -> OwnedFd {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (stream, _) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "nothing connected to the console socket"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            assert_eq!(fds.len(), 1);
            // SAFETY: the descriptor was just received and is owned from here.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

/// Reads from the pty until `want` shows up (or the time is over); returns what was read.
fn read_until(pty: &OwnedFd, want: &str, timeout: Duration) -> String {
    let mut file = File::from(pty.try_clone().unwrap());
    let mut text = String::new();
    let deadline = Instant::now() + timeout;
    while !text.contains(want) && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: pty.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid descriptor.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    text
}

#[test]
fn a_terminal_process_gets_a_pty_through_the_console_socket() {
    let rt = Runtime::new();
    let id = unique_id("tty");
    let dir = open_dir();
    let socket = dir.path().join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let bundle = Bundle::new().set(&["process", "terminal"], json!(true)).sh(
        "tty; if [ -t 0 ] && [ -t 1 ]; then echo stdio-is-a-tty; fi; \
             ps -o tty= -p $$; stty size; echo done-tty; sleep 60",
    );
    let _c = rt.guard(&id);
    rt.cli(&[
        "create",
        "-b",
        &bundle.path().to_string_lossy(),
        "--console-socket",
        &socket.to_string_lossy(),
        &id,
    ])
    .ok("create --console-socket");
    let pty = receive_pty(&listener);
    rt.start(&id).ok("start");
    let text = read_until(&pty, "done-tty", Duration::from_secs(5));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("stdio-is-a-tty"), "{text}");
    assert!(
        !text.contains("?"),
        "the pty is the controlling terminal: {text}"
    );
}

#[test]
fn a_terminal_without_a_console_socket_is_refused_for_a_detached_process() {
    let rt = Runtime::new();
    let id = unique_id("notty");
    let bundle = Bundle::new().set(&["process", "terminal"], json!(true));
    let _c = rt.guard(&id);
    rt.create(&id, &bundle).fails_with("--console-socket");
    rt.assert_gone(&id);
}

#[test]
fn exec_tty_gets_its_own_pty_through_the_console_socket() {
    let rt = Runtime::new();
    let id = unique_id("exectty");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    let dir = open_dir();
    let socket = dir.path().join("exec.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    rt.cli(&[
        "exec",
        "-d",
        "-t",
        "--console-socket",
        &socket.to_string_lossy(),
        &id,
        "--",
        "/bin/sh",
        "-c",
        "tty; ps -o tty= -p $$; echo done-exec; sleep 30",
    ])
    .ok("exec -d -t --console-socket");
    let pty = receive_pty(&listener);
    let text = read_until(&pty, "done-exec", Duration::from_secs(5));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("pts/"), "{text}");
    assert!(
        !text.contains('?'),
        "the pty is the controlling terminal: {text}"
    );
}

#[test]
fn a_detached_exec_tty_without_a_console_socket_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("exectty2");
    let bundle = Bundle::new().args(&["/bin/sleep", "60"]);
    let (_c, _pid) = rt.started(&id, &bundle);
    rt.cli(&["exec", "-d", "-t", &id, "--", "/bin/true"])
        .fails_with("--console-socket");
}
