//! The environment of a container process (§3), as the reference builds it: the account's
//! default block (`CreateEnvironmentBlock`), then the spec's variables (which win), then
//! `CONTAINER_SANDBOX_MOUNT_POINT`; `PATH` gains `;<mount point>\` and the PowerShell and WMI
//! directories (hcsshim PR #1473). Names compare without case, as Windows does.

use crate::plan::process::MOUNT_POINT_VAR;

/// Appended to `PATH` after the mount point: PowerShell and the WMI command-line tools.
pub const EXTRA_PATH: &str =
    r";C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem";

/// The name of a `NAME=value` entry. Names may start with `=` (the per-drive current
/// directories, `=C:=C:\x`), so the separator is the first `=` after the first character.
pub fn env_key(entry: &str) -> &str {
    match entry.char_indices().skip(1).find(|(_, c)| *c == '=') {
        Some((at, _)) => &entry[..at],
        None => entry,
    }
}

/// The value of `key` (case-insensitive), the last entry winning.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|e| env_key(e).eq_ignore_ascii_case(key))
        .map(|e| e.get(env_key(e).len() + 1..).unwrap_or(""))
}

/// `base` with `overrides` applied: an override replaces the entry of the same name (in its
/// place); new names are added in order. Entries without `=` are dropped, as `CreateProcess`
/// would misread them.
pub fn merge(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(base.len() + overrides.len());
    for entry in base.iter().chain(overrides) {
        let key = env_key(entry);
        if key.len() == entry.len() || key.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|e| env_key(e).eq_ignore_ascii_case(key))
        {
            Some(existing) => *existing = entry.clone(),
            None => out.push(entry.clone()),
        }
    }
    out
}

/// `PATH` with the reference's additions: the mount point (with its trailing `\`) after a `;`,
/// then [`EXTRA_PATH`].
pub fn extended_path(path: &str, mount_point_env: &str) -> String {
    let separator = if path.ends_with(';') || path.is_empty() {
        ""
    } else {
        ";"
    };
    format!("{path}{separator}{mount_point_env}{EXTRA_PATH}")
}

/// The environment of a container process: the account's block, the spec's variables, the
/// mount point variable and the extended `PATH`. `SystemRoot` is kept or added: Windows
/// components fail to load without it.
pub fn container_environment(
    account: &[String],
    spec: &[String],
    mount_point_env: &str,
    system_root: &str,
) -> Vec<String> {
    let spec: Vec<String> = spec
        .iter()
        .filter(|e| !env_key(e).eq_ignore_ascii_case(MOUNT_POINT_VAR))
        .cloned()
        .collect();
    let mut env = merge(account, &spec);
    env.push(format!("{MOUNT_POINT_VAR}={mount_point_env}"));
    let path = extended_path(env_value(&env, "PATH").unwrap_or(""), mount_point_env);
    env = merge(&env, &[format!("PATH={path}")]);
    if env_value(&env, "SystemRoot").is_none() && !system_root.is_empty() {
        env.push(format!("SystemRoot={system_root}"));
    }
    env
}

/// An environment block for `CreateProcess` with `CREATE_UNICODE_ENVIRONMENT`: each entry and a
/// NUL, then a final NUL.
pub fn environment_block(env: &[String]) -> Vec<u16> {
    let mut block: Vec<u16> = Vec::new();
    for entry in env.iter().filter(|e| !e.contains('\0')) {
        block.extend(entry.encode_utf16());
        block.push(0);
    }
    if block.is_empty() {
        block.push(0);
    }
    block.push(0);
    block
}

/// The entries of an environment block (NUL-separated, ending with an empty entry).
pub fn parse_block(block: &[u16]) -> Vec<String> {
    block
        .split(|c| *c == 0)
        .take_while(|entry| !entry.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_allow_a_leading_equals_sign() {
        assert_eq!(env_key("PATH=a=b"), "PATH");
        assert_eq!(env_key(r"=C:=C:\x"), "=C:");
        assert_eq!(env_key("NOVALUE"), "NOVALUE");
    }

    #[test]
    fn spec_values_win_without_regard_to_case() {
        let env = merge(
            &strings(&["Path=a", "TEMP=t"]),
            &strings(&["PATH=b", "NEW=n"]),
        );
        assert_eq!(env, strings(&["PATH=b", "TEMP=t", "NEW=n"]));
        assert_eq!(env_value(&env, "path"), Some("b"));
    }

    #[test]
    fn entries_without_a_value_are_dropped() {
        assert_eq!(
            merge(&strings(&["A"]), &strings(&["=", "B="])),
            strings(&["B="])
        );
    }

    #[test]
    fn path_gains_the_mount_point_and_powershell() {
        assert_eq!(
            extended_path(r"C:\Windows\system32", r"C:\hpc\"),
            r"C:\Windows\system32;C:\hpc\;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem"
        );
        assert_eq!(
            extended_path(r"C:\bin;", r"C:\hpc\"),
            r"C:\bin;C:\hpc\;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem"
        );
    }

    #[test]
    fn the_container_environment_layers_account_spec_and_mount_point() {
        let account = strings(&[
            r"Path=C:\Windows\system32",
            r"USERPROFILE=C:\Users\u",
            r"SystemRoot=C:\Windows",
        ]);
        let spec = strings(&[
            "FOO=bar",
            "CONTAINER_SANDBOX_MOUNT_POINT=/hpc",
            r"USERPROFILE=C:\p",
        ]);
        let env = container_environment(&account, &spec, r"C:\hpc\", r"C:\Windows");
        assert_eq!(env_value(&env, "FOO"), Some("bar"));
        assert_eq!(env_value(&env, "USERPROFILE"), Some(r"C:\p"));
        assert_eq!(
            env_value(&env, "CONTAINER_SANDBOX_MOUNT_POINT"),
            Some(r"C:\hpc\")
        );
        assert_eq!(
            env_value(&env, "PATH"),
            Some(
                r"C:\Windows\system32;C:\hpc\;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem"
            )
        );
        assert_eq!(
            env.iter()
                .filter(|e| env_key(e).eq_ignore_ascii_case("path"))
                .count(),
            1
        );
        assert_eq!(
            env.iter()
                .filter(|e| env_key(e).eq_ignore_ascii_case("systemroot"))
                .count(),
            1
        );
    }

    #[test]
    fn a_missing_path_and_system_root_are_added() {
        let env = container_environment(&[], &[], r"C:\hpc\", r"C:\Windows");
        assert_eq!(
            env_value(&env, "PATH"),
            Some(r"C:\hpc\;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem")
        );
        assert_eq!(env_value(&env, "SystemRoot"), Some(r"C:\Windows"));
    }

    #[test]
    fn blocks_round_trip() {
        let env = strings(&["A=1", r"=C:=C:\x", "B=ü"]);
        let block = environment_block(&env);
        assert_eq!(block[block.len() - 2..], [0, 0]);
        assert_eq!(parse_block(&block), env);
        assert_eq!(environment_block(&[]), vec![0, 0]);
        assert!(parse_block(&[0, 0]).is_empty());
    }
}
