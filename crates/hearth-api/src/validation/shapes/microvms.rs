//! Inputs of the microVM operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `RunMicrovmRequest`.
pub static RUN_MICROVM_REQUEST: Shape = Shape::structure(
    "RunMicrovmRequest",
    &[
        Member::body("ingressNetworkConnectors", &NETWORK_CONNECTOR_LIST),
        Member::body("egressNetworkConnectors", &NETWORK_CONNECTOR_LIST),
        Member::body("imageIdentifier", &MICROVM_IMAGE_IDENTIFIER).required(),
        Member::body("imageVersion", &VERSION),
        Member::body("executionRoleArn", &ROLE_ARN),
        Member::body("idlePolicy", &IDLE_POLICY),
        Member::body("logging", &LOGGING),
        Member::body("runHookPayload", &RUN_HOOK_PAYLOAD),
        Member::body(
            "maximumDurationInSeconds",
            &RUN_MICROVM_REQUEST_MAXIMUM_DURATION_IN_SECONDS_INTEGER,
        ),
        Member::body("clientToken", &RUN_MICROVM_REQUEST_CLIENT_TOKEN_STRING),
    ],
);

/// `RunMicrovmRequestClientTokenString`.
pub static RUN_MICROVM_REQUEST_CLIENT_TOKEN_STRING: Shape = Shape::string(
    "RunMicrovmRequestClientTokenString",
    Some(1),
    Some(128),
    None,
);

/// `RunMicrovmRequestMaximumDurationInSecondsInteger`.
pub static RUN_MICROVM_REQUEST_MAXIMUM_DURATION_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "RunMicrovmRequestMaximumDurationInSecondsInteger",
    Some(1),
    Some(28800),
);

/// `RunHookPayload`.
pub static RUN_HOOK_PAYLOAD: Shape = Shape::string("RunHookPayload", Some(0), Some(4096), None);

/// `IdlePolicy`.
pub static IDLE_POLICY: Shape = Shape::structure(
    "IdlePolicy",
    &[
        Member::body(
            "maxIdleDurationSeconds",
            &IDLE_POLICY_MAX_IDLE_DURATION_SECONDS_INTEGER,
        )
        .required(),
        Member::body(
            "suspendedDurationSeconds",
            &IDLE_POLICY_SUSPENDED_DURATION_SECONDS_INTEGER,
        )
        .required(),
        Member::body("autoResumeEnabled", &BOOLEAN).required(),
    ],
);

/// `IdlePolicyMaxIdleDurationSecondsInteger`.
pub static IDLE_POLICY_MAX_IDLE_DURATION_SECONDS_INTEGER: Shape =
    Shape::integer("IdlePolicyMaxIdleDurationSecondsInteger", Some(60), None);

/// `IdlePolicySuspendedDurationSecondsInteger`.
pub static IDLE_POLICY_SUSPENDED_DURATION_SECONDS_INTEGER: Shape =
    Shape::integer("IdlePolicySuspendedDurationSecondsInteger", Some(0), None);

/// `GetMicrovmRequest`.
pub static GET_MICROVM_REQUEST: Shape = Shape::structure(
    "GetMicrovmRequest",
    &[Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER)],
);

/// `ListMicrovmsRequest`.
pub static LIST_MICROVMS_REQUEST: Shape = Shape::structure(
    "ListMicrovmsRequest",
    &[
        Member::query(
            "maxResults",
            "maxResults",
            &LIST_MICROVMS_REQUEST_MAX_RESULTS_INTEGER,
        ),
        Member::query("nextToken", "nextToken", &STRING),
        Member::query(
            "imageIdentifier",
            "imageIdentifier",
            &MICROVM_IMAGE_IDENTIFIER,
        ),
        Member::query("imageVersion", "imageVersion", &STRING),
    ],
);

/// `ListMicrovmsRequestMaxResultsInteger`.
pub static LIST_MICROVMS_REQUEST_MAX_RESULTS_INTEGER: Shape =
    Shape::integer("ListMicrovmsRequestMaxResultsInteger", Some(1), Some(50));

/// `SuspendMicrovmRequest`.
pub static SUSPEND_MICROVM_REQUEST: Shape = Shape::structure(
    "SuspendMicrovmRequest",
    &[Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER)],
);

/// `ResumeMicrovmRequest`.
pub static RESUME_MICROVM_REQUEST: Shape = Shape::structure(
    "ResumeMicrovmRequest",
    &[Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER)],
);

/// `TerminateMicrovmRequest`.
pub static TERMINATE_MICROVM_REQUEST: Shape = Shape::structure(
    "TerminateMicrovmRequest",
    &[Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER)],
);
