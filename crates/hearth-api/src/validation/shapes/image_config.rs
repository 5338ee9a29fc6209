//! The configuration shapes of `CreateMicrovmImage` and
//! `UpdateMicrovmImage`: code artifact, logging, CPU, resources, hooks and
//! environment.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `CodeArtifact`.
pub static CODE_ARTIFACT: Shape =
    Shape::union("CodeArtifact", &[Member::body("uri", &NON_BLANK_STRING)]);

/// `Logging`.
pub static LOGGING: Shape = Shape::union(
    "Logging",
    &[
        Member::body("disabled", &LOGGING_DISABLED),
        Member::body("cloudWatch", &CLOUD_WATCH_LOGGING),
    ],
);

/// `LoggingDisabled`.
pub static LOGGING_DISABLED: Shape = Shape::structure("LoggingDisabled", &[]);

/// `CloudWatchLogging`.
pub static CLOUD_WATCH_LOGGING: Shape = Shape::structure(
    "CloudWatchLogging",
    &[
        Member::body("logGroup", &CLOUD_WATCH_LOGGING_LOG_GROUP_STRING),
        Member::body("logStream", &CLOUD_WATCH_LOGGING_LOG_STREAM_STRING),
    ],
);

static CLOUD_WATCH_LOGGING_LOG_GROUP_STRING_PATTERN: Pattern =
    Pattern::new(r#"[a-zA-Z0-9_\-/.#]+"#);
/// `CloudWatchLoggingLogGroupString`.
pub static CLOUD_WATCH_LOGGING_LOG_GROUP_STRING: Shape = Shape::string(
    "CloudWatchLoggingLogGroupString",
    Some(1),
    Some(512),
    Some(&CLOUD_WATCH_LOGGING_LOG_GROUP_STRING_PATTERN),
);

static CLOUD_WATCH_LOGGING_LOG_STREAM_STRING_PATTERN: Pattern = Pattern::new(r#"[^:*]*"#);
/// `CloudWatchLoggingLogStreamString`.
pub static CLOUD_WATCH_LOGGING_LOG_STREAM_STRING: Shape = Shape::string(
    "CloudWatchLoggingLogStreamString",
    Some(1),
    Some(512),
    Some(&CLOUD_WATCH_LOGGING_LOG_STREAM_STRING_PATTERN),
);

/// `CpuConfiguration`.
pub static CPU_CONFIGURATION: Shape = Shape::structure(
    "CpuConfiguration",
    &[Member::body("architecture", &ARCHITECTURE).required()],
);

/// `CpuConfigurationList`.
pub static CPU_CONFIGURATION_LIST: Shape =
    Shape::list("CpuConfigurationList", &CPU_CONFIGURATION, None, None);

/// `Resources`.
pub static RESOURCES: Shape = Shape::structure(
    "Resources",
    &[Member::body("minimumMemoryInMiB", &INTEGER).required()],
);

/// `ResourcesList`.
pub static RESOURCES_LIST: Shape = Shape::list("ResourcesList", &RESOURCES, Some(0), Some(1));

/// `Capability`.
pub static CAPABILITY: Shape = Shape::enumeration("Capability", crate::model::Capability::VALUES);

/// `CapabilityList`.
pub static CAPABILITY_LIST: Shape = Shape::list("CapabilityList", &CAPABILITY, None, None);

/// `Hooks`.
pub static HOOKS: Shape = Shape::structure(
    "Hooks",
    &[
        Member::body("port", &HOOKS_PORT_INTEGER),
        Member::body("microvmHooks", &MICROVM_HOOKS),
        Member::body("microvmImageHooks", &MICROVM_IMAGE_HOOKS),
    ],
);

/// `HooksPortInteger`.
pub static HOOKS_PORT_INTEGER: Shape = Shape::integer("HooksPortInteger", Some(1), Some(65535));

/// `MicrovmHooks`.
pub static MICROVM_HOOKS: Shape = Shape::structure(
    "MicrovmHooks",
    &[
        Member::body("run", &HOOK_STATE),
        Member::body(
            "runTimeoutInSeconds",
            &MICROVM_HOOKS_RUN_TIMEOUT_IN_SECONDS_INTEGER,
        ),
        Member::body("resume", &HOOK_STATE),
        Member::body(
            "resumeTimeoutInSeconds",
            &MICROVM_HOOKS_RESUME_TIMEOUT_IN_SECONDS_INTEGER,
        ),
        Member::body("suspend", &HOOK_STATE),
        Member::body(
            "suspendTimeoutInSeconds",
            &MICROVM_HOOKS_SUSPEND_TIMEOUT_IN_SECONDS_INTEGER,
        ),
        Member::body("terminate", &HOOK_STATE),
        Member::body(
            "terminateTimeoutInSeconds",
            &MICROVM_HOOKS_TERMINATE_TIMEOUT_IN_SECONDS_INTEGER,
        ),
    ],
);

/// `MicrovmHooksRunTimeoutInSecondsInteger`.
pub static MICROVM_HOOKS_RUN_TIMEOUT_IN_SECONDS_INTEGER: Shape =
    Shape::integer("MicrovmHooksRunTimeoutInSecondsInteger", Some(1), Some(60));

/// `MicrovmHooksResumeTimeoutInSecondsInteger`.
pub static MICROVM_HOOKS_RESUME_TIMEOUT_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "MicrovmHooksResumeTimeoutInSecondsInteger",
    Some(1),
    Some(60),
);

/// `MicrovmHooksSuspendTimeoutInSecondsInteger`.
pub static MICROVM_HOOKS_SUSPEND_TIMEOUT_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "MicrovmHooksSuspendTimeoutInSecondsInteger",
    Some(1),
    Some(60),
);

/// `MicrovmHooksTerminateTimeoutInSecondsInteger`.
pub static MICROVM_HOOKS_TERMINATE_TIMEOUT_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "MicrovmHooksTerminateTimeoutInSecondsInteger",
    Some(1),
    Some(60),
);

/// `MicrovmImageHooks`.
pub static MICROVM_IMAGE_HOOKS: Shape = Shape::structure(
    "MicrovmImageHooks",
    &[
        Member::body("ready", &HOOK_STATE),
        Member::body(
            "readyTimeoutInSeconds",
            &MICROVM_IMAGE_HOOKS_READY_TIMEOUT_IN_SECONDS_INTEGER,
        ),
        Member::body("validate", &HOOK_STATE),
        Member::body(
            "validateTimeoutInSeconds",
            &MICROVM_IMAGE_HOOKS_VALIDATE_TIMEOUT_IN_SECONDS_INTEGER,
        ),
    ],
);

/// `MicrovmImageHooksReadyTimeoutInSecondsInteger`.
pub static MICROVM_IMAGE_HOOKS_READY_TIMEOUT_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "MicrovmImageHooksReadyTimeoutInSecondsInteger",
    Some(1),
    Some(3600),
);

/// `MicrovmImageHooksValidateTimeoutInSecondsInteger`.
pub static MICROVM_IMAGE_HOOKS_VALIDATE_TIMEOUT_IN_SECONDS_INTEGER: Shape = Shape::integer(
    "MicrovmImageHooksValidateTimeoutInSecondsInteger",
    Some(1),
    Some(3600),
);

/// `HookState`.
pub static HOOK_STATE: Shape = Shape::enumeration("HookState", crate::model::HookState::VALUES);

/// `EnvironmentVariableMap`.
pub static ENVIRONMENT_VARIABLE_MAP: Shape = Shape::map(
    "EnvironmentVariableMap",
    &ENVIRONMENT_VARIABLE_KEY,
    &ENVIRONMENT_VARIABLE_VALUE,
    Some(0),
    Some(100),
);

static ENVIRONMENT_VARIABLE_KEY_PATTERN: Pattern = Pattern::new(r#"[^\s]+"#);
/// `EnvironmentVariableKey`.
pub static ENVIRONMENT_VARIABLE_KEY: Shape = Shape::string(
    "EnvironmentVariableKey",
    Some(1),
    Some(256),
    Some(&ENVIRONMENT_VARIABLE_KEY_PATTERN),
);

/// `EnvironmentVariableValue`.
pub static ENVIRONMENT_VARIABLE_VALUE: Shape =
    Shape::string("EnvironmentVariableValue", Some(0), Some(4096), None);
