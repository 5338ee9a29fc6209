//! The one API error type and the one place it becomes an HTTP response.
//!
//! Each variant is an AWS error code. The modeled ones take their status from
//! the model's error shapes (note `InsufficientCapacityException` is 500 and
//! `ServiceQuotaExceededException` 402 there); the rest are the protocol's own
//! (SigV4 refusals, unknown routes). The response carries the code in the
//! `x-amzn-errortype` header, which botocore's rest-json parser reads first,
//! and a JSON body with `message`, `__type` and the shape's other members.
//!
//! Client errors are logged at debug level; server errors give the client a
//! plain message and log the detail.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// The boxed cause of an internal error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error returned by an operation, mapped to the AWS error shape.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The input breaks a constraint (400 `ValidationException`).
    #[error("{message}")]
    Validation {
        /// What is wrong, naming the field.
        message: String,
    },

    /// A resource does not exist (404 `ResourceNotFoundException`).
    #[error("{message}")]
    ResourceNotFound {
        /// What was not found.
        message: String,
        /// The kind of resource, such as `microvm`.
        resource_type: Option<String>,
        /// The identifier that was looked up.
        resource_id: Option<String>,
    },

    /// The resource's state forbids the call (409 `ConflictException`).
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The kind of resource.
        resource_type: Option<String>,
        /// The resource's identifier.
        resource_id: Option<String>,
    },

    /// A quota would be exceeded (402 `ServiceQuotaExceededException`).
    #[error("{message}")]
    ServiceQuotaExceeded {
        /// Which quota.
        message: String,
        /// The kind of resource.
        resource_type: Option<String>,
        /// The resource's identifier.
        resource_id: Option<String>,
        /// The quota's service code.
        service_code: Option<String>,
        /// The quota's code.
        quota_code: Option<String>,
    },

    /// The host cannot hold the request (500 `InsufficientCapacityException`).
    #[error("{message}")]
    InsufficientCapacity {
        /// What is short.
        message: String,
    },

    /// The caller may not do this (403 `AccessDeniedException`).
    #[error("{message}")]
    AccessDenied {
        /// Why.
        message: String,
    },

    /// Too many requests (429 `ThrottlingException`).
    #[error("{message}")]
    Throttling {
        /// Which limit.
        message: String,
        /// Seconds to wait, sent as `Retry-After`.
        retry_after_seconds: Option<u32>,
    },

    /// Too many requests, as the tag operations say it (429
    /// `TooManyRequestsException`).
    #[error("{message}")]
    TooManyRequests {
        /// Which limit.
        message: String,
    },

    /// A tag operation's parameter is invalid (400
    /// `InvalidParameterValueException`).
    #[error("{message}")]
    InvalidParameterValue {
        /// What is wrong.
        message: String,
    },

    /// A tag operation conflicts (409 `ResourceConflictException`).
    #[error("{message}")]
    ResourceConflict {
        /// What conflicts.
        message: String,
    },

    /// Something failed inside the server (500 `InternalServerException`).
    #[error("internal error")]
    Internal {
        /// The detail, logged and never sent.
        #[source]
        source: BoxError,
        /// Seconds to wait, sent as `Retry-After`.
        retry_after_seconds: Option<u32>,
    },

    /// Something failed inside a tag operation (500 `ServiceException`).
    #[error("service error")]
    Service {
        /// The detail, logged and never sent.
        #[source]
        source: BoxError,
    },

    /// The request carries no signature (403
    /// `MissingAuthenticationTokenException`).
    #[error("missing authentication token")]
    MissingAuthenticationToken,

    /// The access key is unknown (403 `UnrecognizedClientException`).
    #[error("the security token included in the request is invalid")]
    UnrecognizedClient,

    /// The signature does not verify (403 `InvalidSignatureException`).
    #[error("{message}")]
    InvalidSignature {
        /// Why, in AWS's words where AWS has them.
        message: String,
    },

    /// The `Authorization` header is malformed (400
    /// `IncompleteSignatureException`).
    #[error("{message}")]
    IncompleteSignature {
        /// What is missing.
        message: String,
    },

    /// No operation has this method and path (404
    /// `UnknownOperationException`).
    #[error("no operation matches {method} {path}")]
    UnknownOperation {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },

    /// The body is larger than the server accepts (413
    /// `RequestEntityTooLargeException`).
    #[error("request body is larger than {limit} bytes")]
    RequestEntityTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// The error codes of the model's error shapes and their HTTP statuses.
pub const MODELED_ERRORS: &[(&str, u16)] = &[
    ("AccessDeniedException", 403),
    ("ConflictException", 409),
    ("InsufficientCapacityException", 500),
    ("InternalServerException", 500),
    ("InvalidParameterValueException", 400),
    ("ResourceConflictException", 409),
    ("ResourceNotFoundException", 404),
    ("ServiceException", 500),
    ("ServiceQuotaExceededException", 402),
    ("ThrottlingException", 429),
    ("TooManyRequestsException", 429),
    ("ValidationException", 400),
];

impl ApiError {
    /// A `ValidationException` with this message.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation {
            message: message.into(),
        }
    }

    /// A `ResourceNotFoundException` for one resource, such as
    /// `not_found("microvm", "microvm-0123…")`.
    pub fn not_found(resource_type: &str, resource_id: &str) -> Self {
        Self::ResourceNotFound {
            message: format!("{resource_type} not found: {resource_id}"),
            resource_type: Some(resource_type.to_owned()),
            resource_id: Some(resource_id.to_owned()),
        }
    }

    /// A `ConflictException` about one resource.
    pub fn conflict(resource_type: &str, resource_id: &str, message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            resource_type: Some(resource_type.to_owned()),
            resource_id: Some(resource_id.to_owned()),
        }
    }

    /// An `InsufficientCapacityException` with this message.
    pub fn insufficient_capacity(message: impl Into<String>) -> Self {
        Self::InsufficientCapacity {
            message: message.into(),
        }
    }

    /// An `InternalServerException` caused by `source`.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal {
            source: source.into(),
            retry_after_seconds: None,
        }
    }

    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "ValidationException",
            Self::ResourceNotFound { .. } => "ResourceNotFoundException",
            Self::Conflict { .. } => "ConflictException",
            Self::ServiceQuotaExceeded { .. } => "ServiceQuotaExceededException",
            Self::InsufficientCapacity { .. } => "InsufficientCapacityException",
            Self::AccessDenied { .. } => "AccessDeniedException",
            Self::Throttling { .. } => "ThrottlingException",
            Self::TooManyRequests { .. } => "TooManyRequestsException",
            Self::InvalidParameterValue { .. } => "InvalidParameterValueException",
            Self::ResourceConflict { .. } => "ResourceConflictException",
            Self::Internal { .. } => "InternalServerException",
            Self::Service { .. } => "ServiceException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature { .. } => "InvalidSignatureException",
            Self::IncompleteSignature { .. } => "IncompleteSignatureException",
            Self::UnknownOperation { .. } => "UnknownOperationException",
            Self::RequestEntityTooLarge { .. } => "RequestEntityTooLargeException",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. }
            | Self::InvalidParameterValue { .. }
            | Self::IncompleteSignature { .. } => StatusCode::BAD_REQUEST,
            Self::ServiceQuotaExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::AccessDenied { .. }
            | Self::MissingAuthenticationToken
            | Self::UnrecognizedClient
            | Self::InvalidSignature { .. } => StatusCode::FORBIDDEN,
            Self::ResourceNotFound { .. } | Self::UnknownOperation { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } | Self::ResourceConflict { .. } => StatusCode::CONFLICT,
            Self::RequestEntityTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Throttling { .. } | Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InsufficientCapacity { .. } | Self::Internal { .. } | Self::Service { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message sent to the client: never an internal error's detail.
    fn client_message(&self) -> String {
        match self {
            Self::Internal { .. } | Self::Service { .. } => "internal server error".to_owned(),
            Self::MissingAuthenticationToken => "Missing Authentication Token".to_owned(),
            Self::UnrecognizedClient => {
                "The security token included in the request is invalid.".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The JSON body: `message`, `__type` and the shape's other members.
    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("message".into(), json!(self.client_message()));
        body.insert("__type".into(), json!(self.code()));

        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        };
        match self {
            Self::ResourceNotFound {
                resource_type,
                resource_id,
                ..
            }
            | Self::Conflict {
                resource_type,
                resource_id,
                ..
            } => {
                put("resourceType", resource_type);
                put("resourceId", resource_id);
            }
            Self::ServiceQuotaExceeded {
                resource_type,
                resource_id,
                service_code,
                quota_code,
                ..
            } => {
                put("resourceType", resource_type);
                put("resourceId", resource_id);
                put("serviceCode", service_code);
                put("quotaCode", quota_code);
            }
            // Lambda's older shapes say whose fault it was in `Type`.
            Self::TooManyRequests { .. }
            | Self::InvalidParameterValue { .. }
            | Self::ResourceConflict { .. } => put("Type", &Some("User".to_owned())),
            Self::Service { .. } => put("Type", &Some("Service".to_owned())),
            _ => {}
        }
        Value::Object(body)
    }

    /// Seconds the client should wait, for the `Retry-After` header.
    fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Throttling {
                retry_after_seconds,
                ..
            }
            | Self::Internal {
                retry_after_seconds,
                ..
            } => *retry_after_seconds,
            _ => None,
        }
    }

    /// Logs the error at the level its status calls for.
    fn log(&self) {
        let code = self.code();
        match self {
            Self::Internal { source, .. } | Self::Service { source } => {
                tracing::error!(code, error = %source, detail = ?source, "request failed");
            }
            Self::InsufficientCapacity { message } => {
                tracing::warn!(code, message = %message, "request refused");
            }
            other => tracing::debug!(code, message = %other, "request refused"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();

        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.code()));
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after() {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modeled_statuses_match_the_variants() {
        let samples = [
            ApiError::AccessDenied {
                message: "x".into(),
            },
            ApiError::conflict("microvm", "m", "x"),
            ApiError::insufficient_capacity("x"),
            ApiError::internal("x"),
            ApiError::InvalidParameterValue {
                message: "x".into(),
            },
            ApiError::ResourceConflict {
                message: "x".into(),
            },
            ApiError::not_found("microvm", "m"),
            ApiError::Service { source: "x".into() },
            ApiError::ServiceQuotaExceeded {
                message: "x".into(),
                resource_type: None,
                resource_id: None,
                service_code: None,
                quota_code: None,
            },
            ApiError::Throttling {
                message: "x".into(),
                retry_after_seconds: Some(3),
            },
            ApiError::TooManyRequests {
                message: "x".into(),
            },
            ApiError::validation("x"),
        ];
        for (error, (code, status)) in samples.iter().zip(MODELED_ERRORS) {
            assert_eq!(error.code(), *code);
            assert_eq!(error.status().as_u16(), *status, "{code}");
        }
    }

    #[test]
    fn internal_detail_is_not_sent() {
        let error = ApiError::internal("disk on fire at /var/lib/hearth");
        let body = error.body();
        assert_eq!(body["message"], "internal server error");
        assert_eq!(body["__type"], "InternalServerException");
    }

    #[test]
    fn not_found_names_the_resource() {
        let response = ApiError::not_found("microvm", "microvm-1").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ResourceNotFoundException"
        );
    }
}
