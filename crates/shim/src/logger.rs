//! The serving shim's log: logrus-style lines (`time="…" level=info msg="…"`) on the FIFO
//! containerd reads into its own log. Each line goes out in one `write`: written piece by
//! piece, as the shim library's logger does, a line cost ~10 system calls and as many wake-ups
//! of containerd's reader, on every request of a container's life.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

/// `RUST_LOG` overrides the level, as for the shim library's logger.
const LEVEL_ENV: &str = "RUST_LOG";

pub struct LineLogger {
    out: Mutex<File>,
}

/// Logs to the FIFO at `path` (containerd made it; opening it for writing waits for nothing,
/// containerd holds the reading end) at info level, or debug with `-debug`.
pub fn init(path: &Path, debug: bool) -> std::io::Result<()> {
    let out = File::options().write(true).open(path)?;
    let configured = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|level| LevelFilter::from_str(&level).ok())
        .unwrap_or(LevelFilter::Info);
    let level = if debug {
        configured.max(LevelFilter::Debug)
    } else {
        configured
    };
    log::set_boxed_logger(Box::new(LineLogger {
        out: Mutex::new(out),
    }))
    .map_err(std::io::Error::other)?;
    log::set_max_level(level);
    Ok(())
}

/// One record as one line.
pub fn line(time: &str, record: &Record) -> String {
    let mut line = format!(
        "time=\"{time}\" level={}",
        record.level().as_str().to_ascii_lowercase()
    );
    let _ = record.key_values().visit(&mut Pairs(&mut line));
    let _ = writeln!(line, " msg=\"{}\"", record.args());
    line
}

struct Pairs<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, " {key}=\"{value}\"");
        Ok(())
    }
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = line(&hostprocess_engine::state::rfc3339_now(), record);
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_logrus_line_with_its_pairs() {
        let pairs = [("id", "c1")];
        let text = line(
            "2026-11-29T06:49:47.185178452Z",
            &Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("container {} exited", "c1"))
                .key_values(&pairs)
                .build(),
        );
        assert_eq!(
            text,
            "time=\"2026-11-29T06:49:47.185178452Z\" level=warn id=\"c1\" \
             msg=\"container c1 exited\"\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn lines_reach_the_fifo_whole_and_without_blank_lines() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // The reading end first, as containerd opens it before it starts the shim.
        let mut reader = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let logger = LineLogger {
            out: Mutex::new(File::options().write(true).open(&path).unwrap()),
        };
        log::set_max_level(LevelFilter::Info);
        for n in 0..2 {
            logger.log(
                &Record::builder()
                    .level(log::Level::Info)
                    .args(format_args!("line {n}"))
                    .build(),
            );
        }
        // Both lines, each complete (the shim library's logger ends each with a blank line).
        let mut text = String::new();
        reader.read_to_string(&mut text).ok();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines[0].ends_with(" level=info msg=\"line 0\""), "{text:?}");
        assert!(lines[1].ends_with(" level=info msg=\"line 1\""), "{text:?}");
    }
}
