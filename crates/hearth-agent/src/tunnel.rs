//! `Tunnel`: a TCP connection to a port on the guest's loopback, carried on
//! channel 0.
//!
//! Each direction half-closes on its own: the host's `Eof` shuts down the
//! socket's write side, the socket's end of file becomes `Eof` towards the
//! host. The stream closes once both directions are done, or at once when the
//! host closes it (the connection is then dropped).

use std::net::Ipv4Addr;

use hearth_protocol::{Control, Stream, StreamSender, CHAN_STDIO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::agent::refuse;
use crate::inbound::{self, End};

/// Serves `Tunnel`.
pub async fn run(port: u16, stream: Stream) {
    let (tx, mut rx) = stream.split();
    let socket = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
        Ok(socket) => socket,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            return refuse(&tx, &format!("connection refused to port {port}"));
        }
        Err(err) => {
            let reason = crate::io_text(&err);
            return refuse(&tx, &format!("connect to port {port}: {reason}"));
        }
    };
    let _ = socket.set_nodelay(true);
    if tx
        .control(&Control::Ok {
            value: serde_json::Value::Null,
        })
        .is_err()
    {
        return;
    }

    let (reader, mut writer) = socket.into_split();
    let mut outbound = tokio::spawn(outbound(reader, tx.clone()));

    if inbound::copy_in(&mut rx, &mut writer, |_| {}).await == End::Closed {
        outbound.abort();
        return;
    }
    let _ = writer.shutdown().await;

    tokio::select! {
        _ = &mut outbound => tx.close(None),
        () = inbound::until_closed(&mut rx, |_| {}) => outbound.abort(),
    }
}

/// Copies the socket to the stream until the socket's end of file.
async fn outbound(mut reader: OwnedReadHalf, tx: StreamSender) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.eof(CHAN_STDIO);
                return;
            }
            Ok(n) => {
                if tx.data(CHAN_STDIO, &buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
