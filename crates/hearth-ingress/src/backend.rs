//! [`Backend`]: what the proxy needs from the control plane, implemented by
//! [`HearthControl`] and by fakes in tests.

use async_trait::async_trait;
use hearth_control::tokens::{TokenClaims, TokenError, TokenSigner};
use hearth_control::{HearthControl, IngressView, WakeError};
use std::sync::Arc;

use hearth_protocol::Stream;
use hearth_shim::ShimClient;

/// A failure to open a tunnel into the guest.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach port {port} in the guest: {detail}")]
pub struct TunnelError {
    /// The port.
    pub port: u16,
    /// What the shim or agent said.
    pub detail: String,
}

/// What the ingress proxy asks of the control plane.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The claims of a token the server signed and that has not expired at
    /// `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`TokenError`] for a forged, malformed or expired token.
    fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError>;

    /// The microVM `id`, if it exists; `None` also when the store fails
    /// (logged by the implementation).
    fn microvm(&self, id: &str) -> Option<IngressView>;

    /// Returns once microVM `id` is RUNNING, resuming it when its policy
    /// allows; concurrent calls start one resume.
    ///
    /// # Errors
    ///
    /// [`WakeError`] when it cannot become RUNNING.
    async fn wake(&self, id: &str) -> Result<(), WakeError>;

    /// A tunnel to `port` in microVM `id`'s guest.
    ///
    /// # Errors
    ///
    /// [`TunnelError`] when the VM is unreachable or nothing listens.
    async fn tunnel(&self, id: &str, port: u16) -> Result<Stream, TunnelError>;

    /// The connection to microVM `id`'s shim, which serves its shell.
    ///
    /// # Errors
    ///
    /// [`TunnelError`] (for the shell's port) when the VM is unreachable.
    async fn shim(&self, id: &str) -> Result<Arc<ShimClient>, TunnelError>;

    /// Records traffic through the endpoint (idle clock and metering).
    fn record_traffic(&self, id: &str, bytes_in: u64, bytes_out: u64);
}

/// The control plane with its token signer.
#[derive(Clone)]
pub struct ControlBackend {
    control: HearthControl,
    signer: TokenSigner,
}

impl ControlBackend {
    /// The backend of `control`.
    pub fn new(control: HearthControl) -> Self {
        let signer = control.token_signer();
        Self { control, signer }
    }
}

#[async_trait]
impl Backend for ControlBackend {
    fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        self.signer.verify(token, now)
    }

    fn microvm(&self, id: &str) -> Option<IngressView> {
        match self.control.ingress_view(id) {
            Ok(view) => view,
            Err(error) => {
                tracing::error!(microvm_id = id, error = %error, "cannot read microvm");
                None
            }
        }
    }

    async fn wake(&self, id: &str) -> Result<(), WakeError> {
        self.control.wake(id).await
    }

    async fn tunnel(&self, id: &str, port: u16) -> Result<Stream, TunnelError> {
        self.control
            .ingress_tunnel(id, port)
            .await
            .map_err(|error| TunnelError {
                port,
                detail: error.to_string(),
            })
    }

    async fn shim(&self, id: &str) -> Result<Arc<ShimClient>, TunnelError> {
        self.control
            .ingress_shim(id)
            .await
            .map_err(|error| TunnelError {
                port: crate::shell::PORT,
                detail: error.to_string(),
            })
    }

    fn record_traffic(&self, id: &str, bytes_in: u64, bytes_out: u64) {
        self.control.record_traffic(id, bytes_in, bytes_out);
    }
}
