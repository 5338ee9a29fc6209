//! The QEMU driver: one `qemu-system-x86_64 -M microvm` process per VM,
//! controlled over QMP.
//!
//! [`QemuVm::spawn`] starts QEMU, connects QMP and records the QEMU version
//! and the [`MachineSpec`] a saved state will depend on. Every later call is
//! bounded in time and raced against the process's exit, so a QEMU that dies
//! mid-call yields [`VmError::Exited`] instead of a hang. Dropping a
//! [`QemuVm`] kills its QEMU.

mod config;
mod migrate;
mod process;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

pub use config::{
    Disk, DiskFormat, MachineConfig, MachineSpec, Network, QemuVersion, AGENT_PORT_NAME,
    BASE_CMDLINE,
};
pub use migrate::StateInfo;
pub use process::ExitReason;

use crate::qmp::{QmpClient, QmpError, QmpEvent};
use process::{ShutdownRecord, StderrTail};

/// The QEMU binary used unless told otherwise.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// How long QEMU may take to create its QMP socket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The bound on an ordinary QMP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `quit` waits for QEMU to exit before killing it.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest unix socket path the kernel accepts, with its NUL.
const SUN_PATH_MAX: usize = 108;

/// Errors of the QEMU driver.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file the VM needs is missing.
    #[error("{what} not found at {path}")]
    MissingFile {
        /// What the file is for.
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },

    /// A socket path is longer than a unix socket address allows.
    #[error("socket path too long ({len} bytes, at most {max}): {path}")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// QEMU could not be started.
    #[error("cannot start {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// QEMU exited while the driver was waiting on it.
    #[error("qemu exited ({reason}) during {during}: {stderr}")]
    Exited {
        /// What the driver was doing.
        during: &'static str,
        /// Why QEMU ended.
        reason: ExitReason,
        /// The last lines QEMU wrote to stderr.
        stderr: String,
    },

    /// QEMU did not answer in time.
    #[error("{during} did not finish within {after:?}")]
    Timeout {
        /// What the driver was doing.
        during: &'static str,
        /// The bound that passed.
        after: Duration,
    },

    /// A QMP exchange failed.
    #[error("qmp {command} failed")]
    Qmp {
        /// The command.
        command: String,
        /// The underlying error.
        #[source]
        source: QmpError,
    },

    /// QMP answered with something the driver did not expect.
    #[error("unexpected qmp reply to {command}: {reply}")]
    UnexpectedReply {
        /// The command.
        command: &'static str,
        /// The reply.
        reply: String,
    },

    /// A migration (save or load) failed inside QEMU.
    #[error("migration failed with status {status}: {detail}")]
    Migration {
        /// The final migration status.
        status: String,
        /// QEMU's error description, if any.
        detail: String,
    },

    /// Reading or writing a state file failed.
    #[error("state file i/o failed on {path}")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A state file's checksum is not the expected one.
    #[error("state file {path} is corrupt: blake3 {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The expected BLAKE3 hex.
        expected: String,
        /// The BLAKE3 hex found.
        actual: String,
    },

    /// `load_state` on a VM that was not started with `incoming`.
    #[error("the vm was not started to receive a state (incoming is false)")]
    NotIncoming,
}

/// A running QEMU microVM.
#[derive(Debug)]
pub struct QemuVm {
    pid: u32,
    config: MachineConfig,
    version: QemuVersion,
    qmp: QmpClient,
    exit: watch::Receiver<Option<ExitReason>>,
    events: broadcast::Sender<QmpEvent>,
    stderr: StderrTail,
}

impl QemuVm {
    /// Starts QEMU from [`DEFAULT_QEMU`] on `PATH`; see [`QemuVm::spawn_with`].
    ///
    /// # Errors
    ///
    /// As [`QemuVm::spawn_with`].
    pub async fn spawn(config: MachineConfig) -> Result<QemuVm, VmError> {
        QemuVm::spawn_with(Path::new(DEFAULT_QEMU), config).await
    }

    /// Starts `binary` with the machine of `config`, connects QMP and reads
    /// QEMU's version. The VM runs at once unless `config.incoming` is set.
    ///
    /// # Errors
    ///
    /// [`VmError::MissingFile`] or [`VmError::SocketPathTooLong`] before
    /// anything starts; [`VmError::Spawn`] when QEMU cannot be executed;
    /// [`VmError::Exited`] when it dies during startup (its stderr says why);
    /// [`VmError::Timeout`] when QMP does not come up.
    pub async fn spawn_with(binary: &Path, config: MachineConfig) -> Result<QemuVm, VmError> {
        check_files(&config)?;
        for socket in [&config.qmp_socket, &config.agent_socket] {
            // A stale socket would let the connect below reach nobody.
            let _ = std::fs::remove_file(socket);
        }

        // `ip netns exec` enters the namespace and executes QEMU in place,
        // so the pid is QEMU's.
        let mut command = match &config.netns {
            Some(netns) => {
                let mut command = tokio::process::Command::new("ip");
                command.args(["netns", "exec", netns.as_str()]).arg(binary);
                command
            }
            None => tokio::process::Command::new(binary),
        };
        command
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| VmError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, accel = %config.accel, incoming = config.incoming, "qemu started");

        // The watchers own the child from here; see `process`.
        let stderr = StderrTail::default();
        let stderr_done = match child.stderr.take() {
            Some(pipe) => tokio::spawn(process::read_stderr(pipe, stderr.clone(), pid)),
            None => tokio::spawn(async {}),
        };
        let (closed_tx, closed_rx) = watch::channel(());
        let (exit_tx, exit) = watch::channel(None);
        let record = ShutdownRecord::default();
        tokio::spawn(process::watch_exit(
            child,
            stderr_done,
            closed_rx,
            record.clone(),
            exit_tx,
        ));

        let (events, _) = broadcast::channel(256);
        let qmp = match connect_qmp(&config.qmp_socket, &exit).await {
            Ok((qmp, stream)) => {
                tokio::spawn(process::pump_events(
                    stream,
                    record,
                    events.clone(),
                    closed_tx,
                ));
                qmp
            }
            Err(error) => {
                drop(closed_tx);
                return Err(startup_failure(error, pid, &exit, &stderr).await);
            }
        };

        let mut vm = QemuVm {
            pid,
            config,
            version: QemuVersion {
                major: 0,
                minor: 0,
                micro: 0,
                package: String::new(),
            },
            qmp,
            exit,
            events,
            stderr,
        };
        vm.version = vm.query_version().await?;
        tracing::debug!(pid, version = %vm.version, "qmp ready");
        Ok(vm)
    }

    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The config this VM was started with.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The machine as a saved state sees it.
    pub fn spec(&self) -> MachineSpec {
        self.config.spec()
    }

    /// The version of the running QEMU.
    pub fn qemu_version(&self) -> &QemuVersion {
        &self.version
    }

    /// A new subscription to QMP events (`SHUTDOWN`, `STOP`, `RESUME`,
    /// `MIGRATION`, ...). Events sent before subscribing are not replayed.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs a QMP command, bounded in time and by the process's life.
    ///
    /// # Errors
    ///
    /// [`VmError::Qmp`] when QEMU refuses it, [`VmError::Exited`] when QEMU
    /// is gone, [`VmError::Timeout`] after 30 s.
    pub async fn execute(&self, command: &str, args: Option<Value>) -> Result<Value, VmError> {
        self.execute_within(command, args, COMMAND_TIMEOUT).await
    }

    async fn execute_within(
        &self,
        command: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, VmError> {
        let reply = tokio::select! {
            reply = tokio::time::timeout(timeout, self.qmp.execute(command, args)) => reply,
            reason = self.wait() => return Err(self.exited("a qmp command", reason)),
        };
        match reply {
            Ok(Ok(value)) => Ok(value),
            // A dying QEMU shows first as a broken QMP socket; its exit
            // says more than the socket error.
            Ok(Err(source @ (QmpError::Disconnected | QmpError::Io(_)))) => {
                match tokio::time::timeout(Duration::from_secs(2), self.wait()).await {
                    Ok(reason) => Err(self.exited("a qmp command", reason)),
                    Err(_) => Err(VmError::Qmp {
                        command: command.to_owned(),
                        source,
                    }),
                }
            }
            Ok(Err(source)) => Err(VmError::Qmp {
                command: command.to_owned(),
                source,
            }),
            Err(_) => Err(VmError::Timeout {
                during: "a qmp command",
                after: timeout,
            }),
        }
    }

    /// The run state QEMU reports (`running`, `paused`, `inmigrate`,
    /// `postmigrate`, ...).
    ///
    /// # Errors
    ///
    /// As [`QemuVm::execute`].
    pub async fn status(&self) -> Result<String, VmError> {
        let reply = self.execute("query-status", None).await?;
        reply
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| VmError::UnexpectedReply {
                command: "query-status",
                reply: reply.to_string(),
            })
    }

    /// Stops the vCPUs.
    ///
    /// # Errors
    ///
    /// As [`QemuVm::execute`].
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn pause(&self) -> Result<(), VmError> {
        self.execute("stop", None).await.map(drop)
    }

    /// Runs the vCPUs again (QMP `cont`); also starts a VM whose state was
    /// just loaded.
    ///
    /// # Errors
    ///
    /// As [`QemuVm::execute`].
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn resume(&self) -> Result<(), VmError> {
        self.execute("cont", None).await.map(drop)
    }

    /// Asks QEMU to exit and waits for it, killing it if it takes longer
    /// than 10 s.
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn quit(&self) -> ExitReason {
        if self.has_exited() {
            return self.wait().await;
        }
        // The reply may be lost when QEMU exits first; the exit is what counts.
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.qmp.execute("quit", None)).await;
        match tokio::time::timeout(QUIT_TIMEOUT, self.wait()).await {
            Ok(reason) => reason,
            Err(_) => {
                tracing::warn!(pid = self.pid, "qemu ignored quit; killing it");
                self.kill().await
            }
        }
    }

    /// Kills QEMU with SIGKILL and waits for the process to end.
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn kill(&self) -> ExitReason {
        self.signal_kill();
        self.wait().await
    }

    /// Waits until QEMU has exited, and says why.
    pub async fn wait(&self) -> ExitReason {
        let mut exit = self.exit.clone();
        let reason = match exit.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(ExitReason::Unknown),
            Err(_) => ExitReason::Unknown,
        };
        reason
    }

    /// Whether QEMU has exited (and its exit was processed).
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn signal_kill(&self) {
        if self.has_exited() || self.pid == 0 {
            return;
        }
        // The child is reaped only by our watcher, so the pid is still ours.
        if let Err(error) = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL) {
            tracing::debug!(pid = self.pid, %error, "kill failed");
        }
    }

    fn exited(&self, during: &'static str, reason: ExitReason) -> VmError {
        VmError::Exited {
            during,
            reason,
            stderr: self.stderr.text(),
        }
    }

    async fn query_version(&self) -> Result<QemuVersion, VmError> {
        let reply = self.execute("query-version", None).await?;
        let unexpected = || VmError::UnexpectedReply {
            command: "query-version",
            reply: reply.to_string(),
        };
        let mut version: QemuVersion =
            serde_json::from_value(reply["qemu"].clone()).map_err(|_| unexpected())?;
        version.package = reply["package"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(version)
    }

    /// Races `fut` against QEMU's exit and a bound.
    pub(crate) async fn bounded<T>(
        &self,
        during: &'static str,
        bound: Duration,
        fut: impl std::future::Future<Output = Result<T, VmError>>,
    ) -> Result<T, VmError> {
        tokio::select! {
            result = tokio::time::timeout(bound, fut) => match result {
                Ok(result) => result,
                Err(_) => Err(VmError::Timeout { during, after: bound }),
            },
            reason = self.wait() => Err(self.exited(during, reason)),
        }
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.signal_kill();
    }
}

fn check_files(config: &MachineConfig) -> Result<(), VmError> {
    let mut files = vec![("kernel", &config.kernel), ("initramfs", &config.initramfs)];
    files.extend(config.disks.iter().map(|d| ("disk image", &d.path)));
    for (what, path) in files {
        if !path.is_file() {
            return Err(VmError::MissingFile {
                what,
                path: path.clone(),
            });
        }
    }

    for socket in [&config.qmp_socket, &config.agent_socket] {
        let len = socket.as_os_str().len();
        if len >= SUN_PATH_MAX {
            return Err(VmError::SocketPathTooLong {
                path: socket.clone(),
                len,
                max: SUN_PATH_MAX - 1,
            });
        }
    }
    Ok(())
}

/// Connects to the QMP socket as soon as QEMU has made it.
async fn connect_qmp(
    path: &Path,
    exit: &watch::Receiver<Option<ExitReason>>,
) -> Result<(QmpClient, tokio::sync::mpsc::UnboundedReceiver<QmpEvent>), VmError> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        if exit.borrow().is_some() {
            return Err(VmError::Exited {
                during: "startup",
                reason: ExitReason::Unknown,
                stderr: String::new(),
            });
        }
        match QmpClient::connect(path).await {
            Ok(connected) => return Ok(connected),
            Err(QmpError::Connect { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(QmpError::Connect { .. }) => {
                return Err(VmError::Timeout {
                    during: "qmp startup",
                    after: STARTUP_TIMEOUT,
                });
            }
            Err(source) => {
                return Err(VmError::Qmp {
                    command: "qmp_capabilities".into(),
                    source,
                });
            }
        }
    }
}

/// The error to report for a failed startup, with QEMU killed. A QEMU
/// that dies by itself explains itself best: its exit and stderr.
async fn startup_failure(
    error: VmError,
    pid: u32,
    exit: &watch::Receiver<Option<ExitReason>>,
    stderr: &StderrTail,
) -> VmError {
    let mut exit = exit.clone();
    // A QEMU that broke the QMP handshake is usually already dying.
    let grace = Duration::from_secs(1);
    let died = tokio::time::timeout(grace, exit.wait_for(Option::is_some))
        .await
        .is_ok();
    if !died {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        return error;
    }

    let reason = exit.borrow().clone().unwrap_or(ExitReason::Unknown);
    VmError::Exited {
        during: "startup",
        reason,
        stderr: stderr.text(),
    }
}
