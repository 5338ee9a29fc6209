//! microVMs as shim-supervised QEMU VMs on this host.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use hearth_shim::launch;
use hearth_shim::{ShimClient, VmDir, VmStatus};

use super::{Node, NodeError};
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
    async fn restore(&self, id: &MicrovmId, snapshot: &Path) -> Result<(), NodeError> {
        let host = self.host.launch_host();
        if let Err(source) = launch::restore_as(&host, snapshot, id.as_str()).await {
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
        let dir = self.dir(id.as_str());
        let Ok(state) = dir.read_state() else {
            return false;
        };
        state.status != VmStatus::Exited && dir.owns_process(state.shim_pid)
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
        // Only with its processes gone: a shim that exits cleans up paths
        // that a VM of the same id would use next.
        if let Err(error) = tokio::fs::remove_dir_all(dir.root()).await {
            tracing::warn!(vm_id, error = %error, "cannot remove vm directory");
        }
    }
}
