//! Builds: running a version's builds through the pipeline, recording each
//! step before and after it happens, and reading builds back.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use hearth_api::model::*;
use hearth_api::pagination::PageRequest;
use hearth_api::ApiError;

use super::{internal, Inner};
use crate::events;
use crate::pipeline::{BuildFailure, BuildJob, BuildProgress};
use crate::store::{BuildRow, ImageRow, StoreError, VersionRow};

impl Inner {
    /// Starts the builds of a version in a task of their own.
    pub(super) fn start_builds(self: &Arc<Self>, image_id: i64, version: u32) {
        let inner = self.clone();
        self.spawn_build(async move {
            if let Err(error) = inner.run_builds(image_id, version).await {
                tracing::error!(image_id, version, error = %error, "cannot record a build");
            }
        });
    }

    /// Runs a version's builds one after the other, then settles the
    /// version's and image's states.
    async fn run_builds(self: &Arc<Self>, image_id: i64, number: u32) -> Result<(), StoreError> {
        let _slot = self.build_slots.acquire().await;
        let (Some(image), Some(version)) = (
            self.store.image(image_id)?,
            self.store.version(image_id, number)?,
        ) else {
            return Ok(());
        };
        let now = Timestamp::now();
        self.store.set_version_state(
            image_id,
            number,
            MicrovmImageVersionState::InProgress,
            None,
            now,
        )?;

        let mut built = None;
        let mut failures = Vec::new();
        for build in self.store.builds(image_id, number)? {
            match self.run_build(&image, &version, &build).await? {
                Ok(snapshot) => built = built.or(Some(snapshot)),
                Err(failure) => failures.push(format!("{}: {failure}", build.architecture)),
            }
        }

        let now = Timestamp::now();
        let first = number == 1;
        match built {
            Some((snapshot, container)) => {
                self.store
                    .set_version_built(image_id, number, &snapshot, &container, now)?;
                if !failures.is_empty() {
                    let reason = failures.join("; ");
                    self.store.set_version_state(
                        image_id,
                        number,
                        MicrovmImageVersionState::Successful,
                        Some(&reason),
                        now,
                    )?;
                }
                let state = if first {
                    MicrovmImageState::Created
                } else {
                    MicrovmImageState::Updated
                };
                self.settle_image(image_id, state, now)?;
            }
            None => {
                let reason = failures.join("; ");
                self.store.set_version_state(
                    image_id,
                    number,
                    MicrovmImageVersionState::Failed,
                    Some(&reason),
                    now,
                )?;
                let state = if first {
                    MicrovmImageState::CreateFailed
                } else {
                    MicrovmImageState::UpdateFailed
                };
                self.settle_image(image_id, state, now)?;
            }
        }
        Ok(())
    }

    /// Moves an image to the outcome of a build, unless it was deleted
    /// meanwhile.
    fn settle_image(
        &self,
        image_id: i64,
        state: MicrovmImageState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let live = self.store.image(image_id)?.is_some_and(|i| {
            !matches!(
                i.state,
                MicrovmImageState::Deleted | MicrovmImageState::Deleting
            )
        });
        if live {
            self.store.set_image_state(image_id, state, now)?;
        }
        Ok(())
    }

    /// Runs one build; the outer error is the store's, the inner the
    /// build's.
    async fn run_build(
        self: &Arc<Self>,
        image: &ImageRow,
        version: &VersionRow,
        build: &BuildRow,
    ) -> Result<Result<(PathBuf, crate::pipeline::ContainerConfig), String>, StoreError> {
        let id = &build.build_id;
        self.store
            .set_build_state(id, BuildState::InProgress, None, Timestamp::now())?;
        let version_dir = self.config.version_dir(image.image_id, version.version);
        let work_dir = self.config.build_dir(id);
        let snapshot_dir = version_dir.join(format!("snapshot-{id}"));
        let progress = Arc::new(BuildLog {
            inner: self.clone(),
            build_id: id.clone(),
            path: version_dir.join(format!("{id}.log")),
        });

        let outcome = self
            .build_in(
                image,
                version,
                build,
                &work_dir,
                &snapshot_dir,
                progress.clone(),
            )
            .await;
        let _ = tokio::fs::remove_dir_all(&work_dir).await;

        let now = Timestamp::now();
        match outcome {
            Ok(built) => {
                self.store.set_build_sizes(id, built.sizes)?;
                self.store
                    .set_build_state(id, BuildState::Successful, None, now)?;
                progress.log("build successful");
                events::build(&image.name, version.version, id, None);
                Ok(Ok((built.snapshot_dir, built.container)))
            }
            Err(failure) => {
                let _ = tokio::fs::remove_dir_all(&snapshot_dir).await;
                let reason = failure.state_reason;
                self.store
                    .set_build_state(id, BuildState::Failed, Some(&reason), now)?;
                progress.log(&format!("build failed: {reason}"));
                events::build(&image.name, version.version, id, Some(&reason));
                Ok(Err(reason))
            }
        }
    }

    /// Prepares a build's job and hands it to the pipeline.
    async fn build_in(
        &self,
        image: &ImageRow,
        version: &VersionRow,
        build: &BuildRow,
        work_dir: &std::path::Path,
        snapshot_dir: &std::path::Path,
        progress: Arc<BuildLog>,
    ) -> Result<crate::pipeline::BuiltVersion, BuildFailure> {
        if !self.config.assets_present() {
            return Err(BuildFailure::new(format!(
                "the guest assets are missing from {} (run scripts/setup.sh)",
                self.config.assets_dir.display()
            )));
        }
        let CodeArtifact::Uri(uri) = &version.config.code_artifact;
        let artifact = self
            .artifacts
            .resolve(uri)
            .map_err(|e| BuildFailure::new(e.to_string()))?;
        let scratch = |e: std::io::Error| BuildFailure::new(format!("no scratch space: {e}"));
        tokio::fs::create_dir_all(work_dir).await.map_err(scratch)?;
        if let Some(parent) = snapshot_dir.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(scratch)?;
        }

        let job = BuildJob {
            build_id: build.build_id.clone(),
            image_name: image.name.clone(),
            image_arn: image.arn.clone(),
            version: version.version,
            config: version.config.clone(),
            artifact,
            architecture: build.architecture,
            work_dir: work_dir.to_owned(),
            snapshot_dir: snapshot_dir.to_owned(),
            guest: version.guest,
            vm_host: self.config.vm_host(),
        };
        progress.log(&format!(
            "building {} version {} for {} ({} MiB, {} vCPU)",
            image.name, version.version, build.architecture, job.guest.memory_mib, job.guest.vcpus
        ));
        self.pipeline.build(job, progress).await
    }

    /// `GetMicrovmImageBuild`.
    pub(super) fn get_build(
        &self,
        input: GetMicrovmImageBuildInput,
    ) -> Result<GetMicrovmImageBuildOutput, ApiError> {
        let image = self.find_image(&input.image_identifier)?;
        let version = self.find_version(&image, &input.image_version)?;
        let build = self
            .store
            .builds(image.image_id, version.version)
            .map_err(internal)?
            .into_iter()
            .find(|b| b.build_id == input.build_id)
            .ok_or_else(|| ApiError::not_found("microvm-image-build", &input.build_id))?;
        let summary = build_summary(&image, &build);
        Ok(GetMicrovmImageBuildOutput {
            image_arn: summary.image_arn,
            image_version: summary.image_version,
            build_id: summary.build_id,
            build_state: summary.build_state,
            architecture: summary.architecture,
            chipset: summary.chipset,
            chipset_generation: summary.chipset_generation,
            state_reason: summary.state_reason,
            created_at: summary.created_at,
            snapshot_build: build.sizes.map(|s| SnapshotBuild {
                memory_snapshot_size_in_bytes: Some(s.memory_bytes as i64),
                code_install_size_in_bytes: Some(s.code_bytes as i64),
                disk_snapshot_size_in_bytes: Some(s.disk_bytes as i64),
            }),
        })
    }

    /// `ListMicrovmImageBuilds`, by build id.
    pub(super) fn list_builds(
        &self,
        input: ListMicrovmImageBuildsInput,
    ) -> Result<ListMicrovmImageBuildsOutput, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let image = self.find_image(&input.image_identifier)?;
        let version = self.find_version(&image, &input.image_version)?;
        let builds = self
            .store
            .builds(image.image_id, version.version)
            .map_err(internal)?;
        let items = builds
            .iter()
            .filter(|b| {
                input.architecture.is_none_or(|a| a == b.architecture)
                    && input.chipset.is_none_or(|c| c == b.chipset)
                    && input
                        .chipset_generation
                        .as_ref()
                        .is_none_or(|g| *g == b.chipset_generation)
            })
            .map(|b| build_summary(&image, b));
        let page = page.apply(items, |b| b.build_id.clone());
        Ok(ListMicrovmImageBuildsOutput {
            next_token: page.next_token,
            items: page.items,
        })
    }
}

/// A build as the API lists it.
fn build_summary(image: &ImageRow, build: &BuildRow) -> MicrovmImageBuildSummary {
    MicrovmImageBuildSummary {
        image_arn: image.arn.clone(),
        image_version: build.version.to_string(),
        build_id: build.build_id.clone(),
        build_state: build.state,
        architecture: build.architecture,
        chipset: build.chipset,
        chipset_generation: build.chipset_generation.clone(),
        state_reason: build.state_reason.clone(),
        created_at: build.created_at,
    }
}

/// A build's progress: its log file, its VM in the database, and tracing.
struct BuildLog {
    inner: Arc<Inner>,
    build_id: String,
    path: PathBuf,
}

impl BuildProgress for BuildLog {
    fn log(&self, line: &str) {
        tracing::info!(build_id = %self.build_id, "{line}");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = written {
            tracing::warn!(path = %self.path.display(), error = %error, "cannot write build log");
        }
    }

    fn vm_started(&self, vm_id: &str) {
        if let Err(error) = self.inner.store.set_build_vm(&self.build_id, Some(vm_id)) {
            tracing::error!(build_id = %self.build_id, error = %error, "cannot record build vm");
        }
    }

    fn vm_stopped(&self, _vm_id: &str) {
        if let Err(error) = self.inner.store.set_build_vm(&self.build_id, None) {
            tracing::error!(build_id = %self.build_id, error = %error, "cannot record build vm");
        }
    }
}
