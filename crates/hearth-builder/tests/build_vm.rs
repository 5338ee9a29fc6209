//! RUN steps in real build microVMs (QEMU, the guest kernel and the agent
//! from `$HEARTH_ASSETS`), on a busybox root filesystem seeded from the host.
//! Skipped when the assets are missing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hearth_builder::events::BuildEvent;
use hearth_builder::runner::{OutputSink, StepRunner};
use hearth_builder::seed::seed_busybox;
use hearth_builder::store::ImageStore;
use hearth_builder::vm::BuildVmConfig;
use hearth_builder::vm_runner::VmRunner;

fn assets() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HEARTH_ASSETS")?);
    dir.join("vmlinuz").is_file().then_some(dir)
}

fn runner(assets: &Path, work: &Path) -> VmRunner {
    std::env::set_var("HEARTH_ACCEL", "tcg");
    let config = BuildVmConfig {
        kernel: assets.join("vmlinuz"),
        initramfs: assets.join("initramfs.cpio.gz"),
        accel_cache: work.join("accel.json"),
        vcpus: 1,
        memory_mib: 256,
        network: true,
    };
    VmRunner::new(config, work.join("vms"))
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[tokio::test]
async fn a_run_step_changes_the_root_directory_as_the_command_left_it() {
    let Some(assets) = assets() else {
        eprintln!("skipped: HEARTH_ASSETS has no guest assets");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let image = seed_busybox(&store).unwrap();
    let rootfs = dir.path().join("rootfs");
    hearth_builder::fsutil::copy_tree(&image.rootfs, &rootfs).unwrap();
    let runner = runner(&assets, dir.path());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let script = "echo made >/new; rm /etc/group; mkdir -p /a/b; ln /new /a/b/hard; \
                  chown 65534:65534 /a; chmod 0700 /a; cat /etc/resolv.conf; \
                  echo to-stderr >&2; pwd; id -u";
    let outcome = runner
        .run(
            &rootfs,
            sh(script),
            vec![("PATH".into(), "/bin:/usr/bin".into())],
            "/tmp".into(),
            "root".into(),
            OutputSink::for_tests(7, tx),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    // stdout and stderr travel apart: each keeps its own order.
    let stdout: Vec<&str> = outcome
        .output_tail
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "to-stderr")
        .collect();
    assert_eq!(stdout, vec!["nameserver 10.0.2.3", "/tmp", "0"]);
    assert!(outcome.output_tail.contains(&"to-stderr".to_owned()));
    let mut lines = Vec::new();
    while let Ok(BuildEvent::Output { step, line }) = rx.try_recv() {
        assert_eq!(step, 7);
        lines.push(line);
    }
    assert_eq!(lines, outcome.output_tail);

    assert_eq!(fs::read_to_string(rootfs.join("new")).unwrap(), "made\n");
    assert!(!rootfs.join("etc/group").exists(), "the removal came back");
    assert!(rootfs.join("etc/passwd").exists());
    assert!(
        !rootfs.join("etc/resolv.conf").exists(),
        "the injected DNS stays out of the image"
    );
    let new = fs::metadata(rootfs.join("new")).unwrap();
    assert_eq!(
        new.ino(),
        fs::metadata(rootfs.join("a/b/hard")).unwrap().ino()
    );
    let a = fs::metadata(rootfs.join("a")).unwrap();
    assert_eq!((a.uid(), a.mode() & 0o7777), (65534, 0o700));
    assert!(!rootfs.join("proc/self").exists());
    assert!(
        fs::read_dir(dir.path().join("vms"))
            .unwrap()
            .next()
            .is_none(),
        "the vm's files are gone"
    );
}

#[tokio::test]
async fn a_failing_run_step_reports_its_code_and_leaves_the_root_untouched() {
    let Some(assets) = assets() else {
        eprintln!("skipped: HEARTH_ASSETS has no guest assets");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let image = seed_busybox(&store).unwrap();
    let rootfs = dir.path().join("rootfs");
    hearth_builder::fsutil::copy_tree(&image.rootfs, &rootfs).unwrap();
    let runner = runner(&assets, dir.path());

    let outcome = runner
        .run(
            &rootfs,
            sh("touch /made; echo failing; exit 3"),
            Vec::new(),
            "/".into(),
            "nobody".into(),
            OutputSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(
        outcome.output_tail.last().map(String::as_str),
        Some("failing")
    );
    assert!(!rootfs.join("made").exists());

    let outcome = runner
        .run(
            &rootfs,
            vec!["no-such-program".into()],
            Vec::new(),
            "/".into(),
            "root".into(),
            OutputSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 127);
    assert_eq!(
        outcome.output_tail,
        vec!["exec no-such-program: No such file or directory"]
    );
}
