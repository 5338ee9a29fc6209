//! The 24 operations: their HTTP bindings, their typed requests and
//! responses, and the one `match` that hands a request to [`Control`].
//!
//! Every request becomes an [`ApiRequest`] before anything runs, so the
//! handler has a single path: route, decode, validate, dispatch, encode.

use serde_json::Value;

use crate::control::{Control, RequestContext};
use crate::error::ApiError;
use crate::model::*;
use crate::validation::schema::Shape;
use crate::validation::shapes as s;

/// How an operation travels over HTTP, as the model binds it.
#[derive(Debug)]
pub struct OperationSpec {
    /// The operation's name.
    pub name: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// The URI template, labels in braces.
    pub uri: &'static str,
    /// The status of a successful response.
    pub status: u16,
    /// The input structure.
    pub input: &'static Shape,
}

/// Writes the operation enum, the request and response enums and dispatch
/// from one table.
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $variant:ident {
            call: $method:ident,
            input: $input:ty as $shape:path,
            output: $output:ty,
            http: $http:literal $status:literal $uri:literal,
        }
    )+) => {
        /// One of the API's operations.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation {
            $( $(#[$doc])* $variant, )+
        }

        impl Operation {
            /// Every operation.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),+];

            /// The operation's HTTP binding.
            pub fn spec(self) -> &'static OperationSpec {
                match self {
                    $(Self::$variant => {
                        static SPEC: OperationSpec = OperationSpec {
                            name: stringify!($variant),
                            method: $http,
                            uri: $uri,
                            status: $status,
                            input: &$shape,
                        };
                        &SPEC
                    })+
                }
            }
        }

        /// A decoded, validated request.
        #[derive(Clone, Debug)]
        pub enum ApiRequest {
            $( $(#[$doc])* $variant($input), )+
        }

        /// An operation's typed output.
        #[derive(Clone, Debug)]
        pub enum ApiResponse {
            $( $(#[$doc])* $variant($output), )+
        }

        impl ApiRequest {
            /// The operation this request is for.
            pub fn operation(&self) -> Operation {
                match self {
                    $(Self::$variant(_) => Operation::$variant,)+
                }
            }

            /// Deserializes a checked value into `operation`'s input.
            pub(crate) fn from_value(
                operation: Operation,
                value: Value,
            ) -> Result<Self, serde_json::Error> {
                match operation {
                    $(Operation::$variant => serde_json::from_value(value).map(Self::$variant),)+
                }
            }

            /// The input as JSON, for fingerprints.
            pub(crate) fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Self::$variant(input) => serde_json::to_value(input),)+
                }
            }
        }

        impl ApiResponse {
            /// The output as JSON.
            pub(crate) fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Self::$variant(output) => serde_json::to_value(output),)+
                }
            }

            /// Reads `operation`'s output back from JSON that
            /// [`ApiResponse::to_value`] made.
            pub(crate) fn from_value(
                operation: Operation,
                value: Value,
            ) -> Result<Self, serde_json::Error> {
                match operation {
                    $(Operation::$variant => serde_json::from_value(value).map(Self::$variant),)+
                }
            }
        }

        /// Calls the [`Control`] method for `request`.
        pub(crate) async fn dispatch(
            control: &dyn Control,
            ctx: &RequestContext,
            request: ApiRequest,
        ) -> Result<ApiResponse, ApiError> {
            match request {
                $(ApiRequest::$variant(input) => {
                    control.$method(ctx, input).await.map(ApiResponse::$variant)
                })+
            }
        }
    };
}

operations! {
    /// Creates a token for a microVM's endpoint.
    CreateMicrovmAuthToken {
        call: create_microvm_auth_token,
        input: CreateMicrovmAuthTokenRequest as s::CREATE_MICROVM_AUTH_TOKEN_REQUEST,
        output: CreateMicrovmAuthTokenResponse,
        http: "POST" 200 "/2025-09-09/microvms/{microvmIdentifier}/auth-token",
    }

    /// Creates an image and builds its first version.
    CreateMicrovmImage {
        call: create_microvm_image,
        input: CreateMicrovmImageRequest as s::CREATE_MICROVM_IMAGE_REQUEST,
        output: CreateMicrovmImageResponse,
        http: "POST" 201 "/2025-09-09/microvm-images",
    }

    /// Creates a token for a microVM's shell.
    CreateMicrovmShellAuthToken {
        call: create_microvm_shell_auth_token,
        input: CreateMicrovmShellAuthTokenRequest as s::CREATE_MICROVM_SHELL_AUTH_TOKEN_REQUEST,
        output: CreateMicrovmShellAuthTokenResponse,
        http: "POST" 200 "/2025-09-09/microvms/{microvmIdentifier}/shell-auth-token",
    }

    /// Deletes an image.
    DeleteMicrovmImage {
        call: delete_microvm_image,
        input: DeleteMicrovmImageInput as s::DELETE_MICROVM_IMAGE_INPUT,
        output: DeleteMicrovmImageOutput,
        http: "DELETE" 200 "/2025-09-09/microvm-images/{imageIdentifier}",
    }

    /// Deletes an image version.
    DeleteMicrovmImageVersion {
        call: delete_microvm_image_version,
        input: DeleteMicrovmImageVersionInput as s::DELETE_MICROVM_IMAGE_VERSION_INPUT,
        output: DeleteMicrovmImageVersionOutput,
        http: "DELETE" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions/{imageVersion}",
    }

    /// Describes a microVM.
    GetMicrovm {
        call: get_microvm,
        input: GetMicrovmRequest as s::GET_MICROVM_REQUEST,
        output: GetMicrovmResponse,
        http: "GET" 200 "/2025-09-09/microvms/{microvmIdentifier}",
    }

    /// Describes an image.
    GetMicrovmImage {
        call: get_microvm_image,
        input: GetMicrovmImageInput as s::GET_MICROVM_IMAGE_INPUT,
        output: GetMicrovmImageOutput,
        http: "GET" 200 "/2025-09-09/microvm-images/{imageIdentifier}",
    }

    /// Describes a build.
    GetMicrovmImageBuild {
        call: get_microvm_image_build,
        input: GetMicrovmImageBuildInput as s::GET_MICROVM_IMAGE_BUILD_INPUT,
        output: GetMicrovmImageBuildOutput,
        http: "GET" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions/{imageVersion}/builds/{buildId}",
    }

    /// Describes an image version.
    GetMicrovmImageVersion {
        call: get_microvm_image_version,
        input: GetMicrovmImageVersionInput as s::GET_MICROVM_IMAGE_VERSION_INPUT,
        output: GetMicrovmImageVersionOutput,
        http: "GET" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions/{imageVersion}",
    }

    /// Lists a managed base image's versions.
    ListManagedMicrovmImageVersions {
        call: list_managed_microvm_image_versions,
        input: ListManagedMicrovmImageVersionsInput as s::LIST_MANAGED_MICROVM_IMAGE_VERSIONS_INPUT,
        output: ListManagedMicrovmImageVersionsOutput,
        http: "GET" 200 "/2025-09-09/managed-microvm-images/{imageIdentifier}/versions",
    }

    /// Lists the managed base images.
    ListManagedMicrovmImages {
        call: list_managed_microvm_images,
        input: ListManagedMicrovmImagesInput as s::LIST_MANAGED_MICROVM_IMAGES_INPUT,
        output: ListManagedMicrovmImagesOutput,
        http: "GET" 200 "/2025-09-09/managed-microvm-images",
    }

    /// Lists a version's builds.
    ListMicrovmImageBuilds {
        call: list_microvm_image_builds,
        input: ListMicrovmImageBuildsInput as s::LIST_MICROVM_IMAGE_BUILDS_INPUT,
        output: ListMicrovmImageBuildsOutput,
        http: "GET" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions/{imageVersion}/builds",
    }

    /// Lists an image's versions.
    ListMicrovmImageVersions {
        call: list_microvm_image_versions,
        input: ListMicrovmImageVersionsInput as s::LIST_MICROVM_IMAGE_VERSIONS_INPUT,
        output: ListMicrovmImageVersionsOutput,
        http: "GET" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions",
    }

    /// Lists the images.
    ListMicrovmImages {
        call: list_microvm_images,
        input: ListMicrovmImagesRequest as s::LIST_MICROVM_IMAGES_REQUEST,
        output: ListMicrovmImagesResponse,
        http: "GET" 200 "/2025-09-09/microvm-images",
    }

    /// Lists the microVMs.
    ListMicrovms {
        call: list_microvms,
        input: ListMicrovmsRequest as s::LIST_MICROVMS_REQUEST,
        output: ListMicrovmsResponse,
        http: "GET" 200 "/2025-09-09/microvms",
    }

    /// Lists a resource's tags.
    ListTags {
        call: list_tags,
        input: ListTagsRequest as s::LIST_TAGS_REQUEST,
        output: ListTagsResponse,
        http: "GET" 200 "/2017-03-31/tags/{Resource}",
    }

    /// Resumes a suspended microVM.
    ResumeMicrovm {
        call: resume_microvm,
        input: ResumeMicrovmRequest as s::RESUME_MICROVM_REQUEST,
        output: ResumeMicrovmResponse,
        http: "POST" 200 "/2025-09-09/microvms/{microvmIdentifier}/resume",
    }

    /// Runs a microVM.
    RunMicrovm {
        call: run_microvm,
        input: RunMicrovmRequest as s::RUN_MICROVM_REQUEST,
        output: RunMicrovmResponse,
        http: "POST" 200 "/2025-09-09/microvms",
    }

    /// Suspends a running microVM.
    SuspendMicrovm {
        call: suspend_microvm,
        input: SuspendMicrovmRequest as s::SUSPEND_MICROVM_REQUEST,
        output: SuspendMicrovmResponse,
        http: "POST" 200 "/2025-09-09/microvms/{microvmIdentifier}/suspend",
    }

    /// Tags a resource.
    TagResource {
        call: tag_resource,
        input: TagResourceRequest as s::TAG_RESOURCE_REQUEST,
        output: (),
        http: "POST" 204 "/2017-03-31/tags/{Resource}",
    }

    /// Terminates a microVM.
    TerminateMicrovm {
        call: terminate_microvm,
        input: TerminateMicrovmRequest as s::TERMINATE_MICROVM_REQUEST,
        output: TerminateMicrovmResponse,
        http: "DELETE" 200 "/2025-09-09/microvms/{microvmIdentifier}",
    }

    /// Removes tags from a resource.
    UntagResource {
        call: untag_resource,
        input: UntagResourceRequest as s::UNTAG_RESOURCE_REQUEST,
        output: (),
        http: "DELETE" 204 "/2017-03-31/tags/{Resource}",
    }

    /// Builds a new version of an image.
    UpdateMicrovmImage {
        call: update_microvm_image,
        input: UpdateMicrovmImageRequest as s::UPDATE_MICROVM_IMAGE_REQUEST,
        output: UpdateMicrovmImageResponse,
        http: "PUT" 200 "/2025-09-09/microvm-images/{imageIdentifier}",
    }

    /// Activates or deactivates an image version.
    UpdateMicrovmImageVersion {
        call: update_microvm_image_version,
        input: UpdateMicrovmImageVersionRequest as s::UPDATE_MICROVM_IMAGE_VERSION_REQUEST,
        output: UpdateMicrovmImageVersionResponse,
        http: "PATCH" 200 "/2025-09-09/microvm-images/{imageIdentifier}/versions/{imageVersion}",
    }
}

impl ApiRequest {
    /// The idempotency token, for the operations that take one.
    pub fn client_token(&self) -> Option<&str> {
        match self {
            Self::CreateMicrovmImage(input) => input.client_token.as_deref(),
            Self::UpdateMicrovmImage(input) => input.client_token.as_deref(),
            Self::RunMicrovm(input) => input.client_token.as_deref(),
            _ => None,
        }
    }

    /// The paging token, for the list operations.
    pub fn next_token(&self) -> Option<&str> {
        match self {
            Self::ListManagedMicrovmImageVersions(input) => input.next_token.as_deref(),
            Self::ListManagedMicrovmImages(input) => input.next_token.as_deref(),
            Self::ListMicrovmImageBuilds(input) => input.next_token.as_deref(),
            Self::ListMicrovmImageVersions(input) => input.next_token.as_deref(),
            Self::ListMicrovmImages(input) => input.next_token.as_deref(),
            Self::ListMicrovms(input) => input.next_token.as_deref(),
            _ => None,
        }
    }
}

/// Serializes an output for the wire; `None` for the body-less outputs.
pub(crate) fn encode_body(response: &ApiResponse) -> Result<Option<Vec<u8>>, serde_json::Error> {
    match response {
        ApiResponse::TagResource(()) | ApiResponse::UntagResource(()) => Ok(None),
        other => serde_json::to_vec(&other.to_value()?).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_24_operations_with_distinct_bindings() {
        assert_eq!(Operation::ALL.len(), 24);
        let mut bindings: Vec<_> = Operation::ALL
            .iter()
            .map(|op| (op.spec().method, op.spec().uri))
            .collect();
        bindings.sort();
        bindings.dedup();
        assert_eq!(bindings.len(), 24);
    }

    #[test]
    fn input_shapes_are_named_after_their_operation() {
        for op in Operation::ALL {
            let spec = op.spec();
            assert!(spec.input.name.starts_with(spec.name), "{}", spec.name);
        }
    }
}
