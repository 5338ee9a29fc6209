//! The image pipeline `hearth serve` builds with: the control plane's
//! [`ImagePipeline`] seam over the full builder of `hearth image build`.
//!
//! A job's code artifact (a zip or a directory with a `Dockerfile` at its
//! root) is built by [`ImageBuilder::build_snapshot`]: FROM resolves through
//! the data directory's base-image store or a registry, RUN steps run in
//! build microVMs, and the app is booted on the managed base image (the
//! kernel and agent of the guest assets, which the `al2023-1` alias and
//! hearth's own base image ARNs both name), waited for (its `ready` hook or
//! its first EXPOSEd port) and snapshotted at the job's `snapshot_dir`, in
//! a guest of the job's size. Every build event becomes a line of the
//! build's log; the app and test microVMs the build starts are reported as
//! they start and stop, so that a restarted server can stop one that a
//! crash left behind.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_api::model::{Architecture, Capability, HookState, ImageConfig};
use hearth_builder::artifact::ArtifactSource;
use hearth_builder::events::{self, BuildEvent};
use hearth_builder::image::hooks::Hooks;
use hearth_builder::image::layout::Resources;
use hearth_builder::image::{
    BuiltSnapshot, ImageBuildRequest, ImageBuilder, SnapshotTarget, DEFAULT_MINIMUM_MEMORY_MIB,
};
use hearth_control::store::BuildSizes;
use hearth_control::{
    BuildFailure, BuildJob, BuildProgress, BuiltVersion, ContainerConfig, ImagePipeline,
};
use tokio::sync::mpsc;

/// Builds image versions with [`ImageBuilder`].
#[derive(Debug)]
pub struct BuilderPipeline {
    builder: ImageBuilder,
}

impl BuilderPipeline {
    /// A pipeline over `builder` (its data directory holds the base-image
    /// store, the step cache and the pinned managed bases).
    pub fn new(builder: ImageBuilder) -> Self {
        Self { builder }
    }
}

#[async_trait]
impl ImagePipeline for BuilderPipeline {
    async fn build(
        &self,
        job: BuildJob,
        progress: Arc<dyn BuildProgress>,
    ) -> Result<BuiltVersion, BuildFailure> {
        if job.architecture != Architecture::X86_64 {
            return Err(BuildFailure::new(format!(
                "this host builds and runs X86_64 guests only, not {}",
                job.architecture
            )));
        }
        let request = build_request(&job);
        let target = SnapshotTarget {
            snapshot_dir: job.snapshot_dir.clone(),
            scratch: job.work_dir.clone(),
            resources: Resources {
                minimum_memory_mib: request.minimum_memory_mib,
                memory_mib: job.guest.memory_mib,
                vcpus: job.guest.vcpus,
            },
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report(rx, progress));
        let result = self
            .builder
            .build_snapshot(&request, &target, Some(tx))
            .await;
        // The reporter ends once the builder has dropped every sender.
        let _ = reporter.await;

        let built = result.map_err(|error| BuildFailure::new(error.reason()))?;
        Ok(BuiltVersion {
            snapshot_dir: job.snapshot_dir,
            container: container(&built),
            sizes: BuildSizes {
                memory_bytes: built.sizes.memory_snapshot_bytes,
                disk_bytes: built.sizes.disk_bytes,
                code_bytes: built.sizes.code_bytes,
            },
        })
    }
}

/// Passes build events on: each as a log line, VM starts and stops also
/// as such.
async fn report(mut rx: mpsc::UnboundedReceiver<BuildEvent>, progress: Arc<dyn BuildProgress>) {
    while let Some(event) = rx.recv().await {
        match &event {
            BuildEvent::VmStarted { vm_id } => progress.vm_started(vm_id),
            BuildEvent::VmStopped { vm_id } => progress.vm_stopped(vm_id),
            _ => {}
        }
        progress.log(&events::render(&event));
    }
}

/// The builder's request for a job.
fn build_request(job: &BuildJob) -> ImageBuildRequest {
    let config = &job.config;
    let artifact = if job.artifact.is_dir() {
        ArtifactSource::Directory(job.artifact.clone())
    } else {
        ArtifactSource::Zip(job.artifact.clone())
    };
    let mut request = ImageBuildRequest::new(builder_name(&job.image_name), artifact);
    request.env = config
        .environment_variables
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    request.minimum_memory_mib = config
        .resources
        .iter()
        .flatten()
        .filter_map(|r| u32::try_from(r.minimum_memory_in_mib).ok())
        .max()
        .unwrap_or(DEFAULT_MINIMUM_MEMORY_MIB);
    request.all_capabilities = config
        .additional_os_capabilities
        .iter()
        .flatten()
        .any(|c| *c == Capability::All);
    request.hooks = hooks(config);
    request
}

/// The build hooks of a version's configuration (the others are the
/// control plane's to call).
fn hooks(config: &ImageConfig) -> Hooks {
    let mut hooks = Hooks::default();
    let Some(api) = &config.hooks else {
        return hooks;
    };
    hooks.port = api.port.and_then(|p| u16::try_from(p).ok());
    if let Some(image) = &api.microvm_image_hooks {
        hooks.ready.enabled = image.ready == Some(HookState::Enabled);
        hooks.validate.enabled = image.validate == Some(HookState::Enabled);
        if let Some(secs) = image.ready_timeout_in_seconds {
            hooks.ready.timeout_secs = u32::try_from(secs).unwrap_or(hooks.ready.timeout_secs);
        }
        if let Some(secs) = image.validate_timeout_in_seconds {
            hooks.validate.timeout_secs =
                u32::try_from(secs).unwrap_or(hooks.validate.timeout_secs);
        }
    }
    hooks
}

/// An image name the builder accepts (1 to 64 of `[A-Za-z0-9_-]`): the
/// builder names nothing on disk after it here, so other characters only
/// need to pass its check.
fn builder_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '-',
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        String::from("image")
    } else {
        cleaned
    }
}

/// The container the Dockerfile left, as the control plane records it.
fn container(built: &BuiltSnapshot) -> ContainerConfig {
    let config = &built.config;
    let mut exposed_ports: Vec<u16> = config
        .exposed_ports
        .iter()
        .filter_map(|p| p.strip_suffix("/tcp").unwrap_or(p).parse().ok())
        .collect();
    exposed_ports.sort_unstable();
    ContainerConfig {
        env: built.app.env.clone(),
        working_dir: built.app.cwd.clone(),
        entrypoint: config.entrypoint.clone(),
        cmd: config.cmd.clone(),
        exposed_ports,
        user: built.app.user.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hearth_api::model::{Hooks as ApiHooks, MicrovmImageHooks};

    #[test]
    fn build_hooks_come_from_the_image_hooks() {
        let config: ImageConfig = serde_json::from_value(serde_json::json!({
            "baseImageArn": "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1",
            "buildRoleArn": "arn:aws:iam::000000000000:role/build",
            "codeArtifact": {"uri": "s3://b/app.zip"},
        }))
        .unwrap();
        assert!(!hooks(&config).ready.enabled);

        let config = ImageConfig {
            hooks: Some(ApiHooks {
                port: Some(9000),
                microvm_hooks: None,
                microvm_image_hooks: Some(MicrovmImageHooks {
                    ready: Some(HookState::Enabled),
                    ready_timeout_in_seconds: Some(90),
                    validate: Some(HookState::Disabled),
                    validate_timeout_in_seconds: None,
                }),
            }),
            ..config
        };
        let hooks = hooks(&config);
        assert_eq!(hooks.port, Some(9000));
        assert!(hooks.ready.enabled);
        assert_eq!(hooks.ready.timeout_secs, 90);
        assert!(!hooks.validate.enabled);
    }

    #[test]
    fn names_the_builder_refuses_are_made_acceptable() {
        assert_eq!(builder_name("app_1-x"), "app_1-x");
        assert_eq!(builder_name("my.app"), "my-app");
        assert_eq!(builder_name(&"a".repeat(80)).len(), 64);
    }
}
