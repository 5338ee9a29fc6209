//! The shell over a WebSocket: a terminal in the app's container.
//!
//! [`serve`] takes a connection whose WebSocket handshake is already done (the
//! ingress proxy answers it for `/shell`; `hearth shell --local` uses an
//! in-process pipe) and carries one interactive shell on it, opened through
//! the shim with [`Request::Shell`]: the app's environment, user, working
//! directory and capabilities, in the app's filesystem, network and process
//! table.
//!
//! # Messages
//!
//! - Binary frames are terminal bytes, both ways: keystrokes from the client,
//!   output from the shell.
//! - Text frames are JSON control messages, tagged by `type`:
//!   - client → server: `{"type":"resize","cols":120,"rows":40}` sets the
//!     terminal's size; `{"type":"signal","signal":2}` signals the shell.
//!   - server → client: `{"type":"exit","code":0}` once the shell has exited
//!     (`code` follows the shell's convention, 128 + N for signal N, which is
//!     also given as `signal`); `{"type":"error","message":"…"}` when the
//!     shell could not be started.
//! - The server then closes: code 1000 with the reason `exit <code>` after an
//!   exit, 1011 after an error, and 1001 (going away) with the reason the
//!   microVM gave (suspending, terminated, …) when the shell's stream ended
//!   without an exit. A client that closes (or drops the connection) hangs
//!   up the shell: its process group gets `SIGHUP`.
//!
//! The terminal's initial size comes from [`ShellOptions::size`] (the query
//! parameters `?cols=&rows=`, see [`ShellOptions::from_query`]), else from the
//! client's first message when it is a resize; a client that sends anything
//! else first, or nothing within [`FIRST_MESSAGE_WAIT`], gets
//! [`DEFAULT_SIZE`].

use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hearth_protocol::{
    Control, Event, ExitStatus, Request, ShellSpec, StreamReceiver, StreamSender, TtySize,
    CHAN_STDIO,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::client::{ClientError, ShimClient};

/// The WebSocket subprotocol the shell's endpoint answers with.
pub const SUBPROTOCOL: &str = "lambda-microvms";

/// The port that names the shell in the endpoint's port subprotocol.
pub const SHELL_PORT: u16 = 8022;

/// How long the server waits for a first resize when no size was given.
pub const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// The terminal size used when the client gives none.
pub const DEFAULT_SIZE: TtySize = TtySize { rows: 24, cols: 80 };

/// How long the server waits for the client's answer to its close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The longest close reason a WebSocket close frame can carry, in bytes.
const MAX_CLOSE_REASON: usize = 123;

/// A control message from the client (a text frame).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The terminal's new size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// A signal for the shell.
    Signal {
        /// Signal number.
        signal: i32,
    },
}

/// A control message from the server (a text frame).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The shell exited.
    Exit {
        /// Its exit code, or 128 + the signal that ended it.
        code: i32,
        /// The signal that ended it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// The shell could not be started.
    Error {
        /// Why, for a person.
        message: String,
    },
}

/// How a shell session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellEnd {
    /// The shell exited; the client was told its code.
    Exited(ExitStatus),
    /// The client closed the connection; the shell was hung up.
    ClientClosed,
    /// The microVM ended the shell's stream (suspend, stop) with this reason.
    Ended(String),
}

/// Errors serving a shell.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A query parameter is not a valid value.
    #[error("query parameter {field}: {value:?} is not a number from 1 to 65535")]
    BadQuery {
        /// The parameter's name.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The agent could not start the shell; the client was told why.
    #[error("the shell could not be started: {0}")]
    Refused(String),
    /// The shim could not be asked.
    #[error("open the shell")]
    Shim(#[from] ClientError),
    /// The WebSocket failed.
    #[error("shell websocket")]
    WebSocket(#[from] tungstenite::Error),
}

/// What the caller knows about a shell before its first message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellOptions {
    /// The terminal's initial size, if known.
    pub size: Option<TtySize>,
    /// `KEY=value` entries added over the app's environment.
    pub env: Vec<String>,
}

impl ShellOptions {
    /// Reads `cols` and `rows` from a URL query (`cols=120&rows=40`); other
    /// parameters are ignored. The size is set when both are given.
    ///
    /// # Errors
    ///
    /// Fails with [`ShellError::BadQuery`] naming a parameter that is not a
    /// number from 1 to 65535.
    pub fn from_query(query: &str) -> Result<ShellOptions, ShellError> {
        let mut cols = None;
        let mut rows = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "cols" => &mut cols,
                "rows" => &mut rows,
                _ => continue,
            };
            let field = if key == "cols" { "cols" } else { "rows" };
            let parsed = value.parse::<u16>().ok().filter(|n| *n > 0);
            *slot = Some(parsed.ok_or_else(|| ShellError::BadQuery {
                field,
                value: value.to_owned(),
            })?);
        }
        let size = match (cols, rows) {
            (Some(cols), Some(rows)) => Some(TtySize { rows, cols }),
            _ => None,
        };
        Ok(ShellOptions {
            size,
            env: Vec::new(),
        })
    }
}

/// Serves a shell on `io`, an upgraded WebSocket connection, until the
/// shell exits, the client leaves or the microVM ends the stream.
///
/// # Errors
///
/// Fails when the shim cannot be asked, the agent refuses the shell (the
/// client is told why first) or the WebSocket fails.
pub async fn serve<IO>(io: IO, client: &ShimClient) -> Result<ShellEnd, ShellError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_with(io, client, ShellOptions::default()).await
}

/// Like [`serve`], with what the caller already knows (the query's size).
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_with<IO>(
    io: IO,
    client: &ShimClient,
    options: ShellOptions,
) -> Result<ShellEnd, ShellError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut source) = ws.split();

    let (size, early) = match options.size {
        Some(size) => (size, None),
        None => match first_message(&mut source).await {
            First::Size(size) => (size, None),
            First::Other(message) => (DEFAULT_SIZE, Some(message)),
            First::Nothing => (DEFAULT_SIZE, None),
            First::Closed => return Ok(ShellEnd::ClientClosed),
        },
    };
    tracing::debug!(rows = size.rows, cols = size.cols, "opening a shell");

    let spec = ShellSpec {
        tty: size,
        env: options.env,
    };
    let (tx, mut rx) = client.agent(Request::Shell(spec))?.split();
    if let Some(message) = early {
        if !forward(message, &tx).await {
            tx.close(None);
            return Ok(ShellEnd::ClientClosed);
        }
    }

    // Each direction runs on its own so that a client that is slow to read
    // never stops its keystrokes from reaching the shell, nor the reverse.
    let end = tokio::select! {
        () = input(&mut source, &tx) => {
            tx.close(None);
            return Ok(ShellEnd::ClientClosed);
        }
        end = output(&mut rx, &mut sink) => end,
    };
    drop(tx);

    let (frame, result) = match end {
        Ok(Output::Exited(status)) => {
            let code = status.shell_code();
            let frame = close_frame(CloseCode::Normal, &format!("exit {code}"));
            (frame, Ok(ShellEnd::Exited(status)))
        }
        Ok(Output::Ended(reason)) => {
            let frame = close_frame(CloseCode::Away, &reason);
            (frame, Ok(ShellEnd::Ended(reason)))
        }
        Ok(Output::Refused(message)) => {
            let frame = close_frame(CloseCode::Error, &message);
            (frame, Err(ShellError::Refused(message)))
        }
        Err(err) => return Err(err.into()),
    };
    close(sink, source, frame).await;
    result
}

/// What the client sent first.
enum First {
    Size(TtySize),
    Other(Message),
    Nothing,
    Closed,
}

async fn first_message<S>(source: &mut SplitStream<WebSocketStream<S>>) -> First
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let next = tokio::time::timeout(FIRST_MESSAGE_WAIT, source.next()).await;
    let message = match next {
        Err(_elapsed) => return First::Nothing,
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return First::Closed,
        Ok(Some(Ok(message))) => message,
    };
    if let Message::Text(text) = &message {
        if let Ok(ClientMessage::Resize { cols, rows }) = serde_json::from_str(text) {
            return First::Size(TtySize { rows, cols });
        }
    }
    First::Other(message)
}

/// Relays the client's messages to the shell until the client leaves.
async fn input<S>(source: &mut SplitStream<WebSocketStream<S>>, tx: &StreamSender)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = source.next().await {
        if !forward(message, tx).await {
            return;
        }
    }
}

/// Passes one client message on; false when the client has closed.
async fn forward(message: Message, tx: &StreamSender) -> bool {
    match message {
        Message::Binary(bytes) => {
            let _ = tx.data(CHAN_STDIO, &bytes).await;
        }
        Message::Text(text) => match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Resize { cols, rows }) => {
                let _ = tx.control(&Control::Resize(TtySize { rows, cols }));
            }
            Ok(ClientMessage::Signal { signal }) => {
                let _ = tx.control(&Control::Signal { signal });
            }
            Err(err) => tracing::debug!(error = %err, "ignoring a shell control message"),
        },
        Message::Close(_) => return false,
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
    }
    true
}

/// How the shell's side ended.
enum Output {
    Exited(ExitStatus),
    Ended(String),
    Refused(String),
}

/// Relays the shell's output to the client until its stream closes.
async fn output<S>(
    rx: &mut StreamReceiver,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
) -> Result<Output, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut exit = None;
    loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => sink.send(Message::Binary(bytes)).await?,
            Event::Eof { .. } => {}
            Event::Control(Control::Exit(status)) => exit = Some(status),
            Event::Control(Control::Error { message }) => {
                send_json(
                    sink,
                    &ServerMessage::Error {
                        message: message.clone(),
                    },
                )
                .await?;
                return Ok(Output::Refused(message));
            }
            Event::Control(_) => {}
            Event::Closed { reason } => {
                let Some(status) = exit else {
                    let reason = reason.unwrap_or_else(|| "the shell's stream ended".to_owned());
                    return Ok(Output::Ended(reason));
                };
                let message = ServerMessage::Exit {
                    code: status.shell_code(),
                    signal: status.signal,
                };
                send_json(sink, &message).await?;
                return Ok(Output::Exited(status));
            }
        }
    }
}

async fn send_json<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    message: &ServerMessage,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = serde_json::to_string(message).expect("a server message serializes");
    sink.send(Message::text(text)).await
}

fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: reason[..end].into(),
    }
}

/// Sends the close and waits a little for the client's answer, so that the
/// client reads everything before the connection goes.
async fn close<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut source: SplitStream<WebSocketStream<S>>,
    frame: CloseFrame,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drained = async { while let Some(Ok(_)) = source.next().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_gives_the_initial_size() {
        let options = ShellOptions::from_query("rows=40&x=1&cols=120").expect("query");
        assert_eq!(
            options.size,
            Some(TtySize {
                rows: 40,
                cols: 120
            })
        );

        let options = ShellOptions::from_query("cols=120").expect("query");
        assert_eq!(options.size, None);
        assert_eq!(ShellOptions::from_query("").expect("empty").size, None);
    }

    #[test]
    fn a_bad_query_value_names_its_parameter() {
        let err = ShellOptions::from_query("cols=wide&rows=40").expect_err("bad cols");
        assert!(err.to_string().contains("cols"), "{err}");
        let err = ShellOptions::from_query("cols=80&rows=0").expect_err("zero rows");
        assert!(err.to_string().contains("rows"), "{err}");
    }

    #[test]
    fn control_messages_read_as_documented() {
        let resize: ClientMessage =
            serde_json::from_str(r#"{"type":"resize","cols":120,"rows":40}"#).expect("resize");
        assert_eq!(
            resize,
            ClientMessage::Resize {
                cols: 120,
                rows: 40
            }
        );

        let exit = ServerMessage::Exit {
            code: 3,
            signal: None,
        };
        let json = serde_json::to_value(&exit).expect("json");
        assert_eq!(json, serde_json::json!({"type": "exit", "code": 3}));
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let frame = close_frame(CloseCode::Away, &long);
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(long.starts_with(frame.reason.as_str()));
    }
}
