//! Small helpers over `windows-sys`: wide strings, Win32 errors, owned handles and host facts.

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};

use windows_sys::Win32::Foundation::{GetLastError, FILETIME, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::Cryptography::{
    BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
};
use windows_sys::Win32::System::SystemInformation::{
    ComputerNameNetBIOS, GetComputerNameExW, GetSystemDirectoryW, GetWindowsDirectoryW,
};
use windows_sys::Win32::System::Threading::{GetActiveProcessorCount, ALL_PROCESSOR_GROUPS};

use crate::error::{Error, Result};
use crate::sys::winlogic::cmdline::{FileSystem, Kind};

/// A NUL-terminated UTF-16 copy of `s`.
pub fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

/// The UTF-16 text up to the first NUL.
pub fn from_wide(buffer: &[u16]) -> String {
    let end = buffer.iter().position(|c| *c == 0).unwrap_or(buffer.len());
    String::from_utf16_lossy(&buffer[..end])
}

/// `GetLastError` as an I/O error.
pub fn last_error() -> io::Error {
    // SAFETY: GetLastError only reads the thread's last-error value.
    io::Error::from_raw_os_error(unsafe { GetLastError() } as i32)
}

/// An HRESULT as an I/O error; `HRESULT_FROM_WIN32` values give back their Win32 code, whose
/// message the system knows.
pub fn hresult_error(hr: i32) -> io::Error {
    let code = hr as u32;
    if code & 0xFFFF_0000 == 0x8007_0000 {
        io::Error::from_raw_os_error((code & 0xFFFF) as i32)
    } else {
        io::Error::from_raw_os_error(hr)
    }
}

/// Takes ownership of a handle a Win32 call returned; `None` for NULL and
/// `INVALID_HANDLE_VALUE`.
pub fn owned(handle: HANDLE) -> Option<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: the caller hands over a handle it just received and does not close.
    Some(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// The raw handle, for a Win32 call.
pub fn raw(handle: &impl AsRawHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

/// A FILETIME as one number (100 ns since 1601).
pub fn filetime(time: FILETIME) -> u64 {
    (u64::from(time.dwHighDateTime) << 32) | u64::from(time.dwLowDateTime)
}

fn directory(get: unsafe extern "system" fn(*mut u16, u32) -> u32, fallback: &str) -> String {
    let mut buffer = vec![0u16; 512];
    // SAFETY: the buffer holds the number of characters given.
    let n = unsafe { get(buffer.as_mut_ptr(), buffer.len() as u32) } as usize;
    if n == 0 || n >= buffer.len() {
        return fallback.to_string();
    }
    from_wide(&buffer[..n])
}

/// A DLL of System32 (never one found elsewhere on the search path), loaded for the life of the
/// process; `None` where the host has none.
pub fn system_module(name: &str) -> Option<windows_sys::Win32::Foundation::HMODULE> {
    let name = wide(name);
    // SAFETY: a NUL-terminated name, searched in System32 only; the module stays loaded.
    let module = unsafe {
        windows_sys::Win32::System::LibraryLoader::LoadLibraryExW(
            name.as_ptr(),
            std::ptr::null_mut(),
            windows_sys::Win32::System::LibraryLoader::LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    };
    (!module.is_null()).then_some(module)
}

/// `GetSystemDirectory` (`C:\Windows\system32`).
pub fn system_dir() -> String {
    directory(GetSystemDirectoryW, r"C:\Windows\system32")
}

/// `GetWindowsDirectory` (`C:\Windows`).
pub fn windows_dir() -> String {
    directory(GetWindowsDirectoryW, r"C:\Windows")
}

/// The host's NetBIOS name; empty when it cannot be read.
pub fn computer_name() -> String {
    let mut buffer = vec![0u16; 256];
    let mut size = buffer.len() as u32;
    // SAFETY: size is the buffer's length in characters.
    let ok = unsafe { GetComputerNameExW(ComputerNameNetBIOS, buffer.as_mut_ptr(), &mut size) };
    if ok == 0 {
        return String::new();
    }
    from_wide(&buffer[..size as usize])
}

/// Logical processors across all processor groups.
pub fn host_cpus() -> u32 {
    // SAFETY: no memory effects.
    unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) }.max(1)
}

/// Bytes from the system's preferred random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    // SAFETY: the buffer holds N bytes; a null algorithm handle is allowed with
    // BCRYPT_USE_SYSTEM_PREFERRED_RNG.
    let status = unsafe {
        BCryptGenRandom(
            std::ptr::null_mut(),
            bytes.as_mut_ptr(),
            N as u32,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status != 0 {
        return Err(Error::sys(
            "BCryptGenRandom",
            io::Error::other(format!("NTSTATUS {:#010x}", status as u32)),
        ));
    }
    Ok(bytes)
}

/// The host's filesystem as the resolution logic sees it.
pub struct HostFs;

impl FileSystem for HostFs {
    fn kind(&self, path: &str) -> Kind {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Kind::Directory,
            Ok(_) => Kind::File,
            Err(_) => Kind::Missing,
        }
    }
}
