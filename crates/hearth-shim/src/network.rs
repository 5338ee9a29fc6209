//! The VM's network: a namespace of its own made before QEMU starts in it,
//! the guest's `eth0` configured after every boot and restore, and the
//! namespace removed once QEMU is gone.
//!
//! Every guest gets the same addresses (`hearth_net::GUEST_ADDRESS`, gateway
//! `hearth_net::GUEST_GATEWAY`), so a snapshot's memory is valid in any
//! namespace; a restored VM gets a fresh namespace named after its own id.

use hearth_net::{Egress, GuestLink, HostNetwork, NetError, VmNet};
use hearth_protocol::NetworkSpec;

use crate::layout::VmDir;

/// Makes the namespace of the VM in `dir` and records it in
/// `network.json`. The host's rules are installed first if missing, so no
/// guest ever runs without them.
///
/// # Errors
///
/// Fails when the host's rules or the namespace cannot be made (typically
/// without root).
pub async fn create(dir: &VmDir, egress: Egress) -> Result<VmNet, NetError> {
    let host = HostNetwork::default();
    host.ensure().await?;
    let net = VmNet::create_for(&host, &dir.id(), egress, GuestLink::Tap).await?;
    if let Ok(json) = serde_json::to_vec_pretty(&net) {
        if let Err(error) = std::fs::write(dir.network(), json) {
            tracing::warn!(error = %error, "cannot record the vm network");
        }
    }
    Ok(net)
}

/// Removes the namespace and its record.
pub async fn destroy(dir: &VmDir, net: &VmNet) {
    net.destroy().await;
    let _ = std::fs::remove_file(dir.network());
}

/// What the agent is told: the same addresses in every namespace.
pub fn guest_spec() -> NetworkSpec {
    NetworkSpec {
        interface: None,
        address: hearth_net::GUEST_ADDRESS.to_owned(),
        gateway: Some(hearth_net::GUEST_GATEWAY.to_owned()),
        dns: vec![hearth_net::GUEST_DNS.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_gets_the_same_addresses() {
        let spec = guest_spec();
        assert_eq!(spec.address, "10.0.2.15/24");
        assert_eq!(spec.gateway.as_deref(), Some("10.0.2.2"));
        assert_eq!(spec.dns, vec!["10.0.2.3".to_owned()]);
    }
}
