//! The image pipeline seam: how the control plane asks for an image version
//! to be built, and what it gets back.
//!
//! The control plane owns the records (version and build states, sizes,
//! reasons) and the files' places; a pipeline owns the work: from the code
//! artifact and the version's configuration to a snapshot directory that
//! microVMs are restored from. The control plane calls
//! [`ImagePipeline::build`] once per build, in its own task, after moving
//! the build to IN_PROGRESS, and records SUCCESSFUL or FAILED from the
//! result. A pipeline reports progress and the VMs it starts through
//! [`BuildProgress`], so that a restarted server can stop a build VM that a
//! crash left behind.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hearth_api::model::{Architecture, ImageConfig};
use serde::{Deserialize, Serialize};

use crate::capacity::GuestSize;
use crate::store::BuildSizes;

/// One build to run.
#[derive(Clone, Debug)]
pub struct BuildJob {
    /// The build's id.
    pub build_id: String,
    /// The image's name.
    pub image_name: String,
    /// The image's ARN.
    pub image_arn: String,
    /// The version being built.
    pub version: u32,
    /// The version's configuration as the API received it.
    pub config: ImageConfig,
    /// The code artifact on local disk: a zip file or a directory, with a
    /// `Dockerfile` at its root.
    pub artifact: PathBuf,
    /// The architecture to build for.
    pub architecture: Architecture,
    /// A scratch directory that exists, is empty, and is removed after the
    /// build whatever its outcome.
    pub work_dir: PathBuf,
    /// Where the snapshot directory is to be written; it does not exist.
    pub snapshot_dir: PathBuf,
    /// The guest the version's microVMs get; the snapshot is taken of a
    /// guest of this size.
    pub guest: GuestSize,
    /// What launching VMs needs.
    pub vm_host: VmHost,
}

/// The files and program that launching a VM needs.
#[derive(Clone, Debug)]
pub struct VmHost {
    /// The data directory (VM directories go under `vms/`).
    pub data: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The accelerator probe's cache.
    pub accel_cache: PathBuf,
    /// The `hearth` binary, which runs shims.
    pub exe: PathBuf,
}

impl VmHost {
    /// The launcher's view of the same.
    pub fn launch_host(&self) -> hearth_shim::launch::Host {
        hearth_shim::launch::Host {
            data: self.data.clone(),
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            accel_cache: self.accel_cache.clone(),
            exe: self.exe.clone(),
        }
    }
}

/// A built version.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltVersion {
    /// The snapshot directory (a hearth-vmm snapshot: `meta.json`,
    /// `memory`, `disk.qcow2`), at the job's `snapshot_dir`.
    pub snapshot_dir: PathBuf,
    /// The container the app runs in.
    pub container: ContainerConfig,
    /// The sizes `snapshotBuild` reports.
    pub sizes: BuildSizes,
}

/// A build that failed, and why, in words a user can act on: what and
/// where (a Dockerfile line, a file of the artifact, a hook and its status).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{state_reason}")]
pub struct BuildFailure {
    /// The build's and version's `stateReason`.
    pub state_reason: String,
}

impl BuildFailure {
    /// A failure with this reason.
    pub fn new(state_reason: impl Into<String>) -> Self {
        Self {
            state_reason: state_reason.into(),
        }
    }
}

/// The container an image's app runs in, as its Dockerfile left it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// ENTRYPOINT, as argv.
    pub entrypoint: Vec<String>,
    /// CMD, as argv.
    pub cmd: Vec<String>,
    /// EXPOSEd TCP ports, in order.
    pub exposed_ports: Vec<u16>,
    /// The user the app runs as, if not root.
    pub user: Option<String>,
}

impl ContainerConfig {
    /// The app's argv: ENTRYPOINT then CMD.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// Where a build reports what it does.
pub trait BuildProgress: Send + Sync {
    /// A line for the build's log.
    fn log(&self, line: &str);

    /// A VM was started for the build (recorded so that it can be stopped
    /// if the server dies).
    fn vm_started(&self, vm_id: &str);

    /// The build's VM is gone.
    fn vm_stopped(&self, vm_id: &str);
}

/// Builds image versions.
#[async_trait]
pub trait ImagePipeline: Send + Sync + 'static {
    /// Builds `job`, writing the snapshot at `job.snapshot_dir`.
    ///
    /// # Errors
    ///
    /// A [`BuildFailure`] whose reason becomes the build's and version's
    /// `stateReason`. A pipeline leaves no VM running and nothing at
    /// `snapshot_dir` when it fails.
    async fn build(
        &self,
        job: BuildJob,
        progress: Arc<dyn BuildProgress>,
    ) -> Result<BuiltVersion, BuildFailure>;
}
