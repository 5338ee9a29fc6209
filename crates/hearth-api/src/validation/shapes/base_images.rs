//! Inputs of the managed base image operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `ListManagedMicrovmImagesInput`.
pub static LIST_MANAGED_MICROVM_IMAGES_INPUT: Shape = Shape::structure(
    "ListManagedMicrovmImagesInput",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MANAGED_MICROVM_IMAGES_INPUT_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
    ],
);

/// `ListManagedMicrovmImagesInputMaxResultsInteger`.
pub static LIST_MANAGED_MICROVM_IMAGES_INPUT_MAX_RESULTS_INTEGER: Shape = Shape::integer(
    "ListManagedMicrovmImagesInputMaxResultsInteger",
    Some(1),
    Some(50),
);

/// `ListManagedMicrovmImageVersionsInput`.
pub static LIST_MANAGED_MICROVM_IMAGE_VERSIONS_INPUT: Shape = Shape::structure(
    "ListManagedMicrovmImageVersionsInput",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MANAGED_MICROVM_IMAGE_VERSIONS_INPUT_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
    ],
);

/// `ListManagedMicrovmImageVersionsInputMaxResultsInteger`.
pub static LIST_MANAGED_MICROVM_IMAGE_VERSIONS_INPUT_MAX_RESULTS_INTEGER: Shape = Shape::integer(
    "ListManagedMicrovmImageVersionsInputMaxResultsInteger",
    Some(1),
    Some(50),
);
