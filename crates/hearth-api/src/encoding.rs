//! Turns an operation's typed input into the HTTP request the model binds
//! it to: the inverse of [`crate::routing::gather_input`], for hearth's own
//! clients.
//!
//! Path labels are percent-encoded whole (so an ARN's `:` and `/` stay in
//! one segment), query members become `name=value` pairs (a list repeats
//! its name), and every other member goes into a JSON body. An input
//! without body members is sent without a body.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::operation::Operation;
use crate::validation::schema::Location;

/// Everything but RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An operation's request, ready to sign and send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, labels filled in and percent-encoded.
    pub path: String,
    /// The query string without `?`, possibly empty.
    pub query: String,
    /// The JSON body, empty when the input has no body members.
    pub body: Vec<u8>,
}

/// Errors encoding an input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The input did not serialize to a JSON object.
    #[error("the input of {operation} is not a JSON object")]
    NotAnObject {
        /// The operation's name.
        operation: &'static str,
    },
    /// A path label has no value.
    #[error("the input of {operation} has no {label}")]
    MissingLabel {
        /// The operation's name.
        operation: &'static str,
        /// The label.
        label: &'static str,
    },
}

/// Encodes `input` (the operation's input serialized to JSON) for
/// `operation`.
///
/// # Errors
///
/// When `input` is not an object or lacks a path label.
pub fn encode_input(operation: Operation, input: &Value) -> Result<EncodedRequest, EncodeError> {
    let spec = operation.spec();
    let Value::Object(fields) = input else {
        return Err(EncodeError::NotAnObject {
            operation: spec.name,
        });
    };

    let mut path = spec.uri.to_owned();
    let mut query = Vec::new();
    let mut body = Map::new();
    for member in spec.input.members() {
        let Some(value) = fields.get(member.name).filter(|v| !v.is_null()) else {
            if member.location == Location::Uri {
                return Err(EncodeError::MissingLabel {
                    operation: spec.name,
                    label: member.name,
                });
            }
            continue;
        };
        match member.location {
            Location::Uri => {
                let encoded = utf8_percent_encode(&scalar_text(value), UNRESERVED).to_string();
                path = path.replace(&format!("{{{}}}", member.name), &encoded);
            }
            Location::Query(name) => {
                let values = match value {
                    Value::Array(items) => items.iter().map(scalar_text).collect(),
                    other => vec![scalar_text(other)],
                };
                for text in values {
                    query.push(format!(
                        "{}={}",
                        utf8_percent_encode(name, UNRESERVED),
                        utf8_percent_encode(&text, UNRESERVED)
                    ));
                }
            }
            Location::Body => {
                body.insert(member.name.to_owned(), value.clone());
            }
        }
    }

    let body = if body.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&Value::Object(body)).expect("a JSON map always serializes")
    };
    Ok(EncodedRequest {
        method: spec.method,
        path,
        query: query.join("&"),
        body,
    })
}

/// A scalar as it is written in a path or a query string.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::routing::{gather_input, route};
    use serde_json::json;

    #[test]
    fn encoded_requests_route_back_to_the_same_input() {
        let cases = [
            (
                Operation::GetMicrovmImage,
                json!({"imageIdentifier": "arn:aws:lambda:us-east-1:000000000000:microvm-image:app"}),
            ),
            (
                Operation::ListMicrovms,
                json!({"maxResults": 5, "imageIdentifier": "app", "imageVersion": "2"}),
            ),
            (
                Operation::RunMicrovm,
                json!({"imageIdentifier": "app", "runHookPayload": "a b&c"}),
            ),
            (
                Operation::TerminateMicrovm,
                json!({"microvmIdentifier": "microvm-0123"}),
            ),
        ];
        for (operation, input) in cases {
            let encoded = encode_input(operation, &input).unwrap();
            let found = route(encoded.method, &encoded.path).unwrap();
            assert_eq!(found.operation, operation);
            let gathered = gather_input(&found, Some(&encoded.query), &encoded.body).unwrap();
            assert_eq!(gathered, input, "{operation:?}");
        }
    }

    #[test]
    fn an_input_without_its_label_is_refused() {
        let error = encode_input(Operation::GetMicrovm, &json!({})).unwrap_err();
        assert!(error.to_string().contains("microvmIdentifier"), "{error}");
    }

    #[test]
    fn operations_without_body_members_send_no_body() {
        let encoded =
            encode_input(Operation::GetMicrovm, &json!({"microvmIdentifier": "m"})).unwrap();
        assert!(encoded.body.is_empty());
        assert_eq!(encoded.path, "/2025-09-09/microvms/m");
    }
}
