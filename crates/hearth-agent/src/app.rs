//! The app: the image's entrypoint, started once per boot by the host.
//!
//! Its stdin is `/dev/null`; its stdout and stderr are pipes the agent reads
//! into the [`LogBuffer`] (served by `Logs`) and echoes to the console. It
//! runs in a session of its own, as the image's user, with Docker's default
//! capabilities unless the image asks for all. A second `StartApp` is refused
//! while the app runs; once it has exited it may be started again.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_protocol::{AppSpec, AppState, Event, Stream, CHAN_STDERR, CHAN_STDIO};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::console::Echo;
use crate::logbuf::LogBuffer;
use crate::process::{Capabilities, LaunchError, Plan, Request};
use crate::{reaper, say};

/// Errors starting the app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The app runs already.
    #[error("the app is already running (pid {0})")]
    Running(u32),
    /// It could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// The app's state and output.
#[derive(Default)]
pub struct App {
    state: Arc<Mutex<AppState>>,
    /// The spec of the last start, which a shell opened as the app follows.
    spec: Mutex<Option<AppSpec>>,
    logs: Arc<LogBuffer>,
}

impl App {
    fn lock(&self) -> std::sync::MutexGuard<'_, AppState> {
        self.state
            .lock()
            .expect("the app lock is never held across a panic")
    }

    /// The app's state.
    pub fn status(&self) -> AppState {
        self.lock().clone()
    }

    /// The spec the app was last started with, if it was.
    pub fn spec(&self) -> Option<AppSpec> {
        self.spec
            .lock()
            .expect("the spec lock is never held across a panic")
            .clone()
    }

    /// The app's captured output.
    pub fn logs(&self) -> &Arc<LogBuffer> {
        &self.logs
    }

    /// Starts the app and returns its pid.
    ///
    /// # Errors
    ///
    /// Fails when it runs already or cannot be started.
    pub fn start(&self, spec: &AppSpec, etc: &Path) -> Result<u32, AppError> {
        let mut state = self.lock();
        if let (true, None, Some(pid)) = (state.started, state.exit, state.pid) {
            return Err(AppError::Running(pid));
        }

        let capabilities = match spec.all_capabilities {
            true => Capabilities::All,
            false => Capabilities::Default,
        };
        let req = Request {
            argv: &spec.argv,
            env: &spec.env,
            cwd: spec.cwd.as_deref(),
            user: spec.user.as_deref(),
            term: None,
            capabilities,
        };
        let plan = Plan::new(&req, etc)?;
        let mut cmd = plan.command(false);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = reaper::global()
            .spawn(&mut cmd)
            .map_err(|source| LaunchError::Spawn {
                program: plan.argv[0].clone(),
                source,
            })?;

        let mut child = spawned.child;
        let pid = child.id();
        let setup = |source| LaunchError::Setup {
            what: "the app's pipes",
            source,
        };
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let stdout = pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(setup)?;
        let stderr = pipe::Receiver::from_owned_fd(OwnedFd::from(stderr)).map_err(setup)?;

        *state = AppState {
            started: true,
            pid: Some(pid),
            exit: None,
        };
        drop(state);
        *self
            .spec
            .lock()
            .expect("the spec lock is never held across a panic") = Some(spec.clone());
        say!("app started: {} (pid {pid})", plan.argv[0]);

        self.logs.set_ended(false);
        let logs = self.logs.clone();
        tokio::spawn(async move {
            tokio::join!(
                capture(stdout, CHAN_STDIO, &logs),
                capture(stderr, CHAN_STDERR, &logs)
            );
            logs.set_ended(true);
        });

        let state = self.state.clone();
        let exit = spawned.exit;
        tokio::spawn(async move {
            let Ok(status) = exit.await else { return };
            say!("app exited ({})", describe_exit(&status));
            let mut state = state
                .lock()
                .expect("the app lock is never held across a panic");
            state.pid = None;
            state.exit = Some(status);
        });
        Ok(pid)
    }
}

/// How an exit reads on the console.
fn describe_exit(status: &hearth_protocol::ExitStatus) -> String {
    match (status.code, status.signal) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// Reads one of the app's pipes into the log buffer and the console.
async fn capture(mut pipe: pipe::Receiver, chan: u8, logs: &LogBuffer) {
    let mut echo = Echo::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                echo.feed(&buf[..n]);
                logs.push(chan, Bytes::copy_from_slice(&buf[..n]));
            }
        }
    }
    echo.finish();
}

/// Serves `Logs`: the buffered output, then with `follow` new output until
/// the app's output ends or the host closes the stream.
pub async fn serve_logs(logs: &LogBuffer, follow: bool, stream: Stream) {
    let (tx, mut rx) = stream.split();
    let mut changes = logs.subscribe();
    let mut cursor = 0;
    loop {
        changes.borrow_and_update();
        let batch = logs.read_from(cursor);
        for (chan, bytes) in &batch.chunks {
            if tx.data(*chan, bytes).await.is_err() {
                return;
            }
        }
        cursor = batch.next;
        if !follow || batch.ended {
            break;
        }

        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            event = rx.recv() => {
                if let Event::Closed { .. } = event {
                    return;
                }
            }
        }
    }
    let _ = tx.eof(CHAN_STDIO);
    let _ = tx.eof(CHAN_STDERR);
    tx.close(None);
}
