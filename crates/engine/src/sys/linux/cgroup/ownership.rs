//! Which of the job's directories are this container's: the mkdir that makes one is the
//! container's claim on it, noted at once in a list in its state directory, so that signals and
//! removal reach only what it made, never a directory of the same name another container made
//! first.

use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{dirs, write_file, CgroupRecord};
use crate::error::{Error, Result};

/// Makes the job's own directory, which must be new: the mkdir that succeeds is this
/// container's claim on the path, noted in `made` before anything else happens. Any missing
/// ancestor is made too (it may exist, or be made meanwhile by another container): one mkdir
/// in the usual case.
pub(super) fn make_dir(dir: &Path, is_cpuset: bool, made: &mut MadeList) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Error::io(
                "create cgroup",
                dir,
                std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "it already exists: another container uses it",
                ),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                make_ancestor(parent, is_cpuset)?;
            }
            fs::create_dir(dir).map_err(|e| Error::io("create cgroup", dir, e))?;
        }
        Err(e) => return Err(Error::io("create cgroup", dir, e)),
    }
    if let Err(e) = made.note(dir) {
        let _ = fs::remove_dir(dir);
        return Err(e);
    }
    inherit_cpuset(dir, is_cpuset)
}

/// The list of job directories a container made, open for appending while it makes them.
pub(super) struct MadeList<'a> {
    path: &'a Path,
    /// None for a record without a list (see [`CgroupRecord::made`]).
    file: Option<fs::File>,
    /// What was noted through this list.
    pub(super) dirs: Vec<PathBuf>,
}

impl MadeList<'_> {
    pub(super) fn open(path: &Path) -> Result<MadeList<'_>> {
        let file = if path.as_os_str().is_empty() {
            None
        } else {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io("open", path, e))?;
            Some(file)
        };
        Ok(MadeList {
            path,
            file,
            dirs: Vec::new(),
        })
    }

    /// Appends `dir` (one write of one line).
    fn note(&mut self, dir: &Path) -> Result<()> {
        self.dirs.push(dir.to_path_buf());
        let Some(mut file) = self.file.as_ref() else {
            return Ok(());
        };
        let mut line = dir.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        file.write_all(&line)
            .map_err(|e| Error::io("write", self.path, e))
    }
}

/// The directories the container made; None for a record without a list (all of them).
fn made_dirs(record: &CgroupRecord) -> Option<Vec<PathBuf>> {
    if let Some(now) = &record.made_now {
        return Some(now.clone());
    }
    if record.made.as_os_str().is_empty() {
        return None;
    }
    let text = fs::read(&record.made).unwrap_or_default();
    Some(
        text.split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| PathBuf::from(OsStr::from_bytes(line)))
            .collect(),
    )
}

fn is_made(made: &Option<Vec<PathBuf>>, dir: &Path) -> bool {
    made.as_ref()
        .is_none_or(|made| made.iter().any(|d| d == dir))
}

/// Which of the job's directories are this container's, read once for a teardown that both
/// asks [`Ownership::owns_job`] and calls [`destroy`].
pub struct Ownership {
    made: Option<Vec<PathBuf>>,
    /// Read back from the list on disk (not what this process made).
    read_back: bool,
}

impl Ownership {
    pub fn of(record: &CgroupRecord) -> Ownership {
        Ownership {
            made: made_dirs(record),
            read_back: record.made_now.is_none(),
        }
    }

    /// Whether every directory of the job is this container's: only then are its processes
    /// this container's to signal.
    pub fn owns_job(&self, record: &CgroupRecord) -> bool {
        dirs(record).into_iter().all(|dir| is_made(&self.made, dir))
    }
}

/// [`Ownership::owns_job`] with the list read for it.
pub fn owns_job(record: &CgroupRecord) -> bool {
    Ownership::of(record).owns_job(record)
}

/// Makes a directory above a job, and those above it, where missing (a v1 cpuset one with its
/// parent's CPUs and memory nodes); one that exists is left as it is: it is not the job's.
pub fn make_ancestor(dir: &Path, is_cpuset: bool) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => inherit_cpuset(dir, is_cpuset),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                make_ancestor(parent, is_cpuset)?;
            }
            make_ancestor(dir, is_cpuset)
        }
        Err(e) => Err(Error::io("create cgroup", dir, e)),
    }
}

/// A new v1 cpuset directory starts empty, and the kernel refuses tasks in it: give it its
/// parent's CPUs and memory nodes.
fn inherit_cpuset(dir: &Path, is_cpuset: bool) -> Result<()> {
    if let (true, Some(parent)) = (is_cpuset, dir.parent()) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = fs::read_to_string(parent.join(file))
                .map_err(|e| Error::io("read", parent.join(file), e))?;
            write_file(dir, file, value.trim())?;
        }
    }
    Ok(())
}

/// Removes the job's directories this container made; they must be empty of processes.
/// Missing ones are skipped. Once they are gone, so is the list that named them.
pub fn destroy(record: &CgroupRecord) -> Result<()> {
    destroy_with(record, &Ownership::of(record))
}

/// [`destroy`] with the list already read (`ownership`, of this record).
pub fn destroy_with(record: &CgroupRecord, ownership: &Ownership) -> Result<()> {
    let made = &ownership.made;
    // Read back after a crash: a directory the create made but had no time to note (killed
    // in its mkdir) is removed too while it is empty of processes, which a running job's
    // never is; nothing is killed for it.
    let after_a_crash = ownership.read_back && made.is_some();
    for dir in dirs(record) {
        if !is_made(made, dir) {
            if after_a_crash {
                let _ = fs::remove_dir(dir);
            }
            continue;
        }
        let mut tries = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                // Exiting processes leave the cgroup a moment after they are reaped.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(Error::io("remove cgroup", dir, e)),
            }
        }
    }
    if record.made.as_os_str().is_empty() {
        return Ok(());
    }
    match fs::remove_file(&record.made) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove", &record.made, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_the_directories_made_goes_with_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("memory/job");
        let mut record = CgroupRecord {
            v1: vec![("memory".into(), dir.clone())],
            made: tmp.path().join("made"),
            ..CgroupRecord::default()
        };
        let mut made = MadeList::open(&record.made).unwrap();
        make_dir(&dir, false, &mut made).unwrap();
        record.made_now = Some(made.dirs);
        let read_back = CgroupRecord {
            made_now: None,
            ..record.clone()
        };
        let ownership = Ownership::of(&read_back);
        assert!(ownership.owns_job(&read_back));
        destroy_with(&read_back, &ownership).unwrap();
        assert!(!dir.exists());
        assert!(
            !record.made.exists(),
            "nothing is left to name once the directories are gone"
        );
        destroy(&read_back).unwrap();
    }

    #[test]
    fn only_the_directories_a_container_made_are_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("memory/job");
        let theirs = tmp.path().join("pids/job");
        fs::create_dir_all(&theirs).unwrap();
        let mut record = CgroupRecord {
            v1: vec![
                ("memory".into(), mine.clone()),
                ("pids".into(), theirs.clone()),
            ],
            made: tmp.path().join("made"),
            ..CgroupRecord::default()
        };
        let mut made = MadeList::open(&record.made).unwrap();
        make_dir(&mine, false, &mut made).unwrap();
        let err = make_dir(&theirs, false, &mut made).unwrap_err();
        assert!(
            err.to_string().contains("another container uses it"),
            "{err}"
        );
        record.made_now = Some(made.dirs);
        assert!(!owns_job(&record), "half the job is another container's");
        destroy(&record).unwrap();
        assert!(!mine.exists(), "what it made is removed");
        assert!(theirs.exists(), "what it did not make is left alone");

        // Read back after a crash: the list on disk names what was noted; a directory made
        // but not noted yet goes only while empty (a file stands in for processes here).
        fs::create_dir(&mine).unwrap();
        fs::write(theirs.join("cgroup.procs"), "1").unwrap();
        let crashed = CgroupRecord {
            made_now: None,
            ..record.clone()
        };
        assert!(!owns_job(&crashed));
        destroy(&crashed).unwrap();
        assert!(!mine.exists(), "an empty job directory is removed");
        assert!(theirs.exists(), "a populated one is left alone");

        let legacy = CgroupRecord {
            made: PathBuf::new(),
            ..crashed
        };
        assert!(owns_job(&legacy), "a record without the list owns its job");
    }
}
