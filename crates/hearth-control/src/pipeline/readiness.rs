//! When a build VM is ready to be snapshotted, and whether a snapshot
//! validates: the parts of a build that any pipeline shares.
//!
//! With the `ready` hook enabled, a build polls it until 200 (503 means not
//! yet; anything else fails the build). Without it, a build waits until the
//! app's first EXPOSEd port (else 8080) accepts connections. Both are
//! bounded by `readyTimeoutInSeconds` (default 30). The `validate` hook,
//! when enabled, is polled the same way in a test VM restored from the
//! snapshot.

use std::time::Duration;

use hearth_api::model::{HookState, ImageConfig};
use hearth_shim::ShimClient;

use super::{BuildFailure, ContainerConfig};
use crate::hooks::{self, Hook};

/// The port an app serves when it EXPOSEs none.
pub const DEFAULT_APP_PORT: u16 = 8080;

/// A build hook's timeout when the image does not set one.
pub const DEFAULT_BUILD_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// What "ready" means for one build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The `ready` hook answers 200.
    Hook {
        /// The hooks port.
        port: u16,
        /// How long to poll.
        timeout: Duration,
    },
    /// The app's port accepts connections.
    Port {
        /// The port.
        port: u16,
        /// How long to wait.
        timeout: Duration,
    },
}

/// The readiness a version's configuration and container call for.
pub fn readiness(config: &ImageConfig, container: &ContainerConfig) -> Readiness {
    let image_hooks = config.hooks.as_ref().and_then(|h| h.microvm_image_hooks);
    let timeout = image_hooks
        .and_then(|h| h.ready_timeout_in_seconds)
        .map_or(DEFAULT_BUILD_HOOK_TIMEOUT, seconds);
    let enabled = image_hooks.and_then(|h| h.ready) == Some(HookState::Enabled);
    match (enabled, hooks_port(config)) {
        (true, Some(port)) => Readiness::Hook { port, timeout },
        _ => Readiness::Port {
            port: container
                .exposed_ports
                .first()
                .copied()
                .unwrap_or(DEFAULT_APP_PORT),
            timeout,
        },
    }
}

/// The `validate` hook's port and timeout, when it is enabled.
pub fn validation(config: &ImageConfig) -> Option<(u16, Duration)> {
    let image_hooks = config.hooks.as_ref()?.microvm_image_hooks?;
    if image_hooks.validate != Some(HookState::Enabled) {
        return None;
    }
    let timeout = image_hooks
        .validate_timeout_in_seconds
        .map_or(DEFAULT_BUILD_HOOK_TIMEOUT, seconds);
    Some((hooks_port(config)?, timeout))
}

/// The image's hooks port.
pub fn hooks_port(config: &ImageConfig) -> Option<u16> {
    config
        .hooks
        .as_ref()
        .and_then(|h| h.port)
        .and_then(|p| u16::try_from(p).ok())
}

/// Waits until the build VM behind `client` is ready.
///
/// # Errors
///
/// A [`BuildFailure`] naming the hook or port and what happened.
pub async fn wait_ready(client: &ShimClient, readiness: Readiness) -> Result<(), BuildFailure> {
    match readiness {
        Readiness::Hook { port, timeout } => hooks::poll(client, port, Hook::Ready, timeout)
            .await
            .map_err(|e| BuildFailure::new(format!("the ready hook on port {port} {e}"))),
        Readiness::Port { port, timeout } => hooks::wait_for_port(client, port, timeout)
            .await
            .map_err(|_| {
                BuildFailure::new(format!(
                    "the app did not accept connections on port {port} within {}s \
                     (no ready hook is enabled, so the build waits for the first EXPOSEd port)",
                    timeout.as_secs()
                ))
            }),
    }
}

/// Polls the `validate` hook of a test VM.
///
/// # Errors
///
/// A [`BuildFailure`] naming the hook and what happened.
pub async fn validate(
    client: &ShimClient,
    port: u16,
    timeout: Duration,
) -> Result<(), BuildFailure> {
    hooks::poll(client, port, Hook::Validate, timeout)
        .await
        .map_err(|e| BuildFailure::new(format!("the validate hook on port {port} {e}")))
}

fn seconds(value: i32) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(1).max(1))
}
