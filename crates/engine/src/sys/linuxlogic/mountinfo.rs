//! The kernel's mount table (`/proc/<pid>/mountinfo`, proc(5)) as typed entries. Each line is
//! one mount:
//!
//! ```text
//! 36 25 0:31 / /sys/fs/cgroup/cpu rw,nosuid shared:12 - cgroup cgroup rw,cpu
//! id parent major:minor root mount-point options [optional fields…] - type source super-options
//! ```
//!
//! The kernel writes a space, tab, newline or backslash in a path or source as an octal escape
//! (`\040`, `\011`, `\012`, `\134`); the entries hold the paths as they are.

use std::path::{Path, PathBuf};

/// One mount of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    pub id: u32,
    pub parent: u32,
    /// The filesystem's device, `(major, minor)`.
    pub device: (u32, u32),
    /// The directory of the filesystem that is mounted (`/` unless a bind mount of a subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid` …).
    pub options: Vec<&'a str>,
    /// Optional fields: propagation (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`).
    pub optional: Vec<&'a str>,
    /// The filesystem type (`cgroup2`, `overlay`, `fuse.sshfs` …).
    pub fs_type: &'a str,
    /// The filesystem's source (a device, or a name such as `overlay`).
    pub source: String,
    /// Per-superblock options (for a v1 cgroup mount, its controllers among them).
    pub super_options: Vec<&'a str>,
}

impl Mount<'_> {
    /// Whether the mount is in a shared peer group (propagates mounts to its peers).
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }
}

/// The mounts of a table; a line that does not read as a mount is skipped.
pub fn parse(text: &str) -> Vec<Mount<'_>> {
    text.lines().filter_map(parse_line).collect()
}

/// One line of the table, or None when it does not read as a mount.
pub fn parse_line(line: &str) -> Option<Mount<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let id = left.next()?.parse().ok()?;
    let parent = left.next()?.parse().ok()?;
    let (major, minor) = left.next()?.split_once(':')?;
    let device = (major.parse().ok()?, minor.parse().ok()?);
    let root = PathBuf::from(unescape(left.next()?));
    let mount_point = PathBuf::from(unescape(left.next()?));
    let options = left.next()?.split(',').collect();
    let optional = left.filter(|f| !f.is_empty()).collect();
    let mut right = right.split(' ');
    let fs_type = right.next().filter(|t| !t.is_empty())?;
    let source = unescape(right.next()?);
    let super_options = right
        .next()
        .map(|options| options.split(',').collect())
        .unwrap_or_default();
    Some(Mount {
        id,
        parent,
        device,
        root,
        mount_point,
        options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

/// The mount that holds `path` (absolute, symlinks resolved): the one with the longest mount
/// point above it, the later one of two at the same point (it is mounted over the other).
pub fn mount_holding<'m, 'a>(mounts: &'m [Mount<'a>], path: &Path) -> Option<&'m Mount<'a>> {
    let mut best: Option<&Mount<'a>> = None;
    for mount in mounts {
        if path.starts_with(&mount.mount_point)
            && best.is_none_or(|b| {
                mount.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len()
            })
        {
            best = Some(mount);
        }
    }
    best
}

/// A field with the kernel's octal escapes (`\ooo`) replaced by the bytes they stand for.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3');
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |n, d| n * 8 + (d - b'0')));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A path as the kernel writes it in the table (the inverse of [`unescape`]).
pub fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_its_fields() {
        let mounts = parse(
            "36 25 0:31 /sub /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev shared:12 master:3 - cgroup cgroup rw,cpu,cpuacct\n\
             98 36 253:1 / /var/lib/kubelet rw,relatime - ext4 /dev/vda1 rw",
        );
        assert_eq!(mounts.len(), 2);
        let cgroup = &mounts[0];
        assert_eq!((cgroup.id, cgroup.parent, cgroup.device), (36, 25, (0, 31)));
        assert_eq!(cgroup.root, Path::new("/sub"));
        assert_eq!(cgroup.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cgroup.options, ["rw", "nosuid", "nodev"]);
        assert_eq!(cgroup.optional, ["shared:12", "master:3"]);
        assert_eq!(cgroup.fs_type, "cgroup");
        assert_eq!(cgroup.source, "cgroup");
        assert_eq!(cgroup.super_options, ["rw", "cpu", "cpuacct"]);
        assert!(cgroup.is_shared());
        let disk = &mounts[1];
        assert_eq!(disk.device, (253, 1));
        assert!(disk.optional.is_empty());
        assert!(!disk.is_shared(), "no optional field");
        assert_eq!(disk.source, "/dev/vda1");
    }

    #[test]
    fn escaped_spaces_tabs_newlines_and_backslashes_are_read_back() {
        let mounts = parse(
            "40 25 0:40 / /mnt/with\\040space\\011tab\\012newline\\134backslash rw - tmpfs my\\040src rw",
        );
        assert_eq!(
            mounts[0].mount_point,
            Path::new("/mnt/with space\ttab\nnewline\\backslash")
        );
        assert_eq!(mounts[0].source, "my src");
        assert_eq!(unescape("\\"), "\\", "a lone backslash is kept");
        assert_eq!(unescape("a\\0"), "a\\0", "too short for an escape");
        assert_eq!(unescape("\\999"), "\\999", "not octal");
        for path in ["/plain", "/a b", "/t\tn\nb\\", "/ü space"] {
            assert_eq!(unescape(&escape(path)), path);
        }
    }

    #[test]
    fn lines_that_are_not_mounts_are_skipped() {
        for line in [
            "",
            " - ",
            "x - cgroup",
            "1 2 3 4 5 - cgroup",
            "1 2 0:3 / /a - cgroup",
            "- cgroup cgroup rw,memory",
            "1 2 0:3 / /a rw -  cgroup rw",
            "1 2 0:3 / /a rw cgroup cgroup rw",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
        let line = "1 2 0:3 / /a rw - cgroup cgroup";
        assert_eq!(
            parse_line(line).map(|m| m.super_options),
            Some(vec![]),
            "a line without super options (the kernel always writes them) has none"
        );
    }

    #[test]
    fn the_mount_holding_a_path_is_the_deepest_and_the_last_mounted() {
        let mounts = parse(
            "1 0 0:1 / / rw - ext4 /dev/vda1 rw\n\
             2 1 0:2 / /var rw shared:1 - ext4 /dev/vda2 rw\n\
             3 2 0:3 / /var/lib rw - tmpfs tmpfs rw\n\
             4 2 0:4 / /var/lib rw shared:7 - tmpfs tmpfs rw\n\
             5 1 0:5 / /variable rw - tmpfs tmpfs rw",
        );
        let holder = |p: &str| mount_holding(&mounts, Path::new(p)).map(|m| m.id);
        assert_eq!(
            holder("/var/lib/x"),
            Some(4),
            "the later of two at one point"
        );
        assert_eq!(holder("/var/log"), Some(2));
        assert_eq!(holder("/variable/x"), Some(5));
        assert_eq!(
            holder("/varx"),
            Some(1),
            "a prefix of the name is not a parent"
        );
        assert_eq!(holder("/etc"), Some(1));
        assert_eq!(mount_holding(&[], Path::new("/etc")), None);
    }
}
