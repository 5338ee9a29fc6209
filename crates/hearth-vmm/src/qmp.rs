//! An asynchronous client for the QEMU Machine Protocol over a unix socket.
//!
//! QMP is line-delimited JSON. On connect QEMU sends a greeting
//! (`{"QMP": {...}}`); the client answers with `qmp_capabilities`, after
//! which commands may be sent. Each command carries an `id`, and QEMU echoes
//! it in the `return` or `error` reply, so several commands may be in flight.
//! Lines with an `event` key are asynchronous events and go to the event
//! channel returned by [`QmpClient::connect`].
//!
//! One reader task owns the read half. When the socket closes (QEMU exited)
//! every pending command fails with [`QmpError::Disconnected`] and the event
//! channel ends, which is how callers learn that QEMU is gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Errors of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The QMP socket could not be connected.
    #[error("cannot connect to qmp socket {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing the socket failed.
    #[error("qmp socket i/o failed")]
    Io(#[from] std::io::Error),

    /// The first line QEMU sent was not a QMP greeting.
    #[error("unexpected qmp greeting: {line}")]
    Greeting {
        /// The line received instead.
        line: String,
    },

    /// QEMU sent a line that is not valid JSON.
    #[error("qmp sent invalid json: {line}")]
    Json {
        /// The offending line.
        line: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// QEMU answered a command with an error.
    #[error("qmp command {command} failed: {class}: {desc}")]
    Command {
        /// The command that failed.
        command: String,
        /// QEMU's error class, such as `GenericError`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },

    /// The connection closed before the reply arrived.
    #[error("qmp connection closed")]
    Disconnected,
}

/// An asynchronous event sent by QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name, such as `SHUTDOWN`, `STOP`, `RESUME` or `MIGRATION`.
    pub name: String,
    /// The event's `data` object (`Null` when the event has none).
    pub data: Value,
}

impl QmpEvent {
    /// The typed form of the events the driver acts on.
    pub fn kind(&self) -> QmpEventKind {
        let field = |key: &str| {
            self.data
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };

        match self.name.as_str() {
            "SHUTDOWN" => QmpEventKind::Shutdown {
                guest: self
                    .data
                    .get("guest")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                reason: field("reason").unwrap_or_default(),
            },
            "STOP" => QmpEventKind::Stop,
            "RESUME" => QmpEventKind::Resume,
            "MIGRATION" => QmpEventKind::Migration {
                status: field("status").unwrap_or_default(),
            },
            _ => QmpEventKind::Other,
        }
    }
}

/// The QMP events this crate interprets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEventKind {
    /// QEMU is shutting down; `reason` is QEMU's `ShutdownCause`
    /// (`guest-shutdown`, `guest-reset`, `host-qmp-quit`, ...).
    Shutdown {
        /// Whether the guest caused it.
        guest: bool,
        /// QEMU's shutdown cause.
        reason: String,
    },
    /// The VM stopped running.
    Stop,
    /// The VM started running again.
    Resume,
    /// A migration changed state (`setup`, `active`, `completed`, `failed`, ...).
    Migration {
        /// The new migration status.
        status: String,
    },
    /// Any other event.
    Other,
}

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>>;
type Reply = Result<Value, (String, String)>;

/// A connected QMP session, in command mode.
#[derive(Debug)]
pub struct QmpClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    greeting: Value,
}

#[derive(Deserialize)]
struct ErrorBody {
    class: String,
    desc: String,
}

impl QmpClient {
    /// Connects to QEMU's QMP socket, reads the greeting and enters command
    /// mode. Events arrive on the returned channel, which ends when the
    /// connection closes.
    ///
    /// # Errors
    ///
    /// Fails when the socket cannot be connected, the greeting is not QMP,
    /// or `qmp_capabilities` is refused.
    pub async fn connect(
        path: &Path,
    ) -> Result<(QmpClient, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();

        let line = lines.next_line().await?.ok_or(QmpError::Disconnected)?;
        let greeting = parse_line(&line)?;
        let Some(greeting) = greeting.get("QMP").cloned() else {
            return Err(QmpError::Greeting { line });
        };

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(lines, pending.clone(), events_tx));

        let client = QmpClient {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            greeting,
        };
        client.execute("qmp_capabilities", None).await?;
        Ok((client, events_rx))
    }

    /// The `QMP` object of QEMU's greeting (version and capabilities).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Runs one command and returns its `return` value.
    ///
    /// # Errors
    ///
    /// [`QmpError::Command`] when QEMU refuses it, [`QmpError::Disconnected`]
    /// when the connection closes first, [`QmpError::Io`] when the write fails.
    pub async fn execute(&self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = Map::new();
        request.insert("execute".into(), json!(command));
        if let Some(args) = args {
            request.insert("arguments".into(), args);
        }
        request.insert("id".into(), json!(id));

        // Register before writing so that a fast reply finds its waiter.
        let (tx, rx) = oneshot::channel();
        match lock(&self.pending).as_mut() {
            Some(map) => map.insert(id, tx),
            None => return Err(QmpError::Disconnected),
        };

        let mut line = Value::Object(request).to_string();
        line.push('\n');
        let written = self.writer.lock().await.write_all(line.as_bytes()).await;
        if let Err(e) = written {
            if let Some(map) = lock(&self.pending).as_mut() {
                map.remove(&id);
            }
            return Err(e.into());
        }

        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((class, desc))) => Err(QmpError::Command {
                command: command.to_owned(),
                class,
                desc,
            }),
            Err(_) => Err(QmpError::Disconnected),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a panic elsewhere; its contents stay valid.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_line(line: &str) -> Result<Value, QmpError> {
    serde_json::from_str(line).map_err(|source| QmpError::Json {
        line: line.to_owned(),
        source,
    })
}

/// Reads replies and events until the socket closes, then fails whatever
/// is still pending.
async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    pending: Pending,
    events: mpsc::UnboundedSender<QmpEvent>,
) {
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "qmp read failed");
                break;
            }
        };
        let value = match parse_line(&line) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(%error, "ignoring a qmp line");
                continue;
            }
        };
        dispatch(value, &pending, &events);
    }

    // Dropping the senders wakes every waiter with Disconnected.
    lock(&pending).take();
}

fn dispatch(value: Value, pending: &Pending, events: &mpsc::UnboundedSender<QmpEvent>) {
    if let Some(name) = value.get("event").and_then(Value::as_str) {
        let event = QmpEvent {
            name: name.to_owned(),
            data: value.get("data").cloned().unwrap_or(Value::Null),
        };
        tracing::debug!(event = %event.name, data = %event.data, "qmp event");
        // Nobody listening is fine: events are advisory.
        let _ = events.send(event);
        return;
    }

    let Some(id) = value.get("id").and_then(Value::as_u64) else {
        tracing::debug!(%value, "qmp reply without id");
        return;
    };
    let reply = if let Some(ret) = value.get("return") {
        Ok(ret.clone())
    } else {
        let body = value.get("error").cloned().unwrap_or(Value::Null);
        match serde_json::from_value::<ErrorBody>(body) {
            Ok(e) => Err((e.class, e.desc)),
            Err(_) => Err(("Unknown".to_owned(), value.to_string())),
        }
    };
    let waiter = lock(pending).as_mut().and_then(|map| map.remove(&id));
    if let Some(waiter) = waiter {
        let _ = waiter.send(reply);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QEMU that greets, accepts capabilities and answers one command
    /// with an event before the reply, then hangs up.
    async fn fake_qemu(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();

        let caps: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(caps["execute"], "qmp_capabilities");
        let reply = json!({"return": {}, "id": caps["id"]});
        write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();

        let cmd: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let event = json!({"event": "STOP", "timestamp": {}});
        write
            .write_all(format!("{event}\n").as_bytes())
            .await
            .unwrap();
        let reply = if cmd["execute"] == "stop" {
            json!({"return": {}, "id": cmd["id"]})
        } else {
            json!({"error": {"class": "CommandNotFound", "desc": "no"}, "id": cmd["id"]})
        };
        write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn command_reply_and_event_are_routed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(fake_qemu(listener));

        let (client, mut events) = QmpClient::connect(&path).await.unwrap();
        client.execute("stop", None).await.unwrap();
        let event = events.recv().await.unwrap();
        assert_eq!(event.kind(), QmpEventKind::Stop);

        server.await.unwrap();
        assert!(events.recv().await.is_none());
        let err = client.execute("cont", None).await.unwrap_err();
        assert!(
            matches!(err, QmpError::Disconnected | QmpError::Io(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refused_command_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(fake_qemu(listener));

        let (client, _events) = QmpClient::connect(&path).await.unwrap();
        let err = client.execute("bogus", None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "qmp command bogus failed: CommandNotFound: no"
        );
        server.await.unwrap();
    }

    #[test]
    fn shutdown_event_is_parsed() {
        let event = QmpEvent {
            name: "SHUTDOWN".into(),
            data: json!({"guest": true, "reason": "guest-reset"}),
        };
        assert_eq!(
            event.kind(),
            QmpEventKind::Shutdown {
                guest: true,
                reason: "guest-reset".into()
            }
        );
    }
}
