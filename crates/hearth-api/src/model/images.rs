//! Images: `CreateMicrovmImage`, `GetMicrovmImage`, `UpdateMicrovmImage`,
//! `DeleteMicrovmImage` and `ListMicrovmImages`.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, Tags, Timestamp};
use super::image_config::ImageConfig;

wire_enum! {
    /// The state of an image (`MicrovmImageState`).
    MicrovmImageState {
        /// The first version is being built.
        Creating = "CREATING",
        /// The first version was built.
        Created = "CREATED",
        /// The first version failed to build.
        CreateFailed = "CREATE_FAILED",
        /// A new version is being built.
        Updating = "UPDATING",
        /// A new version was built.
        Updated = "UPDATED",
        /// A new version failed to build.
        UpdateFailed = "UPDATE_FAILED",
        /// The image is being deleted.
        Deleting = "DELETING",
        /// Deletion failed.
        DeleteFailed = "DELETE_FAILED",
        /// The image is gone.
        Deleted = "DELETED",
    }
}

/// Input of `CreateMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmImageRequest {
    /// The image's name, unique in the account.
    pub name: String,
    /// Tags for the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// The idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The first version's configuration.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// Output of `CreateMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMicrovmImageResponse {
    /// The image's ARN.
    pub image_arn: String,
    /// The image's name.
    pub name: String,
    /// The image's state.
    pub state: MicrovmImageState,
    /// The newest ACTIVE version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_active_image_version: Option<String>,
    /// The newest version whose build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_failed_image_version: Option<String>,
    /// When the image was created.
    pub created_at: Timestamp,
    /// When the image last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// The version this call started.
    pub image_version: String,
    /// The image's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// The version's configuration.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// Input of `GetMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmImageInput {
    /// The image's ARN or name.
    pub image_identifier: String,
}

/// Output of `GetMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMicrovmImageOutput {
    /// The image's ARN.
    pub image_arn: String,
    /// The image's name.
    pub name: String,
    /// The image's state.
    pub state: MicrovmImageState,
    /// The newest ACTIVE version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_active_image_version: Option<String>,
    /// The newest version whose build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_failed_image_version: Option<String>,
    /// When the image was created.
    pub created_at: Timestamp,
    /// The image's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// When the image last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// Input of `UpdateMicrovmImage`: a full configuration for a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMicrovmImageRequest {
    /// The image's ARN or name.
    pub image_identifier: String,
    /// The idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The new version's configuration.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// Output of `UpdateMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMicrovmImageResponse {
    /// The image's ARN.
    pub image_arn: String,
    /// The image's name.
    pub name: String,
    /// The image's state.
    pub state: MicrovmImageState,
    /// The newest ACTIVE version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_active_image_version: Option<String>,
    /// The newest version whose build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_failed_image_version: Option<String>,
    /// When the image was created.
    pub created_at: Timestamp,
    /// When the image last changed (this call).
    pub updated_at: Timestamp,
    /// The version this call started.
    pub image_version: String,
    /// The new version's configuration.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// Input of `DeleteMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMicrovmImageInput {
    /// The image's ARN or name.
    pub image_identifier: String,
}

/// Output of `DeleteMicrovmImage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMicrovmImageOutput {
    /// The identifier as given.
    pub image_identifier: String,
    /// The image's state after the call.
    pub state: MicrovmImageState,
}

/// Input of `ListMicrovmImages`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImagesRequest {
    /// The page size (1–50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// The token from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Only images whose name contains this string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_filter: Option<String>,
}

/// Output of `ListMicrovmImages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMicrovmImagesResponse {
    /// The token for the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The images on this page.
    pub items: Vec<MicrovmImageSummary>,
}

/// One image in a listing (`MicrovmImageSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrovmImageSummary {
    /// The image's ARN.
    pub image_arn: String,
    /// The image's name.
    pub name: String,
    /// The image's state.
    pub state: MicrovmImageState,
    /// The newest ACTIVE version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_active_image_version: Option<String>,
    /// The newest version whose build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_failed_image_version: Option<String>,
    /// When the image was created.
    pub created_at: Timestamp,
}
