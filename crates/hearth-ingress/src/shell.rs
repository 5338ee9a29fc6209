//! The `/shell` route: a WebSocket to the microVM's shell on port 8022,
//! opened with a shell token on a microVM run with `SHELL_INGRESS`.
//!
//! The proxy checks the token and connector (in [`crate::proxy`]) before
//! anything here runs; this module checks the WebSocket handshake and makes
//! the `101 Switching Protocols` answer, with `lambda-microvms` as the
//! chosen subprotocol.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use sha1::{Digest, Sha1};

use crate::backend::Backend;
use crate::proxy::{plain, Body, Refusal};
use crate::route::SUBPROTOCOL;

/// The shell's path on a microVM's endpoint.
pub const PATH: &str = "/shell";

/// The shell's port: served by the agent, not the app.
pub const PORT: u16 = 8022;

/// The GUID RFC 6455 appends to a key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Answers an admitted `/shell` request.
// Limitation: the PTY session behind `/shell` is not served by this build;
// an admitted shell request with a valid handshake gets 501.
pub(crate) async fn open<B: Backend>(
    _backend: &B,
    microvm_id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let Some(_accepted) = switching_protocols(req.headers()) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "the shell is a WebSocket (Upgrade: websocket, Sec-WebSocket-Version: 13)",
        ));
    };
    tracing::info!(microvm_id, "shell requested, not served by this build");
    Ok(plain(
        StatusCode::NOT_IMPLEMENTED,
        "the shell is not served by this build",
    ))
}

/// The `101 Switching Protocols` answer to a WebSocket handshake, or `None`
/// when the request is not one.
pub fn switching_protocols(headers: &HeaderMap) -> Option<Response<Body>> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let websocket = text(header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version = text(header::SEC_WEBSOCKET_VERSION) == Some("13");
    let key = text(header::SEC_WEBSOCKET_KEY)?;
    if !websocket || !version {
        return None;
    }
    let mut resp = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    *resp.body_mut() = crate::proxy::empty();
    let headers = resp.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let accept = HeaderValue::from_str(&accept_key(key)).ok()?;
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Some(resp)
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_answers_with_the_rfc_accept_key_and_our_subprotocol() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let resp = switching_protocols(&headers).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "lambda-microvms"
        );

        headers.remove(header::SEC_WEBSOCKET_VERSION);
        assert!(switching_protocols(&headers).is_none());
    }
}
