//! `hostprocess node check`: one verdict per prerequisite of HostProcess containers on this
//! node, with the fix for anything not ok. Exit 1 when something fails; warnings pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use hostprocess_engine::plan::settings::{
    AccountSettings, EPHEMERAL_UIDS_VAR, LOCAL_SERVICE_VAR, NETWORK_SERVICE_VAR,
};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use serde::Serialize;

use super::node::{CheckArgs, CheckFormat, SHIM_BINARY};

/// The oldest kernel the engine supports (clone3 into a cgroup, cgroup.kill).
const MIN_KERNEL: (u32, u32) = (5, 14);
const RUNTIME_TYPE: &str = "io.containerd.hostprocess.v1";
/// One annotation of each family the shim reads; CRI must let each through.
const ANNOTATIONS: [&str; 4] = [
    "microsoft.com/hostprocess-container",
    "hostprocess.io/run-as-user",
    "run-as-user.hostprocess.io/agent",
    "io.microsoft.container.memory.sizeinmb",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn not_ok(
    check: &'static str,
    status: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        status,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub fn run(args: &CheckArgs) -> Result<u8> {
    let containerd = Containerd::find(&args.config);
    let mut findings = vec![kernel(), cgroups(), overlayfs(), run_on_tmpfs()];
    findings.extend(service_accounts(&containerd));
    findings.push(ephemeral_uids());
    findings.push(shim_on_path(&containerd));
    findings.extend(containerd_config(&containerd, &args.handler));
    match args.format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&findings)?),
        CheckFormat::Text => {
            for f in &findings {
                let status = match f.status {
                    Verdict::Ok => "ok",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "fail",
                };
                match &f.fix {
                    Some(fix) => println!("{status:<4} {}: {}; fix: {fix}", f.check, f.detail),
                    None => println!("{status:<4} {}: {}", f.check, f.detail),
                }
            }
        }
    }
    Ok(u8::from(findings.iter().any(|f| f.status == Verdict::Fail)))
}

fn kernel() -> Finding {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let (major, minor) = MIN_KERNEL;
    if version >= MIN_KERNEL {
        ok(
            "kernel",
            format!("{release} ({major}.{minor} or later needed)"),
        )
    } else {
        not_ok(
            "kernel",
            Verdict::Fail,
            format!("{release} is older than {major}.{minor}"),
            format!("run a kernel {major}.{minor} or later"),
        )
    }
}

fn fs_type(path: &str) -> Option<FsType> {
    statfs(path).ok().map(|s| s.filesystem_type())
}

fn cgroups() -> Finding {
    let mode = if fs_type("/sys/fs/cgroup") == Some(CGROUP2_SUPER_MAGIC) {
        "v2 (unified)"
    } else if fs_type("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC) {
        "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
    } else if Path::new("/sys/fs/cgroup/memory").is_dir() {
        "v1"
    } else {
        return not_ok(
            "cgroups",
            Verdict::Fail,
            "no cgroup hierarchy is mounted at /sys/fs/cgroup",
            "mount cgroup2 at /sys/fs/cgroup (or the v1 controllers under it)",
        );
    };
    let driver = if Path::new("/run/systemd/system").is_dir() {
        "systemd runs this host: the systemd cgroup driver is the usual choice"
    } else {
        "systemd does not run this host: cgroupfs driver"
    };
    ok("cgroups", format!("{mode}; {driver}"))
}

fn overlayfs() -> Finding {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        ok("overlayfs", "the kernel has overlay (container volumes)")
    } else {
        not_ok(
            "overlayfs",
            Verdict::Fail,
            "the kernel has no overlay filesystem (container volumes need it)",
            "modprobe overlay (and add it to /etc/modules)",
        )
    }
}

fn run_on_tmpfs() -> Finding {
    if fs_type("/run") == Some(TMPFS_MAGIC) {
        ok("/run", "tmpfs (state starts empty at boot)")
    } else {
        not_ok(
            "/run",
            Verdict::Warn,
            "/run is not a tmpfs: container state under /run/hostprocess survives a reboot and every start writes to disk",
            "mount a tmpfs on /run at boot",
        )
    }
}

/// The accounts `NT AUTHORITY\LOCAL SERVICE` and `NETWORK SERVICE` map to: the shim inherits
/// containerd's environment, so its settings count first, then this command's.
fn service_accounts(containerd: &Containerd) -> Vec<Finding> {
    let containerd_env = containerd.environment();
    // (account name, the Windows accounts that map to it, the settings that name it)
    let mut names: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for (env, windows) in [
        (LOCAL_SERVICE_VAR, "NT AUTHORITY\\LOCAL SERVICE"),
        (NETWORK_SERVICE_VAR, "NT AUTHORITY\\NETWORK SERVICE"),
    ] {
        let name = containerd_env
            .iter()
            .find(|(key, _)| key == env)
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var(env).ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "nobody".to_string());
        match names.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, accounts, envs)) => {
                accounts.push(windows);
                envs.push(env);
            }
            None => names.push((name, vec![windows], vec![env])),
        }
    }
    names
        .into_iter()
        .map(|(name, accounts, envs)| {
            let accounts = accounts.join(" and ");
            match nix::unistd::User::from_name(&name).ok().flatten() {
                Some(user) => ok(
                    "service account",
                    format!("{name} (uid {}) for {accounts}", user.uid),
                ),
                None => not_ok(
                    "service account",
                    Verdict::Fail,
                    format!("no account {name} (the account of {accounts})"),
                    format!(
                        "create it (useradd --system {name}) or name another account in {}",
                        envs.join(" / ")
                    ),
                ),
            }
        })
        .collect()
}

fn ephemeral_uids() -> Finding {
    let settings = AccountSettings::from_env();
    let (first, last, claims) = match settings.ephemeral_pool() {
        Ok(pool) => (pool.first, pool.last, &pool.claims_dir),
        Err(e) => {
            return not_ok(
                "ephemeral uids",
                Verdict::Fail,
                e.to_string(),
                format!("fix or unset {}", EPHEMERAL_UIDS_VAR),
            )
        }
    };
    let free = (first..=last)
        .filter(|uid| !claims.join(uid.to_string()).exists())
        .filter(|uid| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
                .ok()
                .flatten()
                .is_none()
        })
        .count();
    let total = (last - first) as usize + 1;
    if free > 0 {
        ok(
            "ephemeral uids",
            format!("{free} of {total} free in {first}-{last} (group accounts)"),
        )
    } else {
        not_ok(
            "ephemeral uids",
            Verdict::Fail,
            format!(
                "none of {first}-{last} is free (claims in {})",
                claims.display()
            ),
            format!(
                "delete stopped containers, or widen the range with {}",
                EPHEMERAL_UIDS_VAR
            ),
        )
    }
}

/// The running containerd that reads `config` (its pid), and the binary to ask about it.
pub struct Containerd {
    config: PathBuf,
    pid: Option<i32>,
}

impl Containerd {
    fn find(config: &Path) -> Containerd {
        Containerd {
            config: config.to_path_buf(),
            pid: containerd_pid(config),
        }
    }

    /// The containerd binary: the running one's, else the one on PATH.
    fn binary(&self) -> PathBuf {
        self.pid
            .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
            .unwrap_or_else(|| PathBuf::from("containerd"))
    }

    /// The running containerd's environment (empty when none runs).
    fn environment(&self) -> Vec<(String, String)> {
        self.pid.map(environment_of).unwrap_or_default()
    }

    /// `ctr` of the same release.
    fn ctr(&self) -> PathBuf {
        let binary = self.binary();
        match binary.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("ctr"),
            _ => PathBuf::from("ctr"),
        }
    }
}

/// The pid of a running containerd started with `--config CONFIG` (or with no `--config`
/// when `config` is containerd's default).
fn containerd_pid(config: &Path) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_containerd = args
                .first()
                .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "containerd"));
            if !is_containerd {
                return false;
            }
            let given = args.iter().enumerate().find_map(|(i, a)| {
                if a == "--config" || a == "-c" {
                    args.get(i + 1).cloned()
                } else {
                    a.strip_prefix("--config=").map(str::to_string)
                }
            });
            match given {
                Some(given) => Path::new(&given) == config,
                None => config == Path::new("/etc/containerd/config.toml"),
            }
        })
}

/// The environment of a process (empty when it cannot be read).
fn environment_of(pid: i32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|var| {
            let var = String::from_utf8_lossy(var);
            let (key, value) = var.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// The directories of the `PATH` of the running containerd that reads `config` (empty when
/// none runs).
pub fn containerd_path_of(config: &Path) -> Vec<PathBuf> {
    let Some(pid) = containerd_pid(config) else {
        return Vec::new();
    };
    environment_of(pid)
        .into_iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, path)| path.split(':').map(PathBuf::from).collect())
        .unwrap_or_default()
}

fn shim_on_path(containerd: &Containerd) -> Finding {
    let (dirs, whose) = if containerd.pid.is_some() {
        (containerd_path_of(&containerd.config), "containerd's")
    } else {
        let path = std::env::var("PATH").unwrap_or_default();
        (path.split(':').map(PathBuf::from).collect(), "this shell's")
    };
    match dirs
        .iter()
        .map(|d| d.join(SHIM_BINARY))
        .find(|p| p.is_file())
    {
        Some(found) if containerd.pid.is_some() => {
            ok("shim", format!("{} on containerd's PATH", found.display()))
        }
        Some(found) => not_ok(
            "shim",
            Verdict::Warn,
            format!(
                "{} on this shell's PATH; no containerd with config '{}' runs to compare with",
                found.display(),
                containerd.config.display()
            ),
            "start containerd and check again",
        ),
        None => not_ok(
            "shim",
            Verdict::Fail,
            format!("no {SHIM_BINARY} on {whose} PATH"),
            "hostprocess node install (or install it into a directory of containerd's PATH)",
        ),
    }
}

/// The handler, its annotation pass-through and the sandbox image, from the configuration
/// containerd actually loads (`containerd config dump`: the config with its imports merged).
fn containerd_config(containerd: &Containerd, handler: &str) -> Vec<Finding> {
    let binary = containerd.binary();
    let dump = Command::new(&binary)
        .arg("--config")
        .arg(&containerd.config)
        .args(["config", "dump"])
        .output();
    let dump = match dump {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            return vec![not_ok(
                "handler",
                Verdict::Fail,
                format!(
                    "containerd cannot load '{}': {}",
                    containerd.config.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "fix the configuration, then hostprocess node install",
            )]
        }
        Err(e) => {
            return vec![not_ok(
                "handler",
                Verdict::Fail,
                format!("cannot run '{}': {e}", binary.display()),
                "install containerd 1.6 or later",
            )]
        }
    };
    let loaded = loaded_config(&dump, handler);
    let mut findings = loaded.findings;
    if loaded.parsed {
        findings.push(sandbox_image(
            containerd,
            loaded.sandbox.as_deref(),
            loaded.address.as_deref(),
        ));
    }
    findings
}

/// What the configuration containerd loads (its `config dump`) says about the handler.
struct LoadedConfig {
    findings: Vec<Finding>,
    /// Whether the dump was TOML at all.
    parsed: bool,
    sandbox: Option<String>,
    address: Option<String>,
}

fn loaded_config(dump: &str, handler: &str) -> LoadedConfig {
    let Ok(doc) = toml_edit::Document::parse(dump) else {
        return LoadedConfig {
            findings: vec![not_ok(
                "handler",
                Verdict::Fail,
                "containerd's config dump is not TOML",
                "check containerd's installation",
            )],
            parsed: false,
            sandbox: None,
            address: None,
        };
    };
    let root = doc.as_item();
    let v3 = at(root, &["plugins", "io.containerd.cri.v1.runtime"]).is_some();
    let runtime_plugin = if v3 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let runtime = at(
        root,
        &["plugins", runtime_plugin, "containerd", "runtimes", handler],
    );
    let mut findings = Vec::new();
    let runtime_type = runtime
        .and_then(|r| at(r, &["runtime_type"]))
        .and_then(|t| t.as_str());
    if runtime_type == Some(RUNTIME_TYPE) {
        findings.push(ok(
            "handler",
            format!("\"{handler}\" runs {RUNTIME_TYPE} (plugins.\"{runtime_plugin}\")"),
        ));
    } else {
        let detail = match runtime_type {
            Some(other) => {
                format!("the runtime handler \"{handler}\" runs {other}, not {RUNTIME_TYPE}")
            }
            None => format!("containerd's config registers no runtime handler \"{handler}\""),
        };
        findings.push(not_ok(
            "handler",
            Verdict::Fail,
            detail,
            "hostprocess node install, then restart containerd",
        ));
    }
    for key in ["pod_annotations", "container_annotations"] {
        let patterns: Vec<&str> = runtime
            .and_then(|r| at(r, &[key]))
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let blocked: Vec<&str> = ANNOTATIONS
            .into_iter()
            .filter(|a| !patterns.iter().any(|p| wildcard_matches(p, a)))
            .collect();
        if blocked.is_empty() {
            findings.push(ok(
                "annotations",
                format!("{key} lets the HostProcess annotations through"),
            ));
        } else if runtime_type.is_some() {
            findings.push(not_ok(
                "annotations",
                Verdict::Warn,
                format!("{key} of \"{handler}\" blocks {}", blocked.join(", ")),
                format!("add \"microsoft.com/hostprocess-*\", \"hostprocess.io/*\", \"run-as-user.hostprocess.io/*\", \"io.microsoft.container.*\" to {key}"),
            ));
        }
    }
    let sandbox = if v3 {
        at(
            root,
            &[
                "plugins",
                "io.containerd.cri.v1.images",
                "pinned_images",
                "sandbox",
            ],
        )
    } else {
        at(
            root,
            &["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"],
        )
    };
    LoadedConfig {
        findings,
        parsed: true,
        sandbox: sandbox.and_then(|s| s.as_str()).map(str::to_string),
        address: at(root, &["grpc", "address"])
            .and_then(|a| a.as_str())
            .map(str::to_string),
    }
}

fn sandbox_image(containerd: &Containerd, image: Option<&str>, address: Option<&str>) -> Finding {
    let Some(image) = image else {
        return not_ok(
            "sandbox image",
            Verdict::Warn,
            "containerd's config names no sandbox image",
            "set the CRI sandbox image",
        );
    };
    let Some(address) = address.filter(|_| containerd.pid.is_some()) else {
        return not_ok(
            "sandbox image",
            Verdict::Warn,
            format!("{image}: containerd is not running, so its images are unknown"),
            "start containerd and check again",
        );
    };
    let listed = Command::new(containerd.ctr())
        .args([
            "--address",
            address,
            "--namespace",
            "k8s.io",
            "images",
            "ls",
            "-q",
        ])
        .output();
    match listed {
        Ok(out) if out.status.success() => {
            let images = String::from_utf8_lossy(&out.stdout);
            if images.lines().any(|l| l.trim() == image) {
                ok(
                    "sandbox image",
                    format!("{image} is present (nothing of it runs)"),
                )
            } else {
                not_ok(
                    "sandbox image",
                    Verdict::Warn,
                    format!("{image} is not in containerd's k8s.io namespace: the first pod pulls it"),
                    format!("make {image} pullable, or import it: ctr -n k8s.io images import pause.tar"),
                )
            }
        }
        _ => not_ok(
            "sandbox image",
            Verdict::Warn,
            format!("{image}: containerd at {address} did not list its images"),
            "check that containerd answers (ctr version)",
        ),
    }
}

/// The item at a path of keys, if every table on the way exists.
fn at<'a>(item: &'a toml_edit::Item, path: &[&str]) -> Option<&'a toml_edit::Item> {
    path.iter()
        .try_fold(item, |item, key| item.as_table_like()?.get(key))
}

/// containerd's annotation patterns: `*` matches any run of characters.
fn wildcard_matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            let Some(rest) = value.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| wildcard_matches(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(dump: &str) -> Vec<(&'static str, Verdict)> {
        loaded_config(dump, "hostprocess")
            .findings
            .iter()
            .map(|f| (f.check, f.status))
            .collect()
    }

    #[test]
    fn the_shipped_handlers_pass_in_the_config_containerd_loads() {
        use super::super::node_config::{SHIPPED_V2, SHIPPED_V3};
        let v2 = format!("[grpc]\n  address = \"/s\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"p:1\"\n{SHIPPED_V2}").replace("version = 2\n", "");
        let loaded = loaded_config(&v2, "hostprocess");
        assert_eq!(loaded.sandbox.as_deref(), Some("p:1"));
        assert_eq!(loaded.address.as_deref(), Some("/s"));
        assert_eq!(
            verdicts(&v2),
            [
                ("handler", Verdict::Ok),
                ("annotations", Verdict::Ok),
                ("annotations", Verdict::Ok)
            ]
        );
        let v3 = format!("[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"p:2\"\n{SHIPPED_V3}").replace("version = 3\n", "");
        assert_eq!(
            loaded_config(&v3, "hostprocess").sandbox.as_deref(),
            Some("p:2")
        );
        assert_eq!(verdicts(&v3)[0], ("handler", Verdict::Ok));
    }

    #[test]
    fn a_missing_or_foreign_handler_fails_and_narrow_annotations_warn() {
        let none = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        assert_eq!(verdicts(none), [("handler", Verdict::Fail)]);
        let runc = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostprocess]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        assert_eq!(verdicts(runc)[0], ("handler", Verdict::Fail));
        let narrow = "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.hostprocess]\n  runtime_type = \"io.containerd.hostprocess.v1\"\n  pod_annotations = [\"hostprocess.io/*\"]\n  container_annotations = [\"*\"]\n";
        assert_eq!(
            verdicts(narrow),
            [
                ("handler", Verdict::Ok),
                ("annotations", Verdict::Warn),
                ("annotations", Verdict::Ok)
            ]
        );
    }

    #[test]
    fn annotation_patterns_match_like_containerds() {
        assert!(wildcard_matches(
            "microsoft.com/hostprocess-*",
            "microsoft.com/hostprocess-container"
        ));
        assert!(wildcard_matches("*", "hostprocess.io/run-as-user"));
        assert!(wildcard_matches(
            "io.microsoft.container.*",
            "io.microsoft.container.memory.sizeinmb"
        ));
        assert!(!wildcard_matches(
            "hostprocess.io/*",
            "microsoft.com/hostprocess-container"
        ));
        assert!(!wildcard_matches("exact", "exactly"));
    }
}
