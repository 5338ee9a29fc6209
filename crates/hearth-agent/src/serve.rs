//! The session loop: one host session after another on the same channel.
//!
//! A session starts with the host's `Hello`, which the agent answers with its
//! info; then every stream the host opens is served by a task of its own. A
//! session ends when the host freezes it (before a snapshot), when the host
//! goes away (end of file), or when a new `Hello` arrives, which the agent
//! answers at once to start the next session.
//!
//! The channel reads end-of-file when the host goes away; the loop then
//! pauses briefly before it waits for the next `Hello`, so a channel that
//! keeps reading end-of-file never makes it spin. Stale bytes of a previous
//! session are skipped by the protocol's resync on the next `Hello`.

use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::mux::{answer_hello, wait_hello, FrameReader, SessionEnd};
use hearth_protocol::{Role, Session, SessionError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::agent::Agent;
use crate::say;

/// First pause after the channel reads end-of-file.
const IDLE_FIRST: Duration = Duration::from_millis(20);

/// Longest pause between attempts while no host is connected.
const IDLE_MAX: Duration = Duration::from_millis(50);

/// Serves sessions on the channel forever.
pub async fn serve<R, W>(agent: Arc<Agent>, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FrameReader::new(reader);
    let mut writer = writer;
    let mut next_hello = None;
    let mut idle = IDLE_FIRST;
    let mut quiet = false;

    loop {
        let hello = match next_hello.take() {
            Some(hello) => hello,
            None => match wait_hello(&mut reader).await {
                Ok(hello) => hello,
                Err(err) => {
                    // Say it once per outage, not once per attempt.
                    if !quiet && !matches!(err, SessionError::Eof) {
                        say!("waiting for the host: {}", crate::describe(&err));
                    }
                    quiet = true;
                    tokio::time::sleep(idle).await;
                    idle = (idle * 2).min(IDLE_MAX);
                    continue;
                }
            },
        };
        idle = IDLE_FIRST;
        quiet = false;

        if let Err(err) = answer_hello(&mut writer, &hello, agent.info()).await {
            say!("answer the host: {}", crate::describe(&err));
            continue;
        }

        let (session, tasks) = Session::start(Role::Guest, reader, writer);
        tokio::spawn(accept_all(agent.clone(), session));
        let (next_reader, next_writer, end) = tasks.join().await;
        reader = next_reader;
        writer = next_writer;

        match end {
            SessionEnd::Hello(hello) => next_hello = Some(hello),
            SessionEnd::Frozen => say!("session frozen"),
            SessionEnd::Eof => say!("host disconnected"),
            SessionEnd::Error(err) => say!("session failed: {}", crate::describe(&err)),
            SessionEnd::Dropped => {}
        }
    }
}

/// Serves every stream of a session, each in a task of its own.
async fn accept_all(agent: Arc<Agent>, session: Session) {
    while let Some((payload, stream)) = session.accept().await {
        tokio::spawn(agent.clone().handle(payload, stream));
    }
}
