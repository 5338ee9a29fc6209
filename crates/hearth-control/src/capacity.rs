//! Size classes and admission: how big a guest is, and whether the host can
//! hold one more.
//!
//! `minimumMemoryInMiB` (default 2048) picks a size class with 2 GiB of
//! memory per vCPU; the guest sees 4× the baseline as its memory and gets
//! `max(1, 4 × MiB / 2048)` vCPUs. A configured cap shrinks the guest (tests
//! on TCG use small guests), and the vCPUs follow the memory it gets. A run
//! is admitted only when the host's available memory holds the guest and
//! QEMU's own overhead, and when a configured budget for all live guests is
//! not exceeded: never overcommitted into swap or the OOM killer.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// `minimumMemoryInMiB` when an image does not say.
pub const DEFAULT_MINIMUM_MEMORY_MIB: u32 = 2048;

/// Memory per vCPU in a size class, in MiB.
const MIB_PER_VCPU: u32 = 2048;

/// What QEMU holds beyond the guest's pages, in MiB (its code cache and
/// state), counted against the host on admission.
pub const QEMU_OVERHEAD_MIB: u64 = 64;

/// The machine a microVM gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSize {
    /// Guest memory (`-m`), in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
}

impl GuestSize {
    /// The guest of a size class, under an optional memory cap.
    pub fn for_class(minimum_memory_mib: Option<i32>, cap_mib: Option<u32>) -> Self {
        let baseline = minimum_memory_mib
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MINIMUM_MEMORY_MIB);
        let full = baseline.saturating_mul(4);
        let memory_mib = cap_mib.map_or(full, |cap| full.min(cap.max(64)));
        Self {
            memory_mib,
            vcpus: (memory_mib / MIB_PER_VCPU).max(1),
        }
    }
}

/// Why a guest does not fit.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// The host's free memory cannot hold it.
    #[error("the host has {available_mib} MiB available; a {guest_mib} MiB guest needs {needed_mib} MiB")]
    HostMemory {
        /// MemAvailable, in MiB.
        available_mib: u64,
        /// The guest's memory.
        guest_mib: u64,
        /// The guest and QEMU's overhead.
        needed_mib: u64,
    },
    /// The configured budget for guests is spent.
    #[error(
        "live guests hold {used_mib} of {budget_mib} MiB; a {guest_mib} MiB guest does not fit"
    )]
    Budget {
        /// Guest memory of live microVMs.
        used_mib: u64,
        /// The budget.
        budget_mib: u64,
        /// The guest's memory.
        guest_mib: u64,
    },
    /// `/proc/meminfo` could not be read.
    #[error("cannot read {path}: {detail}")]
    Meminfo {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// Checks that one more guest of `guest_mib` fits.
///
/// # Errors
///
/// The [`CapacityError`] that says what is short.
pub fn admit(
    guest_mib: u32,
    live_guest_mib: u64,
    budget_mib: Option<u64>,
    meminfo: &Path,
) -> Result<(), CapacityError> {
    let guest_mib = u64::from(guest_mib);
    if let Some(budget_mib) = budget_mib {
        if live_guest_mib + guest_mib > budget_mib {
            return Err(CapacityError::Budget {
                used_mib: live_guest_mib,
                budget_mib,
                guest_mib,
            });
        }
    }

    let available_mib = available_mib(meminfo)?;
    let needed_mib = guest_mib + QEMU_OVERHEAD_MIB;
    if needed_mib > available_mib {
        return Err(CapacityError::HostMemory {
            available_mib,
            guest_mib,
            needed_mib,
        });
    }
    Ok(())
}

/// `MemAvailable` of a meminfo file, in MiB.
fn available_mib(meminfo: &Path) -> Result<u64, CapacityError> {
    let err = |detail: String| CapacityError::Meminfo {
        path: meminfo.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(meminfo).map_err(|e| err(e.to_string()))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .ok_or_else(|| err("no MemAvailable line".to_owned()))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| err(format!("unreadable line {line:?}")))?;
    Ok(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_give_four_times_the_baseline() {
        let guest = GuestSize::for_class(None, None);
        assert_eq!(
            guest,
            GuestSize {
                memory_mib: 8192,
                vcpus: 4
            }
        );
        let small = GuestSize::for_class(Some(512), None);
        assert_eq!(
            small,
            GuestSize {
                memory_mib: 2048,
                vcpus: 1
            }
        );
        let capped = GuestSize::for_class(Some(2048), Some(256));
        assert_eq!(
            capped,
            GuestSize {
                memory_mib: 256,
                vcpus: 1
            }
        );
    }

    #[test]
    fn admission_refuses_what_the_host_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let meminfo = dir.path().join("meminfo");
        std::fs::write(&meminfo, "MemTotal: 100 kB\nMemAvailable:     1048576 kB\n").unwrap();

        admit(512, 0, None, &meminfo).unwrap();
        let error = admit(1024, 0, None, &meminfo).unwrap_err();
        assert!(matches!(
            error,
            CapacityError::HostMemory {
                available_mib: 1024,
                ..
            }
        ));
        let error = admit(256, 300, Some(512), &meminfo).unwrap_err();
        assert!(matches!(error, CapacityError::Budget { .. }));
    }
}
