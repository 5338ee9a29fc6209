//! Images and their versions: create, update, read, list, delete, and the
//! managed base images they build on.

use std::sync::Arc;

use hearth_api::model::*;
use hearth_api::pagination::PageRequest;
use hearth_api::ApiError;

use super::{internal, Inner};
use crate::base_images::BASE_VERSION;
use crate::capacity::GuestSize;
use crate::ids::new_build_id;
use crate::store::{ImageRow, NewBuild, VersionRow};

impl Inner {
    /// `CreateMicrovmImage`: records the image, its first version and its
    /// builds, and starts building.
    pub(super) fn create_image(
        self: &Arc<Self>,
        input: CreateMicrovmImageRequest,
    ) -> Result<CreateMicrovmImageResponse, ApiError> {
        self.check_base_image(&input.config)?;
        let now = Timestamp::now();
        let arn = self.arns.image(&input.name);
        let image = ImageRow {
            image_id: 0,
            name: input.name.clone(),
            arn: arn.clone(),
            state: MicrovmImageState::Creating,
            created_at: now,
            updated_at: None,
        };
        let version = self.new_version(&input.config, now);
        let builds = new_builds(&input.config);
        let tags = input.tags.clone().unwrap_or_default();

        let image_id = self
            .store
            .create_image(&image, &version, &builds, &tags)
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::conflict(
                    "microvm-image",
                    &arn,
                    format!("image {} already exists", input.name),
                )
            })?;
        tracing::info!(image = %input.name, version = 1, "image created; building");
        self.start_builds(image_id, 1);

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

    /// `UpdateMicrovmImage`: records a new version and starts building it.
    pub(super) fn update_image(
        self: &Arc<Self>,
        input: UpdateMicrovmImageRequest,
    ) -> Result<UpdateMicrovmImageResponse, ApiError> {
        let image = self.find_image(&input.image_identifier)?;
        self.check_base_image(&input.config)?;
        if image.state == MicrovmImageState::Deleting {
            return Err(ApiError::conflict(
                "microvm-image",
                &image.arn,
                "image is being deleted",
            ));
        }

        let now = Timestamp::now();
        let version = self.new_version(&input.config, now);
        let builds = new_builds(&input.config);
        let number = self
            .store
            .add_version(
                image.image_id,
                &version,
                &builds,
                MicrovmImageState::Updating,
            )
            .map_err(internal)?;
        tracing::info!(image = %image.name, version = number, "image updated; building");
        self.start_builds(image.image_id, number);

        let versions = self.store.versions(image.image_id).map_err(internal)?;
        Ok(UpdateMicrovmImageResponse {
            image_arn: image.arn,
            name: image.name,
            state: MicrovmImageState::Updating,
            latest_active_image_version: latest_active(&versions),
            latest_failed_image_version: latest_failed(&versions),
            created_at: image.created_at,
            updated_at: now,
            image_version: number.to_string(),
            config: input.config,
        })
    }

    /// `GetMicrovmImage`.
    pub(super) fn get_image(&self, identifier: &str) -> Result<GetMicrovmImageOutput, ApiError> {
        let image = self.find_image(identifier)?;
        let versions = self.store.versions(image.image_id).map_err(internal)?;
        let tags = self.store.tags(&image.arn).map_err(internal)?;
        Ok(GetMicrovmImageOutput {
            latest_active_image_version: latest_active(&versions),
            latest_failed_image_version: latest_failed(&versions),
            image_arn: image.arn,
            name: image.name,
            state: image.state,
            created_at: image.created_at,
            tags: Some(tags),
            updated_at: image.updated_at,
        })
    }

    /// `ListMicrovmImages`, by name.
    pub(super) fn list_images(
        &self,
        input: ListMicrovmImagesRequest,
    ) -> Result<ListMicrovmImagesResponse, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let mut items = Vec::new();
        for image in self.store.live_images().map_err(internal)? {
            let wanted = input
                .name_filter
                .as_deref()
                .is_none_or(|f| image.name.contains(f));
            if !wanted {
                continue;
            }
            let versions = self.store.versions(image.image_id).map_err(internal)?;
            items.push(MicrovmImageSummary {
                latest_active_image_version: latest_active(&versions),
                latest_failed_image_version: latest_failed(&versions),
                image_arn: image.arn,
                name: image.name,
                state: image.state,
                created_at: image.created_at,
            });
        }
        let page = page.apply(items, |i| i.name.clone());
        Ok(ListMicrovmImagesResponse {
            next_token: page.next_token,
            items: page.items,
        })
    }

    /// `DeleteMicrovmImage`: refused while microVMs of the image live or a
    /// build runs; frees every version's files; deleting a deleted image
    /// succeeds.
    pub(super) async fn delete_image(
        &self,
        input: DeleteMicrovmImageInput,
    ) -> Result<DeleteMicrovmImageOutput, ApiError> {
        let identifier = &input.image_identifier;
        let name = self
            .arns
            .image_name(identifier)
            .ok_or_else(|| ApiError::not_found("microvm-image", identifier))?;
        let Some(image) = self.store.live_image(name).map_err(internal)? else {
            let deleted = self.store.newest_image(name).map_err(internal)?;
            return match deleted {
                Some(_) => Ok(DeleteMicrovmImageOutput {
                    image_identifier: input.image_identifier,
                    state: MicrovmImageState::Deleted,
                }),
                None => Err(ApiError::not_found("microvm-image", identifier)),
            };
        };

        if self
            .store
            .live_microvms_of(image.image_id, None)
            .map_err(internal)?
            > 0
        {
            return Err(ApiError::conflict(
                "microvm-image",
                &image.arn,
                "image has microvms that are not terminated",
            ));
        }
        let versions = self.store.versions(image.image_id).map_err(internal)?;
        if versions.iter().any(building) {
            return Err(ApiError::conflict(
                "microvm-image",
                &image.arn,
                "image has a version that is still building",
            ));
        }

        let now = Timestamp::now();
        self.store
            .set_image_state(image.image_id, MicrovmImageState::Deleting, now)
            .map_err(internal)?;
        for version in &versions {
            self.remove_version_files(version).await;
            self.store
                .set_version_state(
                    image.image_id,
                    version.version,
                    MicrovmImageVersionState::Deleted,
                    None,
                    now,
                )
                .map_err(internal)?;
        }
        self.store
            .set_image_state(image.image_id, MicrovmImageState::Deleted, now)
            .map_err(internal)?;
        self.store.remove_tags(&image.arn, None).map_err(internal)?;
        // The versions' directories are gone; their parent goes too.
        if let Some(image_dir) = self.config.version_dir(image.image_id, 0).parent() {
            let _ = tokio::fs::remove_dir_all(image_dir).await;
        }
        tracing::info!(image = %image.name, "image deleted");
        Ok(DeleteMicrovmImageOutput {
            image_identifier: input.image_identifier,
            state: MicrovmImageState::Deleted,
        })
    }

    /// `GetMicrovmImageVersion`.
    pub(super) fn get_version(
        &self,
        identifier: &str,
        version: &str,
    ) -> Result<MicrovmImageVersionSummary, ApiError> {
        let image = self.find_image(identifier)?;
        let row = self.find_version(&image, version)?;
        Ok(version_summary(&image, &row))
    }

    /// `UpdateMicrovmImageVersion`: ACTIVE or INACTIVE.
    pub(super) fn update_version(
        &self,
        input: UpdateMicrovmImageVersionRequest,
    ) -> Result<MicrovmImageVersionSummary, ApiError> {
        let image = self.find_image(&input.image_identifier)?;
        let row = self.find_version(&image, &input.image_version)?;
        self.store
            .set_version_status(image.image_id, row.version, input.status, Timestamp::now())
            .map_err(internal)?;
        let row = self.find_version(&image, &input.image_version)?;
        Ok(version_summary(&image, &row))
    }

    /// `DeleteMicrovmImageVersion`: refused while microVMs of the version
    /// live or it builds; frees its files; deleting it again succeeds.
    pub(super) async fn delete_version(
        &self,
        input: DeleteMicrovmImageVersionInput,
    ) -> Result<DeleteMicrovmImageVersionOutput, ApiError> {
        let image = self.find_image(&input.image_identifier)?;
        let missing = || version_not_found(&image, &input.image_version);
        let number: u32 = input.image_version.parse().map_err(|_| missing())?;
        let row = self
            .store
            .version(image.image_id, number)
            .map_err(internal)?
            .ok_or_else(missing)?;
        let done = |state| DeleteMicrovmImageVersionOutput {
            image_identifier: input.image_identifier.clone(),
            image_version: input.image_version.clone(),
            state,
        };
        if row.state == MicrovmImageVersionState::Deleted {
            return Ok(done(MicrovmImageVersionState::Deleted));
        }

        let conflict = |message: &str| {
            ApiError::conflict(
                "microvm-image-version",
                &format!("{}:{number}", image.arn),
                message,
            )
        };
        if building(&row) {
            return Err(conflict("version is still building"));
        }
        let live = self.store.live_microvms_of(image.image_id, Some(number));
        if live.map_err(internal)? > 0 {
            return Err(conflict("version has microvms that are not terminated"));
        }

        let now = Timestamp::now();
        self.store
            .set_version_state(
                image.image_id,
                number,
                MicrovmImageVersionState::Deleting,
                None,
                now,
            )
            .map_err(internal)?;
        self.remove_version_files(&row).await;
        self.store
            .set_version_state(
                image.image_id,
                number,
                MicrovmImageVersionState::Deleted,
                None,
                now,
            )
            .map_err(internal)?;
        tracing::info!(image = %image.name, version = number, "image version deleted");
        Ok(done(MicrovmImageVersionState::Deleted))
    }

    /// `ListMicrovmImageVersions`, oldest first.
    pub(super) fn list_versions(
        &self,
        input: ListMicrovmImageVersionsInput,
    ) -> Result<ListMicrovmImageVersionsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let image = self.find_image(&input.image_identifier)?;
        let versions = self.store.versions(image.image_id).map_err(internal)?;
        let items = versions
            .iter()
            .filter(|v| v.state != MicrovmImageVersionState::Deleted)
            .map(|v| version_summary(&image, v));
        let page = page.apply(items, |v| {
            format!("{:010}", v.image_version.parse::<u32>().unwrap_or(0))
        });
        Ok(ListMicrovmImageVersionsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    /// `ListManagedMicrovmImages`: hearth's own base image.
    pub(super) fn list_base_images(
        &self,
        input: ListManagedMicrovmImagesInput,
    ) -> Result<ListManagedMicrovmImagesOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let base = ManagedMicrovmImageSummary {
            image_arn: self.arns.base_image(&self.base.name),
            created_at: self.base.created_at,
            updated_at: None,
        };
        let page = page.apply([base], |b| b.image_arn.clone());
        Ok(ListManagedMicrovmImagesOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    /// `ListManagedMicrovmImageVersions`: the base image's one version.
    pub(super) fn list_base_image_versions(
        &self,
        input: ListManagedMicrovmImageVersionsInput,
    ) -> Result<ListManagedMicrovmImageVersionsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let known = self
            .arns
            .base_image_name(&input.image_identifier)
            .is_some_and(|name| self.base.answers_to(name));
        if !known {
            return Err(ApiError::not_found(
                "managed-microvm-image",
                &input.image_identifier,
            ));
        }
        let version = ManagedMicrovmImageVersion {
            image_arn: self.arns.base_image(&self.base.name),
            image_version: BASE_VERSION.to_owned(),
            status: Some(ManagedMicrovmImageVersionStatus::Available),
            supported_cpu_configurations: Some(vec![CpuConfiguration {
                architecture: Architecture::X86_64,
            }]),
            created_at: self.base.created_at,
            updated_at: None,
        };
        let page = page.apply([version], |v| v.image_version.clone());
        Ok(ListManagedMicrovmImageVersionsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }

    /// The live image an identifier names.
    pub(super) fn find_image(&self, identifier: &str) -> Result<ImageRow, ApiError> {
        let not_found = || ApiError::not_found("microvm-image", identifier);
        let name = self.arns.image_name(identifier).ok_or_else(not_found)?;
        self.store
            .live_image(name)
            .map_err(internal)?
            .ok_or_else(not_found)
    }

    /// A version of an image that is not deleted.
    pub(super) fn find_version(
        &self,
        image: &ImageRow,
        version: &str,
    ) -> Result<VersionRow, ApiError> {
        let missing = || version_not_found(image, version);
        let number: u32 = version.parse().map_err(|_| missing())?;
        self.store
            .version(image.image_id, number)
            .map_err(internal)?
            .filter(|v| v.state != MicrovmImageVersionState::Deleted)
            .ok_or_else(missing)
    }

    /// The base image a configuration names must be hearth's (or its alias)
    /// and its version one that exists.
    fn check_base_image(&self, config: &ImageConfig) -> Result<(), ApiError> {
        let arn = &config.base_image_arn;
        let known = self
            .arns
            .base_image_name(arn)
            .is_some_and(|name| self.base.answers_to(name));
        if !known {
            return Err(ApiError::not_found("managed-microvm-image", arn));
        }
        match config.base_image_version.as_deref() {
            None | Some(BASE_VERSION) => Ok(()),
            Some(other) => Err(ApiError::not_found(
                "managed-microvm-image-version",
                &format!("{arn}:{other}"),
            )),
        }
    }

    /// A new version's record, before it is numbered.
    fn new_version(&self, config: &ImageConfig, now: Timestamp) -> VersionRow {
        let minimum = config
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .map(|r| r.minimum_memory_in_mib);
        VersionRow {
            image_id: 0,
            version: 0,
            state: MicrovmImageVersionState::Pending,
            status: MicrovmImageVersionStatus::Active,
            state_reason: None,
            config: config.clone(),
            snapshot_dir: None,
            guest: GuestSize::for_class(minimum, self.config.guest_memory_cap_mib),
            container: None,
            created_at: now,
            updated_at: None,
        }
    }

    /// Frees a version's files: its snapshot and logs.
    async fn remove_version_files(&self, version: &VersionRow) {
        let dir = self.config.version_dir(version.image_id, version.version);
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %dir.display(), error = %error, "cannot free version files");
            }
        }
    }
}

/// One build per requested architecture (X86_64 when none is named).
fn new_builds(config: &ImageConfig) -> Vec<NewBuild> {
    let mut architectures: Vec<Architecture> = config
        .cpu_configurations
        .iter()
        .flatten()
        .map(|c| c.architecture)
        .collect();
    if architectures.is_empty() {
        architectures.push(Architecture::X86_64);
    }
    architectures.sort();
    architectures.dedup();
    architectures
        .into_iter()
        .map(|architecture| NewBuild {
            build_id: new_build_id(),
            architecture,
        })
        .collect()
}

/// Whether a version's build has not finished.
fn building(version: &VersionRow) -> bool {
    matches!(
        version.state,
        MicrovmImageVersionState::Pending | MicrovmImageVersionState::InProgress
    )
}

/// The newest version that may launch microVMs.
pub(super) fn latest_active(versions: &[VersionRow]) -> Option<String> {
    versions
        .iter()
        .rev()
        .find(|v| {
            v.status == MicrovmImageVersionStatus::Active
                && v.state == MicrovmImageVersionState::Successful
        })
        .map(|v| v.version.to_string())
}

/// The newest version whose build failed.
fn latest_failed(versions: &[VersionRow]) -> Option<String> {
    versions
        .iter()
        .rev()
        .find(|v| v.state == MicrovmImageVersionState::Failed)
        .map(|v| v.version.to_string())
}

/// A version as the API shows it.
fn version_summary(image: &ImageRow, version: &VersionRow) -> MicrovmImageVersionSummary {
    MicrovmImageVersionSummary {
        image_arn: image.arn.clone(),
        image_version: version.version.to_string(),
        state: version.state,
        status: version.status,
        created_at: version.created_at,
        updated_at: version.updated_at,
        state_reason: version.state_reason.clone(),
        tags: None,
        config: version.config.clone(),
    }
}

/// The refusal for a version that does not exist.
pub(super) fn version_not_found(image: &ImageRow, version: &str) -> ApiError {
    ApiError::not_found("microvm-image-version", &format!("{}:{version}", image.arn))
}
