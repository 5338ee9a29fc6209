//! Snapshots of a real QEMU microVM: save memory and disk, restore two VMs
//! from one snapshot, and refuse damaged or mismatched snapshots.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hearth_vmm::qemu::VmError;
use hearth_vmm::snapshot::{DISK_FILE, MEMORY_FILE};
use hearth_vmm::{disk, Disk, DiskFormat, ExitReason, QemuVm, Snapshot, SnapshotError};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Boots the counting guest on an overlay of a small ext4 disk, lets it
/// count to 5 and snapshots it into `dir/snap`. Returns the snapshot and
/// the last tick before the save.
async fn snapshot_counting_vm(dir: &Path) -> (Snapshot, u64) {
    let src = dir.join("rootfs");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "hello from the image\n").unwrap();
    let base = dir.join("base.ext4");
    disk::make_ext4(&src, &base, 64 << 20).await.unwrap();
    let overlay = dir.join("vm.qcow2");
    disk::create_overlay(&base, &overlay).await.unwrap();

    let vm_dir = dir.join("source");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let mut config = common::config(&vm_dir);
    config.disks.push(Disk {
        path: overlay.clone(),
        format: DiskFormat::Qcow2,
        read_only: false,
    });
    let log = config.console_log.clone();

    let vm = QemuVm::spawn(config).await.unwrap();
    common::wait_for_tick(&log, 5, TIMEOUT).await;
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(console.contains("disk: hello from the image"), "{console}");
    assert!(console.contains("disk written"), "{console}");
    assert_eq!(
        common::agent_echo(&vm_dir.join("agent.sock"), "before").await,
        "echo: before"
    );

    let started = Instant::now();
    let snapshot = Snapshot::create(&vm, Some(&overlay), &dir.join("snap"))
        .await
        .unwrap();
    let took = started.elapsed();
    let saved_tick = common::last_tick(&log).unwrap();
    eprintln!(
        "snapshot: memory {} bytes, disk {} bytes, {took:?} (guest 256 MiB)",
        snapshot.meta().memory.size,
        snapshot.meta().disk.as_ref().unwrap().size
    );

    // A snapshot leaves the source paused; its QEMU is no longer needed.
    assert_eq!(vm.status().await.unwrap(), "postmigrate");
    assert_eq!(vm.kill().await, ExitReason::Killed { signal: 9 });
    (snapshot, saved_tick)
}

/// Spawns a VM from the snapshot on its own overlay and resumes it.
async fn restore(snapshot: &Snapshot, dir: &Path) -> (QemuVm, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let overlay = dir.join("vm.qcow2");
    disk::create_overlay(&snapshot.disk_path().unwrap(), &overlay)
        .await
        .unwrap();

    let mut config = snapshot.restore_config(common::config(dir));
    config.disks.push(Disk {
        path: overlay,
        format: DiskFormat::Qcow2,
        read_only: false,
    });
    let log = config.console_log.clone();

    let started = Instant::now();
    let vm = QemuVm::spawn(config).await.unwrap();
    let info = snapshot.restore(&vm).await.unwrap();
    assert_eq!(vm.status().await.unwrap(), "paused");
    vm.resume().await.unwrap();
    eprintln!(
        "restore: spawn+load+resume {:?} (load {:?})",
        started.elapsed(),
        info.duration
    );
    (vm, log)
}

#[tokio::test]
async fn two_vms_restored_from_one_snapshot_both_continue_counting() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, saved_tick) = snapshot_counting_vm(dir.path()).await;

    // The snapshot is whole, validated, and has no leftovers beside it.
    let reopened = Snapshot::open_async(snapshot.dir()).await.unwrap();
    assert_eq!(reopened.meta(), snapshot.meta());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");

    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) = tokio::join!(restore(&snapshot, &dir_a), restore(&snapshot, &dir_b));
    for (vm, log) in [&a, &b] {
        let started = Instant::now();
        let tick = common::wait_for_tick(log, saved_tick + 3, TIMEOUT).await;
        eprintln!(
            "restored vm ticking at {tick} after {:?}",
            started.elapsed()
        );
        let first = common::ticks(log).into_iter().min().unwrap();
        assert!(
            first > saved_tick,
            "restored guest restarted at {first}, saved at {saved_tick}"
        );
        assert!(!std::fs::read_to_string(log)
            .unwrap()
            .contains("modules loaded"));
        // The agent port carries data again over the new VM's own socket.
        let socket = &vm.config().agent_socket;
        assert_eq!(common::agent_echo(socket, "after").await, "echo: after");
        vm.kill().await;
    }

    // The flattened disk holds what the guest wrote before the snapshot.
    let raw = dir.path().join("flat.raw");
    let convert = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(snapshot.disk_path().unwrap())
        .arg(&raw)
        .status()
        .unwrap();
    assert!(convert.success());
    let cat = Command::new("debugfs")
        .arg("-R")
        .arg("cat /written")
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "guest-wrote\n");
}

#[tokio::test]
async fn damaged_or_mismatched_snapshots_are_refused() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, _) = snapshot_counting_vm(dir.path()).await;
    let memory = snapshot.memory_path();
    let bytes = std::fs::read(&memory).unwrap();

    // A machine that differs from the saved one is refused before loading.
    let vm_dir = dir.path().join("bigger");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let mut config = snapshot.restore_config(common::config(&vm_dir));
    config.memory_mib *= 2;
    let vm = QemuVm::spawn(config).await.unwrap();
    let err = snapshot.restore(&vm).await.unwrap_err();
    assert!(
        matches!(err, SnapshotError::MachineMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("memory_mib was 256, is 512"),
        "{err}"
    );
    // The snapshot's disk is missing from this machine too.
    assert_eq!(vm.kill().await, ExitReason::Killed { signal: 9 });

    // One flipped byte: checksum mismatch naming the memory file.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&memory, &flipped).unwrap();
    let err = Snapshot::open(snapshot.dir()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("{MEMORY_FILE} is corrupt")),
        "{err}"
    );

    // The VM-level load also checks before feeding, and QEMU stays alive.
    let vm_dir = dir.path().join("flipped");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let mut config = snapshot.restore_config(common::config(&vm_dir));
    let overlay = vm_dir.join("vm.qcow2");
    disk::create_overlay(&snapshot.disk_path().unwrap(), &overlay)
        .await
        .unwrap();
    config.disks.push(Disk {
        path: overlay,
        format: DiskFormat::Qcow2,
        read_only: false,
    });
    let vm = QemuVm::spawn(config).await.unwrap();
    let err = snapshot.restore(&vm).await.unwrap_err();
    assert!(
        matches!(err, SnapshotError::Vm(VmError::ChecksumMismatch { .. })),
        "{err}: {:?}",
        std::error::Error::source(&err)
    );
    assert_eq!(vm.status().await.unwrap(), "inmigrate");

    // A stream whose checksum is right but whose header QEMU rejects ends
    // the call with QEMU's exit and message, not a hang. (The byte flipped
    // above, inside a RAM page, QEMU itself would load without noticing.)
    let mut garbage = bytes.clone();
    garbage[0] ^= 0xff;
    let garbage_path = dir.path().join("garbage");
    std::fs::write(&garbage_path, &garbage).unwrap();
    let expected = hearth_vmm::digest::hash_file(&garbage_path).unwrap().1;
    let err = vm.load_state(&garbage_path, &expected).await.unwrap_err();
    assert!(matches!(err, VmError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("exited with code 1"), "{err}");
    assert!(
        err.to_string().contains("migration"),
        "qemu's message missing: {err}"
    );

    // Truncated: a size mismatch naming the file.
    std::fs::write(&memory, &bytes[..bytes.len() - 4096]).unwrap();
    let err = Snapshot::open(snapshot.dir()).unwrap_err();
    assert!(matches!(err, SnapshotError::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("is truncated"), "{err}");

    // A damaged disk is named as the disk.
    std::fs::write(&memory, &bytes).unwrap();
    let disk = snapshot.disk_path().unwrap();
    let mut disk_bytes = std::fs::read(&disk).unwrap();
    disk_bytes[0] ^= 1;
    std::fs::write(&disk, &disk_bytes).unwrap();
    let err = Snapshot::open(snapshot.dir()).unwrap_err();
    assert!(
        err.to_string().contains(&format!("{DISK_FILE} is corrupt")),
        "{err}"
    );

    // A snapshot from another QEMU series is refused with both versions.
    disk_bytes[0] ^= 1;
    std::fs::write(&disk, &disk_bytes).unwrap();
    let meta_path = snapshot.dir().join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["qemu_version"]["minor"] = 99.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = Snapshot::open(snapshot.dir()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::IncompatibleQemu { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("saved by qemu 7.99."), "{err}");

    std::fs::remove_dir_all(snapshot.dir()).unwrap();
    let err = Snapshot::open(snapshot.dir()).unwrap_err();
    assert!(matches!(err, SnapshotError::NotFound(_)), "{err}");
}
