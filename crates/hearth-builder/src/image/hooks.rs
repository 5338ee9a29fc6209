//! Lifecycle hooks: their settings, and one hook call over a tunnel.
//!
//! A hook is `POST /aws/lambda-microvms/runtime/v1/<hook>` on the image's
//! hooks port inside the microVM. The host reaches the port through the
//! agent's TCP tunnel and speaks just enough HTTP/1.1 to send the request
//! (`Connection: close`) and read the status line. The answer that counts is
//! the status: for `ready` and `validate`, 200 means yes, 503 means not yet,
//! and anything else is a failure.
//!
//! Timeouts follow the service: `ready` and `validate` 1–3600 s (default
//! 30), the others 1–60 s (default 1). The port is required as soon as any
//! hook is enabled.

use std::time::Duration;

use hearth_protocol::{Event, Stream, CHAN_STDIO};
use hearth_shim::{ClientError, ShimClient};
use serde::{Deserialize, Serialize};

/// Where every hook's path starts.
pub const HOOK_PATH_PREFIX: &str = "/aws/lambda-microvms/runtime/v1/";

/// The longest status line and headers read from a hook's answer.
const MAX_HEAD: usize = 16 * 1024;

/// The hooks an image may enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Called during the build until the app is ready to be snapshotted.
    Ready,
    /// Called in a test microVM restored from the new snapshot.
    Validate,
    /// Called once after a microVM starts from the snapshot.
    Run,
    /// Called after a resume.
    Resume,
    /// Called before a suspend.
    Suspend,
    /// Called before termination.
    Terminate,
}

impl Hook {
    /// The hook's name, as in its path.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Ready => "ready",
            Hook::Validate => "validate",
            Hook::Run => "run",
            Hook::Resume => "resume",
            Hook::Suspend => "suspend",
            Hook::Terminate => "terminate",
        }
    }

    /// The request path.
    pub fn path(self) -> String {
        format!("{HOOK_PATH_PREFIX}{}", self.name())
    }

    /// The allowed timeouts in seconds, inclusive.
    pub fn timeout_range(self) -> (u32, u32) {
        match self {
            Hook::Ready | Hook::Validate => (1, 3600),
            _ => (1, 60),
        }
    }

    /// The timeout when none is given, in seconds.
    pub fn default_timeout_secs(self) -> u32 {
        match self {
            Hook::Ready | Hook::Validate => 30,
            _ => 1,
        }
    }
}

/// Whether a hook is enabled, and its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSetting {
    /// Whether the hook is called.
    pub enabled: bool,
    /// Its timeout in seconds.
    pub timeout_secs: u32,
}

impl HookSetting {
    fn off(hook: Hook) -> HookSetting {
        HookSetting {
            enabled: false,
            timeout_secs: hook.default_timeout_secs(),
        }
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.into())
    }
}

/// An image's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// The port the hooks listen on inside the microVM.
    pub port: Option<u16>,
    /// `ready`.
    pub ready: HookSetting,
    /// `validate`.
    pub validate: HookSetting,
    /// `run`.
    pub run: HookSetting,
    /// `resume`.
    pub resume: HookSetting,
    /// `suspend`.
    pub suspend: HookSetting,
    /// `terminate`.
    pub terminate: HookSetting,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            port: None,
            ready: HookSetting::off(Hook::Ready),
            validate: HookSetting::off(Hook::Validate),
            run: HookSetting::off(Hook::Run),
            resume: HookSetting::off(Hook::Resume),
            suspend: HookSetting::off(Hook::Suspend),
            terminate: HookSetting::off(Hook::Terminate),
        }
    }
}

/// Why hook settings are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A hook is enabled without a port.
    #[error("the {hook} hook is enabled but no hooks port is given")]
    NoPort {
        /// The hook.
        hook: &'static str,
    },
    /// A timeout out of range.
    #[error("the {hook} hook's timeout of {secs} s is outside {min}-{max} s")]
    Timeout {
        /// The hook.
        hook: &'static str,
        /// As given.
        secs: u32,
        /// The least allowed.
        min: u32,
        /// The most allowed.
        max: u32,
    },
}

impl Hooks {
    /// Every hook with its setting.
    pub fn all(&self) -> [(Hook, HookSetting); 6] {
        [
            (Hook::Ready, self.ready),
            (Hook::Validate, self.validate),
            (Hook::Run, self.run),
            (Hook::Resume, self.resume),
            (Hook::Suspend, self.suspend),
            (Hook::Terminate, self.terminate),
        ]
    }

    /// Checks the port and the timeouts.
    ///
    /// # Errors
    ///
    /// [`HookError`] naming the hook.
    pub fn check(&self) -> Result<(), HookError> {
        for (hook, setting) in self.all() {
            let (min, max) = hook.timeout_range();
            if !(min..=max).contains(&setting.timeout_secs) {
                return Err(HookError::Timeout {
                    hook: hook.name(),
                    secs: setting.timeout_secs,
                    min,
                    max,
                });
            }
            if setting.enabled && self.port.is_none() {
                return Err(HookError::NoPort { hook: hook.name() });
            }
        }
        Ok(())
    }
}

/// Why a hook call got no status.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing accepts connections on the port (yet).
    #[error("nothing listens on port {port}")]
    NotListening {
        /// The port.
        port: u16,
    },
    /// The answer did not come in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not HTTP.
    #[error("the answer is not an HTTP response: {0:?}")]
    NotHttp(String),
    /// The tunnel failed.
    #[error("the tunnel failed")]
    Tunnel(#[source] ClientError),
}

/// POSTs `body` to `hook` on `port` in the VM behind `client`; returns the
/// HTTP status.
///
/// # Errors
///
/// [`CallError`]; [`CallError::NotListening`] while the app is starting.
pub async fn call(
    client: &ShimClient,
    port: u16,
    hook: Hook,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, CallError> {
    let stream = match client.tunnel(port).await {
        Ok(stream) => stream,
        Err(ClientError::Refused(message)) if message.contains("connection refused") => {
            return Err(CallError::NotListening { port })
        }
        Err(err) => return Err(CallError::Tunnel(err)),
    };
    post(stream, &hook.path(), body, timeout).await
}

/// Sends `POST path` with `body` on a connected tunnel stream and returns
/// the response's status; the stream is closed afterwards.
///
/// # Errors
///
/// [`CallError::Timeout`], [`CallError::NotHttp`].
pub async fn post(
    stream: Stream,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, CallError> {
    let (tx, mut rx) = stream.split();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);

    let exchange = async {
        tx.data(CHAN_STDIO, &request)
            .await
            .map_err(|e| CallError::Tunnel(e.into()))?;
        let mut head = Vec::new();
        loop {
            if let Some(status) = status_of(&head)? {
                return Ok(status);
            }
            match rx.recv().await {
                Event::Data { bytes, .. } => head.extend_from_slice(&bytes),
                Event::Eof { .. } | Event::Closed { .. } => {
                    let text = String::from_utf8_lossy(&head).into_owned();
                    return Err(CallError::NotHttp(text));
                }
                Event::Control(_) => {}
            }
        }
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Timeout(timeout)),
    };
    tx.close(None);
    result
}

/// The status of a response whose status line is complete; `None` while it
/// is not.
fn status_of(head: &[u8]) -> Result<Option<u16>, CallError> {
    let not_http = || CallError::NotHttp(String::from_utf8_lossy(head).into_owned());
    let Some(end) = head.windows(2).position(|w| w == b"\r\n") else {
        return match head.len() > MAX_HEAD {
            true => Err(not_http()),
            false => Ok(None),
        };
    };
    let line = String::from_utf8_lossy(&head[..end]);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => Ok(Some(code)),
        _ => Err(not_http()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hooks_need_a_port_and_timeouts_in_range() {
        let mut hooks = Hooks::default();
        assert_eq!(hooks.check(), Ok(()));
        hooks.ready.enabled = true;
        assert_eq!(
            hooks.check().unwrap_err().to_string(),
            "the ready hook is enabled but no hooks port is given"
        );
        hooks.port = Some(9000);
        assert_eq!(hooks.check(), Ok(()));
        hooks.run.timeout_secs = 61;
        assert_eq!(
            hooks.check().unwrap_err().to_string(),
            "the run hook's timeout of 61 s is outside 1-60 s"
        );
        assert_eq!(
            Hook::Validate.path(),
            "/aws/lambda-microvms/runtime/v1/validate"
        );
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_of(b"HTTP/1.1 20").unwrap(), None);
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n").unwrap(), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\nA: b").unwrap(), Some(503));
        assert!(status_of(b"SSH-2.0-x\r\n").is_err());
    }
}
