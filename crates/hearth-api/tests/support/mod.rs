//! Shared by the integration tests: the in-memory control plane and a client
//! that signs requests and sends them to the router without a socket.

pub mod fake_control;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use hearth_api::sigv4::signer::{sign, SigningRequest};
use hearth_api::{router, ApiConfig, Credentials};
use serde_json::Value;
use tower::ServiceExt;

/// The region every test signs for.
pub const REGION: &str = "us-east-1";

/// The host every test request names.
const HOST: &str = "127.0.0.1:7070";

/// A response's status, error type and JSON body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The `x-amzn-errortype` header, if any.
    pub error_type: Option<String>,
    /// Whether the `x-amzn-RequestId` header was set.
    pub has_request_id: bool,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

/// A router over a fresh fake, and the keys that sign for it.
pub struct Harness {
    /// The router under test.
    pub app: Router,
    /// The server's keys.
    pub credentials: Credentials,
}

impl Harness {
    /// A server with a fresh in-memory control plane.
    pub fn new() -> Self {
        let credentials = Credentials::generate();
        let control = Arc::new(fake_control::FakeControl::new(REGION));
        let app = router(ApiConfig::new(REGION, credentials.clone()), control);
        Self { app, credentials }
    }

    /// Sends a request signed with the server's keys.
    pub async fn call(&self, method: &str, path_and_query: &str, body: &str) -> Reply {
        self.call_signed_by(&self.credentials.clone(), method, path_and_query, body)
            .await
    }

    /// Sends a request signed with `credentials`.
    pub async fn call_signed_by(
        &self,
        credentials: &Credentials,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> Reply {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let signing = SigningRequest {
            method,
            path,
            query,
            host: HOST,
            body: body.as_bytes(),
        };
        let signed = sign(credentials, REGION, &signing, SystemTime::now());
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", HOST)
            .header("content-type", "application/json")
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", signed.content_sha256)
            .header("authorization", signed.authorization)
            .body(Body::from(body.to_owned()))
            .expect("a valid request");
        self.send(request).await
    }

    /// Sends a request as it is.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let has_request_id = response.headers().contains_key("x-amzn-requestid");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON")
        };
        Reply {
            status,
            error_type,
            has_request_id,
            body,
        }
    }
}
