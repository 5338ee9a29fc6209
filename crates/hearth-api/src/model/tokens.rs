//! Endpoint and shell tokens: `CreateMicrovmAuthToken` and
//! `CreateMicrovmShellAuthToken`.
//!
//! A token comes back as a map of header names to values (`TokenParts`); the
//! value under `X-aws-proxy-auth` goes into that header of each request to
//! the microVM's endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::Unit;

/// Header names to values that make up a token (`TokenParts`).
pub type TokenParts = BTreeMap<String, String>;

/// The header that carries an endpoint token.
pub const PROXY_AUTH_HEADER: &str = "X-aws-proxy-auth";

/// Ports a token opens (`PortSpecification`, a union).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PortSpecification {
    /// One port.
    Port(i32),
    /// An inclusive range of ports.
    Range(PortRange),
    /// Every port.
    AllPorts(Unit),
}

/// An inclusive range of ports (`PortRange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// The first port.
    pub start_port: i32,
    /// The last port.
    pub end_port: i32,
}

/// Input of `CreateMicrovmAuthToken`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmAuthTokenRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
    /// Minutes until the token expires (at most 60).
    pub expiration_in_minutes: i32,
    /// The ports the token opens.
    pub allowed_ports: Vec<PortSpecification>,
}

/// Output of `CreateMicrovmAuthToken`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmAuthTokenResponse {
    /// The token's header names and values.
    pub auth_token: TokenParts,
}

/// Input of `CreateMicrovmShellAuthToken`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmShellAuthTokenRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
    /// Minutes until the token expires.
    pub expiration_in_minutes: i32,
}

/// Output of `CreateMicrovmShellAuthToken`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmShellAuthTokenResponse {
    /// The token's header names and values.
    pub auth_token: TokenParts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specifications_are_unions() {
        let all = serde_json::to_string(&PortSpecification::AllPorts(Unit {})).unwrap();
        assert_eq!(all, r#"{"allPorts":{}}"#);
        let range: PortSpecification =
            serde_json::from_str(r#"{"range":{"startPort":8000,"endPort":8010}}"#).unwrap();
        assert_eq!(
            range,
            PortSpecification::Range(PortRange {
                start_port: 8000,
                end_port: 8010
            })
        );
    }
}
