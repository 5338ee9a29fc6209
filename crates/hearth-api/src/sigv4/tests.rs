//! Verification against requests signed by [`super::signer`], and the
//! refusals.

use std::time::{Duration, SystemTime};

use axum::http::request::Parts;
use axum::http::Request;

use super::signer::{sign, SigningRequest};
use super::Verifier;
use crate::credentials::Credentials;

fn credentials() -> Credentials {
    Credentials::new(
        "AKIAEXAMPLE000000001",
        "secretsecretsecretsecretsecretsecret0001",
    )
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// A signed request's parts, signed at `at` with `creds`, carrying `body`.
fn signed(creds: &Credentials, region: &str, body: &[u8], at: SystemTime) -> Parts {
    let path = "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Amicrovm-image%3Aa";
    let request = SigningRequest {
        method: "POST",
        path,
        query: "b=2&a=1",
        host: "127.0.0.1:7070",
        body,
    };
    let headers = sign(creds, region, &request, at);
    let (parts, ()) = Request::post(format!("{path}?b=2&a=1"))
        .header("host", "127.0.0.1:7070")
        .header("x-amz-date", &headers.amz_date)
        .header("x-amz-content-sha256", &headers.content_sha256)
        .header("authorization", &headers.authorization)
        .body(())
        .expect("a valid request")
        .into_parts();
    parts
}

fn verifier() -> Verifier {
    Verifier::new("us-east-1", &[credentials()])
}

#[test]
fn a_signed_request_verifies() {
    let parts = signed(&credentials(), "us-east-1", b"{}", now());
    assert_eq!(
        verifier().verify(&parts, b"{}", now()).unwrap(),
        credentials().access_key_id
    );
}

#[test]
fn an_unsigned_request_is_missing_a_token() {
    let (parts, ()) = Request::get("/2025-09-09/microvms")
        .body(())
        .unwrap()
        .into_parts();
    let error = verifier().verify(&parts, b"", now()).unwrap_err();
    assert_eq!(error.code(), "MissingAuthenticationTokenException");
    assert_eq!(error.status(), 403);
}

#[test]
fn a_wrong_secret_is_an_invalid_signature() {
    let wrong = Credentials::new(
        credentials().access_key_id,
        "not-the-secret-not-the-secret-not-the-se",
    );
    let parts = signed(&wrong, "us-east-1", b"{}", now());
    let error = verifier().verify(&parts, b"{}", now()).unwrap_err();
    assert_eq!(error.code(), "InvalidSignatureException");
}

#[test]
fn an_unknown_key_is_unrecognized() {
    let stranger = Credentials::new(
        "AKIASTRANGER00000000",
        "secretsecretsecretsecretsecretsecret0001",
    );
    let parts = signed(&stranger, "us-east-1", b"{}", now());
    let error = verifier().verify(&parts, b"{}", now()).unwrap_err();
    assert_eq!(error.code(), "UnrecognizedClientException");
}

#[test]
fn a_changed_body_is_an_invalid_signature() {
    let parts = signed(&credentials(), "us-east-1", br#"{"a":1}"#, now());
    let error = verifier().verify(&parts, br#"{"a":2}"#, now()).unwrap_err();
    assert_eq!(error.code(), "InvalidSignatureException");
}

#[test]
fn a_request_signed_twenty_minutes_ago_has_expired() {
    let parts = signed(
        &credentials(),
        "us-east-1",
        b"",
        now() - Duration::from_secs(20 * 60),
    );
    let error = verifier().verify(&parts, b"", now()).unwrap_err();
    assert_eq!(error.code(), "InvalidSignatureException");
    assert!(
        error.to_string().starts_with("Signature expired: "),
        "{error}"
    );
}

#[test]
fn a_request_signed_in_the_future_is_not_yet_current() {
    let parts = signed(
        &credentials(),
        "us-east-1",
        b"",
        now() + Duration::from_secs(20 * 60),
    );
    let error = verifier().verify(&parts, b"", now()).unwrap_err();
    assert!(
        error.to_string().starts_with("Signature not yet current: "),
        "{error}"
    );
}

#[test]
fn another_region_is_refused() {
    let parts = signed(&credentials(), "eu-west-1", b"", now());
    let error = verifier().verify(&parts, b"", now()).unwrap_err();
    assert_eq!(error.code(), "InvalidSignatureException");
    assert!(error.to_string().contains("region"), "{error}");
}

#[test]
fn a_malformed_header_is_incomplete() {
    let (parts, ()) = Request::get("/")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIA/x")
        .body(())
        .unwrap()
        .into_parts();
    let error = verifier().verify(&parts, b"", now()).unwrap_err();
    assert_eq!(error.code(), "IncompleteSignatureException");
}
