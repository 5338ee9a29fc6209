//! The per-VM supervisor: owns QEMU, its QMP and agent connections, and serves clients.
