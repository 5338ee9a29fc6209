//! What clients ask a shim.

use std::path::PathBuf;

use hearth_protocol::Request;
use serde::{Deserialize, Serialize};

/// The payload that opens a stream to a shim.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ShimRequest {
    /// Answers `Control::Ok` with the VM's [`crate::VmState`].
    Status,
    /// Relays an agent request; the stream then behaves as the agent's.
    Agent {
        /// The request for the agent.
        request: Request,
    },
    /// Pauses the VM, writes a snapshot directory at `path`, then either
    /// continues the VM or stops it. Answers with a [`SnapshotResult`].
    Snapshot {
        /// Where the snapshot directory is written (atomically).
        path: PathBuf,
        /// Stop the VM after the snapshot instead of continuing it.
        stop: bool,
    },
    /// Stops the VM: the guest powers off, or QEMU is ended after a grace
    /// period. Answers once the VM has exited.
    Stop,
}

/// What a snapshot took.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotResult {
    /// Size of the memory and device state in bytes.
    pub memory_bytes: u64,
    /// Size of the disk image in bytes.
    pub disk_bytes: u64,
    /// Milliseconds the VM was paused.
    pub paused_ms: u64,
    /// Milliseconds from request to a written snapshot.
    pub total_ms: u64,
}
