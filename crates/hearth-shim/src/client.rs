//! A client of one shim: status, agent streams, snapshots, stop.

use std::path::Path;
use std::time::Duration;

use hearth_protocol::mux::{handshake_host, FrameReader};
use hearth_protocol::{
    Control, Event, ExecSpec, ExitStatus, Request, Role, Session, SessionError, Stream,
    StreamReceiver, CHAN_STDERR, CHAN_STDIO,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::layout::{VmDir, VmState};
use crate::request::{ShimRequest, SnapshotResult};

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No shim answers at the VM's socket: the VM is not running.
    #[error("vm {id} is not running ({reason})")]
    NotRunning {
        /// The VM's id.
        id: String,
        /// What connecting said.
        reason: String,
    },
    /// The shim or agent refused the request.
    #[error("{0}")]
    Refused(String),
    /// The stream ended before its answer.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A local read or write failed.
    #[error("local i/o")]
    Io(#[from] std::io::Error),
    /// The answer was not what the request expects.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// A connection to one VM's shim.
pub struct ShimClient {
    session: Session,
}

impl ShimClient {
    /// Connects to the shim of the VM in `dir`.
    ///
    /// # Errors
    ///
    /// Fails with [`ClientError::NotRunning`] when no shim answers.
    pub async fn connect(dir: &VmDir) -> Result<ShimClient, ClientError> {
        Self::connect_socket(&dir.shim_socket(), &dir.id()).await
    }

    /// Connects to a shim socket.
    ///
    /// # Errors
    ///
    /// Fails with [`ClientError::NotRunning`] when no shim answers.
    pub async fn connect_socket(socket: &Path, id: &str) -> Result<ShimClient, ClientError> {
        let not_running = |reason: String| ClientError::NotRunning {
            id: id.to_owned(),
            reason,
        };
        let io = UnixStream::connect(socket)
            .await
            .map_err(|err| not_running(err.to_string()))?;
        let (read, mut write) = io.into_split();
        let mut reader = FrameReader::new(read);
        tokio::time::timeout(
            Duration::from_secs(10),
            handshake_host(&mut reader, &mut write),
        )
        .await
        .map_err(|_| not_running("the shim did not answer".to_owned()))?
        .map_err(|err| not_running(err.to_string()))?;
        let (session, _tasks) = Session::start(Role::Host, reader, write);
        Ok(ShimClient { session })
    }

    /// Opens a raw stream with a request.
    ///
    /// # Errors
    ///
    /// Fails when the connection has ended.
    pub fn open(&self, request: &ShimRequest) -> Result<Stream, ClientError> {
        Ok(self.session.open(request)?)
    }

    /// Opens a stream relayed to the agent.
    ///
    /// # Errors
    ///
    /// Fails when the connection has ended.
    pub fn agent(&self, request: Request) -> Result<Stream, ClientError> {
        self.open(&ShimRequest::Agent { request })
    }

    /// The VM's recorded state.
    ///
    /// # Errors
    ///
    /// Fails when the shim does not answer.
    pub async fn status(&self) -> Result<VmState, ClientError> {
        let value = self.call(&ShimRequest::Status).await?;
        serde_json::from_value(value).map_err(|err| ClientError::Unexpected(err.to_string()))
    }

    /// Takes a snapshot into the directory `path`.
    ///
    /// # Errors
    ///
    /// Fails when the snapshot could not be taken; the VM then keeps running.
    pub async fn snapshot(&self, path: &Path, stop: bool) -> Result<SnapshotResult, ClientError> {
        let request = ShimRequest::Snapshot {
            path: path.to_owned(),
            stop,
        };
        let value = self.call(&request).await?;
        serde_json::from_value(value).map_err(|err| ClientError::Unexpected(err.to_string()))
    }

    /// Stops the VM and waits until it has exited.
    ///
    /// # Errors
    ///
    /// Fails when the shim does not answer.
    pub async fn stop(&self) -> Result<(), ClientError> {
        self.call(&ShimRequest::Stop).await.map(drop)
    }

    /// Runs a command in the guest with pipes; returns how it ended.
    ///
    /// # Errors
    ///
    /// Fails when the agent refuses the command or the VM goes away.
    pub async fn exec<I, O, E>(
        &self,
        spec: ExecSpec,
        stdin: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<ExitStatus, ClientError>
    where
        I: AsyncRead + Unpin + Send + 'static,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let (tx, mut rx) = self.agent(Request::Exec(spec))?.split();
        let feeder = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match stdin.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.data(CHAN_STDIO, &buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            let _ = tx.eof(CHAN_STDIO);
        });

        let result = drain_exec(&mut rx, stdout, stderr).await;
        feeder.abort();
        result
    }

    /// Writes a file in the guest from `data`.
    ///
    /// # Errors
    ///
    /// Fails when the agent cannot write the file.
    pub async fn write_file<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &mut R,
    ) -> Result<(), ClientError> {
        self.write(path, mode, false, data).await
    }

    /// Writes a file in the guest from `data`, owned by the app's user.
    ///
    /// # Errors
    ///
    /// Fails when the agent cannot write the file.
    pub async fn write_app_file<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &mut R,
    ) -> Result<(), ClientError> {
        self.write(path, mode, true, data).await
    }

    async fn write<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mode: Option<u32>,
        as_app: bool,
        data: &mut R,
    ) -> Result<(), ClientError> {
        let request = Request::WriteFile {
            path: path.to_owned(),
            mode,
            as_app,
        };
        let (tx, mut rx) = self.agent(request)?.split();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = data.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            tx.data(CHAN_STDIO, &buf[..n]).await?;
        }
        tx.eof(CHAN_STDIO)?;
        expect_ok(&mut rx).await.map(drop)
    }

    /// Reads a file from the guest into `out`.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read.
    pub async fn read_file<W: AsyncWrite + Unpin>(
        &self,
        path: &str,
        out: &mut W,
    ) -> Result<(), ClientError> {
        let (_tx, mut rx) = self
            .agent(Request::ReadFile {
                path: path.to_owned(),
            })?
            .split();
        loop {
            match rx.recv().await {
                Event::Data { bytes, .. } => out.write_all(&bytes).await?,
                Event::Eof { .. } => {}
                Event::Control(Control::Ok { .. }) => {
                    out.flush().await?;
                    return Ok(());
                }
                Event::Control(Control::Error { message }) => {
                    return Err(ClientError::Refused(message))
                }
                Event::Control(other) => return Err(ClientError::Unexpected(format!("{other:?}"))),
                Event::Closed { reason } => return Err(closed(reason)),
            }
        }
    }

    /// Opens a TCP tunnel to `port` inside the guest, once it is connected.
    ///
    /// # Errors
    ///
    /// Fails when nothing listens on the port.
    pub async fn tunnel(&self, port: u16) -> Result<Stream, ClientError> {
        let mut stream = self.agent(Request::Tunnel { port })?;
        expect_ok(&mut stream.receiver).await?;
        Ok(stream)
    }

    /// Sends a request whose answer is one `Ok` value.
    async fn call(&self, request: &ShimRequest) -> Result<serde_json::Value, ClientError> {
        let (_tx, mut rx) = self.open(request)?.split();
        expect_ok(&mut rx).await
    }
}

/// Waits for `Ok` (its value) or `Error` on a stream.
///
/// # Errors
///
/// Fails with the stream's error message or close reason.
pub async fn expect_ok(rx: &mut StreamReceiver) -> Result<serde_json::Value, ClientError> {
    loop {
        match rx.recv().await {
            Event::Control(Control::Ok { value }) => return Ok(value),
            Event::Control(Control::Error { message }) => {
                return Err(ClientError::Refused(message))
            }
            Event::Closed { reason } => return Err(closed(reason)),
            _ => {}
        }
    }
}

async fn drain_exec<O, E>(
    rx: &mut StreamReceiver,
    stdout: &mut O,
    stderr: &mut E,
) -> Result<ExitStatus, ClientError>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut exit = None;
    loop {
        match rx.recv().await {
            Event::Data {
                chan: CHAN_STDERR,
                bytes,
            } => {
                stderr.write_all(&bytes).await?;
                stderr.flush().await?;
            }
            Event::Data { bytes, .. } => {
                stdout.write_all(&bytes).await?;
                stdout.flush().await?;
            }
            Event::Eof { .. } => {}
            Event::Control(Control::Exit(status)) => exit = Some(status),
            Event::Control(Control::Error { message }) => {
                return Err(ClientError::Refused(message))
            }
            Event::Control(_) => {}
            Event::Closed { reason } => {
                return match (exit, reason) {
                    (Some(status), _) => Ok(status),
                    (None, reason) => Err(closed(reason)),
                };
            }
        }
    }
}

fn closed(reason: Option<String>) -> ClientError {
    let reason = reason.unwrap_or_else(|| "the stream ended without an answer".to_owned());
    ClientError::Session(SessionError::Closed(reason))
}
