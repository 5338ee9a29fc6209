//! Host ↔ agent messages and the stream multiplexer that carries them.
//!
//! One byte channel (a virtio-serial port in the guest, a unix socket on the
//! host) carries any number of concurrent streams. Each stream is opened by the
//! host with a [`Request`], then carries data on two channels (stdin/stdout and
//! stderr), half-closes, typed [`Control`] messages and a final close with an
//! optional reason. Data is flow-controlled per stream with credit windows, so a
//! slow consumer on one stream never stalls another.
//!
//! A session starts with a handshake (`Hello`/`HelloAck` carrying a nonce) and
//! can be *frozen* before a VM snapshot: both directions stop at a frame
//! boundary, every open stream ends with a reason, and the next `Hello` (after a
//! restore, or when the same VM continues) starts a fresh session.

#![forbid(unsafe_code)]

pub mod frame;
pub mod messages;
pub mod mux;

pub use frame::{Frame, FrameCodec, Kind};
pub use messages::*;
pub use mux::{Event, Role, Session, SessionError, Stream, StreamReceiver, StreamSender};
