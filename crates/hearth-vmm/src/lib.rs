//! VMM drivers, disks and snapshots for hearth microVMs.
//!
//! - [`qemu`]: starts `qemu-system-x86_64 -M microvm`, drives it over
//!   [`qmp`], saves and loads its state, and tells why it exited;
//! - [`accel`]: picks KVM or TCG by booting the guest kernel once;
//! - [`snapshot`]: memory and disk of a paused VM as one checksummed,
//!   atomically written directory;
//! - [`disk`]: ext4 images, qcow2 overlays, flattening;
//! - [`backend`]: the [`Vmm`]/[`MicroVm`] traits a backend implements;
//! - [`console`]: waiting on a VM's serial console log.
//!
//! Nothing here needs root: QEMU runs as the caller, sockets are unix
//! sockets in directories the caller chooses, and disk images are built
//! with `mkfs.ext4 -d` and `qemu-img`.

pub mod accel;
pub mod backend;
pub mod console;
pub mod digest;
pub mod disk;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
mod tsc;

pub use accel::{choose_accel, probe_accel, Accel, AccelChoice};
pub use backend::{MicroVm, QemuVmm, Vmm};
pub use disk::DiskError;
pub use qemu::{
    Disk, DiskFormat, ExitReason, MachineConfig, MachineSpec, Network, QemuVersion, QemuVm,
    StateInfo, VmError,
};
pub use snapshot::{Snapshot, SnapshotError, SnapshotMeta};
