//! The command line and the executable it names (§3), resolved the way `CreateProcess` searches
//! and the reference (hcsshim `getApplicationName`) emulates it:
//!
//! - a quoted application name (`"C:\Program Files\x" -a`) is searched as it is;
//! - an unquoted one is tried progressively, one more space-separated piece each time
//!   (`C:\Program.exe`, `C:\Program Files\sub.exe`, …); when a later try matches, the command line
//!   is rewritten with the name quoted, as `CreateProcess` expects;
//! - a name without extension gets `.exe`; a directory that matches is an error;
//! - relative names are searched in the working directory, then each `PATH` entry, then the
//!   system directory, `<windir>\System` and `<windir>` (the reference's `SearchPathW` list).
//!
//! Where nothing matches, a second pass tries the extensions of the reference's `PATHEXT`
//! (`.COM;.EXE;.BAT;.CMD; `): `.COM`, `.BAT`, `.CMD`, then the bare name, so extension-less
//! binaries such as Kubernetes' `agnhost` run (hcsshim #1128). The second pass only runs when
//! the first finds nothing, so it never changes what the reference would pick.
//!
//! Paths are looked up through a [`FileSystem`], so the search runs against the container's view
//! (see `mounts::ContainerView`) and, in tests, against memory.

/// What a path is, for the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Directory,
}

/// Answers what a Windows path is. Paths are case-insensitive and use `\`.
pub trait FileSystem {
    fn kind(&self, path: &str) -> Kind;
}

/// The extension `CreateProcess` adds to a name without one.
pub const DEFAULT_EXTENSION: &str = ".exe";
/// The second pass: the rest of `.COM;.EXE;.BAT;.CMD; ` in order, the trailing blank entry being
/// the name as it is.
pub const EXTRA_EXTENSIONS: [&str; 4] = [".COM", ".BAT", ".CMD", ""];

/// Where relative names are searched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPaths {
    pub work_dir: String,
    /// The process's `PATH` value (`;`-separated).
    pub path_env: String,
    /// `GetSystemDirectory` (`C:\Windows\system32`).
    pub system_dir: String,
    /// `GetWindowsDirectory` (`C:\Windows`).
    pub windows_dir: String,
}

impl SearchPaths {
    /// The directories in search order: working directory, `PATH`, system directory,
    /// `<windir>\System`, `<windir>`.
    pub fn directories(&self) -> Vec<String> {
        let mut dirs = Vec::new();
        let mut add = |dir: &str| {
            let dir = dir.trim().trim_matches('"');
            if !dir.is_empty() {
                dirs.push(to_backslashes(dir));
            }
        };
        add(&self.work_dir);
        for entry in self.path_env.split(';') {
            add(entry);
        }
        add(&self.system_dir);
        if !self.windows_dir.is_empty() {
            add(&join(&self.windows_dir, "System"));
        }
        add(&self.windows_dir);
        dirs
    }
}

/// The executable to pass as `lpApplicationName` and the command line to pass with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub application: String,
    pub command_line: String,
}

/// Why no executable was found, with the reference's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("no ending quotation mark found in command")]
    NoEndingQuote,
    #[error("found directory instead of executable {path:?}")]
    Directory { path: String },
    #[error("failed to find executable {command:?} (searched {})", searched.join(", "))]
    NotFound {
        command: String,
        searched: Vec<String>,
    },
}

/// The reference's wrapping of a [`SearchError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to get application name from commandline {command_line:?}: {source}")]
pub struct ApplicationNameError {
    pub command_line: String,
    #[source]
    pub source: SearchError,
}

/// Resolves `command_line` to the executable `CreateProcess` would run.
pub fn resolve(
    command_line: &str,
    search: &SearchPaths,
    fs: &dyn FileSystem,
) -> Result<Resolved, ApplicationNameError> {
    application_name(command_line, search, fs).map_err(|source| ApplicationNameError {
        command_line: command_line.to_string(),
        source,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// `SearchPathW` with `.exe` as the default extension.
    Default,
    /// The other `PATHEXT` extensions and the bare name.
    Extra,
}

/// The search without the wrapping error text (hcsshim `getApplicationName`).
pub fn application_name(
    command_line: &str,
    search: &SearchPaths,
    fs: &dyn FileSystem,
) -> Result<Resolved, SearchError> {
    let mut searched = Vec::new();
    for pass in [Pass::Default, Pass::Extra] {
        if let Some(resolved) = search_pass(command_line, search, fs, pass, &mut searched)? {
            return Ok(resolved);
        }
    }
    Err(SearchError::NotFound {
        command: command_line.to_string(),
        searched,
    })
}

fn search_pass(
    command_line: &str,
    search: &SearchPaths,
    fs: &dyn FileSystem,
    pass: Pass,
    searched: &mut Vec<String>,
) -> Result<Option<Resolved>, SearchError> {
    if let Some(rest) = command_line.strip_prefix('"') {
        let end = rest.find('"').ok_or(SearchError::NoEndingQuote)?;
        let found = lookup(&rest[..end], search, fs, pass, searched)?;
        return Ok(found.map(|application| Resolved {
            application,
            command_line: command_line.to_string(),
        }));
    }
    let args = split_args(command_line);
    let mut trial = String::new();
    for (index, arg) in args.iter().enumerate() {
        trial.push_str(arg);
        // As in the reference, a directory found for one try only ends that try.
        if let Ok(Some(application)) = lookup(&trial, search, fs, pass, searched) {
            let command_line = if index == 0 {
                command_line.to_string()
            } else {
                format!("\"{trial}\" {}", args[index + 1..].join(" "))
                    .trim()
                    .to_string()
            };
            return Ok(Some(Resolved {
                application,
                command_line,
            }));
        }
        trial.push(' ');
    }
    Ok(None)
}

/// Looks one name up; `Err` only for a directory found by the default pass.
fn lookup(
    name: &str,
    search: &SearchPaths,
    fs: &dyn FileSystem,
    pass: Pass,
    searched: &mut Vec<String>,
) -> Result<Option<String>, SearchError> {
    let (bases, in_directories) = candidates(name, search);
    if pass == Pass::Default {
        let note = |place: String, searched: &mut Vec<String>| {
            if !searched.contains(&place) {
                searched.push(place);
            }
        };
        if in_directories {
            for dir in search.directories() {
                note(dir, searched);
            }
        } else {
            for base in &bases {
                note(base.clone(), searched);
            }
        }
    }
    let extension_given = has_extension(name);
    for base in &bases {
        match pass {
            Pass::Default => {
                let path = if extension_given {
                    base.clone()
                } else {
                    format!("{base}{DEFAULT_EXTENSION}")
                };
                match fs.kind(&path) {
                    Kind::File => return Ok(Some(path)),
                    Kind::Directory => return Err(SearchError::Directory { path }),
                    Kind::Missing => {}
                }
            }
            Pass::Extra if !extension_given => {
                for extension in EXTRA_EXTENSIONS {
                    let path = format!("{base}{extension}");
                    if fs.kind(&path) == Kind::File {
                        return Ok(Some(path));
                    }
                }
            }
            Pass::Extra => {}
        }
    }
    Ok(None)
}

/// The full paths a name stands for, and whether they come from the search directories.
/// Absolute names stand for themselves; a rooted name (`\x`, `/x`) is on drive `C:`; a name with
/// a drive but no root (`D:x`) is taken from that drive's root; `.\x` and `..\x` are relative to
/// the working directory only; other relative names (`x`, `sub\x`) are tried in every search
/// directory.
fn candidates(name: &str, search: &SearchPaths) -> (Vec<String>, bool) {
    let name = to_backslashes(name);
    if name.starts_with(r"\\") {
        return (vec![name], false);
    }
    if let Some(drive) = drive_of(&name) {
        let rest = name[2..].trim_start_matches('\\');
        return (vec![normalize(&format!("{drive}\\{rest}"))], false);
    }
    if name.starts_with('\\') {
        return (vec![normalize(&format!("C:{name}"))], false);
    }
    let dot_relative =
        name == "." || name == ".." || name.starts_with(r".\") || name.starts_with(r"..\");
    if dot_relative {
        return (vec![normalize(&join(&search.work_dir, &name))], false);
    }
    let bases = search
        .directories()
        .iter()
        .map(|dir| normalize(&join(dir, &name)))
        .collect();
    (bases, true)
}

/// Splits a command line into pieces the way the reference does: runs of non-blank,
/// non-quote characters, or whole quoted strings (quotes kept). An unmatched quote is dropped.
pub fn split_args(command_line: &str) -> Vec<String> {
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let mut pieces = Vec::new();
    let mut rest = command_line;
    while let Some(c) = rest.chars().next() {
        if blank(c) {
            rest = &rest[c.len_utf8()..];
        } else if c == '"' {
            match rest[1..].find('"') {
                Some(end) => {
                    pieces.push(rest[..end + 2].to_string());
                    rest = &rest[end + 2..];
                }
                None => rest = &rest[1..],
            }
        } else {
            let end = rest
                .find(|c: char| blank(c) || c == '"')
                .unwrap_or(rest.len());
            pieces.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    pieces
}

/// Quotes one argument so that the Microsoft C runtime's parser gives it back unchanged:
/// arguments with blanks are quoted, quotes are escaped, and backslashes are doubled where they
/// precede a quote.
pub fn escape_arg(arg: &str) -> String {
    if arg.is_empty() {
        return "\"\"".to_string();
    }
    let has_blank = arg.contains([' ', '\t']);
    let has_special = arg.contains(['"', '\\']);
    if !has_blank && !has_special {
        return arg.to_string();
    }
    if !has_special {
        return format!("\"{arg}\"");
    }
    let mut out = String::with_capacity(arg.len() + 4);
    if has_blank {
        out.push('"');
    }
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes + 1));
                backslashes = 0;
            }
            _ => backslashes = 0,
        }
        out.push(c);
    }
    if has_blank {
        out.extend(std::iter::repeat_n('\\', backslashes));
        out.push('"');
    }
    out
}

/// Joins arguments into a command line with [`escape_arg`].
pub fn make_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| escape_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command line for a planned process. The plan keeps a spec's `process.commandLine` (the
/// Windows form, used by containerd for images built with `ArgsEscaped`) as
/// `["/bin/sh", "-c", <line>]`; on Windows there is no `/bin/sh`, so that shape is the command
/// line itself. Other argument lists are quoted with [`make_command_line`].
pub fn command_line_from_args(args: &[String]) -> String {
    match args {
        [shell, flag, line] if shell == "/bin/sh" && flag == "-c" => line.clone(),
        _ => make_command_line(args),
    }
}

/// `/` → `\`.
pub fn to_backslashes(path: &str) -> String {
    path.replace('/', "\\")
}

/// The drive (`C:`) a path starts with.
pub fn drive_of(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':').then(|| &path[..2])
}

/// Does the last component carry an extension (a `.`)?
pub fn has_extension(name: &str) -> bool {
    name.rsplit(['\\', '/'])
        .next()
        .is_some_and(|last| last.contains('.'))
}

/// `dir\name`, with one separator between them.
pub fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches(['\\', '/']);
    let name = name.trim_start_matches(['\\', '/']);
    if name.is_empty() {
        return format!("{dir}\\");
    }
    format!("{dir}\\{name}")
}

/// Lexical clean-up: `/` → `\`, repeated separators, `.` and `..` (never above the root) go. A
/// `\\?\` path is left as it is.
pub fn normalize(path: &str) -> String {
    let path = to_backslashes(path);
    if path.starts_with(r"\\?\") {
        return path;
    }
    let (prefix, rest) = if let Some(unc) = path.strip_prefix(r"\\") {
        let mut parts = unc.splitn(3, '\\');
        let server = parts.next().unwrap_or_default();
        let share = parts.next().unwrap_or_default();
        (
            format!(r"\\{server}\{share}"),
            parts.next().unwrap_or_default().to_string(),
        )
    } else if let Some(drive) = drive_of(&path) {
        (drive.to_string(), path[2..].to_string())
    } else {
        (String::new(), path.clone())
    };
    let rooted = !prefix.is_empty() || rest.starts_with('\\');
    let mut parts: Vec<&str> = Vec::new();
    for part in rest.split('\\') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let body = parts.join("\\");
    if rooted {
        format!("{prefix}\\{body}")
    } else {
        body
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A case-insensitive in-memory filesystem.
    #[derive(Default)]
    pub(crate) struct MemFs(HashMap<String, Kind>);

    impl MemFs {
        pub(crate) fn new(files: &[&str], dirs: &[&str]) -> MemFs {
            let mut fs = MemFs::default();
            for file in files {
                fs.add(file, Kind::File);
            }
            for dir in dirs {
                fs.add(dir, Kind::Directory);
            }
            fs
        }

        pub(crate) fn add(&mut self, path: &str, kind: Kind) {
            let key = normalize(path).to_lowercase();
            let key = key.trim_end_matches('\\').to_string();
            // Every parent of an entry is a directory.
            let mut parent = key.as_str();
            while let Some((up, _)) = parent.rsplit_once('\\') {
                if up.len() < 2 {
                    break;
                }
                self.0.entry(up.to_string()).or_insert(Kind::Directory);
                parent = up;
            }
            self.0.insert(key, kind);
        }
    }

    impl FileSystem for MemFs {
        fn kind(&self, path: &str) -> Kind {
            let key = normalize(path).to_lowercase();
            let key = key.trim_end_matches('\\');
            self.0.get(key).copied().unwrap_or(Kind::Missing)
        }
    }

    const PING: &str = r"C:\Windows\System32\ping.exe";
    const CMD: &str = r"C:\Windows\System32\cmd.exe";

    fn host() -> MemFs {
        MemFs::new(&[PING, CMD], &[r"C:\Windows\System", r"C:\tmp"])
    }

    fn paths(work_dir: &str, path_env: &str) -> SearchPaths {
        SearchPaths {
            work_dir: work_dir.into(),
            path_env: path_env.into(),
            system_dir: r"C:\Windows\System32".into(),
            windows_dir: r"C:\Windows".into(),
        }
    }

    fn found(command: &str, work_dir: &str, path_env: &str, fs: &MemFs) -> (String, String) {
        let r = resolve(command, &paths(work_dir, path_env), fs)
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        (r.application.to_lowercase(), r.command_line)
    }

    fn assert_found(
        command: &str,
        work_dir: &str,
        path_env: &str,
        fs: &MemFs,
        app: &str,
        line: &str,
    ) {
        let (application, command_line) = found(command, work_dir, path_env, fs);
        assert_eq!(application, app.to_lowercase(), "{command:?}");
        assert_eq!(command_line, line, "{command:?}");
    }

    // The reference's TestGetApplicationNamePing cases.
    #[test]
    fn ping_is_found_by_name_relative_path_and_quoted() {
        let fs = host();
        let path = r"C:\windows\system32";
        assert_found("ping", r"C:\", path, &fs, PING, "ping");
        assert_found(
            "system32/ping",
            r"C:\windows\",
            path,
            &fs,
            PING,
            "system32/ping",
        );
        assert_found(
            r"system32\ping",
            r"C:\windows",
            path,
            &fs,
            PING,
            r"system32\ping",
        );
        assert_found(
            "cmd /c ping 127.0.0.1",
            r"C:\",
            path,
            &fs,
            CMD,
            "cmd /c ping 127.0.0.1",
        );
        assert_found(
            r"system32\cmd /c ping 127.0.0.1",
            r"C:\windows\",
            path,
            &fs,
            CMD,
            r"system32\cmd /c ping 127.0.0.1",
        );
        assert_found("ping test", r"C:\", path, &fs, PING, "ping test");
        assert_found(
            "\"ping\" 127.0.0.1",
            r"C:\",
            path,
            &fs,
            PING,
            "\"ping\" 127.0.0.1",
        );
    }

    // The reference's TestGetApplicationNameRandomBinary cases.
    #[test]
    fn names_with_spaces_are_tried_progressively_and_requoted() {
        let fs = MemFs::new(
            &[
                r"C:\tmp\test.exe",
                r"C:\tmp\test 2.exe",
                r"C:\tmp\exe with space.exe",
            ],
            &[],
        );
        assert_found(
            "exe with space.exe",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\exe with space.exe",
            "\"exe with space.exe\"",
        );
        assert_found(
            "\"exe with space.exe\"",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\exe with space.exe",
            "\"exe with space.exe\"",
        );
        assert_found(
            "\"test 2.exe\"",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\test 2.exe",
            "\"test 2.exe\"",
        );
        assert_found("test 2", r"C:\tmp", "", &fs, r"C:\tmp\test.exe", "test 2");
        assert_found(
            r"C:\tmp\test",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\test.exe",
            r"C:\tmp\test",
        );
        assert_found("test", r"C:\", r"C:\tmp", &fs, r"C:\tmp\test.exe", "test");
    }

    #[test]
    fn unquoted_program_files_path_is_quoted_once_found() {
        let fs = MemFs::new(&[r"C:\Program Files\sub dir\program name.exe"], &[]);
        assert_found(
            r"C:\Program Files\sub dir\program name -x",
            r"C:\",
            "",
            &fs,
            r"C:\Program Files\sub dir\program name.exe",
            r#""C:\Program Files\sub dir\program name" -x"#,
        );
    }

    #[test]
    fn an_earlier_piece_wins_over_a_longer_name() {
        let fs = MemFs::new(&[r"C:\tmp\foo.exe", r"C:\tmp\foo bar.exe"], &[]);
        assert_found(
            "foo bar baz",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\foo.exe",
            "foo bar baz",
        );
    }

    #[test]
    fn missing_end_quote_is_the_reference_error() {
        let err = resolve("\"ping 127.0.0.1", &paths(r"C:\", ""), &host()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to get application name from commandline \"\\\"ping 127.0.0.1\": no ending quotation mark found in command"
        );
    }

    #[test]
    fn a_quoted_name_that_is_a_directory_is_refused() {
        let fs = MemFs::new(&[], &[r"C:\tmp\ping.exe"]);
        let err = application_name("\"ping\"", &paths(r"C:\tmp", ""), &fs).unwrap_err();
        assert_eq!(
            err,
            SearchError::Directory {
                path: r"C:\tmp\ping.exe".into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"found directory instead of executable "C:\\tmp\\ping.exe""#
        );
    }

    #[test]
    fn an_unquoted_directory_match_only_ends_that_try() {
        let mut fs = MemFs::new(&[r"C:\tmp\run me.exe"], &[]);
        fs.add(r"C:\tmp\run.exe", Kind::Directory);
        assert_found(
            "run me",
            r"C:\tmp",
            "",
            &fs,
            r"C:\tmp\run me.exe",
            "\"run me\"",
        );
    }

    #[test]
    fn nothing_found_names_the_command_and_every_place_searched() {
        let err = resolve("nope -x", &paths(r"C:\hpc", r"C:\bin;;C:\tools"), &host()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"failed to get application name from commandline "nope -x": failed to find executable "nope -x" (searched C:\hpc, C:\bin, C:\tools, C:\Windows\System32, C:\Windows\System, C:\Windows)"#
        );
        let err =
            application_name(r"C:\nowhere\x.exe", &paths(r"C:\hpc", ""), &host()).unwrap_err();
        assert_eq!(
            err,
            SearchError::NotFound {
                command: r"C:\nowhere\x.exe".into(),
                searched: vec![r"C:\nowhere\x.exe".into()],
            }
        );
        assert!(matches!(
            application_name("", &paths(r"C:\", ""), &host()),
            Err(SearchError::NotFound { .. })
        ));
    }

    #[test]
    fn extensionless_binaries_are_found_by_the_pathext_pass() {
        let fs = MemFs::new(&[r"C:\hpc\agnhost"], &[]);
        assert_found(
            r"C:\hpc\agnhost serve-hostname",
            r"C:\hpc",
            "",
            &fs,
            r"C:\hpc\agnhost",
            r"C:\hpc\agnhost serve-hostname",
        );
        assert_found("agnhost", r"C:\hpc", "", &fs, r"C:\hpc\agnhost", "agnhost");
    }

    #[test]
    fn the_pathext_pass_keeps_its_order_and_skips_directories() {
        let fs = MemFs::new(&[r"C:\hpc\tool.cmd", r"C:\hpc\tool.bat"], &[r"C:\hpc\tool"]);
        assert_found("tool", r"C:\hpc", "", &fs, r"C:\hpc\tool.BAT", "tool");
        let fs = MemFs::new(&[r"C:\bin\tool"], &[r"C:\hpc\tool"]);
        assert_found("tool", r"C:\hpc", r"C:\bin", &fs, r"C:\bin\tool", "tool");
    }

    #[test]
    fn the_pathext_pass_never_overrides_an_exe_match() {
        // The bare file comes first in the search order, the .exe later: .exe wins, as in the
        // reference.
        let fs = MemFs::new(&[r"C:\hpc\tool", r"C:\bin\tool.exe"], &[]);
        assert_found(
            "tool",
            r"C:\hpc",
            r"C:\bin",
            &fs,
            r"C:\bin\tool.exe",
            "tool",
        );
    }

    #[test]
    fn rooted_dot_relative_and_drive_names() {
        let fs = MemFs::new(&[r"C:\hpc\app\run.exe", r"D:\x\y.exe"], &[]);
        assert_found(
            "/hpc/app/run",
            r"C:\elsewhere",
            "",
            &fs,
            r"C:\hpc\app\run.exe",
            "/hpc/app/run",
        );
        assert_found(
            r".\app\run",
            r"C:\hpc",
            "",
            &fs,
            r"C:\hpc\app\run.exe",
            r".\app\run",
        );
        assert_found(
            r"..\hpc\app\run",
            r"C:\tmp",
            "",
            &fs,
            r"C:\hpc\app\run.exe",
            r"..\hpc\app\run",
        );
        assert_found(r"D:x\y", r"C:\", "", &fs, r"D:\x\y.exe", r"D:x\y");
        // A dot-relative name is relative to the working directory only, never searched on PATH.
        let on_path = |work_dir: &str| paths(work_dir, r"C:\hpc\app");
        assert!(application_name(r".\run", &on_path(r"C:\hpc\app"), &fs).is_ok());
        assert!(application_name(r".\run", &on_path(r"C:\"), &fs).is_err());
    }

    #[test]
    fn args_split_like_the_reference() {
        assert_eq!(
            split_args("\"Hello good\" morning world"),
            vec!["\"Hello good\"", "morning", "world"]
        );
        assert_eq!(split_args("  a\tb  "), vec!["a", "b"]);
        assert_eq!(split_args("a\"b c\"d"), vec!["a", "\"b c\"", "d"]);
        assert_eq!(split_args("a \"unterminated"), vec!["a", "unterminated"]);
        assert!(split_args("").is_empty());
    }

    #[test]
    fn args_are_quoted_for_the_c_runtime() {
        assert_eq!(escape_arg(""), "\"\"");
        assert_eq!(escape_arg("plain"), "plain");
        assert_eq!(escape_arg("two words"), "\"two words\"");
        assert_eq!(escape_arg(r"C:\dir\"), r"C:\dir\");
        assert_eq!(escape_arg(r"C:\my dir\"), r#""C:\my dir\\""#);
        assert_eq!(escape_arg(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(escape_arg(r#"a\"b"#), r#"a\\\"b"#);
        let args: Vec<String> = ["powershell", "-c", "echo $env:X"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(make_command_line(&args), "powershell -c \"echo $env:X\"");
    }

    #[test]
    fn a_planned_command_line_is_used_as_it_is() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line_from_args(&args(&["/bin/sh", "-c", "cmd /c \"echo a\""])),
            "cmd /c \"echo a\""
        );
        assert_eq!(
            command_line_from_args(&args(&["ping", "-t", "127.0.0.1"])),
            "ping -t 127.0.0.1"
        );
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize(r"C:\a\.\b\..\c"), r"C:\a\c");
        assert_eq!(normalize("C:/a//b/"), r"C:\a\b");
        assert_eq!(normalize(r"C:\..\a"), r"C:\a");
        assert_eq!(normalize(r"\\srv\share\a\..\b"), r"\\srv\share\b");
        assert_eq!(normalize(r"\\?\C:\a\..\b"), r"\\?\C:\a\..\b");
        assert_eq!(normalize(r"a\..\..\b"), r"..\b");
        assert_eq!(join(r"C:\", "x"), r"C:\x");
        assert!(has_extension(r"C:\a.b\c.exe"));
        assert!(!has_extension(r"C:\a.b\c"));
    }
}
