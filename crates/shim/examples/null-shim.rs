//! The benchmark's floor: a containerd shim (task API v2) that runs nothing and answers every
//! call at once. `bench/shim.sh` times `ctr run --rm` with it to show what containerd and ctr
//! cost before any shim does work: the `start` and `delete` actions, the socket, the calls.
//!
//! Not a runtime: `create` records the id, `start` reports the shim's own pid, `wait` answers
//! exit status 0 as soon as the task was started — a CRI pod sandbox's task (its spec's
//! `io.kubernetes.cri.container-type` annotation is `sandbox`) once it was also killed, as a
//! pause process would, so that `bench/cri.sh` can run pods on it. `shutdown` ends the shim
//! once no task is left (a pod's containers share its sandbox's shim).
//!
//! Its `start` action is the cheapest the protocol allows: it binds the socket itself and forks
//! the serving shim (no `exec`), then answers at once, without waiting for the serving shim to
//! come up (containerd's connection waits in the socket's backlog).
//!
//! Installed under a name containing `spawn` (`containerd-shim-nullspawn-v1`), it is the second
//! floor: a container's task also runs its process — the spec's `process.args` and `env`, on the
//! host, its output to the task's FIFOs — and `wait` answers when that process exits, with its
//! status: what running the process costs whatever else a shim does (no job, volume, view,
//! state or events).

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
    use std::collections::HashMap;
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
        /// The tasks created and not yet deleted, by id; `wait` blocks until its task is done.
        tasks: Arc<(Mutex<HashMap<String, TaskState>>, Condvar)>,
        exit: Arc<ExitSignal>,
        /// The second floor: a container's task runs its process.
        spawn: bool,
    }

    /// Whether this binary is the second floor (named `...spawn...`).
    fn spawns() -> bool {
        std::env::args_os()
            .next()
            .and_then(|arg0| {
                Path::new(&arg0)
                    .file_name()
                    .map(|name| name.to_string_lossy().contains("spawn"))
            })
            .unwrap_or(false)
    }

    #[derive(Default)]
    struct TaskState {
        started: bool,
        /// The second floor: the process to run (argv, environment), and its exit status once
        /// it has exited.
        process: Option<Process>,
        exited: Option<u32>,
        /// A pod sandbox's task: runs until killed.
        sandbox: bool,
        killed: bool,
        /// The write ends of the task's stdout and stderr FIFOs (where it has them), closed
        /// once it is done: the reader (containerd's CRI copies them to the container's log)
        /// sees their end as it would a process's.
        io: Vec<Option<std::fs::File>>,
    }

    /// A process to run: its arguments and environment.
    type Process = (Vec<String>, Vec<(String, String)>);

    impl TaskState {
        fn done(&self) -> bool {
            if self.process.is_some() {
                return self.exited.is_some();
            }
            self.started && (!self.sandbox || self.killed)
        }
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
                spawn: spawns(),
                ..NullTask::default()
            }
        }
    }

    impl NullTask {
        /// Changes the task `id` (if it exists) and wakes every `wait`.
        fn update(&self, id: &str, change: impl FnOnce(&mut TaskState)) {
            let (tasks, changed) = &*self.tasks;
            if let Some(task) = tasks.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
                change(task);
                if task.done() {
                    task.io.clear();
                }
            }
            changed.notify_all();
        }
    }

    /// The write end of a task's output FIFO, when it has one and its reader is there (as a
    /// process's output it is not waited for).
    fn open_fifo(path: &str) -> Option<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.strip_prefix("fifo://").unwrap_or(path);
        if path.is_empty() {
            return None;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ok()
    }

    /// The spec in `bundle` (null when it cannot be read).
    fn spec(bundle: &str) -> serde_json::Value {
        std::fs::read(Path::new(bundle).join("config.json"))
            .ok()
            .and_then(|spec| serde_json::from_slice(&spec).ok())
            .unwrap_or_default()
    }

    /// Whether `spec` is a CRI pod sandbox's.
    fn is_sandbox(spec: &serde_json::Value) -> bool {
        spec["annotations"]["io.kubernetes.cri.container-type"].as_str() == Some("sandbox")
    }

    /// The spec's process: its arguments and environment.
    fn process(spec: &serde_json::Value) -> Process {
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let env = strings(&spec["process"]["env"])
            .into_iter()
            .filter_map(|pair| {
                pair.split_once('=')
                    .map(|(name, value)| (name.to_string(), value.to_string()))
            })
            .collect();
        (strings(&spec["process"]["args"]), env)
    }

    impl Task for NullTask {
        fn create(
            &self,
            _: &TtrpcContext,
            req: CreateTaskRequest,
        ) -> TtrpcResult<CreateTaskResponse> {
            let spec = spec(&req.bundle);
            let sandbox = is_sandbox(&spec);
            let task = TaskState {
                sandbox,
                process: (self.spawn && !sandbox).then(|| process(&spec)),
                io: [&req.stdout, &req.stderr]
                    .into_iter()
                    .map(|path| open_fifo(path))
                    .collect(),
                ..TaskState::default()
            };
            let (tasks, _) = &*self.tasks;
            tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(req.id, task);
            let mut response = CreateTaskResponse::new();
            response.pid = std::process::id();
            Ok(response)
        }

        fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
            let mut pid = std::process::id();
            let mut spawned = None;
            self.update(&req.id, |task| {
                task.started = true;
                let Some((args, env)) = &task.process else {
                    return;
                };
                let mut command = std::process::Command::new(args.first().map_or("", |a| a));
                command
                    .args(args.iter().skip(1))
                    .env_clear()
                    .envs(env.iter().cloned())
                    .stdin(std::process::Stdio::null());
                let output = |n: usize| {
                    task.io[n]
                        .as_ref()
                        .and_then(|file| file.try_clone().ok())
                        .map_or_else(std::process::Stdio::null, std::process::Stdio::from)
                };
                command.stdout(output(0)).stderr(output(1));
                match command.spawn() {
                    Ok(child) => {
                        pid = child.id();
                        spawned = Some(child);
                    }
                    Err(_) => task.exited = Some(127),
                }
            });
            if let Some(mut child) = spawned {
                let (tasks, id) = (self.clone(), req.id.clone());
                std::thread::spawn(move || {
                    use std::os::unix::process::ExitStatusExt;
                    let status = child.wait().map_or(255, |status| {
                        status
                            .code()
                            .or_else(|| status.signal().map(|signal| 128 + signal))
                            .unwrap_or(255)
                    });
                    tasks.update(&id, |task| task.exited = Some(status as u32));
                });
            }
            let mut response = StartResponse::new();
            response.pid = pid;
            Ok(response)
        }

        fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
            let (tasks, _) = &*self.tasks;
            let status = match tasks.lock().unwrap_or_else(|e| e.into_inner()).get(&req.id) {
                Some(task) if task.done() => Status::STOPPED,
                Some(task) if task.started => Status::RUNNING,
                Some(_) => Status::CREATED,
                None => Status::STOPPED,
            };
            let mut response = StateResponse::new();
            response.id = req.id;
            response.pid = std::process::id();
            response.status = status.into();
            Ok(response)
        }

        fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
            let (tasks, changed) = &*self.tasks;
            let mut guard = tasks.lock().unwrap_or_else(|e| e.into_inner());
            while guard.get(&req.id).is_some_and(|task| !task.done()) {
                guard = changed.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            let status = guard.get(&req.id).and_then(|task| task.exited);
            drop(guard);
            let mut response = WaitResponse::new();
            response.exit_status = status.unwrap_or(0);
            response.exited_at = Some(Timestamp::now()).into();
            Ok(response)
        }

        fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
            self.update(&req.id, |task| task.killed = true);
            Ok(Empty::new())
        }

        fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
            let (tasks, changed) = &*self.tasks;
            tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.id);
            changed.notify_all();
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
            let (tasks, _) = &*self.tasks;
            if tasks.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                self.exit.signal();
            }
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
            spawn: spawns(),
            ..NullTask::default()
        };
        let served = Server::new()
            .add_listener(listener.into_raw_fd())
            .map(|server| server.register_service(create_task(Arc::new(task))))
            .and_then(|mut server| server.start().map(|()| server));
        let code = match served {
            Ok(server) => {
                exit.wait();
                // As the shim library does: the last answers (a `kill` that ended a sandbox's
                // `wait`) go out before the process exits.
                server.shutdown();
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
