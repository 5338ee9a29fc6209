//! The few system calls that need `unsafe`, each behind a safe function.
//!
//! Everything else goes through `nix` or the standard library. The functions
//! here are ioctls and `prctl`s without a safe wrapper, and the hook that runs
//! in a freshly forked child before `exec`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// What a child does between `fork` and `exec`, in this order.
#[derive(Clone, Debug, Default)]
pub struct ChildSetup {
    /// Start a new session (`setsid`), so the child leads its own process
    /// group and the agent's signals and terminal never reach it.
    pub new_session: bool,
    /// Make stdin (a terminal) the controlling terminal (`TIOCSCTTY`).
    pub controlling_tty: bool,
    /// Capabilities to remove from the bounding set.
    pub drop_capabilities: Vec<u32>,
    /// Switch to this user, group and supplementary groups.
    pub credentials: Option<RawCredentials>,
}

/// Numeric ids to switch to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCredentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
}

/// Installs `setup` to run in the child after `fork`.
///
/// The bounding set is reduced before the user changes, because dropping
/// capabilities needs `CAP_SETPCAP`, which a non-root user no longer has.
pub fn set_child_setup(cmd: &mut Command, setup: ChildSetup) {
    let groups: Vec<libc::gid_t> = setup
        .credentials
        .as_ref()
        .map(|c| c.groups.clone())
        .unwrap_or_default();

    let hook = move || -> io::Result<()> {
        // SAFETY: only async-signal-safe system calls on plain integers and
        // on `groups`, which was allocated before the fork; nothing here
        // allocates, locks or touches memory shared with other threads.
        unsafe {
            if setup.new_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if setup.controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            for &cap in &setup.drop_capabilities {
                let res = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                // EINVAL: the kernel does not know this capability.
                if res < 0 && *libc::__errno_location() != libc::EINVAL {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(creds) = &setup.credentials {
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(creds.gid) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setuid(creds.uid) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    };

    // SAFETY: the hook is async-signal-safe (see above), which is what
    // `pre_exec` requires of code running between fork and exec.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Registers a descriptor with tokio's reactor.
///
/// # Panics
///
/// Panics outside a tokio runtime.
pub fn register(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor that stays open, and keeps
    // returning the same number, for as long as it is owned, which is the
    // whole life of the `AsyncFd`.
    let registered = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
    Ok(registered)
}

/// Sets a terminal's window size (`TIOCSWINSZ`).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is open for the call and `size` outlives it; TIOCSWINSZ
    // only reads the struct.
    let res = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unlocks a pseudo-terminal master and returns its number (the `N` of
/// `/dev/pts/N`).
pub fn unlock_pty(master: BorrowedFd<'_>) -> io::Result<u32> {
    let unlock: libc::c_int = 0;
    // SAFETY: `master` is open; TIOCSPTLCK reads one int that outlives the
    // call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut number: libc::c_uint = 0;
    // SAFETY: `master` is open; TIOCGPTN writes one unsigned int into
    // `number`, which outlives the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(number)
}

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
pub const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;

/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
pub const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `bytes` into the kernel's entropy pool and credits them in full.
pub fn add_entropy(random: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let words = bytes.len().div_ceil(4);
    let mut info = vec![0u32; 2 + words];
    info[0] = (bytes.len() * 8) as u32;
    info[1] = bytes.len() as u32;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        info[2 + i] = u32::from_ne_bytes(word);
    }

    // SAFETY: `random` is open; `info` is laid out as `rand_pool_info` with
    // `buf_size` bytes of buffer after the header and outlives the call.
    let res = unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the kernel CRNG reseed from its pool now (`RNDRESEEDCRNG`).
pub fn reseed_crng(random: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `random` is open; RNDRESEEDCRNG takes no argument.
    let res = unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG, 0) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings the loopback interface up; the kernel then gives it 127.0.0.1.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: `ifreq` is plain old data, valid when zeroed.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }

    // SAFETY: `sock` is open and `req` outlives the call; SIOCGIFFLAGS fills
    // the flags member of the union.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just set the flags member, so reading it is valid.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS reads the name and the flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ioctl_numbers_match_the_kernel_headers() {
        let int2 = 2 * std::mem::size_of::<libc::c_int>();
        assert_eq!(
            RNDADDENTROPY,
            nix::request_code_write!(b'R', 0x03, int2) as libc::c_ulong
        );
        assert_eq!(
            RNDRESEEDCRNG,
            nix::request_code_none!(b'R', 0x07) as libc::c_ulong
        );
    }
}
