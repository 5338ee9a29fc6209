//! The request path: who is asked for, whether the token lets the request
//! through, waking the microVM, and relaying the request to the app's port
//! over a tunnel.
//!
//! Every refusal is decided from the token and the stored record alone, so
//! a refused request never touches or wakes the microVM. Each request gets
//! its own tunnel and upstream connection (HTTP/1.1, or HTTP/2 cleartext
//! with `X-aws-proxy-force-h2`); bodies stream both ways through bounded
//! pipes. A WebSocket upgrade the app accepts is spliced end to end.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hearth_api::model::{MicrovmState, Timestamp};
use hearth_control::tokens::{TokenError, TokenKind};
use hearth_control::WakeError;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;

use crate::backend::Backend;
use crate::route::{self, Credentials};
use crate::shell;
use crate::tunnel;

/// A response body: the app's, streamed, or the proxy's own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy's settings.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// The domain under which each microVM has a name.
    pub domain: String,
    /// How long a request waits for a microVM to wake.
    pub wake_timeout: Duration,
    /// The most upstream connections open at once.
    pub max_upstream: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
            wake_timeout: Duration::from_secs(30),
            max_upstream: 1024,
        }
    }
}

/// The ingress proxy: shared by every connection of both listeners.
pub struct Proxy<B> {
    backend: Arc<B>,
    config: IngressConfig,
    upstream: Arc<Semaphore>,
}

/// A request the proxy answers itself.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Where a request goes in the guest.
struct Target {
    microvm_id: String,
    port: u16,
    shell: bool,
}

impl<B: Backend> Proxy<B> {
    /// A proxy in front of `backend`.
    pub fn new(backend: Arc<B>, config: IngressConfig) -> Self {
        let upstream = Arc::new(Semaphore::new(config.max_upstream));
        Self {
            backend,
            config,
            upstream,
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let credentials = route::take_credentials(req.headers_mut());
        let answer = match self.admit(&req, &credentials).await {
            Ok(target) if target.shell => shell::open(&self.backend, &target.microvm_id, req).await,
            Ok(target) => self.forward(target, req, &credentials).await,
            Err(refusal) => Err(refusal),
        };
        Ok(answer.unwrap_or_else(|refusal| {
            tracing::debug!(status = %refusal.status, message = %refusal.message, "ingress refused");
            plain(refusal.status, &refusal.message)
        }))
    }

    /// Checks the request's host, token, port and connectors, and wakes
    /// the microVM if it sleeps.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        credentials: &Credentials,
    ) -> Result<Target, Refusal> {
        let host = route::host_of(req.headers(), req.uri())
            .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "the request names no host"))?;
        let microvm_id = route::microvm_of_host(&host, &self.config.domain)
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    format!("no microvm endpoint at {host}"),
                )
            })?
            .to_owned();
        let shell = req.uri().path() == shell::PATH;

        let token = credentials.token.as_deref().ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "the request carries no X-aws-proxy-auth token",
            )
        })?;
        let port = match credentials.port.as_deref() {
            None if shell => shell::PORT,
            None => route::DEFAULT_PORT,
            Some(text) => text.parse::<u16>().map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("X-aws-proxy-port {text:?} is not a port"),
                )
            })?,
        };
        let claims = self
            .backend
            .verify(token, Timestamp::now().unix_seconds())
            .map_err(|error| match error {
                TokenError::Invalid => refuse(StatusCode::FORBIDDEN, "the token is not valid"),
                TokenError::Expired { .. } => {
                    refuse(StatusCode::FORBIDDEN, "the token has expired")
                }
            })?;
        if claims.microvm != microvm_id {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the token is for another microvm",
            ));
        }
        if !claims.ports.allows(port) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("the token does not allow port {port}"),
            ));
        }
        match (shell, claims.kind) {
            (true, TokenKind::Shell) | (false, TokenKind::Endpoint) => {}
            (true, TokenKind::Endpoint) => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "the shell needs a shell token",
                ))
            }
            (false, TokenKind::Shell) => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "a shell token opens only the shell",
                ))
            }
        }
        if shell && port != shell::PORT {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("the shell is on port {}", shell::PORT),
            ));
        }

        let view = self
            .backend
            .microvm(&microvm_id)
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such microvm"))?;
        if matches!(
            view.state,
            MicrovmState::Terminating | MicrovmState::Terminated
        ) {
            return Err(refuse(
                StatusCode::GONE,
                format!("the microvm is {}", view.state),
            ));
        }
        let connectors = &view.connectors;
        if route::has_connector(connectors, "NO_INGRESS") {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the microvm accepts no ingress (NO_INGRESS)",
            ));
        }
        let connector = if shell {
            "SHELL_INGRESS"
        } else {
            "ALL_INGRESS"
        };
        if !route::has_connector(connectors, connector) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("the microvm was not run with the {connector} connector"),
            ));
        }

        if view.state != MicrovmState::Running {
            self.wake(&microvm_id).await?;
        }
        Ok(Target {
            microvm_id,
            port,
            shell,
        })
    }

    /// Waits for the microVM to be RUNNING, resuming it if its policy says.
    async fn wake(&self, id: &str) -> Result<(), Refusal> {
        let woke = tokio::time::timeout(self.config.wake_timeout, self.backend.wake(id)).await;
        match woke {
            Ok(Ok(())) => Ok(()),
            Err(_) => Err(refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the microvm did not wake within {:?}",
                    self.config.wake_timeout
                ),
            )),
            Ok(Err(error @ WakeError::NotResumable { .. })) => {
                Err(refuse(StatusCode::CONFLICT, error.to_string()))
            }
            Ok(Err(error @ WakeError::Ended { .. })) => {
                Err(refuse(StatusCode::GONE, error.to_string()))
            }
            Ok(Err(WakeError::NotFound)) => Err(refuse(StatusCode::NOT_FOUND, "no such microvm")),
            Ok(Err(error @ WakeError::Refused(_))) => {
                Err(refuse(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
            }
            Ok(Err(error)) => {
                tracing::error!(microvm_id = id, error = %error, "wake failed");
                Err(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot wake the microvm",
                ))
            }
        }
    }

    /// Relays the request to the app and its answer back.
    // Limitation: each request opens its own tunnel and upstream connection;
    // upstream connections are not kept alive between requests.
    async fn forward(
        &self,
        target: Target,
        mut req: Request<Incoming>,
        credentials: &Credentials,
    ) -> Result<Response<Body>, Refusal> {
        let Target {
            microvm_id, port, ..
        } = target;
        let permit = self
            .upstream
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| refuse(StatusCode::SERVICE_UNAVAILABLE, "the proxy is stopping"))?;
        let stream = self
            .backend
            .tunnel(&microvm_id, port)
            .await
            .map_err(|error| {
                tracing::debug!(microvm_id, port, error = %error, "no tunnel");
                refuse(
                    StatusCode::BAD_GATEWAY,
                    format!("nothing answers on port {port} in the microvm"),
                )
            })?;
        let backend = self.backend.clone();
        let traffic_id = microvm_id.clone();
        let io = tunnel::bridge(
            stream,
            Box::new(move |sent, received| backend.record_traffic(&traffic_id, sent, received)),
        );
        let io = TokioIo::new(io);

        let upgrade = wants_upgrade(req.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
        let host = route::host_of(req.headers(), req.uri()).unwrap_or_default();
        strip_hop_by_hop(req.headers_mut(), upgrade);
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        if !req.headers().contains_key(header::HOST) {
            if let Ok(value) = HeaderValue::from_str(&host) {
                req.headers_mut().insert(header::HOST, value);
            }
        }

        let bad_gateway = |error: hyper::Error| {
            tracing::debug!(microvm_id, port, error = %error, "upstream failed");
            refuse(
                StatusCode::BAD_GATEWAY,
                format!("the app on port {port} did not answer"),
            )
        };
        let mut resp = if credentials.force_h2 && !upgrade {
            *req.version_mut() = Version::HTTP_2;
            *req.uri_mut() = Uri::try_from(format!("http://{host}{path}")).map_err(|_| {
                refuse(StatusCode::BAD_REQUEST, "the request's target is not a URI")
            })?;
            req.headers_mut().remove(header::HOST);
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(bad_gateway)?;
            tokio::spawn(async move {
                let _permit = permit;
                let _ = conn.await;
            });
            sender.send_request(req).await.map_err(bad_gateway)?
        } else {
            *req.version_mut() = Version::HTTP_11;
            *req.uri_mut() = Uri::try_from(path).map_err(|_| {
                refuse(StatusCode::BAD_REQUEST, "the request's target is not a URI")
            })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(bad_gateway)?;
            tokio::spawn(async move {
                let _permit = permit;
                let _ = conn.with_upgrades().await;
            });
            sender.send_request(req).await.map_err(bad_gateway)?
        };

        if let (Some(client_side), StatusCode::SWITCHING_PROTOCOLS) = (client_side, resp.status()) {
            let app_side = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(client_side, app_side, microvm_id));
            if credentials.offered_subprotocol
                && !resp.headers().contains_key(header::SEC_WEBSOCKET_PROTOCOL)
            {
                resp.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(route::SUBPROTOCOL),
                );
            }
            return Ok(resp.map(|_| empty()));
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(BodyExt::boxed))
    }
}

/// Joins an upgraded client connection to the app's.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    app: hyper::upgrade::OnUpgrade,
    microvm_id: String,
) {
    let (client, app) = tokio::join!(client, app);
    let (Ok(client), Ok(app)) = (client, app) else {
        tracing::debug!(microvm_id, "upgrade did not complete");
        return;
    };
    let mut client = TokioIo::new(client);
    let mut app = TokioIo::new(app);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut app).await;
}

/// Whether a request asks to switch protocols (a WebSocket).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes the headers that belong to one hop; an upgrade keeps
/// `Connection: upgrade` and `Upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "upgrade")
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    // `TE: trailers` says the client takes trailers (gRPC needs it); any
    // other TE is for this hop only.
    let trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::PROXY_AUTHORIZATION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// The proxy's own answer: `{"message": …}`.
pub(crate) fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let body = format!("{{\"message\":{}}}\n", json_string(message));
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
