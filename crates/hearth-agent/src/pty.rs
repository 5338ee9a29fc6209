//! Pseudo-terminals for interactive commands.
//!
//! Both ends are opened close-on-exec from the start, so a command spawned
//! concurrently on another thread never inherits them; the child gets the
//! slave as its stdin, stdout and stderr through its own `dup2`s.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use hearth_protocol::TtySize;

use crate::sys;

/// A freshly opened terminal pair.
pub struct Pty {
    /// The agent's end.
    pub master: OwnedFd,
    /// The command's end.
    pub slave: File,
}

/// Opens a terminal pair of the given size.
///
/// # Errors
///
/// Fails when `/dev/ptmx` or the slave cannot be opened.
pub fn open(size: TtySize) -> io::Result<Pty> {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")?;
    let number = sys::unlock_pty(master.as_fd())?;
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/dev/pts/{number}"))?;
    resize(master.as_fd(), size)?;
    Ok(Pty {
        master: OwnedFd::from(master),
        slave,
    })
}

/// Sets the terminal's size; zero dimensions are left to the default.
///
/// # Errors
///
/// Fails when the descriptor is not a terminal.
pub fn resize(fd: std::os::fd::BorrowedFd<'_>, size: TtySize) -> io::Result<()> {
    if size.rows == 0 || size.cols == 0 {
        return Ok(());
    }
    sys::set_window_size(fd, size.rows, size.cols)
}
