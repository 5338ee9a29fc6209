//! The HTTP server: one handler that takes every request through the same
//! steps — read the body, verify the signature, route, gather the input,
//! validate, dispatch (once per `clientToken`), encode.
//!
//! Each request gets an id, sent back as `x-amzn-RequestId` (botocore shows
//! it as `ResponseMetadata.RequestId`), and a tracing span that carries it
//! with the operation and the access key.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::RngCore;
use tokio::net::TcpListener;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::control::{Control, RequestContext};
use crate::credentials::Credentials;
use crate::error::ApiError;
use crate::idempotency::{Idempotency, TokenStore};
use crate::operation::{dispatch, encode_body, ApiResponse, Operation};
use crate::sigv4::Verifier;
use crate::{routing, validation};

/// The largest request body accepted, in bytes (Lambda's own limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// How the API server is set up.
#[derive(Clone)]
pub struct ApiConfig {
    /// The region requests must be signed for.
    pub region: String,
    /// The key pairs that may sign requests.
    pub credentials: Vec<Credentials>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Where `clientToken` calls are kept durably; in memory only if `None`.
    pub token_store: Option<Arc<dyn TokenStore>>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("token_store", &self.token_store.is_some())
            .finish()
    }
}

impl ApiConfig {
    /// A configuration for `region` with one key pair.
    pub fn new(region: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            region: region.into(),
            credentials: vec![credentials],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            token_store: None,
        }
    }

    /// The same configuration, keeping `clientToken` calls in `store`.
    pub fn with_token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.token_store = Some(store);
        self
    }
}

/// What every request shares.
struct AppState {
    control: Arc<dyn Control>,
    verifier: Verifier,
    idempotency: Idempotency,
    max_body_bytes: usize,
}

/// The API as an axum router, serving `control`.
pub fn router(config: ApiConfig, control: Arc<dyn Control>) -> Router {
    let idempotency = match config.token_store {
        Some(store) => Idempotency::with_store(store),
        None => Idempotency::new(),
    };
    let state = AppState {
        control,
        verifier: Verifier::new(config.region, &config.credentials),
        idempotency,
        max_body_bytes: config.max_body_bytes,
    };
    Router::new().fallback(handle).with_state(Arc::new(state))
}

/// Serves `router` on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The one handler.
async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = new_request_id();
    let span = tracing::info_span!(
        "api_request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        operation = Empty,
        access_key_id = Empty,
    );
    let started = Instant::now();

    let mut response = process(&state, &request_id, request)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
    });
    response
}

/// The steps of a request, each of which may refuse it.
async fn process(
    state: &AppState,
    request_id: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body_bytes).await?;

    let access_key_id = state.verifier.verify(&parts, &body, SystemTime::now())?;
    Span::current().record("access_key_id", access_key_id.as_str());

    let route = routing::route(parts.method.as_str(), parts.uri.path())?;
    let operation = route.operation;
    Span::current().record("operation", operation.spec().name);

    let input = routing::gather_input(&route, parts.uri.query(), &body)?;
    let request = validation::validate(operation, &input)?;

    let ctx = RequestContext {
        request_id: request_id.to_owned(),
        access_key_id,
    };
    let response = state
        .idempotency
        .run(&ctx.access_key_id, &request, || {
            dispatch(state.control.as_ref(), &ctx, request.clone())
        })
        .await?;
    encode(operation, &response)
}

/// Reads the whole body, refusing one larger than `limit`.
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::RequestEntityTooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|error| ApiError::validation(format!("cannot read request body: {error}")))
}

/// The success response of `operation`.
fn encode(operation: Operation, response: &ApiResponse) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(operation.spec().status).map_err(ApiError::internal)?;
    let response = match encode_body(response).map_err(ApiError::internal)? {
        Some(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        None => status.into_response(),
    };
    Ok(response)
}

/// A random request id in UUID form.
fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
