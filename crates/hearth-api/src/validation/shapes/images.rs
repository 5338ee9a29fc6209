//! Inputs of the image operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `CreateMicrovmImageRequest`.
pub static CREATE_MICROVM_IMAGE_REQUEST: Shape = Shape::structure(
    "CreateMicrovmImageRequest",
    &[
        Member::body("baseImageArn", &NON_BLANK_STRING).required(),
        Member::body("baseImageVersion", &VERSION),
        Member::body("buildRoleArn", &ROLE_ARN).required(),
        Member::body("description", &STRING),
        Member::body("codeArtifact", &CODE_ARTIFACT).required(),
        Member::body("logging", &LOGGING),
        Member::body(
            "egressNetworkConnectors",
            &CREATE_MICROVM_IMAGE_REQUEST_EGRESS_NETWORK_CONNECTORS_LIST,
        ),
        Member::body("cpuConfigurations", &CPU_CONFIGURATION_LIST),
        Member::body("resources", &RESOURCES_LIST),
        Member::body("additionalOsCapabilities", &CAPABILITY_LIST),
        Member::body("hooks", &HOOKS),
        Member::body("environmentVariables", &ENVIRONMENT_VARIABLE_MAP),
        Member::body("name", &IMAGE_NAME).required(),
        Member::body("tags", &TAGS),
        Member::body(
            "clientToken",
            &CREATE_MICROVM_IMAGE_REQUEST_CLIENT_TOKEN_STRING,
        ),
    ],
);

/// `CreateMicrovmImageRequestClientTokenString`.
pub static CREATE_MICROVM_IMAGE_REQUEST_CLIENT_TOKEN_STRING: Shape = Shape::string(
    "CreateMicrovmImageRequestClientTokenString",
    Some(1),
    Some(128),
    None,
);

/// `CreateMicrovmImageRequestEgressNetworkConnectorsList`.
pub static CREATE_MICROVM_IMAGE_REQUEST_EGRESS_NETWORK_CONNECTORS_LIST: Shape = Shape::list(
    "CreateMicrovmImageRequestEgressNetworkConnectorsList",
    &NETWORK_CONNECTOR,
    Some(0),
    Some(1),
);

static IMAGE_NAME_PATTERN: Pattern = Pattern::new(r#"[a-zA-Z0-9-_]+"#);
/// `ImageName`.
pub static IMAGE_NAME: Shape =
    Shape::string("ImageName", Some(1), Some(64), Some(&IMAGE_NAME_PATTERN));

/// `GetMicrovmImageInput`.
pub static GET_MICROVM_IMAGE_INPUT: Shape = Shape::structure(
    "GetMicrovmImageInput",
    &[Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER)],
);

/// `UpdateMicrovmImageRequest`.
pub static UPDATE_MICROVM_IMAGE_REQUEST: Shape = Shape::structure(
    "UpdateMicrovmImageRequest",
    &[
        Member::body("baseImageArn", &NON_BLANK_STRING).required(),
        Member::body("baseImageVersion", &VERSION),
        Member::body("buildRoleArn", &ROLE_ARN).required(),
        Member::body("description", &STRING),
        Member::body("codeArtifact", &CODE_ARTIFACT).required(),
        Member::body("logging", &LOGGING),
        Member::body(
            "egressNetworkConnectors",
            &UPDATE_MICROVM_IMAGE_REQUEST_EGRESS_NETWORK_CONNECTORS_LIST,
        ),
        Member::body("cpuConfigurations", &CPU_CONFIGURATION_LIST),
        Member::body("resources", &RESOURCES_LIST),
        Member::body("additionalOsCapabilities", &CAPABILITY_LIST),
        Member::body("hooks", &HOOKS),
        Member::body("environmentVariables", &ENVIRONMENT_VARIABLE_MAP),
        Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER),
        Member::body(
            "clientToken",
            &UPDATE_MICROVM_IMAGE_REQUEST_CLIENT_TOKEN_STRING,
        ),
    ],
);

/// `UpdateMicrovmImageRequestClientTokenString`.
pub static UPDATE_MICROVM_IMAGE_REQUEST_CLIENT_TOKEN_STRING: Shape = Shape::string(
    "UpdateMicrovmImageRequestClientTokenString",
    Some(1),
    Some(128),
    None,
);

/// `UpdateMicrovmImageRequestEgressNetworkConnectorsList`.
pub static UPDATE_MICROVM_IMAGE_REQUEST_EGRESS_NETWORK_CONNECTORS_LIST: Shape = Shape::list(
    "UpdateMicrovmImageRequestEgressNetworkConnectorsList",
    &NETWORK_CONNECTOR,
    Some(0),
    Some(1),
);

/// `DeleteMicrovmImageInput`.
pub static DELETE_MICROVM_IMAGE_INPUT: Shape = Shape::structure(
    "DeleteMicrovmImageInput",
    &[Member::uri("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER)],
);

/// `ListMicrovmImagesRequest`.
pub static LIST_MICROVM_IMAGES_REQUEST: Shape = Shape::structure(
    "ListMicrovmImagesRequest",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MICROVM_IMAGES_REQUEST_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
        Member::query("nameFilter", "nameFilter", &NON_BLANK_STRING),
    ],
);

/// `ListMicrovmImagesRequestMaxResultsInteger`.
pub static LIST_MICROVM_IMAGES_REQUEST_MAX_RESULTS_INTEGER: Shape = Shape::integer(
    "ListMicrovmImagesRequestMaxResultsInteger",
    Some(1),
    Some(50),
);
