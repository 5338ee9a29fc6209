//! The per-VM supervisor ("shim") and its client.
//!
//! Each VM is owned by one shim process. The shim starts QEMU, holds the QMP
//! and agent connections, records the VM's state in its directory, and serves
//! any number of clients over a unix socket in that directory. It outlives the
//! command that started it, so a VM keeps running when the CLI exits, and a
//! restarted server finds it again through its directory.
//!
//! Clients speak the same multiplexed protocol as the agent: each stream opens
//! with a [`ShimRequest`]. Agent requests are relayed to the guest stream for
//! stream; VM requests (status, snapshot, stop) are answered by the shim.

#![forbid(unsafe_code)]

pub mod client;
pub mod launch;
pub mod layout;
mod network;
pub mod request;
mod server;
pub mod shell;

pub use client::{ClientError, ShimClient};
pub use layout::{VmConfig, VmDir, VmState, VmStatus};
pub use request::{ShimRequest, SnapshotResult};
pub use server::{run, ShimError};
