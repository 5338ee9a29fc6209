//! Tags: `TagResource`, `UntagResource` and `ListTags`.
//!
//! These three live under Lambda's older `/2017-03-31/tags/{Resource}` path
//! and spell their members with capitals (`Resource`, `Tags`, `TagKeys`).

use serde::{Deserialize, Serialize};

use super::common::Tags;

/// Input of `TagResource`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagResourceRequest {
    /// The resource's ARN.
    #[serde(rename = "Resource")]
    pub resource: String,
    /// Tags to add or overwrite.
    #[serde(rename = "Tags")]
    pub tags: Tags,
}

/// Input of `UntagResource`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UntagResourceRequest {
    /// The resource's ARN.
    #[serde(rename = "Resource")]
    pub resource: String,
    /// Keys of the tags to remove.
    #[serde(rename = "TagKeys")]
    pub tag_keys: Vec<String>,
}

/// Input of `ListTags`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTagsRequest {
    /// The resource's ARN.
    #[serde(rename = "Resource")]
    pub resource: String,
}

/// Output of `ListTags`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTagsResponse {
    /// The resource's tags.
    #[serde(rename = "Tags", skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}
