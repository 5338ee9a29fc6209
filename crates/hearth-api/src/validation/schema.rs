//! The declarative form of the model's input shapes: what each shape is and
//! which constraints it carries.
//!
//! The tables in [`super::shapes`] are written in this form from the model,
//! one static per shape under the model's name, so that a test can compare
//! them member by member with the model that botocore ships.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Map, Value};

/// A shape of the model, under its model name.
#[derive(Debug)]
pub struct Shape {
    /// The model's name for the shape.
    pub name: &'static str,
    /// What the shape is, with its constraints.
    pub kind: Kind,
}

/// An inclusive bound pair; `None` where the model gives none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The `min` trait.
    pub min: Option<i64>,
    /// The `max` trait.
    pub max: Option<i64>,
}

/// The kinds of shape the inputs use.
#[derive(Debug)]
pub enum Kind {
    /// A string with length bounds (in characters) and an optional pattern.
    String {
        /// The length bounds.
        length: Bounds,
        /// The `pattern` trait.
        pattern: Option<&'static Pattern>,
    },
    /// A string limited to a set of values.
    Enum {
        /// The values, in the model's order.
        values: &'static [&'static str],
    },
    /// A 32-bit integer with value bounds.
    Integer {
        /// The value bounds.
        range: Bounds,
    },
    /// A 64-bit integer with value bounds.
    Long {
        /// The value bounds.
        range: Bounds,
    },
    /// A boolean.
    Boolean,
    /// A list with length bounds.
    List {
        /// The element shape.
        member: &'static Shape,
        /// The length bounds.
        length: Bounds,
    },
    /// A map with length bounds.
    Map {
        /// The key shape.
        key: &'static Shape,
        /// The value shape.
        value: &'static Shape,
        /// The length bounds.
        length: Bounds,
    },
    /// A structure; a union when exactly one member must be set.
    Structure {
        /// The members.
        members: &'static [Member],
        /// Whether the `union` trait is present.
        union: bool,
    },
}

/// Where a member travels in the HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In the JSON body, under the member's name.
    Body,
    /// In a path label of the same name.
    Uri,
    /// In a query parameter with this name.
    Query(&'static str),
}

/// A member of a structure.
#[derive(Debug)]
pub struct Member {
    /// The member's name.
    pub name: &'static str,
    /// Its shape.
    pub target: &'static Shape,
    /// Whether the structure's `required` list names it.
    pub required: bool,
    /// Where it travels.
    pub location: Location,
}

/// A model pattern and its compiled form.
#[derive(Debug)]
pub struct Pattern {
    /// The pattern as the model writes it.
    pub source: &'static str,
    compiled: OnceLock<Regex>,
}

impl Pattern {
    /// A pattern from the model's source text.
    pub const fn new(source: &'static str) -> Self {
        Self {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// Whether the whole of `value` matches.
    ///
    /// The model's patterns are ECMAScript regular expressions. They are
    /// matched against the whole value, as AWS's services do, and `\d`
    /// means ASCII digits as in ECMAScript.
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                Regex::new(&translate(self.source))
                    .expect("every model pattern compiles: checked by a unit test")
            })
            .is_match(value)
    }
}

/// Turns a model pattern into a `regex` pattern for a whole-value match.
pub fn translate(source: &str) -> String {
    format!("^(?:{})$", source.replace(r"\d", "[0-9]"))
}

impl Bounds {
    /// No bounds.
    pub const NONE: Self = Self {
        min: None,
        max: None,
    };

    /// Bounds from the model's `min` and `max`.
    pub const fn new(min: Option<i64>, max: Option<i64>) -> Self {
        Self { min, max }
    }
}

impl Shape {
    /// A string shape.
    pub const fn string(
        name: &'static str,
        min: Option<i64>,
        max: Option<i64>,
        pattern: Option<&'static Pattern>,
    ) -> Self {
        Self {
            name,
            kind: Kind::String {
                length: Bounds::new(min, max),
                pattern,
            },
        }
    }

    /// An enum shape.
    pub const fn enumeration(name: &'static str, values: &'static [&'static str]) -> Self {
        Self {
            name,
            kind: Kind::Enum { values },
        }
    }

    /// An integer shape.
    pub const fn integer(name: &'static str, min: Option<i64>, max: Option<i64>) -> Self {
        Self {
            name,
            kind: Kind::Integer {
                range: Bounds::new(min, max),
            },
        }
    }

    /// A long shape.
    pub const fn long(name: &'static str, min: Option<i64>, max: Option<i64>) -> Self {
        Self {
            name,
            kind: Kind::Long {
                range: Bounds::new(min, max),
            },
        }
    }

    /// A boolean shape.
    pub const fn boolean(name: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Boolean,
        }
    }

    /// A list shape.
    pub const fn list(
        name: &'static str,
        member: &'static Shape,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Self {
        Self {
            name,
            kind: Kind::List {
                member,
                length: Bounds::new(min, max),
            },
        }
    }

    /// A map shape.
    pub const fn map(
        name: &'static str,
        key: &'static Shape,
        value: &'static Shape,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Self {
        Self {
            name,
            kind: Kind::Map {
                key,
                value,
                length: Bounds::new(min, max),
            },
        }
    }

    /// A structure shape.
    pub const fn structure(name: &'static str, members: &'static [Member]) -> Self {
        Self {
            name,
            kind: Kind::Structure {
                members,
                union: false,
            },
        }
    }

    /// A union shape.
    pub const fn union(name: &'static str, members: &'static [Member]) -> Self {
        Self {
            name,
            kind: Kind::Structure {
                members,
                union: true,
            },
        }
    }

    /// The members, for a structure or union; empty otherwise.
    pub fn members(&self) -> &'static [Member] {
        match self.kind {
            Kind::Structure { members, .. } => members,
            _ => &[],
        }
    }

    /// The shape and every shape it reaches, as JSON in the model's own
    /// vocabulary (`type`, `min`, `max`, `pattern`, `enum`, `members`, …),
    /// keyed by shape name.
    pub fn describe_into(&'static self, out: &mut Map<String, Value>) {
        if out.contains_key(self.name) {
            return;
        }
        let mut shape = Map::new();
        out.insert(self.name.to_owned(), Value::Null);

        let bounds = |shape: &mut Map<String, Value>, b: Bounds| {
            if let Some(min) = b.min {
                shape.insert("min".into(), json!(min));
            }
            if let Some(max) = b.max {
                shape.insert("max".into(), json!(max));
            }
        };
        match &self.kind {
            Kind::String { length, pattern } => {
                shape.insert("type".into(), json!("string"));
                bounds(&mut shape, *length);
                if let Some(pattern) = pattern {
                    shape.insert("pattern".into(), json!(pattern.source));
                }
            }
            Kind::Enum { values } => {
                shape.insert("type".into(), json!("string"));
                shape.insert("enum".into(), json!(values));
            }
            Kind::Integer { range } => {
                shape.insert("type".into(), json!("integer"));
                bounds(&mut shape, *range);
            }
            Kind::Long { range } => {
                shape.insert("type".into(), json!("long"));
                bounds(&mut shape, *range);
            }
            Kind::Boolean => {
                shape.insert("type".into(), json!("boolean"));
            }
            Kind::List { member, length } => {
                shape.insert("type".into(), json!("list"));
                shape.insert("member".into(), json!({ "shape": member.name }));
                bounds(&mut shape, *length);
                member.describe_into(out);
            }
            Kind::Map { key, value, length } => {
                shape.insert("type".into(), json!("map"));
                shape.insert("key".into(), json!({ "shape": key.name }));
                shape.insert("value".into(), json!({ "shape": value.name }));
                bounds(&mut shape, *length);
                key.describe_into(out);
                value.describe_into(out);
            }
            Kind::Structure { members, union } => {
                shape.insert("type".into(), json!("structure"));
                if *union {
                    shape.insert("union".into(), json!(true));
                }
                let required: Vec<_> = members
                    .iter()
                    .filter(|m| m.required)
                    .map(|m| m.name)
                    .collect();
                if !required.is_empty() {
                    shape.insert("required".into(), json!(required));
                }
                let mut described = Map::new();
                for member in *members {
                    described.insert(member.name.to_owned(), member.describe());
                    member.target.describe_into(out);
                }
                shape.insert("members".into(), Value::Object(described));
            }
        }
        out.insert(self.name.to_owned(), Value::Object(shape));
    }
}

impl Member {
    /// An optional member in the body.
    pub const fn body(name: &'static str, target: &'static Shape) -> Self {
        Self {
            name,
            target,
            required: false,
            location: Location::Body,
        }
    }

    /// A path label; labels are always required.
    pub const fn uri(name: &'static str, target: &'static Shape) -> Self {
        Self {
            name,
            target,
            required: true,
            location: Location::Uri,
        }
    }

    /// An optional query parameter named `location_name`.
    pub const fn query(
        name: &'static str,
        location_name: &'static str,
        target: &'static Shape,
    ) -> Self {
        Self {
            name,
            target,
            required: false,
            location: Location::Query(location_name),
        }
    }

    /// The same member, required.
    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// The member as the model writes it.
    fn describe(&self) -> Value {
        match self.location {
            Location::Body => json!({ "shape": self.target.name }),
            Location::Uri => json!({
                "shape": self.target.name, "location": "uri", "locationName": self.name,
            }),
            Location::Query(name) => json!({
                "shape": self.target.name, "location": "querystring", "locationName": name,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_values() {
        static NAME: Pattern = Pattern::new("[a-zA-Z0-9-_]+");
        assert!(NAME.is_match("my-image_1"));
        assert!(!NAME.is_match("my image"));
        assert!(!NAME.is_match(""));
    }

    #[test]
    fn digits_are_ascii() {
        static DIGIT: Pattern = Pattern::new(r"\d{2}");
        assert!(DIGIT.is_match("42"));
        assert!(!DIGIT.is_match("٤٢"));
    }
}
