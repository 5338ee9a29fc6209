//! Shared harness for the image build tests: real build microVMs, the real
//! `hearth` binary, a base-image store seeded once per machine and shared.
//!
//! The store (`debian:12` by debootstrap, `busybox` from the host) lives in
//! `<target>/tmp/image-fixtures/base-images`, or in the data directory that
//! `$HEARTH_TEST_SEED_DATA` names; the first test to need it seeds it (under
//! a file lock, `hearth image seed`), later ones find it ready. Each test gets its own
//! data directory whose `base-images` is a link to that store, so its builds,
//! cache and VMs are its own. VMs a test leaves are removed when it ends.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hearth_protocol::{Event, CHAN_STDIO};
use hearth_shim::launch::{self, Host};
use hearth_shim::{ShimClient, VmDir};

/// The data directory whose `base-images` the tests share:
/// `$HEARTH_TEST_SEED_DATA` (set by `scripts/test.sh` to the data directory
/// its set-up seeded), else `<target>/tmp/image-fixtures`.
fn fixtures() -> PathBuf {
    match std::env::var_os("HEARTH_TEST_SEED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-fixtures"),
    }
}

/// The shared base-image store, seeded on first use.
pub fn seeded_store() -> PathBuf {
    let dir = fixtures();
    fs::create_dir_all(&dir).expect("fixtures dir");
    let lock = fs::File::create(dir.join("seed.lock")).expect("lock file");
    // Held until the end of this function: one seeding at a time.
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("lock the fixtures");

    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["image", "seed"])
        .env("HEARTH_DATA", &dir)
        .output()
        .expect("hearth image seed runs");
    assert!(
        out.status.success(),
        "hearth image seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("base-images")
}

/// One test's hearth for image builds.
pub struct ImageHearth {
    pub data: tempfile::TempDir,
    pub assets: PathBuf,
}

impl ImageHearth {
    /// A fresh data directory on the shared store.
    pub fn new() -> ImageHearth {
        let assets = PathBuf::from(std::env::var_os("HEARTH_ASSETS").unwrap_or_else(|| {
            panic!("HEARTH_ASSETS is not set: run the tests with scripts/test.sh")
        }));
        assert!(
            assets.join("vmlinuz").is_file(),
            "no guest kernel in {}",
            assets.display()
        );
        let store = seeded_store();
        let data = tempfile::Builder::new()
            .prefix("img-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("data dir");
        std::os::unix::fs::symlink(&store, data.path().join("base-images")).expect("link store");
        // Shims started in-process (launch::restore) inherit it.
        std::env::set_var("HEARTH_ACCEL", "tcg");
        ImageHearth { data, assets }
    }

    /// A `hearth` command in this data directory.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.env("HEARTH_DATA", self.data.path())
            .env("HEARTH_ASSETS", &self.assets)
            .env("HEARTH_ACCEL", "tcg")
            .env_remove("HEARTH_REGISTRY_AUTH");
        cmd
    }

    /// Runs `hearth image build SOURCE --name NAME ARGS…` (with 256 MiB
    /// unless the arguments say otherwise).
    pub fn build(&self, source: &Path, name: &str, args: &[&str]) -> Output {
        let memory: &[&str] = match args.contains(&"--memory") {
            true => &[],
            false => &["--memory", "256"],
        };
        let out = self
            .cmd()
            .args(["image", "build"])
            .arg(source)
            .args(["--name", name])
            .args(memory)
            .args(args)
            .output()
            .expect("hearth image build runs");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// A build that must succeed; returns the version's directory.
    pub fn build_ok(&self, source: &Path, name: &str, args: &[&str]) -> PathBuf {
        let out = self.build(source, name, args);
        assert!(out.status.success(), "the build of {name} failed");
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            dir.join("snapshot/meta.json").is_file(),
            "no snapshot in {}",
            dir.display()
        );
        dir
    }

    /// A build that must fail; returns the reason hearth printed.
    pub fn build_fails(&self, source: &Path, name: &str, args: &[&str]) -> String {
        let out = self.build(source, name, args);
        assert!(!out.status.success(), "the build of {name} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .find_map(|l| l.strip_prefix("hearth: "))
            .unwrap_or_else(|| panic!("no reason in: {stderr}"));
        reason.to_owned()
    }

    /// A version's image.json.
    pub fn record(&self, dir: &Path) -> serde_json::Value {
        let bytes = fs::read(dir.join("image.json")).expect("image.json");
        serde_json::from_slice(&bytes).expect("image.json parses")
    }

    /// The cache status of each file-system step of a version's build.
    pub fn cache_statuses(&self, dir: &Path) -> Vec<(String, String)> {
        let record = self.record(dir);
        record["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["cache"] != "not_cached")
            .map(|s| {
                let instruction = s["instruction"].as_str().unwrap_or_default();
                let keyword = instruction.split_whitespace().next().unwrap_or_default();
                (
                    keyword.to_owned(),
                    s["cache"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Asserts that a failed build of `name` left nothing: no version, no
    /// staging, no scratch, no VM.
    pub fn assert_clean(&self, name: &str) {
        let data = self.data.path();
        assert!(
            !data.join("images").join(name).exists(),
            "the image directory is left"
        );
        for dir in ["builds", "vms"] {
            let left: Vec<_> = fs::read_dir(data.join(dir))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{dir}/ still holds {left:?}");
        }
    }

    /// Restores a microVM from a built version, as the control plane does.
    pub async fn restore(&self, version: &Path) -> VmDir {
        let record = self.record(version);
        let path = |key: &str| PathBuf::from(record["base"][key].as_str().expect("base path"));
        let host = Host {
            data: self.data.path().to_path_buf(),
            kernel: path("kernel"),
            initramfs: path("initramfs"),
            accel_cache: self.data.path().join("accel.json"),
            exe: PathBuf::from(env!("CARGO_BIN_EXE_hearth")),
        };
        launch::restore(&host, &version.join("snapshot"))
            .await
            .expect("restore from the built snapshot")
    }

    /// Runs a command in a VM; returns (exit code, stdout).
    pub fn exec(&self, vm: &VmDir, argv: &[&str]) -> (i32, String) {
        let out = self
            .cmd()
            .args(["vm", "exec", &vm.id(), "--"])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("hearth vm exec runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for ImageHearth {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.data.path().join("vms")) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = self.cmd().args(["vm", "rm", &id]).output();
            hearth_shim::VmDir::at(entry.path()).kill_processes();
        }
    }
}

/// `GET path` on a guest port through the agent's tunnel: (status, body).
pub async fn http_get(vm: &VmDir, port: u16, path: &str) -> (u16, String) {
    let client = ShimClient::connect(vm).await.expect("connect to the shim");
    let stream = client.tunnel(port).await.expect("tunnel to the app");
    let (tx, mut rx) = stream.split();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tx.data(CHAN_STDIO, request.as_bytes()).await.expect("send");

    let mut response = Vec::new();
    let read = async {
        loop {
            match rx.recv().await {
                Event::Data { bytes, .. } => response.extend_from_slice(&bytes),
                Event::Eof { .. } | Event::Closed { .. } => return,
                Event::Control(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("a response in time");
    tx.close(None);

    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Writes a build context: `files` as (path, content) under a new directory.
pub fn context(parent: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = parent.join(name);
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, content).expect("write");
    }
    dir
}

/// Writes a zip of `entries` (name, bytes), deflated, at `path`.
pub fn zip_file(path: &Path, entries: &[(&str, &[u8])]) {
    use std::io::Write;
    let file = fs::File::create(path).expect("zip file");
    let mut writer = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        writer.start_file(*name, options).expect("zip entry");
        writer.write_all(data).expect("zip data");
    }
    writer.finish().expect("zip written");
}
