//! The built-in pipeline: images whose Dockerfile needs no build VM.
//!
//! It lays out a busybox root, applies the Dockerfile's COPY, ENV, WORKDIR,
//! EXPOSE, CMD and ENTRYPOINT to it, makes the root into an ext4 disk,
//! boots a VM with the app started, waits until the app is ready (see
//! [`readiness`](super::readiness)), snapshots the VM with its memory and
//! disk, and stops it. With the `validate` hook enabled it then restores a
//! test VM from the snapshot and polls the hook.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use hearth_api::model::{Architecture, Capability, ImageConfig};
use hearth_protocol::AppSpec;
use hearth_shim::launch::{self, BootSpec, RootSource};
use hearth_shim::{ShimClient, VmDir};
use hearth_vmm::disk::DEFAULT_ROOT_DISK_BYTES;

use super::dockerfile::{self, Instruction};
use super::readiness::{self, Readiness};
use super::{context, BuildFailure, BuildJob, BuildProgress, BuiltVersion, ContainerConfig};
use crate::store::BuildSizes;

/// The `PATH` an app gets unless its image sets one (Docker's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds images `FROM busybox` whose Dockerfile only lays out files and
/// sets the container's configuration.
///
// Limitation: builds only `FROM busybox` with COPY, ENV, WORKDIR, EXPOSE,
// CMD, ENTRYPOINT and LABEL (no RUN, no other base); a pipeline that runs
// Dockerfiles in a build VM implements `ImagePipeline` in its place.
#[derive(Clone, Debug)]
pub struct BuiltinPipeline {
    busybox: PathBuf,
}

impl BuiltinPipeline {
    /// A pipeline that takes busybox from `busybox` (a static binary).
    pub fn new(busybox: PathBuf) -> Self {
        Self { busybox }
    }

    /// A pipeline with the busybox of `$HEARTH_BUSYBOX`, else
    /// `/bin/busybox` (Debian's `busybox-static`).
    pub fn from_env() -> Self {
        let busybox = std::env::var_os("HEARTH_BUSYBOX")
            .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from);
        Self::new(busybox)
    }
}

/// The image tree a Dockerfile made.
struct Prepared {
    rootfs: PathBuf,
    container: ContainerConfig,
    code_bytes: u64,
}

#[async_trait]
impl super::ImagePipeline for BuiltinPipeline {
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

        // File work is blocking: unpack, lay out, copy.
        let (busybox, artifact, work) = (
            self.busybox.clone(),
            job.artifact.clone(),
            job.work_dir.clone(),
        );
        let prepared = tokio::task::spawn_blocking(move || prepare(&busybox, &artifact, &work))
            .await
            .map_err(|e| BuildFailure::new(format!("the build's file work failed: {e}")))??;
        progress.log(&format!(
            "laid out the image: {} bytes of code",
            prepared.code_bytes
        ));

        let disk = job.work_dir.join("rootfs.ext4");
        hearth_vmm::disk::make_ext4(&prepared.rootfs, &disk, DEFAULT_ROOT_DISK_BYTES)
            .await
            .map_err(|e| BuildFailure::new(format!("cannot make the image's disk: {e}")))?;
        let _ = tokio::fs::remove_dir_all(&prepared.rootfs).await;

        let snapshot = snapshot_app(&job, &disk, &prepared.container, progress.as_ref()).await?;
        if let Some((port, timeout)) = readiness::validation(&job.config) {
            let validated = validate(&job, port, timeout, progress.as_ref()).await;
            if let Err(failure) = validated {
                let _ = tokio::fs::remove_dir_all(&job.snapshot_dir).await;
                return Err(failure);
            }
        }

        Ok(BuiltVersion {
            snapshot_dir: job.snapshot_dir.clone(),
            container: prepared.container,
            sizes: BuildSizes {
                memory_bytes: snapshot.memory_bytes,
                disk_bytes: snapshot.disk_bytes,
                code_bytes: prepared.code_bytes,
            },
        })
    }
}

/// Unpacks the artifact and applies the Dockerfile to a busybox root.
fn prepare(busybox: &Path, artifact: &Path, work: &Path) -> Result<Prepared, BuildFailure> {
    let fail = |reason: String| BuildFailure::new(reason);
    let context = if artifact.is_dir() {
        artifact.to_owned()
    } else {
        let context = work.join("context");
        std::fs::create_dir_all(&context).map_err(|e| fail(format!("scratch space: {e}")))?;
        context::unzip(artifact, &context).map_err(fail)?;
        context
    };
    let text = std::fs::read_to_string(context.join("Dockerfile"))
        .map_err(|_| fail("the code artifact has no Dockerfile at its root".to_owned()))?;
    let steps = dockerfile::parse(&text)?;

    let rootfs = work.join("rootfs");
    context::busybox_rootfs(busybox, &rootfs).map_err(fail)?;
    let mut container = ContainerConfig {
        env: vec![DEFAULT_PATH.to_owned()],
        ..ContainerConfig::default()
    };
    let mut code_bytes = 0;

    for step in steps {
        let at = |what: String| fail(format!("Dockerfile line {}: {what}", step.line));
        let workdir = container
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned());
        match step.instruction {
            Instruction::Copy { sources, dest } => {
                code_bytes +=
                    context::copy(&context, &rootfs, &sources, &dest, &workdir).map_err(at)?;
            }
            Instruction::Env(pairs) => {
                for (key, value) in pairs {
                    set_env(&mut container.env, &key, &value);
                }
            }
            Instruction::Workdir(dir) => {
                let dir = context::guest_path(&workdir, &dir);
                let text = dir.to_string_lossy().into_owned();
                context::make_image_dir(&rootfs, &text).map_err(at)?;
                container.working_dir = Some(text);
            }
            Instruction::Expose(ports) => container.exposed_ports.extend(ports),
            Instruction::Cmd(argv) => container.cmd = argv,
            Instruction::Entrypoint(argv) => {
                container.entrypoint = argv;
                container.cmd.clear();
            }
        }
    }
    if container.argv().is_empty() {
        return Err(fail(
            "the Dockerfile sets neither CMD nor ENTRYPOINT".to_owned(),
        ));
    }
    Ok(Prepared {
        rootfs,
        container,
        code_bytes,
    })
}

/// Sets `key` in a `KEY=value` list.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The app as the agent starts it: the container's configuration, with the
/// image's environment variables on top.
fn app_spec(config: &ImageConfig, container: &ContainerConfig) -> AppSpec {
    let mut env = container.env.clone();
    for (key, value) in config.environment_variables.iter().flatten() {
        set_env(&mut env, key, value);
    }
    let all = config
        .additional_os_capabilities
        .iter()
        .flatten()
        .any(|c| *c == Capability::All);
    AppSpec {
        argv: container.argv(),
        env,
        cwd: container.working_dir.clone(),
        user: None,
        all_capabilities: all,
    }
}

/// Boots the app, waits until it is ready and snapshots it; the VM is gone
/// afterwards whatever happened.
async fn snapshot_app(
    job: &BuildJob,
    disk: &Path,
    container: &ContainerConfig,
    progress: &dyn BuildProgress,
) -> Result<hearth_shim::SnapshotResult, BuildFailure> {
    let spec = BootSpec {
        root: RootSource::Image(disk.to_owned()),
        app: Some(app_spec(&job.config, container)),
        vcpus: job.guest.vcpus,
        memory_mib: job.guest.memory_mib,
        disk_bytes: DEFAULT_ROOT_DISK_BYTES,
        // The snapshot carries the NIC that every microVM restored from it
        // gets, in its own namespace.
        network: Some(hearth_net::Egress::Internet),
    };
    let host = job.vm_host.launch_host();
    let dir = launch::boot(&host, spec).await.map_err(|e| {
        BuildFailure::new(format!("the build VM did not start: {}", error_chain(&e)))
    })?;
    let vm_id = dir.id();
    progress.vm_started(&vm_id);
    progress.log(&format!("build VM {vm_id} started; waiting for the app"));

    let readiness = readiness::readiness(&job.config, container);
    let result = ready_then_snapshot(&dir, readiness, &job.snapshot_dir).await;
    if result.is_err() {
        log_console(&dir, progress);
    }
    discard_vm(&dir).await;
    progress.vm_stopped(&vm_id);
    let snapshot = result?;
    progress.log(&format!(
        "snapshot taken: {} bytes of memory, {} bytes of disk",
        snapshot.memory_bytes, snapshot.disk_bytes
    ));
    Ok(snapshot)
}

/// Waits for readiness, then snapshots and stops the VM.
async fn ready_then_snapshot(
    dir: &VmDir,
    readiness: Readiness,
    snapshot_dir: &Path,
) -> Result<hearth_shim::SnapshotResult, BuildFailure> {
    let client = ShimClient::connect(dir)
        .await
        .map_err(|e| BuildFailure::new(format!("cannot reach the build VM: {e}")))?;
    readiness::wait_ready(&client, readiness).await?;
    client
        .snapshot(snapshot_dir, true)
        .await
        .map_err(|e| BuildFailure::new(format!("the snapshot failed: {e}")))
}

/// Restores a test VM from the job's snapshot and polls its validate hook.
async fn validate(
    job: &BuildJob,
    port: u16,
    timeout: std::time::Duration,
    progress: &dyn BuildProgress,
) -> Result<(), BuildFailure> {
    let host = job.vm_host.launch_host();
    let dir = launch::restore(&host, &job.snapshot_dir)
        .await
        .map_err(|e| {
            BuildFailure::new(format!(
                "the test VM did not start from the snapshot: {}",
                error_chain(&e)
            ))
        })?;
    let vm_id = dir.id();
    progress.vm_started(&vm_id);
    let result = async {
        let client = ShimClient::connect(&dir)
            .await
            .map_err(|e| BuildFailure::new(format!("cannot reach the test VM: {e}")))?;
        readiness::validate(&client, port, timeout).await
    }
    .await;
    if result.is_ok() {
        progress.log(&format!("test VM {vm_id}: the validate hook answered 200"));
    }
    discard_vm(&dir).await;
    progress.vm_stopped(&vm_id);
    result
}

/// Stops a VM if its shim still answers and removes its directory.
pub(crate) async fn discard_vm(dir: &VmDir) {
    if let Ok(client) = ShimClient::connect(dir).await {
        if let Err(error) = client.stop().await {
            tracing::warn!(vm_id = %dir.id(), error = %error, "cannot stop vm");
        }
    }
    if let Err(error) = tokio::fs::remove_dir_all(dir.root()).await {
        tracing::warn!(vm_id = %dir.id(), error = %error, "cannot remove vm directory");
    }
}

/// The last lines of a VM's console, into the build's log.
fn log_console(dir: &VmDir, progress: &dyn BuildProgress) {
    let text = std::fs::read_to_string(dir.console()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(20)..] {
        progress.log(&format!("console: {line}"));
    }
}

/// An error and its sources, joined.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
