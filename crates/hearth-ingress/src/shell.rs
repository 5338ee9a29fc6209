//! The `/shell` route: a WebSocket to the microVM's shell on port 8022,
//! opened with a shell token on a microVM run with `SHELL_INGRESS`.
//!
//! The proxy checks the token and connector (in [`crate::proxy`]) before
//! anything here runs; this module checks the WebSocket handshake and makes
//! the `101 Switching Protocols` answer, with `lambda-microvms` as the
//! chosen subprotocol, then hands the upgraded connection to the shell of
//! the microVM's shim (`hearth_shim::shell` holds the protocol).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hearth_shim::shell::ShellOptions;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::backend::Backend;
use crate::proxy::{plain, refuse, Body, Refusal};
use crate::route::SUBPROTOCOL;

/// The shell's path on a microVM's endpoint.
pub const PATH: &str = "/shell";

/// The shell's port: served by the agent, not the app.
pub const PORT: u16 = 8022;

/// The GUID RFC 6455 appends to a key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Answers an admitted `/shell` request: the `101` answer, then, once the
/// connection is upgraded, the shell served by the microVM's shim over it
/// (`hearth_shim::shell`), its bytes counted as the microVM's traffic.
pub(crate) async fn open<B: Backend>(
    backend: &Arc<B>,
    microvm_id: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let Some(accepted) = switching_protocols(req.headers()) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "the shell is a WebSocket (Upgrade: websocket, Sec-WebSocket-Version: 13)",
        ));
    };
    let options = match ShellOptions::from_query(req.uri().query().unwrap_or("")) {
        Ok(options) => options,
        Err(error) => return Ok(plain(StatusCode::BAD_REQUEST, &error.to_string())),
    };
    let client = backend
        .shim(microvm_id)
        .await
        .map_err(|error| refuse(StatusCode::BAD_GATEWAY, error.to_string()))?;

    let upgrade = hyper::upgrade::on(&mut req);
    let backend = backend.clone();
    let microvm_id = microvm_id.to_owned();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            tracing::debug!(microvm_id, "shell upgrade did not complete");
            return;
        };
        let traffic_id = microvm_id.clone();
        let io = Metered {
            io: TokioIo::new(upgraded),
            traffic: Box::new(move |sent, received| {
                backend.record_traffic(&traffic_id, sent, received)
            }),
        };
        match hearth_shim::shell::serve_with(io, &client, options).await {
            Ok(end) => tracing::info!(microvm_id, end = ?end, "shell ended"),
            Err(error) => tracing::info!(microvm_id, error = %error, "shell failed"),
        }
    });
    Ok(accepted)
}

/// An upgraded connection whose bytes are counted: `(into the guest, out
/// of it)`.
struct Metered<IO> {
    io: IO,
    traffic: Box<dyn Fn(u64, u64) + Send + Sync>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            (self.traffic)(read as u64, 0);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            (self.traffic)(0, written as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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
