//! The process of a container (§3): environment, expansion of the mount-point variable,
//! working directory and command resolution.

use std::path::{Path, PathBuf};

use crate::spec::{ConsoleSize, Process};

use super::rlimits::{planned_rlimits, stored_rlimits, Rlimit};

pub const MOUNT_POINT_VAR: &str = "CONTAINER_SANDBOX_MOUNT_POINT";
/// Used when neither the spec nor the runtime has a `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the process has no command: set process.args")]
    NoCommand,
    #[error("executable {name:?} not found; searched: {}", searched.join(", "))]
    NotFound { name: String, searched: Vec<String> },
    #[error("{path:?} is a directory, not an executable")]
    Directory { path: String },
    #[error("{path:?} is not executable")]
    NotExecutable { path: String },
    /// Worded as every other refusal of the spec.
    #[error("invalid spec: process.rlimits: unknown limit {name:?}")]
    UnknownRlimit { name: String },
}

/// What a path is, as far as resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Missing,
    Directory,
    Executable,
    /// A file without an execute bit.
    File,
}

/// The process as planned from the spec, before it is looked up in the container's view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Expanded, absolute; the sandbox mount point when the spec gives none.
    pub cwd: PathBuf,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    #[serde(deserialize_with = "stored_rlimits")]
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

/// The process as it will be executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProcess {
    pub executable: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// The working directory does not exist anywhere: create it inside the volume.
    pub create_cwd: bool,
}

/// Replaces `$VAR`, `${VAR}`, `%VAR%` and `$env:VAR` for `CONTAINER_SANDBOX_MOUNT_POINT`.
pub fn expand_mount_point(text: &str, mount_point: &Path) -> String {
    if !text.contains(MOUNT_POINT_VAR) {
        return text.to_string();
    }
    let value = mount_point.to_string_lossy();
    let value = value.trim_end_matches(['/', '\\']);
    let value = if value.is_empty() { "/" } else { value };
    let spelled = [
        format!("$env:{MOUNT_POINT_VAR}"),
        format!("${{{MOUNT_POINT_VAR}}}"),
        format!("%{MOUNT_POINT_VAR}%"),
    ];
    let mut out = text.to_string();
    for spelling in &spelled {
        out = out.replace(spelling.as_str(), value);
    }
    // `$VAR` only when the name is not the prefix of a longer variable name.
    let bare = format!("${MOUNT_POINT_VAR}");
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find(&bare) {
        let after = &rest[at + bare.len()..];
        result.push_str(&rest[..at]);
        if after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            result.push_str(&bare);
        } else {
            result.push_str(value);
        }
        rest = after;
    }
    result.push_str(rest);
    result
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|e| env_key(e) == key)
        .and_then(|e| e.split_once('=').map(|(_, v)| v))
}

/// Sets `key=value` unless the environment already has `key`.
pub fn set_default_env(env: &mut Vec<String>, key: &str, value: &str) {
    if env_value(env, key).is_none() {
        env.push(format!("{key}={value}"));
    }
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    env.retain(|e| env_key(e) != key);
    env.push(format!("{key}={value}"));
}

/// Plans the process: expands the variable in args, env values and cwd, sets
/// `CONTAINER_SANDBOX_MOUNT_POINT`, and appends the volume's bin directories to `PATH`.
pub fn process_plan(
    process: &Process,
    mount_point: &Path,
    host_path: Option<&str>,
) -> Result<ProcessPlan, CommandError> {
    let mut args: Vec<String> = process
        .args
        .iter()
        .map(|a| expand_mount_point(a, mount_point))
        .collect();
    if args.is_empty() {
        if let Some(line) = process
            .command_line
            .as_deref()
            .filter(|l| !l.trim().is_empty())
        {
            args = vec![
                "/bin/sh".into(),
                "-c".into(),
                expand_mount_point(line, mount_point),
            ];
        }
    }
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(CommandError::NoCommand);
    }
    let mut env: Vec<String> = process
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => format!("{k}={}", expand_mount_point(v, mount_point)),
            None => e.clone(),
        })
        .collect();
    set_env(&mut env, MOUNT_POINT_VAR, &mount_point.to_string_lossy());
    // On Windows `PATH` is the account's, then the spec's, extended with the mount point by the
    // backend: the runtime's own never replaces the account's.
    if !cfg!(windows) {
        let path = env_value(&env, "PATH")
            .map(str::to_string)
            .or_else(|| host_path.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        set_env(&mut env, "PATH", &path_with_volume_bins(&path, mount_point));
    }

    let cwd = expand_mount_point(process.cwd.trim(), mount_point);
    let cwd = if cwd.is_empty() || cwd == "/" {
        mount_point.to_path_buf()
    } else if Path::new(&cwd).is_absolute() {
        PathBuf::from(cwd)
    } else {
        mount_point.join(cwd)
    };
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        terminal: process.terminal,
        console_size: process
            .console_size
            .map(|ConsoleSize { height, width }| (height, width)),
        rlimits: planned_rlimits(&process.rlimits)?,
        no_new_privileges: process.no_new_privileges,
    })
}

/// `PATH` keeps its entries first and gains each of them rebased into the volume at the end.
pub fn path_with_volume_bins(path: &str, mount_point: &Path) -> String {
    let host: Vec<&str> = path.split(':').filter(|p| !p.is_empty()).collect();
    let mut entries: Vec<String> = host.iter().map(|s| s.to_string()).collect();
    for entry in &host {
        if Path::new(entry).starts_with(mount_point) || !entry.starts_with('/') {
            continue;
        }
        let rebased = mount_point
            .join(entry.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned();
        if !entries.contains(&rebased) {
            entries.push(rebased);
        }
    }
    entries.join(":")
}

/// Adds the account's login basics (`HOME`, `USER`, `LOGNAME`) when the spec does not set them.
pub fn add_account_env(env: &mut Vec<String>, home: &str, user: &str) {
    set_default_env(env, "HOME", home);
    set_default_env(env, "USER", user);
    set_default_env(env, "LOGNAME", user);
}

/// Resolves the working directory and the executable inside the container's view, as the
/// `lookup` function sees it.
pub fn resolve(
    plan: &ProcessPlan,
    mount_point: &Path,
    lookup: &dyn Fn(&Path) -> FileKind,
) -> Result<ResolvedProcess, CommandError> {
    let in_volume = |path: &Path| mount_point.join(path.strip_prefix("/").unwrap_or(path));
    let (cwd, create_cwd) = if lookup(&plan.cwd) == FileKind::Directory {
        (plan.cwd.clone(), false)
    } else if !plan.cwd.starts_with(mount_point)
        && lookup(&in_volume(&plan.cwd)) == FileKind::Directory
    {
        (in_volume(&plan.cwd), false)
    } else if plan.cwd.starts_with(mount_point) {
        (plan.cwd.clone(), true)
    } else {
        (in_volume(&plan.cwd), true)
    };

    let name = plan.args.first().ok_or(CommandError::NoCommand)?;
    let candidates: Vec<PathBuf> = if name.starts_with('/') {
        vec![PathBuf::from(name), in_volume(Path::new(name))]
    } else if name.contains('/') {
        vec![cwd.join(name)]
    } else {
        let path = env_value(&plan.env, "PATH").unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .chain(std::iter::once(mount_point.join(name)))
            .collect()
    };
    let mut searched = Vec::new();
    let mut first_problem = None;
    for candidate in &candidates {
        match lookup(candidate) {
            FileKind::Executable => {
                return Ok(ResolvedProcess {
                    executable: candidate.clone(),
                    args: plan.args.clone(),
                    env: plan.env.clone(),
                    cwd,
                    create_cwd,
                })
            }
            FileKind::Directory => {
                first_problem.get_or_insert(CommandError::Directory {
                    path: candidate.display().to_string(),
                });
            }
            FileKind::File => {
                first_problem.get_or_insert(CommandError::NotExecutable {
                    path: candidate.display().to_string(),
                });
            }
            FileKind::Missing => {}
        }
        searched.push(candidate.display().to_string());
    }
    Err(first_problem.unwrap_or(CommandError::NotFound {
        name: name.clone(),
        searched,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MP: &str = "/hpc";

    fn fs(entries: &[(&str, FileKind)]) -> impl Fn(&Path) -> FileKind {
        let map: HashMap<PathBuf, FileKind> = entries
            .iter()
            .map(|(p, k)| (PathBuf::from(p), *k))
            .collect();
        move |p: &Path| map.get(p).copied().unwrap_or(FileKind::Missing)
    }

    fn process(args: &[&str], cwd: &str, env: &[&str]) -> Process {
        Process {
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.into(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..Process::default()
        }
    }

    #[test]
    fn the_four_spellings_are_expanded() {
        let mp = Path::new(MP);
        assert_eq!(
            expand_mount_point("$CONTAINER_SANDBOX_MOUNT_POINT/bin", mp),
            "/hpc/bin"
        );
        assert_eq!(
            expand_mount_point("${CONTAINER_SANDBOX_MOUNT_POINT}/bin", mp),
            "/hpc/bin"
        );
        assert_eq!(
            expand_mount_point("%CONTAINER_SANDBOX_MOUNT_POINT%\\x", mp),
            "/hpc\\x"
        );
        assert_eq!(
            expand_mount_point("$env:CONTAINER_SANDBOX_MOUNT_POINT/x", mp),
            "/hpc/x"
        );
        assert_eq!(
            expand_mount_point("$CONTAINER_SANDBOX_MOUNT_POINTS", mp),
            "$CONTAINER_SANDBOX_MOUNT_POINTS"
        );
        assert_eq!(
            expand_mount_point(
                "a=$CONTAINER_SANDBOX_MOUNT_POINT:b=$CONTAINER_SANDBOX_MOUNT_POINT",
                mp
            ),
            "a=/hpc:b=/hpc"
        );
    }

    #[cfg(windows)]
    #[test]
    fn windows_path_is_left_to_the_account_and_the_spec() {
        let mp = Path::new(r"C:\hpc");
        let plan = process_plan(&process(&["x"], "", &[]), mp, Some(r"C:\runtime")).unwrap();
        assert!(
            !plan
                .env
                .iter()
                .any(|e| e.to_ascii_uppercase().starts_with("PATH=")),
            "{:?}",
            plan.env
        );
        let plan = process_plan(&process(&["x"], "", &[r"PATH=C:\tools"]), mp, None).unwrap();
        assert!(plan.env.contains(&r"PATH=C:\tools".to_string()));
    }

    /// The Linux backend's `PATH`; Windows leaves it to the account (above).
    #[cfg(unix)]
    #[test]
    fn env_gets_the_mount_point_and_volume_bins_after_host_entries() {
        let plan = process_plan(
            &process(
                &["x"],
                "",
                &["PATH=/usr/bin:/bin", "A=$CONTAINER_SANDBOX_MOUNT_POINT/a"],
            ),
            Path::new(MP),
            None,
        )
        .unwrap();
        assert!(plan
            .env
            .contains(&"CONTAINER_SANDBOX_MOUNT_POINT=/hpc".to_string()));
        assert!(plan
            .env
            .contains(&"PATH=/usr/bin:/bin:/hpc/usr/bin:/hpc/bin".to_string()));
        assert!(plan.env.contains(&"A=/hpc/a".to_string()));
    }

    #[test]
    fn account_basics_do_not_override_the_spec() {
        let mut env = vec!["HOME=/custom".to_string()];
        add_account_env(&mut env, "/home/alice", "alice");
        assert_eq!(env, vec!["HOME=/custom", "USER=alice", "LOGNAME=alice"]);
    }

    #[test]
    fn empty_or_root_cwd_is_the_mount_point() {
        for cwd in ["", "/"] {
            let plan = process_plan(&process(&["x"], cwd, &[]), Path::new(MP), None).unwrap();
            assert_eq!(plan.cwd, PathBuf::from(MP));
        }
    }

    #[test]
    fn cwd_missing_on_the_host_resolves_into_the_volume() {
        let plan =
            process_plan(&process(&["/bin/true"], "/app", &[]), Path::new(MP), None).unwrap();
        let lookup = fs(&[
            ("/hpc/app", FileKind::Directory),
            ("/bin/true", FileKind::Executable),
        ]);
        let resolved = resolve(&plan, Path::new(MP), &lookup).unwrap();
        assert_eq!(resolved.cwd, PathBuf::from("/hpc/app"));
        assert!(!resolved.create_cwd);
    }

    #[test]
    fn cwd_missing_everywhere_is_created_in_the_volume() {
        let plan = process_plan(
            &process(&["/bin/true"], "/nowhere", &[]),
            Path::new(MP),
            None,
        )
        .unwrap();
        let lookup = fs(&[("/bin/true", FileKind::Executable)]);
        let resolved = resolve(&plan, Path::new(MP), &lookup).unwrap();
        assert_eq!(resolved.cwd, PathBuf::from("/hpc/nowhere"));
        assert!(resolved.create_cwd);
    }

    #[test]
    fn absolute_command_missing_on_the_host_runs_the_volume_file() {
        let plan = process_plan(&process(&["/app/run"], "", &[]), Path::new(MP), None).unwrap();
        let lookup = fs(&[
            ("/hpc/app/run", FileKind::Executable),
            (MP, FileKind::Directory),
        ]);
        assert_eq!(
            resolve(&plan, Path::new(MP), &lookup).unwrap().executable,
            PathBuf::from("/hpc/app/run")
        );
    }

    /// The Linux backend's search (Windows searches with `winlogic::cmdline`).
    #[cfg(unix)]
    #[test]
    fn bare_names_search_path_then_the_volume_and_the_error_lists_every_place() {
        let plan = process_plan(
            &process(&["tool"], "", &["PATH=/usr/bin:/bin"]),
            Path::new(MP),
            None,
        )
        .unwrap();
        let lookup = fs(&[(MP, FileKind::Directory)]);
        let err = resolve(&plan, Path::new(MP), &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "executable \"tool\" not found; searched: /usr/bin/tool, /bin/tool, /hpc/usr/bin/tool, /hpc/bin/tool, /hpc/tool"
        );
        let lookup = fs(&[
            (MP, FileKind::Directory),
            ("/hpc/bin/tool", FileKind::Executable),
        ]);
        assert_eq!(
            resolve(&plan, Path::new(MP), &lookup).unwrap().executable,
            PathBuf::from("/hpc/bin/tool")
        );
    }

    #[test]
    fn relative_commands_are_relative_to_the_working_directory() {
        let plan =
            process_plan(&process(&["./run.sh"], "/work", &[]), Path::new(MP), None).unwrap();
        let lookup = fs(&[
            ("/work", FileKind::Directory),
            ("/work/./run.sh", FileKind::Executable),
        ]);
        assert_eq!(
            resolve(&plan, Path::new(MP), &lookup).unwrap().executable,
            PathBuf::from("/work/./run.sh")
        );
    }

    #[test]
    fn a_directory_is_not_an_executable() {
        let plan = process_plan(&process(&["/etc"], "", &[]), Path::new(MP), None).unwrap();
        let lookup = fs(&[("/etc", FileKind::Directory), (MP, FileKind::Directory)]);
        assert!(matches!(
            resolve(&plan, Path::new(MP), &lookup),
            Err(CommandError::Directory { .. })
        ));
    }

    #[test]
    fn no_args_is_refused() {
        assert_eq!(
            process_plan(&process(&[], "", &[]), Path::new(MP), None),
            Err(CommandError::NoCommand)
        );
    }
}
