//! Shared harness for tests that boot real VMs through the `hearth` binary.
//!
//! Every test gets its own data directory; all share the guest assets that
//! `scripts/test.sh` builds (`HEARTH_ASSETS`) and a busybox root filesystem
//! (`HEARTH_TEST_ROOTFS`). VMs a test boots are removed when it ends, even
//! when it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One test's hearth: a data directory and the VMs booted in it.
pub struct Hearth {
    pub data: tempfile::TempDir,
    pub assets: PathBuf,
    pub rootfs: PathBuf,
    accel: Option<&'static str>,
}

fn env_path(name: &str) -> PathBuf {
    let value = std::env::var_os(name).unwrap_or_else(|| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, which builds the guest assets"
        )
    });
    PathBuf::from(value)
}

impl Hearth {
    /// A fresh data directory, with the accelerator fixed to TCG so that each
    /// test does not repeat the probe.
    pub fn new() -> Hearth {
        let assets = env_path("HEARTH_ASSETS");
        let rootfs = env_path("HEARTH_TEST_ROOTFS");
        assert!(
            assets.join("vmlinuz").is_file(),
            "no guest kernel in {}",
            assets.display()
        );
        assert!(
            rootfs.join("bin/busybox").is_file(),
            "no busybox rootfs in {}",
            rootfs.display()
        );
        let data = tempfile::Builder::new()
            .prefix("hearth-test-")
            .tempdir()
            .expect("temp dir");
        Hearth {
            data,
            assets,
            rootfs,
            accel: Some("tcg"),
        }
    }

    /// Like [`Hearth::new`], but the accelerator is probed.
    pub fn probing() -> Hearth {
        let mut hearth = Hearth::new();
        hearth.accel = None;
        hearth
    }

    /// A `hearth` command in this data directory.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.env("HEARTH_DATA", self.data.path())
            .env("HEARTH_ASSETS", &self.assets);
        match self.accel {
            Some(accel) => cmd.env("HEARTH_ACCEL", accel),
            None => cmd.env_remove("HEARTH_ACCEL"),
        };
        cmd
    }

    /// Runs `hearth ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("hearth runs")
    }

    /// Runs `hearth ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hearth {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Boots a busybox VM running `cmd` (if any) and returns its id.
    pub fn boot(&self, cmd: Option<&str>) -> String {
        let rootfs = self.rootfs.to_str().expect("utf-8 path");
        let mut args = vec![
            "vm", "boot", "--rootfs", rootfs, "--memory", "256", "--disk", "256",
        ];
        if let Some(cmd) = cmd {
            args.extend(["--cmd", cmd]);
        }
        self.ok(&args).trim().to_owned()
    }

    /// Runs a command in a VM and returns (exit code, stdout, stderr).
    pub fn exec(&self, id: &str, argv: &[&str]) -> (i32, String, String) {
        let mut args = vec!["vm", "exec", id, "--"];
        args.extend_from_slice(argv);
        let out = self
            .cmd()
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("exec");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// The stdout of a command that must succeed in the VM.
    pub fn sh(&self, id: &str, script: &str) -> String {
        let (code, out, err) = self.exec(id, &["sh", "-c", script]);
        assert_eq!(code, 0, "`{script}` in {id} failed: {err}");
        out
    }

    /// The VM's directory.
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.data.path().join("vms").join(id)
    }

    /// The VM's recorded state.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.vm_dir(id).join("state.json")).expect("state.json");
        serde_json::from_slice(&bytes).expect("state json")
    }

    /// The guest kernel release the assets hold.
    pub fn kernel_release(&self) -> String {
        let bytes = std::fs::read(self.assets.join("manifest.json")).expect("manifest");
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest json");
        manifest["kernel_release"]
            .as_str()
            .expect("kernel_release")
            .to_owned()
    }

    /// Waits until `check` returns Some, or panics after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Path of a file in the test's data directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        // Remove every VM this test booted, whatever state it is in.
        let vms = self.data.path().join("vms");
        let Ok(entries) = std::fs::read_dir(&vms) else {
            return;
        };
        for entry in entries.flatten() {
            if std::thread::panicking() {
                print_logs(&entry.path());
            }
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = self.cmd().args(["vm", "rm", &id]).output();
            hearth_shim::VmDir::at(entry.path()).kill_processes();
        }
    }
}

/// Prints a VM's console and shim logs, for a failing test's output.
fn print_logs(dir: &Path) {
    for name in ["console.log", "shim.log", "state.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("--- {} ---", dir.join(name).display());
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}
