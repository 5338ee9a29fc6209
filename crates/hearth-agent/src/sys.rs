//! The few system calls that need `unsafe`, each behind a safe function.
//!
//! Everything else goes through `nix` or the standard library. The functions
//! here are ioctls and `prctl`s without a safe wrapper, and the hook that runs
//! in a freshly forked child before `exec`.

use std::io;
use std::net::Ipv4Addr;
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
    interface_up("lo")
}

/// A datagram socket for interface ioctls.
fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An `ifreq` naming `name`, with the rest zeroed.
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `ifreq` is plain old data, valid when zeroed.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// An IPv4 `sockaddr` (port 0).
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (dst, src) in data[2..6].iter_mut().zip(addr.octets()) {
        *dst = src as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// Brings a network interface up.
pub fn interface_up(name: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;

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

/// Gives an interface an IPv4 address and netmask.
pub fn set_ipv4_address(name: &str, addr: Ipv4Addr, netmask: Ipv4Addr) -> io::Result<()> {
    let sock = inet_socket()?;
    for (request, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, netmask)] {
        let mut req = ifreq_for(name)?;
        req.ifr_ifru.ifru_addr = sockaddr_v4(value);
        // SAFETY: `sock` is open and `req` outlives the call; both requests
        // read the name and one `sockaddr` of the union.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The kernel's `struct rtentry` (`<net/route.h>`), which libc does not
/// define for glibc targets.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `RTF_UP | RTF_GATEWAY`.
const RTF_UP_GATEWAY: libc::c_ushort = 0x0001 | 0x0002;

/// Adds a default route through `gateway`.
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let sock = inet_socket()?;
    let route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_v4(gateway),
        rt_genmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_flags: RTF_UP_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: `sock` is open and `route` is laid out as the kernel's
    // `rtentry` and outlives the call; SIOCADDRT only reads it, and its null
    // device pointer means "pick the interface by the gateway".
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &route) } < 0 {
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

    #[test]
    fn rtentry_has_the_kernels_size() {
        // 8 + 3 * 16 + 2 + 2 + 4 (padding) + 8 + 8 + 2 + 6 (padding) + 8 + 8 + 8 + 2 + 6.
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }

    #[test]
    fn ipv4_sockaddrs_hold_the_address_after_the_port() {
        let addr = sockaddr_v4(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(addr.sa_family, libc::AF_INET as libc::sa_family_t);
        let bytes: Vec<u8> = addr.sa_data[..6].iter().map(|b| *b as u8).collect();
        assert_eq!(bytes, vec![0, 0, 10, 0, 2, 15]);
    }
}
