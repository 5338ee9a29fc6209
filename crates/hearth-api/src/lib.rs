//! hearth's Lambda MicroVMs wire API: the `lambda-microvms` 2025-09-09
//! model's 24 operations over rest-json, with SigV4, served by axum.
//!
//! A request goes through one path ([`server`]): its body is read, its
//! signature verified ([`sigv4`]), its route found from the model's URI
//! templates ([`routing`]), its input gathered from labels, query and body
//! and checked against every constraint of the model ([`validation`]), and
//! then exactly one [`Control`] method runs with the typed input ([`model`]).
//! Errors of every kind are one type, [`ApiError`], which becomes the AWS
//! error shape in one place ([`error`]).
//!
//! The crate also holds what the control plane needs at the wire's edge:
//! `clientToken` idempotency ([`idempotency`]), paging tokens
//! ([`pagination`]), the server's key pair ([`credentials`]) and the
//! `hearth` profile in the user's AWS config files ([`aws_profile`]).

#![forbid(unsafe_code)]

pub mod aws_profile;
pub mod control;
pub mod credentials;
pub mod encoding;
pub mod error;
pub mod idempotency;
pub mod model;
pub mod operation;
pub mod pagination;
pub mod routing;
pub mod server;
pub mod sigv4;
pub mod validation;

pub use aws_profile::{AwsConfigFiles, ProfileError, DEFAULT_PROFILE};
pub use control::{Control, RequestContext};
pub use credentials::{Credentials, CredentialsError};
pub use encoding::{encode_input, EncodeError, EncodedRequest};
pub use error::ApiError;
pub use idempotency::{StoredCall, TokenKey, TokenStore};
pub use operation::{ApiRequest, ApiResponse, Operation, OperationSpec};
pub use server::{router, serve, ApiConfig};
