//! Finds the operation for a method and path, and gathers its input from
//! the path labels, the query string and the JSON body.
//!
//! Routing matches the model's URI templates segment by segment on the raw
//! path, so a label may hold any percent-encoded text (ARNs with `:` and
//! `/`). A path that matches a template except for an empty label is a
//! `ValidationException` naming the label, as the model requires labels to
//! be non-empty.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Number, Value};

use crate::error::ApiError;
use crate::operation::Operation;
use crate::validation::schema::{Kind, Location};
use crate::validation::{message, FieldError};

/// An operation and the decoded values of its path labels.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// The operation.
    pub operation: Operation,
    /// Label names and decoded values.
    pub labels: Vec<(&'static str, String)>,
}

/// The operation bound to `method` and the raw `path`.
///
/// # Errors
///
/// `UnknownOperationException` when nothing matches, `ValidationException`
/// when a label is empty or not UTF-8.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut empty_label = None;

    for operation in Operation::ALL {
        let spec = operation.spec();
        if spec.method != method {
            continue;
        }
        let template: Vec<&str> = spec.uri.split('/').collect();
        if template.len() != segments.len() {
            continue;
        }

        let mut labels = Vec::new();
        let mut matched = true;
        for (pattern, segment) in template.iter().zip(&segments) {
            match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(label) => labels.push((label, *segment)),
                None if pattern == segment => {}
                None => {
                    matched = false;
                    break;
                }
            }
        }
        if !matched {
            continue;
        }

        if let Some((label, _)) = labels.iter().find(|(_, value)| value.is_empty()) {
            empty_label = Some(*label);
            continue;
        }
        let labels = labels
            .into_iter()
            .map(|(label, raw)| decode_label(label, raw).map(|value| (label, value)))
            .collect::<Result<_, _>>()?;
        return Ok(Route {
            operation: *operation,
            labels,
        });
    }

    match empty_label {
        Some(label) => Err(ApiError::validation(message(&[FieldError::new(
            label,
            "Member must have length greater than or equal to 1",
        )]))),
        None => Err(ApiError::UnknownOperation {
            method: method.to_owned(),
            path: path.to_owned(),
        }),
    }
}

/// Percent-decodes one label.
fn decode_label(label: &str, raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            ApiError::validation(message(&[FieldError::new(
                label,
                "Member must be valid UTF-8",
            )]))
        })
}

/// Gathers the input of `route`'s operation into one JSON object under the
/// members' names: labels, then query parameters, then body members.
///
/// Query values become numbers or booleans where the member's shape says
/// so; a value that does not parse stays a string, so that validation names
/// the field.
///
/// # Errors
///
/// A `ValidationException` when the body is not a JSON object.
pub fn gather_input(route: &Route, query: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let shape = route.operation.spec().input;
    let body = parse_body(body)?;
    let params = parse_query(query.unwrap_or(""));
    let mut input = Map::new();

    for member in shape.members() {
        let value = match member.location {
            Location::Uri => route
                .labels
                .iter()
                .find(|(label, _)| *label == member.name)
                .map(|(_, value)| Value::String(value.clone())),
            Location::Query(name) => {
                let values: Vec<&str> = params
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                query_value(&member.target.kind, &values)
            }
            Location::Body => body.get(member.name).cloned(),
        };
        if let Some(value) = value {
            input.insert(member.name.to_owned(), value);
        }
    }
    Ok(Value::Object(input))
}

/// The body as a JSON object; an empty body is an empty object.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::validation("request body must be a JSON object")),
        Err(error) => Err(ApiError::validation(format!(
            "request body is not valid JSON: {error}"
        ))),
    }
}

/// Splits a raw query string into decoded pairs, keeping repeats.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(key), decode(value))
        })
        .collect()
}

/// A query parameter's values as the member's JSON type.
fn query_value(kind: &Kind, values: &[&str]) -> Option<Value> {
    match kind {
        Kind::List { member, .. } => {
            if values.is_empty() {
                return None;
            }
            Some(Value::Array(
                values
                    .iter()
                    .filter_map(|v| scalar(&member.kind, v))
                    .collect(),
            ))
        }
        other => values.first().and_then(|v| scalar(other, v)),
    }
}

/// One query value as a scalar of the given kind.
fn scalar(kind: &Kind, text: &str) -> Option<Value> {
    let parsed = match kind {
        Kind::Integer { .. } | Kind::Long { .. } => text
            .parse::<i64>()
            .ok()
            .map(Number::from)
            .map(Value::Number),
        Kind::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    Some(parsed.unwrap_or_else(|| Value::String(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_decoded() {
        let found = route(
            "GET",
            "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Amicrovm-image%3Aapp",
        )
        .unwrap();
        assert_eq!(found.operation, Operation::ListTags);
        assert_eq!(
            found.labels[0].1,
            "arn:aws:lambda:us-east-1:000000000000:microvm-image:app"
        );
    }

    #[test]
    fn literal_segments_win_over_labels() {
        let found = route("POST", "/2025-09-09/microvms/microvm-1/suspend").unwrap();
        assert_eq!(found.operation, Operation::SuspendMicrovm);
        let found = route("GET", "/2025-09-09/microvms").unwrap();
        assert_eq!(found.operation, Operation::ListMicrovms);
    }

    #[test]
    fn empty_labels_are_validation_errors() {
        let error = route("POST", "/2025-09-09/microvms//suspend").unwrap_err();
        assert_eq!(error.code(), "ValidationException");
        assert!(error.to_string().contains("'microvmIdentifier'"));
    }

    #[test]
    fn unknown_paths_are_unknown_operations() {
        let error = route("GET", "/nothing/here").unwrap_err();
        assert_eq!(error.code(), "UnknownOperationException");
    }

    #[test]
    fn query_values_take_the_members_types() {
        let found = route("DELETE", "/2017-03-31/tags/arn").unwrap();
        let input = gather_input(&found, Some("tagKeys=a&tagKeys=b%20c"), b"").unwrap();
        assert_eq!(input, json!({"Resource": "arn", "TagKeys": ["a", "b c"]}));

        let found = route("GET", "/2025-09-09/microvms").unwrap();
        let input = gather_input(&found, Some("maxResults=5&nextToken=x"), b"").unwrap();
        assert_eq!(input, json!({"maxResults": 5, "nextToken": "x"}));
    }

    #[test]
    fn body_members_do_not_override_labels() {
        let found = route("POST", "/2025-09-09/microvms/m-1/auth-token").unwrap();
        let input = gather_input(
            &found,
            None,
            br#"{"microvmIdentifier":"other","expirationInMinutes":5}"#,
        )
        .unwrap();
        assert_eq!(input["microvmIdentifier"], "m-1");
        assert_eq!(input["expirationInMinutes"], 5);
    }
}
