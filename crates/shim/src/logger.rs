//! The serving shim's log: logrus-style lines (`time="…" level=info msg="…"`) on the FIFO
//! containerd reads into its own log. Each line goes out in one `write`: written piece by
//! piece, as the shim library's logger does, a line cost ~10 system calls and as many wake-ups
//! of containerd's reader, on every request of a container's life.
//!
//! The shim's own records go out from info level; the libraries' (the shim library, ttrpc)
//! only from warn unless `-debug` or `RUST_LOG` asks for more: at info they tell a dozen times
//! per shim that a listener or thread started or stopped, in containerd's log, for every pod.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use hostprocess_engine::logfmt;
use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

/// `RUST_LOG` overrides the level, as for the shim library's logger.
const LEVEL_ENV: &str = "RUST_LOG";

pub struct LineLogger {
    out: Mutex<File>,
    /// The most detailed level written for the shim's and the engine's own records.
    own: LevelFilter,
    /// The same for every other target (the shim library, ttrpc).
    others: LevelFilter,
}

/// Targets (module paths) whose records are the shim's own.
const OWN_TARGETS: [&str; 2] = ["containerd_shim_hostprocess_v1", "hostprocess_engine"];

/// Logs to the FIFO at `path` (containerd made it; opening it for writing waits for nothing,
/// containerd holds the reading end) at info level, or debug with `-debug`.
pub fn init(path: &Path, debug: bool) -> std::io::Result<()> {
    let out = File::options().write(true).open(path)?;
    let configured = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|level| LevelFilter::from_str(&level).ok());
    let logger = LineLogger::new(out, configured, debug);
    let max = logger.own.max(logger.others);
    log::set_boxed_logger(Box::new(logger)).map_err(std::io::Error::other)?;
    log::set_max_level(max);
    Ok(())
}

impl LineLogger {
    /// Levels: `configured` (`RUST_LOG`) for every target if set, else info for the shim's own
    /// records and warn for the others; debug at least with `-debug`.
    fn new(out: File, configured: Option<LevelFilter>, debug: bool) -> LineLogger {
        let (own, others) = match configured {
            Some(level) => (level, level),
            None => (LevelFilter::Info, LevelFilter::Warn),
        };
        let floor = if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Off
        };
        LineLogger {
            out: Mutex::new(out),
            own: own.max(floor),
            others: others.max(floor),
        }
    }
}

/// One record as one line.
pub fn line(time: &str, record: &Record) -> String {
    let mut line = format!(
        "time=\"{time}\" level={}",
        record.level().as_str().to_ascii_lowercase()
    );
    let _ = record.key_values().visit(&mut Pairs(&mut line));
    let _ = writeln!(line, " msg={}", logfmt::quoted(&record.args().to_string()));
    line
}

struct Pairs<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, " {key}={}", logfmt::quoted(&value.to_string()));
        Ok(())
    }
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let target = metadata.target();
        let limit = if OWN_TARGETS.iter().any(|own| target.starts_with(own)) {
            self.own
        } else {
            self.others
        };
        metadata.level() <= limit
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

    #[test]
    fn quotes_and_line_breaks_in_a_record_are_escaped_as_logrus_does() {
        let pairs = [("path", "/a \"b\"")];
        let text = line(
            "2026-11-29T06:49:47.185178452Z",
            &Record::builder()
                .level(log::Level::Error)
                .args(format_args!("unknown signal \"FOO\"\nsecond line"))
                .key_values(&pairs)
                .build(),
        );
        assert_eq!(
            text,
            "time=\"2026-11-29T06:49:47.185178452Z\" level=error path=\"/a \\\"b\\\"\" \
             msg=\"unknown signal \\\"FOO\\\"\\nsecond line\"\n"
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
        let out = File::options().write(true).open(&path).unwrap();
        let logger = LineLogger::new(out, None, false);
        for n in 0..2 {
            logger.log(
                &Record::builder()
                    .level(log::Level::Info)
                    .target(module_path!())
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

    fn metadata(target: &str, level: log::Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn the_libraries_info_records_are_left_out_unless_asked_for() {
        use log::Level::{Debug, Info, Warn};
        let sink = || tempfile::tempfile().unwrap();
        let ours = "containerd_shim_hostprocess_v1::task";
        let engine = "hostprocess_engine::create";
        let library = "containerd_shim::synchronous";
        let ttrpc = "ttrpc::sync::server";

        let default = LineLogger::new(sink(), None, false);
        assert!(default.enabled(&metadata(ours, Info)));
        assert!(default.enabled(&metadata(engine, Info)));
        assert!(!default.enabled(&metadata(ours, Debug)));
        assert!(!default.enabled(&metadata(library, Info)));
        assert!(!default.enabled(&metadata(ttrpc, Info)));
        assert!(default.enabled(&metadata(library, Warn)));

        let debug = LineLogger::new(sink(), None, true);
        assert!(debug.enabled(&metadata(library, Debug)));
        assert!(debug.enabled(&metadata(ours, Debug)));

        let configured = LineLogger::new(sink(), Some(LevelFilter::Info), false);
        assert!(configured.enabled(&metadata(library, Info)));
        assert!(!configured.enabled(&metadata(ours, Debug)));
    }
}
