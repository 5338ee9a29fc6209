//! [`VmRunner`]: the [`StepRunner`] that runs each RUN step in a build
//! microVM, never on the host.
//!
//! One step, start to end:
//!
//! 1. the stage's root directory becomes a sparse ext4 image
//!    (`mkfs.ext4 -d`, owners, modes and links as on disk);
//! 2. a [`BuildVm`] boots on it, with a network namespace of its own (NAT
//!    egress and DNS, nothing of the host);
//! 3. the agent marks the root filesystem (`FsMark`);
//! 4. the command runs with the step's argv, environment, working directory
//!    and user, its output streamed line by line;
//! 5. on exit code 0 the agent exports what changed since the mark, and the
//!    host applies that layer to the root directory (whiteouts remove what
//!    the step removed; device nodes are refused), so unchanged files keep
//!    their exact metadata and the plan's diff sees only the step's work;
//! 6. the VM is stopped and its files removed, whatever happened.
//!
//! A non-zero exit leaves the root directory untouched; the plan turns it
//! into a build failure quoting the last lines of output.
//!
//! Each step gets a fresh VM, as each RUN gets a fresh container in Docker:
//! no process of one step survives into the next.
//!
//! Limitation: the size of a step's export is bounded only by the build
//! VM's disk (8 GiB), not by a quota of its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hearth_protocol::{ExecSpec, Request};

use crate::runner::{OutputSink, RunOutcome, RunnerError, StepRunner};
use crate::vm::{BuildVm, BuildVmConfig, BuildVmError};

/// The size of a build VM's root disk; the image is sparse.
pub const BUILD_DISK_BYTES: u64 = hearth_vmm::disk::DEFAULT_ROOT_DISK_BYTES;

/// How long one RUN step may take by default.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs RUN steps in build microVMs.
#[derive(Debug)]
pub struct VmRunner {
    config: BuildVmConfig,
    work: PathBuf,
    timeout: Duration,
    next: AtomicUsize,
}

impl VmRunner {
    /// A runner whose VMs are made from `config`, with their disks and
    /// sockets in directories under `work` (keep the path short: unix
    /// socket paths are limited to 107 bytes).
    pub fn new(config: BuildVmConfig, work: impl Into<PathBuf>) -> VmRunner {
        VmRunner {
            config,
            work: work.into(),
            timeout: DEFAULT_STEP_TIMEOUT,
            next: AtomicUsize::new(0),
        }
    }

    /// Bounds each step's command to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> VmRunner {
        self.timeout = timeout;
        self
    }

    async fn run_in_vm(
        &self,
        rootfs: &Path,
        spec: ExecSpec,
        output: &OutputSink,
        dir: &Path,
    ) -> Result<RunOutcome, RunnerError> {
        let disk = dir.join("root.ext4");
        hearth_vmm::disk::make_ext4(rootfs, &disk, BUILD_DISK_BYTES)
            .await
            .map_err(|e| failure("cannot make the step's disk", e))?;

        let vm = BuildVm::boot(&self.config, &disk, dir)
            .await
            .map_err(|e| failure("cannot start the build vm", e))?;
        let result = step(&vm, rootfs, spec, output, self.timeout).await;
        vm.stop().await;
        result
    }
}

/// The part of a step that needs the VM running.
async fn step(
    vm: &BuildVm,
    rootfs: &Path,
    spec: ExecSpec,
    output: &OutputSink,
    timeout: Duration,
) -> Result<RunOutcome, RunnerError> {
    vm.call("mark", Request::FsMark)
        .await
        .map_err(|e| failure("cannot record the root filesystem", e))?;

    let outcome = match vm.exec(spec, output, timeout).await {
        Ok(outcome) => outcome,
        // The agent's refusal ("exec X: No such file or directory") is the
        // reason a user can act on; report it as the command's failure.
        Err(BuildVmError::Agent { message, .. }) => {
            return Ok(RunOutcome {
                exit_code: 127,
                output_tail: vec![message],
            })
        }
        Err(err) => return Err(failure("the command failed to run", err)),
    };
    if outcome.exit_code != 0 {
        return Ok(outcome);
    }

    let summary = vm
        .export_into(rootfs)
        .await
        .map_err(|e| failure("cannot bring the step's changes back", e))?;
    tracing::debug!(
        entries = summary.entries,
        removed = summary.removed,
        bytes = summary.bytes,
        "step exported"
    );
    Ok(outcome)
}

fn failure(message: &str, source: impl std::error::Error + Send + Sync + 'static) -> RunnerError {
    RunnerError {
        message: message.to_owned(),
        source: Some(Box::new(source)),
    }
}

impl StepRunner for VmRunner {
    async fn run(
        &self,
        rootfs: &Path,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: String,
        user: String,
        output: OutputSink,
    ) -> Result<RunOutcome, RunnerError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("vm{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| failure("cannot make the vm directory", e))?;

        let spec = ExecSpec {
            argv,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: Some(cwd),
            user: Some(user),
            tty: None,
        };
        let result = self.run_in_vm(rootfs, spec, &output, &dir).await;
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot remove a build vm's files");
        }
        result
    }
}
