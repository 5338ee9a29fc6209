//! Signature Version 4 verification of every request, with the refusals
//! AWS gives.
//!
//! The server recomputes the signature from the request as received (path,
//! query, the headers the client listed as signed, and the SHA-256 of the
//! body it actually got) with the secret of the access key named in the
//! credential scope, and compares in constant time. So a changed body, a
//! wrong secret, another region or service, or a date more than
//! [`MAX_CLOCK_SKEW`] away from the server's clock are all refused.

pub mod canonical;
pub mod signer;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::request::Parts;
use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};

use crate::credentials::Credentials;
use crate::error::ApiError;
use canonical::{HmacSha256, ALGORITHM, TERMINATOR};

/// The service name in credential scopes.
pub const SIGNING_NAME: &str = "lambda";

/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// AWS's words for a signature that does not verify.
const MISMATCH: &str = "The request signature we calculated does not match the signature you \
                        provided. Check your AWS Secret Access Key and signing method. Consult \
                        the service documentation for details.";

/// AWS's words for a request without a date.
const NO_DATE: &str =
    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.";

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    terminator: String,
    signed_headers: Vec<String>,
    signature: String,
}

/// Checks request signatures against the server's keys.
#[derive(Clone)]
pub struct Verifier {
    region: String,
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("region", &self.region)
            .field("access_key_ids", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `region` that knows `credentials`.
    pub fn new(region: impl Into<String>, credentials: &[Credentials]) -> Self {
        let secrets = credentials
            .iter()
            .map(|c| (c.access_key_id.clone(), c.secret_access_key.clone()))
            .collect();
        Self {
            region: region.into(),
            secrets,
        }
    }

    /// Verifies a request's signature at time `now` and returns the access
    /// key that signed it.
    ///
    /// # Errors
    ///
    /// `MissingAuthenticationTokenException` for an unsigned request,
    /// `IncompleteSignatureException` for a malformed one,
    /// `UnrecognizedClientException` for an unknown key, and
    /// `InvalidSignatureException` for anything that does not verify.
    pub fn verify(&self, parts: &Parts, body: &[u8], now: SystemTime) -> Result<String, ApiError> {
        let headers = &parts.headers;
        let Some(header) = headers.get("authorization") else {
            return Err(ApiError::MissingAuthenticationToken);
        };
        let header = header
            .to_str()
            .map_err(|_| incomplete("Authorization header is not ASCII"))?;
        let auth = parse_authorization(header)?;

        // Session tokens come from STS, which hearth does not issue.
        if headers.contains_key("x-amz-security-token") {
            return Err(ApiError::UnrecognizedClient);
        }
        let Some(secret) = self.secrets.get(&auth.access_key_id) else {
            return Err(ApiError::UnrecognizedClient);
        };

        let amz_date = header_str(headers, "x-amz-date").ok_or_else(|| incomplete(NO_DATE))?;
        let signed_at = canonical::parse_amz_date(amz_date).ok_or_else(|| {
            incomplete("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        })?;
        check_clock(amz_date, signed_at, now)?;
        self.check_scope(&auth, amz_date)?;

        let payload_hash = canonical::sha256_hex(body);
        if let Some(claimed) = header_str(headers, "x-amz-content-sha256") {
            if claimed != payload_hash {
                return Err(invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
        }

        let signed: Vec<(String, Vec<String>)> = auth
            .signed_headers
            .iter()
            .map(|name| (name.clone(), header_values(parts, name)))
            .collect();
        let creq = canonical::canonical_request(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &signed,
            &payload_hash,
        );
        let scope = format!(
            "{}/{}/{}/{TERMINATOR}",
            auth.date, self.region, SIGNING_NAME
        );
        let sts = canonical::string_to_sign(amz_date, &scope, &creq);
        let key = canonical::signing_key(secret, &auth.date, &self.region, SIGNING_NAME);

        let provided = hex::decode(&auth.signature).map_err(|_| invalid(MISMATCH))?;
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(sts.as_bytes());
        mac.verify_slice(&provided).map_err(|_| invalid(MISMATCH))?;
        Ok(auth.access_key_id)
    }

    /// The credential scope must name the request's day, this region, this
    /// service, and sign the headers that matter.
    fn check_scope(&self, auth: &Authorization, amz_date: &str) -> Result<(), ApiError> {
        if auth.date != amz_date[..8] {
            return Err(invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            )));
        }
        if auth.region != self.region {
            return Err(invalid(format!(
                "Credential should be scoped to a valid region, not '{}'. Expected '{}'.",
                auth.region, self.region
            )));
        }
        if auth.service != SIGNING_NAME {
            return Err(invalid(format!(
                "Credential should be scoped to correct service: '{SIGNING_NAME}'."
            )));
        }
        if auth.terminator != TERMINATOR {
            return Err(invalid(format!(
                "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
                auth.terminator
            )));
        }
        for required in ["host", "x-amz-date"] {
            if !auth.signed_headers.iter().any(|h| h == required) {
                return Err(invalid(format!(
                    "'{required}' must be a 'SignedHeader' in the AWS Authorization."
                )));
            }
        }
        Ok(())
    }
}

/// Refuses a request signed too long ago or too far ahead.
fn check_clock(amz_date: &str, signed_at: i64, now: SystemTime) -> Result<(), ApiError> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let skew = i64::try_from(MAX_CLOCK_SKEW.as_secs()).unwrap_or(i64::MAX);
    let fmt = canonical::format_amz_date;
    if signed_at < now - skew {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            fmt(now - skew),
            fmt(now)
        )));
    }
    if signed_at > now + skew {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            fmt(now + skew),
            fmt(now)
        )));
    }
    Ok(())
}

/// Splits `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
fn parse_authorization(header: &str) -> Result<Authorization, ApiError> {
    let Some(rest) = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
    else {
        return Err(incomplete(format!(
            "Unsupported Authorization algorithm; use {ALGORITHM}"
        )));
    };

    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(',') {
        if let Some((key, value)) = part.trim().split_once('=') {
            fields.insert(key.trim(), value.trim());
        }
    }
    let mut missing = Vec::new();
    for name in ["Credential", "SignedHeaders", "Signature"] {
        if !fields.contains_key(name) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }

    let credential: Vec<&str> = fields["Credential"].split('/').collect();
    let [access_key_id, date, region, service, terminator] = credential[..] else {
        return Err(incomplete(
            "Credential must have the form <access key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        terminator: terminator.to_owned(),
        signed_headers: fields["SignedHeaders"]
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: fields["Signature"].to_owned(),
    })
}

/// A header's value as text, if present and ASCII.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every value of a signed header; `host` falls back to the URI's
/// authority, which HTTP/2 carries instead of the header.
fn header_values(parts: &Parts, name: &str) -> Vec<String> {
    let values: Vec<String> = parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if values.is_empty() && name == "host" {
        if let Some(authority) = parts.uri.authority() {
            return vec![authority.to_string()];
        }
    }
    values
}

/// An `IncompleteSignatureException`.
fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::IncompleteSignature {
        message: message.into(),
    }
}

/// An `InvalidSignatureException`.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidSignature {
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
