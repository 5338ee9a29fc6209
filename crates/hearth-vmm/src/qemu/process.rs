//! Watching the QEMU process: its stderr, its QMP events and its exit.
//!
//! Why QEMU ended comes from two places: the `SHUTDOWN` event names the
//! cause of an orderly exit (guest poweroff, guest reset, QMP `quit`, a
//! signal QEMU handled), and the process status tells a crash or a kill.
//! The watcher waits for the process, then for the event stream and stderr
//! to drain (both end when the process does), and only then publishes one
//! [`ExitReason`], so the event cannot lose a race with the exit.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::{broadcast, mpsc, watch};

use crate::qmp::{QmpEvent, QmpEventKind};

/// How many lines of QEMU's stderr are kept for error messages.
const STDERR_LINES: usize = 20;

/// How long the watcher waits for the event stream and stderr to end after
/// the process did.
const DRAIN: Duration = Duration::from_secs(2);

/// Why a QEMU process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitReason {
    /// The guest powered off.
    GuestPoweroff,
    /// The guest rebooted (with `-no-reboot`, QEMU exits instead).
    GuestReset,
    /// The guest kernel panicked and QEMU saw it through pvpanic.
    GuestPanic,
    /// A QMP `quit` asked QEMU to exit.
    QmpQuit,
    /// QEMU received SIGTERM, SIGINT or SIGHUP and shut down in order.
    HostSignal,
    /// Another orderly shutdown; `reason` is QEMU's shutdown cause.
    Shutdown {
        /// QEMU's `ShutdownCause`.
        reason: String,
    },
    /// The process was killed by a signal it did not handle.
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The process exited without a shutdown event, e.g. a startup error
    /// or a state that failed to load.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The watcher stopped before it learned the outcome.
    Unknown,
}

impl ExitReason {
    /// Combines the process status with the last `SHUTDOWN` reason.
    pub fn from_status(status: ExitStatus, shutdown: Option<&str>) -> ExitReason {
        if let Some(signal) = status.signal() {
            return ExitReason::Killed { signal };
        }
        let code = status.code().unwrap_or(-1);
        if code != 0 {
            return ExitReason::Exited { code };
        }
        match shutdown {
            Some("guest-shutdown") => ExitReason::GuestPoweroff,
            Some("guest-reset") => ExitReason::GuestReset,
            Some("guest-panic") => ExitReason::GuestPanic,
            Some("host-qmp-quit") => ExitReason::QmpQuit,
            Some("host-signal") => ExitReason::HostSignal,
            Some(reason) => ExitReason::Shutdown {
                reason: reason.to_owned(),
            },
            None => ExitReason::Exited { code },
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::GuestPoweroff => f.write_str("guest powered off"),
            ExitReason::GuestReset => f.write_str("guest reset"),
            ExitReason::GuestPanic => f.write_str("guest panicked"),
            ExitReason::QmpQuit => f.write_str("shutdown requested via qmp"),
            ExitReason::HostSignal => f.write_str("qemu terminated by a host signal"),
            ExitReason::Shutdown { reason } => write!(f, "shutdown ({reason})"),
            ExitReason::Killed { signal } => write!(f, "killed by signal {signal}"),
            ExitReason::Exited { code } => write!(f, "exited with code {code}"),
            ExitReason::Unknown => f.write_str("exit reason unknown"),
        }
    }
}

/// The last lines QEMU wrote to stderr.
#[derive(Debug, Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// The kept lines, joined by `; `.
    pub(crate) fn text(&self) -> String {
        let lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn push(&self, line: String) {
        let mut lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// Reads QEMU's stderr into `tail` until it closes.
pub(crate) async fn read_stderr(stderr: ChildStderr, tail: StderrTail, pid: u32) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(pid, line = %line, "qemu stderr");
        tail.push(line);
    }
}

/// The shutdown reason seen on the event stream, and its end.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShutdownRecord(Arc<Mutex<Option<String>>>);

impl ShutdownRecord {
    fn set(&self, reason: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Records `SHUTDOWN` reasons and forwards every event to subscribers;
/// `closed` is dropped when the stream ends.
pub(crate) async fn pump_events(
    mut events: mpsc::UnboundedReceiver<QmpEvent>,
    record: ShutdownRecord,
    subscribers: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<()>,
) {
    while let Some(event) = events.recv().await {
        if let QmpEventKind::Shutdown { reason, .. } = event.kind() {
            record.set(reason);
        }
        // No subscriber is fine.
        let _ = subscribers.send(event);
    }
    drop(closed);
}

/// Waits for the process, lets the event stream and stderr drain, then
/// publishes the exit reason.
pub(crate) async fn watch_exit(
    mut child: Child,
    stderr_done: tokio::task::JoinHandle<()>,
    mut events_closed: watch::Receiver<()>,
    record: ShutdownRecord,
    exit: watch::Sender<Option<ExitReason>>,
) {
    let status = child.wait().await;

    let drain = async {
        // `changed` fails once the pump drops its sender.
        while events_closed.changed().await.is_ok() {}
        let _ = stderr_done.await;
    };
    let _ = tokio::time::timeout(DRAIN, drain).await;

    let reason = match status {
        Ok(status) => ExitReason::from_status(status, record.get().as_deref()),
        Err(error) => {
            tracing::error!(%error, "cannot wait for qemu");
            ExitReason::Unknown
        }
    };
    let _ = exit.send(Some(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_event_combine() {
        let ok = ExitStatus::from_raw(0);
        let killed = ExitStatus::from_raw(9);
        let failed = ExitStatus::from_raw(1 << 8);

        assert_eq!(
            ExitReason::from_status(ok, Some("guest-shutdown")),
            ExitReason::GuestPoweroff
        );
        assert_eq!(
            ExitReason::from_status(ok, Some("guest-reset")),
            ExitReason::GuestReset
        );
        assert_eq!(
            ExitReason::from_status(ok, Some("host-qmp-quit")),
            ExitReason::QmpQuit
        );
        assert_eq!(
            ExitReason::from_status(killed, None),
            ExitReason::Killed { signal: 9 }
        );
        assert_eq!(
            ExitReason::from_status(failed, None),
            ExitReason::Exited { code: 1 }
        );
        assert_eq!(
            ExitReason::Killed { signal: 9 }.to_string(),
            "killed by signal 9"
        );
    }
}
