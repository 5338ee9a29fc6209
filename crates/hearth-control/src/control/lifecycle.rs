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

use super::timers::{self, TimerAction};

/// How long after a first look a VM that seemed dead is looked at again.
const EXIT_RECHECK: Duration = Duration::from_millis(500);
use super::Inner;
use crate::events::{self, MicrovmEvent};
use crate::hooks::Hook;
use crate::ids::MicrovmId;
use crate::node::egress_of;
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

        let egress = egress_of(row.request.egress_network_connectors.as_deref());
        if let Err(error) = self.node.restore(&id, &snapshot, egress).await {
            return self.fail(&id, "MICROVM_START_FAILED", &chain(&error)).await;
        }
        if let Some((port, timeout)) = runtime_hook(&version.config, Hook::Run) {
            let payload = row.request.run_hook_payload.clone().unwrap_or_default();
            let called = self
                .hook(&id, port, Hook::Run, payload.as_bytes(), timeout)
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
            self.activity
                .record(id.as_str(), Timestamp::now().unix_millis());
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
        // The suspend hook is the app's notice, not a step that can lose the
        // microVM: when it fails or times out the suspend still happens, and
        // the failure is the SUSPENDED microVM's stateReason.
        let mut reason = None;
        if let Some((port, timeout)) = runtime_hook(&config, Hook::Suspend) {
            if let Err(error) = self.hook(&id, port, Hook::Suspend, b"", timeout).await {
                tracing::warn!(microvm_id = %id, error = %chain(&error), "suspend hook failed; suspending anyway");
                reason = Some("SUSPEND_HOOK_FAILED");
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
        pause_point("suspend-saved").await;
        let recorded = self
            .store
            .set_suspended_snapshot(&id, Some(&dest))
            .and_then(|()| {
                self.store.move_microvm(
                    &id,
                    &[MicrovmState::Suspending],
                    MicrovmState::Suspended,
                    reason,
                    Timestamp::now(),
                )
            });
        match recorded {
            Ok(true) => events::microvm(MicrovmEvent::Suspended, id.as_str(), reason),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(microvm_id = %id, error = %error, "cannot record suspend")
            }
        }
    }

    /// Resumes a microVM that ResumeMicrovm moved from SUSPENDED to PENDING:
    /// a restore from its own snapshot, then the `resume` hook. The snapshot
    /// is kept until the microVM is RUNNING, so a resume cut short by a
    /// crash can be made again.
    pub(super) async fn resume_task(self: Arc<Self>, id: MicrovmId) {
        let lock = self.microvm_lock(id.as_str());
        let _held = lock.lock().await;
        let Some(row) = self.pending(&id) else { return };
        let Some(snapshot) = row.suspended_snapshot.clone() else {
            return self
                .fail(&id, "SNAPSHOT_LOST", "no suspended snapshot")
                .await;
        };
        let egress = egress_of(row.request.egress_network_connectors.as_deref());
        if let Err(error) = self.node.restore(&id, &snapshot, egress).await {
            return self.fail(&id, "RESUME_FAILED", &chain(&error)).await;
        }
        if let Some((port, timeout)) = self
            .version_config(&row)
            .and_then(|config| runtime_hook(&config, Hook::Resume))
        {
            if let Err(error) = self.hook(&id, port, Hook::Resume, b"", timeout).await {
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
            self.activity
                .record(id.as_str(), Timestamp::now().unix_millis());
            events::microvm(MicrovmEvent::Resumed, id.as_str(), None);
        }
        let _ = tokio::fs::remove_dir_all(&snapshot).await;
        if let Err(error) = self.store.set_suspended_snapshot(&id, None) {
            tracing::error!(microvm_id = %id, error = %error, "cannot record resume");
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
        if !self.node.has_exited(&id) {
            if let Some((port, timeout)) = self
                .version_config(&row)
                .and_then(|config| runtime_hook(&config, Hook::Terminate))
            {
                let called = self.hook(&id, port, Hook::Terminate, b"", timeout).await;
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
        self.activity.forget(id.as_str());
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

    /// Terminates, with the reason `VM_EXITED`, every RUNNING microVM whose
    /// shim or QEMU died: the termination stops what is left of it and frees
    /// its files and namespace. A VM is taken for dead when two looks
    /// [`EXIT_RECHECK`] apart agree, and only while its row is still RUNNING.
    pub(super) async fn end_exited(
        self: &Arc<Self>,
        rows: &[MicrovmRow],
    ) -> Result<(), StoreError> {
        let suspects: Vec<MicrovmId> = rows
            .iter()
            .filter(|row| row.state == MicrovmState::Running)
            .map(|row| row.microvm_id.clone())
            .filter(|id| self.node.has_exited(id))
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(EXIT_RECHECK).await;
        for id in suspects {
            if !self.node.has_exited(&id) {
                continue;
            }
            let moved = self.store.move_microvm(
                &id,
                &[MicrovmState::Running],
                MicrovmState::Terminating,
                Some("VM_EXITED"),
                Timestamp::now(),
            )?;
            if moved {
                tracing::warn!(microvm_id = %id, "vm exited on its own; terminating");
                let inner = self.clone();
                self.spawn_task(async move { inner.terminate_task(id).await });
            }
        }
        Ok(())
    }

    /// Acts on every microVM whose timer is due at `now_ms`: past its hard
    /// lifetime or its suspended duration it terminates; idle past its
    /// `maxIdleDurationSeconds` it suspends.
    pub(super) fn enforce_lifetimes(
        self: &Arc<Self>,
        rows: &[MicrovmRow],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for row in rows {
            let id = &row.microvm_id;
            match timers::due(row, now_ms, self.activity.last(id.as_str())) {
                None => {}
                Some(TimerAction::Terminate(reason)) => self.begin_termination(id, reason)?,
                Some(TimerAction::Suspend(reason)) => {
                    let moved = self.store.move_microvm(
                        id,
                        &[MicrovmState::Running],
                        MicrovmState::Suspending,
                        Some(reason),
                        Timestamp::now(),
                    )?;
                    if moved {
                        tracing::info!(microvm_id = %id, reason, "idle; suspending");
                        let inner = self.clone();
                        let id = id.clone();
                        self.spawn_task(async move { inner.suspend_task(id).await });
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls one of a microVM's runtime hooks, bounded by its timeout.
    async fn hook(
        &self,
        id: &MicrovmId,
        port: u16,
        hook: Hook,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(), crate::node::NodeError> {
        tracing::info!(microvm_id = %id, hook = hook.name(), ?timeout, "calling hook");
        self.node.call_hook(id, port, hook, body, timeout).await
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

/// Holds the task forever at the named point when `HEARTH_TEST_PAUSE` names
/// it, so that a test can kill the server at a moment no hook can hold
/// (`suspend-saved`: the snapshot is saved and the VM gone, SUSPENDED not
/// yet recorded). Unset, it costs one environment lookup.
async fn pause_point(point: &str) {
    if std::env::var("HEARTH_TEST_PAUSE").is_ok_and(|wanted| wanted == point) {
        tracing::warn!(point, "paused for a test");
        std::future::pending::<()>().await;
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
