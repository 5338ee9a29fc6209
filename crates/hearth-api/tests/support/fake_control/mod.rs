//! A TEST DOUBLE of the control plane: images, versions, builds, microVMs and
//! tags held in memory, enough to exercise the wire layer with plausible
//! behaviour. Builds succeed at once; microVMs run nothing.
//!
//! It lives under `tests/` and is shared with the `test-server` example; the
//! real control plane is another crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use hearth_api::model::*;
use hearth_api::pagination::PageRequest;
use hearth_api::{ApiError, Control, RequestContext};

mod state;

use state::{
    builds_for, find_image, find_microvm, find_version, random_hex, Image, State, Version,
};

/// The account ARNs are made in.
pub const ACCOUNT: &str = "000000000000";

/// The one managed base image's name.
pub const BASE_IMAGE: &str = "al2023-1";

/// The in-memory control plane.
pub struct FakeControl {
    region: String,
    state: Mutex<State>,
}

impl FakeControl {
    /// An empty control plane for `region`.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn image_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{ACCOUNT}:microvm-image:{name}",
            self.region
        )
    }

    fn base_image_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:aws:microvm-image:{BASE_IMAGE}",
            self.region
        )
    }

    /// Checks that the base image is the managed one (by ARN or alias).
    fn check_base_image(&self, arn: &str) -> Result<(), ApiError> {
        if arn == self.base_image_arn() || arn == BASE_IMAGE {
            Ok(())
        } else {
            Err(ApiError::not_found("managed-microvm-image", arn))
        }
    }
}

#[async_trait]
impl Control for FakeControl {
    async fn create_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmImageRequest,
    ) -> Result<CreateMicrovmImageResponse, ApiError> {
        self.check_base_image(&input.config.base_image_arn)?;
        let arn = self.image_arn(&input.name);
        let mut state = self.state();
        if state
            .images
            .get(&input.name)
            .is_some_and(|i| i.state != MicrovmImageState::Deleted)
        {
            return Err(ApiError::conflict(
                "microvm-image",
                &arn,
                format!("image {} already exists", input.name),
            ));
        }

        let now = Timestamp::now();
        let version = Version {
            number: 1,
            state: MicrovmImageVersionState::Successful,
            status: MicrovmImageVersionStatus::Active,
            created_at: now,
            updated_at: None,
            builds: builds_for(&arn, 1, &input.config, now),
            config: input.config.clone(),
        };
        state.images.insert(
            input.name.clone(),
            Image {
                arn: arn.clone(),
                name: input.name.clone(),
                state: MicrovmImageState::Created,
                created_at: now,
                updated_at: None,
                versions: vec![version],
            },
        );
        state
            .tags
            .insert(arn.clone(), input.tags.clone().unwrap_or_default());

        Ok(CreateMicrovmImageResponse {
            image_arn: arn,
            name: input.name,
            state: MicrovmImageState::Creating,
            latest_active_image_version: None,
            latest_failed_image_version: None,
            created_at: now,
            updated_at: None,
            image_version: "1".to_owned(),
            tags: input.tags,
            config: input.config,
        })
    }

    async fn get_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageInput,
    ) -> Result<GetMicrovmImageOutput, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let summary = image.summary();
        let updated_at = image.updated_at;
        let tags = state.tags.get(&summary.image_arn).cloned();
        Ok(GetMicrovmImageOutput {
            image_arn: summary.image_arn,
            name: summary.name,
            state: summary.state,
            latest_active_image_version: summary.latest_active_image_version,
            latest_failed_image_version: None,
            created_at: summary.created_at,
            tags,
            updated_at,
        })
    }

    async fn update_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: UpdateMicrovmImageRequest,
    ) -> Result<UpdateMicrovmImageResponse, ApiError> {
        self.check_base_image(&input.config.base_image_arn)?;
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;

        let now = Timestamp::now();
        let number = image.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1;
        image.versions.push(Version {
            number,
            state: MicrovmImageVersionState::Successful,
            status: MicrovmImageVersionStatus::Active,
            created_at: now,
            updated_at: None,
            builds: builds_for(&image.arn, number, &input.config, now),
            config: input.config.clone(),
        });
        image.state = MicrovmImageState::Updated;
        image.updated_at = Some(now);

        Ok(UpdateMicrovmImageResponse {
            image_arn: image.arn.clone(),
            name: image.name.clone(),
            state: MicrovmImageState::Updating,
            latest_active_image_version: image.latest_active(),
            latest_failed_image_version: None,
            created_at: image.created_at,
            updated_at: now,
            image_version: number.to_string(),
            config: input.config,
        })
    }

    async fn delete_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: DeleteMicrovmImageInput,
    ) -> Result<DeleteMicrovmImageOutput, ApiError> {
        let mut state = self.state();
        let name = input
            .image_identifier
            .rsplit(':')
            .next()
            .unwrap_or(&input.image_identifier)
            .to_owned();
        let Some(image) = state.images.get(&name) else {
            return Err(ApiError::not_found(
                "microvm-image",
                &input.image_identifier,
            ));
        };
        let arn = image.arn.clone();
        let in_use = state
            .microvms
            .values()
            .any(|m| m.image_arn == arn && m.state != MicrovmState::Terminated);
        if in_use {
            return Err(ApiError::conflict(
                "microvm-image",
                &arn,
                "image has microvms that are not terminated",
            ));
        }

        if let Some(image) = state.images.get_mut(&name) {
            image.state = MicrovmImageState::Deleted;
        }
        state.tags.remove(&arn);
        Ok(DeleteMicrovmImageOutput {
            image_identifier: input.image_identifier,
            state: MicrovmImageState::Deleted,
        })
    }

    async fn list_microvm_images(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImagesRequest,
    ) -> Result<ListMicrovmImagesResponse, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let state = self.state();
        let images = state
            .images
            .values()
            .filter(|i| i.state != MicrovmImageState::Deleted)
            .filter(|i| {
                input
                    .name_filter
                    .as_deref()
                    .is_none_or(|f| i.name.contains(f))
            })
            .map(Image::summary);
        let page = page.apply(images, |i| i.name.clone());
        Ok(ListMicrovmImagesResponse {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn get_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageVersionInput,
    ) -> Result<GetMicrovmImageVersionOutput, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let arn = image.arn.clone();
        let version = find_version(image, &input.image_version)?;
        Ok(version.summary(&arn, None))
    }

    async fn update_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: UpdateMicrovmImageVersionRequest,
    ) -> Result<UpdateMicrovmImageVersionResponse, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let arn = image.arn.clone();
        let version = find_version(image, &input.image_version)?;
        version.status = input.status;
        version.updated_at = Some(Timestamp::now());
        Ok(version.summary(&arn, None))
    }

    async fn delete_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: DeleteMicrovmImageVersionInput,
    ) -> Result<DeleteMicrovmImageVersionOutput, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let arn = image.arn.clone();
        let version = image
            .versions
            .iter_mut()
            .find(|v| v.number.to_string() == input.image_version)
            .ok_or_else(|| {
                ApiError::not_found(
                    "microvm-image-version",
                    &format!("{arn}:{}", input.image_version),
                )
            })?;
        version.state = MicrovmImageVersionState::Deleted;
        Ok(DeleteMicrovmImageVersionOutput {
            image_identifier: input.image_identifier,
            image_version: input.image_version,
            state: MicrovmImageVersionState::Deleted,
        })
    }

    async fn list_microvm_image_versions(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImageVersionsInput,
    ) -> Result<ListMicrovmImageVersionsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let versions = image
            .versions
            .iter()
            .filter(|v| v.state != MicrovmImageVersionState::Deleted)
            .map(|v| v.summary(&image.arn, None));
        let page = page.apply(versions, |v| {
            format!("{:010}", v.image_version.parse::<u32>().unwrap_or(0))
        });
        Ok(ListMicrovmImageVersionsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn get_microvm_image_build(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageBuildInput,
    ) -> Result<GetMicrovmImageBuildOutput, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let version = find_version(image, &input.image_version)?;
        let build = version
            .builds
            .iter()
            .find(|b| b.build_id == input.build_id)
            .ok_or_else(|| ApiError::not_found("microvm-image-build", &input.build_id))?
            .clone();
        Ok(GetMicrovmImageBuildOutput {
            image_arn: build.image_arn,
            image_version: build.image_version,
            build_id: build.build_id,
            build_state: build.build_state,
            architecture: build.architecture,
            chipset: build.chipset,
            chipset_generation: build.chipset_generation,
            state_reason: build.state_reason,
            created_at: build.created_at,
            snapshot_build: Some(SnapshotBuild {
                memory_snapshot_size_in_bytes: Some(93_000_000),
                code_install_size_in_bytes: Some(4_096),
                disk_snapshot_size_in_bytes: Some(206_000_000),
            }),
        })
    }

    async fn list_microvm_image_builds(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImageBuildsInput,
    ) -> Result<ListMicrovmImageBuildsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let version = find_version(image, &input.image_version)?;
        let builds = version
            .builds
            .iter()
            .filter(|b| {
                input.architecture.is_none_or(|a| a == b.architecture)
                    && input.chipset.is_none_or(|c| c == b.chipset)
                    && input
                        .chipset_generation
                        .as_ref()
                        .is_none_or(|g| *g == b.chipset_generation)
            })
            .cloned();
        let page = page.apply(builds, |b| b.build_id.clone());
        Ok(ListMicrovmImageBuildsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn list_managed_microvm_images(
        &self,
        _ctx: &RequestContext,
        input: ListManagedMicrovmImagesInput,
    ) -> Result<ListManagedMicrovmImagesOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let base = ManagedMicrovmImageSummary {
            image_arn: self.base_image_arn(),
            created_at: Timestamp::from_unix_millis(1_750_000_000_000),
            updated_at: None,
        };
        let page = page.apply([base], |b| b.image_arn.clone());
        Ok(ListManagedMicrovmImagesOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn list_managed_microvm_image_versions(
        &self,
        _ctx: &RequestContext,
        input: ListManagedMicrovmImageVersionsInput,
    ) -> Result<ListManagedMicrovmImageVersionsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        self.check_base_image(&input.image_identifier)?;
        let version = ManagedMicrovmImageVersion {
            image_arn: self.base_image_arn(),
            image_version: "1".to_owned(),
            status: Some(ManagedMicrovmImageVersionStatus::Available),
            supported_cpu_configurations: Some(vec![
                CpuConfiguration {
                    architecture: Architecture::X86_64,
                },
                CpuConfiguration {
                    architecture: Architecture::Arm64,
                },
            ]),
            created_at: Timestamp::from_unix_millis(1_750_000_000_000),
            updated_at: Some(Timestamp::from_unix_millis(1_750_000_000_500)),
        };
        let page = page.apply([version], |v| v.image_version.clone());
        Ok(ListManagedMicrovmImageVersionsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn run_microvm(
        &self,
        _ctx: &RequestContext,
        input: RunMicrovmRequest,
    ) -> Result<RunMicrovmResponse, ApiError> {
        let mut state = self.state();
        let image = find_image(&mut state, &input.image_identifier)?;
        let version = match &input.image_version {
            Some(v) => {
                let version = find_version(image, v)?;
                if version.status == MicrovmImageVersionStatus::Inactive {
                    return Err(ApiError::conflict(
                        "microvm-image-version",
                        v,
                        "version is INACTIVE",
                    ));
                }
                v.clone()
            }
            None => image.latest_active().ok_or_else(|| {
                ApiError::conflict("microvm-image", &image.arn, "image has no ACTIVE version")
            })?,
        };

        let id = format!("microvm-{}", random_hex(16));
        let microvm = Microvm {
            endpoint: format!("http://{id}.localhost:7080"),
            microvm_id: id.clone(),
            state: MicrovmState::Running,
            image_arn: image.arn.clone(),
            image_version: version,
            execution_role_arn: input.execution_role_arn,
            idle_policy: input.idle_policy,
            maximum_duration_in_seconds: input.maximum_duration_in_seconds.unwrap_or(28_800),
            started_at: Timestamp::now(),
            terminated_at: None,
            state_reason: None,
            ingress_network_connectors: Some(
                input
                    .ingress_network_connectors
                    .unwrap_or_else(|| vec!["ALL_INGRESS".into()]),
            ),
            egress_network_connectors: Some(
                input
                    .egress_network_connectors
                    .unwrap_or_else(|| vec!["INTERNET_EGRESS".into()]),
            ),
        };
        state.microvms.insert(id, microvm.clone());
        Ok(Microvm {
            state: MicrovmState::Pending,
            ..microvm
        })
    }

    async fn get_microvm(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmRequest,
    ) -> Result<GetMicrovmResponse, ApiError> {
        Ok(find_microvm(&mut self.state(), &input.microvm_identifier)?.clone())
    }

    async fn list_microvms(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmsRequest,
    ) -> Result<ListMicrovmsResponse, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let state = self.state();
        let items = state
            .microvms
            .values()
            .filter(|m| {
                input.image_identifier.as_ref().is_none_or(|i| {
                    m.image_arn == *i || m.image_arn.rsplit(':').next() == Some(i.as_str())
                })
            })
            .filter(|m| {
                input
                    .image_version
                    .as_ref()
                    .is_none_or(|v| m.image_version == *v)
            })
            .map(|m| MicrovmItem {
                microvm_id: m.microvm_id.clone(),
                state: m.state,
                image_arn: m.image_arn.clone(),
                image_version: m.image_version.clone(),
                started_at: m.started_at,
            });
        let page = page.apply(items, |m| m.microvm_id.clone());
        Ok(ListMicrovmsResponse {
            next_token: page.next_token,
            items: page.items,
        })
    }

    async fn suspend_microvm(
        &self,
        _ctx: &RequestContext,
        input: SuspendMicrovmRequest,
    ) -> Result<SuspendMicrovmResponse, ApiError> {
        let mut state = self.state();
        let microvm = find_microvm(&mut state, &input.microvm_identifier)?;
        if microvm.state != MicrovmState::Running {
            let message = format!(
                "microvm is {}; only a RUNNING microvm can be suspended",
                microvm.state
            );
            return Err(ApiError::conflict("microvm", &microvm.microvm_id, message));
        }
        microvm.state = MicrovmState::Suspended;
        Ok(SuspendMicrovmResponse {})
    }

    async fn resume_microvm(
        &self,
        _ctx: &RequestContext,
        input: ResumeMicrovmRequest,
    ) -> Result<ResumeMicrovmResponse, ApiError> {
        let mut state = self.state();
        let microvm = find_microvm(&mut state, &input.microvm_identifier)?;
        if microvm.state != MicrovmState::Suspended {
            let message = format!(
                "microvm is {}; only a SUSPENDED microvm can be resumed",
                microvm.state
            );
            return Err(ApiError::conflict("microvm", &microvm.microvm_id, message));
        }
        microvm.state = MicrovmState::Running;
        Ok(ResumeMicrovmResponse {})
    }

    async fn terminate_microvm(
        &self,
        _ctx: &RequestContext,
        input: TerminateMicrovmRequest,
    ) -> Result<TerminateMicrovmResponse, ApiError> {
        let mut state = self.state();
        let microvm = find_microvm(&mut state, &input.microvm_identifier)?;
        if microvm.state != MicrovmState::Terminated {
            microvm.state = MicrovmState::Terminated;
            microvm.terminated_at = Some(Timestamp::now());
            microvm.state_reason = Some("USER_INITIATED".to_owned());
        }
        Ok(TerminateMicrovmResponse {})
    }

    async fn create_microvm_auth_token(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmAuthTokenRequest,
    ) -> Result<CreateMicrovmAuthTokenResponse, ApiError> {
        let mut state = self.state();
        let microvm = find_microvm(&mut state, &input.microvm_identifier)?;
        if microvm.state == MicrovmState::Terminated {
            return Err(ApiError::conflict(
                "microvm",
                &microvm.microvm_id,
                "microvm is TERMINATED",
            ));
        }
        let token = format!("fake.{}.{}", microvm.microvm_id, random_hex(16));
        Ok(CreateMicrovmAuthTokenResponse {
            auth_token: [(PROXY_AUTH_HEADER.to_owned(), token)].into(),
        })
    }

    async fn create_microvm_shell_auth_token(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmShellAuthTokenRequest,
    ) -> Result<CreateMicrovmShellAuthTokenResponse, ApiError> {
        let mut state = self.state();
        let microvm = find_microvm(&mut state, &input.microvm_identifier)?;
        let shell = microvm
            .ingress_network_connectors
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == "SHELL_INGRESS"));
        if !shell || microvm.state == MicrovmState::Terminated {
            return Err(ApiError::conflict(
                "microvm",
                &microvm.microvm_id,
                "a shell needs a live microvm with the SHELL_INGRESS connector",
            ));
        }
        let token = format!("fake-shell.{}.{}", microvm.microvm_id, random_hex(16));
        Ok(CreateMicrovmShellAuthTokenResponse {
            auth_token: [(PROXY_AUTH_HEADER.to_owned(), token)].into(),
        })
    }

    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: TagResourceRequest,
    ) -> Result<(), ApiError> {
        let mut state = self.state();
        let tags = state
            .tags
            .get_mut(&input.resource)
            .ok_or_else(|| ApiError::not_found("resource", &input.resource))?;
        tags.extend(input.tags);
        Ok(())
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: UntagResourceRequest,
    ) -> Result<(), ApiError> {
        let mut state = self.state();
        let tags = state
            .tags
            .get_mut(&input.resource)
            .ok_or_else(|| ApiError::not_found("resource", &input.resource))?;
        for key in &input.tag_keys {
            tags.remove(key);
        }
        Ok(())
    }

    async fn list_tags(
        &self,
        _ctx: &RequestContext,
        input: ListTagsRequest,
    ) -> Result<ListTagsResponse, ApiError> {
        let state = self.state();
        let tags = state
            .tags
            .get(&input.resource)
            .ok_or_else(|| ApiError::not_found("resource", &input.resource))?;
        Ok(ListTagsResponse {
            tags: Some(tags.clone()),
        })
    }
}
