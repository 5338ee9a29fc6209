//! Signing requests the way the AWS clients do, for hearth's own clients and
//! for tests.
//!
//! The signature covers `host`, `x-amz-content-sha256` and `x-amz-date`; the
//! caller sends those three headers and `Authorization` with the request.

use std::time::{SystemTime, UNIX_EPOCH};

use super::canonical::{self, ALGORITHM, TERMINATOR};
use super::SIGNING_NAME;
use crate::credentials::Credentials;

/// The parts of a request that a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SigningRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path exactly as sent, percent-encoded.
    pub path: &'a str,
    /// The query string exactly as sent, without `?`.
    pub query: &'a str,
    /// The `Host` header's value.
    pub host: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The headers that carry a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The `Authorization` header.
    pub authorization: String,
    /// The `X-Amz-Date` header.
    pub amz_date: String,
    /// The `X-Amz-Content-SHA256` header.
    pub content_sha256: String,
}

/// Signs `request` with `credentials` for `region` as of `time`, for the
/// Lambda MicroVMs API.
pub fn sign(
    credentials: &Credentials,
    region: &str,
    request: &SigningRequest<'_>,
    time: SystemTime,
) -> SignedHeaders {
    sign_for(SIGNING_NAME, credentials, region, request, time)
}

/// Signs `request` for `service` (the credential scope's service name, such
/// as `s3`), with `credentials` for `region` as of `time`.
pub fn sign_for(
    service: &str,
    credentials: &Credentials,
    region: &str,
    request: &SigningRequest<'_>,
    time: SystemTime,
) -> SignedHeaders {
    let unix = time
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let amz_date = canonical::format_amz_date(unix);
    let date = &amz_date[..8];
    let content_sha256 = canonical::sha256_hex(request.body);

    let headers = vec![
        ("host".to_owned(), vec![request.host.to_owned()]),
        (
            "x-amz-content-sha256".to_owned(),
            vec![content_sha256.clone()],
        ),
        ("x-amz-date".to_owned(), vec![amz_date.clone()]),
    ];
    let creq = canonical::canonical_request(
        request.method,
        request.path,
        request.query,
        &headers,
        &content_sha256,
    );
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let sts = canonical::string_to_sign(&amz_date, &scope, &creq);
    let key = canonical::signing_key(&credentials.secret_access_key, date, region, service);
    let signature = hex::encode(canonical::hmac(&key, sts.as_bytes()));

    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
         Signature={signature}",
        credentials.access_key_id
    );
    SignedHeaders {
        authorization,
        amz_date,
        content_sha256,
    }
}
