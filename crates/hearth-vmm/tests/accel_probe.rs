//! The accelerator probe against the real kernel and QEMU: it decides
//! within its bound, and a KVM verdict is only given when KVM boots Linux.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use hearth_vmm::accel::{self, ChoiceSource, DEFAULT_PROBE_TIMEOUT};
use hearth_vmm::{console, Accel, QemuVm};

#[tokio::test]
async fn probe_decides_within_its_bound_and_is_cached() {
    common::init_logging();
    let assets = common::assets();
    let started = Instant::now();
    let choice = accel::probe(&assets.kernel, &assets.initramfs, DEFAULT_PROBE_TIMEOUT).await;
    let took = started.elapsed();
    eprintln!(
        "probe chose {} in {took:?}: {}",
        choice.accel, choice.reason
    );

    // The bound, plus QEMU's own startup and teardown.
    assert!(
        took < DEFAULT_PROBE_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(choice.source, ChoiceSource::Probe);
    assert!(!choice.reason.is_empty());
    if choice.accel == Accel::Kvm {
        // A KVM verdict must hold: the test guest boots under KVM.
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::config(dir.path());
        config.accel = Accel::Kvm;
        let log = config.console_log.clone();
        let vm = QemuVm::spawn(config).await.unwrap();
        console::wait_for(&log, "tick 1", Duration::from_secs(30))
            .await
            .unwrap();
        vm.kill().await;
    }

    // A cached answer is served without booting anything.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("accel.json");
    std::fs::write(&cache, serde_json::to_vec(&choice).unwrap()).unwrap();
    let started = Instant::now();
    let cached = accel::choose_accel(
        &assets.kernel,
        &assets.initramfs,
        &cache,
        DEFAULT_PROBE_TIMEOUT,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(cached.accel, choice.accel);
    let expected_source = match std::env::var("HEARTH_ACCEL").as_deref() {
        Ok("kvm" | "tcg") => ChoiceSource::Env,
        _ => ChoiceSource::Cache,
    };
    assert_eq!(cached.source, expected_source);
}
