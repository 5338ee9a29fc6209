//! The seam between the control plane and a VMM backend.
//!
//! The shim drives VMs through [`Vmm`] and [`MicroVm`] only, so another
//! backend (Firecracker, Cloud Hypervisor) is a new implementation of these
//! two traits, not a branch in every caller. [`QemuVmm`] is the QEMU one.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::qemu::{ExitReason, MachineConfig, QemuVm, StateInfo, VmError, DEFAULT_QEMU};

/// A VMM backend: something that starts microVMs.
pub trait Vmm: Send + Sync {
    /// The handle of a running microVM.
    type Vm: MicroVm;

    /// Starts a microVM; see [`QemuVm::spawn_with`] for the QEMU behaviour.
    fn spawn(
        &self,
        config: MachineConfig,
    ) -> impl Future<Output = Result<Self::Vm, VmError>> + Send;
}

/// The operations on a running microVM.
pub trait MicroVm: Send + Sync {
    /// The VMM process id.
    fn pid(&self) -> u32;

    /// Stops the vCPUs.
    fn pause(&self) -> impl Future<Output = Result<(), VmError>> + Send;

    /// Runs the vCPUs again.
    fn resume(&self) -> impl Future<Output = Result<(), VmError>> + Send;

    /// Saves the VM's state to a file; the VM stays paused.
    fn save_state(&self, path: &Path) -> impl Future<Output = Result<StateInfo, VmError>> + Send;

    /// Loads a state whose BLAKE3 must be `expected_blake3`; the VM stays paused.
    fn load_state(
        &self,
        path: &Path,
        expected_blake3: &str,
    ) -> impl Future<Output = Result<StateInfo, VmError>> + Send;

    /// Asks the VMM to exit, killing it if it does not.
    fn quit(&self) -> impl Future<Output = ExitReason> + Send;

    /// Kills the VMM process.
    fn kill(&self) -> impl Future<Output = ExitReason> + Send;

    /// Waits for the VMM process to end.
    fn wait(&self) -> impl Future<Output = ExitReason> + Send;
}

/// The QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuVmm {
    /// The QEMU system emulator to run.
    pub binary: PathBuf,
}

impl Default for QemuVmm {
    fn default() -> QemuVmm {
        QemuVmm {
            binary: PathBuf::from(DEFAULT_QEMU),
        }
    }
}

impl Vmm for QemuVmm {
    type Vm = QemuVm;

    fn spawn(&self, config: MachineConfig) -> impl Future<Output = Result<QemuVm, VmError>> + Send {
        QemuVm::spawn_with(&self.binary, config)
    }
}

impl MicroVm for QemuVm {
    fn pid(&self) -> u32 {
        QemuVm::pid(self)
    }

    fn pause(&self) -> impl Future<Output = Result<(), VmError>> + Send {
        QemuVm::pause(self)
    }

    fn resume(&self) -> impl Future<Output = Result<(), VmError>> + Send {
        QemuVm::resume(self)
    }

    fn save_state(&self, path: &Path) -> impl Future<Output = Result<StateInfo, VmError>> + Send {
        QemuVm::save_state(self, path)
    }

    fn load_state(
        &self,
        path: &Path,
        expected_blake3: &str,
    ) -> impl Future<Output = Result<StateInfo, VmError>> + Send {
        QemuVm::load_state(self, path, expected_blake3)
    }

    fn quit(&self) -> impl Future<Output = ExitReason> + Send {
        QemuVm::quit(self)
    }

    fn kill(&self) -> impl Future<Output = ExitReason> + Send {
        QemuVm::kill(self)
    }

    fn wait(&self) -> impl Future<Output = ExitReason> + Send {
        QemuVm::wait(self)
    }
}
