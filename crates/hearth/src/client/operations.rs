//! One typed method per operation of the Lambda MicroVMs API, and helpers
//! that follow `nextToken` through every page of a listing.

use hearth_api::model::*;
use hearth_api::Operation;

use super::{Client, ClientError};

/// Writes a method that calls one operation.
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $method:ident($operation:ident, $input:ty) -> $output:ty;
    )+) => {
        impl Client {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                ///
                /// What [`Client::call`] returns.
                pub async fn $method(&self, input: &$input) -> Result<$output, ClientError> {
                    self.call(Operation::$operation, input).await
                }
            )+
        }
    };
}

operations! {
    /// `CreateMicrovmAuthToken`: a token for a microVM's endpoint.
    create_microvm_auth_token(CreateMicrovmAuthToken, CreateMicrovmAuthTokenRequest)
        -> CreateMicrovmAuthTokenResponse;
    /// `CreateMicrovmShellAuthToken`: a token for a microVM's shell.
    create_microvm_shell_auth_token(CreateMicrovmShellAuthToken, CreateMicrovmShellAuthTokenRequest)
        -> CreateMicrovmShellAuthTokenResponse;
    /// `CreateMicrovmImage`: an image and the build of its first version.
    create_microvm_image(CreateMicrovmImage, CreateMicrovmImageRequest)
        -> CreateMicrovmImageResponse;
    /// `UpdateMicrovmImage`: a new version of an image.
    update_microvm_image(UpdateMicrovmImage, UpdateMicrovmImageRequest)
        -> UpdateMicrovmImageResponse;
    /// `GetMicrovmImage`.
    get_microvm_image(GetMicrovmImage, GetMicrovmImageInput) -> GetMicrovmImageOutput;
    /// `DeleteMicrovmImage`.
    delete_microvm_image(DeleteMicrovmImage, DeleteMicrovmImageInput) -> DeleteMicrovmImageOutput;
    /// `ListMicrovmImages`: one page.
    list_microvm_images(ListMicrovmImages, ListMicrovmImagesRequest) -> ListMicrovmImagesResponse;
    /// `GetMicrovmImageVersion`.
    get_microvm_image_version(GetMicrovmImageVersion, GetMicrovmImageVersionInput)
        -> GetMicrovmImageVersionOutput;
    /// `UpdateMicrovmImageVersion`: a version's status.
    update_microvm_image_version(UpdateMicrovmImageVersion, UpdateMicrovmImageVersionRequest)
        -> UpdateMicrovmImageVersionResponse;
    /// `DeleteMicrovmImageVersion`.
    delete_microvm_image_version(DeleteMicrovmImageVersion, DeleteMicrovmImageVersionInput)
        -> DeleteMicrovmImageVersionOutput;
    /// `ListMicrovmImageVersions`: one page.
    list_microvm_image_versions(ListMicrovmImageVersions, ListMicrovmImageVersionsInput)
        -> ListMicrovmImageVersionsOutput;
    /// `GetMicrovmImageBuild`.
    get_microvm_image_build(GetMicrovmImageBuild, GetMicrovmImageBuildInput)
        -> GetMicrovmImageBuildOutput;
    /// `ListMicrovmImageBuilds`: one page.
    list_microvm_image_builds(ListMicrovmImageBuilds, ListMicrovmImageBuildsInput)
        -> ListMicrovmImageBuildsOutput;
    /// `ListManagedMicrovmImages`: one page.
    list_managed_microvm_images(ListManagedMicrovmImages, ListManagedMicrovmImagesInput)
        -> ListManagedMicrovmImagesOutput;
    /// `ListManagedMicrovmImageVersions`: one page.
    list_managed_microvm_image_versions(
        ListManagedMicrovmImageVersions, ListManagedMicrovmImageVersionsInput
    ) -> ListManagedMicrovmImageVersionsOutput;
    /// `RunMicrovm`: a microVM from an image version's snapshot.
    run_microvm(RunMicrovm, RunMicrovmRequest) -> RunMicrovmResponse;
    /// `GetMicrovm`.
    get_microvm(GetMicrovm, GetMicrovmRequest) -> GetMicrovmResponse;
    /// `ListMicrovms`: one page.
    list_microvms(ListMicrovms, ListMicrovmsRequest) -> ListMicrovmsResponse;
    /// `SuspendMicrovm`.
    suspend_microvm(SuspendMicrovm, SuspendMicrovmRequest) -> SuspendMicrovmResponse;
    /// `ResumeMicrovm`.
    resume_microvm(ResumeMicrovm, ResumeMicrovmRequest) -> ResumeMicrovmResponse;
    /// `TerminateMicrovm`.
    terminate_microvm(TerminateMicrovm, TerminateMicrovmRequest) -> TerminateMicrovmResponse;
    /// `ListTags`.
    list_tags(ListTags, ListTagsRequest) -> ListTagsResponse;
    /// `TagResource`.
    tag_resource(TagResource, TagResourceRequest) -> Unit;
    /// `UntagResource`.
    untag_resource(UntagResource, UntagResourceRequest) -> Unit;
}

impl Client {
    /// Every microVM that `filter` selects, across all pages.
    ///
    /// # Errors
    ///
    /// What [`Client::call`] returns.
    pub async fn list_all_microvms(
        &self,
        filter: ListMicrovmsRequest,
    ) -> Result<Vec<MicrovmItem>, ClientError> {
        let mut request = filter;
        let mut items = Vec::new();
        loop {
            let page = self.list_microvms(&request).await?;
            items.extend(page.items);
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// Every image, across all pages.
    ///
    /// # Errors
    ///
    /// What [`Client::call`] returns.
    pub async fn list_all_microvm_images(&self) -> Result<Vec<MicrovmImageSummary>, ClientError> {
        let mut request = ListMicrovmImagesRequest::default();
        let mut items = Vec::new();
        loop {
            let page = self.list_microvm_images(&request).await?;
            items.extend(page.items);
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// Every version of `image`, across all pages.
    ///
    /// # Errors
    ///
    /// What [`Client::call`] returns.
    pub async fn list_all_microvm_image_versions(
        &self,
        image: &str,
    ) -> Result<Vec<MicrovmImageVersionSummary>, ClientError> {
        let mut request = ListMicrovmImageVersionsInput {
            image_identifier: image.to_owned(),
            max_results: None,
            next_token: None,
        };
        let mut items = Vec::new();
        loop {
            let page = self.list_microvm_image_versions(&request).await?;
            items.extend(page.items);
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// Every build of `version` of `image`, across all pages.
    ///
    /// # Errors
    ///
    /// What [`Client::call`] returns.
    pub async fn list_all_microvm_image_builds(
        &self,
        image: &str,
        version: &str,
    ) -> Result<Vec<MicrovmImageBuildSummary>, ClientError> {
        let mut request = ListMicrovmImageBuildsInput {
            image_identifier: image.to_owned(),
            image_version: version.to_owned(),
            max_results: None,
            next_token: None,
            architecture: None,
            chipset: None,
            chipset_generation: None,
        };
        let mut items = Vec::new();
        loop {
            let page = self.list_microvm_image_builds(&request).await?;
            items.extend(page.items);
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(items),
            }
        }
    }
}
