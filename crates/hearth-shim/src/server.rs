//! The shim process: boots or restores one VM and serves its clients.
//!
//! Start-up order matters to clients: the socket is bound first, so a client
//! can connect at once and ask for the status; agent requests wait until the
//! agent has answered its first `Hello`. The VM's state is recorded in
//! `state.json` before each change is acted on, and the shim exits once QEMU
//! has, leaving the reason in that file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hearth_protocol::mux::{answer_hello, handshake_host, wait_hello, FrameReader, SessionTasks};
use hearth_protocol::{
    AgentInfo, AppSpec, Control, Event, Identity, Request, Role, Session, StreamReceiver,
    StreamSender,
};
use hearth_vmm::{Disk, DiskFormat, MachineConfig, Network, QemuVm, Snapshot};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Mutex, RwLock};

use crate::client::expect_ok;
use crate::layout::{VmConfig, VmDir, VmState, VmStatus};
use crate::request::{ShimRequest, SnapshotResult};

/// How long a booting guest may take to answer its agent's first `Hello`.
const BOOT_TIMEOUT: Duration = Duration::from_secs(45);

/// How many times a stalled boot is tried.
const BOOT_ATTEMPTS: u32 = 2;

/// How long a restored guest may take to answer.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a guest may take to stop its agent session before a snapshot.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a guest may take to power off before QEMU is ended.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors that end a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The VM's directory or files could not be used.
    #[error("vm directory {path}")]
    Dir {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU could not be started or driven.
    #[error("vmm")]
    Vmm(#[from] hearth_vmm::VmError),
    /// The snapshot to restore is unusable.
    #[error("snapshot")]
    Snapshot(#[from] hearth_vmm::SnapshotError),
    /// The agent did not answer.
    #[error("agent: {0}")]
    Agent(String),
    /// The VM's network could not be made.
    #[error("network")]
    Network(#[from] hearth_net::NetError),
}

fn dir_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShimError + '_ {
    move |source| ShimError::Dir {
        path: path.display().to_string(),
        source,
    }
}

type AgentTasks = SessionTasks<OwnedReadHalf, OwnedWriteHalf>;

/// The agent connection: the current session and the tasks that own the
/// channel, so that the channel can carry a new session after a freeze.
struct AgentLink {
    session: Session,
    tasks: AgentTasks,
}

struct Shim {
    dir: VmDir,
    config: VmConfig,
    vm: QemuVm,
    state: Mutex<VmState>,
    agent: RwLock<Option<AgentLink>>,
    exited: watch::Sender<Option<String>>,
    /// The VM's network namespace, removed once QEMU is gone.
    net: Option<hearth_net::VmNet>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the shim of the VM in `dir` until its VM has exited.
///
/// # Errors
///
/// Fails when the VM cannot be started; the reason is also recorded in the
/// VM's `state.json`.
pub async fn run(dir: VmDir) -> Result<(), ShimError> {
    let config = dir.read_config().map_err(dir_err(&dir.config()))?;
    let started = Instant::now();
    let mut state = VmState {
        status: VmStatus::Starting,
        shim_pid: std::process::id(),
        qemu_pid: None,
        accel: None,
        exit: None,
        started_ms: now_ms(),
        ready_ms: None,
    };
    dir.write_state(&state).map_err(dir_err(&dir.state()))?;

    let socket = dir.shim_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(dir_err(&socket))?;

    let mut net = None;
    match start_vm(&dir, &config, &mut state, &mut net).await {
        Ok((vm, link)) => {
            state.status = VmStatus::Running;
            state.ready_ms = Some(started.elapsed().as_millis() as u64);
            dir.write_state(&state).map_err(dir_err(&dir.state()))?;
            tracing::info!(vm = %config.id, ready_ms = state.ready_ms, "vm running");

            let shim = Arc::new(Shim {
                dir: dir.clone(),
                config,
                vm,
                state: Mutex::new(state),
                agent: RwLock::new(Some(link)),
                exited: watch::Sender::new(None),
                net,
            });
            serve(shim, listener).await;
            let _ = std::fs::remove_file(&socket);
            Ok(())
        }
        Err(err) => {
            // Any QEMU `start_vm` spawned has been killed (dropping it kills
            // it); a namespace whose name is gone ends with its last process.
            if let Some(net) = &net {
                crate::network::destroy(&dir, net).await;
            }
            state.status = VmStatus::Exited;
            state.exit = Some(format!("failed to start: {}", error_chain(&err)));
            let _ = dir.write_state(&state);
            let _ = std::fs::remove_file(&socket);
            Err(err)
        }
    }
}

/// The error and its sources, joined for a person.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn start_vm(
    dir: &VmDir,
    config: &VmConfig,
    state: &mut VmState,
    net: &mut Option<hearth_net::VmNet>,
) -> Result<(QemuVm, AgentLink), ShimError> {
    let choice = hearth_vmm::choose_accel(
        &config.kernel,
        &config.initramfs,
        &config.accel_cache,
        hearth_vmm::accel::DEFAULT_PROBE_TIMEOUT,
    )
    .await;
    tracing::info!(accel = choice.accel.as_str(), reason = %choice.reason, "accelerator chosen");

    let mut machine =
        MachineConfig::new(&config.kernel, &config.initramfs, dir.root(), choice.accel);
    machine.vcpus = config.vcpus;
    machine.memory_mib = config.memory_mib;
    machine.console_log = dir.console();
    machine.disks = vec![Disk {
        path: dir.disk(),
        format: DiskFormat::Qcow2,
        read_only: false,
    }];

    let snapshot = match &config.restore_from {
        Some(path) => {
            let snapshot = Snapshot::open_async(path).await?;
            machine = snapshot.restore_config(machine);
            Some(snapshot)
        }
        None => None,
    };
    state.accel = Some(machine.accel.as_str().to_owned());
    if snapshot.is_none() && config.network.is_some() {
        machine.network = Network::Tap;
    }
    if machine.network == Network::Tap {
        let egress = config.network.unwrap_or(hearth_net::Egress::Internet);
        let made = crate::network::create(dir, egress).await?;
        machine.netns = Some(made.netns.clone());
        *net = Some(made);
    }
    let (vm, link) = match &snapshot {
        Some(snapshot) => {
            let vm = spawn_recorded(dir, machine, state).await?;
            snapshot.restore(&vm).await?;
            vm.resume().await?;
            let link = connect_agent(&dir.agent_socket(), RESTORE_TIMEOUT, &vm).await?;
            (vm, link)
        }
        None => cold_boot(dir, machine, state).await?,
    };

    if let Err(err) = configure_guest(&link, net.is_some()).await {
        vm.kill().await;
        return Err(err);
    }
    identify(&link.session, &config.hostname).await?;
    if config.restore_from.is_none() {
        if let Some(app) = &config.app {
            start_app(&link.session, app).await?;
        }
    }
    Ok((vm, link))
}

/// Configures the guest's `eth0` when the VM has a network: after a boot, and
/// again after a restore (the same addresses, so nothing changes in a guest
/// that has them already).
async fn configure_guest(link: &AgentLink, has_network: bool) -> Result<(), ShimError> {
    if !has_network {
        return Ok(());
    }
    let spec = crate::network::guest_spec();
    call_agent(&link.session, &Request::Network(spec))
        .await
        .map(drop)
}

/// Records QEMU's pid as soon as it runs, so that nothing is orphaned.
async fn spawn_recorded(
    dir: &VmDir,
    machine: MachineConfig,
    state: &mut VmState,
) -> Result<QemuVm, ShimError> {
    let vm = QemuVm::spawn(machine).await?;
    state.qemu_pid = Some(vm.pid());
    dir.write_state(state).map_err(dir_err(&dir.state()))?;
    Ok(vm)
}

/// Boots the guest, trying again when a boot stalls.
// Limitation: under TCG the guest kernel occasionally stalls early in boot
// (about 1 in 50 here) before the agent runs; a second boot is the remedy.
async fn cold_boot(
    dir: &VmDir,
    machine: MachineConfig,
    state: &mut VmState,
) -> Result<(QemuVm, AgentLink), ShimError> {
    let mut attempt = 1;
    loop {
        let vm = spawn_recorded(dir, machine.clone(), state).await?;
        match connect_agent(&dir.agent_socket(), BOOT_TIMEOUT, &vm).await {
            Ok(link) => return Ok((vm, link)),
            Err(err) if attempt < BOOT_ATTEMPTS => {
                tracing::warn!(attempt, error = %error_chain(&err), "boot stalled; booting again");
                vm.kill().await;
                let _ = std::fs::remove_file(dir.agent_socket());
                let _ = std::fs::remove_file(dir.qmp_socket());
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Connects to the agent's socket and completes the handshake, giving up when
/// QEMU exits or the timeout passes.
async fn connect_agent(
    socket: &Path,
    timeout: Duration,
    vm: &QemuVm,
) -> Result<AgentLink, ShimError> {
    let deadline = Instant::now() + timeout;
    let io = loop {
        match UnixStream::connect(socket).await {
            Ok(io) => break io,
            Err(err) if Instant::now() >= deadline => {
                return Err(ShimError::Agent(format!(
                    "cannot connect to the agent socket: {err}"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (read, write) = io.into_split();
    handshake(FrameReader::new(read), write, deadline, vm).await
}

async fn handshake(
    mut reader: FrameReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    deadline: Instant,
    vm: &QemuVm,
) -> Result<AgentLink, ShimError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let answer = tokio::select! {
        answer = tokio::time::timeout(remaining, handshake_host(&mut reader, &mut writer)) => answer,
        reason = vm.wait() => {
            return Err(ShimError::Agent(format!("the VM exited before its agent answered: {reason}")))
        }
    };
    match answer {
        Ok(Ok(ack)) => tracing::info!(kernel = %ack.info.kernel_release, "agent answered"),
        Ok(Err(err)) => return Err(ShimError::Agent(error_chain(&err))),
        Err(_) => {
            return Err(ShimError::Agent(
                "the agent did not answer in time".to_owned(),
            ))
        }
    }
    let (session, tasks) = Session::start(Role::Host, reader, writer);
    Ok(AgentLink { session, tasks })
}

async fn identify(session: &Session, hostname: &str) -> Result<(), ShimError> {
    let entropy: [u8; 32] = rand::random();
    let unix_time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let identity = Identity {
        entropy: base64::engine::general_purpose::STANDARD.encode(entropy),
        unix_time_ns,
        hostname: hostname.to_owned(),
    };
    call_agent(session, &Request::Identity(identity))
        .await
        .map(drop)
}

async fn start_app(session: &Session, app: &AppSpec) -> Result<(), ShimError> {
    call_agent(session, &Request::StartApp(app.clone()))
        .await
        .map(drop)
}

async fn call_agent(session: &Session, request: &Request) -> Result<serde_json::Value, ShimError> {
    let (_tx, mut rx) = session
        .open(request)
        .map_err(|e| ShimError::Agent(e.to_string()))?
        .split();
    expect_ok(&mut rx)
        .await
        .map_err(|e| ShimError::Agent(error_chain(&e)))
}

async fn serve(shim: Arc<Shim>, listener: UnixListener) {
    let watcher = tokio::spawn(watch_exit(shim.clone()));
    let mut exited = shim.exited.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((io, _)) = accepted {
                    tokio::spawn(serve_client(shim.clone(), io));
                }
            }
            _ = exited.wait_for(Option::is_some) => break,
        }
    }
    let _ = watcher.await;

    // Let clients that are finishing read their answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn watch_exit(shim: Arc<Shim>) {
    let reason = shim.vm.wait().await.to_string();
    tracing::info!(vm = %shim.config.id, %reason, "vm exited");
    // Before the exit is recorded: whoever waits for it may start a VM of
    // the same id, whose namespace has the same name.
    if let Some(net) = &shim.net {
        crate::network::destroy(&shim.dir, net).await;
    }
    {
        let mut state = shim.state.lock().await;
        state.status = VmStatus::Exited;
        state.exit = Some(reason.clone());
        let _ = shim.dir.write_state(&state);
    }
    shim.exited.send_replace(Some(reason));
}

async fn serve_client(shim: Arc<Shim>, io: UnixStream) {
    let (read, mut write) = io.into_split();
    let mut reader = FrameReader::new(read);
    let Ok(Ok(hello)) =
        tokio::time::timeout(Duration::from_secs(10), wait_hello(&mut reader)).await
    else {
        return;
    };
    if answer_hello(&mut write, &hello, AgentInfo::default())
        .await
        .is_err()
    {
        return;
    }
    let (session, _tasks) = Session::start(Role::Guest, reader, write);
    while let Some((payload, stream)) = session.accept().await {
        let shim = shim.clone();
        tokio::spawn(async move {
            let (tx, rx) = stream.split();
            match serde_json::from_slice::<ShimRequest>(&payload) {
                Ok(request) => handle(shim, request, tx, rx).await,
                Err(err) => {
                    let _ = tx.control(&Control::Error {
                        message: format!("bad request: {err}"),
                    });
                    tx.close(None);
                }
            }
        });
    }
}

async fn handle(shim: Arc<Shim>, request: ShimRequest, tx: StreamSender, rx: StreamReceiver) {
    let answer = match request {
        ShimRequest::Agent { request } => return relay(shim, request, tx, rx).await,
        ShimRequest::Status => {
            let state = shim.state.lock().await.clone();
            Ok(serde_json::to_value(state).expect("state serializes"))
        }
        ShimRequest::Snapshot { path, stop } => snapshot(&shim, &path, stop)
            .await
            .map(|result| serde_json::to_value(result).expect("result serializes")),
        ShimRequest::Stop => stop_vm(&shim).await.map(|()| serde_json::Value::Null),
    };
    let control = match answer {
        Ok(value) => Control::Ok { value },
        Err(message) => Control::Error { message },
    };
    let _ = tx.control(&control);
    tx.close(None);
}

/// Relays one client stream to a new agent stream, both ways, until both
/// ends are done. When the VM exits, the client learns why.
async fn relay(
    shim: Arc<Shim>,
    request: Request,
    client_tx: StreamSender,
    mut client_rx: StreamReceiver,
) {
    let opened = {
        let agent = shim.agent.read().await;
        match agent.as_ref() {
            Some(link) => link.session.open(&request).map_err(|e| e.to_string()),
            None => Err(exit_reason(&shim)),
        }
    };
    let (agent_tx, mut agent_rx) = match opened {
        Ok(stream) => stream.split(),
        Err(message) => {
            let _ = client_tx.control(&Control::Error { message });
            client_tx.close(None);
            return;
        }
    };

    let upstream_tx = agent_tx.clone();
    let upstream = tokio::spawn(async move {
        loop {
            let ok = match client_rx.recv().await {
                Event::Data { chan, bytes } => upstream_tx.data(chan, &bytes).await.is_ok(),
                Event::Eof { chan } => upstream_tx.eof(chan).is_ok(),
                Event::Control(control) => upstream_tx.control(&control).is_ok(),
                Event::Closed { reason } => {
                    upstream_tx.close(reason.as_deref());
                    false
                }
            };
            if !ok {
                return;
            }
        }
    });

    let mut exited = shim.exited.subscribe();
    loop {
        let event = tokio::select! {
            event = agent_rx.recv() => event,
            _ = exited.wait_for(Option::is_some) => Event::Closed { reason: None },
        };
        match event {
            Event::Data { chan, bytes } => {
                if client_tx.data(chan, &bytes).await.is_err() {
                    agent_tx.close(Some("client went away"));
                    break;
                }
            }
            Event::Eof { chan } => {
                let _ = client_tx.eof(chan);
            }
            Event::Control(control) => {
                let _ = client_tx.control(&control);
            }
            Event::Closed { reason: None } if shim.exited.borrow().is_none() => {
                client_tx.close(None);
                break;
            }
            Event::Closed {
                reason: Some(reason),
            } if shim.state.lock().await.status == VmStatus::Snapshotting => {
                // Ended by the freeze before a snapshot: its reason, not the
                // exit that may follow it.
                client_tx.close(Some(&reason));
                break;
            }
            Event::Closed { reason } => {
                // An agent channel that fails as the VM dies: say it died.
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    exited.wait_for(Option::is_some),
                )
                .await;
                let reason = match shim.exited.borrow().clone() {
                    Some(exit) => format!("the VM exited: {exit}"),
                    None => reason.unwrap_or_else(|| "the agent closed the stream".to_owned()),
                };
                client_tx.close(Some(&reason));
                break;
            }
        }
    }
    upstream.abort();
}

fn exit_reason(shim: &Shim) -> String {
    match shim.exited.borrow().clone() {
        Some(exit) => format!("the VM exited: {exit}"),
        None => "the agent is not connected".to_owned(),
    }
}

async fn snapshot(shim: &Shim, path: &Path, stop: bool) -> Result<SnapshotResult, String> {
    let begun = Instant::now();
    if path.exists() {
        return Err(format!("{} already exists", path.display()));
    }

    // Hold the agent link for the whole snapshot: no stream opens meanwhile.
    let mut agent = shim.agent.write().await;
    let link = agent.take().ok_or_else(|| exit_reason(shim))?;
    set_status(shim, VmStatus::Snapshotting).await;

    // Nothing but the agent runs from here until the guest is reseeded.
    let quiesce = call_agent(&link.session, &Request::Quiesce);
    match tokio::time::timeout(FREEZE_TIMEOUT, quiesce).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(error = %error_chain(&err), "guest processes not stopped"),
        Err(_) => tracing::warn!("guest processes not stopped in time"),
    }
    let frozen = tokio::time::timeout(
        FREEZE_TIMEOUT,
        link.session.freeze("the VM is being snapshotted"),
    )
    .await;
    // A guest that acknowledged keeps its channel for the next session; one
    // that did not gets a fresh connection after the snapshot.
    let channel = match frozen {
        Ok(Ok(())) => Some(link.tasks.join().await),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "agent session ended during the freeze");
            link.tasks.abort();
            None
        }
        Err(_) => {
            tracing::warn!("agent did not acknowledge the freeze in time");
            link.tasks.abort();
            None
        }
    };

    let paused = Instant::now();
    let taken = take_snapshot(shim, path).await;
    let paused_ms;

    // A failed snapshot never stops the VM: it continues as if not asked.
    if stop && taken.is_ok() {
        paused_ms = paused.elapsed().as_millis() as u64;
        let _ = shim.vm.quit().await;
    } else {
        let resumed = shim.vm.resume().await;
        paused_ms = paused.elapsed().as_millis() as u64;
        resumed.map_err(|e| format!("resume after snapshot: {}", error_chain(&e)))?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let link = match channel {
            Some((reader, writer, _)) => handshake(reader, writer, deadline, &shim.vm).await,
            None => connect_agent(&shim.dir.agent_socket(), RESTORE_TIMEOUT, &shim.vm).await,
        }
        .map_err(|e| format!("agent after snapshot: {}", error_chain(&e)))?;
        identify(&link.session, &shim.config.hostname)
            .await
            .map_err(|e| format!("agent after snapshot: {}", error_chain(&e)))?;
        *agent = Some(link);
        set_status(shim, VmStatus::Running).await;
    }

    let (memory_bytes, disk_bytes) = taken?;
    Ok(SnapshotResult {
        memory_bytes,
        disk_bytes,
        paused_ms,
        total_ms: begun.elapsed().as_millis() as u64,
    })
}

async fn take_snapshot(shim: &Shim, path: &Path) -> Result<(u64, u64), String> {
    let snapshot = Snapshot::create(&shim.vm, Some(&shim.dir.disk()), path)
        .await
        .map_err(|e| error_chain(&e))?;
    let meta = snapshot.meta();
    Ok((meta.memory.size, meta.disk.as_ref().map_or(0, |d| d.size)))
}

async fn set_status(shim: &Shim, status: VmStatus) {
    let mut state = shim.state.lock().await;
    state.status = status;
    let _ = shim.dir.write_state(&state);
}

async fn stop_vm(shim: &Shim) -> Result<(), String> {
    let mut exited = shim.exited.subscribe();
    if shim.exited.borrow().is_some() {
        return Ok(());
    }

    // Ask the guest to power off; end QEMU if it does not in time.
    if let Some(link) = shim.agent.read().await.as_ref() {
        if let Ok((_tx, mut rx)) = link.session.open(&Request::Shutdown).map(|s| s.split()) {
            let _ = tokio::time::timeout(Duration::from_secs(2), expect_ok(&mut rx)).await;
        }
    }
    if tokio::time::timeout(STOP_GRACE, exited.wait_for(Option::is_some))
        .await
        .is_err()
    {
        let _ = shim.vm.quit().await;
        if tokio::time::timeout(STOP_GRACE, exited.wait_for(Option::is_some))
            .await
            .is_err()
        {
            shim.vm.kill().await;
            let _ = exited.wait_for(Option::is_some).await;
        }
    }
    Ok(())
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim").field("id", &self.config.id).finish()
    }
}
