//! Inputs of the build operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `GetMicrovmImageBuildInput`.
pub static GET_MICROVM_IMAGE_BUILD_INPUT: Shape = Shape::structure(
    "GetMicrovmImageBuildInput",
    &[
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::uri("imageVersion", &NON_BLANK_STRING),
        Member::uri("buildId", &NON_BLANK_STRING),
    ],
);

/// `ListMicrovmImageBuildsInput`.
pub static LIST_MICROVM_IMAGE_BUILDS_INPUT: Shape = Shape::structure(
    "ListMicrovmImageBuildsInput",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MICROVM_IMAGE_BUILDS_INPUT_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::uri("imageVersion", &NON_BLANK_STRING),
        Member::query("architecture", "architecture", &ARCHITECTURE),
        Member::query("chipset", "chipset", &CHIPSET),
        Member::query("chipsetGeneration", "chipsetGeneration", &NON_BLANK_STRING),
    ],
);

/// `ListMicrovmImageBuildsInputMaxResultsInteger`.
pub static LIST_MICROVM_IMAGE_BUILDS_INPUT_MAX_RESULTS_INTEGER: Shape = Shape::integer(
    "ListMicrovmImageBuildsInputMaxResultsInteger",
    Some(1),
    Some(50),
);

/// `Chipset`.
pub static CHIPSET: Shape = Shape::enumeration("Chipset", crate::model::Chipset::VALUES);
