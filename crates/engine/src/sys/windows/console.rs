//! A pseudo console (ConPTY) for processes that ask for a terminal (§3): the process writes to
//! the console; the console reads its input from one pipe and writes what it renders to
//! another, which the caller owns.

use std::os::windows::io::OwnedHandle;

use windows_sys::Win32::System::Console::{
    ClosePseudoConsole, CreatePseudoConsole, ResizePseudoConsole, COORD, HPCON,
};

use super::win::{hresult_error, raw};
use crate::error::{Error, Result};

/// The reference's default size, 80x25.
pub const DEFAULT_SIZE: (u16, u16) = (80, 25);

/// An open pseudo console, closed on drop (which ends the console's clients).
#[derive(Debug)]
pub struct PseudoConsole {
    handle: HPCON,
}

fn coord(width: u16, height: u16) -> COORD {
    COORD {
        X: width.clamp(1, i16::MAX as u16) as i16,
        Y: height.clamp(1, i16::MAX as u16) as i16,
    }
}

impl PseudoConsole {
    /// A console of `width` x `height` reading `input` (the read end of the input pipe) and
    /// writing to `output` (the write end of the output pipe). The console keeps its own copies
    /// of both ends, so the caller's may be closed.
    pub fn create(
        input: &OwnedHandle,
        output: &OwnedHandle,
        width: u16,
        height: u16,
    ) -> Result<PseudoConsole> {
        let mut handle: HPCON = 0;
        // SAFETY: valid pipe handles and an out-parameter.
        let hr = unsafe {
            CreatePseudoConsole(
                coord(width, height),
                raw(input),
                raw(output),
                0,
                &mut handle,
            )
        };
        if hr < 0 {
            return Err(Error::sys("CreatePseudoConsole", hresult_error(hr)));
        }
        Ok(PseudoConsole { handle })
    }

    pub fn handle(&self) -> HPCON {
        self.handle
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        // SAFETY: a live console handle.
        let hr = unsafe { ResizePseudoConsole(self.handle, coord(width, height)) };
        if hr < 0 {
            return Err(Error::sys(
                "failed to resize pseudo console",
                hresult_error(hr),
            ));
        }
        Ok(())
    }
}

impl Drop for PseudoConsole {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed once.
        unsafe { ClosePseudoConsole(self.handle) };
    }
}
