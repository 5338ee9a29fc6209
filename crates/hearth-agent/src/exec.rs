//! `Exec`: a command on pipes or on a terminal, carried by one stream.
//!
//! With pipes, channel-0 data is the command's stdin (the host's `Eof` closes
//! it), and its stdout and stderr go out on channels 0 and 1. On a terminal,
//! channel 0 carries the terminal both ways, the host's `Eof` only stops
//! input (a terminal cannot be half-closed), and `Resize` sets its size. In
//! both modes `Signal` is delivered to the command.
//!
//! Once the command has exited and its output is drained, the stream gets
//! `Eof` on both channels, `Exit` and a close. Output held open by a
//! background process is drained until it has been idle for [`DRAIN_IDLE`].
//!
//! A command that cannot start is refused with `Error` ("exec NAME: No such
//! file or directory" for a missing program); no `Exit` follows.
//!
//! Commands keep every capability the agent has, unlike the app: exec is how
//! the host administers the guest and runs build steps. A shell opened as the
//! app (see `shell`) runs the same way with the app's capability set.
//!
//! When the host closes the stream first, the agent stops waiting at once: a
//! terminal command's process group gets `SIGHUP` and the terminal is closed;
//! a piped command has its stdin and output pipes closed and runs on
//! unobserved, as a shell's background job would.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hearth_protocol::{
    Control, ExecSpec, ExitStatus, Stream, StreamReceiver, StreamSender, TtySize, CHAN_STDERR,
    CHAN_STDIO,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

use crate::fdio::{self, FdWriter};
use crate::inbound::{self, End};
use crate::process::{Capabilities, LaunchError, Plan, Request};
use crate::{pty, reaper};

/// After the command exits, output that stays silent this long is abandoned.
pub const DRAIN_IDLE: Duration = Duration::from_millis(250);

/// `TERM` for commands on a terminal.
pub const TERM: &str = "xterm-256color";

type Input = Box<dyn AsyncWrite + Send + Unpin>;
type Output = Box<dyn AsyncRead + Send + Unpin>;

/// A started command and its ends.
struct Running {
    pid: i32,
    exit: oneshot::Receiver<ExitStatus>,
    input: Input,
    outputs: Vec<(u8, Output)>,
    terminal: Option<FdWriter>,
}

/// Runs `spec` on `stream` until the command ends or the host closes it.
pub async fn run(spec: ExecSpec, capabilities: Capabilities, etc: &Path, stream: Stream) {
    let (tx, rx) = stream.split();
    match start(&spec, capabilities, etc) {
        Ok(running) => supervise(running, tx, rx).await,
        Err(err) => crate::agent::refuse(&tx, &crate::describe(&err)),
    }
}

fn start(spec: &ExecSpec, capabilities: Capabilities, etc: &Path) -> Result<Running, LaunchError> {
    let req = Request {
        argv: &spec.argv,
        env: &spec.env,
        cwd: spec.cwd.as_deref(),
        user: spec.user.as_deref(),
        term: spec.tty.map(|_| TERM),
        capabilities,
    };
    let plan = Plan::new(&req, etc)?;
    match spec.tty {
        Some(size) => start_terminal(&plan, size),
        None => start_pipes(&plan),
    }
}

fn spawn_error(plan: &Plan) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    |source| LaunchError::Spawn {
        program: plan.argv[0].clone(),
        source,
    }
}

fn start_pipes(plan: &Plan) -> Result<Running, LaunchError> {
    let mut cmd = plan.command(false);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawned = reaper::global()
        .spawn(&mut cmd)
        .map_err(spawn_error(plan))?;
    let mut child = spawned.child;

    let setup = |source| LaunchError::Setup {
        what: "pipes",
        source,
    };
    let stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    let stdin = pipe::Sender::from_owned_fd(OwnedFd::from(stdin)).map_err(setup)?;
    let stdout = pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(setup)?;
    let stderr = pipe::Receiver::from_owned_fd(OwnedFd::from(stderr)).map_err(setup)?;

    Ok(Running {
        pid: child.id() as i32,
        exit: spawned.exit,
        input: Box::new(stdin),
        outputs: vec![
            (CHAN_STDIO, Box::new(stdout) as Output),
            (CHAN_STDERR, Box::new(stderr) as Output),
        ],
        terminal: None,
    })
}

fn start_terminal(plan: &Plan, size: TtySize) -> Result<Running, LaunchError> {
    let setup = |source| LaunchError::Setup {
        what: "a terminal",
        source,
    };
    let pty = pty::open(size).map_err(setup)?;
    if let Some(creds) = &plan.credentials {
        // The user should own its terminal, as after a login.
        let uid = nix::unistd::Uid::from_raw(creds.uid);
        let _ = nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(&pty.slave), Some(uid), None);
    }

    let mut cmd = plan.command(true);
    let slave = |file: &std::fs::File| file.try_clone().map(Stdio::from).map_err(setup);
    cmd.stdin(slave(&pty.slave)?)
        .stdout(slave(&pty.slave)?)
        .stderr(Stdio::from(pty.slave));
    let spawned = reaper::global()
        .spawn(&mut cmd)
        .map_err(spawn_error(plan))?;
    // The command holds the agent's copies of the slave; the terminal reads
    // end-of-file only once they are closed too.
    drop(cmd);

    let (reader, writer) = fdio::split(pty.master).map_err(setup)?;
    Ok(Running {
        pid: spawned.child.id() as i32,
        exit: spawned.exit,
        input: Box::new(writer.clone()),
        outputs: vec![(CHAN_STDIO, Box::new(reader) as Output)],
        terminal: Some(writer),
    })
}

async fn supervise(running: Running, tx: StreamSender, rx: StreamReceiver) {
    let Running {
        pid,
        exit,
        input,
        outputs,
        terminal,
    } = running;
    let (exited_tx, exited_rx) = watch::channel(false);

    let mut aborts = Vec::new();
    let mut pumps = Vec::new();
    for (chan, reader) in outputs {
        let pump = tokio::spawn(pump(reader, tx.clone(), chan, exited_rx.clone()));
        aborts.push(pump.abort_handle());
        pumps.push(pump);
    }
    let drained = async move {
        for pump in pumps {
            let _ = pump.await;
        }
    };
    tokio::pin!(drained);

    let (closed_tx, mut closed) = oneshot::channel();
    let feeder = tokio::spawn(feed(rx, input, terminal.clone(), pid, exited_rx, closed_tx));

    let mut exit = exit;
    let mut status = None;
    let mut is_drained = false;
    while status.is_none() || !is_drained {
        tokio::select! {
            result = &mut exit, if status.is_none() => {
                let lost = ExitStatus { code: None, signal: None };
                status = Some(result.unwrap_or(lost));
                let _ = exited_tx.send(true);
            }
            () = &mut drained, if !is_drained => is_drained = true,
            _ = &mut closed => {
                if terminal.is_some() && status.is_none() {
                    reaper::kill(-pid, libc::SIGHUP);
                }
                for abort in aborts {
                    abort.abort();
                }
                return;
            }
        }
    }

    feeder.abort();
    let status = status.expect("the loop ends once the status is known");
    let _ = tx.eof(CHAN_STDIO);
    let _ = tx.eof(CHAN_STDERR);
    let _ = tx.control(&Control::Exit(status));
    tx.close(None);
}

/// Sends one output of the command on `chan` until it ends, or, once the
/// command has exited, until it stays silent for [`DRAIN_IDLE`].
async fn pump(mut reader: Output, tx: StreamSender, chan: u8, mut exited: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = if *exited.borrow() {
            match tokio::time::timeout(DRAIN_IDLE, reader.read(&mut buf)).await {
                Ok(read) => read,
                Err(_idle) => return,
            }
        } else {
            tokio::select! {
                read = reader.read(&mut buf) => read,
                changed = exited.wait_for(|e| *e) => match changed {
                    Ok(_) => continue,
                    Err(_) => return,
                },
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.data(chan, &buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Feeds the host's input to the command and acts on its control messages;
/// reports on `closed` when the stream closes.
async fn feed(
    mut rx: StreamReceiver,
    mut input: Input,
    terminal: Option<FdWriter>,
    pid: i32,
    exited: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let control = |message: Control| match message {
        Control::Signal { signal } if !*exited.borrow() => reaper::kill(pid, signal),
        Control::Resize(size) => {
            if let Some(terminal) = &terminal {
                let _ = pty::resize(terminal.fd().as_fd(), size);
            }
        }
        _ => {}
    };

    let end = inbound::copy_in(&mut rx, &mut input, control).await;
    // Closes a piped stdin; a terminal stays open through the other handles.
    drop(input);
    if end == End::Eof {
        inbound::until_closed(&mut rx, control).await;
    }
    let _ = closed.send(());
}
