//! What the ingress proxy asks of the control plane: a microVM's state and
//! connectors, waking it (single-flight), tunnels to its guest ports, and
//! its traffic, which feeds both the idle clock and metering.
//!
//! A wake moves a SUSPENDED microVM on through `ResumeMicrovm`'s own
//! conditional move, so among any number of concurrent wakes exactly one
//! starts the resume; every waker then waits until the microVM is RUNNING
//! (or can no longer become so). Traffic resets the lifecycle timers' idle
//! clock; it is counted in memory and added to the store by the timers, so a busy connection costs no database write
//! per chunk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_api::model::{IdlePolicy, MicrovmState, Timestamp};
use hearth_protocol::Stream;
use hearth_shim::{ClientError, ShimClient, VmDir};

use super::{lock, HearthControl, Inner};
use crate::store::{StoreError, Traffic};

/// How often a waker looks at the microVM's state again.
const WAKE_POLL: Duration = Duration::from_millis(50);

/// A microVM as the ingress proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressView {
    /// Its state.
    pub state: MicrovmState,
    /// Its ingress connectors as run (ARNs or names); `ALL_INGRESS` when
    /// none were given.
    pub connectors: Vec<String>,
    /// Its idle policy.
    pub idle_policy: Option<IdlePolicy>,
}

/// Why a microVM cannot be woken.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    /// It is suspended (or suspending) and does not resume on traffic.
    #[error("microvm is {state} and does not resume on traffic")]
    NotResumable {
        /// Its state.
        state: MicrovmState,
    },
    /// It is ending or has ended.
    #[error("microvm is {state}")]
    Ended {
        /// Its state.
        state: MicrovmState,
    },
    /// It does not exist.
    #[error("no such microvm")]
    NotFound,
    /// The resume was refused (capacity, for one).
    #[error("resume refused: {0}")]
    Refused(String),
    /// The store failed.
    #[error("cannot read the microvm")]
    Store(#[from] StoreError),
}

/// The ingress proxy's state in the control plane.
#[derive(Default)]
pub(super) struct IngressState {
    /// Traffic not yet added to the store.
    pending: Mutex<HashMap<String, Traffic>>,
    /// One shim connection per microVM, shared by its tunnels.
    clients: tokio::sync::Mutex<HashMap<String, Arc<ShimClient>>>,
}

impl HearthControl {
    /// The microVM `id` as the ingress proxy needs it, if it exists.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub fn ingress_view(&self, id: &str) -> Result<Option<IngressView>, StoreError> {
        let Some(id) = crate::ids::MicrovmId::parse(id) else {
            return Ok(None);
        };
        let Some(row) = self.inner.store.microvm(&id)? else {
            return Ok(None);
        };
        Ok(Some(IngressView {
            state: row.state,
            connectors: row
                .request
                .ingress_network_connectors
                .clone()
                .unwrap_or_else(|| vec!["ALL_INGRESS".to_owned()]),
            idle_policy: row.request.idle_policy,
        }))
    }

    /// Returns once microVM `id` is RUNNING, resuming it if it is
    /// SUSPENDED and resumes on traffic. Concurrent calls start one resume.
    /// The caller bounds the wait.
    ///
    /// # Errors
    ///
    /// [`WakeError`] when the microVM cannot become RUNNING.
    pub async fn wake(&self, id: &str) -> Result<(), WakeError> {
        let microvm_id = crate::ids::MicrovmId::parse(id).ok_or(WakeError::NotFound)?;
        let mut resumed = false;
        loop {
            let row = self
                .inner
                .store
                .microvm(&microvm_id)?
                .ok_or(WakeError::NotFound)?;
            let auto_resume = row
                .request
                .idle_policy
                .is_some_and(|p| p.auto_resume_enabled);
            match row.state {
                MicrovmState::Running => return Ok(()),
                MicrovmState::Terminating | MicrovmState::Terminated => {
                    return Err(WakeError::Ended { state: row.state })
                }
                MicrovmState::Suspended | MicrovmState::Suspending if !auto_resume => {
                    return Err(WakeError::NotResumable { state: row.state })
                }
                MicrovmState::Suspended => {
                    // Only one caller's conditional move wins; the others see
                    // PENDING on their next look and wait.
                    if let Err(error) = self.inner.resume_microvm(id) {
                        let now = self.inner.store.microvm(&microvm_id)?;
                        if now.is_some_and(|r| r.state == MicrovmState::Suspended) {
                            return Err(WakeError::Refused(error.to_string()));
                        }
                    } else if !resumed {
                        resumed = true;
                        tracing::info!(microvm_id = id, "resuming on ingress traffic");
                    }
                }
                MicrovmState::Pending | MicrovmState::Suspending => {}
            }
            tokio::time::sleep(WAKE_POLL).await;
        }
    }

    /// A TCP tunnel to `port` in microVM `id`'s guest, over its shim
    /// connection (made once and shared).
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the VM does not answer or nothing listens on the
    /// port.
    pub async fn ingress_tunnel(&self, id: &str, port: u16) -> Result<Stream, ClientError> {
        let client = self.shim_client(id, false).await?;
        match client.tunnel(port).await {
            Err(ClientError::Session(_)) => {
                // The shim connection ended (the VM was suspended and resumed
                // since): connect again, once.
                let client = self.shim_client(id, true).await?;
                client.tunnel(port).await
            }
            other => other,
        }
    }

    /// The shared shim connection of microVM `id`, which serves its shell;
    /// made anew when the one kept has ended (the VM was suspended and
    /// resumed since).
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the shim does not answer.
    pub async fn ingress_shim(&self, id: &str) -> Result<Arc<ShimClient>, ClientError> {
        let client = self.shim_client(id, false).await?;
        match client.status().await {
            Ok(_) => Ok(client),
            Err(_) => self.shim_client(id, true).await,
        }
    }

    /// The shared shim connection of microVM `id`, made anew if `fresh`.
    async fn shim_client(&self, id: &str, fresh: bool) -> Result<Arc<ShimClient>, ClientError> {
        let mut clients = self.inner.ingress.clients.lock().await;
        if !fresh {
            if let Some(client) = clients.get(id) {
                return Ok(client.clone());
            }
        }
        let dir = VmDir::new(&self.inner.config.data_dir, id);
        let client = Arc::new(ShimClient::connect(&dir).await?);
        clients.insert(id.to_owned(), client.clone());
        Ok(client)
    }

    /// Records traffic through microVM `id`'s endpoint: it resets the idle
    /// clock (the lifecycle timers' activity) and is counted for metering.
    pub fn record_traffic(&self, id: &str, bytes_in: u64, bytes_out: u64) {
        let now = Timestamp::now().unix_millis();
        self.inner.activity.record(id, now);
        let mut pending = lock(&self.inner.ingress.pending);
        let entry = pending.entry(id.to_owned()).or_default();
        entry.bytes_in += bytes_in;
        entry.bytes_out += bytes_out;
    }

    /// Bytes carried through microVM `id`'s endpoint so far.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub fn traffic(&self, id: &str) -> Result<Traffic, StoreError> {
        self.inner.flush_traffic()?;
        self.inner.store.traffic(id)
    }
}

impl Inner {
    /// Adds the traffic counted in memory to the store.
    pub(super) fn flush_traffic(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *lock(&self.ingress.pending));
        for (id, delta) in pending {
            self.store.add_traffic(&id, delta)?;
        }
        Ok(())
    }

    /// Drops the shim connections of microVMs that are not RUNNING (their
    /// VMs have gone; a resume makes a new one).
    pub(super) fn forget_stopped(&self, rows: &[crate::store::MicrovmRow]) {
        let running: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| r.state == MicrovmState::Running)
            .map(|r| r.microvm_id.as_str())
            .collect();
        if let Ok(mut clients) = self.ingress.clients.try_lock() {
            clients.retain(|id, _| running.contains(id.as_str()));
        }
    }
}
