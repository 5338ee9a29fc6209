//! The host's side: forwarding, translation, and the rules that keep guests
//! away from the host and from each other.

use crate::cmd::{self, NetError};

/// The host's part of every VM network, named so that several hearths (or
/// tests) on one host keep apart.
#[derive(Clone, Debug)]
pub struct HostNetwork {
    /// Prefix of every interface and namespace name (at most 6 characters).
    pub prefix: String,
    /// The nftables table holding the host's rules.
    pub table: String,
    /// The subnet uplinks are numbered from (a /16).
    pub uplinks: [u8; 2],
}

impl Default for HostNetwork {
    fn default() -> HostNetwork {
        HostNetwork {
            prefix: "hvm".to_owned(),
            table: "hearth".to_owned(),
            uplinks: [10, 201],
        }
    }
}

impl HostNetwork {
    /// The uplink subnet, e.g. `10.201.0.0/16`.
    pub fn uplink_subnet(&self) -> String {
        format!("{}.{}.0.0/16", self.uplinks[0], self.uplinks[1])
    }

    /// Installs (or replaces) the host's rules and turns forwarding on.
    ///
    /// # Errors
    ///
    /// Fails when `nft` or `sysctl` refuse, typically without root.
    pub async fn install(&self) -> Result<(), NetError> {
        let links = format!("{}*", self.prefix);
        // One transaction: the table is made if missing, dropped and made
        // anew, so running guests are never without their rules.
        let script = format!(
            r#"table inet {table}
delete table inet {table}
table inet {table} {{
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "{links}" drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "{links}" oifname "{links}" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {subnet} oifname != "{links}" masquerade
    }}
}}
"#,
            table = self.table,
            subnet = self.uplink_subnet(),
        );
        cmd::nft(None, &script).await?;
        cmd::sysctl(None, "net.ipv4.ip_forward", "1").await
    }

    /// Installs the host's rules unless they are in place already.
    ///
    /// # Errors
    ///
    /// As [`HostNetwork::install`].
    pub async fn ensure(&self) -> Result<(), NetError> {
        let listed = cmd::run("nft", &["list", "table", "inet", &self.table], None).await;
        match listed {
            Ok(_) => Ok(()),
            Err(_) => self.install().await,
        }
    }

    /// The namespace of the VM `vm_id`: `<prefix>-<vm_id>`.
    pub fn netns_of(&self, vm_id: &str) -> String {
        format!("{}-{vm_id}", self.prefix)
    }

    /// The VM ids that have a namespace on this host, with the namespace's
    /// name, those of every hearth using this prefix.
    ///
    /// # Errors
    ///
    /// Fails when `ip` cannot be run.
    pub async fn vm_namespaces(&self) -> Result<Vec<(String, String)>, NetError> {
        let listed = cmd::ip(&["netns", "list"]).await?;
        let head = format!("{}-", self.prefix);
        Ok(listed
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|name| {
                let id = name.strip_prefix(&head)?;
                Some((id.to_owned(), name.to_owned()))
            })
            .collect())
    }

    /// Whether any process runs in the namespace `netns`.
    pub async fn netns_in_use(&self, netns: &str) -> bool {
        match cmd::ip(&["netns", "pids", netns]).await {
            Ok(pids) => !pids.trim().is_empty(),
            Err(_) => false,
        }
    }

    /// Removes the namespace of VM `vm_id`, if there is one, with its
    /// uplink and guest link.
    pub async fn remove_vm_netns(&self, vm_id: &str) {
        let netns = self.netns_of(vm_id);
        let _ = cmd::ip(&["-n", &netns, "link", "del", crate::vm::UPLINK]).await;
        if cmd::ip(&["netns", "del", &netns]).await.is_ok() {
            tracing::info!(%netns, "vm network removed");
        }
    }

    /// Removes the host's rules (forwarding stays as it is: other software
    /// may rely on it).
    pub async fn remove(&self) {
        let _ = cmd::nft(None, &format!("delete table inet {}\n", self.table)).await;
    }

    /// The host's and the namespace's uplink addresses of a slot.
    ///
    /// # Errors
    ///
    /// Fails for slots beyond the /16.
    pub fn uplink_addresses(&self, slot: u32) -> Result<(String, String), NetError> {
        if slot >= 16384 {
            return Err(NetError::Slot(slot));
        }
        let base = slot * 4;
        let (hi, lo) = (base / 256, base % 256);
        let [a, b] = self.uplinks;
        Ok((
            format!("{a}.{b}.{hi}.{}", lo + 1),
            format!("{a}.{b}.{hi}.{}", lo + 2),
        ))
    }
}
