//! Validation at the boundary: every constraint of the model, checked
//! before a [`Control`](crate::Control) method runs.
//!
//! A request's path labels, query parameters and body are gathered into one
//! JSON object under the members' names, checked against the operation's
//! shape table ([`shapes`]), deserialized into the typed input and finally
//! checked against the service's own [`rules`]. Any violation is a
//! `ValidationException` whose message names each field.

pub mod check;
pub mod rules;
pub mod schema;
pub mod shapes;

use serde_json::{Map, Value};

pub use check::{message, FieldError};

use crate::error::ApiError;
use crate::operation::{ApiRequest, Operation};

/// Checks a gathered input and turns it into the operation's typed request.
///
/// # Errors
///
/// A `ValidationException` listing every violated constraint.
pub fn validate(operation: Operation, input: &Value) -> Result<ApiRequest, ApiError> {
    let spec = operation.spec();
    let checked = check::check_input(spec.input, input)
        .map_err(|errors| ApiError::validation(message(&errors)))?;

    // The table and the types are written from the same model, so a value
    // the table accepts deserializes; a failure here is the server's bug.
    let request = ApiRequest::from_value(operation, checked).map_err(ApiError::internal)?;

    let errors = rules::check(&request);
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(ApiError::validation(message(&errors)))
    }
}

/// Every operation's input shape and the shapes they reach, keyed by model
/// name, in the model's own vocabulary; tests compare it with the model.
pub fn describe_inputs() -> Value {
    let mut shapes = Map::new();
    for operation in Operation::ALL {
        operation.spec().input.describe_into(&mut shapes);
    }
    Value::Object(shapes)
}

#[cfg(test)]
mod tests {
    use super::schema::{Kind, Shape};
    use super::*;

    /// Visits `shape` and every shape it reaches.
    fn visit(
        shape: &'static Shape,
        seen: &mut Vec<&'static str>,
        f: &mut dyn FnMut(&'static Shape),
    ) {
        if seen.contains(&shape.name) {
            return;
        }
        seen.push(shape.name);
        f(shape);
        match &shape.kind {
            Kind::List { member, .. } => visit(member, seen, f),
            Kind::Map { key, value, .. } => {
                visit(key, seen, f);
                visit(value, seen, f);
            }
            Kind::Structure { members, .. } => {
                for member in *members {
                    visit(member.target, seen, f);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_model_pattern_compiles() {
        let mut seen = Vec::new();
        let mut patterns = 0;
        for operation in Operation::ALL {
            visit(operation.spec().input, &mut seen, &mut |shape| {
                if let Kind::String {
                    pattern: Some(pattern),
                    ..
                } = &shape.kind
                {
                    regex::Regex::new(&schema::translate(pattern.source))
                        .expect("the pattern compiles");
                    pattern.is_match("probe");
                    patterns += 1;
                }
            });
        }
        assert!(patterns >= 8, "found {patterns} patterns");
    }

    #[test]
    fn the_description_names_every_input_shape() {
        let described = describe_inputs();
        for operation in Operation::ALL {
            assert!(described.get(operation.spec().input.name).is_some());
        }
    }
}
