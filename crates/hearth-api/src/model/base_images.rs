//! Managed base images: `ListManagedMicrovmImages` and
//! `ListManagedMicrovmImageVersions`.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Timestamp};
use super::image_config::CpuConfiguration;

wire_enum! {
    /// The lifecycle of a managed base image version
    /// (`ManagedMicrovmImageVersionStatus`).
    ManagedMicrovmImageVersionStatus {
        /// Usable for new images.
        Available = "AVAILABLE",
        /// Still works; new images should not use it.
        Deprecated = "DEPRECATED",
        /// Withdrawn.
        Recalled = "RECALLED",
    }
}

/// One managed base image (`ManagedMicrovmImageSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedMicrovmImageSummary {
    /// The base image's ARN.
    pub image_arn: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// One version of a managed base image (`ManagedMicrovmImageVersion`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedMicrovmImageVersion {
    /// The base image's ARN.
    pub image_arn: String,
    /// The version.
    pub image_version: String,
    /// Its lifecycle status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ManagedMicrovmImageVersionStatus>,
    /// The CPU configurations it supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_cpu_configurations: Option<Vec<CpuConfiguration>>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// Input of `ListManagedMicrovmImages`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListManagedMicrovmImagesInput {
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Output of `ListManagedMicrovmImages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListManagedMicrovmImagesOutput {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The base images on this page.
    pub items: Vec<ManagedMicrovmImageSummary>,
}

/// Input of `ListManagedMicrovmImageVersions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListManagedMicrovmImageVersionsInput {
    /// The base image's ARN or name.
    pub image_identifier: String,
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Output of `ListManagedMicrovmImageVersions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListManagedMicrovmImageVersionsOutput {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The versions on this page.
    pub items: Vec<ManagedMicrovmImageVersion>,
}
