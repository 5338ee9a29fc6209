//! Endpoint and shell tokens: signed, bound to one microVM, short-lived.
//!
//! A token is `<payload>.<mac>`, both base64url without padding: the payload
//! is JSON (`v`, `kind`, `microvm`, `exp` in Unix seconds, `ports`) and the
//! MAC is HMAC-SHA256 over the payload's text with the server's token key.
//! The key is 32 random bytes in `<data>/token-key` (mode 0600), made on
//! first start. [`TokenSigner::verify`] checks a token's signature, expiry and
//! version.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_api::model::PortSpecification;
use hmac::{KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The token format's version.
const VERSION: u32 = 1;

/// What a token opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// The microVM's endpoint, on the allowed ports.
    Endpoint,
    /// The microVM's shell.
    Shell,
}

/// Ports a token allows: inclusive ranges, or all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedPorts {
    /// Every port.
    All,
    /// These inclusive ranges.
    Ranges(Vec<(u16, u16)>),
}

impl AllowedPorts {
    /// The ports a `CreateMicrovmAuthToken` request names.
    pub fn from_specs(specs: &[PortSpecification]) -> Self {
        let clamp = |p: i32| u16::try_from(p.clamp(0, 65535)).unwrap_or(u16::MAX);
        let mut ranges = Vec::new();
        for spec in specs {
            match spec {
                PortSpecification::AllPorts(_) => return Self::All,
                PortSpecification::Port(p) => ranges.push((clamp(*p), clamp(*p))),
                PortSpecification::Range(r) => {
                    ranges.push((clamp(r.start_port), clamp(r.end_port)))
                }
            }
        }
        Self::Ranges(ranges)
    }

    /// Whether `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        match self {
            Self::All => true,
            Self::Ranges(ranges) => ranges.iter().any(|(a, b)| (*a..=*b).contains(&port)),
        }
    }
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The format's version.
    pub v: u32,
    /// What it opens.
    pub kind: TokenKind,
    /// The microVM it is bound to.
    pub microvm: String,
    /// When it expires, in Unix seconds.
    pub exp: i64,
    /// The ports it allows.
    pub ports: AllowedPorts,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It is not a token this server made.
    #[error("token is malformed or its signature does not verify")]
    Invalid,
    /// It has expired.
    #[error("token expired at {exp}")]
    Expired {
        /// When, in Unix seconds.
        exp: i64,
    },
}

/// Errors loading or making the token key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("cannot use token key {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file has the wrong length.
    #[error("token key {path} is not 32 bytes")]
    Length {
        /// The file.
        path: PathBuf,
    },
}

/// Signs and checks tokens with the server's key.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<key>)")
    }
}

impl TokenSigner {
    /// A signer with `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The signer whose key is in `path`, made there if there is none.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or written, or is not a key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let key = bytes.try_into().map_err(|_| KeyError::Length {
                    path: path.to_owned(),
                })?;
                return Ok(Self::new(key));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }

        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let temp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io)?;
        file.write_all(&key).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)?;
        Ok(Self::new(key))
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &TokenClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mac = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The claims of a token this server signed, if it has not expired at
    /// `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`TokenError`] when the token is not one of ours or has expired.
    pub fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        let (payload, mac) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        self.mac(payload.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| TokenError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if claims.v != VERSION {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired { exp: claims.exp });
        }
        Ok(claims)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac
    }
}

/// The claims of a new token.
pub fn claims(kind: TokenKind, microvm: &str, exp: i64, ports: AllowedPorts) -> TokenClaims {
    TokenClaims {
        v: VERSION,
        kind,
        microvm: microvm.to_owned(),
        exp,
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_api::model::{PortRange, Unit};

    #[test]
    fn tokens_verify_until_they_expire() {
        let signer = TokenSigner::new([7; 32]);
        let ports = AllowedPorts::from_specs(&[
            PortSpecification::Port(8080),
            PortSpecification::Range(PortRange {
                start_port: 9000,
                end_port: 9010,
            }),
        ]);
        let token = signer.sign(&claims(TokenKind::Endpoint, "microvm-1", 1_000, ports));
        let back = signer.verify(&token, 999).unwrap();
        assert!(back.ports.allows(8080) && back.ports.allows(9005) && !back.ports.allows(22));
        assert_eq!(
            signer.verify(&token, 1_000),
            Err(TokenError::Expired { exp: 1_000 })
        );

        let other = TokenSigner::new([8; 32]);
        assert_eq!(other.verify(&token, 0), Err(TokenError::Invalid));
        let all = AllowedPorts::from_specs(&[PortSpecification::AllPorts(Unit {})]);
        assert!(all.allows(1));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let signer = TokenSigner::new([1; 32]);
        let token = signer.sign(&claims(
            TokenKind::Shell,
            "microvm-a",
            50,
            AllowedPorts::All,
        ));
        let (_, mac) = token.split_once('.').unwrap();
        let forged = claims(TokenKind::Shell, "microvm-b", 50, AllowedPorts::All);
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            signer.verify(&format!("{forged}.{mac}"), 0),
            Err(TokenError::Invalid)
        );
    }
}
