//! A small Windows program the Windows test suite runs inside containers (`tests/windows.rs`):
//!
//! - `sleep`: waits forever;
//! - `shutdown MARKER`: on CTRL_SHUTDOWN writes `MARKER` and exits with 7; otherwise waits;
//! - `stubborn MARKER`: on CTRL_SHUTDOWN writes `MARKER` and never exits (a workload that
//!   ignores the event, which the grace period ends);
//! - `parent`: starts `win-probe sleep` (a grandchild of the container's init), prints its pid
//!   and waits; `parent-exit` does the same and exits;
//! - `runtime STATE BUNDLE ID`: a runtime that creates and starts container `ID` (its stdio this
//!   program's) and exits without deleting it.
//!
//! Each prints `ready` (or the pid) once its handler is installed.

fn main() {
    #[cfg(windows)]
    probe::main();
    #[cfg(not(windows))]
    {
        eprintln!("win-probe: a Windows program");
        std::process::exit(2);
    }
}

#[cfg(windows)]
mod probe {
    use std::io::Write;
    use std::sync::OnceLock;

    use windows_sys::core::BOOL;
    use windows_sys::Win32::System::Console::{SetConsoleCtrlHandler, CTRL_SHUTDOWN_EVENT};

    /// The marker file, and whether to exit after writing it.
    static MARKER: OnceLock<(String, bool)> = OnceLock::new();

    unsafe extern "system" fn handler(event: u32) -> BOOL {
        if event != CTRL_SHUTDOWN_EVENT {
            return 0;
        }
        let Some((marker, exit)) = MARKER.get() else {
            return 0;
        };
        let _ = std::fs::write(marker, "CTRL_SHUTDOWN");
        if *exit {
            std::process::exit(7);
        }
        wait_forever()
    }

    fn say(text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn fail(text: &str) -> ! {
        eprintln!("win-probe: {text}");
        std::process::exit(2);
    }

    fn wait_forever() -> ! {
        loop {
            std::thread::park();
        }
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["sleep"] => {
                say("ready");
                wait_forever()
            }
            [role @ ("shutdown" | "stubborn"), marker] => {
                let _ = MARKER.set((marker.to_string(), role == "shutdown"));
                // SAFETY: a handler with the signature the call expects.
                if unsafe { SetConsoleCtrlHandler(Some(handler), 1) } == 0 {
                    fail("SetConsoleCtrlHandler failed");
                }
                say("ready");
                wait_forever()
            }
            ["runtime", state, bundle, id] => {
                use hostprocess_engine::plan::PlanOptions;
                use hostprocess_engine::sys::windows::Stdio;
                use hostprocess_engine::{CreateOptions, Engine};
                use std::os::windows::io::AsHandle;
                let stdout = std::io::stdout()
                    .as_handle()
                    .try_clone_to_owned()
                    .unwrap_or_else(|e| fail(&format!("standard output: {e}")));
                let engine = Engine::new(PlanOptions::new(state));
                let options = CreateOptions {
                    stdio: Stdio {
                        stdout: Some(stdout),
                        ..Stdio::default()
                    },
                    start_now: true,
                    ..CreateOptions::default()
                };
                if let Err(e) = engine.create(id, std::path::Path::new(bundle), options) {
                    fail(&format!("create: {e}"));
                }
                std::process::exit(0)
            }
            [role @ ("parent" | "parent-exit")] => {
                let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
                match std::process::Command::new(exe)
                    .arg("sleep")
                    .stdout(std::process::Stdio::null())
                    .spawn()
                {
                    Ok(child) => say(&child.id().to_string()),
                    Err(e) => fail(&format!("start the grandchild: {e}")),
                }
                if role == "parent-exit" {
                    std::process::exit(0);
                }
                wait_forever()
            }
            _ => fail(&format!("unknown role {args:?}")),
        }
    }
}
