//! Lifecycle hooks: `POST /aws/lambda-microvms/runtime/v1/<hook>` on the
//! image's hooks port, sent through the agent's TCP tunnel into the guest.
//!
//! The client is a minimal HTTP/1.1 one: one request per tunnel with
//! `Connection: close`, and the response read up to its `Content-Length`
//! or the end of the stream. Only the status matters to the caller.

use std::time::{Duration, Instant};

use hearth_protocol::{Event, CHAN_STDIO};
use hearth_shim::ShimClient;

/// The path every hook lives under.
pub const HOOK_PATH: &str = "/aws/lambda-microvms/runtime/v1";

/// The most of a response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How long to wait between polls of a hook or port that is not ready.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A lifecycle hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Build: polled until the app is ready.
    Ready,
    /// Build: polled in a test microVM after the snapshot.
    Validate,
    /// Once after a microVM starts, with `runHookPayload`.
    Run,
    /// After a resume.
    Resume,
    /// Before a suspend.
    Suspend,
    /// Before termination.
    Terminate,
}

impl Hook {
    /// The hook's name in its path.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Validate => "validate",
            Self::Run => "run",
            Self::Resume => "resume",
            Self::Suspend => "suspend",
            Self::Terminate => "terminate",
        }
    }
}

/// Why a hook call did not get a 200.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Nothing accepted the connection in the guest.
    #[error("nothing listens on port {port}: {detail}")]
    Connect {
        /// The port.
        port: u16,
        /// What the agent said.
        detail: String,
    },
    /// The app answered with another status.
    #[error("answered {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The answer was not HTTP.
    #[error("answered something that is not HTTP/1.x")]
    Malformed,
    /// The tunnel ended before an answer.
    #[error("closed the connection without an answer")]
    NoAnswer,
    /// No answer in time.
    #[error("did not answer within {0:?}")]
    Timeout(Duration),
}

/// Sends one `POST` of `body` to `path` on guest port `port`; returns the
/// status.
///
/// # Errors
///
/// [`HookError`] when the port refuses, the answer is not HTTP, or no
/// answer comes within `timeout`.
pub async fn post(
    client: &ShimClient,
    port: u16,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, HookError> {
    tokio::time::timeout(timeout, exchange(client, port, path, body))
        .await
        .map_err(|_| HookError::Timeout(timeout))?
}

/// Calls a hook once; `Ok` only for a 200.
///
/// # Errors
///
/// [`HookError`] for any other outcome.
pub async fn call(
    client: &ShimClient,
    port: u16,
    hook: Hook,
    body: &[u8],
    timeout: Duration,
) -> Result<(), HookError> {
    let path = format!("{HOOK_PATH}/{}", hook.name());
    match post(client, port, &path, body, timeout).await? {
        200 => Ok(()),
        status => Err(HookError::Status { status }),
    }
}

/// Polls a build hook until it answers 200; 503 (and a port not yet
/// listening) means not yet, anything else fails at once.
///
/// # Errors
///
/// [`HookError`] for an answer other than 200 or 503, or the last reason
/// when `timeout` runs out.
pub async fn poll(
    client: &ShimClient,
    port: u16,
    hook: Hook,
    timeout: Duration,
) -> Result<(), HookError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = call(client, port, hook, b"", left.max(Duration::from_millis(1))).await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(HookError::Status { status: 503 } | HookError::Connect { .. }) => {}
            Err(HookError::Timeout(_)) => return Err(HookError::Timeout(timeout)),
            Err(other) => return Err(other),
        }
        if Instant::now() + POLL_INTERVAL >= deadline {
            return Err(HookError::Timeout(timeout));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until guest port `port` accepts a connection.
///
/// # Errors
///
/// [`HookError::Timeout`] when it does not within `timeout`.
pub async fn wait_for_port(
    client: &ShimClient,
    port: u16,
    timeout: Duration,
) -> Result<(), HookError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(stream) = client.tunnel(port).await {
            stream.sender.close(None);
            return Ok(());
        }
        if Instant::now() + POLL_INTERVAL >= deadline {
            return Err(HookError::Timeout(timeout));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One request and its response's status.
async fn exchange(
    client: &ShimClient,
    port: u16,
    path: &str,
    body: &[u8],
) -> Result<u16, HookError> {
    let stream = client.tunnel(port).await.map_err(|e| HookError::Connect {
        port,
        detail: e.to_string(),
    })?;
    let (tx, mut rx) = stream.split();

    let content_type = if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: hearth\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    tx.data(CHAN_STDIO, &request)
        .await
        .map_err(|_| HookError::NoAnswer)?;

    let mut response = Vec::new();
    let status = loop {
        if let Some(status) = complete_status(&response)? {
            break status;
        }
        match rx.recv().await {
            Event::Data { bytes, .. } => {
                response.extend_from_slice(&bytes);
                if response.len() > MAX_RESPONSE_BYTES {
                    break status_line(&response)?;
                }
            }
            Event::Eof { .. } | Event::Closed { .. } => break status_line(&response)?,
            Event::Control(_) => {}
        }
    };
    tx.close(None);
    Ok(status)
}

/// The status, once the whole response (headers and `Content-Length` body)
/// is in `buf`.
fn complete_status(buf: &[u8]) -> Result<Option<u16>, HookError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) if buf.len() >= end + 4 + length => status_line(buf).map(Some),
        _ => Ok(None),
    }
}

/// The status code of the status line at the start of `buf`.
fn status_line(buf: &[u8]) -> Result<u16, HookError> {
    if buf.is_empty() {
        return Err(HookError::NoAnswer);
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().and_then(|s| s.parse().ok())) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(HookError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_to_their_length() {
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(complete_status(partial).unwrap(), None);
        let whole = b"HTTP/1.1 503 Busy\r\ncontent-length: 2\r\n\r\nno";
        assert_eq!(complete_status(whole).unwrap(), Some(503));
        assert_eq!(status_line(b"HTTP/1.0 404 Not Found\r\n").unwrap(), 404);
        assert!(matches!(status_line(b"SSH-2.0"), Err(HookError::Malformed)));
    }
}
