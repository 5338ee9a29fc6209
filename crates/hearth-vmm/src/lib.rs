//! VMM drivers (QEMU), disks and snapshots.
