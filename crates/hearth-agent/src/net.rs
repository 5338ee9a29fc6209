//! `Network`: an interface with an address, a default route and DNS.
//!
//! The interface (virtio-net, `eth0`) appears once its driver, loaded at
//! boot, has probed the device; the agent waits briefly for it. Addresses and
//! the route are set with the classic interface ioctls (see [`crate::sys`]).
//!
//! DNS servers reach commands through `/etc/resolv.conf` without being
//! written into the root filesystem: the agent writes them to a file on the
//! `/dev/shm` tmpfs and bind-mounts it over `/etc/resolv.conf`. A mount is
//! never part of an export (`FsExport` does not cross mounts), so the image
//! keeps its own file. When the image has no `/etc/resolv.conf`, an empty one
//! is created as the mount point; it too stays out of exports.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_protocol::NetworkSpec;
use nix::mount::{mount, MsFlags};

use crate::sys;

/// The interface configured when the request names none.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// Where the DNS servers are written before the bind mount.
const RESOLV_SOURCE: &str = "/dev/shm/.hearth-resolv.conf";

/// The file commands read.
const RESOLV_TARGET: &str = "/etc/resolv.conf";

/// How long to wait for the interface to appear.
const INTERFACE_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors configuring the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A malformed address in the request.
    #[error("bad {what} {value:?}: expected {expected}")]
    BadAddress {
        /// Which field.
        what: &'static str,
        /// As given.
        value: String,
        /// The form expected.
        expected: &'static str,
    },
    /// The interface did not appear.
    #[error("network interface {0} does not exist (does the VM have a network device?)")]
    NoInterface(String),
    /// A step failed.
    #[error("{what}")]
    Step {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Step { what, source }
}

/// Applies `spec`: address, link up, default route, DNS.
///
/// # Errors
///
/// [`NetError`] naming the step that failed.
pub fn configure(spec: &NetworkSpec) -> Result<(), NetError> {
    let name = spec.interface.as_deref().unwrap_or(DEFAULT_INTERFACE);
    let (addr, netmask) = parse_cidr(&spec.address)?;
    let gateway = spec
        .gateway
        .as_deref()
        .map(|g| parse_ipv4("gateway", g))
        .transpose()?;
    let dns = spec
        .dns
        .iter()
        .map(|d| parse_ipv4("dns server", d))
        .collect::<Result<Vec<_>, _>>()?;

    wait_for_interface(name)?;
    sys::set_ipv4_address(name, addr, netmask).map_err(step(format!("set address of {name}")))?;
    sys::interface_up(name).map_err(step(format!("bring {name} up")))?;
    if let Some(gateway) = gateway {
        match sys::add_default_route(gateway) {
            // A second request finds the route in place.
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
            other => other.map_err(step(format!("add a default route via {gateway}")))?,
        }
    }
    if !dns.is_empty() {
        provide_dns(&dns)?;
    }
    Ok(())
}

/// Parses `a.b.c.d/len` into an address and its netmask.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), NetError> {
    let bad = || NetError::BadAddress {
        what: "address",
        value: text.to_owned(),
        expected: "an IPv4 address with a prefix length, such as 10.0.2.15/24",
    };
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ok((addr, Ipv4Addr::from(mask)))
}

fn parse_ipv4(what: &'static str, text: &str) -> Result<Ipv4Addr, NetError> {
    text.parse().map_err(|_| NetError::BadAddress {
        what,
        value: text.to_owned(),
        expected: "an IPv4 address",
    })
}

fn wait_for_interface(name: &str) -> Result<(), NetError> {
    let path = Path::new("/sys/class/net").join(name);
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() >= INTERFACE_TIMEOUT {
            return Err(NetError::NoInterface(name.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Makes `/etc/resolv.conf` name `servers`, by a bind mount over it.
fn provide_dns(servers: &[Ipv4Addr]) -> Result<(), NetError> {
    let text: String = servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect();
    std::fs::write(RESOLV_SOURCE, text).map_err(step(format!("write {RESOLV_SOURCE}")))?;

    // A second request only rewrites the file the mount shows.
    if is_mount_point(Path::new(RESOLV_TARGET)) {
        return Ok(());
    }
    if !Path::new("/etc").is_dir() {
        return Ok(());
    }
    if std::fs::symlink_metadata(RESOLV_TARGET).is_err() {
        std::fs::write(RESOLV_TARGET, b"").map_err(step(format!("create {RESOLV_TARGET}")))?;
    }
    // Limitation: an /etc/resolv.conf that is a dangling symlink gets no DNS servers.
    mount(
        Some(RESOLV_SOURCE),
        RESOLV_TARGET,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| NetError::Step {
        what: format!("bind {RESOLV_SOURCE} over {RESOLV_TARGET}"),
        source: io::Error::from(errno),
    })
}

/// Whether `path` lies on another filesystem than its directory.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(parent), Ok(meta)) = (path.parent(), std::fs::metadata(path)) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_give_address_and_netmask() {
        let (addr, mask) = parse_cidr("10.0.2.15/24").expect("cidr");
        assert_eq!(addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(mask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            parse_cidr("1.2.3.4/0").expect("cidr").1,
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            parse_cidr("1.2.3.4/32").expect("cidr").1,
            Ipv4Addr::BROADCAST
        );
        for bad in ["10.0.2.15", "10.0.2.15/33", "x/24", "10.0.2/24"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
