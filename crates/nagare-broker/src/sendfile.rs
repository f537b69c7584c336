//! The one audited `unsafe` module: `sendfile(2)` from a segment file to a socket, so fetched
//! record bytes go from the page cache to the network without a copy through user space.
#![expect(unsafe_code, reason = "sendfile(2) has no safe std wrapper")]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Sends up to `len` bytes of `file` starting at `*offset` to the socket `out`; advances
/// `*offset` by the bytes sent and returns that count. Returns `WouldBlock` only when the
/// socket buffer is full (EAGAIN), so callers wait for writability and retry (short writes
/// are normal).
pub fn sendfile(
    out: &impl AsRawFd,
    file: &File,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off: libc::off_t = *offset as libc::off_t;
    // SAFETY: both descriptors are valid for the duration of the call (borrowed), `off` is a
    // valid pointer to a local, and the kernel does not retain either after returning.
    let n = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}
