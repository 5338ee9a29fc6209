//! Builds of an image version, one per CPU configuration:
//! `GetMicrovmImageBuild` and `ListMicrovmImageBuilds`.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Architecture, Timestamp};

wire_enum! {
    /// The state of a build (`BuildState`).
    BuildState {
        /// Waiting to start.
        Pending = "PENDING",
        /// Running.
        InProgress = "IN_PROGRESS",
        /// Finished with a snapshot.
        Successful = "SUCCESSFUL",
        /// Failed; `stateReason` says why.
        Failed = "FAILED",
    }
}

wire_enum! {
    /// The chipset a build targets (`Chipset`).
    Chipset {
        /// AWS Graviton.
        Graviton = "GRAVITON",
        /// Intel.
        Intel = "INTEL",
    }
}

/// Sizes of a build's snapshot (`SnapshotBuild`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBuild {
    /// Bytes of the memory snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_snapshot_size_in_bytes: Option<i64>,
    /// Bytes of the installed code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_install_size_in_bytes: Option<i64>,
    /// Bytes of the disk snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_snapshot_size_in_bytes: Option<i64>,
}

/// One build in a listing (`MicrovmImageBuildSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmImageBuildSummary {
    /// The image's ARN.
    pub image_arn: String,
    /// The version the build belongs to.
    pub image_version: String,
    /// The build's id.
    pub build_id: String,
    /// The build's state.
    pub build_state: BuildState,
    /// The target architecture.
    pub architecture: Architecture,
    /// The target chipset.
    pub chipset: Chipset,
    /// The target chipset generation.
    pub chipset_generation: String,
    /// Why the build is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// When the build was created.
    pub created_at: Timestamp,
}

/// Input of `GetMicrovmImageBuild`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmImageBuildInput {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
    /// The build's id.
    pub build_id: String,
}

/// Output of `GetMicrovmImageBuild`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmImageBuildOutput {
    /// The image's ARN.
    pub image_arn: String,
    /// The version the build belongs to.
    pub image_version: String,
    /// The build's id.
    pub build_id: String,
    /// The build's state.
    pub build_state: BuildState,
    /// The target architecture.
    pub architecture: Architecture,
    /// The target chipset.
    pub chipset: Chipset,
    /// The target chipset generation.
    pub chipset_generation: String,
    /// Why the build is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// When the build was created.
    pub created_at: Timestamp,
    /// The snapshot's sizes, once built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_build: Option<SnapshotBuild>,
}

/// Input of `ListMicrovmImageBuilds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImageBuildsInput {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The version.
    pub image_version: String,
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Only builds for this architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Only builds for this chipset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chipset: Option<Chipset>,
    /// Only builds for this chipset generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chipset_generation: Option<String>,
}

/// Output of `ListMicrovmImageBuilds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImageBuildsOutput {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The builds on this page.
    pub items: Vec<MicrovmImageBuildSummary>,
}
