//! The capability set an app keeps: Docker's default unless it asks for all.
//!
//! The agent runs as root with every capability. Before the app's `exec`, the
//! capabilities outside the default set are removed from the bounding set, so
//! that neither the app (even as root) nor anything it runs can hold them.

/// Docker's default capabilities, by name and number.
pub const DEFAULT_CAPABILITIES: [(&str, u32); 14] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// The highest capability number when the kernel does not say
/// (`CAP_CHECKPOINT_RESTORE`).
const FALLBACK_LAST_CAP: u32 = 40;

/// The kernel's highest capability number, from
/// `/proc/sys/kernel/cap_last_cap`.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(FALLBACK_LAST_CAP)
}

/// Capabilities to drop from the bounding set to keep only the default set.
pub fn to_drop(last_cap: u32) -> Vec<u32> {
    (0..=last_cap)
        .filter(|cap| !DEFAULT_CAPABILITIES.iter().any(|(_, kept)| kept == cap))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_matches_the_kernel_numbers() {
        let numbers: Vec<u32> = DEFAULT_CAPABILITIES.iter().map(|(_, n)| *n).collect();
        assert_eq!(
            numbers,
            vec![0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        );
    }

    #[test]
    fn everything_else_is_dropped() {
        let drop = to_drop(40);
        assert_eq!(drop.len(), 41 - DEFAULT_CAPABILITIES.len());
        // CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYS_MODULE go.
        for cap in [21, 12, 19, 16] {
            assert!(drop.contains(&cap), "{cap}");
        }
        assert!(!drop.contains(&0) && !drop.contains(&31));
    }

    #[test]
    fn the_running_kernel_reports_a_plausible_last_cap() {
        assert!(last_cap() >= 36);
    }
}
