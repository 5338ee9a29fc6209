//! How a control plane is set up: where its files live, its region and
//! account, its endpoints, and the limits of the host it runs microVMs on.

use std::path::{Path, PathBuf};

/// The account ARNs name unless configured.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// The region unless configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A control plane's settings.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// The data directory: database, artifacts, snapshots, VM directories.
    pub data_dir: PathBuf,
    /// The guest assets: `vmlinuz`, `initramfs.cpio.gz`, `manifest.json`.
    pub assets_dir: PathBuf,
    /// The program that runs shims (`hearth`, with its `shim` subcommand).
    pub hearth_exe: PathBuf,
    /// The region ARNs name.
    pub region: String,
    /// The account ARNs name.
    pub account: String,
    /// Where microVM endpoints are reached.
    pub endpoint: EndpointConfig,
    /// The most memory a guest gets, in MiB, whatever its size class says.
    pub guest_memory_cap_mib: Option<u32>,
    /// The most guest memory all live microVMs may hold together, in MiB, on
    /// top of what the host has free.
    pub memory_budget_mib: Option<u64>,
}

/// How endpoint URLs are formed: `http://<microvm-id>.<domain>:<port>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The domain under which each microVM has a name.
    pub domain: String,
    /// The port of the HTTP ingress.
    pub port: u16,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
            port: 7080,
        }
    }
}

impl ControlConfig {
    /// Settings with the defaults for everything but the paths.
    pub fn new(data_dir: PathBuf, assets_dir: PathBuf, hearth_exe: PathBuf) -> Self {
        Self {
            data_dir,
            assets_dir,
            hearth_exe,
            region: DEFAULT_REGION.to_owned(),
            account: DEFAULT_ACCOUNT.to_owned(),
            endpoint: EndpointConfig::default(),
            guest_memory_cap_mib: None,
            memory_budget_mib: None,
        }
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("hearth.db")
    }

    /// The root of the artifact store (`<bucket>/<key>` below it).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Where an image version's files live.
    pub fn version_dir(&self, image_id: i64, version: u32) -> PathBuf {
        self.data_dir
            .join("images")
            .join(image_id.to_string())
            .join(version.to_string())
    }

    /// A build's scratch directory, removed when the build ends.
    pub fn build_dir(&self, build_id: &str) -> PathBuf {
        self.data_dir.join("builds").join(build_id)
    }

    /// Where a suspended microVM's snapshot is kept.
    pub fn suspended_dir(&self, microvm_id: &str) -> PathBuf {
        self.data_dir.join("suspended").join(microvm_id)
    }

    /// The key that signs endpoint and shell tokens.
    pub fn token_key(&self) -> PathBuf {
        self.data_dir.join("token-key")
    }

    /// The guest kernel.
    pub fn kernel(&self) -> PathBuf {
        self.assets_dir.join("vmlinuz")
    }

    /// The initramfs whose `/init` is the agent.
    pub fn initramfs(&self) -> PathBuf {
        self.assets_dir.join("initramfs.cpio.gz")
    }

    /// The assets' manifest.
    pub fn manifest(&self) -> PathBuf {
        self.assets_dir.join("manifest.json")
    }

    /// The accelerator probe's cache.
    pub fn accel_cache(&self) -> PathBuf {
        self.data_dir.join("accel.json")
    }

    /// The endpoint URL of a microVM.
    pub fn endpoint_url(&self, microvm_id: &str) -> String {
        format!(
            "http://{microvm_id}.{}:{}",
            self.endpoint.domain, self.endpoint.port
        )
    }

    /// What every VM launch needs.
    pub fn vm_host(&self) -> crate::pipeline::VmHost {
        crate::pipeline::VmHost {
            data: self.data_dir.clone(),
            kernel: self.kernel(),
            initramfs: self.initramfs(),
            accel_cache: self.accel_cache(),
            exe: self.hearth_exe.clone(),
        }
    }

    /// Whether the guest assets are in place.
    pub fn assets_present(&self) -> bool {
        [self.kernel(), self.initramfs()]
            .iter()
            .all(|p| Path::is_file(p))
    }
}
