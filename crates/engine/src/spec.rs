//! The part of an OCI runtime `config.json` that applies to a HostProcess container (§1).
//!
//! Unknown fields are accepted and ignored: isolation settings (namespaces, seccomp, labels,
//! masked paths, hostname) do not apply to a host process and are only reported in a debug log.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub oci_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Root>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<Linux>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Windows>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    #[serde(default)]
    pub destination: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<ConsoleSize>,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<LinuxResources>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<LinuxMemory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<LinuxCpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<LinuxPids>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_io: Option<LinuxBlockIo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxMemory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mems: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxPids {
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxBlockIo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Windows {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_folders: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WindowsResources>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<WindowsMemory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<WindowsCpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<WindowsStorage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsMemory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsStorage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bps: Option<u64>,
}

impl Spec {
    /// Reads `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Spec> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|e| Error::io("read", path.clone(), e))?;
        Self::parse(&text)
            .and_then(|spec| check_oci_version(&spec.oci_version).map(|()| spec))
            .map_err(|reason| Error::InvalidSpec { path, reason })
    }

    /// Parses a `config.json` document; the error names the line and column at fault.
    pub fn parse(text: &[u8]) -> std::result::Result<Spec, String> {
        serde_json::from_slice(text).map_err(|e| e.to_string())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The network namespace `linux.namespaces` asks for: `None` when it lists none (the
    /// host's), `Some(None)` for a new one, `Some(Some(path))` for one to join.
    pub fn network_namespace(&self) -> Option<Option<&str>> {
        let namespaces = self.linux.as_ref().map(|l| l.namespaces.as_slice())?;
        namespaces.iter().find_map(|ns| {
            (ns.get("type").and_then(|t| t.as_str()) == Some("network")).then(|| {
                ns.get("path")
                    .and_then(|p| p.as_str())
                    .filter(|p| !p.is_empty())
            })
        })
    }

    /// Settings that a HostProcess container accepts but cannot apply, for the debug log.
    pub fn ignored_isolation_settings(&self) -> Vec<&'static str> {
        let mut ignored = Vec::new();
        if self.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
            ignored.push("hostname");
        }
        if self
            .linux
            .as_ref()
            .is_some_and(|l| !l.namespaces.is_empty())
        {
            ignored.push("linux.namespaces");
        }
        ignored
    }
}

/// A spec must say which release of the OCI runtime spec it follows, and it must be one this
/// runtime reads: 1.0.x to 1.2.x, with any pre-release or build suffix (`1.0.2-dev`,
/// `1.1.0-rc.1`, `1.2.0+dev`), as containerd and `runc spec` write them. A spec of another
/// major or a newer minor may mean something this runtime would silently get wrong.
pub fn check_oci_version(version: &str) -> std::result::Result<(), String> {
    let supported = "this runtime reads 1.0.0 to 1.2.x";
    if version.is_empty() {
        return Err(format!(
            "ociVersion is missing: say which OCI runtime spec release the spec follows ({supported})"
        ));
    }
    let release = version.split(['-', '+']).next().unwrap_or_default();
    let numbers: Vec<Option<u64>> = release.split('.').map(|n| n.parse().ok()).collect();
    match numbers.as_slice() {
        [Some(1), Some(0..=2), Some(_)] => Ok(()),
        [Some(_), Some(_), Some(_)] => Err(format!(
            "ociVersion {version:?} is not supported: {supported}"
        )),
        _ => Err(format!(
            "ociVersion {version:?} is not a version (major.minor.patch): {supported}"
        )),
    }
}

/// Helpers for the Windows layout of a `config.json` writer (`hostprocess spec`).
pub fn example_spec(args: Vec<String>) -> Spec {
    Spec {
        oci_version: "1.0.2".into(),
        root: Some(Root {
            path: "rootfs".into(),
            readonly: false,
        }),
        process: Some(Process {
            args,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            user: User {
                username: Some("NT AUTHORITY\\SYSTEM".into()),
                ..User::default()
            },
            ..Process::default()
        }),
        annotations: BTreeMap::from([(
            crate::annotations::HOSTPROCESS_CONTAINER.to_string(),
            "true".to_string(),
        )]),
        ..Spec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oci_versions_containerd_and_runc_write_are_read() {
        for version in [
            "1.0.0",
            "1.0.2",
            "1.0.2-dev",
            "1.0.0-rc5",
            "1.1.0",
            "1.1.0-rc.1",
            "1.2.0",
            "1.2.1",
            "1.2.0+dev",
        ] {
            assert_eq!(check_oci_version(version), Ok(()), "{version}");
        }
    }

    #[test]
    fn a_missing_or_unknown_oci_version_is_refused_clearly() {
        assert!(check_oci_version("")
            .unwrap_err()
            .contains("ociVersion is missing"));
        for version in ["2.0.0", "1.3.0", "0.5.0"] {
            assert!(
                check_oci_version(version)
                    .unwrap_err()
                    .contains("is not supported: this runtime reads 1.0.0 to 1.2.x"),
                "{version}"
            );
        }
        for version in ["1.0", "one", "1.x.0", "1.0.0.0"] {
            assert!(
                check_oci_version(version)
                    .unwrap_err()
                    .contains("is not a version"),
                "{version}"
            );
        }
    }
}
