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
//!
//! Installed under a name containing `work` (`containerd-shim-nullwork-v1`), it is the third
//! floor: the second, plus the work any runtime does for a container whatever its design —
//! containerd's rootfs mounts mounted at the bundle's `rootfs` (as runc's shim does) and
//! unmounted at delete, the process started in a cgroup of its own in each cgroup hierarchy a
//! job uses (removed at delete), and the four task events containerd's own shims publish
//! (`TaskCreate`, `TaskStart`, `TaskExit`, `TaskDelete`). What a shim spends above it is its
//! own design's: state kept across crashes, a private view and volume, the held init, checks.

fn main() {
    #[cfg(target_os = "linux")]
    floor::main();
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("null-shim: a Linux-only benchmark floor");
        std::process::exit(1);
    }
}

/// The shim itself: containerd's shim library serves Unix sockets here; the third floor's work
/// is Linux's (mounts, cgroups, clone3).
#[cfg(target_os = "linux")]
mod floor {
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::os::fd::IntoRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Arc, Condvar, Mutex};

    use containerd_shim::api::{
        ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
        DeleteResponse, Empty, KillRequest, ShutdownRequest, StartRequest, StartResponse,
        StateRequest, StateResponse, WaitRequest, WaitResponse,
    };
    use containerd_shim::protos::api::{ForwardRequest, Status};
    use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskStart};
    use containerd_shim::protos::protobuf::well_known_types::any::Any;
    use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
    use containerd_shim::protos::protobuf::Message;
    use containerd_shim::protos::shim::event::Envelope;
    use containerd_shim::protos::ttrpc::{context, Client, Server};
    use containerd_shim::protos::{create_task, EventsClient};
    use containerd_shim::publisher::RemotePublisher;
    use containerd_shim::util::write_address;
    use hostprocess_engine::sys::linux::cgroup::is_unified_only;
    use hostprocess_engine::sys::linuxlogic::cgroup::layout::{CGROUP_ROOT, V1_CONTROLLERS};

    use containerd_shim::{
        socket_address, Config, Error, ExitSignal, Flags, Shim, StartOpts, Task, TtrpcContext,
        TtrpcResult,
    };

    struct NullShim {
        exit: Arc<ExitSignal>,
        namespace: String,
        /// The serving shim's socket, removed on exit as real shims do (a socket left behind
        /// makes the next shim of the same id wait for it).
        socket: String,
    }

    #[derive(Clone, Default)]
    struct NullTask {
        /// The tasks created and not yet deleted, by id; `wait` blocks until its task is done.
        tasks: Arc<(Mutex<HashMap<String, TaskState>>, Condvar)>,
        exit: Arc<ExitSignal>,
        floor: Floor,
        /// The third floor's task events to containerd.
        events: Option<Publisher>,
    }

    /// Which floor this binary is.
    #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
    enum Floor {
        /// Answers every call at once.
        #[default]
        Null,
        /// Also runs a container's process (named `...spawn...`).
        Spawn,
        /// Also does the work any runtime does (named `...work...`).
        Work,
    }

    /// This binary's floor, from its name.
    fn floor() -> Floor {
        let name = std::env::args_os()
            .next()
            .and_then(|arg0| {
                Path::new(&arg0)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        if name.contains("work") {
            Floor::Work
        } else if name.contains("spawn") {
            Floor::Spawn
        } else {
            Floor::Null
        }
    }

    #[derive(Default)]
    struct TaskState {
        started: bool,
        /// The second floor: the process to run (argv, environment), and its exit status once
        /// it has exited.
        process: Option<Process>,
        exited: Option<u32>,
        /// The process's pid once started (floors 2 and 3): `kill` signals it.
        pid: Option<u32>,
        /// A pod sandbox's task: runs until killed.
        sandbox: bool,
        killed: bool,
        /// The write ends of the task's stdout and stderr FIFOs (where it has them), closed
        /// once it is done: the reader (containerd's CRI copies them to the container's log)
        /// sees their end as it would a process's.
        io: Vec<Option<std::fs::File>>,
        /// The third floor's rootfs and cgroups, undone at delete.
        work: Option<Work>,
    }

    /// A process to run: its arguments and environment.
    type Process = (Vec<String>, Vec<(String, String)>);

    /// A process the floor started: by the standard library (floor 2) or by `Work::spawn`.
    enum Child {
        Std(std::process::Child),
        Pid(u32),
    }

    impl Child {
        fn pid(&self) -> u32 {
            match self {
                Child::Std(child) => child.id(),
                Child::Pid(pid) => *pid,
            }
        }

        /// Waits for the exit: its status, or 128 + the signal that ended it.
        fn wait(self) -> u32 {
            let status = match self {
                Child::Std(mut child) => {
                    use std::os::unix::process::ExitStatusExt;
                    return child.wait().map_or(255, |status| {
                        status
                            .code()
                            .or_else(|| status.signal().map(|signal| 128 + signal))
                            .unwrap_or(255) as u32
                    });
                }
                Child::Pid(pid) => {
                    let mut status = 0;
                    // SAFETY: waits for this shim's own child.
                    if unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } < 0 {
                        return 255;
                    }
                    status
                }
            };
            if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status) as u32
            } else {
                libc::WEXITSTATUS(status) as u32
            }
        }
    }

    /// The third floor's work for a container: its rootfs, mounted, and its cgroups.
    struct Work {
        rootfs: Option<PathBuf>,
        /// One per v1 hierarchy, each joined by the child's thread.
        v1: Vec<PathBuf>,
        /// The cgroup2 tree's, joined at the clone.
        v2: Option<PathBuf>,
    }

    /// clone3(2)'s flag that starts the child in a cgroup2 directory (Linux 5.7; the libc
    /// crate names it for glibc targets only).
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

    /// The cgroup hierarchies a job uses, at their conventional mount points: the v1
    /// controllers every job is counted by (the engine's, where no limit asks for more), and
    /// the cgroup2 tree (the whole of `/sys/fs/cgroup` on a cgroup2-only host).
    fn hierarchies() -> (Vec<PathBuf>, Option<PathBuf>) {
        let root = Path::new(CGROUP_ROOT);
        if is_unified_only() {
            return (Vec::new(), Some(root.to_path_buf()));
        }
        let v1 = V1_CONTROLLERS
            .iter()
            .map(|name| root.join(name))
            .filter(|dir| dir.is_dir())
            .collect();
        (v1, Some(root.join("unified")).filter(|dir| dir.is_dir()))
    }

    impl Work {
        /// Mounts `mounts` at `bundle/rootfs` and makes the container's cgroups (at the spec's
        /// `cgroupsPath` when it is a cgroupfs path, else `nullwork/ID`); undoes what it did
        /// when a step fails.
        fn new(
            id: &str,
            bundle: &str,
            mounts: &[containerd_shim::protos::api::Mount],
            cgroups_path: Option<&str>,
        ) -> Result<Work, String> {
            let relative = match cgroups_path {
                Some(path) if path.starts_with('/') => PathBuf::from(&path[1..]),
                _ => Path::new("nullwork").join(id),
            };
            let mut work = Work {
                rootfs: None,
                v1: Vec::new(),
                v2: None,
            };
            if !mounts.is_empty() {
                let rootfs = Path::new(bundle).join("rootfs");
                for mount in mounts {
                    mount_one(mount, &rootfs)?;
                }
                work.rootfs = Some(rootfs);
            }
            let (v1, v2) = hierarchies();
            let all = v1
                .into_iter()
                .map(|h| (h, false))
                .chain(v2.map(|h| (h, true)));
            for (hierarchy, is_v2) in all {
                let cgroup = hierarchy.join(&relative);
                if let Err(e) = std::fs::create_dir_all(&cgroup) {
                    work.undo();
                    return Err(format!("mkdir {}: {e}", cgroup.display()));
                }
                match is_v2 {
                    true => work.v2 = Some(cgroup),
                    false => work.v1.push(cgroup),
                }
            }
            Ok(work)
        }

        /// Starts `args` in the container's cgroups, the cheapest way the kernel allows (the
        /// engine's): into the cgroup2 tree at the clone (CLONE_INTO_CGROUP), into each v1
        /// hierarchy by the child writing `0` into its `tasks` file (moving one thread skips
        /// the lock a whole-process move takes, which waits for an RCU grace period). Output
        /// to `output` (stdout, stderr), or /dev/null. Returns the pid.
        fn spawn(
            &self,
            (args, env): &Process,
            output: [Option<std::fs::File>; 2],
        ) -> std::io::Result<u32> {
            let invalid = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
            let program = args.first().ok_or(std::io::ErrorKind::InvalidInput)?;
            let path = match program.contains('/') {
                true => PathBuf::from(program),
                false => ["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                    .iter()
                    .map(|dir| Path::new(dir).join(program))
                    .find(|path| path.exists())
                    .ok_or(std::io::ErrorKind::NotFound)?,
            };
            let path = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
            let argv: Vec<CString> = args
                .iter()
                .map(|a| CString::new(a.as_str()))
                .collect::<Result<_, _>>()
                .map_err(invalid)?;
            let envp: Vec<CString> = env
                .iter()
                .map(|(k, v)| CString::new(format!("{k}={v}")))
                .collect::<Result<_, _>>()
                .map_err(invalid)?;
            let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
                let mut p: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
                p.push(std::ptr::null());
                p
            };
            let (argv_p, envp_p) = (pointers(&argv), pointers(&envp));
            let tasks: Vec<CString> = self
                .v1
                .iter()
                .filter_map(|cgroup| CString::new(cgroup.join("tasks").as_os_str().as_bytes()).ok())
                .collect();
            let v2 = match &self.v2 {
                Some(cgroup) => Some(std::fs::File::open(cgroup)?),
                None => None,
            };
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            let [out, err] = output;
            let fd = |file: &Option<std::fs::File>| {
                use std::os::fd::AsRawFd;
                file.as_ref().map_or(null.as_raw_fd(), |f| f.as_raw_fd())
            };
            let stdio = {
                use std::os::fd::AsRawFd;
                [null.as_raw_fd(), fd(&out), fd(&err)]
            };
            // SAFETY: a plain C struct of integers, all zero is its empty value.
            let mut clone: libc::clone_args = unsafe { std::mem::zeroed() };
            clone.exit_signal = libc::SIGCHLD as u64;
            if let Some(v2) = &v2 {
                use std::os::fd::AsRawFd;
                clone.flags = CLONE_INTO_CGROUP;
                clone.cgroup = v2.as_raw_fd() as u64;
            }
            // SAFETY: a fork: the child makes only system calls on memory prepared above,
            // then execs or exits.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &clone as *const libc::clone_args,
                    std::mem::size_of::<libc::clone_args>(),
                )
            };
            if pid == 0 {
                // SAFETY: the child, as above.
                unsafe {
                    for file in &tasks {
                        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            libc::_exit(126);
                        }
                        libc::close(fd);
                    }
                    // Through descriptors above 2 first, so none is overwritten before use (an
                    // array: no allocation after a fork of a threaded process).
                    let mut high = stdio;
                    for fd in &mut high {
                        *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                    }
                    for (target, &fd) in high.iter().enumerate() {
                        libc::dup2(fd, target as libc::c_int);
                    }
                    let mut none: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut none);
                    libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                    libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
                    libc::_exit(127);
                }
            }
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(pid as u32)
        }

        /// Removes the cgroups (their processes have exited) and unmounts the rootfs.
        fn undo(&mut self) {
            for cgroup in self.v1.drain(..).chain(self.v2.take()) {
                let _ = std::fs::remove_dir(cgroup);
            }
            if let Some(rootfs) = self.rootfs.take() {
                if let Ok(target) = CString::new(rootfs.as_os_str().as_bytes()) {
                    // SAFETY: a C string that outlives the call.
                    unsafe { libc::umount2(target.as_ptr(), 0) };
                }
            }
        }
    }

    /// One of containerd's rootfs mounts at `target`, as runc's shim makes it (options that
    /// are mount flags become flags, the rest the filesystem's data). Not the shim library's
    /// `mount_rootfs`: it waits for a helper process through the library's reaper, which this
    /// shim does not run.
    fn mount_one(mount: &containerd_shim::protos::api::Mount, target: &Path) -> Result<(), String> {
        let mut flags = 0;
        let mut data = Vec::new();
        for option in &mount.options {
            match option.as_str() {
                "ro" => flags |= libc::MS_RDONLY,
                "bind" => flags |= libc::MS_BIND,
                "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
                other => data.push(other),
            }
        }
        let c = |text: &[u8]| CString::new(text).map_err(|e| e.to_string());
        let (source, target) = (
            c(mount.source.as_bytes())?,
            c(target.as_os_str().as_bytes())?,
        );
        let (fstype, data) = (c(mount.type_.as_bytes())?, c(data.join(",").as_bytes())?);
        // SAFETY: C strings that outlive the call.
        let mounted = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("mount the rootfs ({}): {e}", mount.type_));
        }
        Ok(())
    }

    /// Task events to containerd, in order, from a thread of their own (a call never waits
    /// for containerd), each named by its type without protobuf's reflection tables.
    #[derive(Clone)]
    struct Publisher(Sender<(&'static str, &'static str, Vec<u8>)>);

    impl Publisher {
        /// A connection to containerd's ttrpc address (`TTRPC_ADDRESS`, set for every shim).
        fn connect(namespace: String) -> Option<Publisher> {
            let address = std::env::var("TTRPC_ADDRESS").ok()?;
            let fd = containerd_shim::util::connect(&address).ok()?;
            let client = EventsClient::new(Client::new(fd).ok()?);
            let (tx, rx) = channel::<(&'static str, &'static str, Vec<u8>)>();
            std::thread::spawn(move || {
                for (topic, name, value) in rx {
                    let mut event = Any::new();
                    event.type_url = format!("containerd.events.{name}");
                    event.value = value;
                    let mut envelope = Envelope::new();
                    envelope.timestamp = Some(Timestamp::now()).into();
                    envelope.namespace = namespace.clone();
                    envelope.topic = topic.to_string();
                    envelope.event = Some(event).into();
                    let mut request = ForwardRequest::new();
                    request.envelope = Some(envelope).into();
                    let _ = client.forward(context::with_timeout(5_000_000_000), &request);
                }
            });
            Some(Publisher(tx))
        }

        fn publish<M: Message>(&self, topic: &'static str, name: &'static str, event: &M) {
            if let Ok(value) = event.write_to_bytes() {
                let _ = self.0.send((topic, name, value));
            }
        }
    }

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
                namespace: args.namespace.clone(),
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
                0 => serve(listener, &path, opts.namespace, self.exit.clone()),
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
            NullTask::new(self.exit.clone(), self.namespace.clone())
        }
    }

    impl NullTask {
        fn new(exit: Arc<ExitSignal>, namespace: String) -> NullTask {
            let floor = floor();
            NullTask {
                exit,
                floor,
                events: (floor == Floor::Work)
                    .then(|| Publisher::connect(namespace))
                    .flatten(),
                ..NullTask::default()
            }
        }

        fn publish<M: Message>(&self, topic: &'static str, name: &'static str, event: &M) {
            if let Some(events) = &self.events {
                events.publish(topic, name, event);
            }
        }

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
            let work = match self.floor == Floor::Work && !sandbox {
                true => Some(
                    Work::new(
                        &req.id,
                        &req.bundle,
                        &req.rootfs,
                        spec["linux"]["cgroupsPath"].as_str(),
                    )
                    .map_err(containerd_shim::protos::ttrpc::Error::Others)?,
                ),
                false => None,
            };
            let mut event = TaskCreate::new();
            event.container_id = req.id.clone();
            event.bundle = req.bundle.clone();
            event.pid = std::process::id();
            let task = TaskState {
                sandbox,
                process: (self.floor >= Floor::Spawn && !sandbox).then(|| process(&spec)),
                work,
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
            self.publish("/tasks/create", "TaskCreate", &event);
            let mut response = CreateTaskResponse::new();
            response.pid = std::process::id();
            Ok(response)
        }

        fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
            let mut pid = std::process::id();
            let mut spawned = None;
            self.update(&req.id, |task| {
                task.started = true;
                let Some(process) = &task.process else {
                    return;
                };
                let output = |n: usize| task.io[n].as_ref().and_then(|f| f.try_clone().ok());
                let started = match &task.work {
                    Some(work) => work.spawn(process, [output(0), output(1)]).map(Child::Pid),
                    None => {
                        let (args, env) = process;
                        let stdio = |file: Option<std::fs::File>| {
                            file.map_or_else(std::process::Stdio::null, std::process::Stdio::from)
                        };
                        std::process::Command::new(args.first().map_or("", |a| a))
                            .args(args.iter().skip(1))
                            .env_clear()
                            .envs(env.iter().cloned())
                            .stdin(std::process::Stdio::null())
                            .stdout(stdio(output(0)))
                            .stderr(stdio(output(1)))
                            .spawn()
                            .map(Child::Std)
                    }
                };
                match started {
                    Ok(child) => {
                        pid = child.pid();
                        task.pid = Some(pid);
                        spawned = Some(child);
                    }
                    Err(_) => task.exited = Some(127),
                }
            });
            let mut event = TaskStart::new();
            event.container_id = req.id.clone();
            event.pid = pid;
            self.publish("/tasks/start", "TaskStart", &event);
            if let Some(child) = spawned {
                let (tasks, id) = (self.clone(), req.id.clone());
                std::thread::spawn(move || {
                    // Waits without reaping: the pid stays this child's until its exit is
                    // recorded under the lock `kill` takes, so `kill` never signals a pid the
                    // kernel has given to another process.
                    // SAFETY: waitid on this shim's own child, into a zeroed siginfo.
                    unsafe {
                        let mut info: libc::siginfo_t = std::mem::zeroed();
                        libc::waitid(
                            libc::P_PID,
                            pid as libc::id_t,
                            &mut info,
                            libc::WEXITED | libc::WNOWAIT,
                        );
                    }
                    let mut child = Some(child);
                    let mut status = 255;
                    tasks.update(&id, |task| {
                        status = child.take().map_or(255, Child::wait);
                        task.exited = Some(status);
                    });
                    // A task deleted meanwhile: reaped all the same.
                    if let Some(child) = child {
                        status = child.wait();
                    }
                    let mut event = TaskExit::new();
                    event.container_id = id.clone();
                    event.id = id.clone();
                    event.pid = pid;
                    event.exit_status = status;
                    event.exited_at = Some(Timestamp::now()).into();
                    tasks.publish("/tasks/exit", "TaskExit", &event);
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
            // A sandbox's task ends at its first kill, as a pause process would: its exit is
            // published as a runtime publishes the pause process's.
            let mut sandbox_ended = false;
            self.update(&req.id, |task| {
                sandbox_ended = task.sandbox && task.started && !task.killed;
                task.killed = true;
                if let (Some(pid), None) = (task.pid, task.exited) {
                    // SAFETY: a signal to this shim's own child, not yet waited for.
                    unsafe { libc::kill(pid as libc::pid_t, req.signal as libc::c_int) };
                }
            });
            if sandbox_ended {
                let mut event = TaskExit::new();
                event.container_id = req.id.clone();
                event.id = req.id.clone();
                event.pid = std::process::id();
                event.exit_status = 128 + req.signal;
                event.exited_at = Some(Timestamp::now()).into();
                self.publish("/tasks/exit", "TaskExit", &event);
            }
            Ok(Empty::new())
        }

        fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
            let (tasks, changed) = &*self.tasks;
            let removed = tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.id);
            changed.notify_all();
            let status = removed.as_ref().and_then(|task| task.exited).unwrap_or(0);
            if let Some(mut work) = removed.and_then(|task| task.work) {
                work.undo();
            }
            let mut response = DeleteResponse::new();
            response.pid = std::process::id();
            response.exit_status = status;
            response.exited_at = Some(Timestamp::now()).into();
            let mut event = TaskDelete::new();
            event.container_id = req.id.clone();
            event.pid = response.pid;
            event.exit_status = status;
            event.exited_at = response.exited_at.clone();
            self.publish("/tasks/delete", "TaskDelete", &event);
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
    fn serve(listener: UnixListener, path: &str, namespace: String, exit: Arc<ExitSignal>) -> ! {
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
        let task = NullTask::new(exit.clone(), namespace);
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
