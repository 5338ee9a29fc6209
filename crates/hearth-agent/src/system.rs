//! What the agent changes in the guest as a whole: its identity after a
//! restore and its power.
//!
//! [`System`] is the seam between the request handlers and the machine, so the
//! handlers can be tested on a development host with a fake that records what
//! it was asked; [`Machine`] is the real guest.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use base64::Engine;
use hearth_protocol::Identity;

use crate::{say, sys};

/// Entropy bytes credited per `Identity`; more is ignored.
pub const MAX_ENTROPY: usize = 4096;

/// Guest-wide operations.
pub trait System: Send + Sync + 'static {
    /// Mixes host entropy into the kernel's pool, credits it and reseeds the
    /// CRNG, so that the guest's random output differs from any other guest
    /// restored from the same snapshot.
    ///
    /// # Errors
    ///
    /// Fails when the kernel refuses the entropy.
    fn add_entropy(&self, bytes: &[u8]) -> io::Result<()>;

    /// Sets the wall clock.
    ///
    /// # Errors
    ///
    /// Fails when the kernel refuses the time.
    fn set_clock(&self, unix_time_ns: u128) -> io::Result<()>;

    /// Sets the hostname.
    ///
    /// # Errors
    ///
    /// Fails when the kernel refuses the name.
    fn set_hostname(&self, hostname: &str) -> io::Result<()>;

    /// Powers the guest off shortly (after the answer has gone out).
    fn power_off(&self);
}

/// Errors applying an [`Identity`].
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The entropy is not base64.
    #[error("entropy is not base64")]
    Encoding(#[source] base64::DecodeError),
    /// The entropy is empty.
    #[error("entropy is empty")]
    NoEntropy,
    /// The hostname is not a valid one.
    #[error("bad hostname {0:?}")]
    Hostname(String),
    /// The kernel refused the entropy.
    #[error("reseed the kernel's random generator")]
    Reseed(#[source] io::Error),
    /// The kernel refused the time.
    #[error("set the clock")]
    Clock(#[source] io::Error),
    /// The kernel refused the hostname.
    #[error("set the hostname")]
    SetHostname(#[source] io::Error),
}

/// Applies an identity: entropy first, then the clock and the hostname.
///
/// # Errors
///
/// Fails on bad input before changing anything, or when the kernel refuses
/// a step.
pub fn apply_identity(system: &dyn System, identity: &Identity) -> Result<(), IdentityError> {
    let entropy = base64::engine::general_purpose::STANDARD
        .decode(identity.entropy.trim())
        .map_err(IdentityError::Encoding)?;
    if entropy.is_empty() {
        return Err(IdentityError::NoEntropy);
    }
    if !valid_hostname(&identity.hostname) {
        return Err(IdentityError::Hostname(identity.hostname.clone()));
    }

    let entropy = &entropy[..entropy.len().min(MAX_ENTROPY)];
    system.add_entropy(entropy).map_err(IdentityError::Reseed)?;
    system
        .set_clock(identity.unix_time_ns)
        .map_err(IdentityError::Clock)?;
    system
        .set_hostname(&identity.hostname)
        .map_err(IdentityError::SetHostname)
}

/// A hostname of 1 to 64 letters, digits, dashes and dots.
fn valid_hostname(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The guest the agent runs in.
pub struct Machine;

impl System for Machine {
    fn add_entropy(&self, bytes: &[u8]) -> io::Result<()> {
        let random = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        sys::add_entropy(random.as_fd(), bytes)?;
        match sys::reseed_crng(random.as_fd()) {
            // Kernels without RNDRESEEDCRNG reseed on their own schedule.
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => Ok(()),
            other => other,
        }
    }

    fn set_clock(&self, unix_time_ns: u128) -> io::Result<()> {
        let secs = (unix_time_ns / 1_000_000_000) as libc::time_t;
        let nanos = (unix_time_ns % 1_000_000_000) as libc::c_long;
        let time = nix::sys::time::TimeSpec::new(secs, nanos);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, time)?;
        Ok(())
    }

    fn set_hostname(&self, hostname: &str) -> io::Result<()> {
        nix::unistd::sethostname(hostname)?;
        Ok(())
    }

    fn power_off(&self) {
        std::thread::spawn(|| {
            // Let the answer reach the host first.
            std::thread::sleep(Duration::from_millis(200));
            power_off_now();
        });
    }
}

/// Stops every process, flushes the disks and powers the guest off.
pub fn power_off_now() -> ! {
    say!("powering off");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::thread::sleep(Duration::from_millis(50));
    nix::unistd::sync();
    let _ = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    );
    // Give the console thread a moment to print.
    std::thread::sleep(Duration::from_millis(20));
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Without a way to power off, a reset also ends QEMU under -no-reboot.
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
pub mod fake {
    //! A [`System`] that records what it is asked.

    use super::*;
    use std::sync::Mutex;

    /// Records identity calls and power-offs.
    #[derive(Default)]
    pub struct FakeSystem {
        /// Entropy, clock and hostname, as received.
        pub calls: Mutex<Vec<String>>,
    }

    impl FakeSystem {
        fn record(&self, call: String) {
            self.calls.lock().expect("test lock").push(call);
        }
    }

    impl System for FakeSystem {
        fn add_entropy(&self, bytes: &[u8]) -> io::Result<()> {
            self.record(format!("entropy {}", bytes.len()));
            Ok(())
        }

        fn set_clock(&self, unix_time_ns: u128) -> io::Result<()> {
            self.record(format!("clock {unix_time_ns}"));
            Ok(())
        }

        fn set_hostname(&self, hostname: &str) -> io::Result<()> {
            self.record(format!("hostname {hostname}"));
            Ok(())
        }

        fn power_off(&self) {
            self.record("power off".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSystem;
    use super::*;

    fn identity(entropy: &str, hostname: &str) -> Identity {
        Identity {
            entropy: entropy.to_owned(),
            unix_time_ns: 1_700_000_000_123_456_789,
            hostname: hostname.to_owned(),
        }
    }

    #[test]
    fn an_identity_reseeds_then_sets_clock_and_hostname() {
        let system = FakeSystem::default();
        apply_identity(&system, &identity("AAECAwQFBgc=", "microvm-1")).expect("apply");
        let calls = system.calls.lock().expect("lock").clone();
        assert_eq!(
            calls,
            vec![
                "entropy 8",
                "clock 1700000000123456789",
                "hostname microvm-1"
            ]
        );
    }

    #[test]
    fn bad_input_changes_nothing() {
        let system = FakeSystem::default();
        assert!(matches!(
            apply_identity(&system, &identity("!!", "h")),
            Err(IdentityError::Encoding(_))
        ));
        assert!(matches!(
            apply_identity(&system, &identity("", "h")),
            Err(IdentityError::NoEntropy)
        ));
        assert!(matches!(
            apply_identity(&system, &identity("AAEC", "bad host")),
            Err(IdentityError::Hostname(_))
        ));
        assert!(system.calls.lock().expect("lock").is_empty());
    }
}
