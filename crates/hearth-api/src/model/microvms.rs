//! MicroVMs: `RunMicrovm`, `GetMicrovm`, `ListMicrovms`, `SuspendMicrovm`,
//! `ResumeMicrovm` and `TerminateMicrovm`.
//!
//! `RunMicrovm` and `GetMicrovm` return the same members, so one struct,
//! [`Microvm`], serves both.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Timestamp};
use super::image_config::Logging;

wire_enum! {
    /// The lifecycle state of a microVM (`MicrovmState`).
    MicrovmState {
        /// Starting from the snapshot.
        Pending = "PENDING",
        /// Running and reachable.
        Running = "RUNNING",
        /// Being suspended.
        Suspending = "SUSPENDING",
        /// Suspended with memory and disk kept.
        Suspended = "SUSPENDED",
        /// Being terminated.
        Terminating = "TERMINATING",
        /// Gone.
        Terminated = "TERMINATED",
    }
}

/// When an idle microVM suspends and a suspended one ends (`IdlePolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdlePolicy {
    /// Seconds without ingress traffic before a suspend (at least 60).
    pub max_idle_duration_seconds: i32,
    /// Seconds spent suspended before termination (0 = at once).
    pub suspended_duration_seconds: i32,
    /// Whether ingress traffic resumes a suspended microVM.
    pub auto_resume_enabled: bool,
}

/// Input of `RunMicrovm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMicrovmRequest {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version; the newest ACTIVE one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// Ingress connectors (`ALL_INGRESS`, `SHELL_INGRESS`, `NO_INGRESS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_network_connectors: Option<Vec<String>>,
    /// Egress connectors (`INTERNET_EGRESS` or a custom one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_network_connectors: Option<Vec<String>>,
    /// The role the microVM assumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Auto-suspend and auto-resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<IdlePolicy>,
    /// Where application logs go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// The body of the `run` hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_hook_payload: Option<String>,
    /// The hard wall-clock lifetime in seconds (1–28800).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_duration_in_seconds: Option<i32>,
    /// The idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A microVM as `RunMicrovm` and `GetMicrovm` return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Microvm {
    /// The microVM's id (`microvm-<32 hex>`).
    pub microvm_id: String,
    /// Its state.
    pub state: MicrovmState,
    /// The URL of its endpoint.
    pub endpoint: String,
    /// The image's ARN.
    pub image_arn: String,
    /// The image version it runs.
    pub image_version: String,
    /// The role it assumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Its idle policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<IdlePolicy>,
    /// Its hard lifetime in seconds.
    pub maximum_duration_in_seconds: i32,
    /// When it first started.
    pub started_at: Timestamp,
    /// When it terminated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated_at: Option<Timestamp>,
    /// Why it is in its state. The model types it `NonBlankString`
    /// (`[^\s]+`), so it is a code such as `USER_INITIATED`, without spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Its ingress connectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_network_connectors: Option<Vec<String>>,
    /// Its egress connectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_network_connectors: Option<Vec<String>>,
}

/// Output of `RunMicrovm`.
pub type RunMicrovmResponse = Microvm;

/// Output of `GetMicrovm`.
pub type GetMicrovmResponse = Microvm;

/// Input of `GetMicrovm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
}

/// Input of `ListMicrovms`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmsRequest {
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Only microVMs of this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_identifier: Option<String>,
    /// Only microVMs of this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
}

/// One microVM in a listing (`MicrovmItem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmItem {
    /// The microVM's id.
    pub microvm_id: String,
    /// Its state.
    pub state: MicrovmState,
    /// The image's ARN.
    pub image_arn: String,
    /// The image version it runs.
    pub image_version: String,
    /// When it first started.
    pub started_at: Timestamp,
}

/// Output of `ListMicrovms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmsResponse {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The microVMs on this page.
    pub items: Vec<MicrovmItem>,
}

/// Input of `SuspendMicrovm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuspendMicrovmRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
}

/// Output of `SuspendMicrovm` (no members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspendMicrovmResponse {}

/// Input of `ResumeMicrovm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeMicrovmRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
}

/// Output of `ResumeMicrovm` (no members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeMicrovmResponse {}

/// Input of `TerminateMicrovm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateMicrovmRequest {
    /// The microVM's id or ARN.
    pub microvm_identifier: String,
}

/// Output of `TerminateMicrovm` (no members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminateMicrovmResponse {}
