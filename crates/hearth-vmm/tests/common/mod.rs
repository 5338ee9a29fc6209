//! Shared fixtures of the VM tests: the guest assets (built once by
//! `guest/build-assets.sh` into `target/guest-test-assets`), a test
//! initramfs whose `/init` is a busybox script, and helpers that read the
//! script's output from the serial console.
//!
//! The script loads the modules listed in `/lib/modules/load-order`, mounts
//! `/dev/vda` if there is one (printing its `/hello` and writing `/written`),
//! then prints `tick N` every 100 ms. It answers each line sent on the agent
//! port with `echo: <line>`. With `hearth.test=poweroff` on the kernel
//! command line it powers off instead of counting.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hearth_vmm::{console, Accel, MachineConfig};

/// The guest assets the tests boot.
pub struct Assets {
    /// The kernel.
    pub kernel: PathBuf,
    /// The asset initramfs followed by the test overlay.
    pub initramfs: PathBuf,
    /// Where the assets live.
    pub dir: PathBuf,
}

const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m || echo "insmod $m failed"; done
echo "modules loaded"
if grep -q hearth.test=poweroff /proc/cmdline; then echo "powering off"; poweroff -f; fi
for port in /dev/vport*p1; do
    # Reads see end-of-file while no host is connected: poll until one is.
    ( exec 3<>"$port"; while true; do
        while read -r line <&3; do echo "echo: $line" >&3; done; usleep 50000
    done ) &
done
if [ -b /dev/vda ]; then
    mkdir -p /mnt && mount /dev/vda /mnt && echo "disk: $(cat /mnt/hello)"
    echo guest-wrote > /mnt/written && sync && echo "disk written"
fi
i=0
while true; do echo "tick $i"; i=$((i+1)); usleep 100000; done
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// Builds (or reuses) the guest assets; fails loudly when a tool is missing.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
        assert!(
            qemu.is_ok_and(|o| o.status.success()),
            "qemu-system-x86_64 is required for these tests (Debian package qemu-system-x86)"
        );
        let qemu_img = Command::new("qemu-img").arg("--version").output();
        assert!(
            qemu_img.is_ok(),
            "qemu-img is required (Debian package qemu-utils)"
        );
        assert!(
            Path::new("/bin/busybox").is_file(),
            "/bin/busybox is required (busybox-static)"
        );

        let dir = target_dir().join("guest-test-assets");
        let script = workspace_root().join("guest/build-assets.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg("/bin/busybox")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "guest/build-assets.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let initramfs = build_test_initramfs(&dir);
        Assets {
            kernel: dir.join("vmlinuz"),
            initramfs,
            dir,
        }
    })
}

/// The asset initramfs with a second archive appended that replaces /init
/// by the test script (the kernel unpacks concatenated archives in order).
fn build_test_initramfs(dir: &Path) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("init"), INIT_SCRIPT).unwrap();
    let chmod = Command::new("chmod")
        .arg("0755")
        .arg(root.join("init"))
        .status()
        .unwrap();
    assert!(chmod.success());

    let overlay = work.path().join("overlay.cpio.gz");
    let pack = format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 | gzip -1 > '{}'",
        root.display(),
        overlay.display()
    );
    let status = Command::new("sh").arg("-c").arg(&pack).status().unwrap();
    assert!(status.success(), "packing the test initramfs failed");

    let mut bytes = std::fs::read(dir.join("initramfs.cpio.gz")).unwrap();
    bytes.extend(std::fs::read(&overlay).unwrap());
    // Rename into place so that concurrent test processes never see half a file.
    let out = dir.join("test-initramfs.cpio.gz");
    let tmp = dir.join(format!("test-initramfs.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The accelerator the VM tests use: `HEARTH_ACCEL` if set, else TCG.
pub fn accel() -> Accel {
    match std::env::var("HEARTH_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    }
}

/// A config for the test guest with its sockets and log in `dir`.
pub fn config(dir: &Path) -> MachineConfig {
    let assets = assets();
    let mut config = MachineConfig::new(&assets.kernel, &assets.initramfs, dir, accel());
    config.memory_mib = 256;
    config
}

/// The numbers of all `tick N` lines in a console log.
pub fn ticks(log: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("tick "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The highest tick in a console log.
pub fn last_tick(log: &Path) -> Option<u64> {
    ticks(log).into_iter().max()
}

/// Waits until the log shows a tick of at least `at_least`.
pub async fn wait_for_tick(log: &Path, at_least: u64, timeout: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(tick) = last_tick(log).filter(|t| *t >= at_least) {
            return tick;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tick >= {at_least} within {timeout:?}; console: {}",
            console::tail(log, 5)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts logging for a test (once per process); `RUST_LOG` filters it.
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Sends one line over the agent socket and returns the guest's answer.
pub async fn agent_echo(socket: &Path, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await.unwrap();
        answer.trim_end().to_owned()
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("agent port answered")
}
