//! Kernel and VM features some hosts lack. A test that needs one probes for it first and,
//! when it is missing, says by name what it skipped: never a silent pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Says, past the test harness's output capture, that a test checked nothing and why: a
/// feature the kernel or the VM lacks is never a silent pass.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// `Err` naming the active swap devices when there are any: a memory limit alone (no swap
/// limit, as in the spec) then lets a hog swap instead of being OOM-killed.
pub fn no_active_swap() -> Result<(), String> {
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    let devices: Vec<&str> = swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if devices.is_empty() {
        return Ok(());
    }
    Err(format!(
        "swap is active ({}): a memory limit without a swap limit lets a hog swap instead of \
         being OOM-killed",
        devices.join(", ")
    ))
}

/// Whether the kernel accounts block I/O to a cgroup: a cgroup of the probe's own (v1 `blkio`,
/// or the v2 tree with its `io` controller) gets a shell that writes 8 MiB with direct I/O
/// into `dir`; the answer is what the cgroup's counters say afterwards. `Err` says what was
/// found when they stayed at zero (some VMs' disks are counted by no cgroup at all).
pub fn block_io_accounting(dir: &Path) -> Result<(), String> {
    let v1 = Path::new("/sys/fs/cgroup/blkio");
    let (parent, file) = if v1.is_dir() {
        (
            v1.to_path_buf(),
            "blkio.throttle.io_service_bytes_recursive",
        )
    } else if fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"))
    {
        (PathBuf::from("/sys/fs/cgroup"), "io.stat")
    } else {
        return Err("no blkio hierarchy and no v2 io controller on this host".into());
    };
    struct Probe(PathBuf);
    impl Drop for Probe {
        fn drop(&mut self) {
            // The shell has exited: its cgroup empties a moment after it is reaped.
            for _ in 0..500 {
                if fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let probe = Probe(parent.join(format!("hpt-io-probe-{}", std::process::id())));
    fs::create_dir(&probe.0).map_err(|e| format!("mkdir {}: {e}", probe.0.display()))?;
    let data = dir.join(format!("io-probe-{}", std::process::id()));
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {procs} && dd if=/dev/zero of={data} bs=1M count=8 oflag=direct 2>&1; \
             status=$?; rm -f {data}; exit $status",
            procs = probe.0.join("cgroup.procs").display(),
            data = data.display()
        ))
        .output()
        .map_err(|e| format!("run the probe shell: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the probe's direct write failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let path = probe.0.join(file);
    let counters =
        fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let written: u64 = counters
        .lines()
        .flat_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            // v1: "<major:minor> Write <bytes>"; v2: "<major:minor> rbytes=… wbytes=<bytes> …".
            let v1 = (fields.len() == 3 && fields[1] == "Write").then(|| fields[2]);
            let v2 = fields.iter().find_map(|f| f.strip_prefix("wbytes="));
            v1.into_iter()
                .chain(v2)
                .filter_map(|v| v.parse::<u64>().ok())
        })
        .sum();
    if written >= 8 << 20 {
        return Ok(());
    }
    Err(format!(
        "8 MiB written with O_DIRECT to {} by a shell in a cgroup of the probe's own, and its \
         {file} counts {written} bytes written: this kernel accounts no block I/O to cgroups here",
        dir.display()
    ))
}

/// Does this host remove a file deleted while it is open at once (Unix, and Windows 10 on
/// NTFS with POSIX semantics)? Wine 8 keeps it until it is closed, so a state directory whose
/// lock is held cannot be removed there: the test named `test` says it skipped and gets false.
pub fn removes_a_file_deleted_while_open(test: &str) -> bool {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "testkit-open-delete-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let Ok(open) = fs::File::create(&path) else {
        skipped(
            test,
            &format!("cannot make the probe file {}", path.display()),
        );
        return false;
    };
    let removed = fs::remove_file(&path).is_ok() && !path.exists();
    drop(open);
    let _ = fs::remove_file(&path);
    if !removed {
        skipped(
            test,
            "this host keeps a file deleted while open until it is closed (Wine)",
        );
    }
    removed
}
