//! Inputs of the image version operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `GetMicrovmImageVersionInput`.
pub static GET_MICROVM_IMAGE_VERSION_INPUT: Shape = Shape::structure(
    "GetMicrovmImageVersionInput",
    &[
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::uri("imageVersion", &NON_BLANK_STRING),
    ],
);

/// `UpdateMicrovmImageVersionRequest`.
pub static UPDATE_MICROVM_IMAGE_VERSION_REQUEST: Shape = Shape::structure(
    "UpdateMicrovmImageVersionRequest",
    &[
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::uri("imageVersion", &NON_BLANK_STRING),
        Member::body("status", &MICROVM_IMAGE_VERSION_STATUS).required(),
    ],
);

/// `MicrovmImageVersionStatus`.
pub static MICROVM_IMAGE_VERSION_STATUS: Shape = Shape::enumeration(
    "MicrovmImageVersionStatus",
    crate::model::MicrovmImageVersionStatus::VALUES,
);

/// `DeleteMicrovmImageVersionInput`.
pub static DELETE_MICROVM_IMAGE_VERSION_INPUT: Shape = Shape::structure(
    "DeleteMicrovmImageVersionInput",
    &[
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::uri("imageVersion", &NON_BLANK_STRING),
    ],
);

/// `ListMicrovmImageVersionsInput`.
pub static LIST_MICROVM_IMAGE_VERSIONS_INPUT: Shape = Shape::structure(
    "ListMicrovmImageVersionsInput",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MICROVM_IMAGE_VERSIONS_INPUT_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
    ],
);

/// `ListMicrovmImageVersionsInputMaxResultsInteger`.
pub static LIST_MICROVM_IMAGE_VERSIONS_INPUT_MAX_RESULTS_INTEGER: Shape = Shape::integer(
    "ListMicrovmImageVersionsInputMaxResultsInteger",
    Some(1),
    Some(50),
);
