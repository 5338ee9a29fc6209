//! The model's input shapes as declarative tables, one static per shape
//! under the model's name, one file per resource.
//!
//! Each operation's input structure is the root of its table; the members say
//! where they travel (body, path label or query parameter) and every
//! constraint the model puts on them.

mod base_images;
mod builds;
mod common;
mod image_config;
mod images;
mod microvms;
mod tags;
mod tokens;
mod versions;

pub use base_images::*;
pub use builds::*;
pub use common::*;
pub use image_config::*;
pub use images::*;
pub use microvms::*;
pub use tags::*;
pub use tokens::*;
pub use versions::*;

use super::schema::{Member, Pattern, Shape};
