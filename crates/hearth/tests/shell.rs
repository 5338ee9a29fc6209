//! The shell over its WebSocket, against a real VM: a client types into a
//! shell served by `hearth_shim::shell::serve` and reads what a person would
//! see. The WebSocket runs over an in-process pipe, as it does behind the
//! ingress proxy once the handshake is answered; [`connect`] is the one place
//! to point at an endpoint instead.

mod common;
mod image_support;

use std::time::Duration;

use common::Hearth;
use futures::{SinkExt, StreamExt};
use hearth_protocol::{AppSpec, Request};
use hearth_shim::shell::{self, ClientMessage, ServerMessage, ShellEnd};
use hearth_shim::{ShimClient, VmDir};
use image_support::{context, ImageHearth};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a typed command may take to show its output under TCG.
const OUTPUT_WAIT: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<DuplexStream>;

/// A shell session seen from the client's side.
struct Session {
    ws: Ws,
    /// Every terminal byte received so far, as text.
    screen: String,
    /// The exit message, once received.
    exit: Option<i32>,
    /// The close frame's code and reason, once received.
    close: Option<(CloseCode, String)>,
}

impl Session {
    async fn send_text(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).expect("json");
        self.ws.send(Message::text(text)).await.expect("send");
    }

    async fn resize(&mut self, cols: u16, rows: u16) {
        self.send_text(&ClientMessage::Resize { cols, rows }).await;
    }

    async fn type_line(&mut self, line: &str) {
        let bytes = format!("{line}\r").into_bytes();
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    /// Reads until the screen holds `needle` (after `from`); panics after
    /// [`OUTPUT_WAIT`] or when the connection ends first.
    async fn wait_for(&mut self, needle: &str) {
        let from = self.screen.len();
        let deadline = tokio::time::Instant::now() + OUTPUT_WAIT;
        while !self.screen[from..].contains(needle) {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            let Ok(Some(message)) = next else {
                panic!("{needle:?} never appeared; the screen:\n{}", self.screen);
            };
            self.take(message.expect("websocket message"));
            assert!(
                self.close.is_none(),
                "closed before {needle:?}:\n{}",
                self.screen
            );
        }
    }

    /// Reads to the end of the connection.
    async fn wait_for_close(&mut self) {
        while self.close.is_none() {
            let next = tokio::time::timeout(OUTPUT_WAIT, self.ws.next()).await;
            match next.expect("the server closes") {
                Some(Ok(message)) => self.take(message),
                Some(Err(err)) => panic!("websocket failed: {err}"),
                None => break,
            }
        }
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Binary(bytes) => self.screen.push_str(&String::from_utf8_lossy(&bytes)),
            Message::Text(text) => match serde_json::from_str(&text).expect("server json") {
                ServerMessage::Exit { code, .. } => self.exit = Some(code),
                ServerMessage::Error { message } => panic!("shell error: {message}"),
            },
            Message::Close(frame) => {
                let frame = frame.expect("a close frame with a code");
                self.close = Some((frame.code, frame.reason.to_string()));
            }
            _ => {}
        }
    }
}

/// Opens a shell WebSocket to the VM and serves it; returns the client's end
/// and the server's task.
async fn connect(client: ShimClient) -> (Session, JoinHandle<Result<ShellEnd, shell::ShellError>>) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { shell::serve(server_io, &client).await });
    let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let session = Session {
        ws,
        screen: String::new(),
        exit: None,
        close: None,
    };
    (session, server)
}

/// Boots a busybox VM and starts an app in it as `nobody`, in `/tmp`, with
/// an environment variable, that writes a file and keeps running.
async fn vm_with_app(hearth: &Hearth) -> (String, ShimClient) {
    let id = hearth.boot(None);
    let client = ShimClient::connect(&VmDir::at(hearth.vm_dir(&id)))
        .await
        .expect("connect to the shim");
    let app = AppSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo written-by-app > app-file && exec sleep 4242".into(),
        ],
        env: vec!["APP_MARK=from-the-app".into()],
        cwd: Some("/tmp".into()),
        user: Some("nobody".into()),
        all_capabilities: false,
    };
    let mut stream = client.agent(Request::StartApp(app)).expect("start app");
    hearth_shim::client::expect_ok(&mut stream.receiver)
        .await
        .expect("the app starts");
    (id, client)
}

/// A shell in a VM with the app, shown to answer a command, and a second
/// connection to the VM's shim for acting on the VM under it.
async fn answering_shell(
    hearth: &Hearth,
) -> (
    Session,
    JoinHandle<Result<ShellEnd, shell::ShellError>>,
    ShimClient,
) {
    let (id, client) = vm_with_app(hearth).await;
    let (mut session, server) = connect(client).await;
    session.resize(80, 24).await;
    session.type_line("echo ready-$((6*7))").await;
    session.wait_for("ready-42").await;
    let admin = ShimClient::connect(&VmDir::at(hearth.vm_dir(&id)))
        .await
        .expect("connect to the shim");
    (session, server, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_runs_as_the_app_with_resize_and_exit_code() {
    let hearth = Hearth::new();
    let (_id, client) = vm_with_app(&hearth).await;
    let (mut session, server) = connect(client).await;

    // The first message gives the initial size.
    session.resize(100, 30).await;
    session.type_line("stty size").await;
    session.wait_for("30 100").await;

    // The app's environment, working directory and user.
    session
        .type_line(r#"echo "mark=$APP_MARK:$(pwd):$(id -un)""#)
        .await;
    session.wait_for("mark=from-the-app:/tmp:nobody").await;

    // The app's files and processes.
    session.type_line("cat /tmp/app-file").await;
    session.wait_for("written-by-app").await;
    session.type_line("ps").await;
    session.wait_for("sleep 4242").await;

    // A resize reaches the terminal.
    session.resize(132, 50).await;
    session.type_line("stty size").await;
    session.wait_for("50 132").await;

    // The exit code comes back, then a normal close.
    session.type_line("exit 7").await;
    session.wait_for_close().await;
    assert_eq!(session.exit, Some(7), "screen:\n{}", session.screen);
    let (code, reason) = session.close.clone().expect("a close frame");
    assert_eq!(code, CloseCode::Normal);
    assert_eq!(reason, "exit 7");

    let end = server.await.expect("server task").expect("served");
    match end {
        ShellEnd::Exited(status) => assert_eq!(status.code, Some(7)),
        other => panic!("the shell ended as {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_closes_with_a_reason_when_the_vm_is_suspended() {
    let hearth = Hearth::new();
    let (mut session, server, admin) = answering_shell(&hearth).await;

    // The VM is suspended to a snapshot under the open shell, as an idle
    // microVM is.
    admin
        .snapshot(&hearth.path("snap"), true)
        .await
        .expect("snapshot");

    session.wait_for_close().await;
    assert_eq!(session.exit, None);
    let (code, reason) = session.close.clone().expect("a close frame");
    assert_eq!(code, CloseCode::Away);
    assert!(!reason.is_empty(), "the close names why");

    let end = server.await.expect("server task").expect("served");
    assert!(matches!(end, ShellEnd::Ended(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_closes_with_a_reason_when_the_vm_stops() {
    let hearth = Hearth::new();
    let (mut session, server, admin) = answering_shell(&hearth).await;

    // The VM is stopped (as a terminated microVM is) under the open shell.
    admin.stop().await.expect("stop");

    session.wait_for_close().await;
    assert_eq!(session.exit, None, "the shell was not reported as killed");
    let (code, reason) = session.close.clone().expect("a close frame");
    assert_eq!(code, CloseCode::Away);
    // The agent says so when the guest powers off; if QEMU's exit reaches
    // the shim first, the shim's reason ends the stream instead.
    assert!(
        reason == "the microVM is shutting down" || reason.starts_with("the VM exited"),
        "{reason}"
    );
    let end = server.await.expect("server task").expect("served");
    assert!(matches!(end, ShellEnd::Ended(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_ends_the_shell() {
    let hearth = Hearth::new();
    let (id, client) = vm_with_app(&hearth).await;
    let (mut session, server) = connect(client).await;

    session.resize(80, 24).await;
    session
        .type_line("echo $$ > /tmp/shell-pid; echo pid-$((1+1))")
        .await;
    session.wait_for("pid-2").await;
    session.ws.close(None).await.expect("close");

    let end = server.await.expect("server task").expect("served");
    assert_eq!(end, ShellEnd::ClientClosed);

    // The shell was hung up: its process is gone.
    let pid = hearth.sh(&id, "cat /tmp/shell-pid").trim().to_owned();
    hearth.wait_for("the shell to end", Duration::from_secs(30), || {
        let (code, _, _) = hearth.exec(&id, &["test", "-d", &format!("/proc/{pid}")]);
        (code != 0).then_some(())
    });
}

#[test]
fn shell_in_a_microvm_from_an_image_follows_its_env_user_and_workdir() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "shellapp",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             ENV GREETING=from-the-image\n\
             WORKDIR /tmp\n\
             USER nobody\n\
             EXPOSE 8080\n\
             CMD [\"sh\", \"-c\", \"echo $GREETING > app-file; exec nc -ll -p 8080 -e cat\"]\n",
        )],
    );
    hearth.build_ok(&source, "shellapp", &[]);
    let out = hearth
        .cmd()
        .args(["image", "run", "shellapp"])
        .output()
        .expect("image run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = VmDir::new(hearth.data.path(), &id);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = ShimClient::connect(&dir)
            .await
            .expect("connect to the shim");
        let (mut session, server) = connect(client).await;
        session.resize(80, 24).await;

        // The shell restored from the snapshot is the image's app's: its
        // environment, working directory, user and files.
        session
            .type_line(r#"echo "mark=$GREETING:$(pwd):$(id -un):$(cat app-file)""#)
            .await;
        session
            .wait_for("mark=from-the-image:/tmp:nobody:from-the-image")
            .await;
        session.type_line("ps").await;
        session.wait_for("nc -ll -p 8080").await;

        session.type_line("exit").await;
        session.wait_for_close().await;
        assert_eq!(session.exit, Some(0));
        server.await.expect("server task").expect("served");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_cp_copies_a_file_in_as_the_app_and_back_out() {
    let hearth = Hearth::new();
    let (id, _client) = vm_with_app(&hearth).await;
    let local = hearth.path("in.bin");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &bytes).expect("local file");

    let inside = format!("{id}:/tmp/copied.bin");
    hearth.ok(&["cp", local.to_str().expect("utf-8"), &inside]);
    let listed = hearth.sh(&id, "stat -c '%s %U %G' /tmp/copied.bin");
    assert_eq!(listed.trim(), "200000 nobody nogroup");

    let back = hearth.path("out.bin");
    hearth.ok(&["cp", &inside, back.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read(&back).expect("copied back"), bytes);

    // Two local paths are refused, naming the form expected.
    let out = hearth.run(&["cp", "/etc/hostname", "/tmp/nowhere"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ID:/absolute/path"));
}
