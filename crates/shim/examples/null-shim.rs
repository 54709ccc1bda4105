//! The benchmark's floor: a containerd shim (task API v2) that runs nothing and answers every
//! call at once. `bench/shim.sh` times `ctr run --rm` with it to show what containerd and ctr
//! cost before any shim does work: the `start` and `delete` actions, the socket, the calls.
//!
//! Not a runtime: `create` records the id, `start` reports the shim's own pid, `wait` answers
//! exit status 0 as soon as the task was started.
//!
//! Its `start` action is the cheapest the protocol allows: it binds the socket itself and forks
//! the serving shim (no `exec`), then answers at once, without waiting for the serving shim to
//! come up (containerd's connection waits in the socket's backlog).

fn main() {
    #[cfg(unix)]
    floor::main();
    #[cfg(not(unix))]
    {
        eprintln!("null-shim: a Unix-only benchmark floor");
        std::process::exit(1);
    }
}

/// The shim itself: containerd's shim library serves Unix sockets here.
#[cfg(unix)]
mod floor {
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};

    use containerd_shim::api::{
        ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
        DeleteResponse, Empty, KillRequest, ShutdownRequest, StartRequest, StartResponse,
        StateRequest, StateResponse, WaitRequest, WaitResponse,
    };
    use containerd_shim::protos::api::Status;
    use containerd_shim::protos::create_task;
    use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
    use containerd_shim::protos::ttrpc::Server;
    use containerd_shim::publisher::RemotePublisher;
    use containerd_shim::util::write_address;
    use containerd_shim::{
        socket_address, Config, Error, ExitSignal, Flags, Shim, StartOpts, Task, TtrpcContext,
        TtrpcResult,
    };

    struct NullShim {
        exit: Arc<ExitSignal>,
        /// The serving shim's socket, removed on exit as real shims do (a socket left behind
        /// makes the next shim of the same id wait for it).
        socket: String,
    }

    #[derive(Clone, Default)]
    struct NullTask {
        /// Whether `start` was called; `wait` blocks until it was.
        started: Arc<(Mutex<bool>, Condvar)>,
        exit: Arc<ExitSignal>,
    }

    impl Shim for NullShim {
        type T = NullTask;

        fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
            NullShim {
                exit: Arc::new(ExitSignal::default()),
                socket: args.socket.clone(),
            }
        }

        fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
            let io = |what: &str, e: std::io::Error| Error::Other(format!("{what}: {e}"));
            let address = socket_address(&opts.address, &opts.namespace, &opts.id);
            let path = address
                .strip_prefix("unix://")
                .unwrap_or(&address)
                .to_string();
            if let Some(dir) = Path::new(&path).parent() {
                std::fs::create_dir_all(dir).map_err(|e| io("socket directory", e))?;
            }
            // A socket left by an earlier shim of the same id.
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|e| io("bind", e))?;
            // SAFETY: the start action has one thread (the shim library starts none before it),
            // so the child may run anything after fork.
            match unsafe { libc::fork() } {
                -1 => Err(io("fork", std::io::Error::last_os_error())),
                0 => serve(listener, &path, self.exit.clone()),
                _ => {
                    drop(listener);
                    write_address(&address)?;
                    Ok(address)
                }
            }
        }

        fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
            Ok(DeleteResponse::new())
        }

        fn wait(&mut self) {
            self.exit.wait();
            if let Some(path) = self.socket.strip_prefix("unix://") {
                let _ = std::fs::remove_file(path);
            }
        }

        fn create_task_service(&self, _publisher: RemotePublisher) -> NullTask {
            NullTask {
                exit: self.exit.clone(),
                ..NullTask::default()
            }
        }
    }

    impl NullTask {
        fn is_started(&self) -> bool {
            *self.started.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl Task for NullTask {
        fn create(
            &self,
            _: &TtrpcContext,
            _: CreateTaskRequest,
        ) -> TtrpcResult<CreateTaskResponse> {
            let mut response = CreateTaskResponse::new();
            response.pid = std::process::id();
            Ok(response)
        }

        fn start(&self, _: &TtrpcContext, _: StartRequest) -> TtrpcResult<StartResponse> {
            let (started, changed) = &*self.started;
            *started.lock().unwrap_or_else(|e| e.into_inner()) = true;
            changed.notify_all();
            let mut response = StartResponse::new();
            response.pid = std::process::id();
            Ok(response)
        }

        fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
            let mut response = StateResponse::new();
            response.id = req.id;
            response.pid = std::process::id();
            response.status = if self.is_started() {
                Status::STOPPED
            } else {
                Status::CREATED
            }
            .into();
            Ok(response)
        }

        fn wait(&self, _: &TtrpcContext, _: WaitRequest) -> TtrpcResult<WaitResponse> {
            let (started, changed) = &*self.started;
            let mut guard = started.lock().unwrap_or_else(|e| e.into_inner());
            while !*guard {
                guard = changed.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            let mut response = WaitResponse::new();
            response.exited_at = Some(Timestamp::now()).into();
            Ok(response)
        }

        fn kill(&self, _: &TtrpcContext, _: KillRequest) -> TtrpcResult<Empty> {
            Ok(Empty::new())
        }

        fn delete(&self, _: &TtrpcContext, _: DeleteRequest) -> TtrpcResult<DeleteResponse> {
            let mut response = DeleteResponse::new();
            response.pid = std::process::id();
            response.exited_at = Some(Timestamp::now()).into();
            Ok(response)
        }

        fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> TtrpcResult<ConnectResponse> {
            let mut response = ConnectResponse::new();
            response.shim_pid = std::process::id();
            response.task_pid = std::process::id();
            Ok(response)
        }

        fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> TtrpcResult<Empty> {
            self.exit.signal();
            Ok(Empty::new())
        }
    }

    /// The serving shim, in the start action's forked child: never returns.
    fn serve(listener: UnixListener, path: &str, exit: Arc<ExitSignal>) -> ! {
        // Off containerd's output pipe (it reads the start action's output to its end) and out of
        // its session.
        // SAFETY: setsid, open and dup2 on descriptors this process owns.
        unsafe {
            libc::setsid();
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        let task = NullTask {
            exit: exit.clone(),
            ..NullTask::default()
        };
        let served = Server::new()
            .add_listener(listener.into_raw_fd())
            .map(|server| server.register_service(create_task(Arc::new(task))))
            .and_then(|mut server| server.start().map(|()| server));
        let code = match served {
            Ok(_server) => {
                exit.wait();
                0
            }
            Err(_) => 1,
        };
        let _ = std::fs::remove_file(path);
        std::process::exit(code)
    }

    pub fn main() {
        containerd_shim::run::<NullShim>("io.containerd.null.v1", None);
    }
}
