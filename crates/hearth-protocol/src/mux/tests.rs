//! The multiplexer over an in-memory channel.

use super::*;
use crate::messages::{ExitStatus, Request};
use std::time::Duration;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

type Halves = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>);

async fn pair() -> (
    Session,
    Session,
    SessionTasks<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>,
) {
    let (host_io, guest_io) = tokio::io::duplex(64 * 1024);
    let (host_r, mut host_w): Halves = tokio::io::split(host_io);
    let (guest_r, mut guest_w): Halves = tokio::io::split(guest_io);
    let mut host_reader = FrameReader::new(host_r);
    let mut guest_reader = FrameReader::new(guest_r);

    let guest = tokio::spawn(async move {
        let hello = wait_hello(&mut guest_reader).await.expect("hello");
        answer_hello(&mut guest_w, &hello, AgentInfo::default())
            .await
            .expect("ack");
        Session::start(Role::Guest, guest_reader, guest_w)
    });
    handshake_host(&mut host_reader, &mut host_w)
        .await
        .expect("handshake");
    let (host, _) = Session::start(Role::Host, host_reader, host_w);
    let (guest, guest_tasks) = guest.await.expect("guest");
    (host, guest, guest_tasks)
}

/// A guest that echoes channel 0 back, then reports exit code 0.
fn echo_server(guest: Session) {
    tokio::spawn(async move {
        while let Some((_, stream)) = guest.accept().await {
            tokio::spawn(async move {
                let (tx, mut rx) = stream.split();
                loop {
                    match rx.recv().await {
                        Event::Data { bytes, .. } => tx.data(0, &bytes).await.expect("echo"),
                        Event::Eof { .. } => {
                            tx.eof(0).expect("eof");
                            let exit = ExitStatus {
                                code: Some(0),
                                signal: None,
                            };
                            tx.control(&Control::Exit(exit)).expect("exit");
                            tx.close(None);
                            return;
                        }
                        Event::Closed { .. } => return,
                        Event::Control(_) => {}
                    }
                }
            });
        }
    });
}

#[tokio::test]
async fn large_transfer_is_echoed_byte_for_byte() {
    let (host, guest, _tasks) = pair().await;
    echo_server(guest);

    let data: Vec<u8> = (0..3 * INITIAL_WINDOW + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let (tx, mut rx) = host.open(&Request::Ping).expect("open").split();
    let to_send = data.clone();
    tokio::spawn(async move {
        tx.data(0, &to_send).await.expect("send");
        tx.eof(0).expect("eof");
    });

    let mut got = Vec::new();
    let mut exit = None;
    loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => got.extend_from_slice(&bytes),
            Event::Control(Control::Exit(status)) => exit = Some(status),
            Event::Closed { reason } => {
                assert_eq!(reason, None);
                break;
            }
            Event::Eof { .. } | Event::Control(_) => {}
        }
    }
    assert_eq!(got, data);
    assert_eq!(exit.map(|e| e.code), Some(Some(0)));
}

#[tokio::test]
async fn many_streams_run_at_once() {
    let (host, guest, _tasks) = pair().await;
    echo_server(guest);

    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (tx, mut rx) = host.open(&Request::Ping).expect("open").split();
        tasks.push(tokio::spawn(async move {
            tx.data(0, &[i; 1000]).await.expect("send");
            tx.eof(0).expect("eof");
            let mut got = Vec::new();
            loop {
                match rx.recv().await {
                    Event::Data { bytes, .. } => got.extend_from_slice(&bytes),
                    Event::Closed { .. } => return got,
                    _ => {}
                }
            }
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.expect("task"), vec![i as u8; 1000]);
    }
}

#[tokio::test]
async fn freeze_ends_streams_and_the_session() {
    let (host, guest, guest_tasks) = pair().await;
    echo_server(guest);

    let (_tx, mut rx) = host.open(&Request::Ping).expect("open").split();
    tokio::time::timeout(Duration::from_secs(5), host.freeze("suspending"))
        .await
        .expect("freeze in time")
        .expect("frozen");

    assert_eq!(
        rx.recv().await,
        Event::Closed {
            reason: Some("suspending".to_owned())
        }
    );
    assert!(host.open(&Request::Ping).is_err());
    let (_, _, end) = guest_tasks.join().await;
    assert!(matches!(end, SessionEnd::Frozen));
}

#[tokio::test]
async fn a_lost_channel_closes_open_streams_with_a_reason() {
    let (host, guest, guest_tasks) = pair().await;
    let (_tx, mut rx) = host.open(&Request::Ping).expect("open").split();
    let (_, _stream) = guest.accept().await.expect("accept");

    guest_tasks.reader.abort();
    guest_tasks.writer.abort();
    drop(guest);
    drop(_stream);

    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("closed");
    assert!(
        matches!(event, Event::Closed { reason: Some(_) }),
        "{event:?}"
    );
}
