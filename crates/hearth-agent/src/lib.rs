//! The guest's PID 1: it boots the microVM and serves the host.
//!
//! The binary (`main.rs`) is thin: [`boot`] prepares the guest (mounts, kernel
//! modules, the image's root filesystem), then [`serve`] answers the host over
//! the virtio-serial port for the rest of the guest's life. Every request the
//! host sends arrives on its own stream of a `hearth-protocol` session and is
//! handled by [`Agent`], which holds the guest's state (the app, its logs).
//!
//! The handlers take a session stream and run unchanged on a development host,
//! which is how the unit tests exercise them; only [`boot`] and the real
//! [`system::Machine`] need to be PID 1 in a guest.

pub mod agent;
mod app;
pub mod boot;
mod caps;
pub mod console;
mod exec;
mod fdio;
mod files;
mod fsexport;
mod inbound;
mod logbuf;
mod net;
pub mod port;
mod process;
mod pty;
mod quiesce;
pub mod reaper;
pub mod serve;
mod shell;
#[allow(unsafe_code)]
mod sys;
pub mod system;
#[cfg(test)]
mod tests;
mod tunnel;
mod users;

pub use agent::{Agent, AgentConfig};

use std::error::Error;

/// Formats an error and its sources as one line, `outer: inner: cause`.
///
/// Operating-system errors read as their plain description ("No such file or
/// directory"), without Rust's "(os error N)" suffix.
pub fn describe(err: &(dyn Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(err) = next {
        let text = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io_text(io),
            None => err.to_string(),
        };
        parts.push(text);
        next = err.source();
    }
    parts.join(": ")
}

/// The description of an I/O error without the "(os error N)" suffix.
pub fn io_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => err.to_string(),
    }
}
