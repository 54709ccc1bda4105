use std::io::{ErrorKind, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hostprocess_engine::{Engine, JobStats, Status};
use serde_json::{json, Value};

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events, as a Go duration (500ms, 5s, 1m30s) or seconds.
    #[arg(long, default_value = "5s")]
    pub interval: String,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let interval = parse_interval(&args.interval)?;
    let mut oom_kills = None;
    loop {
        let container = engine.load(&args.id)?;
        let stats = container.stats()?;
        if let Some(before) = oom_kills {
            if stats.oom_kills > before && !emit(&json!({"type": "oom", "id": args.id}))? {
                return Ok(());
            }
        }
        oom_kills = Some(stats.oom_kills);
        let event = json!({"type": "stats", "id": args.id, "data": runc_stats(&stats)});
        // A reader that went away (`events | head -1`) ends the stream, as with runc.
        if !emit(&event)? || args.stats || container.status() == Status::Stopped {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// Writes one event line; false once the reader has closed the pipe.
fn emit(event: &Value) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{event}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("write an event to stdout"),
    }
}

/// The stats in runc's shape (libcontainer's `types.Stats`), which go-runc and containerd's
/// runc shim decode: nanoseconds under `cpu.usage`, bytes under `memory.usage`, the OOM kills
/// among the memory controller's raw counters.
fn runc_stats(stats: &JobStats) -> Value {
    let by_op = |read: u64, write: u64| json!([{"op": "Read", "value": read}, {"op": "Write", "value": write}]);
    json!({
        "cpu": {
            "usage": {
                "total": stats.cpu_usage_ns,
                "kernel": stats.cpu_system_ns,
                "user": stats.cpu_user_ns,
            },
        },
        "memory": {
            "usage": {
                "usage": stats.memory_usage_bytes,
                "max": stats.memory_peak_bytes,
                "limit": stats.memory_limit_bytes,
                "failcnt": 0,
            },
            "cache": stats.memory_cache_bytes,
            "raw": {
                "cache": stats.memory_cache_bytes,
                "oom_kill": stats.oom_kills,
            },
        },
        "pids": {
            "current": stats.pids_current,
            "limit": stats.pids_limit,
        },
        "blkio": {
            "ioServiceBytesRecursive": by_op(stats.io_read_bytes, stats.io_write_bytes),
            "ioServicedRecursive": by_op(stats.io_read_ops, stats.io_write_ops),
        },
    })
}

/// Reads `--interval`: a Go duration as runc takes it (`500ms`, `1.5s`, `1m30s`, units `ns`
/// `us` `µs` `ms` `s` `m` `h`), or a plain number of seconds.
fn parse_interval(text: &str) -> Result<Duration> {
    let bad = || {
        anyhow::anyhow!("invalid --interval {text:?}: use a duration such as 500ms, 5s or 1m30s")
    };
    if let Ok(seconds) = text.parse::<f64>() {
        return checked(seconds, text);
    }
    let mut rest = text;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        seconds += number * scale;
        rest = &rest[unit_len..];
    }
    checked(seconds, text)
}

fn checked(seconds: f64, text: &str) -> Result<Duration> {
    if !seconds.is_finite() || seconds <= 0.0 {
        bail!("invalid --interval {text:?}: it must be more than zero");
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| anyhow::anyhow!("invalid --interval {text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_go_durations_or_seconds() {
        for (text, millis) in [
            ("500ms", 500),
            ("5s", 5000),
            ("1.5s", 1500),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("250000us", 250),
            ("0.1", 100),
            ("2", 2000),
        ] {
            assert_eq!(
                parse_interval(text).unwrap(),
                Duration::from_millis(millis),
                "{text}"
            );
        }
        for text in ["", "5x", "ms", "-1s", "0", "0s", "1e400", "s5", "1..2s"] {
            assert!(parse_interval(text).is_err(), "{text}");
        }
    }

    #[test]
    fn stats_take_runcs_nested_shape() {
        let stats = JobStats {
            cpu_usage_ns: 10,
            cpu_user_ns: 6,
            cpu_system_ns: 4,
            memory_usage_bytes: 100,
            memory_peak_bytes: 200,
            memory_limit_bytes: 300,
            memory_cache_bytes: 7,
            oom_kills: 2,
            pids_current: 3,
            pids_limit: 9,
            io_read_bytes: 11,
            io_write_bytes: 22,
            ..JobStats::default()
        };
        let data = runc_stats(&stats);
        assert_eq!(data["cpu"]["usage"]["total"], json!(10));
        assert_eq!(data["cpu"]["usage"]["kernel"], json!(4));
        assert_eq!(data["cpu"]["usage"]["user"], json!(6));
        assert_eq!(data["memory"]["usage"]["usage"], json!(100));
        assert_eq!(data["memory"]["usage"]["max"], json!(200));
        assert_eq!(data["memory"]["usage"]["limit"], json!(300));
        assert_eq!(data["memory"]["cache"], json!(7));
        assert_eq!(data["memory"]["raw"]["oom_kill"], json!(2));
        assert_eq!(data["pids"], json!({"current": 3, "limit": 9}));
        assert_eq!(
            data["blkio"]["ioServiceBytesRecursive"][1],
            json!({"op": "Write", "value": 22})
        );
    }
}
