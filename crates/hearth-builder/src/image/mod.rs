//! Image builds, end to end: a code artifact and its Dockerfile become a
//! microVM snapshot, kept as a numbered version of a named image.
//!
//! [`ImageBuilder::build`] runs the phases in order:
//!
//! 1. **artifact**: the directory, zip or `s3://` object is unpacked (safely)
//!    into the build's scratch directory;
//! 2. **Dockerfile**: it is parsed and built by [`crate::plan`], base images
//!    from the store or a registry, RUN steps in build microVMs
//!    ([`crate::vm_runner`]), every file-system step through the step cache;
//! 3. **snapshot**: the root filesystem becomes a sparse 8 GiB ext4 image,
//!    booted with the image's app on the current managed base image (pinned
//!    under `bases/`); once the app is ready (see [`app`]) its memory and
//!    disk are snapshotted into the new version;
//! 4. **validate** (when the `validate` hook is enabled): a test microVM is
//!    restored from the snapshot and its `validate` hook must answer 200.
//!
//! Everything is written into `images/<name>/.staging-<build id>/` and
//! renamed into `images/<name>/<version>/` at the end (see [`layout`]). A
//! failure removes the staging, the scratch and every VM, and leaves the
//! step cache with the steps that completed.
//!
//! Limitation: a build process killed outright (SIGKILL) leaves its
//! `.staging-*` and `builds/<id>` directories behind; listings skip them, but
//! nothing reclaims them yet.

pub mod app;
pub mod base;
pub mod hooks;
pub mod layout;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_protocol::AppSpec;
use hearth_shim::launch::Host;
use tokio::sync::mpsc;

use crate::artifact::{ArtifactError, ArtifactFetcher, ArtifactSource, ExtractLimits, S3Settings};
use crate::cache::{self, StepCache};
use crate::config::ImageConfig;
use crate::dockerfile::{Dockerfile, DockerfileError};
use crate::events::{self, BuildEvent, Phase};
use crate::image::app::{AppError, Readiness};
use crate::image::base::BaseError;
use crate::image::hooks::{Hook, HookError, Hooks};
use crate::image::layout::{
    BaseRecord, Durations, ImageLayout, ImageRecord, Resources, Sizes, StepRecord,
};
use crate::oci::{Puller, RegistryConfig};
use crate::plan::{BuildError, BuildRequest, Builder};
use crate::store::{ImageStore, StoreError};
use crate::vm::BuildVmConfig;
use crate::vm_runner::VmRunner;

/// The port a build waits on when the image exposes none (without a
/// `ready` hook, a build waits on the lowest EXPOSEd TCP port).
pub const DEFAULT_APP_PORT: u16 = 8080;

/// `minimumMemoryInMiB` when a request gives none.
pub const DEFAULT_MINIMUM_MEMORY_MIB: u32 = 2048;

/// The least `minimumMemoryInMiB` accepted.
pub const MIN_MEMORY_MIB: u32 = 128;

/// Why an image build failed. [`ImageBuildError::reason`] is the message
/// with its causes, for a build's state reason.
#[derive(Debug, thiserror::Error)]
pub enum ImageBuildError {
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The hooks are invalid.
    #[error("invalid hooks")]
    Hooks(#[from] HookError),
    /// The code artifact could not be had.
    #[error("code artifact")]
    Artifact(#[from] ArtifactError),
    /// The Dockerfile does not parse.
    #[error("Dockerfile")]
    Dockerfile(#[from] DockerfileError),
    /// A Dockerfile step failed; the message names its line.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The managed base image is unusable.
    #[error("base image")]
    Base(#[from] BaseError),
    /// The app microVM failed.
    #[error("snapshot")]
    Snapshot(#[source] AppError),
    /// The validation failed.
    #[error("validation")]
    Validate(#[source] AppError),
    /// The store or cache could not be opened.
    #[error("base image store")]
    Store(#[from] StoreError),
    /// The step cache could not be opened.
    #[error("build cache")]
    Cache(#[from] cache::CacheError),
    /// A file-system failure.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

impl ImageBuildError {
    /// The message with every cause after it.
    pub fn reason(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageBuildError + '_ {
    move |source| ImageBuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageBuildRequest {
    /// The image's name: 1 to 64 of `[a-zA-Z0-9_-]`.
    pub name: String,
    /// Where the code artifact is.
    pub artifact: ArtifactSource,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Environment variables for the app, over the image's ENV.
    pub env: Vec<(String, String)>,
    /// The lifecycle hooks.
    pub hooks: Hooks,
    /// `minimumMemoryInMiB`: the guest gets four times as much.
    pub minimum_memory_mib: u32,
    /// Run every step, ignoring the cache.
    pub no_cache: bool,
    /// `additionalOsCapabilities: ["ALL"]`: the app keeps every capability
    /// instead of Docker's default set.
    pub all_capabilities: bool,
}

impl ImageBuildRequest {
    /// A request with default hooks, memory and no build arguments.
    pub fn new(name: impl Into<String>, artifact: ArtifactSource) -> ImageBuildRequest {
        ImageBuildRequest {
            name: name.into(),
            artifact,
            build_args: BTreeMap::new(),
            env: Vec::new(),
            hooks: Hooks::default(),
            minimum_memory_mib: DEFAULT_MINIMUM_MEMORY_MIB,
            no_cache: false,
            all_capabilities: false,
        }
    }

    fn check(&self) -> Result<(), ImageBuildError> {
        if !layout::valid_name(&self.name) {
            return Err(ImageBuildError::Invalid {
                field: "name",
                reason: format!(
                    "{:?} is not 1 to 64 letters, digits, '-' and '_'",
                    self.name
                ),
            });
        }
        if self.minimum_memory_mib < MIN_MEMORY_MIB {
            return Err(ImageBuildError::Invalid {
                field: "minimum memory",
                reason: format!(
                    "{} MiB is below the least of {MIN_MEMORY_MIB} MiB",
                    self.minimum_memory_mib
                ),
            });
        }
        self.hooks.check()?;
        Ok(())
    }
}

/// A built image version.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Its directory.
    pub dir: PathBuf,
    /// Its record (image.json).
    pub record: ImageRecord,
}

/// The size of the VMs that run RUN steps.
#[derive(Debug, Clone, Copy)]
pub struct BuildVmSize {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

impl Default for BuildVmSize {
    fn default() -> Self {
        BuildVmSize {
            vcpus: 2,
            memory_mib: 1024,
        }
    }
}

/// Builds images on this machine.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    /// The data directory's layout.
    pub layout: ImageLayout,
    /// The guest assets: the current managed base image.
    pub assets: PathBuf,
    /// The `hearth` binary, which runs the app microVMs' shims.
    pub exe: PathBuf,
    /// Registry credentials for FROM lines that name a registry.
    pub registry: RegistryConfig,
    /// The S3-compatible endpoint for `s3://` artifacts.
    pub s3: Option<S3Settings>,
    /// Caps on what a code artifact may unpack to.
    pub artifact_limits: ExtractLimits,
    /// The size of build VMs.
    pub build_vm: BuildVmSize,
    /// The step cache's size cap in bytes.
    pub cache_max_bytes: u64,
}

impl ImageBuilder {
    /// A builder with default settings.
    pub fn new(
        data: impl Into<PathBuf>,
        assets: impl Into<PathBuf>,
        exe: impl Into<PathBuf>,
    ) -> Self {
        ImageBuilder {
            layout: ImageLayout::new(data),
            assets: assets.into(),
            exe: exe.into(),
            registry: RegistryConfig::default(),
            s3: None,
            artifact_limits: ExtractLimits::default(),
            build_vm: BuildVmSize::default(),
            cache_max_bytes: cache::DEFAULT_MAX_BYTES,
        }
    }

    /// Runs a build; progress goes to `events` as it happens.
    ///
    /// # Errors
    ///
    /// [`ImageBuildError`]; nothing but the step cache is left behind.
    pub async fn build(
        &self,
        request: &ImageBuildRequest,
        events: Option<mpsc::UnboundedSender<BuildEvent>>,
    ) -> Result<BuiltImage, ImageBuildError> {
        request.check()?;
        let build_id = format!("b-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let image_dir = self.layout.image(&request.name);
        let staging = image_dir.join(format!(".staging-{build_id}"));
        let scratch = self.layout.builds().join(&build_id);
        for dir in [&staging, &scratch] {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }

        let (log, logger) = BuildLog::start(Some(&staging.join("build.log")), events)?;
        let snapshot_dir = staging.join("snapshot");
        let run = Run {
            builder: self,
            request,
            build_id: &build_id,
            scratch: &scratch,
            snapshot_dir: &snapshot_dir,
            resources: Resources::for_minimum(request.minimum_memory_mib),
            events: log,
        };
        let result = match run.execute().await {
            Ok(record) => run.commit(&staging, record),
            Err(error) => Err(error),
        };
        // The log is complete once every sender is gone.
        drop(run);
        let _ = logger.await;

        let _ = std::fs::remove_dir_all(&scratch);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            let _ = std::fs::remove_dir(&image_dir);
        }
        result
    }

    /// Runs a build whose snapshot goes to `target.snapshot_dir` rather than
    /// into a version of this builder's layout, with a guest of
    /// `target.resources`: the build a control plane that keeps its own
    /// records asks for. Progress goes to `events` only.
    ///
    /// # Errors
    ///
    /// [`ImageBuildError`]; nothing is left at `target.snapshot_dir` and no
    /// VM runs afterwards.
    pub async fn build_snapshot(
        &self,
        request: &ImageBuildRequest,
        target: &SnapshotTarget,
        events: Option<mpsc::UnboundedSender<BuildEvent>>,
    ) -> Result<BuiltSnapshot, ImageBuildError> {
        request.check()?;
        let build_id = format!("b-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        std::fs::create_dir_all(&target.scratch).map_err(io_error(&target.scratch))?;

        let (log, logger) = BuildLog::start(None, events)?;
        let run = Run {
            builder: self,
            request,
            build_id: &build_id,
            scratch: &target.scratch,
            snapshot_dir: &target.snapshot_dir,
            resources: target.resources,
            events: log,
        };
        let result = run.execute().await;
        drop(run);
        let _ = logger.await;

        if result.is_err() {
            let _ = std::fs::remove_dir_all(&target.snapshot_dir);
        }
        result.map(|record| BuiltSnapshot {
            config: record.config,
            app: record.app,
            sizes: record.sizes,
            steps: record.steps,
        })
    }
}

/// Where [`ImageBuilder::build_snapshot`] works and what guest it snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    /// Where the snapshot directory goes; it must not exist.
    pub snapshot_dir: PathBuf,
    /// The build's scratch directory (keep it short: build VMs' sockets
    /// live under it).
    pub scratch: PathBuf,
    /// The guest the snapshot is taken of.
    pub resources: Resources,
}

/// What [`ImageBuilder::build_snapshot`] made, beside the snapshot.
#[derive(Debug, Clone)]
pub struct BuiltSnapshot {
    /// The container configuration the Dockerfile left.
    pub config: ImageConfig,
    /// The app as the agent started it.
    pub app: AppSpec,
    /// Memory, disk and code sizes.
    pub sizes: Sizes,
    /// The Dockerfile's steps.
    pub steps: Vec<StepRecord>,
}

/// Sends a build's events, when anyone listens.
#[derive(Debug, Clone, Default)]
pub struct Emitter {
    tx: Option<mpsc::UnboundedSender<BuildEvent>>,
}

impl Emitter {
    /// Sends one event.
    pub fn send(&self, event: BuildEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }

    /// Sends a note.
    pub fn note(&self, message: String) {
        self.send(BuildEvent::Note { message });
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<BuildEvent>> {
        self.tx.clone()
    }
}

/// Writes every event to the build log and passes it on.
struct BuildLog;

impl BuildLog {
    fn start(
        path: Option<&Path>,
        forward: Option<mpsc::UnboundedSender<BuildEvent>>,
    ) -> Result<(Emitter, tokio::task::JoinHandle<()>), ImageBuildError> {
        let file = match path {
            Some(path) => Some(std::fs::File::create(path).map_err(io_error(path))?),
            None => None,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<BuildEvent>();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = file.map(std::io::BufWriter::new);
            while let Some(event) = rx.blocking_recv() {
                if let Some(out) = &mut out {
                    let secs = started.elapsed().as_secs_f64();
                    let _ = writeln!(out, "[{secs:7.1}s] {}", events::render(&event));
                }
                if let Some(forward) = &forward {
                    let _ = forward.send(event);
                }
            }
            if let Some(mut out) = out {
                let _ = out.flush();
            }
        });
        Ok((Emitter { tx: Some(tx) }, task))
    }
}

/// One build in progress.
struct Run<'a> {
    builder: &'a ImageBuilder,
    request: &'a ImageBuildRequest,
    build_id: &'a str,
    scratch: &'a Path,
    snapshot_dir: &'a Path,
    resources: Resources,
    events: Emitter,
}

impl Run<'_> {
    /// Builds the snapshot and returns the version's record, its number
    /// not yet given.
    async fn execute(&self) -> Result<ImageRecord, ImageBuildError> {
        let started = Instant::now();
        let resources = self.resources;
        // The base is pinned first: build VMs and the app VM boot the same one.
        let base = base::pin(&self.builder.assets, &self.builder.layout.bases())?;
        self.events.note(format!("managed base image {}", base.id));

        let phase = self.phase(Phase::Artifact);
        let context = self.scratch.join("context");
        let fetcher = ArtifactFetcher {
            s3: self.builder.s3.clone(),
            limits: self.builder.artifact_limits,
        };
        fetcher.fetch(&self.request.artifact, &context).await?;
        let code_bytes = tree_bytes(&context);
        let text = std::fs::read_to_string(context.join("Dockerfile"))
            .map_err(io_error(&context.join("Dockerfile")))?;
        let dockerfile = Dockerfile::parse(&text)?;
        self.finish(phase);

        let phase = self.phase(Phase::Dockerfile);
        let dockerfile_started = Instant::now();
        let output = self.dockerfile(dockerfile, &context, &base).await?;
        let dockerfile_ms = millis(dockerfile_started.elapsed());
        self.finish(phase);

        let phase = self.phase(Phase::Snapshot);
        let snapshot_started = Instant::now();
        let host = self.host(&base);
        let mut app = app_spec(&output.config, &self.request.env);
        app.all_capabilities = self.request.all_capabilities;
        let disk = self.scratch.join("rootfs.ext4");
        hearth_vmm::disk::make_ext4(
            &output.rootfs,
            &disk,
            hearth_vmm::disk::DEFAULT_ROOT_DISK_BYTES,
        )
        .await
        .map_err(|e| ImageBuildError::Io {
            path: disk.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let snapshot_dir = self.snapshot_dir;
        let readiness = self.readiness(&output.config);
        let snapshot = app::snapshot_app(
            &host,
            &disk,
            app.clone(),
            resources,
            readiness,
            snapshot_dir,
            &self.events,
        )
        .await
        .map_err(ImageBuildError::Snapshot)?;
        let _ = std::fs::remove_file(&disk);
        let snapshot_ms = millis(snapshot_started.elapsed());
        self.finish(phase);

        let mut validate_ms = 0;
        let hooks = self.request.hooks;
        if hooks.validate.enabled {
            let phase = self.phase(Phase::Validate);
            let validate_started = Instant::now();
            let readiness = Readiness::Hook {
                hook: Hook::Validate,
                port: hooks.port.unwrap_or(DEFAULT_APP_PORT),
                timeout: hooks.validate.timeout(),
            };
            app::validate(&host, snapshot_dir, readiness, &self.events)
                .await
                .map_err(ImageBuildError::Validate)?;
            validate_ms = millis(validate_started.elapsed());
            self.finish(phase);
        }

        let mut record = ImageRecord {
            format: layout::RECORD_FORMAT,
            name: self.request.name.clone(),
            version: 0,
            build_id: self.build_id.to_owned(),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            base,
            config: output.config.clone(),
            app,
            hooks,
            resources,
            sizes: Sizes {
                memory_snapshot_bytes: snapshot.memory_bytes,
                disk_bytes: snapshot.disk_bytes,
                code_bytes,
            },
            durations_ms: Durations {
                total: 0,
                dockerfile: dockerfile_ms,
                snapshot: snapshot_ms,
                validate: validate_ms,
            },
            steps: output
                .steps
                .iter()
                .map(|s| StepRecord {
                    line: s.line,
                    instruction: s.instruction.clone(),
                    cache: s.cache,
                    duration_ms: millis(s.duration),
                })
                .collect(),
        };
        record.durations_ms.total = millis(started.elapsed());
        Ok(record)
    }

    /// Builds the Dockerfile into `<scratch>/output`.
    async fn dockerfile(
        &self,
        dockerfile: Dockerfile,
        context: &Path,
        base: &BaseRecord,
    ) -> Result<crate::plan::BuildOutput, ImageBuildError> {
        let layout = &self.builder.layout;
        let store = ImageStore::open(layout.base_images())?;
        let cache = match self.request.no_cache {
            true => None,
            false => Some(StepCache::open(
                layout.build_cache(),
                self.builder.cache_max_bytes,
            )?),
        };
        let puller = Puller::new(self.builder.registry.clone());
        let config = BuildVmConfig {
            kernel: base.kernel.clone(),
            initramfs: base.initramfs.clone(),
            accel_cache: layout.accel_cache(),
            vcpus: self.builder.build_vm.vcpus,
            memory_mib: self.builder.build_vm.memory_mib,
            network: true,
        };
        let runner = VmRunner::new(config, self.scratch.join("v"));
        let builder = Builder {
            store: &store,
            puller: &puller,
            cache: cache.as_ref(),
            runner: &runner,
            events: self.events.sender(),
        };
        let request = BuildRequest {
            dockerfile,
            context: context.to_path_buf(),
            build_args: self.request.build_args.clone(),
            target: None,
            output: self.scratch.join("output"),
        };
        Ok(builder.build(&request).await?)
    }

    fn host(&self, base: &BaseRecord) -> Host {
        Host {
            data: self.builder.layout.data().to_path_buf(),
            kernel: base.kernel.clone(),
            initramfs: base.initramfs.clone(),
            accel_cache: self.builder.layout.accel_cache(),
            exe: self.builder.exe.clone(),
        }
    }

    fn readiness(&self, config: &ImageConfig) -> Readiness {
        let hooks = &self.request.hooks;
        match (hooks.ready.enabled, hooks.port) {
            (true, Some(port)) => Readiness::Hook {
                hook: Hook::Ready,
                port,
                timeout: hooks.ready.timeout(),
            },
            _ => Readiness::Port {
                port: first_tcp_port(config).unwrap_or(DEFAULT_APP_PORT),
                timeout: hooks.ready.timeout(),
            },
        }
    }

    /// Writes image.json and renames `staging` into the next version.
    fn commit(
        &self,
        staging: &Path,
        mut record: ImageRecord,
    ) -> Result<BuiltImage, ImageBuildError> {
        let layout = &self.builder.layout;
        let name = &self.request.name;
        loop {
            let version = layout.versions(name).map_err(|e| ImageBuildError::Io {
                path: layout.image(name),
                source: std::io::Error::other(e.to_string()),
            })?;
            record.version = version.last().copied().unwrap_or(0) + 1;
            let json = staging.join("image.json");
            let bytes = serde_json::to_vec_pretty(&record).map_err(|e| ImageBuildError::Io {
                path: json.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            std::fs::write(&json, bytes).map_err(io_error(&json))?;

            let dir = layout.version_dir(name, record.version);
            match std::fs::rename(staging, &dir) {
                Ok(()) => {
                    // The log file moved with the directory and stays open.
                    self.events.send(BuildEvent::ImageBuilt {
                        name: name.clone(),
                        version: record.version,
                        dir: dir.display().to_string(),
                    });
                    return Ok(BuiltImage { dir, record });
                }
                // Another build took this number first: take the next one.
                Err(_) if dir.exists() => continue,
                Err(source) => return Err(ImageBuildError::Io { path: dir, source }),
            }
        }
    }

    fn phase(&self, phase: Phase) -> (Phase, Instant) {
        self.events.send(BuildEvent::PhaseStarted { phase });
        (phase, Instant::now())
    }

    fn finish(&self, (phase, started): (Phase, Instant)) {
        self.events.send(BuildEvent::PhaseFinished {
            phase,
            duration: started.elapsed(),
        });
    }
}

/// The app as the agent starts it: ENTRYPOINT + CMD, the image's ENV with
/// the request's variables over it, its user and working directory.
pub fn app_spec(config: &ImageConfig, env: &[(String, String)]) -> AppSpec {
    let mut merged = config.clone();
    for (key, value) in env {
        merged.set_env(key, value);
    }
    let argv = config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .cloned()
        .collect();
    AppSpec {
        argv,
        env: merged.env,
        cwd: (!config.workdir.is_empty()).then(|| config.workdir.clone()),
        user: (!config.user.is_empty()).then(|| config.user.clone()),
        all_capabilities: false,
    }
}

/// The lowest EXPOSEd TCP port (an image config keeps exposed ports as a
/// set, without the Dockerfile's order).
fn first_tcp_port(config: &ImageConfig) -> Option<u16> {
    config
        .exposed_ports
        .iter()
        .filter_map(|p| p.strip_suffix("/tcp"))
        .filter_map(|p| p.parse().ok())
        .min()
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_app_is_entrypoint_then_cmd_with_env_over_the_image() {
        let config = ImageConfig {
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            user: "app".into(),
            workdir: "/srv".into(),
            entrypoint: vec!["python3".into()],
            cmd: vec!["server.py".into()],
            ..ImageConfig::default()
        };
        let app = app_spec(&config, &[("MODE".into(), "run".into())]);
        assert_eq!(app.argv, vec!["python3", "server.py"]);
        assert_eq!(app.env, vec!["PATH=/bin", "MODE=run"]);
        assert_eq!(app.cwd.as_deref(), Some("/srv"));
        assert_eq!(app.user.as_deref(), Some("app"));
    }

    #[test]
    fn the_ready_port_is_the_first_exposed_tcp_port() {
        let mut config = ImageConfig::default();
        assert_eq!(first_tcp_port(&config), None);
        config.add_port("53/udp");
        config.add_port("10000");
        config.add_port("9000");
        config.add_port("8081");
        assert_eq!(first_tcp_port(&config), Some(8081));
    }

    #[test]
    fn requests_are_checked_at_the_boundary() {
        let source = ArtifactSource::Directory(PathBuf::from("."));
        let mut request = ImageBuildRequest::new("bad name", source);
        assert_eq!(
            request.check().unwrap_err().to_string(),
            "invalid name: \"bad name\" is not 1 to 64 letters, digits, '-' and '_'"
        );
        request.name = String::from("ok");
        request.minimum_memory_mib = 64;
        assert!(request.check().is_err());
        request.minimum_memory_mib = 512;
        request.hooks.validate.enabled = true;
        assert_eq!(
            request.check().unwrap_err().reason(),
            "invalid hooks: the validate hook is enabled but no hooks port is given"
        );
    }
}
