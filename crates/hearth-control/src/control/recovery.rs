//! Reading the state back after a start: what a stop or a crash left
//! behind is settled before the API answers.
//!
//! Every microVM ends up where a user can act on it. RUNNING ones whose
//! shim still runs are re-attached; a half-done run or resume is started
//! again from its snapshot (the image's, or the microVM's own suspended
//! one, which is kept until the microVM is RUNNING again); a half-done
//! suspend is finished, from the snapshot the shim completed or by
//! suspending again; anything else whose VM is gone is TERMINATED with a
//! reason. Builds cut short fail. Then the files and VMs no record owns
//! (half-written snapshots, scratch directories, microVM VM directories)
//! are removed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::model::*;
use hearth_shim::{VmDir, VmStatus};

use super::Inner;
use crate::ids::MicrovmId;
use crate::store::{MicrovmRow, StoreError};

/// How long recovery waits for a shim to finish a snapshot it was taking.
const SNAPSHOT_SETTLE: Duration = Duration::from_secs(120);

/// A microVM task to start again once recovery has swept.
enum Restart {
    /// Start a PENDING microVM from its image's snapshot.
    Run(MicrovmId),
    /// Resume a PENDING microVM from its own snapshot.
    Resume(MicrovmId),
    /// Suspend a SUSPENDING microVM whose VM still runs.
    Suspend(MicrovmId),
}

impl Inner {
    /// Settles builds and microVMs that a stop or crash interrupted.
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        // Before the build directories that name them are removed.
        end_build_vms(&self.config.data_dir.join("builds")).await;
        self.fail_unfinished_builds("the server stopped during the build")
            .await?;

        let mut restarts = Vec::new();
        for row in self.store.microvms()? {
            let id = row.microvm_id.clone();
            let reason = match row.state {
                MicrovmState::Terminated => continue,
                MicrovmState::Running if self.node.is_running(&id) => {
                    tracing::info!(microvm_id = %id, "microvm still running; reattached");
                    self.drop_stale_snapshot(&row).await?;
                    continue;
                }
                MicrovmState::Suspended
                    if row.suspended_snapshot.as_ref().is_some_and(|p| p.exists()) =>
                {
                    self.node.stop(&id).await;
                    continue;
                }
                MicrovmState::Pending => match self.recover_pending(&row).await {
                    Ok(restart) => {
                        restarts.push(restart);
                        continue;
                    }
                    Err(reason) => reason,
                },
                MicrovmState::Suspending => match self.recover_suspending(&row).await? {
                    Ok(Some(restart)) => {
                        restarts.push(restart);
                        continue;
                    }
                    Ok(None) => continue,
                    Err(reason) => reason,
                },
                MicrovmState::Running => "VM_EXITED",
                MicrovmState::Suspended => "SNAPSHOT_LOST",
                MicrovmState::Terminating => "USER_INITIATED",
            };
            tracing::warn!(microvm_id = %id, state = %row.state, reason, "settling microvm after restart");
            let moved = self.store.move_microvm(
                &id,
                &[row.state],
                MicrovmState::Terminating,
                Some(reason),
                Timestamp::now(),
            )?;
            if moved || row.state == MicrovmState::Terminating {
                if let Some(row) = self.store.microvm(&id)? {
                    self.finish_termination(&row).await;
                }
            }
        }

        self.sweep().await?;
        for restart in restarts {
            let inner = self.clone();
            match restart {
                Restart::Run(id) => self.spawn_task(async move { inner.start_microvm(id).await }),
                Restart::Resume(id) => self.spawn_task(async move { inner.resume_task(id).await }),
                Restart::Suspend(id) => {
                    self.spawn_task(async move { inner.suspend_task(id).await })
                }
            }
        }
        Ok(())
    }

    /// A run or resume cut short: whatever VM it left is discarded and the
    /// start is made again from the same snapshot, so the `run` hook is
    /// called once in the VM that is kept, and a resume loses nothing.
    async fn recover_pending(&self, row: &MicrovmRow) -> Result<Restart, &'static str> {
        let id = &row.microvm_id;
        self.node.stop(id).await;
        match &row.suspended_snapshot {
            Some(snapshot) if snapshot.exists() => {
                tracing::info!(microvm_id = %id, "resume interrupted; resuming again");
                Ok(Restart::Resume(id.clone()))
            }
            Some(_) => Err("SNAPSHOT_LOST"),
            None => {
                tracing::info!(microvm_id = %id, "start interrupted; starting again");
                Ok(Restart::Run(id.clone()))
            }
        }
    }

    /// A suspend cut short. A snapshot the shim completed is kept and the
    /// microVM is SUSPENDED; a VM that still runs is suspended again; a VM
    /// that is gone without a snapshot cannot be brought back.
    async fn recover_suspending(
        &self,
        row: &MicrovmRow,
    ) -> Result<Result<Option<Restart>, &'static str>, StoreError> {
        let id = &row.microvm_id;
        self.settle_snapshotting(id).await;

        // A snapshot directory is renamed into place only when complete.
        let dest = self.config.suspended_dir(id.as_str());
        if dest.is_dir() {
            self.node.stop(id).await;
            self.store.set_suspended_snapshot(id, Some(&dest))?;
            let moved = self.store.move_microvm(
                id,
                &[MicrovmState::Suspending],
                MicrovmState::Suspended,
                None,
                Timestamp::now(),
            )?;
            if moved {
                tracing::info!(microvm_id = %id, "suspend finished by its shim; suspended");
                crate::events::microvm(crate::events::MicrovmEvent::Suspended, id.as_str(), None);
            }
            return Ok(Ok(None));
        }
        if self.node.is_running(id) {
            tracing::info!(microvm_id = %id, "suspend interrupted; suspending again");
            return Ok(Ok(Some(Restart::Suspend(id.clone()))));
        }
        Ok(Err("SUSPEND_INTERRUPTED"))
    }

    /// Waits, bounded, for a shim that is taking a snapshot to finish it.
    async fn settle_snapshotting(&self, id: &MicrovmId) {
        let dir = VmDir::new(&self.config.data_dir, id.as_str());
        let deadline = Instant::now() + SNAPSHOT_SETTLE;
        while Instant::now() < deadline {
            let snapshotting = dir.read_state().is_ok_and(|state| {
                state.status == VmStatus::Snapshotting && dir.owns_process(state.shim_pid)
            });
            if !snapshotting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::warn!(microvm_id = %id, "shim still snapshotting after {SNAPSHOT_SETTLE:?}");
    }

    /// A RUNNING microVM keeps no suspended snapshot: one left by a resume
    /// that was cut short after it recorded RUNNING goes.
    async fn drop_stale_snapshot(&self, row: &MicrovmRow) -> Result<(), StoreError> {
        let dir = self.config.suspended_dir(row.microvm_id.as_str());
        if row.suspended_snapshot.is_some() || dir.exists() {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            self.store.set_suspended_snapshot(&row.microvm_id, None)?;
        }
        Ok(())
    }

    /// Removes what no record owns: microVM VM directories (and their
    /// processes) of microVMs that are not live, suspended snapshots of
    /// microVMs that are not suspended, half-written snapshots, and build
    /// scratch directories (no build runs while the server starts).
    // Limitation: a build VM is recorded only once it has booted, so one
    // still booting when the server is killed is left running; record the
    // VM id before the boot to sweep it too.
    async fn sweep(&self) -> Result<(), StoreError> {
        let data = &self.config.data_dir;
        for name in dir_names(&data.join("vms")) {
            let Some(id) = MicrovmId::parse(&name) else {
                continue;
            };
            let live = self.store.microvm(&id)?.is_some_and(|row| {
                matches!(row.state, MicrovmState::Running | MicrovmState::Suspending)
            });
            if !live {
                tracing::warn!(microvm_id = %id, "removing a vm no live microvm owns");
                self.node.stop(&id).await;
            }
        }

        for name in dir_names(&data.join("suspended")) {
            let kept = match MicrovmId::parse(&name) {
                Some(id) => self.store.microvm(&id)?.is_some_and(|row| {
                    matches!(
                        row.state,
                        MicrovmState::Suspended | MicrovmState::Suspending | MicrovmState::Pending
                    )
                }),
                None => false,
            };
            if !kept {
                remove_dir(&data.join("suspended").join(&name)).await;
            }
        }

        for name in dir_names(&data.join("builds")) {
            remove_dir(&data.join("builds").join(&name)).await;
        }
        for image in dir_names(&data.join("images")) {
            let image_dir = data.join("images").join(image);
            for version in dir_names(&image_dir) {
                let version_dir = image_dir.join(version);
                for name in dir_names(&version_dir) {
                    if name.contains(".tmp-") {
                        remove_dir(&version_dir.join(name)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Fails every build that had not finished, stopping its VM and freeing
    /// its files.
    pub(super) async fn fail_unfinished_builds(&self, reason: &str) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for build in self.store.unfinished_builds()? {
            if let Some(vm_id) = &build.vm_id {
                self.node.discard_vm(vm_id).await;
                self.store.set_build_vm(&build.build_id, None)?;
            }
            self.store
                .set_build_state(&build.build_id, BuildState::Failed, Some(reason), now)?;
            let _ = tokio::fs::remove_dir_all(self.config.build_dir(&build.build_id)).await;
            let version_dir = self.config.version_dir(build.image_id, build.version);
            let _ =
                tokio::fs::remove_dir_all(version_dir.join(format!("snapshot-{}", build.build_id)))
                    .await;

            let Some(version) = self.store.version(build.image_id, build.version)? else {
                continue;
            };
            if matches!(
                version.state,
                MicrovmImageVersionState::Pending | MicrovmImageVersionState::InProgress
            ) {
                self.store.set_version_state(
                    build.image_id,
                    build.version,
                    MicrovmImageVersionState::Failed,
                    Some(reason),
                    now,
                )?;
            }
            if let Some(image) = self.store.image(build.image_id)? {
                let settled = match image.state {
                    MicrovmImageState::Creating => Some(MicrovmImageState::CreateFailed),
                    MicrovmImageState::Updating => Some(MicrovmImageState::UpdateFailed),
                    _ => None,
                };
                if let Some(state) = settled {
                    self.store.set_image_state(build.image_id, state, now)?;
                }
            }
            tracing::warn!(build_id = %build.build_id, reason, "build failed on restart");
        }
        Ok(())
    }
}

/// The file in a build VM's directory that names its network namespace
/// (`hearth_builder::vm::NETNS_FILE`).
const BUILD_NETNS_FILE: &str = "netns";

/// How long recovery waits for killed build VMs to be gone.
const BUILD_VM_GRACE: Duration = Duration::from_secs(10);

/// Ends what build VMs of a server that died left running: QEMUs run by the
/// server itself (not under a shim) outlive it, each in a namespace of its
/// own. A process is taken for one when its command line names a directory
/// under `builds` (this data directory's build scratch space); then the
/// namespaces the VM directories there recorded are removed.
async fn end_build_vms(builds: &Path) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    if !builds.is_dir() {
        return;
    }
    let mut killed = Vec::new();
    for pid in processes_naming(builds) {
        tracing::warn!(pid, "ending a build vm the server left running");
        if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
            killed.push(pid);
        }
    }
    let deadline = Instant::now() + BUILD_VM_GRACE;
    while killed.iter().any(|pid| names_dir(*pid, builds)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut recorded = Vec::new();
    find_files(builds, BUILD_NETNS_FILE, &mut recorded);
    if recorded.is_empty() {
        return;
    }
    let host = hearth_net::HostNetwork::default();
    let Ok(namespaces) = host.vm_namespaces().await else {
        return;
    };
    for file in recorded {
        let Ok(name) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = name.trim();
        let Some((vm_id, netns)) = namespaces.iter().find(|(_, netns)| netns == name) else {
            continue;
        };
        if host.netns_in_use(netns).await {
            tracing::warn!(netns, "a build vm's namespace is still in use; left");
            continue;
        }
        host.remove_vm_netns(vm_id).await;
        tracing::info!(netns, "removed the namespace of a build vm");
    }
}

/// The pids of live processes whose command line names a path under `dir`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && names_dir(*pid, dir))
        .collect()
}

/// Whether process `pid` is alive and an argument of its command line names
/// `dir` or a path under it.
fn names_dir(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = format!("{}/", dir.to_string_lossy().trim_end_matches('/'));
    cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(dir.as_str()))
}

/// Collects the files named `name` anywhere under `dir`.
fn find_files(dir: &Path, name: &str, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            find_files(&entry.path(), name, found);
        } else if kind.is_file() && entry.file_name() == name {
            found.push(entry.path());
        }
    }
}

/// The names of the directories in `dir` (none when it is missing).
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Removes a directory the sweep found unowned.
async fn remove_dir(dir: &Path) {
    tracing::warn!(path = %dir.display(), "removing files no record owns");
    if let Err(error) = tokio::fs::remove_dir_all(dir).await {
        tracing::warn!(path = %dir.display(), error = %error, "cannot remove");
    }
}
