//! runc's logging flags: `--log FILE`, `--log-format text|json`, `--debug`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use hostprocess_engine::logfmt;

use crate::LogFormat;

struct Logger {
    out: Mutex<Option<File>>,
    format: LogFormat,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level().as_str().to_lowercase();
        let time = hostprocess_engine::state::rfc3339_now();
        let line = match self.format {
            LogFormat::Json => serde_json::json!({
                "level": level,
                "msg": record.args().to_string(),
                "time": time,
            })
            .to_string(),
            LogFormat::Text if self.out.lock().is_ok_and(|o| o.is_none()) => {
                format!("hostprocess: {}", record.args())
            }
            LogFormat::Text => format!(
                "time=\"{time}\" level={level} msg={}",
                logfmt::quoted(&record.args().to_string())
            ),
        };
        let Ok(mut out) = self.out.lock() else { return };
        match out.as_mut() {
            Some(file) => {
                let _ = writeln!(file, "{line}");
            }
            None => eprintln!("{line}"),
        }
    }

    fn flush(&self) {}
}

pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) {
    let out = path.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let logger = Logger {
        out: Mutex::new(out),
        format,
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
