//! Persisted container state under the root directory (§6): one directory per container with an
//! atomically replaced `state.json` and a lock file that serialises operations on it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::ContainerPlan;
use crate::sys::{Current, Platform, ProcessInfo};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// The runtime's state (process environments: secrets) is root's alone, as runc keeps it. The
/// root itself can be passed through (not listed): the symlink layout's volumes are below it.
const ROOT_MODE: u32 = 0o711;
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The lifecycle step a container last completed, as recorded (the live status also looks at
/// its processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `create` is making it; a crash here leaves a record `delete` can clean up.
    Creating,
    /// Init is ready and held until `start`.
    Created,
    /// `start` released init.
    Running,
}

/// One container's state file. Generic over the platform's record so that the lifecycle can be
/// driven by any [`Platform`]; the file's form is the same for all of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State<R = <Current as Platform>::Record> {
    pub id: String,
    pub bundle: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub phase: Phase,
    // The init process is kept once, in the platform's record (`Platform::init` reads it).
    // Files written before also have it here, at the top level, with the same value (both were
    // set by the same save); it is not read back.
    /// A copy of the init written at the top level on every save and never read: a build from
    /// before the record was the init's one home reads it there (a downgrade, or an older shim
    /// still serving its pods through an upgrade that finds a state file rewritten by the
    /// newer CLI), and would otherwise take a live container for a stopped one.
    #[serde(
        rename = "init",
        default,
        skip_deserializing,
        skip_serializing_if = "Option::is_none"
    )]
    pub written_init: Option<ProcessInfo>,
    pub owner: String,
    pub plan: ContainerPlan,
    pub record: R,
}

/// An exclusive lock on one container's directory, released on drop. Which operations take it,
/// and why the others need not, is written in [`crate::container`] (Locking).
pub struct Lock {
    _file: File,
}

/// The root directory (`--root`) holding one directory per container.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
    lock_timeout: Duration,
}

impl StateRoot {
    /// The root at `root`; operations wait for another's lock for the default time
    /// (`PlanOptions::lock_timeout` sets another).
    pub fn new(root: impl Into<PathBuf>) -> StateRoot {
        StateRoot {
            root: root.into(),
            lock_timeout: crate::plan::settings::DEFAULT_LOCK_TIMEOUT,
        }
    }

    pub fn with_lock_timeout(self, lock_timeout: Duration) -> StateRoot {
        StateRoot {
            lock_timeout,
            ..self
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Makes the container's directory and its lock file, and returns that lock held; fails if
    /// the directory exists.
    pub fn create_dir(&self, id: &str) -> Result<(PathBuf, Lock)> {
        let dir = self.dir(id);
        let mut made = private_dir().create(&dir);
        if matches!(&made, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            // The root exists but for the first container: make it only then.
            dir_builder(ROOT_MODE)
                .recursive(true)
                .create(&self.root)
                .map_err(|e| Error::io("create", &self.root, e))?;
            made = private_dir().create(&dir);
        }
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io("create", &dir, e)),
        }
        let path = dir.join(LOCK_FILE);
        let file = match private_file().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                return Err(Error::io("create", &path, e));
            }
        };
        // Nobody else can have opened it yet: this never waits.
        file.lock().map_err(|e| Error::io("lock", &path, e))?;
        Ok((dir, Lock { _file: file }))
    }

    /// Locks a container's directory. `NotFound` when it is gone, also when a delete removed it
    /// while this call waited for the lock.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let path = self.dir(id).join(LOCK_FILE);
        // Never created here: a lock taken while a delete removes the directory would put a
        // new file in it and make that removal fail.
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
                _ => Error::io("open", &path, e),
            })?;
        let file = lock_waiting(file, &path, id, self.lock_timeout)?;
        if !still_at(&file, &path) {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(Lock { _file: file })
    }

    pub fn load<R: DeserializeOwned>(&self, id: &str) -> Result<State<R>> {
        let path = self.dir(id).join(STATE_FILE);
        let text = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
            _ => Error::io("read", &path, e),
        })?;
        serde_json::from_slice(&text).map_err(|e| Error::CorruptState {
            id: id.to_string(),
            path,
            reason: e.to_string(),
        })
    }

    /// Replaces the state file atomically (write to a temporary file, then rename). The first
    /// save of a container (phase `Creating`, in the directory `create_dir` just made) has no
    /// state file to exchange with: it renames at once.
    pub fn save<R: Serialize>(&self, state: &State<R>) -> Result<()> {
        let dir = self.dir(&state.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_vec(state)
            .map_err(|e| Error::container(&state.id, format!("encode state: {e}")))?;
        let mut file = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(&text)
            .map_err(|e| Error::io("write", &tmp, e))?;
        let placed = if state.phase == Phase::Creating {
            fs::rename(&tmp, &path)
        } else {
            replace(&tmp, &path)
        };
        placed.map_err(|e| Error::io("rename", &path, e))
    }

    pub fn remove_dir(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        remove_tree(&dir, &[STATE_FILE, LOCK_FILE], &[]).map_err(|e| Error::io("remove", &dir, e))
    }

    /// Ids of every container directory under the root.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &self.root, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Makes directories with `mode` (Unix; Windows has no mode bits).
fn dir_builder(mode: u32) -> fs::DirBuilder {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    #[cfg(not(unix))]
    let _ = (&mut builder, mode);
    builder
}

fn private_dir() -> fs::DirBuilder {
    dir_builder(DIR_MODE)
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    #[cfg(not(unix))]
    let _ = (&mut options, FILE_MODE);
    options
}

/// Takes the exclusive lock on `file`, waiting at most the lock timeout: a lock that another
/// process holds forever (a hung call, or anyone who could open the file) must not hang every
/// later operation. The error names the holder when the kernel says who it is. The wait is the
/// kernel's, woken as the holder lets go: a thread of its own blocks on the lock and hands the
/// file back. After a timeout that thread is left waiting; the lock it may take later goes with
/// its file as it ends.
fn lock_waiting(file: File, path: &Path, id: &str, timeout: Duration) -> Result<File> {
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        Err(fs::TryLockError::WouldBlock) => {}
    }
    let held_too_long = |metadata: &fs::Metadata| {
        let holder = lock_holder(metadata)
            .map(|pid| format!("process {pid} holds it"))
            .unwrap_or_else(|| "its holder is not listed in /proc/locks".into());
        Error::container(
            id,
            format!(
                "lock '{}' is still held after {}s ({holder}); retry once that operation has ended",
                path.display(),
                timeout.as_secs()
            ),
        )
    };
    let metadata = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if timeout.is_zero() {
        return Err(held_too_long(&metadata));
    }
    let (locked_tx, locked) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lock-wait".into())
        .spawn(move || {
            let _ = locked_tx.send(file.lock().map(|()| file));
        })
        .map_err(|e| Error::io("wait for the lock of", path, e))?;
    match locked.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(e)) => Err(Error::io("lock", path, e)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(held_too_long(&metadata)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::io(
            "lock",
            path,
            std::io::Error::other("the thread waiting for it stopped"),
        )),
    }
}

/// The pid holding a lock on the file `md` describes, from `/proc/locks` (Linux).
#[cfg(target_os = "linux")]
fn lock_holder(md: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let wanted = (libc::major(md.dev()), libc::minor(md.dev()), md.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    lock_holder_in(&locks, wanted)
}

#[cfg(not(target_os = "linux"))]
fn lock_holder(_: &fs::Metadata) -> Option<u32> {
    None
}

/// The holder of a lock on (major, minor, inode) in `/proc/locks` text, whose lines read
/// `1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF` (device numbers in hex); blocked waiters
/// (`->` lines) and OFD locks (pid -1) name no holder.
#[cfg(target_os = "linux")]
fn lock_holder_in(locks: &str, (major, minor, ino): (u32, u32, u64)) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let (pid, device) = (fields.get(4)?, fields.get(5)?);
        let mut parts = device.split(':');
        let same = u32::from_str_radix(parts.next()?, 16).ok()? == major
            && u32::from_str_radix(parts.next()?, 16).ok()? == minor
            && parts.next()?.parse::<u64>().ok()? == ino;
        same.then(|| pid.parse::<u32>().ok()).flatten()
    })
}

/// Removes `dir` (no error when it is gone), expecting it to hold only `files` and the empty
/// directories `dirs` (deepest first): a few unlink and rmdir calls instead of a walk that opens
/// and reads every directory. Anything else in it is removed by the walk.
pub(crate) fn remove_tree(dir: &Path, files: &[&str], dirs: &[&str]) -> std::io::Result<()> {
    for file in files {
        let _ = fs::remove_file(dir.join(file));
    }
    for sub in dirs {
        let _ = fs::remove_dir(dir.join(sub));
    }
    let removed = fs::remove_dir(dir).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => fs::remove_dir_all(dir),
    });
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// True while `file` is the file at `path` (a directory removed and made again holds another).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(now)) => (held.dev(), held.ino()) == (now.dev(), now.ino()),
        _ => false,
    }
}

/// The same file as the one held (volume serial number and file index, Windows' inode), and not
/// being deleted: a file deleted while open keeps its name until its last handle closes.
#[cfg(windows)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        FileStandardInfo, GetFileInformationByHandle, GetFileInformationByHandleEx,
        BY_HANDLE_FILE_INFORMATION, FILE_STANDARD_INFO,
    };
    fn identity(file: &File) -> Option<(u32, u32, u32)> {
        let mut info = BY_HANDLE_FILE_INFORMATION::default();
        // SAFETY: a valid file handle and out-parameter.
        let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) };
        (ok != 0).then_some((
            info.dwVolumeSerialNumber,
            info.nFileIndexHigh,
            info.nFileIndexLow,
        ))
    }
    let mut standard = FILE_STANDARD_INFO::default();
    // SAFETY: a valid file handle and a buffer of the class's size.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileStandardInfo,
            &mut standard as *mut FILE_STANDARD_INFO as *mut _,
            std::mem::size_of::<FILE_STANDARD_INFO>() as u32,
        )
    };
    if ok == 0 || standard.DeletePending {
        return false;
    }
    let now = File::open(path).ok();
    matches!((identity(file), now.as_ref().and_then(identity)), (Some(held), Some(now)) if held == now)
}

/// Puts `tmp` in place of `path` in one step. On Linux an existing file is exchanged with the
/// new one and the old one then removed: renaming over an existing file makes ext4 flush the
/// new file's data first (a state root on disk paid ~0.1 ms per save for it).
#[cfg(target_os = "linux")]
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(from), Ok(to)) = (
        std::ffi::CString::new(tmp.as_os_str().as_bytes()),
        std::ffi::CString::new(path.as_os_str().as_bytes()),
    ) else {
        return fs::rename(tmp, path);
    };
    // SAFETY: renameat2 with two valid C strings (a raw system call: the static build's C
    // library has no wrapper).
    let exchanged = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    } == 0;
    if exchanged {
        // `tmp` holds the old state now.
        return fs::remove_file(tmp);
    }
    // No file to exchange with yet, or a file system without exchange.
    fs::rename(tmp, path)
}

#[cfg(not(target_os = "linux"))]
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    fs::rename(tmp, path)
}

/// `now` as RFC 3339 with nanoseconds, UTC.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_910_400, 0), "2026-11-29T00:00:00.000000000Z");
    }

    #[test]
    fn a_tree_is_removed_whether_it_holds_what_was_expected_or_more() {
        let tmp = tempfile::tempdir().unwrap();
        let expected = tmp.path().join("expected");
        fs::create_dir_all(expected.join("work/work")).unwrap();
        fs::create_dir_all(expected.join("upper")).unwrap();
        fs::write(expected.join("state.json"), "{}").unwrap();
        remove_tree(&expected, &["state.json"], &["work/work", "work", "upper"]).unwrap();
        assert!(!expected.exists());

        let more = tmp.path().join("more");
        fs::create_dir_all(more.join("upper/etc")).unwrap();
        fs::write(more.join("upper/etc/written"), "by the workload").unwrap();
        fs::write(more.join("unexpected"), "").unwrap();
        remove_tree(&more, &["state.json"], &["work/work", "work", "upper"]).unwrap();
        assert!(!more.exists());

        remove_tree(&tmp.path().join("gone"), &["state.json"], &["upper"]).unwrap();
        // A file where the tree should be is an error, not silently kept.
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(remove_tree(&file, &[], &[]).is_err());
    }

    #[test]
    fn create_dir_refuses_an_existing_container() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path());
        drop(root.create_dir("a").unwrap());
        assert!(matches!(root.create_dir("a"), Err(Error::Exists(_))));
        assert!(root.ids().unwrap().is_empty(), "no state file yet");
    }

    #[test]
    fn replace_puts_the_new_file_in_place_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let (new, path) = (tmp.path().join(".new"), tmp.path().join("state.json"));
        fs::write(&new, "first").unwrap();
        replace(&new, &path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first");
        assert!(!new.exists());
        fs::write(&new, "second").unwrap();
        replace(&new, &path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        assert!(!new.exists(), "the old state is removed, not left behind");
    }

    #[test]
    fn create_dir_makes_a_missing_root_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("not/yet"));
        let (dir, _lock) = root.create_dir("a").unwrap();
        assert!(dir.join(LOCK_FILE).is_file());
    }

    #[test]
    fn lock_never_creates_a_file_in_a_directory_being_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path());
        drop(root.create_dir("a").unwrap());
        // A delete has removed the lock file and is about to remove the directory.
        fs::remove_file(root.dir("a").join(LOCK_FILE)).unwrap();
        assert!(matches!(root.lock("a"), Err(Error::NotFound(_))));
        fs::remove_dir(root.dir("a")).expect("the directory is still empty");
    }

    #[test]
    fn a_lock_file_made_again_is_not_the_one_held() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOCK_FILE);
        let held = File::create(&path).unwrap();
        assert!(still_at(&held, &path));
        // Moved away rather than removed: Windows keeps the name of a file deleted while open
        // until its last handle closes (Wine even lets it be opened again).
        fs::rename(&path, tmp.path().join("old-lock")).unwrap();
        assert!(!still_at(&held, &path));
        File::create(&path).unwrap();
        assert!(!still_at(&held, &path), "a new container's lock file");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lock_held_elsewhere_times_out_naming_its_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path()).with_lock_timeout(Duration::ZERO);
        let (_, held) = root.create_dir("a").unwrap();
        let message = match root.lock("a") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a second lock was granted while the first is held"),
        };
        assert!(
            message.contains(&format!("process {} holds it", std::process::id())),
            "{message}"
        );
        drop(held);
        root.lock("a").expect("free once its holder let go");
    }

    #[test]
    fn a_lock_is_taken_once_its_holder_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path()).with_lock_timeout(Duration::from_secs(30));
        let (_, held) = root.create_dir("a").unwrap();
        let (released_tx, released) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
            released_tx.send(()).unwrap();
        });
        root.lock("a").expect("the lock, once its holder let go");
        released
            .try_recv()
            .expect("granted only after the holder let go");
        holder.join().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_holder_of_a_lock_is_read_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 99 00:1a:1234 0 EOF\n\
                     2: OFDLCK ADVISORY  READ  -1 08:01:77 0 EOF\n";
        assert_eq!(lock_holder_in(locks, (0, 0x1a, 1234)), Some(4242));
        assert_eq!(lock_holder_in(locks, (0, 0x1a, 1235)), None);
        assert_eq!(lock_holder_in(locks, (8, 1, 77)), None, "OFD: no pid");
    }

    #[cfg(unix)]
    #[test]
    fn state_is_readable_by_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let (dir, _lock) = root.create_dir("a").unwrap();
        root.save(&State {
            id: "a".into(),
            bundle: PathBuf::from("/b"),
            created: rfc3339_now(),
            phase: Phase::Creating,
            written_init: None,
            owner: String::new(),
            plan: crate::plan::plan(
                "a",
                Path::new("/b"),
                &crate::spec::example_spec(vec!["/bin/true".into()]),
                &crate::plan::PlanOptions::new(tmp.path()),
                None,
            )
            .unwrap(),
            record: <Current as Platform>::Record::default(),
        })
        .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.path()), 0o711);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    }

    /// A state file as the CLI wrote it before the engine became generic over its platform
    /// (a held container on a hybrid cgroup host): later versions load it as it is.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_state_file_of_an_earlier_version_still_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path());
        fs::create_dir(root.dir("fixture-a")).unwrap();
        fs::write(
            root.dir("fixture-a").join(STATE_FILE),
            include_str!("../tests/data/state-linux-before-one-init.json"),
        )
        .unwrap();
        let state: State = root.load("fixture-a").expect("an earlier state file loads");
        assert_eq!(state.id, "fixture-a");
        assert_eq!(state.phase, Phase::Created);
        assert_eq!(state.created, "2026-12-07T11:20:31.953992788Z");
        assert_eq!(state.plan.grace_period, Duration::from_secs(5));
        let init = crate::sys::ProcessInfo {
            pid: 27281,
            start_time: 67220,
        };
        assert_eq!(state.record.init, Some(init));
        assert_eq!(crate::sys::Current.init(&state.record), Some(init));
        assert_eq!(
            state.record.exec_fifo,
            Path::new("/run/hostprocess/fixture-a/exec.fifo")
        );
        // Written again, it reads as it was written: the form is unchanged...
        let mut before: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/data/state-linux-before-one-init.json"
        ))
        .unwrap();
        let after = serde_json::to_value(&state).unwrap();
        // Except the top-level copy of the init, which is not read back (the engine's saves
        // write it again from the record: `written_init`).
        let top_level_init = before.as_object_mut().unwrap().remove("init");
        assert_eq!(top_level_init, Some(serde_json::to_value(init).unwrap()));
        assert_eq!(after, before);
    }

    #[test]
    fn lock_of_a_missing_container_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            StateRoot::new(tmp.path()).lock("nope"),
            Err(Error::NotFound(_))
        ));
    }
}
