//! One VM's network namespace.

use crate::cmd::{self, NetError};
use crate::host::HostNetwork;
use crate::{GUEST_GATEWAY, GUEST_SUBNET};

/// Whether a VM's traffic may leave the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Outside addresses through NAT (the default, as in AWS).
    Internet,
    /// No route out.
    None,
}

/// How the guest is attached inside the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestLink {
    /// A tap device that QEMU, started in the namespace, opens.
    Tap,
    /// A veth whose peer goes to another namespace (for tests that stand in
    /// for a guest without a VM).
    Veth {
        /// The namespace the peer moves to.
        peer_netns: String,
    },
}

/// A VM's network namespace, its uplink to the host, and its guest link.
#[derive(Clone, Debug)]
pub struct VmNet {
    /// The namespace's name.
    pub netns: String,
    /// The guest link's name inside the namespace.
    pub guest_link: String,
    /// The host's end of the uplink.
    pub host_if: String,
    /// The host's uplink address.
    pub host_address: String,
    /// The namespace's uplink address.
    pub netns_address: String,
}

/// The name of the uplink inside every VM namespace.
const UPLINK: &str = "uplink";

impl VmNet {
    /// Creates the namespace of network slot `slot`, with its uplink and
    /// guest link, and routes and translation as `egress` says. A partly
    /// made namespace is removed when a step fails.
    ///
    /// # Errors
    ///
    /// Fails when a tool refuses (typically without root, or when the slot is
    /// already in use).
    pub async fn create(
        host: &HostNetwork,
        slot: u32,
        egress: Egress,
        link: GuestLink,
    ) -> Result<VmNet, NetError> {
        let (host_address, netns_address) = host.uplink_addresses(slot)?;
        let net = VmNet {
            netns: format!("{}-{slot}", host.prefix),
            guest_link: "tap0".to_owned(),
            host_if: format!("{}{slot}", host.prefix),
            host_address,
            netns_address,
        };
        cmd::ip(&["netns", "add", &net.netns]).await?;
        match net.configure(egress, &link).await {
            Ok(()) => Ok(net),
            Err(err) => {
                net.destroy().await;
                Err(err)
            }
        }
    }

    async fn configure(&self, egress: Egress, link: &GuestLink) -> Result<(), NetError> {
        let ns = self.netns.as_str();
        cmd::ip(&["-n", ns, "link", "set", "lo", "up"]).await?;

        // The uplink: a veth pair between the host and the namespace.
        let host_cidr = format!("{}/30", self.host_address);
        let ns_cidr = format!("{}/30", self.netns_address);
        cmd::ip(&[
            "link",
            "add",
            &self.host_if,
            "type",
            "veth",
            "peer",
            "name",
            UPLINK,
            "netns",
            ns,
        ])
        .await?;
        cmd::ip(&["addr", "add", &host_cidr, "dev", &self.host_if]).await?;
        cmd::ip(&["link", "set", &self.host_if, "up"]).await?;
        cmd::ip(&["-n", ns, "addr", "add", &ns_cidr, "dev", UPLINK]).await?;
        cmd::ip(&["-n", ns, "link", "set", UPLINK, "up"]).await?;

        // The guest link, with the guest's gateway address on our side.
        match link {
            GuestLink::Tap => {
                cmd::ip(&[
                    "-n",
                    ns,
                    "tuntap",
                    "add",
                    "dev",
                    &self.guest_link,
                    "mode",
                    "tap",
                ])
                .await?;
            }
            GuestLink::Veth { peer_netns } => {
                cmd::ip(&[
                    "-n",
                    ns,
                    "link",
                    "add",
                    &self.guest_link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    peer_netns,
                ])
                .await?;
            }
        }
        let gateway = format!("{GUEST_GATEWAY}/24");
        cmd::ip(&["-n", ns, "addr", "add", &gateway, "dev", &self.guest_link]).await?;
        cmd::ip(&["-n", ns, "link", "set", &self.guest_link, "up"]).await?;

        if egress == Egress::Internet {
            cmd::ip(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &self.host_address,
            ])
            .await?;
            cmd::sysctl(Some(ns), "net.ipv4.ip_forward", "1").await?;
            let script = format!(
                "table ip hearth {{\n    chain postrouting {{\n        type nat hook postrouting priority 100; policy accept;\n        ip saddr {GUEST_SUBNET} oifname \"{UPLINK}\" masquerade\n    }}\n}}\n"
            );
            cmd::nft(Some(ns), &script).await?;
        }
        Ok(())
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.netns.clone(),
        ]
    }

    /// Removes the namespace with everything in it; the host's end of the
    /// uplink goes with its peer.
    pub async fn destroy(&self) {
        let _ = cmd::ip(&["netns", "del", &self.netns]).await;
        let _ = cmd::ip(&["link", "del", &self.host_if]).await;
    }
}
