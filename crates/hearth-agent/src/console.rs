//! Short messages on the guest's serial console.
//!
//! Every line goes through one writer thread and a bounded queue, so a slow
//! console (a serial port under emulation) never stalls the agent: when the
//! queue is full the line is dropped. Until [`init`] runs, nothing is written,
//! which keeps unit tests quiet.
//!
//! The app's output is echoed line by line with [`Echo`], truncated and rate
//! limited, because the app controls how much it prints.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::Instant;

/// Lines waiting for the console before new ones are dropped.
const QUEUE_LINES: usize = 256;

/// Longest app line echoed; the rest is cut.
const ECHO_LINE_MAX: usize = 200;

/// App lines echoed per second, on average.
const ECHO_RATE: f64 = 20.0;

/// App lines that may be echoed in a burst.
const ECHO_BURST: f64 = 100.0;

static CONSOLE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// Starts the writer thread; lines then go to the agent's stderr, which the
/// boot sequence points at `/dev/console`.
pub fn init() {
    CONSOLE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
        std::thread::Builder::new()
            .name("console".to_owned())
            .spawn(move || {
                let mut err = std::io::stderr();
                for line in rx {
                    let _ = err.write_all(&line);
                }
            })
            .expect("the console thread starts at boot, when threads are plentiful");
        tx
    });
}

/// Writes raw bytes to the console if it is set up and not backed up.
fn emit(bytes: Vec<u8>) {
    if let Some(tx) = CONSOLE.get() {
        let _ = tx.try_send(bytes);
    }
}

/// Writes one agent line, prefixed `hearth-agent: `.
pub fn line(message: &str) {
    emit(format!("hearth-agent: {message}\n").into_bytes());
}

/// Writes one agent line with `format!` arguments.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(&format!($($arg)*))
    };
}

/// Echoes one output stream of the app to the console, line by line.
pub struct Echo {
    partial: Vec<u8>,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Default for Echo {
    fn default() -> Echo {
        Echo::new()
    }
}

impl Echo {
    /// An echo with a full burst allowance.
    pub fn new() -> Echo {
        Echo {
            partial: Vec::new(),
            tokens: ECHO_BURST,
            refilled: Instant::now(),
            dropped: 0,
        }
    }

    /// Takes a chunk of output; complete lines are echoed.
    pub fn feed(&mut self, bytes: &[u8]) {
        for line in self.lines(bytes).into_iter().flatten() {
            emit(line);
        }
    }

    /// Echoes a last line without its newline.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.feed(b"\n");
        }
    }

    /// Splits a chunk into console lines: `Some` to print, `None` for a line
    /// the rate limit dropped.
    fn lines(&mut self, bytes: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.len() < ECHO_LINE_MAX {
                let room = ECHO_LINE_MAX - self.partial.len();
                self.partial.extend_from_slice(&rest[..pos.min(room)]);
            }
            rest = &rest[pos + 1..];
            let text = std::mem::take(&mut self.partial);
            out.push(self.admit(&text));
        }
        let room = ECHO_LINE_MAX.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&rest[..rest.len().min(room)]);
        out
    }

    /// Applies the rate limit to one line and formats it.
    fn admit(&mut self, text: &[u8]) -> Option<Vec<u8>> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * ECHO_RATE).min(ECHO_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1.0;

        let mut line = Vec::with_capacity(text.len() + 48);
        if self.dropped > 0 {
            line.extend_from_slice(
                format!("app: ({} lines not echoed)\n", self.dropped).as_bytes(),
            );
            self.dropped = 0;
        }
        line.extend_from_slice(b"app: ");
        line.extend(text.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
        line.push(b'\n');
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_splits_lines_and_keeps_partial_ones() {
        let mut echo = Echo::new();
        let lines = echo.lines(b"one\ntw");
        assert_eq!(lines, vec![Some(b"app: one\n".to_vec())]);
        let lines = echo.lines(b"o\n");
        assert_eq!(lines, vec![Some(b"app: two\n".to_vec())]);
    }

    #[test]
    fn echo_truncates_long_lines() {
        let mut echo = Echo::new();
        let long = vec![b'x'; 1000];
        let mut input = long.clone();
        input.push(b'\n');
        let lines = echo.lines(&input);
        let line = lines[0].as_ref().expect("echoed");
        assert_eq!(line.len(), "app: ".len() + ECHO_LINE_MAX + 1);
    }

    #[test]
    fn echo_drops_lines_beyond_the_burst_and_says_so() {
        let mut echo = Echo::new();
        let flood = b"line\n".repeat(ECHO_BURST as usize + 50);
        let lines = echo.lines(&flood);
        let printed = lines.iter().filter(|l| l.is_some()).count();
        assert!(printed <= ECHO_BURST as usize + 1, "{printed}");
        assert!(echo.dropped > 0);

        echo.refilled -= std::time::Duration::from_secs(1);
        let next = echo.lines(b"after\n");
        let text = String::from_utf8(next[0].clone().expect("echoed")).expect("utf-8");
        assert!(text.starts_with("app: ("), "{text}");
        assert!(text.ends_with("app: after\n"), "{text}");
    }
}
