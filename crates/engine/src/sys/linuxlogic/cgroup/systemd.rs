//! systemd's `slice:prefix:name` cgroup paths, read as runc's systemd driver reads them: the
//! slice names its place in the slice tree (`a-b.slice` is a child of `a.slice`), the unit
//! is the scope `<prefix>-<name>.scope` (or `name` itself when it is a slice).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The slice a unit goes in when the path names none.
const DEFAULT_SLICE: &str = "system.slice";
const SLICE: &str = ".slice";
const SCOPE: &str = ".scope";
/// systemd's longest unit name.
const MAX_UNIT_NAME: usize = 255;

/// A job's unit and where it sits in the slice tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The parent slice as the path gave it (`system.slice` when it gave none).
    pub slice: String,
    /// The unit's name: `<prefix>-<name>.scope`, or `name` when that is a slice.
    pub name: String,
}

/// Why a `slice:prefix:name` path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath(String);

impl fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a `linux.cgroupsPath` is in systemd's form rather than a cgroupfs path: cgroupfs
/// paths never hold a colon in practice, and runc's systemd driver splits on it.
pub fn is_systemd_path(path: &str) -> bool {
    path.contains(':')
}

impl Unit {
    /// Reads `slice:prefix:name`.
    pub fn parse(path: &str) -> Result<Unit, InvalidPath> {
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts.as_slice() else {
            return Err(InvalidPath(format!(
                "expected systemd's slice:prefix:name form with exactly three parts, found {}",
                parts.len()
            )));
        };
        let slice = if slice.is_empty() {
            DEFAULT_SLICE
        } else {
            slice
        };
        expand_slice(slice)?;
        if name.is_empty() {
            return Err(InvalidPath("the name part must not be empty".into()));
        }
        let unit = if name.ends_with(SLICE) {
            expand_slice(name)?;
            name.to_string()
        } else {
            format!("{prefix}-{name}{SCOPE}")
        };
        check_unit_name(&unit)?;
        Ok(Unit {
            slice: slice.to_string(),
            name: unit,
        })
    }

    /// The job's path below a hierarchy's root: the expanded slice, then the unit.
    pub fn relative_path(&self) -> String {
        // The slice was checked when the unit was read.
        let slice = expand_slice(&self.slice).unwrap_or_default();
        format!("{}/{}", slice.trim_end_matches('/'), self.name)
    }
}

/// The slice's directory path: `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, the root
/// slice `-.slice` → `/`.
pub fn expand_slice(slice: &str) -> Result<String, InvalidPath> {
    let invalid = |rule: &str| InvalidPath(format!("invalid slice name {slice:?}: {rule}"));
    let Some(stem) = slice.strip_suffix(SLICE) else {
        return Err(invalid("a slice's name ends in \".slice\""));
    };
    if slice.contains('/') {
        return Err(invalid(
            "a slice is named, not a path: no '/' (a-b.slice is already a child of a.slice)",
        ));
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err(invalid(
                "each '-' separates two non-empty names (no leading, trailing or double '-')",
            ));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(SLICE);
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// systemd's rule for unit names: ASCII letters, digits and `:-_.\@`, at most 255 bytes.
fn check_unit_name(unit: &str) -> Result<(), InvalidPath> {
    if unit.len() > MAX_UNIT_NAME {
        return Err(InvalidPath(format!(
            "the unit name {unit:?} is longer than systemd's {MAX_UNIT_NAME} characters"
        )));
    }
    if let Some(bad) = unit
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)))
    {
        return Err(InvalidPath(format!(
            "the unit name {unit:?} has {bad:?}; systemd allows only ASCII letters, digits and \":-_.\\@\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc's cases for ExpandSlice.
    #[test]
    fn slices_expand_to_their_ancestors_as_runc_expands_them() {
        for (slice, want) in [
            ("-.slice", "/"),
            ("system.slice", "/system.slice"),
            ("test.slice", "/test.slice"),
            ("test-a.slice", "/test.slice/test-a.slice"),
            ("test-a-b.slice", "/test.slice/test-a.slice/test-a-b.slice"),
            (
                "kubepods-besteffort-pod1234.slice",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice",
            ),
        ] {
            assert_eq!(expand_slice(slice).as_deref(), Ok(want), "{slice}");
        }
        for (slice, rule) in [
            ("test", "ends in \".slice\""),
            ("test.scope", "ends in \".slice\""),
            (".slice", "non-empty names"),
            ("test--a.slice", "non-empty names"),
            ("-test.slice", "non-empty names"),
            ("test-.slice", "non-empty names"),
            ("a.slice/b.slice", "no '/'"),
        ] {
            let err = expand_slice(slice).expect_err(slice).to_string();
            assert!(err.contains(rule), "{slice}: {err}");
            assert!(err.contains(slice), "the error names the slice: {err}");
        }
    }

    #[test]
    fn the_unit_is_a_scope_unless_the_name_is_a_slice() {
        let unit = Unit::parse("kubepods-besteffort-pod12.slice:cri-containerd:abc").unwrap();
        assert_eq!(unit.name, "cri-containerd-abc.scope");
        assert_eq!(
            unit.relative_path(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
        );
        let sub = Unit::parse("system.slice:ignored:test-sub.slice").unwrap();
        assert_eq!(sub.name, "test-sub.slice");
        assert_eq!(sub.relative_path(), "/system.slice/test-sub.slice");
        let root = Unit::parse("-.slice:p:n").unwrap();
        assert_eq!(root.relative_path(), "/p-n.scope");
    }

    #[test]
    fn an_empty_slice_means_the_system_slice() {
        let unit = Unit::parse(":runc:c1").unwrap();
        assert_eq!(unit.slice, "system.slice");
        assert_eq!(unit.relative_path(), "/system.slice/runc-c1.scope");
    }

    #[test]
    fn invalid_paths_are_refused_with_the_rule_they_break() {
        for (path, rule) in [
            ("system.slice:x", "exactly three parts"),
            ("a:b:c:d", "exactly three parts"),
            ("system.slice:p:", "name part must not be empty"),
            ("system:p:n", "ends in \".slice\""),
            ("a--b.slice:p:n", "non-empty names"),
            ("/a.slice:p:n", "no '/'"),
            ("system.slice:p:../../x", "has '/'"),
            ("system.slice:p q:n", "has ' '"),
            ("system.slice:p:bad--.slice", "non-empty names"),
        ] {
            let err = Unit::parse(path).expect_err(path).to_string();
            assert!(err.contains(rule), "{path}: {err}");
        }
        let long = format!("system.slice:p:{}", "n".repeat(300));
        let err = Unit::parse(&long).expect_err("long").to_string();
        assert!(err.contains("longer than systemd's 255"), "{err}");
    }
}
