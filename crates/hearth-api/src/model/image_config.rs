//! The configuration an image version is built from: code artifact, base
//! image, logging, CPU and memory, capabilities, hooks and environment.
//!
//! Every image and version shape in the model carries the same twelve
//! members; [`ImageConfig`] holds them once and is flattened into each.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Architecture, EnvironmentVariables};

/// Where the code artifact lives (`CodeArtifact`, a union).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CodeArtifact {
    /// An object URI such as `s3://bucket/app.zip`.
    Uri(String),
}

/// Where logs go (`Logging`, a union).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Logging {
    /// Logging is turned off.
    Disabled(LoggingDisabled),
    /// Logs go to a CloudWatch Logs group.
    CloudWatch(CloudWatchLogging),
}

/// The marker for turned-off logging (`LoggingDisabled`), `{}` on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingDisabled {}

/// A CloudWatch Logs destination (`CloudWatchLogging`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchLogging {
    /// The log group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// The log stream within the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
}

/// One supported CPU configuration (`CpuConfiguration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuConfiguration {
    /// The architecture.
    pub architecture: Architecture,
}

/// Resource requirements (`Resources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The memory the microVM needs at least, in MiB.
    #[serde(rename = "minimumMemoryInMiB")]
    pub minimum_memory_in_mib: i32,
}

wire_enum! {
    /// An extra OS capability for the application (`Capability`).
    Capability {
        /// Every Linux capability.
        All = "ALL",
    }
}

wire_enum! {
    /// Whether a hook is called (`HookState`).
    HookState {
        /// The hook is not called.
        Disabled = "DISABLED",
        /// The hook is called.
        Enabled = "ENABLED",
    }
}

/// Lifecycle hook configuration (`Hooks`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// The port the application serves its hooks on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Hooks called on microVM events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microvm_hooks: Option<MicrovmHooks>,
    /// Hooks called while an image is built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microvm_image_hooks: Option<MicrovmImageHooks>,
}

/// Hooks called on microVM events (`MicrovmHooks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmHooks {
    /// The `run` hook, called once after the microVM starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<HookState>,
    /// Seconds the `run` hook may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_timeout_in_seconds: Option<i32>,
    /// The `resume` hook, called after a resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<HookState>,
    /// Seconds the `resume` hook may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_timeout_in_seconds: Option<i32>,
    /// The `suspend` hook, called before a suspend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<HookState>,
    /// Seconds the `suspend` hook may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend_timeout_in_seconds: Option<i32>,
    /// The `terminate` hook, called before termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate: Option<HookState>,
    /// Seconds the `terminate` hook may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate_timeout_in_seconds: Option<i32>,
}

/// Hooks called while an image is built (`MicrovmImageHooks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmImageHooks {
    /// The `ready` hook, polled until the application is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<HookState>,
    /// Seconds the `ready` hook may take to answer 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_timeout_in_seconds: Option<i32>,
    /// The `validate` hook, polled in a test microVM after the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate: Option<HookState>,
    /// Seconds the `validate` hook may take to answer 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_timeout_in_seconds: Option<i32>,
}

/// The members every image and version shape shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    /// The managed base image the version builds on.
    pub base_image_arn: String,
    /// The base image's version, if pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image_version: Option<String>,
    /// The role assumed while building.
    pub build_role_arn: String,
    /// A free-form description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The application's code.
    pub code_artifact: CodeArtifact,
    /// Where build and runtime logs go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Egress connectors available while building (at most one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_network_connectors: Option<Vec<String>>,
    /// The CPU configurations to build for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_configurations: Option<Vec<CpuConfiguration>>,
    /// Resource requirements (at most one entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<Resources>>,
    /// Extra OS capabilities for the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_os_capabilities: Option<Vec<Capability>>,
    /// Lifecycle hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// The application's environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<EnvironmentVariables>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_serialize_as_single_member_objects() {
        let logging = Logging::Disabled(LoggingDisabled {});
        assert_eq!(
            serde_json::to_string(&logging).unwrap(),
            r#"{"disabled":{}}"#
        );
        let artifact = CodeArtifact::Uri("s3://b/app.zip".into());
        assert_eq!(
            serde_json::to_string(&artifact).unwrap(),
            r#"{"uri":"s3://b/app.zip"}"#
        );
    }

    #[test]
    fn resources_keep_the_mib_spelling() {
        let json = serde_json::to_string(&Resources {
            minimum_memory_in_mib: 2048,
        })
        .unwrap();
        assert_eq!(json, r#"{"minimumMemoryInMiB":2048}"#);
    }
}
