//! Copying a stream's channel-0 data into a writer (a command's stdin, a
//! terminal, a TCP socket) while still seeing the stream's other events.
//!
//! A writer can block for as long as its reader does not read, yet the stream
//! must still notice a signal, a resize or the host closing it. So the copy
//! selects between receiving and writing, holding at most [`MAX_PENDING`]
//! bytes received but not yet written; beyond that it stops receiving, which
//! stops granting the host credit.

use std::collections::VecDeque;
use std::io;

use bytes::{Buf, Bytes};
use hearth_protocol::{Control, Event, StreamReceiver, CHAN_STDIO};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes received and not yet written before the copy stops receiving.
pub const MAX_PENDING: usize = 256 * 1024;

/// How the inbound side ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The host sent `Eof` on channel 0 and every byte before it was written
    /// (or the writer failed and the rest was discarded).
    Eof,
    /// The stream closed (the host closed it or the session ended).
    Closed,
}

/// Copies channel-0 data into `writer` until `Eof` or the stream closes;
/// control messages go to `control` as they arrive.
pub async fn copy_in<W, F>(rx: &mut StreamReceiver, writer: &mut W, mut control: F) -> End
where
    W: AsyncWrite + Unpin,
    F: FnMut(Control),
{
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut pending_bytes = 0usize;
    let mut eof = false;
    let mut broken = false;

    loop {
        if eof && pending.is_empty() {
            return End::Eof;
        }
        tokio::select! {
            event = rx.recv(), if pending_bytes < MAX_PENDING => match event {
                Event::Data { chan: CHAN_STDIO, bytes } if !broken && !eof => {
                    pending_bytes += bytes.len();
                    pending.push_back(bytes);
                }
                Event::Eof { chan: CHAN_STDIO } => eof = true,
                Event::Control(message) => control(message),
                Event::Closed { .. } => return End::Closed,
                Event::Data { .. } | Event::Eof { .. } => {}
            },
            written = write_front(writer, pending.front()) => match written {
                Ok(n) => {
                    pending_bytes -= n;
                    let front = pending.front_mut().expect("a write implies a pending chunk");
                    front.advance(n);
                    if front.is_empty() {
                        pending.pop_front();
                    }
                }
                Err(_) => {
                    // The reader is gone: discard what is left and what comes.
                    broken = true;
                    pending.clear();
                    pending_bytes = 0;
                }
            },
        }
    }
}

/// Writes some of `chunk`; never completes when there is nothing to write.
async fn write_front<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunk: Option<&Bytes>,
) -> io::Result<usize> {
    match chunk {
        Some(chunk) => {
            let n = writer.write(chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n)
        }
        None => std::future::pending().await,
    }
}

/// Waits for the stream to close, passing control messages to `control`.
pub async fn until_closed<F: FnMut(Control)>(rx: &mut StreamReceiver, mut control: F) {
    loop {
        match rx.recv().await {
            Event::Control(message) => control(message),
            Event::Closed { .. } => return,
            Event::Data { .. } | Event::Eof { .. } => {}
        }
    }
}
