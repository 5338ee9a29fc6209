//! Per-VM networks: each VM's network lives in a network namespace of its
//! own.
//!
//! ```text
//!  guest 10.0.2.15 ──tap0── [ VM namespace ] ──uplink (veth)── host ──▶ outside
//!                   10.0.2.2   NAT to 10.201.x.2        10.201.x.1   NAT
//! ```
//!
//! Every guest sees the same addresses (10.0.2.15/24, gateway 10.0.2.2, DNS
//! server 10.0.2.3, forwarded to the host's), so a
//! snapshot restored anywhere keeps a working network configuration in its
//! memory. Its namespace translates the guest's traffic to the namespace's
//! uplink address; the host forwards it outside and translates it again.
//!
//! The host's rules (an nftables table of ours) drop whatever a VM namespace
//! sends to the host's own addresses and whatever one sends to another, so a
//! guest reaches neither the host's services nor another microVM. A VM
//! without egress has no route out of its namespace at all.
//!
//! The work is done with iproute2 (`ip`) and nftables (`nft`), the tools
//! that own these kernel interfaces.

#![forbid(unsafe_code)]

mod cmd;
mod host;
mod vm;

pub use cmd::NetError;
pub use host::HostNetwork;
pub use vm::{host_dns_server, Egress, GuestLink, VmNet};

/// The guest's address and prefix inside every VM network.
pub const GUEST_ADDRESS: &str = "10.0.2.15/24";

/// The guest's gateway: the VM namespace's end of the guest link.
pub const GUEST_GATEWAY: &str = "10.0.2.2";

/// The guest's DNS server: the VM namespace forwards queries to it on to the
/// host's own DNS server.
pub const GUEST_DNS: &str = "10.0.2.3";

/// The subnet of the guest links.
pub const GUEST_SUBNET: &str = "10.0.2.0/24";
