//! One VM's network namespace.

use crate::cmd::{self, NetError};
use crate::host::HostNetwork;
use crate::{GUEST_DNS, GUEST_GATEWAY, GUEST_SUBNET};

/// Whether a VM's traffic may leave the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
pub(crate) const UPLINK: &str = "uplink";

/// The namespace's own rules: the guest's traffic leaves translated to the
/// uplink's address, and DNS queries to [`GUEST_DNS`] go to `upstream`.
fn namespace_rules(upstream: Option<&str>) -> String {
    let dns = match upstream {
        Some(server) => format!(
            "    chain prerouting {{\n        type nat hook prerouting priority -100; policy accept;\n        ip daddr {GUEST_DNS} udp dport 53 dnat to {server}\n        ip daddr {GUEST_DNS} tcp dport 53 dnat to {server}\n    }}\n"
        ),
        None => String::new(),
    };
    format!(
        "table ip hearth {{\n{dns}    chain postrouting {{\n        type nat hook postrouting priority 100; policy accept;\n        ip saddr {GUEST_SUBNET} oifname \"{UPLINK}\" masquerade\n    }}\n}}\n"
    )
}

/// The DNS server guests' queries are forwarded to: `$HEARTH_DNS_SERVER` when
/// set, else the first of the host's (`/etc/resolv.conf`) that a guest can be
/// sent to: IPv4 and not on the host's loopback.
// Limitation: a host whose only resolvers are on its loopback (such as
// systemd-resolved's 127.0.0.53) or on its own addresses gives its guests no DNS.
pub fn host_dns_server() -> Option<String> {
    if let Some(server) = std::env::var_os("HEARTH_DNS_SERVER") {
        let server = server.to_string_lossy();
        return server
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| a.to_string());
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    outside_nameservers(&resolv).into_iter().next()
}

/// The IPv4 nameservers of a `resolv.conf` that are not on the loopback.
fn outside_nameservers(resolv: &str) -> Vec<String> {
    resolv
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::Ipv4Addr>().ok())
        .filter(|addr| !addr.is_loopback() && !addr.is_unspecified())
        .map(|addr| addr.to_string())
        .collect()
}

/// The hardware address of the guest's gateway (locally administered).
const GATEWAY_MAC: &str = "02:68:65:61:72:02";

/// Network slots: /30 uplinks in a /16.
const SLOTS: u32 = 16384;

/// Where the search for a free slot starts: spread by the VM's id, so that
/// VMs started at once rarely try the same slot.
fn first_slot(vm_id: &str) -> u32 {
    // FNV-1a: stable and good enough to spread.
    let hash = vm_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % SLOTS
}

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
        let net = VmNet::in_slot(host, format!("{}-{slot}", host.prefix), slot)?;
        cmd::ip(&["netns", "add", &net.netns]).await?;
        let made = match net.add_uplink().await {
            Ok(()) => net.configure(egress, &link).await,
            Err(err) => Err(err),
        };
        match made {
            Ok(()) => Ok(net),
            Err(err) => {
                net.destroy().await;
                Err(err)
            }
        }
    }

    /// Creates the namespace of the VM `vm_id` ([`HostNetwork::netns_of`]),
    /// in the first free network slot, with its uplink and guest link, and
    /// routes and translation as `egress` says. A namespace left by an
    /// earlier VM of that id is replaced; a partly made one is removed when
    /// a step fails.
    ///
    /// Slots are claimed by creating the uplink, which the kernel refuses
    /// for a name in use, so VMs started at once never share one.
    ///
    /// # Errors
    ///
    /// Fails when a tool refuses (typically without root) or every slot is
    /// taken.
    pub async fn create_for(
        host: &HostNetwork,
        vm_id: &str,
        egress: Egress,
        link: GuestLink,
    ) -> Result<VmNet, NetError> {
        let netns = host.netns_of(vm_id);
        let _ = cmd::ip(&["netns", "del", &netns]).await;
        cmd::ip(&["netns", "add", &netns]).await?;
        let start = first_slot(vm_id);
        let mut last = None;
        for step in 0..SLOTS {
            let slot = (start + step) % SLOTS;
            let net = VmNet::in_slot(host, netns.clone(), slot)?;
            match net.add_uplink().await {
                Ok(()) => {
                    return match net.configure(egress, &link).await {
                        Ok(()) => {
                            tracing::info!(netns = %net.netns, host_if = %net.host_if, ?egress, "vm network created");
                            Ok(net)
                        }
                        Err(err) => {
                            net.destroy().await;
                            Err(err)
                        }
                    };
                }
                Err(NetError::Failed { stderr, .. }) if stderr.contains("exists") => continue,
                Err(err) => {
                    last = Some(err);
                    break;
                }
            }
        }
        let _ = cmd::ip(&["netns", "del", &netns]).await;
        Err(last.unwrap_or(NetError::Slot(SLOTS)))
    }

    fn in_slot(host: &HostNetwork, netns: String, slot: u32) -> Result<VmNet, NetError> {
        let (host_address, netns_address) = host.uplink_addresses(slot)?;
        Ok(VmNet {
            netns,
            guest_link: "tap0".to_owned(),
            host_if: format!("{}{slot}", host.prefix),
            host_address,
            netns_address,
        })
    }

    /// The uplink: a veth pair between the host and the namespace.
    async fn add_uplink(&self) -> Result<(), NetError> {
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
            &self.netns,
        ])
        .await
        .map(drop)
    }

    async fn configure(&self, egress: Egress, link: &GuestLink) -> Result<(), NetError> {
        // Two batches of `ip` commands (the host's end, then the namespace),
        // rather than a process each: this runs before every VM starts.
        let host_cidr = format!("{}/30", self.host_address);
        cmd::ip_batch(
            None,
            &[
                format!("addr add {host_cidr} dev {}", self.host_if),
                format!("link set {} up", self.host_if),
            ],
        )
        .await?;

        let tap = &self.guest_link;
        let mut lines = vec![
            "link set lo up".to_owned(),
            format!("addr add {}/30 dev {UPLINK}", self.netns_address),
            format!("link set {UPLINK} up"),
            // The guest link, with the guest's gateway and DNS addresses on
            // our side.
            match link {
                GuestLink::Tap => format!("tuntap add dev {tap} mode tap"),
                GuestLink::Veth { peer_netns } => {
                    format!("link add {tap} type veth peer name eth0 netns {peer_netns}")
                }
            },
            // The same hardware address in every namespace too: a restored
            // guest keeps the gateway's in its neighbour cache.
            format!("link set {tap} address {GATEWAY_MAC}"),
            format!("addr add {GUEST_GATEWAY}/24 dev {tap}"),
            format!("addr add {GUEST_DNS}/24 dev {tap}"),
            format!("link set {tap} up"),
        ];
        if egress == Egress::Internet {
            lines.push(format!("route add default via {}", self.host_address));
        }
        cmd::ip_batch(Some(&self.netns), &lines).await?;

        if egress == Egress::Internet {
            cmd::sysctl(Some(&self.netns), "net.ipv4.ip_forward", "1").await?;
            let rules = namespace_rules(host_dns_server().as_deref());
            cmd::nft(Some(&self.netns), &rules).await?;
        }
        Ok(())
    }

    /// [`VmNet::destroy`] for callers that cannot wait (a `Drop`).
    pub fn destroy_blocking(&self) {
        let run = |args: &[&str]| {
            let _ = std::process::Command::new("ip")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        run(&["-n", &self.netns, "link", "del", UPLINK]);
        run(&["netns", "del", &self.netns]);
        tracing::info!(netns = %self.netns, "vm network removed");
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
        // The uplink is deleted from inside the namespace: once the namespace
        // is gone, the host-side name may already belong to another VM.
        let _ = cmd::ip(&["-n", &self.netns, "link", "del", UPLINK]).await;
        let _ = cmd::ip(&["netns", "del", &self.netns]).await;
        tracing::info!(netns = %self.netns, "vm network removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_ipv6_nameservers_are_left_out() {
        let resolv = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch x\nnameserver 198.51.100.9 \n";
        assert_eq!(
            outside_nameservers(resolv),
            vec!["192.0.2.53".to_owned(), "198.51.100.9".to_owned()]
        );
    }

    #[test]
    fn dns_is_forwarded_only_when_there_is_a_server() {
        let with = namespace_rules(Some("192.0.2.53"));
        assert!(with.contains("ip daddr 10.0.2.3 udp dport 53 dnat to 192.0.2.53"));
        assert!(with.contains("masquerade"));
        let without = namespace_rules(None);
        assert!(!without.contains("dnat"));
        assert!(without.contains("masquerade"));
    }

    #[test]
    fn slots_are_spread_by_id_and_stay_in_range() {
        assert_ne!(first_slot("vm-000000000001"), first_slot("vm-000000000002"));
        assert!(first_slot("anything") < SLOTS);
        assert_eq!(first_slot("vm-a"), first_slot("vm-a"));
    }
}
