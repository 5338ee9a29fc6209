//! The `/shell` route: a WebSocket to the microVM's shell on port 8022,
//! opened with a shell token on a microVM run with `SHELL_INGRESS`.
//!
//! The proxy checks the token and connector (in [`crate::proxy`]) before
//! anything here runs.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::backend::Backend;
use crate::proxy::{plain, Body};

/// The shell's path on a microVM's endpoint.
pub const PATH: &str = "/shell";

/// The shell's port: served by the agent, not the app.
pub const PORT: u16 = 8022;

/// Answers an admitted `/shell` request.
// Limitation: the PTY session behind `/shell` is not served by this build;
// an admitted shell request gets 501 after its token and connector checks.
pub(crate) async fn open<B: Backend>(
    _backend: &B,
    microvm_id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, super::proxy::Refusal> {
    let websocket = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Ok(plain(StatusCode::BAD_REQUEST, "the shell is a WebSocket"));
    }
    tracing::info!(microvm_id, "shell requested, not served by this build");
    Ok(plain(
        StatusCode::NOT_IMPLEMENTED,
        "the shell is not served by this build",
    ))
}
