//! The tasks that move microVMs through their states: start (restore and
//! the `run` hook), suspend, resume, terminate, and the lifetime timers.
//!
//! Each task holds its microVM's lock, checks that the microVM is still in
//! the state it was started for, and moves it on with a conditional update.
//! A failure at any step terminates the microVM with a `stateReason` code
//! (the model allows no spaces in it); the detail goes to the log.

use std::sync::Arc;
use std::time::Duration;

use hearth_api::model::*;

use super::Inner;
use crate::events::{self, MicrovmEvent};
use crate::hooks::Hook;
use crate::ids::MicrovmId;
use crate::store::{MicrovmRow, StoreError};

/// A runtime hook's timeout when the image does not set one.
const DEFAULT_RUNTIME_HOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// The states from which a microVM can still be terminated.
const LIVE: &[MicrovmState] = &[
    MicrovmState::Pending,
    MicrovmState::Running,
    MicrovmState::Suspending,
    MicrovmState::Suspended,
];

impl Inner {
    /// Restores a PENDING microVM from its version's snapshot, calls its
    /// `run` hook, and moves it to RUNNING.
    pub(super) async fn start_microvm(self: Arc<Self>, id: MicrovmId) {
        let lock = self.microvm_lock(id.as_str());
        let _held = lock.lock().await;
        let Some(row) = self.pending(&id) else { return };
        let Ok(Some(version)) = self.store.version(row.image_id, row.image_version) else {
            return self
                .fail(&id, "IMAGE_VERSION_GONE", "its version is gone")
                .await;
        };
        let Some(snapshot) = version.snapshot_dir.clone() else {
            return self
                .fail(&id, "IMAGE_VERSION_GONE", "its version has no snapshot")
                .await;
        };

        if let Err(error) = self.node.restore(&id, &snapshot).await {
            return self.fail(&id, "MICROVM_START_FAILED", &chain(&error)).await;
        }
        if let Some((port, timeout)) = runtime_hook(&version.config, Hook::Run) {
            let payload = row.request.run_hook_payload.clone().unwrap_or_default();
            let called = self
                .node
                .call_hook(&id, port, Hook::Run, payload.as_bytes(), timeout)
                .await;
            if let Err(error) = called {
                return self.fail(&id, "RUN_HOOK_FAILED", &chain(&error)).await;
            }
        }

        let moved = self.store.move_microvm(
            &id,
            &[MicrovmState::Pending],
            MicrovmState::Running,
            None,
            Timestamp::now(),
        );
        if matches!(moved, Ok(true)) {
            events::microvm(MicrovmEvent::Started, id.as_str(), None);
        }
    }

    /// Suspends a SUSPENDING microVM: the `suspend` hook, then a snapshot
    /// of memory and disk, then SUSPENDED.
    pub(super) async fn suspend_task(self: Arc<Self>, id: MicrovmId) {
        let lock = self.microvm_lock(id.as_str());
        let _held = lock.lock().await;
        let Some(row) = self.in_state(&id, MicrovmState::Suspending) else {
            return;
        };
        let Some(config) = self.version_config(&row) else {
            return self
                .fail(&id, "IMAGE_VERSION_GONE", "its version is gone")
                .await;
        };
        if let Some((port, timeout)) = runtime_hook(&config, Hook::Suspend) {
            let called = self
                .node
                .call_hook(&id, port, Hook::Suspend, b"", timeout)
                .await;
            if let Err(error) = called {
                tracing::warn!(microvm_id = %id, error = %chain(&error), "suspend hook failed; suspending anyway");
            }
        }

        let dest = self.config.suspended_dir(id.as_str());
        let _ = tokio::fs::remove_dir_all(&dest).await;
        if let Some(parent) = dest.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        if let Err(error) = self.node.suspend(&id, &dest).await {
            return self.fail(&id, "SUSPEND_FAILED", &chain(&error)).await;
        }
        let recorded = self
            .store
            .set_suspended_snapshot(&id, Some(&dest))
            .and_then(|()| {
                self.store.move_microvm(
                    &id,
                    &[MicrovmState::Suspending],
                    MicrovmState::Suspended,
                    None,
                    Timestamp::now(),
                )
            });
        match recorded {
            Ok(true) => events::microvm(MicrovmEvent::Suspended, id.as_str(), None),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(microvm_id = %id, error = %error, "cannot record suspend")
            }
        }
    }

    /// Resumes a microVM that ResumeMicrovm moved from SUSPENDED to PENDING:
    /// a restore from its own snapshot, then the `resume` hook.
    pub(super) async fn resume_task(self: Arc<Self>, id: MicrovmId) {
        let lock = self.microvm_lock(id.as_str());
        let _held = lock.lock().await;
        let Some(row) = self.pending(&id) else { return };
        let Some(snapshot) = row.suspended_snapshot.clone() else {
            return self
                .fail(&id, "SNAPSHOT_LOST", "no suspended snapshot")
                .await;
        };
        if let Err(error) = self.node.restore(&id, &snapshot).await {
            return self.fail(&id, "RESUME_FAILED", &chain(&error)).await;
        }
        let _ = tokio::fs::remove_dir_all(&snapshot).await;
        if let Err(error) = self.store.set_suspended_snapshot(&id, None) {
            tracing::error!(microvm_id = %id, error = %error, "cannot record resume");
        }

        if let Some((port, timeout)) = self
            .version_config(&row)
            .and_then(|config| runtime_hook(&config, Hook::Resume))
        {
            let called = self
                .node
                .call_hook(&id, port, Hook::Resume, b"", timeout)
                .await;
            if let Err(error) = called {
                return self.fail(&id, "RESUME_HOOK_FAILED", &chain(&error)).await;
            }
        }
        let moved = self.store.move_microvm(
            &id,
            &[MicrovmState::Pending],
            MicrovmState::Running,
            None,
            Timestamp::now(),
        );
        if matches!(moved, Ok(true)) {
            events::microvm(MicrovmEvent::Resumed, id.as_str(), None);
        }
    }

    /// Records TERMINATING (unless the microVM is already ending) and ends
    /// it in a task.
    pub(super) fn begin_termination(
        self: &Arc<Self>,
        id: &MicrovmId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let moved = self.store.move_microvm(
            id,
            LIVE,
            MicrovmState::Terminating,
            Some(reason),
            Timestamp::now(),
        )?;
        if moved {
            let inner = self.clone();
            let id = id.clone();
            self.spawn_task(async move { inner.terminate_task(id).await });
        }
        Ok(())
    }

    /// Ends a TERMINATING microVM: the `terminate` hook if its VM runs, then
    /// the VM and its files, then TERMINATED.
    pub(super) async fn terminate_task(self: Arc<Self>, id: MicrovmId) {
        let lock = self.microvm_lock(id.as_str());
        let _held = lock.lock().await;
        let Some(row) = self.in_state(&id, MicrovmState::Terminating) else {
            return;
        };
        if self.node.is_running(&id) {
            if let Some((port, timeout)) = self
                .version_config(&row)
                .and_then(|config| runtime_hook(&config, Hook::Terminate))
            {
                let called = self
                    .node
                    .call_hook(&id, port, Hook::Terminate, b"", timeout)
                    .await;
                if let Err(error) = called {
                    tracing::warn!(microvm_id = %id, error = %chain(&error), "terminate hook failed");
                }
            }
        }
        self.finish_termination(&row).await;
    }

    /// Stops the VM, frees the microVM's files and records TERMINATED.
    pub(super) async fn finish_termination(&self, row: &MicrovmRow) {
        let id = &row.microvm_id;
        self.node.stop(id).await;
        let suspended = self.config.suspended_dir(id.as_str());
        let _ = tokio::fs::remove_dir_all(&suspended).await;
        let moved = self.store.move_microvm(
            id,
            &[MicrovmState::Terminating],
            MicrovmState::Terminated,
            None,
            Timestamp::now(),
        );
        match moved {
            Ok(true) => {
                let reason = self
                    .store
                    .microvm(id)
                    .ok()
                    .flatten()
                    .and_then(|r| r.state_reason);
                events::microvm(MicrovmEvent::Terminated, id.as_str(), reason.as_deref());
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(microvm_id = %id, error = %error, "cannot record termination")
            }
        }
    }

    /// Terminates a microVM whose task failed, with `reason`; the caller
    /// holds its lock.
    async fn fail(&self, id: &MicrovmId, reason: &str, detail: &str) {
        tracing::error!(microvm_id = %id, reason, detail, "microvm failed");
        let moved = self.store.move_microvm(
            id,
            LIVE,
            MicrovmState::Terminating,
            Some(reason),
            Timestamp::now(),
        );
        if let Err(error) = moved {
            tracing::error!(microvm_id = %id, error = %error, "cannot record failure");
        }
        if let Ok(Some(row)) = self.store.microvm(id) {
            if row.state == MicrovmState::Terminating {
                self.finish_termination(&row).await;
            }
        }
    }

    /// Terminates microVMs past their hard lifetime, and suspended ones past
    /// their idle policy's `suspendedDurationSeconds` (idle suspends are in
    /// `control/ingress.rs`).
    pub(super) fn enforce_lifetimes(self: &Arc<Self>) -> Result<(), StoreError> {
        let now = Timestamp::now().unix_millis();
        for row in self.store.microvms()? {
            if !LIVE.contains(&row.state) {
                continue;
            }
            let limit = row
                .request
                .maximum_duration_in_seconds
                .unwrap_or(super::microvms::DEFAULT_MAXIMUM_DURATION_SECONDS);
            if now - row.started_at.unix_millis() >= i64::from(limit) * 1000 {
                self.begin_termination(&row.microvm_id, "MAXIMUM_DURATION_REACHED")?;
                continue;
            }
            let suspended_for = row.updated_at.map(|t| now - t.unix_millis());
            if let (MicrovmState::Suspended, Some(policy), Some(elapsed)) =
                (row.state, row.request.idle_policy, suspended_for)
            {
                if elapsed >= i64::from(policy.suspended_duration_seconds) * 1000 {
                    self.begin_termination(&row.microvm_id, "SUSPENDED_DURATION_REACHED")?;
                }
            }
        }
        Ok(())
    }

    /// The microVM, if it is PENDING.
    fn pending(&self, id: &MicrovmId) -> Option<MicrovmRow> {
        self.in_state(id, MicrovmState::Pending)
    }

    /// The microVM, if it is in `state`.
    fn in_state(&self, id: &MicrovmId, state: MicrovmState) -> Option<MicrovmRow> {
        match self.store.microvm(id) {
            Ok(Some(row)) if row.state == state => Some(row),
            Ok(_) => None,
            Err(error) => {
                tracing::error!(microvm_id = %id, error = %error, "cannot read microvm");
                None
            }
        }
    }

    /// The configuration of a microVM's version.
    fn version_config(&self, row: &MicrovmRow) -> Option<ImageConfig> {
        let version = self.store.version(row.image_id, row.image_version).ok()??;
        Some(version.config)
    }
}

/// A runtime hook's port and timeout, when the image enables it.
fn runtime_hook(config: &ImageConfig, hook: Hook) -> Option<(u16, Duration)> {
    let hooks = config.hooks.as_ref()?;
    let port = u16::try_from(hooks.port?).ok()?;
    let h = hooks.microvm_hooks?;
    let (state, timeout) = match hook {
        Hook::Run => (h.run, h.run_timeout_in_seconds),
        Hook::Resume => (h.resume, h.resume_timeout_in_seconds),
        Hook::Suspend => (h.suspend, h.suspend_timeout_in_seconds),
        Hook::Terminate => (h.terminate, h.terminate_timeout_in_seconds),
        Hook::Ready | Hook::Validate => return None,
    };
    if state != Some(HookState::Enabled) {
        return None;
    }
    let timeout = timeout
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_RUNTIME_HOOK_TIMEOUT, Duration::from_secs);
    Some((port, timeout))
}

/// An error and its sources, joined.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
