//! microVMs as shim-supervised QEMU VMs on this host.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use hearth_shim::launch;
use hearth_shim::{ShimClient, VmDir, VmStatus};

use hearth_net::HostNetwork;

use super::{Egress, Node, NodeError};
use crate::hooks::{self, Hook};
use crate::ids::MicrovmId;
use crate::pipeline::VmHost;

/// How long a stopped VM's shim and QEMU get to exit before they are
/// killed.
const SHIM_EXIT_GRACE: Duration = Duration::from_secs(10);

/// Waits, bounded, until neither the shim nor the QEMU that `dir` records
/// runs; whether they ended.
async fn processes_end(dir: &VmDir, grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let running = dir.read_state().is_ok_and(|state| {
            state
                .qemu_pid
                .into_iter()
                .chain([state.shim_pid])
                .any(|pid| dir.owns_process(pid))
        });
        if !running {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long an unused namespace of a VM unknown here must have existed before
/// it is taken for an orphan.
const ORPHAN_AGE: Duration = Duration::from_secs(120);

/// How long ago the namespace `netns` was made.
fn netns_age(netns: &str) -> Option<Duration> {
    let meta = std::fs::metadata(Path::new("/run/netns").join(netns)).ok()?;
    meta.modified().ok()?.elapsed().ok()
}

/// Runs microVMs under shims on this host.
#[derive(Clone, Debug)]
pub struct ShimNode {
    host: VmHost,
}

impl ShimNode {
    /// A node that launches VMs with `host`'s files and program.
    pub fn new(host: VmHost) -> Self {
        Self { host }
    }

    fn dir(&self, id: &str) -> VmDir {
        VmDir::new(&self.host.data, id)
    }

    /// Removes the network namespaces of VMs of this host's data directory
    /// whose processes are gone (a shim killed outright leaves its own), and
    /// those of VMs unknown here that no process has used for a while.
    /// Returns the VM ids whose namespace was removed.
    pub async fn remove_orphan_networks(&self) -> Vec<String> {
        let host = HostNetwork::default();
        let Ok(namespaces) = host.vm_namespaces().await else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for (vm_id, netns) in namespaces {
            if host.netns_in_use(&netns).await {
                continue;
            }
            let dir = self.dir(&vm_id);
            let orphan = if dir.root().exists() {
                !self.vm_running(&vm_id)
            } else {
                // Another hearth's VM may be starting in it: leave young ones.
                netns_age(&netns).is_some_and(|age| age > ORPHAN_AGE)
            };
            if orphan {
                host.remove_vm_netns(&vm_id).await;
                tracing::info!(vm_id, "orphan vm network removed");
                removed.push(vm_id);
            }
        }
        removed
    }

    fn vm_running(&self, vm_id: &str) -> bool {
        let dir = self.dir(vm_id);
        let Ok(state) = dir.read_state() else {
            return false;
        };
        state.status != VmStatus::Exited && dir.owns_process(state.shim_pid)
    }

    async fn client(&self, id: &MicrovmId) -> Result<ShimClient, NodeError> {
        ShimClient::connect(&self.dir(id.as_str()))
            .await
            .map_err(|source| NodeError::Unreachable {
                id: id.to_string(),
                source,
            })
    }
}

#[async_trait]
impl Node for ShimNode {
    async fn restore(
        &self,
        id: &MicrovmId,
        snapshot: &Path,
        egress: Egress,
    ) -> Result<(), NodeError> {
        let host = self.host.launch_host();
        let restored = launch::restore_with(&host, snapshot, id.as_str(), Some(egress)).await;
        if let Err(source) = restored {
            self.stop(id).await;
            return Err(NodeError::Start {
                id: id.to_string(),
                source,
            });
        }
        Ok(())
    }

    async fn call_hook(
        &self,
        id: &MicrovmId,
        port: u16,
        hook: Hook,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let client = self.client(id).await?;
        hooks::call(&client, port, hook, body, timeout)
            .await
            .map_err(|source| NodeError::Hook {
                hook: hook.name(),
                source,
            })
    }

    async fn suspend(&self, id: &MicrovmId, dest: &Path) -> Result<(), NodeError> {
        let client = self.client(id).await?;
        client
            .snapshot(dest, true)
            .await
            .map_err(|source| NodeError::Snapshot {
                id: id.to_string(),
                source,
            })?;
        drop(client);
        self.stop(id).await;
        Ok(())
    }

    async fn stop(&self, id: &MicrovmId) {
        self.discard_vm(id.as_str()).await;
    }

    fn is_running(&self, id: &MicrovmId) -> bool {
        self.vm_running(id.as_str())
    }

    fn has_exited(&self, id: &MicrovmId) -> bool {
        let dir = self.dir(id.as_str());
        let Ok(state) = dir.read_state() else {
            return true;
        };
        state.status == VmStatus::Exited
            || !dir.owns_process(state.shim_pid)
            || state.qemu_pid.is_some_and(|pid| !dir.owns_process(pid))
    }

    async fn discard_vm(&self, vm_id: &str) {
        if vm_id.is_empty() || vm_id.contains('/') {
            return;
        }
        let dir = self.dir(vm_id);
        if !dir.root().exists() {
            return;
        }
        let stopped = match ShimClient::connect(&dir).await {
            Ok(client) => client.stop().await.is_ok(),
            Err(_) => false,
        };
        if !stopped || !processes_end(&dir, SHIM_EXIT_GRACE).await {
            dir.kill_processes();
            processes_end(&dir, SHIM_EXIT_GRACE).await;
        }
        // A shim that did not stop its VM itself (killed, or gone before it
        // could) leaves the VM's network namespace behind.
        if !stopped || dir.network().exists() {
            HostNetwork::default().remove_vm_netns(vm_id).await;
        }
        // Only with its processes gone: a shim that exits cleans up paths
        // that a VM of the same id would use next.
        if let Err(error) = tokio::fs::remove_dir_all(dir.root()).await {
            tracing::warn!(vm_id, error = %error, "cannot remove vm directory");
        }
    }
}
