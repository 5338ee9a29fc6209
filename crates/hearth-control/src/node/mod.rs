//! The node seam: what the control plane asks of the machine that runs
//! microVMs. [`ShimNode`] runs each microVM under its own shim on this
//! host; another backend (a remote node, a fake for tests) implements the
//! same trait.
//!
//! A microVM's VM has the microVM's id, so its directory is
//! `<data>/vms/<microvm-id>` and its guest's hostname is the id.

mod shim;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use crate::hooks::{Hook, HookError};
use crate::ids::MicrovmId;

pub use hearth_net::Egress;
pub use shim::ShimNode;

/// The egress connector that lets a microVM reach the internet.
pub const INTERNET_EGRESS: &str = "INTERNET_EGRESS";

/// Where a microVM's traffic may go, from its `egressNetworkConnectors`:
/// the internet when they are not given (the default) or name
/// `INTERNET_EGRESS` (by name or by its managed connector's ARN); nowhere
/// for an empty list.
pub fn egress_of(connectors: Option<&[String]>) -> Egress {
    let internet = |c: &String| {
        c == INTERNET_EGRESS
            || c.strip_suffix(INTERNET_EGRESS).is_some_and(|arn| {
                arn.starts_with("arn:aws:lambda:")
                    && arn.ends_with(":aws:network-connector:aws-network-connector:")
            })
    };
    match connectors {
        None => Egress::Internet,
        Some(list) if list.iter().any(internet) => Egress::Internet,
        Some(_) => Egress::None,
    }
}

/// Errors of node operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The VM's files could not be made.
    #[error("cannot prepare vm {id}: {detail}")]
    Prepare {
        /// The VM.
        id: String,
        /// What failed.
        detail: String,
    },
    /// The VM did not start.
    #[error("vm {id} did not start")]
    Start {
        /// The VM.
        id: String,
        /// Why.
        #[source]
        source: hearth_shim::launch::LaunchError,
    },
    /// The VM's shim does not answer.
    #[error("vm {id} is not reachable")]
    Unreachable {
        /// The VM.
        id: String,
        /// Why.
        #[source]
        source: hearth_shim::ClientError,
    },
    /// A hook did not answer 200.
    #[error("{hook} hook failed")]
    Hook {
        /// The hook.
        hook: &'static str,
        /// What happened.
        #[source]
        source: HookError,
    },
    /// A snapshot could not be taken.
    #[error("snapshot of vm {id} failed")]
    Snapshot {
        /// The VM.
        id: String,
        /// Why.
        #[source]
        source: hearth_shim::ClientError,
    },
}

/// Runs microVMs.
#[async_trait]
pub trait Node: Send + Sync + 'static {
    /// Starts microVM `id` from the snapshot directory `snapshot` and
    /// returns once its agent answers (and the guest has fresh entropy,
    /// clock and hostname, and its network, in a namespace of its own with
    /// `egress`). A VM that did not start leaves nothing behind.
    async fn restore(
        &self,
        id: &MicrovmId,
        snapshot: &Path,
        egress: Egress,
    ) -> Result<(), NodeError>;

    /// Calls a lifecycle hook in microVM `id`; `Ok` only for a 200.
    async fn call_hook(
        &self,
        id: &MicrovmId,
        port: u16,
        hook: Hook,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(), NodeError>;

    /// Snapshots microVM `id` into the directory `dest`, stops it and
    /// removes its VM directory.
    async fn suspend(&self, id: &MicrovmId, dest: &Path) -> Result<(), NodeError>;

    /// Stops microVM `id` if it runs and removes its VM directory;
    /// stopping one that is gone succeeds.
    async fn stop(&self, id: &MicrovmId);

    /// Whether microVM `id`'s VM is running.
    fn is_running(&self, id: &MicrovmId) -> bool;

    /// Whether microVM `id`'s VM has died on its own: its supervisor or its
    /// VM process is gone. A cheap check, made often.
    fn has_exited(&self, id: &MicrovmId) -> bool {
        !self.is_running(id)
    }

    /// Stops a VM that is not a microVM (a build's) by its VM id and
    /// removes its directory and its network namespace.
    async fn discard_vm(&self, vm_id: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_is_the_internet_unless_an_empty_list_says_none() {
        assert_eq!(egress_of(None), Egress::Internet);
        let internet = vec![INTERNET_EGRESS.to_owned()];
        assert_eq!(egress_of(Some(&internet)), Egress::Internet);
        let arn = vec![
            "arn:aws:lambda:us-east-1:aws:network-connector:aws-network-connector:INTERNET_EGRESS"
                .to_owned(),
        ];
        assert_eq!(egress_of(Some(&arn)), Egress::Internet);
        let custom = vec![
            "arn:aws:lambda:us-east-1:000000000000:network-connector:vpc:INTERNET_EGRESS"
                .to_owned(),
        ];
        assert_eq!(egress_of(Some(&custom)), Egress::None);
        assert_eq!(egress_of(Some(&[])), Egress::None);
    }
}
