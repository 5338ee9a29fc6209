//! The interface between the wire API and whatever runs images and microVMs.
//!
//! Handlers decode, authenticate and validate a request, then call exactly
//! one [`Control`] method with the typed input. Every constraint of the model
//! has been checked by then, so an implementation checks only what needs
//! state: existence, state transitions, quotas and capacity.

use async_trait::async_trait;

use crate::error::ApiError;
use crate::model::*;

/// Who made a request and how to refer to it in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The request's id, also sent back as `x-amzn-RequestId`.
    pub request_id: String,
    /// The access key that signed the request.
    pub access_key_id: String,
}

/// The operations of the Lambda MicroVMs API, one method each.
///
/// Each method returns the operation's output or an [`ApiError`]; the
/// resource-level errors are `ResourceNotFoundException` for unknown ids,
/// `ConflictException` for a state that forbids the call,
/// `ServiceQuotaExceededException` and `InsufficientCapacityException`.
/// Paging inputs come with a `nextToken` already known to decode; see
/// [`crate::pagination`] for the helpers that read and write it.
#[async_trait]
pub trait Control: Send + Sync + 'static {
    /// `CreateMicrovmImage`: registers an image and starts building its
    /// first version.
    async fn create_microvm_image(
        &self,
        ctx: &RequestContext,
        input: CreateMicrovmImageRequest,
    ) -> Result<CreateMicrovmImageResponse, ApiError>;

    /// `GetMicrovmImage`: an image's state and newest versions.
    async fn get_microvm_image(
        &self,
        ctx: &RequestContext,
        input: GetMicrovmImageInput,
    ) -> Result<GetMicrovmImageOutput, ApiError>;

    /// `UpdateMicrovmImage`: starts building a new version from a full
    /// configuration.
    async fn update_microvm_image(
        &self,
        ctx: &RequestContext,
        input: UpdateMicrovmImageRequest,
    ) -> Result<UpdateMicrovmImageResponse, ApiError>;

    /// `DeleteMicrovmImage`: deletes an image; deleting a deleted one
    /// succeeds.
    async fn delete_microvm_image(
        &self,
        ctx: &RequestContext,
        input: DeleteMicrovmImageInput,
    ) -> Result<DeleteMicrovmImageOutput, ApiError>;

    /// `ListMicrovmImages`: the account's images, by page.
    async fn list_microvm_images(
        &self,
        ctx: &RequestContext,
        input: ListMicrovmImagesRequest,
    ) -> Result<ListMicrovmImagesResponse, ApiError>;

    /// `GetMicrovmImageVersion`: one version of an image.
    async fn get_microvm_image_version(
        &self,
        ctx: &RequestContext,
        input: GetMicrovmImageVersionInput,
    ) -> Result<GetMicrovmImageVersionOutput, ApiError>;

    /// `UpdateMicrovmImageVersion`: makes a version ACTIVE or INACTIVE.
    async fn update_microvm_image_version(
        &self,
        ctx: &RequestContext,
        input: UpdateMicrovmImageVersionRequest,
    ) -> Result<UpdateMicrovmImageVersionResponse, ApiError>;

    /// `DeleteMicrovmImageVersion`: deletes a version; deleting a deleted
    /// one succeeds.
    async fn delete_microvm_image_version(
        &self,
        ctx: &RequestContext,
        input: DeleteMicrovmImageVersionInput,
    ) -> Result<DeleteMicrovmImageVersionOutput, ApiError>;

    /// `ListMicrovmImageVersions`: an image's versions, by page.
    async fn list_microvm_image_versions(
        &self,
        ctx: &RequestContext,
        input: ListMicrovmImageVersionsInput,
    ) -> Result<ListMicrovmImageVersionsOutput, ApiError>;

    /// `GetMicrovmImageBuild`: one build of a version.
    async fn get_microvm_image_build(
        &self,
        ctx: &RequestContext,
        input: GetMicrovmImageBuildInput,
    ) -> Result<GetMicrovmImageBuildOutput, ApiError>;

    /// `ListMicrovmImageBuilds`: a version's builds, by page.
    async fn list_microvm_image_builds(
        &self,
        ctx: &RequestContext,
        input: ListMicrovmImageBuildsInput,
    ) -> Result<ListMicrovmImageBuildsOutput, ApiError>;

    /// `ListManagedMicrovmImages`: the managed base images, by page.
    async fn list_managed_microvm_images(
        &self,
        ctx: &RequestContext,
        input: ListManagedMicrovmImagesInput,
    ) -> Result<ListManagedMicrovmImagesOutput, ApiError>;

    /// `ListManagedMicrovmImageVersions`: a base image's versions, by page.
    async fn list_managed_microvm_image_versions(
        &self,
        ctx: &RequestContext,
        input: ListManagedMicrovmImageVersionsInput,
    ) -> Result<ListManagedMicrovmImageVersionsOutput, ApiError>;

    /// `RunMicrovm`: starts a microVM from an image version.
    async fn run_microvm(
        &self,
        ctx: &RequestContext,
        input: RunMicrovmRequest,
    ) -> Result<RunMicrovmResponse, ApiError>;

    /// `GetMicrovm`: a microVM's state and configuration.
    async fn get_microvm(
        &self,
        ctx: &RequestContext,
        input: GetMicrovmRequest,
    ) -> Result<GetMicrovmResponse, ApiError>;

    /// `ListMicrovms`: the account's microVMs, by page.
    async fn list_microvms(
        &self,
        ctx: &RequestContext,
        input: ListMicrovmsRequest,
    ) -> Result<ListMicrovmsResponse, ApiError>;

    /// `SuspendMicrovm`: suspends a RUNNING microVM.
    async fn suspend_microvm(
        &self,
        ctx: &RequestContext,
        input: SuspendMicrovmRequest,
    ) -> Result<SuspendMicrovmResponse, ApiError>;

    /// `ResumeMicrovm`: resumes a SUSPENDED microVM.
    async fn resume_microvm(
        &self,
        ctx: &RequestContext,
        input: ResumeMicrovmRequest,
    ) -> Result<ResumeMicrovmResponse, ApiError>;

    /// `TerminateMicrovm`: terminates a microVM; terminating a terminated
    /// one succeeds.
    async fn terminate_microvm(
        &self,
        ctx: &RequestContext,
        input: TerminateMicrovmRequest,
    ) -> Result<TerminateMicrovmResponse, ApiError>;

    /// `CreateMicrovmAuthToken`: a token for the microVM's endpoint.
    async fn create_microvm_auth_token(
        &self,
        ctx: &RequestContext,
        input: CreateMicrovmAuthTokenRequest,
    ) -> Result<CreateMicrovmAuthTokenResponse, ApiError>;

    /// `CreateMicrovmShellAuthToken`: a token for the microVM's shell.
    async fn create_microvm_shell_auth_token(
        &self,
        ctx: &RequestContext,
        input: CreateMicrovmShellAuthTokenRequest,
    ) -> Result<CreateMicrovmShellAuthTokenResponse, ApiError>;

    /// `TagResource`: adds or overwrites tags.
    async fn tag_resource(
        &self,
        ctx: &RequestContext,
        input: TagResourceRequest,
    ) -> Result<(), ApiError>;

    /// `UntagResource`: removes tags by key.
    async fn untag_resource(
        &self,
        ctx: &RequestContext,
        input: UntagResourceRequest,
    ) -> Result<(), ApiError>;

    /// `ListTags`: a resource's tags.
    async fn list_tags(
        &self,
        ctx: &RequestContext,
        input: ListTagsRequest,
    ) -> Result<ListTagsResponse, ApiError>;
}
