//! Checks a JSON value against a shape table and normalizes it.
//!
//! The walk reports every violation with the member's path, in AWS's words
//! (`Member must have length less than or equal to 64`), and returns the value
//! with nulls and unknown members dropped so that it deserializes into the
//! typed input without surprises.
//!
//! Paths name members with dots; list elements are `name.N.member`, counted
//! from 1, as AWS writes them. A map's key and value constraints are reported
//! at the map's own path.

use serde_json::{Map, Number, Value};

use super::schema::{Bounds, Kind, Shape};

/// One violated constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The member's path, such as `hooks.port`.
    pub path: String,
    /// The constraint, such as `Member must not be null`.
    pub constraint: String,
}

impl FieldError {
    /// A violation at `path`.
    pub fn new(path: impl Into<String>, constraint: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            constraint: constraint.into(),
        }
    }
}

/// The most violations a message lists; the count still covers them all.
const MAX_LISTED: usize = 10;

/// The `ValidationException` message for a set of violations.
pub fn message(errors: &[FieldError]) -> String {
    let count = errors.len();
    let noun = if count == 1 { "error" } else { "errors" };
    let listed: Vec<String> = errors
        .iter()
        .take(MAX_LISTED)
        .map(|e| {
            format!(
                "Value at '{}' failed to satisfy constraint: {}",
                e.path, e.constraint
            )
        })
        .collect();
    format!("{count} validation {noun} detected: {}", listed.join("; "))
}

/// Checks `value` against the structure `shape`.
///
/// # Errors
///
/// Every violated constraint, in the order the members are declared.
pub fn check_input(shape: &'static Shape, value: &Value) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    let normalized = check_structure_members(shape, value, "", &mut errors);
    if errors.is_empty() {
        Ok(normalized.unwrap_or_else(|| Value::Object(Map::new())))
    } else {
        Err(errors)
    }
}

/// Joins a parent path and a member name.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Checks a present, non-null value; `None` when it cannot be normalized.
fn check(
    shape: &'static Shape,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    match &shape.kind {
        Kind::String { length, pattern } => {
            let Some(text) = value.as_str() else {
                errors.push(FieldError::new(path, "Member must be a string"));
                return None;
            };
            check_length(text.chars().count(), *length, path, errors);
            if let Some(pattern) = pattern {
                if !pattern.is_match(text) {
                    errors.push(FieldError::new(
                        path,
                        format!(
                            "Member must satisfy regular expression pattern: {}",
                            pattern.source
                        ),
                    ));
                }
            }
            Some(value.clone())
        }
        Kind::Enum { values } => {
            let Some(text) = value.as_str() else {
                errors.push(FieldError::new(path, "Member must be a string"));
                return None;
            };
            if !values.contains(&text) {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "Member must satisfy enum value set: [{}]",
                        values.join(", ")
                    ),
                ));
            }
            Some(value.clone())
        }
        Kind::Integer { range } => check_number(
            value,
            *range,
            i32::MIN.into(),
            i32::MAX.into(),
            "an integer",
            path,
            errors,
        ),
        Kind::Long { range } => {
            check_number(value, *range, i64::MIN, i64::MAX, "a long", path, errors)
        }
        Kind::Boolean => {
            if value.is_boolean() {
                Some(value.clone())
            } else {
                errors.push(FieldError::new(path, "Member must be a boolean"));
                None
            }
        }
        Kind::List { member, length } => {
            let Some(items) = value.as_array() else {
                errors.push(FieldError::new(path, "Member must be a list"));
                return None;
            };
            check_length(items.len(), *length, path, errors);
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{}.member", child(path, &(index + 1).to_string()));
                if item.is_null() {
                    errors.push(FieldError::new(item_path, "Member must not be null"));
                } else if let Some(item) = check(member, item, &item_path, errors) {
                    out.push(item);
                }
            }
            Some(Value::Array(out))
        }
        Kind::Map {
            key,
            value: value_shape,
            length,
        } => {
            let Some(entries) = value.as_object() else {
                errors.push(FieldError::new(path, "Member must be a map"));
                return None;
            };
            check_length(entries.len(), *length, path, errors);
            let mut out = Map::new();
            for (k, v) in entries {
                let mut found = Vec::new();
                check(key, &Value::String(k.clone()), path, &mut found);
                wrap(found, path, "Map keys must satisfy constraint", errors);

                let mut found = Vec::new();
                let checked = if v.is_null() {
                    found.push(FieldError::new(path, "Member must not be null"));
                    None
                } else {
                    check(value_shape, v, path, &mut found)
                };
                wrap(found, path, "Map value must satisfy constraint", errors);
                if let Some(checked) = checked {
                    out.insert(k.clone(), checked);
                }
            }
            Some(Value::Object(out))
        }
        Kind::Structure { union, .. } => {
            let normalized = check_structure_members(shape, value, path, errors)?;
            if *union {
                let set = normalized.as_object().map_or(0, Map::len);
                if set != 1 {
                    errors.push(FieldError::new(
                        path,
                        "Member must have exactly one of its members set",
                    ));
                }
            }
            Some(normalized)
        }
    }
}

/// Checks an object's members against a structure's, keeping known ones.
fn check_structure_members(
    shape: &'static Shape,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(object) = value.as_object() else {
        errors.push(FieldError::new(path, "Member must be a structure"));
        return None;
    };
    let mut out = Map::new();
    for member in shape.members() {
        let member_path = child(path, member.name);
        match object.get(member.name) {
            None | Some(Value::Null) => {
                if member.required {
                    errors.push(FieldError::new(member_path, "Member must not be null"));
                }
            }
            Some(present) => {
                if let Some(checked) = check(member.target, present, &member_path, errors) {
                    out.insert(member.name.to_owned(), checked);
                }
            }
        }
    }
    Some(Value::Object(out))
}

/// Reports a key's or value's violations at the map's path, in brackets.
fn wrap(found: Vec<FieldError>, path: &str, prefix: &str, errors: &mut Vec<FieldError>) {
    if found.is_empty() {
        return;
    }
    let inner: Vec<String> = found.into_iter().map(|e| e.constraint).collect();
    errors.push(FieldError::new(
        path,
        format!("{prefix}: [{}]", inner.join(", ")),
    ));
}

/// Checks a length (characters, elements or entries) against its bounds.
fn check_length(len: usize, bounds: Bounds, path: &str, errors: &mut Vec<FieldError>) {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if let Some(min) = bounds.min {
        if len < min {
            errors.push(FieldError::new(
                path,
                format!("Member must have length greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = bounds.max {
        if len > max {
            errors.push(FieldError::new(
                path,
                format!("Member must have length less than or equal to {max}"),
            ));
        }
    }
}

/// Checks a whole number against the model's bounds and its type's range.
fn check_number(
    value: &Value,
    range: Bounds,
    type_min: i64,
    type_max: i64,
    noun: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let whole = match value {
        Value::Number(n) => n
            .as_i64()
            .map(|i| i as f64)
            .or_else(|| n.as_f64())
            .filter(|f| f.fract() == 0.0),
        _ => None,
    };
    let Some(number) = whole else {
        errors.push(FieldError::new(path, format!("Member must be {noun}")));
        return None;
    };

    // The model's bound is the one to name; the type's range applies when
    // the model gives none on that side.
    let min = range.min.unwrap_or(type_min).max(type_min);
    let max = range.max.unwrap_or(type_max).min(type_max);
    if number < min as f64 {
        errors.push(FieldError::new(
            path,
            format!("Member must have value greater than or equal to {min}"),
        ));
        return None;
    }
    if number > max as f64 {
        errors.push(FieldError::new(
            path,
            format!("Member must have value less than or equal to {max}"),
        ));
        return None;
    }
    Some(Value::Number(Number::from(number as i64)))
}

#[cfg(test)]
mod tests {
    use super::super::shapes::{
        CREATE_MICROVM_AUTH_TOKEN_REQUEST, CREATE_MICROVM_IMAGE_REQUEST, RUN_MICROVM_REQUEST,
    };
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::123456789012:role/r";

    fn errors(shape: &'static Shape, value: Value) -> Vec<FieldError> {
        check_input(shape, &value).expect_err("the value is invalid")
    }

    #[test]
    fn maximum_duration_above_eight_hours_is_refused() {
        let found = errors(
            &RUN_MICROVM_REQUEST,
            json!({"imageIdentifier": "img", "maximumDurationInSeconds": 28801}),
        );
        assert_eq!(
            message(&found),
            "1 validation error detected: Value at 'maximumDurationInSeconds' failed to satisfy \
             constraint: Member must have value less than or equal to 28800"
        );
    }

    #[test]
    fn missing_required_members_are_named() {
        let found = errors(&CREATE_MICROVM_IMAGE_REQUEST, json!({"name": "app"}));
        let paths: Vec<_> = found.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["baseImageArn", "buildRoleArn", "codeArtifact"]);
        assert!(found
            .iter()
            .all(|e| e.constraint == "Member must not be null"));
    }

    #[test]
    fn nested_paths_count_list_elements_from_one() {
        let found = errors(
            &CREATE_MICROVM_AUTH_TOKEN_REQUEST,
            json!({"microvmIdentifier": "m", "expirationInMinutes": 5,
                   "allowedPorts": [{"port": 80}, {"range": {"startPort": 0, "endPort": 9}}]}),
        );
        assert_eq!(found[0].path, "allowedPorts.2.member.range.startPort");
    }

    #[test]
    fn unions_need_exactly_one_member() {
        let found = errors(
            &CREATE_MICROVM_AUTH_TOKEN_REQUEST,
            json!({"microvmIdentifier": "m", "expirationInMinutes": 5,
                   "allowedPorts": [{"port": 80, "allPorts": {}}]}),
        );
        assert_eq!(found[0].path, "allowedPorts.1.member");
    }

    #[test]
    fn unknown_members_and_nulls_are_dropped() {
        let value = json!({"imageIdentifier": "img", "surprise": 1, "imageVersion": null});
        let checked = check_input(&RUN_MICROVM_REQUEST, &value).expect("valid");
        assert_eq!(checked, json!({"imageIdentifier": "img"}));
    }

    #[test]
    fn map_keys_report_at_the_map() {
        let found = errors(
            &CREATE_MICROVM_IMAGE_REQUEST,
            json!({"name": "app", "baseImageArn": "b", "buildRoleArn": ROLE,
                   "codeArtifact": {"uri": "s3://b/k.zip"}, "environmentVariables": {"": "x"}}),
        );
        assert_eq!(found[0].path, "environmentVariables");
        assert!(found[0]
            .constraint
            .starts_with("Map keys must satisfy constraint: [Member must have length"));
    }

    #[test]
    fn containers_of_the_wrong_kind_are_named() {
        let found = errors(
            &RUN_MICROVM_REQUEST,
            json!({"imageIdentifier": "img", "idlePolicy": "sometimes",
                   "egressNetworkConnectors": "INTERNET_EGRESS"}),
        );
        let constraints: Vec<_> = found
            .iter()
            .map(|e| (e.path.as_str(), e.constraint.as_str()))
            .collect();
        assert_eq!(
            constraints,
            [
                ("egressNetworkConnectors", "Member must be a list"),
                ("idlePolicy", "Member must be a structure"),
            ]
        );
        let found = errors(
            &CREATE_MICROVM_IMAGE_REQUEST,
            json!({"name": "app", "baseImageArn": "b", "buildRoleArn": ROLE,
                   "codeArtifact": {"uri": "s3://b/k.zip"}, "tags": ["a"]}),
        );
        assert_eq!(found[0].constraint, "Member must be a map");
    }

    #[test]
    fn fractions_are_not_integers() {
        let found = errors(
            &RUN_MICROVM_REQUEST,
            json!({"imageIdentifier": "img", "maximumDurationInSeconds": 1.5}),
        );
        assert_eq!(found[0].constraint, "Member must be an integer");
    }
}
