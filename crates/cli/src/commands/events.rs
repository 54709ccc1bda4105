use std::time::Duration;

use anyhow::Result;
use hostprocess_engine::{Engine, Status};
use serde_json::json;

#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// Container id.
    pub id: String,
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Seconds between stats events (e.g. 5 or 5s).
    #[arg(long, default_value = "5s")]
    pub interval: String,
}

pub fn run(args: Args, engine: &Engine) -> Result<()> {
    let seconds: f64 = args.interval.trim_end_matches('s').parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --interval {:?}: use seconds such as 5s",
            args.interval
        )
    })?;
    let mut oom_kills = None;
    loop {
        let container = engine.load(&args.id)?;
        let stats = container.stats()?;
        if let Some(before) = oom_kills {
            if stats.oom_kills > before {
                println!("{}", json!({"type": "oom", "id": args.id}));
            }
        }
        oom_kills = Some(stats.oom_kills);
        println!("{}", json!({"type": "stats", "id": args.id, "data": stats}));
        if args.stats || container.status() == Status::Stopped {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(seconds.max(0.1)));
    }
}
