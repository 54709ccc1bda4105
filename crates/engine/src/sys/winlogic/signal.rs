//! Signals on Windows (§6). The engine speaks Unix signal numbers; Windows has termination and
//! console control events. SIGKILL terminates; SIGTERM becomes `CTRL_SHUTDOWN_EVENT`, as the
//! reference maps it; SIGINT, SIGQUIT and SIGHUP become `CTRL_C`, `CTRL_BREAK` and `CTRL_CLOSE`;
//! signal 0 only checks that the process exists.
//!
//! The reference also takes the raw console event numbers (0, 1, 2, 5, 6) as signals; here the
//! numbers are Unix signals throughout, so 2 is SIGINT (`CTRL_C`), not `CTRL_CLOSE`.

/// `CTRL_C_EVENT`, `CTRL_BREAK_EVENT`, `CTRL_CLOSE_EVENT`, `CTRL_SHUTDOWN_EVENT`.
pub const CTRL_C_EVENT: u32 = 0;
pub const CTRL_BREAK_EVENT: u32 = 1;
pub const CTRL_CLOSE_EVENT: u32 = 2;
pub const CTRL_SHUTDOWN_EVENT: u32 = 6;

/// The exit code of a terminated process or job, as the reference uses.
pub const TERMINATED_EXIT_CODE: u32 = 1;

/// What a signal does to a Windows process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    /// Check that the process exists.
    Probe,
    /// `TerminateProcess` / `TerminateJobObject`.
    Terminate,
    /// Run the process's console control handlers for this event.
    Control(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "signal {0} has no Windows equivalent: use SIGTERM (CTRL_SHUTDOWN), SIGINT (CTRL_C), SIGQUIT (CTRL_BREAK), SIGHUP (CTRL_CLOSE) or SIGKILL"
)]
pub struct UnsupportedSignal(pub i32);

pub fn signal_action(signal: i32) -> Result<SignalAction, UnsupportedSignal> {
    match signal {
        0 => Ok(SignalAction::Probe),
        1 => Ok(SignalAction::Control(CTRL_CLOSE_EVENT)),
        2 => Ok(SignalAction::Control(CTRL_C_EVENT)),
        3 => Ok(SignalAction::Control(CTRL_BREAK_EVENT)),
        9 => Ok(SignalAction::Terminate),
        15 => Ok(SignalAction::Control(CTRL_SHUTDOWN_EVENT)),
        other => Err(UnsupportedSignal(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{SIGKILL, SIGTERM};

    #[test]
    fn sigterm_is_ctrl_shutdown_and_sigkill_terminates() {
        assert_eq!(
            signal_action(SIGTERM),
            Ok(SignalAction::Control(CTRL_SHUTDOWN_EVENT))
        );
        assert_eq!(signal_action(SIGKILL), Ok(SignalAction::Terminate));
    }

    #[test]
    fn interactive_signals_map_to_console_events() {
        assert_eq!(signal_action(2), Ok(SignalAction::Control(CTRL_C_EVENT)));
        assert_eq!(
            signal_action(3),
            Ok(SignalAction::Control(CTRL_BREAK_EVENT))
        );
        assert_eq!(
            signal_action(1),
            Ok(SignalAction::Control(CTRL_CLOSE_EVENT))
        );
        assert_eq!(signal_action(0), Ok(SignalAction::Probe));
    }

    #[test]
    fn other_signals_are_refused_with_the_choices() {
        let err = signal_action(10).unwrap_err().to_string();
        assert!(
            err.starts_with("signal 10 has no Windows equivalent"),
            "{err}"
        );
        assert!(err.contains("SIGKILL"));
    }
}
