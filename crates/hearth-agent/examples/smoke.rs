//! A host-side smoke test of a booted agent: it connects to the VM's agent
//! socket (the host end of the `hearth.agent` port), sends each kind of
//! request once, reconnects after a freeze, and powers the guest off.
//!
//! usage: `cargo run -p hearth-agent --example smoke -- AGENT_SOCKET [IDLE_SECONDS]`;
//! with `IDLE_SECONDS` it only pings, stays idle that long and powers off.

use std::time::Duration;

use hearth_protocol::mux::{handshake_host, FrameReader, SessionTasks};
use hearth_protocol::{
    AppSpec, Control, Event, ExecSpec, Identity, Request, Role, Session, StreamReceiver, TtySize,
    CHAN_STDERR, CHAN_STDIO,
};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::args().nth(1).ok_or("usage: smoke AGENT_SOCKET")?;

    let (session, tasks) = connect(&path).await?;
    if let Some(idle) = std::env::args().nth(2) {
        // `smoke SOCKET SECONDS`: reconnect once, stay connected and idle,
        // then power off.
        call(&session, Request::Ping, None).await?;
        session.freeze("idle test").await?;
        drop((session, tasks));
        let (session, _tasks) = connect(&path).await?;
        call(&session, Request::Ping, None).await?;
        let cpu = ExecSpec {
            argv: [
                "sh",
                "-c",
                "cut -d' ' -f14,15 /proc/1/stat; sleep 3; cut -d' ' -f14,15 /proc/1/stat",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..ExecSpec::default()
        };
        call(&session, Request::Exec(cpu), None).await?;
        tokio::time::sleep(Duration::from_secs(idle.parse()?)).await;
        call(&session, Request::Shutdown, None).await?;
        return Ok(());
    }
    let text = |argv: &[&str]| ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecSpec::default()
    };
    call(&session, Request::Ping, None).await?;
    call(&session, Request::Exec(text(&["uname", "-a"])), None).await?;
    call(
        &session,
        Request::Exec(text(&["sh", "-c", "mount; ls /"])),
        None,
    )
    .await?;
    call(&session, Request::Exec(text(&["nosuch"])), None).await?;
    let mut tty = text(&["sh", "-c", "stty size; tty; echo $TERM"]);
    tty.tty = Some(TtySize { rows: 30, cols: 90 });
    call(&session, Request::Exec(tty), None).await?;

    let write = Request::WriteFile {
        path: "/tmp/smoke/hello".into(),
        mode: Some(0o600),
        as_app: false,
    };
    call(&session, write, Some(b"hello from the host\n")).await?;
    let read = Request::ReadFile {
        path: "/tmp/smoke/hello".into(),
    };
    call(&session, read, None).await?;

    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let entropy = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let identity = Identity {
        entropy,
        unix_time_ns: now.as_nanos(),
        hostname: "smoke-vm".into(),
    };
    call(&session, Request::Identity(identity), None).await?;
    call(
        &session,
        Request::Exec(text(&["sh", "-c", "hostname; date -u"])),
        None,
    )
    .await?;

    let app = AppSpec {
        argv: ["sh", "-c", "echo app up; mkdir -p /tmp/www; echo it works > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..AppSpec::default()
    };
    call(&session, Request::StartApp(app), None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call(&session, Request::AppStatus, None).await?;
    let get = b"GET / HTTP/1.0\r\n\r\n";
    call(&session, Request::Tunnel { port: 8080 }, Some(get)).await?;
    call(&session, Request::Tunnel { port: 9999 }, None).await?;
    call(&session, Request::Logs { follow: false }, None).await?;

    // A snapshot freezes the session; a new host connection follows.
    let frozen =
        tokio::time::timeout(Duration::from_secs(5), session.freeze("smoke freeze")).await?;
    let (_, _, end) = tasks.join().await;
    println!("freeze: {frozen:?}, session end: {end:?}");
    drop(session);
    let (session, _tasks) = connect(&path).await?;
    call(&session, Request::Ping, None).await?;
    call(&session, Request::Shutdown, None).await?;
    Ok(())
}

type Tasks = SessionTasks<OwnedReadHalf, OwnedWriteHalf>;

async fn connect(path: &str) -> Result<(Session, Tasks), Error> {
    let start = std::time::Instant::now();
    let stream = loop {
        match UnixStream::connect(path).await {
            Ok(stream) => break stream,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    let (reader, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(reader);
    let ack = tokio::time::timeout(
        Duration::from_secs(60),
        handshake_host(&mut reader, &mut writer),
    )
    .await??;
    println!("connected after {:?}: {:?}", start.elapsed(), ack.info);
    Ok(Session::start(Role::Host, reader, writer))
}

async fn call(session: &Session, request: Request, input: Option<&[u8]>) -> Result<(), Error> {
    println!("> {}", serde_json::to_string(&request)?);
    let (tx, mut rx) = session.open(&request)?.split();
    if let Some(input) = input {
        tx.data(CHAN_STDIO, input).await?;
        tx.eof(CHAN_STDIO)?;
    }
    tokio::time::timeout(Duration::from_secs(30), print_reply(&mut rx)).await?;
    Ok(())
}

async fn print_reply(rx: &mut StreamReceiver) {
    loop {
        match rx.recv().await {
            Event::Data { chan, bytes } => {
                let name = if chan == CHAN_STDERR {
                    "stderr"
                } else {
                    "stdout"
                };
                println!("  {name}: {:?}", String::from_utf8_lossy(&bytes));
            }
            Event::Eof { chan } => println!("  eof {chan}"),
            Event::Control(Control::Info(info)) => println!("  info {info:?}"),
            Event::Control(control) => println!("  {control:?}"),
            Event::Closed { reason } => {
                println!("  closed {reason:?}");
                return;
            }
        }
    }
}
