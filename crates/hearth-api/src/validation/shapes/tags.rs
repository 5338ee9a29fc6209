//! Inputs of the tag operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `TagResourceRequest`.
pub static TAG_RESOURCE_REQUEST: Shape = Shape::structure(
    "TagResourceRequest",
    &[
        Member::uri("Resource", &TAGGABLE_RESOURCE),
        Member::body("Tags", &TAGS).required(),
    ],
);

/// `UntagResourceRequest`.
pub static UNTAG_RESOURCE_REQUEST: Shape = Shape::structure(
    "UntagResourceRequest",
    &[
        Member::uri("Resource", &TAGGABLE_RESOURCE),
        Member::query("TagKeys", "tagKeys", &TAG_KEY_LIST).required(),
    ],
);

/// `ListTagsRequest`.
pub static LIST_TAGS_REQUEST: Shape = Shape::structure(
    "ListTagsRequest",
    &[Member::uri("Resource", &TAGGABLE_RESOURCE)],
);

/// `Tags`.
pub static TAGS: Shape = Shape::map("Tags", &TAG_KEY, &TAG_VALUE, None, None);

static TAG_KEY_PATTERN: Pattern = Pattern::new(r#"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"#);
/// `TagKey`.
pub static TAG_KEY: Shape = Shape::string("TagKey", Some(1), Some(128), Some(&TAG_KEY_PATTERN));

static TAG_VALUE_PATTERN: Pattern = Pattern::new(r#"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"#);
/// `TagValue`.
pub static TAG_VALUE: Shape =
    Shape::string("TagValue", Some(0), Some(256), Some(&TAG_VALUE_PATTERN));

/// `TagKeyList`.
pub static TAG_KEY_LIST: Shape = Shape::list("TagKeyList", &TAG_KEY, None, None);

static TAGGABLE_RESOURCE_PATTERN: Pattern = Pattern::new(concat!(
    r#"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|"#,
    r#"(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|"#,
    r#"[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|"#,
    r#"event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|"#,
    r#"(capacity-provider|network-connector|microvm-image):[a-zA-Z0-9-_]+)"#,
));

/// `TaggableResource`.
pub static TAGGABLE_RESOURCE: Shape = Shape::string(
    "TaggableResource",
    Some(1),
    Some(10000),
    Some(&TAGGABLE_RESOURCE_PATTERN),
);
