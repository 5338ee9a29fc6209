//! An interactive terminal session: the local terminal in raw mode, joined to
//! a PTY in the guest, with resizes forwarded.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use anyhow::Result;
use hearth_protocol::{Control, Event, ExecSpec, ExitStatus, Request, TtySize, CHAN_STDIO};
use hearth_shim::ShimClient;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

/// The local terminal's size, when standard output is a terminal.
pub fn size() -> Option<TtySize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let size = terminal_size(&stdout)?;
    Some(size)
}

fn terminal_size(stdout: &std::io::Stdout) -> Option<TtySize> {
    // `stty size` prints "rows cols" for the terminal on its stdin.
    let _ = stdout;
    let output = std::process::Command::new("stty")
        .arg("size")
        .stdin(std::fs::File::open("/dev/tty").ok()?)
        .output()
        .ok()?;
    parse_stty_size(&String::from_utf8_lossy(&output.stdout))
}

/// Parses `stty size`'s "rows cols". A terminal that reports no size (0 by 0,
/// as a pseudo-terminal that nobody sized does) gives `None`, so callers fall
/// back to a default instead of asking for a zero-sized PTY.
fn parse_stty_size(text: &str) -> Option<TtySize> {
    let mut parts = text.split_whitespace();
    let rows = parts.next()?.parse().ok()?;
    let cols = parts.next()?.parse().ok()?;
    if rows == 0 || cols == 0 {
        return None;
    }
    Some(TtySize { rows, cols })
}

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts standard input's terminal in raw mode, when it is a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Runs `spec` on a guest PTY joined to the local terminal.
///
/// # Errors
///
/// Fails when the agent refuses the command or the VM goes away.
pub async fn interactive(client: &ShimClient, spec: ExecSpec) -> Result<ExitStatus> {
    let (tx, mut rx) = client.agent(Request::Exec(spec))?.split();
    let _raw = RawMode::enter();

    let input_tx = tx.clone();
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 || input_tx.data(CHAN_STDIO, &buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = input_tx.eof(CHAN_STDIO);
    });

    let resize_tx = tx.clone();
    let resizes = tokio::spawn(async move {
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = size() {
                let _ = resize_tx.control(&Control::Resize(size));
            }
        }
    });

    let mut stdout = tokio::io::stdout();
    let mut exit = None;
    let result = loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => {
                stdout.write_all(&bytes).await?;
                stdout.flush().await?;
            }
            Event::Control(Control::Exit(status)) => exit = Some(status),
            Event::Control(Control::Error { message }) => break Err(anyhow::anyhow!(message)),
            Event::Closed { reason } => {
                break exit.ok_or_else(|| {
                    anyhow::anyhow!(reason.unwrap_or_else(|| "the session ended".to_owned()))
                })
            }
            _ => {}
        }
    };
    input.abort();
    resizes.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sized_terminal_gives_its_rows_and_columns() {
        let size = parse_stty_size("40 120\n").expect("a size");
        assert_eq!((size.rows, size.cols), (40, 120));
    }

    #[test]
    fn an_unsized_terminal_gives_no_size() {
        assert!(parse_stty_size("0 0\n").is_none());
        assert!(parse_stty_size("0 80\n").is_none());
        assert!(parse_stty_size("").is_none());
    }
}
