//! A build microVM: QEMU on a step's root filesystem, driven over its agent.
//!
//! A build VM lives for one RUN step and belongs to the build alone, so it is
//! driven directly (QEMU through `hearth-vmm`, the agent through a
//! `hearth-protocol` session on its socket) rather than through a shim: it
//! needs no supervisor that outlives the build, and dropping it kills its
//! QEMU. Its disk is the step's raw ext4 image, written in place.
//!
//! A boot goes: QEMU starts, the agent answers its first `Hello` (a boot that
//! stalls is tried once more, as TCG guests occasionally stall early), the
//! guest gets its identity (entropy and the host's clock, which package
//! managers check signatures against) and, when asked, its network: a NIC in
//! a network namespace of the VM's own (`hearth-net`, as microVMs have), with
//! internet egress through NAT but no way to the host or other VMs, and DNS
//! through the agent's mounted `/etc/resolv.conf`. The namespace goes with
//! the VM; its name is also written to [`NETNS_FILE`] in the VM's directory,
//! so that whoever finds the directory after a crash can remove it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hearth_net::{Egress, GuestLink, HostNetwork, VmNet};
use hearth_protocol::mux::{handshake_host, FrameReader};
use hearth_protocol::{
    Control, Event, ExecSpec, FsExportSummary, Identity, NetworkSpec, Request, Role, Session,
    StreamReceiver, CHAN_STDERR,
};
use hearth_vmm::{Disk, DiskFormat, MachineConfig, Network, QemuVm};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::layer::{self, ApplyOptions};
use crate::runner::{OutputSink, RunOutcome};

/// How long a booting guest may take to answer its agent's first `Hello`.
const BOOT_TIMEOUT: Duration = Duration::from_secs(45);

/// How many times a stalled boot is tried.
const BOOT_ATTEMPTS: u32 = 2;

/// How long a guest may take to power off before QEMU is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long an agent request other than exec and export may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many lines of a command's output a [`RunOutcome`] keeps.
const TAIL_LINES: usize = 20;

/// Why a build VM failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildVmError {
    /// QEMU failed.
    #[error("build vm: qemu")]
    Vmm(#[from] hearth_vmm::VmError),
    /// The agent did not answer its first `Hello`.
    #[error("build vm did not boot: {reason} (console: {console})")]
    Boot {
        /// Why.
        reason: String,
        /// The last lines of the guest's console.
        console: String,
    },
    /// The agent refused or failed a request.
    #[error("build vm: {what}: {message}")]
    Agent {
        /// The request.
        what: &'static str,
        /// What the agent said, or how the stream ended.
        message: String,
    },
    /// The export could not be applied on the host.
    #[error("build vm: applying the step's changes")]
    Apply(#[source] layer::LayerError),
    /// A command did not finish in time.
    #[error("the command did not finish within {0:?}")]
    Timeout(Duration),
    /// The VM's network could not be made (it needs root).
    #[error("build vm: network")]
    Network(#[from] hearth_net::NetError),
}

/// What a build VM is made of.
#[derive(Debug, Clone)]
pub struct BuildVmConfig {
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs whose `/init` is the agent.
    pub initramfs: PathBuf,
    /// Where the accelerator probe caches its answer.
    pub accel_cache: PathBuf,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Whether the guest gets a network (for package downloads): a NIC in a
    /// namespace of its own with internet egress.
    pub network: bool,
}

/// A running build VM. Dropping it kills its QEMU; [`BuildVm::stop`] ends it
/// in order.
// Limitation: QEMU is killed when its BuildVm is dropped, not when the build
// process dies; a build killed outright leaves its build VM running.
pub struct BuildVm {
    vm: QemuVm,
    session: Session,
    console: PathBuf,
    /// Dropped after `vm`.
    _net: NetGuard,
}

impl BuildVm {
    /// Boots a VM on the raw ext4 image `disk`, with its sockets and console
    /// log in `dir`, and waits until its agent answers.
    ///
    /// # Errors
    ///
    /// [`BuildVmError`] when QEMU does not start or the guest does not boot.
    pub async fn boot(
        config: &BuildVmConfig,
        disk: &Path,
        dir: &Path,
    ) -> Result<BuildVm, BuildVmError> {
        let choice = hearth_vmm::choose_accel(
            &config.kernel,
            &config.initramfs,
            &config.accel_cache,
            hearth_vmm::accel::DEFAULT_PROBE_TIMEOUT,
        )
        .await;
        let mut machine = MachineConfig::new(&config.kernel, &config.initramfs, dir, choice.accel);
        machine.vcpus = config.vcpus;
        machine.memory_mib = config.memory_mib;
        machine.disks = vec![Disk {
            path: disk.to_path_buf(),
            format: DiskFormat::Raw,
            read_only: false,
        }];
        let net = match config.network {
            true => {
                let net = build_network().await?;
                // Before QEMU starts: a crash from here on leaves the name
                // behind for recovery (a failed write only loses that).
                if let Err(error) = std::fs::write(dir.join(NETNS_FILE), &net.netns) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot record the build vm's namespace");
                }
                machine.network = Network::Tap;
                machine.netns = Some(net.netns.clone());
                Some(net)
            }
            false => None,
        };
        let net = NetGuard(net);

        let console = machine.console_log.clone();
        let mut attempt = 1;
        let (vm, session) = loop {
            let vm = QemuVm::spawn(machine.clone()).await?;
            match connect(&machine.agent_socket, &vm).await {
                Ok(session) => break (vm, session),
                Err(reason) if attempt < BOOT_ATTEMPTS => {
                    tracing::warn!(attempt, %reason, "build vm boot stalled; booting again");
                    vm.kill().await;
                    attempt += 1;
                }
                Err(reason) => {
                    vm.kill().await;
                    let console = hearth_vmm::console::tail(&console, 10);
                    return Err(BuildVmError::Boot { reason, console });
                }
            }
        };

        let built = BuildVm {
            vm,
            session,
            console,
            _net: net,
        };
        built.identify().await?;
        if config.network {
            let spec = NetworkSpec {
                interface: None,
                address: hearth_net::GUEST_ADDRESS.to_owned(),
                gateway: Some(hearth_net::GUEST_GATEWAY.to_owned()),
                dns: vec![hearth_net::GUEST_DNS.to_owned()],
            };
            built.call("network", Request::Network(spec)).await?;
        }
        Ok(built)
    }

    /// The guest's serial console log.
    pub fn console(&self) -> &Path {
        &self.console
    }

    async fn identify(&self) -> Result<(), BuildVmError> {
        let entropy: [u8; 32] = rand::random();
        let unix_time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let identity = Identity {
            entropy: base64::engine::general_purpose::STANDARD.encode(entropy),
            unix_time_ns,
            hostname: String::from("build"),
        };
        self.call("identity", Request::Identity(identity))
            .await
            .map(drop)
    }

    /// Sends a request whose answer is one `Ok` value.
    ///
    /// # Errors
    ///
    /// [`BuildVmError::Agent`] with the agent's message.
    pub async fn call(
        &self,
        what: &'static str,
        request: Request,
    ) -> Result<serde_json::Value, BuildVmError> {
        let agent = |message: String| BuildVmError::Agent { what, message };
        let (_tx, mut rx) = self
            .session
            .open(&request)
            .map_err(|e| agent(e.to_string()))?
            .split();
        match tokio::time::timeout(CALL_TIMEOUT, expect_ok(&mut rx)).await {
            Ok(answer) => answer.map_err(agent),
            Err(_) => Err(agent(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    /// Runs a command with stdin closed, sending its output line by line to
    /// `output`, bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// [`BuildVmError::Agent`] when the command cannot start (its message
    /// says why) or the VM goes away, [`BuildVmError::Timeout`].
    pub async fn exec(
        &self,
        spec: ExecSpec,
        output: &OutputSink,
        timeout: Duration,
    ) -> Result<RunOutcome, BuildVmError> {
        let agent = |message: String| BuildVmError::Agent {
            what: "exec",
            message,
        };
        let (tx, mut rx) = self
            .session
            .open(&Request::Exec(spec))
            .map_err(|e| agent(e.to_string()))?
            .split();
        tx.eof(hearth_protocol::CHAN_STDIO)
            .map_err(|e| agent(e.to_string()))?;

        let mut lines = Lines::new(output);
        let drained = async {
            let mut exit = None;
            loop {
                match rx.recv().await {
                    Event::Data { chan, bytes } => lines.push(chan, &bytes),
                    Event::Control(Control::Exit(status)) => exit = Some(status),
                    Event::Control(Control::Error { message }) => return Err(message),
                    Event::Control(_) | Event::Eof { .. } => {}
                    Event::Closed { reason } => {
                        return exit.ok_or_else(|| {
                            reason.unwrap_or_else(|| String::from("the stream ended"))
                        })
                    }
                }
            }
        };
        let status = match tokio::time::timeout(timeout, drained).await {
            Ok(status) => status.map_err(agent)?,
            Err(_) => {
                tx.close(Some("timed out"));
                return Err(BuildVmError::Timeout(timeout));
            }
        };
        Ok(RunOutcome {
            exit_code: status.shell_code(),
            output_tail: lines.finish(),
        })
    }

    /// Exports what changed in the guest's root filesystem since the last
    /// `FsMark` and applies it to `rootfs` on the host.
    ///
    /// # Errors
    ///
    /// [`BuildVmError::Agent`] when the export fails in the guest,
    /// [`BuildVmError::Apply`] when it cannot be applied.
    pub async fn export_into(&self, rootfs: &Path) -> Result<FsExportSummary, BuildVmError> {
        let agent = |message: String| BuildVmError::Agent {
            what: "export",
            message,
        };
        let (tx, mut rx) = self
            .session
            .open(&Request::FsExport { since_mark: true })
            .map_err(|e| agent(e.to_string()))?
            .split();

        // The layer is applied while it streams in; the bounded channel
        // holds back the agent when the host falls behind.
        let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(16);
        let root = rootfs.to_path_buf();
        let applier = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: chunks_rx,
                current: Bytes::new(),
            };
            let options = ApplyOptions {
                devices: false,
                ..ApplyOptions::default()
            };
            layer::apply_layer(&root, reader, options)
        });

        let mut chunks_tx = Some(chunks_tx);
        let summary = loop {
            match rx.recv().await {
                Event::Data { bytes, .. } => {
                    let sent = match &chunks_tx {
                        Some(sender) => sender.send(bytes).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        // The applier stopped; its error says why.
                        tx.close(Some("the host cannot apply the export"));
                        break None;
                    }
                }
                Event::Eof { .. } => chunks_tx = None,
                Event::Control(Control::Ok { value }) => {
                    break Some(serde_json::from_value(value).map_err(|e| agent(e.to_string())));
                }
                Event::Control(Control::Error { message }) => break Some(Err(agent(message))),
                Event::Control(_) => {}
                Event::Closed { reason } => {
                    let reason = reason.unwrap_or_else(|| String::from("the stream ended"));
                    break Some(Err(agent(reason)));
                }
            }
        };
        drop(chunks_tx);

        let applied = applier.await.unwrap_or_else(|e| {
            Err(layer::LayerError::Read(std::io::Error::other(
                e.to_string(),
            )))
        });
        match (summary, applied) {
            (_, Err(err)) => Err(BuildVmError::Apply(err)),
            (Some(summary), Ok(_)) => summary,
            (None, Ok(_)) => Err(agent(String::from("the export ended early"))),
        }
    }

    /// Powers the guest off, killing QEMU when it takes longer than a few
    /// seconds.
    pub async fn stop(self) {
        let deadline = Instant::now() + STOP_GRACE;
        let _ = tokio::time::timeout(STOP_GRACE, self.call("shutdown", Request::Shutdown)).await;
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, self.vm.wait()).await.is_err() {
            self.vm.kill().await;
        }
    }
}

/// Makes a build VM's network namespace (named `b-` and random digits),
/// with the host's rules in place first.
/// The file in a build VM's directory that names its network namespace.
pub const NETNS_FILE: &str = "netns";

async fn build_network() -> Result<VmNet, BuildVmError> {
    let host = HostNetwork::default();
    let id = format!("b-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    host.ensure().await?;
    Ok(VmNet::create_for(&host, &id, Egress::Internet, GuestLink::Tap).await?)
}

/// Removes a build VM's namespace when the VM is dropped (after its QEMU
/// has been told to die: a namespace outlives its name while a process is
/// in it, and goes with the last one).
struct NetGuard(Option<VmNet>);

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Some(net) = self.0.take() {
            net.destroy_blocking();
        }
    }
}

/// Connects to the agent's socket and completes the handshake, giving up
/// when QEMU exits or the boot timeout passes.
async fn connect(socket: &Path, vm: &QemuVm) -> Result<Session, String> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let io = loop {
        match UnixStream::connect(socket).await {
            Ok(io) => break io,
            Err(err) if Instant::now() >= deadline => {
                return Err(format!("cannot connect to the agent socket: {err}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (read, mut write) = io.into_split();
    let mut reader = FrameReader::new(read);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let answer = tokio::select! {
        answer = tokio::time::timeout(remaining, handshake_host(&mut reader, &mut write)) => answer,
        reason = vm.wait() => return Err(format!("the vm exited before its agent answered: {reason}")),
    };
    match answer {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err(String::from("the agent did not answer in time")),
    }
    let (session, _tasks) = Session::start(Role::Host, reader, write);
    Ok(session)
}

/// Waits for `Ok` (its value) or `Error` (its message) on a stream.
async fn expect_ok(rx: &mut StreamReceiver) -> Result<serde_json::Value, String> {
    loop {
        match rx.recv().await {
            Event::Control(Control::Ok { value }) => return Ok(value),
            Event::Control(Control::Error { message }) => return Err(message),
            Event::Closed { reason } => {
                return Err(reason.unwrap_or_else(|| String::from("the stream ended")))
            }
            _ => {}
        }
    }
}

/// Splits a command's stdout and stderr into lines for the sink, keeping
/// the last few.
struct Lines<'a> {
    sink: &'a OutputSink,
    partial: [Vec<u8>; 2],
    /// A carriage return was the last byte: a redraw, unless `\n` follows.
    carriage: [bool; 2],
    tail: std::collections::VecDeque<String>,
}

impl<'a> Lines<'a> {
    fn new(sink: &'a OutputSink) -> Self {
        Lines {
            sink,
            partial: [Vec::new(), Vec::new()],
            carriage: [false, false],
            tail: std::collections::VecDeque::new(),
        }
    }

    fn push(&mut self, chan: u8, bytes: &[u8]) {
        let index = usize::from(chan == CHAN_STDERR);
        for &byte in bytes {
            let carriage = std::mem::take(&mut self.carriage[index]);
            match byte {
                b'\n' => {
                    let line = std::mem::take(&mut self.partial[index]);
                    self.line(&line);
                }
                b'\r' => self.carriage[index] = true,
                _ => {
                    // A progress bar redraws after a lone carriage return:
                    // keep only its last state.
                    if carriage {
                        self.partial[index].clear();
                    }
                    self.partial[index].push(byte);
                }
            }
        }
    }

    fn line(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        self.sink.line(text.clone());
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }

    fn finish(mut self) -> Vec<String> {
        for index in 0..2 {
            let rest = std::mem::take(&mut self.partial[index]);
            if !rest.is_empty() {
                self.line(&rest);
            }
        }
        self.tail.into_iter().collect()
    }
}

/// A blocking `Read` over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_the_tail_kept() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = OutputSink::new(4, Some(tx));
        let mut lines = Lines::new(&sink);
        lines.push(0, b"one\ntw");
        lines.push(1, b"err\n");
        lines.push(0, b"o\n50%\r100%\ncrlf\r");
        lines.push(0, b"\nlast");
        let tail = lines.finish();
        assert_eq!(tail, vec!["one", "err", "two", "100%", "crlf", "last"]);

        let mut seen = Vec::new();
        while let Ok(crate::events::BuildEvent::Output { step, line }) = rx.try_recv() {
            assert_eq!(step, 4);
            seen.push(line);
        }
        assert_eq!(seen, tail);
    }

    #[test]
    fn a_channel_reader_reads_across_chunks() {
        use std::io::Read;
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Bytes::from_static(b"hel")).expect("send");
        tx.try_send(Bytes::from_static(b"lo")).expect("send");
        drop(tx);
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let mut text = String::new();
        reader.read_to_string(&mut text).expect("read");
        assert_eq!(text, "hello");
    }
}
