//! The app microVM of a build: boot the built image with its app, wait
//! until the app is ready, snapshot it; and the validation of a snapshot in
//! a test microVM restored from it.
//!
//! Readiness is the `ready` hook answering 200 when the image enables it;
//! otherwise the app's process running and its port accepting a connection.
//! Either way it is bounded by the ready timeout, and an app that exits
//! meanwhile fails the build with its exit code and its last lines of
//! output. These VMs run under shims (`hearth_shim::launch`), as every
//! microVM does, and are stopped and their directories removed whatever
//! happens.

use std::path::Path;
use std::time::{Duration, Instant};

use hearth_protocol::{AppSpec, AppState, Control, Event, Request, CHAN_STDERR};
use hearth_shim::launch::{self, BootSpec, Host, LaunchError, RootSource};
use hearth_shim::{ClientError, ShimClient, SnapshotResult, VmDir, VmStatus};

use crate::events::BuildEvent;
use crate::image::hooks::{self, CallError, Hook};
use crate::image::layout::Resources;
use crate::image::Emitter;

/// The longest one hook call may take while the deadline allows.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause between two readiness checks.
const POLL: Duration = Duration::from_millis(250);

/// How many lines of the app's output a failure quotes.
const LOG_LINES: usize = 5;

/// How long a stopped VM's shim may take to record the exit.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// Why the app microVM failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The VM or its app did not start.
    #[error("the app microVM did not start: {reason}")]
    Start {
        /// Why, as the VM's shim recorded it.
        reason: String,
    },
    /// The VM's shim could not be reached or failed a request.
    #[error("the app microVM failed")]
    Vm(#[source] ClientError),
    /// The app exited before it was ready.
    #[error("the app exited with code {code} before it was ready{}", logs_suffix(.logs))]
    Exited {
        /// Its exit code (128 + signal when a signal ended it).
        code: i32,
        /// Its last lines of output.
        logs: Vec<String>,
    },
    /// A hook answered with a status other than 200 or 503.
    #[error(
        "the {hook} hook answered HTTP {status}; it must answer 200 when ready or 503 until then"
    )]
    HookStatus {
        /// The hook.
        hook: &'static str,
        /// The status.
        status: u16,
    },
    /// A hook's answer was not HTTP, or its tunnel failed.
    #[error("the {hook} hook on port {port} failed")]
    HookCall {
        /// The hook.
        hook: &'static str,
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: CallError,
    },
    /// The app was not ready in time.
    #[error("{what} within {timeout_secs} s (last: {last})")]
    NotReady {
        /// What did not happen.
        what: String,
        /// The timeout.
        timeout_secs: u64,
        /// The last observation.
        last: String,
    },
}

fn logs_suffix(logs: &[String]) -> String {
    match logs.is_empty() {
        true => String::from(" (it printed nothing)"),
        false => format!("; last output: {}", logs.join(" | ")),
    }
}

/// How a build knows that its app is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A hook answers 200 on the hooks port.
    Hook {
        /// The hook (`ready` during the build, `validate` after it).
        hook: Hook,
        /// The hooks port.
        port: u16,
        /// How long to keep asking.
        timeout: Duration,
    },
    /// The app's port accepts a connection.
    Port {
        /// The port.
        port: u16,
        /// How long to keep trying.
        timeout: Duration,
    },
}

impl Readiness {
    fn timeout(&self) -> Duration {
        match self {
            Readiness::Hook { timeout, .. } | Readiness::Port { timeout, .. } => *timeout,
        }
    }

    fn describe(&self) -> String {
        match self {
            Readiness::Hook { hook, port, .. } => {
                format!("the {} hook did not answer 200 on port {port}", hook.name())
            }
            Readiness::Port { port, .. } => {
                format!("the app did not accept connections on port {port}")
            }
        }
    }
}

/// Boots the image on `disk` with `app`, waits until it is ready and
/// writes its snapshot to `dest`, stopping the VM.
///
/// # Errors
///
/// [`AppError`]; the VM is gone either way.
pub async fn snapshot_app(
    host: &Host,
    disk: &Path,
    app: AppSpec,
    resources: Resources,
    readiness: Readiness,
    dest: &Path,
    events: &Emitter,
) -> Result<SnapshotResult, AppError> {
    let spec = BootSpec {
        root: RootSource::Image(disk.to_path_buf()),
        app: Some(app),
        vcpus: resources.vcpus,
        memory_mib: resources.memory_mib,
        disk_bytes: hearth_vmm::disk::DEFAULT_ROOT_DISK_BYTES,
        // The snapshot carries the NIC that every microVM restored from it
        // gets, in its own namespace.
        network: Some(hearth_net::Egress::Internet),
    };
    events.note(format!(
        "booting the app microVM ({} MiB, {} vCPU)",
        resources.memory_mib, resources.vcpus
    ));
    let dir = launch::boot(host, spec).await.map_err(start_error)?;
    events.send(BuildEvent::VmStarted { vm_id: dir.id() });

    let result = async {
        let client = ShimClient::connect(&dir).await.map_err(AppError::Vm)?;
        wait_ready(&client, readiness, events).await?;
        events.note(String::from("taking the snapshot"));
        client.snapshot(dest, true).await.map_err(AppError::Vm)
    }
    .await;
    discard(&dir, events).await;
    result
}

/// Restores a test microVM from `snapshot` and waits until `readiness`
/// holds (the `validate` hook).
///
/// # Errors
///
/// [`AppError`]; the VM is gone either way.
pub async fn validate(
    host: &Host,
    snapshot: &Path,
    readiness: Readiness,
    events: &Emitter,
) -> Result<(), AppError> {
    let dir = launch::restore(host, snapshot).await.map_err(start_error)?;
    events.send(BuildEvent::VmStarted { vm_id: dir.id() });
    let result = async {
        let client = ShimClient::connect(&dir).await.map_err(AppError::Vm)?;
        wait_ready(&client, readiness, events).await
    }
    .await;
    discard(&dir, events).await;
    result
}

fn start_error(err: LaunchError) -> AppError {
    let reason = match err {
        LaunchError::Failed { reason, .. } => reason,
        other => chain(&other),
    };
    AppError::Start { reason }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Polls until the app is ready, has exited, or the timeout passes.
async fn wait_ready(
    client: &ShimClient,
    readiness: Readiness,
    events: &Emitter,
) -> Result<(), AppError> {
    let timeout = readiness.timeout();
    let started = Instant::now();
    let deadline = started + timeout;
    events.note(match readiness {
        Readiness::Hook { hook, port, .. } => format!(
            "waiting for the {} hook on port {port} to answer 200 (up to {} s)",
            hook.name(),
            timeout.as_secs()
        ),
        Readiness::Port { port, .. } => format!(
            "waiting for the app to accept connections on port {port} (up to {} s)",
            timeout.as_secs()
        ),
    });

    loop {
        let state = app_state(client).await?;
        if let Some(exit) = state.exit {
            let logs = app_logs(client).await;
            return Err(AppError::Exited {
                code: exit.shell_code(),
                logs,
            });
        }

        let left = deadline.saturating_duration_since(Instant::now());
        let call_timeout = left.clamp(Duration::from_millis(100), CALL_TIMEOUT);
        let Some(last) = check(client, readiness, call_timeout).await? else {
            events.note(format!(
                "ready after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        };

        if Instant::now() >= deadline {
            return Err(AppError::NotReady {
                what: readiness.describe(),
                timeout_secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One readiness check: `None` when ready, else what was seen.
async fn check(
    client: &ShimClient,
    readiness: Readiness,
    call_timeout: Duration,
) -> Result<Option<String>, AppError> {
    match readiness {
        Readiness::Hook { hook, port, .. } => {
            match hooks::call(client, port, hook, b"", call_timeout).await {
                Ok(200) => Ok(None),
                Ok(503) => Ok(Some(String::from("HTTP 503"))),
                Ok(status) => Err(AppError::HookStatus {
                    hook: hook.name(),
                    status,
                }),
                Err(err @ (CallError::NotListening { .. } | CallError::Timeout(_))) => {
                    Ok(Some(err.to_string()))
                }
                Err(source) => Err(AppError::HookCall {
                    hook: hook.name(),
                    port,
                    source,
                }),
            }
        }
        Readiness::Port { port, .. } => match client.tunnel(port).await {
            Ok(stream) => {
                stream.sender.close(None);
                Ok(None)
            }
            Err(ClientError::Refused(message)) => Ok(Some(message)),
            Err(err) => Err(AppError::Vm(err)),
        },
    }
}

async fn app_state(client: &ShimClient) -> Result<AppState, AppError> {
    let (_tx, mut rx) = client
        .agent(Request::AppStatus)
        .map_err(AppError::Vm)?
        .split();
    loop {
        match rx.recv().await {
            Event::Control(Control::App(state)) => return Ok(state),
            Event::Control(Control::Error { message }) => {
                return Err(AppError::Vm(ClientError::Refused(message)))
            }
            Event::Closed { reason } => {
                let reason = reason.unwrap_or_else(|| String::from("no app status"));
                return Err(AppError::Vm(ClientError::Refused(reason)));
            }
            _ => {}
        }
    }
}

/// The app's last lines of output, stdout and stderr together.
async fn app_logs(client: &ShimClient) -> Vec<String> {
    let Ok(stream) = client.agent(Request::Logs { follow: false }) else {
        return Vec::new();
    };
    let (_tx, mut rx) = stream.split();
    let mut text = [Vec::new(), Vec::new()];
    let collect = async {
        loop {
            match rx.recv().await {
                Event::Data { chan, bytes } => {
                    text[usize::from(chan == CHAN_STDERR)].extend_from_slice(&bytes)
                }
                Event::Closed { .. } => return,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(CALL_TIMEOUT, collect).await;

    let mut lines: Vec<String> = text
        .iter()
        .flat_map(|t| {
            String::from_utf8_lossy(t)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    let skip = lines.len().saturating_sub(LOG_LINES);
    lines.drain(..skip);
    lines
}

/// Stops a VM if it still runs, waits for its exit, removes its directory
/// and reports it stopped.
async fn discard(dir: &VmDir, events: &Emitter) {
    if let Ok(client) = ShimClient::connect(dir).await {
        let _ = client.stop().await;
    }
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        let state = dir.read_state().ok();
        let exited = state.as_ref().is_none_or(|s| s.status == VmStatus::Exited);
        if exited {
            break;
        }
        if Instant::now() >= deadline {
            // The shim did not record an exit: end what it started by pid.
            if let Some(state) = state {
                for pid in state.qemu_pid.into_iter().chain([state.shim_pid]) {
                    let pid = nix::unistd::Pid::from_raw(pid as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the shim finish with its socket before the directory goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(error) = std::fs::remove_dir_all(dir.root()) {
        tracing::warn!(dir = %dir.root().display(), %error, "cannot remove a build's app vm");
    }
    events.send(BuildEvent::VmStopped { vm_id: dir.id() });
}
