//! A VM's directory: its configuration, its recorded state and its sockets.
//!
//! ```text
//! <data>/vms/<id>/config.json   what to boot (written once, before the shim starts)
//!                 state.json    the shim's record of the VM, replaced atomically
//!                 disk.qcow2    the VM's own copy-on-write disk
//!                 console.log   the guest's serial console
//!                 shim.log      the shim's own log
//!                 shim.sock     clients connect here
//!                 qmp.sock      QEMU's monitor (the shim's alone)
//!                 agent.sock    the agent's channel (the shim's alone)
//!                 network.json  the VM's network namespace, while it has one
//! ```

use std::path::{Path, PathBuf};

use hearth_protocol::AppSpec;
use serde::{Deserialize, Serialize};

/// Paths inside one VM's directory.
#[derive(Clone, Debug)]
pub struct VmDir {
    root: PathBuf,
}

impl VmDir {
    /// The directory of VM `id` under the data directory.
    pub fn new(data: &Path, id: &str) -> VmDir {
        VmDir {
            root: data.join("vms").join(id),
        }
    }

    /// A VM directory at an explicit path.
    pub fn at(root: PathBuf) -> VmDir {
        VmDir { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The VM's id (the directory's name).
    pub fn id(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The VM's copy-on-write disk.
    pub fn disk(&self) -> PathBuf {
        self.root.join("disk.qcow2")
    }

    /// The guest's serial console log.
    pub fn console(&self) -> PathBuf {
        self.root.join("console.log")
    }

    /// The shim's own log.
    pub fn shim_log(&self) -> PathBuf {
        self.root.join("shim.log")
    }

    /// The socket clients connect to.
    pub fn shim_socket(&self) -> PathBuf {
        self.root.join("shim.sock")
    }

    /// QEMU's monitor socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.root.join("qmp.sock")
    }

    /// `network.json`: the VM's network namespace and uplink, while QEMU
    /// runs in one.
    pub fn network(&self) -> PathBuf {
        self.root.join("network.json")
    }

    /// The agent channel's socket.
    pub fn agent_socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }

    /// Whether `pid` is a live process of this VM (its shim or its QEMU): its
    /// command line names this directory. A recorded pid alone proves
    /// nothing after the process is gone and the number is reused.
    pub fn owns_process(&self, pid: u32) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let root = self.root.to_string_lossy();
        cmdline
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(root.as_ref()))
    }

    /// Kills (SIGKILL) the shim and QEMU that `state.json` records, those of
    /// them still running as this VM's.
    pub fn kill_processes(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;

        let Ok(state) = self.read_state() else { return };
        for pid in state.qemu_pid.into_iter().chain([state.shim_pid]) {
            if self.owns_process(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }

    /// Reads `config.json`.
    ///
    /// # Errors
    ///
    /// Fails when the file is missing or unreadable.
    pub fn read_config(&self) -> std::io::Result<VmConfig> {
        read_json(&self.config())
    }

    /// Reads `state.json`.
    ///
    /// # Errors
    ///
    /// Fails when the file is missing or unreadable.
    pub fn read_state(&self) -> std::io::Result<VmState> {
        read_json(&self.state())
    }

    /// Replaces `state.json` atomically.
    ///
    /// # Errors
    ///
    /// Fails when the directory is not writable.
    pub fn write_state(&self, state: &VmState) -> std::io::Result<()> {
        write_json_atomic(&self.state(), state)
    }

    /// Writes `config.json` atomically.
    ///
    /// # Errors
    ///
    /// Fails when the directory is not writable.
    pub fn write_config(&self, config: &VmConfig) -> std::io::Result<()> {
        write_json_atomic(&self.config(), config)
    }
}

/// What the shim boots or restores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmConfig {
    /// The VM's id.
    pub id: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs whose `/init` is the agent.
    pub initramfs: PathBuf,
    /// The app to start after boot, if any.
    #[serde(default)]
    pub app: Option<AppSpec>,
    /// A snapshot directory to restore instead of booting.
    #[serde(default)]
    pub restore_from: Option<PathBuf>,
    /// The guest's hostname.
    pub hostname: String,
    /// Where the accelerator probe caches its answer.
    pub accel_cache: PathBuf,
    /// The VM's network: a boot with `Some` gets a NIC in a network
    /// namespace of its own, and where its traffic may go; `None` boots
    /// without one. A restore has a NIC when its snapshot has one, with
    /// internet egress when this says nothing.
    #[serde(default)]
    pub network: Option<hearth_net::Egress>,
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    /// QEMU is starting or the agent has not answered yet.
    Starting,
    /// The agent answers.
    Running,
    /// A snapshot is being taken.
    Snapshotting,
    /// The VM is gone; `exit` says why.
    Exited,
}

/// The shim's record of its VM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmState {
    /// Where the VM is.
    pub status: VmStatus,
    /// The shim's pid.
    pub shim_pid: u32,
    /// QEMU's pid, once started.
    pub qemu_pid: Option<u32>,
    /// The accelerator in use (`tcg` or `kvm`).
    pub accel: Option<String>,
    /// Why the VM exited, once it has.
    pub exit: Option<String>,
    /// Boot (or restore) start, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Milliseconds from start until the agent answered.
    pub ready_ms: Option<u64>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|err| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {err}", path.display()),
        )
    })
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
