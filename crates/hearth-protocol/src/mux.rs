//! The stream multiplexer: many streams over one byte channel.
//!
//! A [`Session`] owns a reader task and a writer task. The host opens streams
//! with [`Session::open`]; the guest takes them with [`Session::accept`]. Each
//! stream has its own event queue and a credit window per direction: a sender
//! may have at most [`INITIAL_WINDOW`] bytes of data unconsumed by the other
//! side, and the receiver grants credit back as its consumer takes data.
//!
//! A session ends when the channel closes or fails, when it is frozen, or (in
//! the guest) when a new `Hello` arrives. Every stream still open then gets
//! [`Event::Closed`] with the session's end reason, and blocked senders fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{Frame, FrameCodec, FrameError, Kind, MAX_CHUNK};
use crate::messages::{AgentInfo, Control, Hello, HelloAck, PROTOCOL_VERSION};

/// Bytes a sender may have in flight on one stream before it waits for credit.
pub const INITIAL_WINDOW: usize = 256 * 1024;

/// Which end of the channel a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens streams and freezes sessions.
    Host,
    /// Accepts streams and answers them.
    Guest,
}

/// Errors of a session or a stream.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The channel failed or sent something that is not a frame.
    #[error("agent channel")]
    Frame(#[from] FrameError),
    /// The channel closed.
    #[error("agent channel closed")]
    Eof,
    /// The session or stream ended, with the reason it ended.
    #[error("stream closed: {0}")]
    Closed(String),
    /// The peer sent a handshake this side cannot use.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// A message could not be encoded or decoded.
    #[error("bad message")]
    Json(#[from] serde_json::Error),
}

/// What a stream's receiver sees.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Bytes on a channel.
    Data {
        /// The channel.
        chan: u8,
        /// The bytes.
        bytes: Bytes,
    },
    /// The peer sends no more on this channel.
    Eof {
        /// The channel.
        chan: u8,
    },
    /// A typed message.
    Control(Control),
    /// The stream is over; nothing follows.
    Closed {
        /// Why, when it did not end normally.
        reason: Option<String>,
    },
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The channel reached end of file.
    Eof,
    /// The channel failed.
    Error(FrameError),
    /// The guest acknowledged a freeze (host) or was asked to freeze (guest).
    Frozen,
    /// A new session's `Hello` arrived (guest).
    Hello(Hello),
    /// Every handle of the session was dropped.
    Dropped,
}

/// Reads frames from a byte channel, keeping partial input between calls.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    codec: FrameCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that skips to the next handshake frame first.
    pub fn new(io: R) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(64 * 1024),
            codec: FrameCodec::resyncing(),
        }
    }

    /// Makes the reader skip to the next handshake frame.
    pub fn resync(&mut self) {
        self.codec.set_resync();
    }

    /// The next frame, or `None` at end of file.
    ///
    /// # Errors
    ///
    /// Fails when the channel fails or carries something that is not a frame.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Gives the underlying channel back.
    pub fn into_inner(self) -> R {
        self.io
    }
}

/// Writes one frame and flushes.
///
/// # Errors
///
/// Fails when the channel fails.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    frame: Frame,
) -> Result<(), FrameError> {
    let mut buf = BytesMut::new();
    FrameCodec::default().encode(frame, &mut buf)?;
    io.write_all(&buf).await?;
    io.flush().await?;
    Ok(())
}

fn json_frame<T: serde::Serialize>(kind: Kind, stream: u32, value: &T) -> Frame {
    let payload = serde_json::to_vec(value).expect("protocol messages always serialize");
    Frame {
        kind,
        chan: 0,
        stream,
        payload: Bytes::from(payload),
    }
}

/// Host side of the handshake: sends `Hello`, skips stale bytes, and waits for
/// the matching `HelloAck`. Callers bound it with a timeout.
///
/// # Errors
///
/// Fails when the channel fails or closes first.
pub async fn handshake_host<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
) -> Result<HelloAck, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce: u64 = rand::random();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        nonce,
    };
    write_frame(writer, json_frame(Kind::Hello, 0, &hello)).await?;

    reader.resync();
    loop {
        let frame = reader.next().await?.ok_or(SessionError::Eof)?;
        if frame.kind != Kind::HelloAck {
            reader.resync();
            continue;
        }
        let Ok(ack) = serde_json::from_slice::<HelloAck>(&frame.payload) else {
            reader.resync();
            continue;
        };
        if ack.nonce != nonce {
            reader.resync();
            continue;
        }
        if ack.version != PROTOCOL_VERSION {
            return Err(SessionError::Handshake(format!(
                "agent speaks protocol {}, host speaks {PROTOCOL_VERSION}",
                ack.version
            )));
        }
        return Ok(ack);
    }
}

/// Guest side of the handshake: waits for a `Hello`.
///
/// # Errors
///
/// Fails with [`SessionError::Eof`] when the host is not connected.
pub async fn wait_hello<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Hello, SessionError> {
    reader.resync();
    loop {
        let frame = reader.next().await?.ok_or(SessionError::Eof)?;
        if frame.kind == Kind::Hello {
            if let Ok(hello) = serde_json::from_slice::<Hello>(&frame.payload) {
                return Ok(hello);
            }
        }
        reader.resync();
    }
}

/// Guest side: answers a `Hello`.
///
/// # Errors
///
/// Fails when the channel fails.
pub async fn answer_hello<W: AsyncWrite + Unpin>(
    writer: &mut W,
    hello: &Hello,
    info: AgentInfo,
) -> Result<(), SessionError> {
    let ack = HelloAck {
        version: PROTOCOL_VERSION,
        nonce: hello.nonce,
        info,
    };
    write_frame(writer, json_frame(Kind::HelloAck, 0, &ack)).await?;
    Ok(())
}

struct Slot {
    events: mpsc::UnboundedSender<Event>,
    credit: Arc<Semaphore>,
}

struct Shared {
    role: Role,
    out: mpsc::UnboundedSender<Frame>,
    slots: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    ended: watch::Sender<Option<String>>,
    done: watch::Sender<Option<bool>>,
}

impl Shared {
    fn send(&self, frame: Frame) -> Result<(), SessionError> {
        self.out
            .send(frame)
            .map_err(|_| SessionError::Closed(self.end_reason()))
    }

    fn end_reason(&self) -> String {
        self.ended
            .borrow()
            .clone()
            .unwrap_or_else(|| "session ended".to_owned())
    }

    fn register(self: &Arc<Self>, id: u32) -> Result<Stream, SessionError> {
        let (events, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(INITIAL_WINDOW));
        {
            let mut slots = self.slots.lock().expect("slot map lock is never poisoned");
            if let Some(reason) = self.ended.borrow().clone() {
                return Err(SessionError::Closed(reason));
            }
            slots.insert(
                id,
                Slot {
                    events,
                    credit: credit.clone(),
                },
            );
        }
        let sender = StreamSender {
            id,
            shared: self.clone(),
            credit,
        };
        let receiver = StreamReceiver {
            id,
            shared: self.clone(),
            rx,
            done: false,
        };
        Ok(Stream { sender, receiver })
    }

    fn end_all(&self, reason: &str) {
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().expect("slot map lock is never poisoned");
            self.ended.send_replace(Some(reason.to_owned()));
            slots.drain().map(|(_, slot)| slot).collect()
        };
        for slot in slots {
            slot.credit.close();
            let _ = slot.events.send(Event::Closed {
                reason: Some(reason.to_owned()),
            });
        }
    }

    fn remove(&self, id: u32) -> Option<Slot> {
        self.slots
            .lock()
            .expect("slot map lock is never poisoned")
            .remove(&id)
    }

    fn slot_events(&self, id: u32) -> Option<(mpsc::UnboundedSender<Event>, Arc<Semaphore>)> {
        let slots = self.slots.lock().expect("slot map lock is never poisoned");
        slots
            .get(&id)
            .map(|slot| (slot.events.clone(), slot.credit.clone()))
    }
}

/// One end of a multiplexed session.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    accept: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(Bytes, Stream)>>>,
}

/// The tasks behind a session; awaiting it gives the channel back.
pub struct SessionTasks<R, W> {
    reader: JoinHandle<(FrameReader<R>, SessionEnd)>,
    writer: JoinHandle<W>,
}

impl<R, W> SessionTasks<R, W> {
    /// Stops the session's tasks at once, dropping the channel.
    pub fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Waits for the session to end and returns the channel and why it ended.
    ///
    /// # Panics
    ///
    /// Panics if a session task panicked.
    pub async fn join(self) -> (FrameReader<R>, W, SessionEnd) {
        let (reader, end) = self.reader.await.expect("session reader does not panic");
        let writer = self.writer.await.expect("session writer does not panic");
        (reader, writer, end)
    }
}

impl Session {
    /// Starts a session on a channel whose handshake is done.
    pub fn start<R, W>(
        role: Role,
        reader: FrameReader<R>,
        writer: W,
    ) -> (Session, SessionTasks<R, W>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            role,
            out,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            ended: watch::Sender::new(None),
            done: watch::Sender::new(None),
        });

        let writer = tokio::spawn(write_loop(writer, out_rx, shared_done(&shared)));
        let reader = tokio::spawn(read_loop(reader, shared.clone(), accept_tx));
        let session = Session {
            shared,
            accept: Arc::new(tokio::sync::Mutex::new(accept_rx)),
        };
        (session, SessionTasks { reader, writer })
    }

    /// Opens a stream with a request (host).
    ///
    /// # Errors
    ///
    /// Fails when the session has ended.
    pub fn open<T: serde::Serialize>(&self, request: &T) -> Result<Stream, SessionError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = self.shared.register(id)?;
        let frame = Frame {
            kind: Kind::Open,
            chan: 0,
            stream: id,
            payload: serde_json::to_vec(request)?.into(),
        };
        self.shared.send(frame)?;
        Ok(stream)
    }

    /// The next stream the host opened, with its request payload (guest).
    /// `None` once the session has ended.
    pub async fn accept(&self) -> Option<(Bytes, Stream)> {
        self.accept.lock().await.recv().await
    }

    /// Stops the session at a frame boundary (host): every open stream ends
    /// with `reason`, and the session is over once the guest acknowledges.
    /// Callers bound the wait with a timeout.
    ///
    /// # Errors
    ///
    /// Fails when the session ended before the guest acknowledged.
    pub async fn freeze(&self, reason: &str) -> Result<(), SessionError> {
        self.shared.end_all(reason);
        self.shared.send(Frame::empty(Kind::Freeze, 0))?;
        match self.finished().await {
            true => Ok(()),
            false => Err(SessionError::Closed(self.shared.end_reason())),
        }
    }

    /// Waits until the session's reader has stopped; true when it stopped
    /// because the session was frozen.
    async fn finished(&self) -> bool {
        let mut done = self.shared.done.subscribe();
        loop {
            if let Some(frozen) = *done.borrow_and_update() {
                return frozen;
            }
            if done.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Waits until the session has ended and returns why.
    pub async fn closed(&self) -> String {
        self.finished().await;
        self.shared.end_reason()
    }

    /// Whether the session is still running.
    pub fn is_open(&self) -> bool {
        self.shared.ended.borrow().is_none()
    }
}

fn shared_done(shared: &Arc<Shared>) -> watch::Receiver<Option<bool>> {
    shared.done.subscribe()
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    mut done: watch::Receiver<Option<bool>>,
) -> W {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    loop {
        // Once the reader has stopped, nothing more goes out.
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            _ = async { let _ = done.wait_for(Option::is_some).await; } => {
                // Flush what was queued before the end (a guest's `Frozen`).
                while let Ok(frame) = rx.try_recv() {
                    let _ = codec.encode(frame, &mut buf);
                }
                let _ = io.write_all(&buf).await;
                let _ = io.flush().await;
                None
            }
        };
        let Some(frame) = frame else { break };

        // Batch whatever else is queued into one write; a Freeze or Frozen
        // frame is the session's last.
        let mut stop = ends_session(&frame);
        let _ = codec.encode(frame, &mut buf);
        while !stop && buf.len() < 256 * 1024 {
            let Ok(frame) = rx.try_recv() else { break };
            stop = ends_session(&frame);
            let _ = codec.encode(frame, &mut buf);
        }
        if io.write_all(&buf).await.is_err() || io.flush().await.is_err() {
            break;
        }
        buf.clear();
        if stop {
            break;
        }
    }
    io
}

fn ends_session(frame: &Frame) -> bool {
    matches!(frame.kind, Kind::Freeze | Kind::Frozen)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    shared: Arc<Shared>,
    accept: mpsc::UnboundedSender<(Bytes, Stream)>,
) -> (FrameReader<R>, SessionEnd) {
    let end = loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break SessionEnd::Eof,
            Err(err) => break SessionEnd::Error(err),
        };
        if let Some(end) = dispatch(&shared, &accept, frame) {
            break end;
        }
    };

    let reason = match &end {
        SessionEnd::Eof => "agent channel closed".to_owned(),
        SessionEnd::Error(err) => format!("agent channel failed: {err}"),
        SessionEnd::Frozen => "the microVM is being snapshotted".to_owned(),
        SessionEnd::Hello(_) => "a new session started".to_owned(),
        SessionEnd::Dropped => "session dropped".to_owned(),
    };
    if shared.ended.borrow().is_none() {
        shared.end_all(&reason);
    }
    shared
        .done
        .send_replace(Some(matches!(end, SessionEnd::Frozen)));
    (reader, end)
}

fn dispatch(
    shared: &Arc<Shared>,
    accept: &mpsc::UnboundedSender<(Bytes, Stream)>,
    frame: Frame,
) -> Option<SessionEnd> {
    match frame.kind {
        Kind::Open if shared.role == Role::Guest => {
            if let Ok(stream) = shared.register(frame.stream) {
                let _ = accept.send((frame.payload, stream));
            }
        }
        Kind::Data => {
            if let Some((events, _)) = shared.slot_events(frame.stream) {
                let _ = events.send(Event::Data {
                    chan: frame.chan,
                    bytes: frame.payload,
                });
            }
        }
        Kind::Eof => {
            if let Some((events, _)) = shared.slot_events(frame.stream) {
                let _ = events.send(Event::Eof { chan: frame.chan });
            }
        }
        Kind::Control => {
            if let Some((events, _)) = shared.slot_events(frame.stream) {
                match serde_json::from_slice::<Control>(&frame.payload) {
                    Ok(control) => {
                        let _ = events.send(Event::Control(control));
                    }
                    Err(err) => {
                        tracing::warn!(stream = frame.stream, %err, "unreadable control message")
                    }
                }
            }
        }
        Kind::Close => {
            if let Some(slot) = shared.remove(frame.stream) {
                let reason = (!frame.payload.is_empty())
                    .then(|| String::from_utf8_lossy(&frame.payload).into_owned());
                slot.credit.close();
                let _ = slot.events.send(Event::Closed { reason });
            }
        }
        Kind::Window => {
            if let Some((_, credit)) = shared.slot_events(frame.stream) {
                if let Ok(bytes) = <[u8; 4]>::try_from(&frame.payload[..]) {
                    credit.add_permits(u32::from_be_bytes(bytes) as usize);
                }
            }
        }
        Kind::Freeze if shared.role == Role::Guest => {
            shared.end_all("the microVM is being snapshotted");
            let _ = shared.out.send(Frame::empty(Kind::Frozen, 0));
            return Some(SessionEnd::Frozen);
        }
        Kind::Frozen if shared.role == Role::Host => return Some(SessionEnd::Frozen),
        Kind::Hello if shared.role == Role::Guest => {
            return Some(match serde_json::from_slice::<Hello>(&frame.payload) {
                Ok(hello) => SessionEnd::Hello(hello),
                Err(err) => SessionEnd::Error(FrameError::Io(std::io::Error::other(err))),
            });
        }
        _ => tracing::debug!(kind = ?frame.kind, "ignoring frame"),
    }
    None
}

/// A stream, split into its sending and receiving halves.
pub struct Stream {
    /// Sends on the stream.
    pub sender: StreamSender,
    /// Receives from the stream.
    pub receiver: StreamReceiver,
}

impl Stream {
    /// Splits the stream into its halves.
    pub fn split(self) -> (StreamSender, StreamReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of a stream; clones share the stream's credit.
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    shared: Arc<Shared>,
    credit: Arc<Semaphore>,
}

impl StreamSender {
    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends bytes on a channel, waiting for credit as needed.
    ///
    /// # Errors
    ///
    /// Fails when the stream or session has closed.
    pub async fn data(&self, chan: u8, bytes: &[u8]) -> Result<(), SessionError> {
        for chunk in bytes.chunks(MAX_CHUNK) {
            let permits = self
                .credit
                .acquire_many(chunk.len() as u32)
                .await
                .map_err(|_| SessionError::Closed(self.shared.end_reason()))?;
            permits.forget();
            self.frame(Kind::Data, chan, Bytes::copy_from_slice(chunk))?;
        }
        Ok(())
    }

    /// Half-closes a channel.
    ///
    /// # Errors
    ///
    /// Fails when the session has ended.
    pub fn eof(&self, chan: u8) -> Result<(), SessionError> {
        self.frame(Kind::Eof, chan, Bytes::new())
    }

    /// Sends a typed message.
    ///
    /// # Errors
    ///
    /// Fails when the session has ended.
    pub fn control(&self, control: &Control) -> Result<(), SessionError> {
        self.frame(Kind::Control, 0, serde_json::to_vec(control)?.into())
    }

    /// Ends the stream, with a reason when it did not end normally.
    pub fn close(&self, reason: Option<&str>) {
        if let Some(slot) = self.shared.remove(self.id) {
            slot.credit.close();
            let _ = slot.events.send(Event::Closed {
                reason: reason.map(str::to_owned),
            });
            let payload = Bytes::from(reason.unwrap_or_default().to_owned());
            let _ = self.frame(Kind::Close, 0, payload);
        }
    }

    fn frame(&self, kind: Kind, chan: u8, payload: Bytes) -> Result<(), SessionError> {
        self.shared.send(Frame {
            kind,
            chan,
            stream: self.id,
            payload,
        })
    }
}

/// The receiving half of a stream.
pub struct StreamReceiver {
    id: u32,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Event>,
    done: bool,
}

impl StreamReceiver {
    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next event; after [`Event::Closed`] it keeps returning `Closed`.
    pub async fn recv(&mut self) -> Event {
        if self.done {
            return Event::Closed {
                reason: Some(self.shared.end_reason()),
            };
        }
        let event = self.rx.recv().await.unwrap_or(Event::Closed {
            reason: Some(self.shared.end_reason()),
        });
        match &event {
            Event::Data { bytes, .. } => {
                let credit = (bytes.len() as u32).to_be_bytes();
                let _ = self.shared.send(Frame {
                    kind: Kind::Window,
                    chan: 0,
                    stream: self.id,
                    payload: Bytes::copy_from_slice(&credit),
                });
            }
            Event::Closed { .. } => self.done = true,
            _ => {}
        }
        event
    }
}

#[cfg(test)]
mod tests;
