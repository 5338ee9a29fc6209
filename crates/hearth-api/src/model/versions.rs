//! Image versions: `GetMicrovmImageVersion`, `UpdateMicrovmImageVersion`,
//! `DeleteMicrovmImageVersion` and `ListMicrovmImageVersions`.
//!
//! The get and update outputs and the list item have the same members in the
//! model, so one struct, [`MicrovmImageVersionSummary`], serves all three.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Tags, Timestamp};
use super::image_config::ImageConfig;

wire_enum! {
    /// The build state of a version (`MicrovmImageVersionState`).
    MicrovmImageVersionState {
        /// Waiting to build.
        Pending = "PENDING",
        /// Building.
        InProgress = "IN_PROGRESS",
        /// Built.
        Successful = "SUCCESSFUL",
        /// The build failed.
        Failed = "FAILED",
        /// Being deleted.
        Deleting = "DELETING",
        /// Gone.
        Deleted = "DELETED",
        /// Deletion failed.
        DeleteFailed = "DELETE_FAILED",
    }
}

wire_enum! {
    /// Whether a version may launch microVMs (`MicrovmImageVersionStatus`).
    MicrovmImageVersionStatus {
        /// `RunMicrovm` may use it.
        Active = "ACTIVE",
        /// New microVMs may not use it.
        Inactive = "INACTIVE",
    }
}

/// A version of an image (`MicrovmImageVersionSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmImageVersionSummary {
    /// The image's ARN.
    pub image_arn: String,
    /// The version.
    pub image_version: String,
    /// The build state.
    pub state: MicrovmImageVersionState,
    /// Whether it may launch microVMs.
    pub status: MicrovmImageVersionStatus,
    /// When the version was created.
    pub created_at: Timestamp,
    /// When the version last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Why the version is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The version's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// The configuration the version was built from.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// Output of `GetMicrovmImageVersion`.
pub type GetMicrovmImageVersionOutput = MicrovmImageVersionSummary;

/// Output of `UpdateMicrovmImageVersion`.
pub type UpdateMicrovmImageVersionResponse = MicrovmImageVersionSummary;

/// Input of `GetMicrovmImageVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmImageVersionInput {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
}

/// Input of `UpdateMicrovmImageVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMicrovmImageVersionRequest {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
    /// The new status.
    pub status: MicrovmImageVersionStatus,
}

/// Input of `DeleteMicrovmImageVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMicrovmImageVersionInput {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
}

/// Output of `DeleteMicrovmImageVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMicrovmImageVersionOutput {
    /// The identifier as given.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
    /// The version's state after the call.
    pub state: MicrovmImageVersionState,
}

/// Input of `ListMicrovmImageVersions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImageVersionsInput {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Output of `ListMicrovmImageVersions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImageVersionsOutput {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The versions on this page.
    pub items: Vec<MicrovmImageVersionSummary>,
}
