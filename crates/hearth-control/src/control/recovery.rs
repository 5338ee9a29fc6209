//! Reading the state back after a start: what a stop or a crash left
//! behind is settled before the API answers.

use std::sync::Arc;

use hearth_api::model::*;

use super::Inner;
use crate::store::StoreError;

impl Inner {
    /// Settles builds and microVMs that a stop or crash interrupted.
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        self.fail_unfinished_builds("the server stopped during the build")
            .await?;

        for row in self.store.microvms()? {
            let id = row.microvm_id.clone();
            let reason = match row.state {
                MicrovmState::Terminated => continue,
                MicrovmState::Running if self.node.is_running(&id) => {
                    tracing::info!(microvm_id = %id, "microvm still running; reattached");
                    continue;
                }
                MicrovmState::Suspended
                    if row.suspended_snapshot.as_ref().is_some_and(|p| p.exists()) =>
                {
                    continue
                }
                MicrovmState::Running => "VM_EXITED",
                MicrovmState::Suspended => "SNAPSHOT_LOST",
                MicrovmState::Terminating => "USER_INITIATED",
                MicrovmState::Pending | MicrovmState::Suspending => "SERVER_RESTARTED",
            };
            tracing::warn!(microvm_id = %id, state = %row.state, reason, "settling microvm after restart");
            let moved = self.store.move_microvm(
                &id,
                &[row.state],
                MicrovmState::Terminating,
                Some(reason),
                Timestamp::now(),
            )?;
            if moved || row.state == MicrovmState::Terminating {
                if let Some(row) = self.store.microvm(&id)? {
                    self.finish_termination(&row).await;
                }
            }
        }
        Ok(())
    }

    /// Fails every build that had not finished, stopping its VM and freeing
    /// its files.
    pub(super) async fn fail_unfinished_builds(&self, reason: &str) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for build in self.store.unfinished_builds()? {
            if let Some(vm_id) = &build.vm_id {
                self.node.discard_vm(vm_id).await;
                self.store.set_build_vm(&build.build_id, None)?;
            }
            self.store
                .set_build_state(&build.build_id, BuildState::Failed, Some(reason), now)?;
            let _ = tokio::fs::remove_dir_all(self.config.build_dir(&build.build_id)).await;
            let version_dir = self.config.version_dir(build.image_id, build.version);
            let _ =
                tokio::fs::remove_dir_all(version_dir.join(format!("snapshot-{}", build.build_id)))
                    .await;

            let Some(version) = self.store.version(build.image_id, build.version)? else {
                continue;
            };
            if matches!(
                version.state,
                MicrovmImageVersionState::Pending | MicrovmImageVersionState::InProgress
            ) {
                self.store.set_version_state(
                    build.image_id,
                    build.version,
                    MicrovmImageVersionState::Failed,
                    Some(reason),
                    now,
                )?;
            }
            if let Some(image) = self.store.image(build.image_id)? {
                let settled = match image.state {
                    MicrovmImageState::Creating => Some(MicrovmImageState::CreateFailed),
                    MicrovmImageState::Updating => Some(MicrovmImageState::UpdateFailed),
                    _ => None,
                };
                if let Some(state) = settled {
                    self.store.set_image_state(build.image_id, state, now)?;
                }
            }
            tracing::warn!(build_id = %build.build_id, reason, "build failed on restart");
        }
        Ok(())
    }
}
