//! A real QEMU microVM under the driver: boot, pause and resume, exits of
//! every kind, and calls on a VM whose QEMU is gone.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use hearth_vmm::qemu::VmError;
use hearth_vmm::qmp::QmpEventKind;
use hearth_vmm::{console, ExitReason, QemuVm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn booted_guest_counts_on_the_console_and_pauses() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    let log = config.console_log.clone();

    let started = Instant::now();
    let vm = QemuVm::spawn(config).await.unwrap();
    assert_eq!(
        vm.qemu_version().major,
        7,
        "tests are written against qemu 7.x"
    );
    common::wait_for_tick(&log, 0, BOOT_TIMEOUT).await;
    eprintln!("boot to first tick: {:?}", started.elapsed());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("modules loaded"));

    common::wait_for_tick(&log, 3, BOOT_TIMEOUT).await;
    let mut events = vm.subscribe();
    vm.pause().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), "paused");
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap();
    assert_eq!(event.unwrap().kind(), QmpEventKind::Stop);
    // Let a tick that was being printed land before sampling.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paused_at = common::last_tick(&log).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        common::last_tick(&log).unwrap(),
        paused_at,
        "the guest ran while paused"
    );

    vm.resume().await.unwrap();
    let resumed = common::wait_for_tick(&log, paused_at + 2, BOOT_TIMEOUT).await;

    // A saved VM may run on: QEMU goes from postmigrate back to running.
    let state = dir.path().join("memory");
    let info = vm.save_state(&state).await.unwrap();
    assert_eq!(std::fs::metadata(&state).unwrap().len(), info.bytes);
    assert_eq!(vm.status().await.unwrap(), "postmigrate");
    vm.resume().await.unwrap();
    common::wait_for_tick(&log, resumed + 2, BOOT_TIMEOUT).await;

    assert_eq!(vm.quit().await, ExitReason::QmpQuit);
}

#[tokio::test]
async fn dropping_a_vm_kills_its_qemu() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let vm = QemuVm::spawn(common::config(dir.path())).await.unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", vm.pid()));
    assert!(proc_dir.exists());

    drop(vm);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_dir.exists() {
        assert!(Instant::now() < deadline, "qemu outlived its QemuVm");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigkill_is_reported_promptly_and_later_calls_fail_cleanly() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    let vm = QemuVm::spawn(config).await.unwrap();

    let pid = nix::unistd::Pid::from_raw(vm.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let started = Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(5), vm.wait())
        .await
        .unwrap();
    assert_eq!(reason, ExitReason::Killed { signal: 9 });
    assert_eq!(reason.to_string(), "killed by signal 9");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let err = tokio::time::timeout(Duration::from_secs(5), vm.pause())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, VmError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("killed by signal 9"), "{err}");
    let err = vm.save_state(&dir.path().join("memory")).await.unwrap_err();
    assert!(matches!(err, VmError::Exited { .. }), "{err}");
    assert!(!dir.path().join("memory").exists() && !dir.path().join("memory.tmp").exists());
}

#[tokio::test]
async fn guest_poweroff_ends_qemu_with_that_reason() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.cmdline = "hearth.test=poweroff".into();
    let log = config.console_log.clone();

    let vm = QemuVm::spawn(config).await.unwrap();
    let reason = tokio::time::timeout(BOOT_TIMEOUT, vm.wait()).await.unwrap();
    assert_eq!(
        reason,
        ExitReason::GuestPoweroff,
        "console: {}",
        console::tail(&log, 5)
    );
}

#[tokio::test]
async fn qemu_that_cannot_start_says_why() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    // More vCPUs than microvm allows makes QEMU exit at once.
    config.vcpus = 100_000;

    let err = QemuVm::spawn(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VmError::Exited { .. }), "{text}");
    assert!(text.contains("exited with code 1"), "{text}");
    assert!(
        text.contains("qemu-system-x86_64"),
        "stderr missing: {text}"
    );
}
