use anyhow::{bail, Result};
use hostprocess_engine::Engine;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Signal name or number (default SIGTERM).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal every process of the container, not only init.
    #[arg(short, long)]
    pub all: bool,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let signal = parse_signal(&args.signal)?;
    engine.load(&args.id)?.kill(signal, args.all)?;
    Ok(())
}

/// The real-time signals as the kernel numbers them for programs (Go's and Docker's
/// `RTMIN`/`RTMAX`; glibc keeps 32 and 33 for itself).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// Parses a signal given as a number (0 checks that the process exists), a name with or
/// without `SIG` (`KILL`, `SIGKILL`), or a real-time signal (`RTMIN+3`, `SIGRTMAX-1`).
pub fn parse_signal(text: &str) -> Result<i32> {
    let signal = match text.parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            match real_time(name) {
                Some(n) => n,
                None => format!("SIG{name}")
                    .parse::<nix::sys::signal::Signal>()
                    .map(|s| s as i32)
                    .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))?,
            }
        }
    };
    if !(0..=SIGRTMAX).contains(&signal) {
        bail!("unknown signal {text:?}: signals are 0 to {SIGRTMAX}");
    }
    Ok(signal)
}

/// `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n` (without the `SIG`); `None` for any other name.
fn real_time(name: &str) -> Option<i32> {
    let offset = |rest: &str, sign: char| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        let n: i32 = rest.strip_prefix(sign)?.parse().ok()?;
        (0..=SIGRTMAX - SIGRTMIN).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        Some(SIGRTMIN + offset(rest, '+')?)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        Some(SIGRTMAX - offset(rest, '-')?)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_as_runc_and_docker_name_them() {
        for (text, number) in [
            ("0", 0),
            ("9", 9),
            ("34", 34),
            ("64", 64),
            ("TERM", 15),
            ("sigkill", 9),
            ("SIGHUP", 1),
            ("RTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("rtmin+30", 64),
            ("RTMAX", 64),
            ("SIGRTMAX-1", 63),
            ("RTMAX-30", 34),
        ] {
            assert_eq!(parse_signal(text).unwrap(), number, "{text}");
        }
    }

    #[test]
    fn what_is_no_signal_is_refused() {
        for text in [
            "-1",
            "65",
            "FOO",
            "SIGRTMIN+31",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+",
            "RTMINx",
            "",
        ] {
            let e = parse_signal(text).unwrap_err().to_string();
            assert!(e.contains("unknown signal"), "{text}: {e}");
        }
    }
}
