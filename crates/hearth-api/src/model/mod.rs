//! Typed inputs and outputs of the `lambda-microvms` 2025-09-09 model, one
//! file per resource.
//!
//! Members keep the model's names on the wire (camelCase, and the capitals of
//! the tag operations). Optional members are `Option`s and are left out of the
//! JSON when absent; required ones are plain fields. Shapes whose members are
//! identical in the model share one struct and a type alias per name.

pub mod base_images;
pub mod builds;
pub mod common;
pub mod image_config;
pub mod images;
pub mod microvms;
pub mod tags;
pub mod tokens;
pub mod versions;

pub use base_images::*;
pub use builds::*;
pub use common::{Architecture, EnvironmentVariables, Tags, Timestamp, Unit};
pub use image_config::*;
pub use images::*;
pub use microvms::*;
pub use tags::*;
pub use tokens::*;
pub use versions::*;
