//! Request handlers end to end over a real protocol session on an in-memory
//! channel, with real processes, files and sockets of the development host.
//!
//! Only the guest-wide operations (entropy, clock, hostname, power) are faked:
//! the real ones would change the host running the tests.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::mux::{handshake_host, FrameReader, SessionEnd, SessionTasks};
use hearth_protocol::{
    AppSpec, AppState, Control, Event, ExecSpec, Identity, Request, Role, Session, ShellSpec,
    Stream, StreamReceiver, TtySize, CHAN_STDERR, CHAN_STDIO,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use crate::system::fake::FakeSystem;
use crate::{serve, Agent, AgentConfig};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4343::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:4343:\nextra:x:4444:app\n";

type HostTasks = SessionTasks<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

/// A host connected to a fresh agent.
struct Host {
    session: Session,
    tasks: Option<HostTasks>,
    system: Arc<FakeSystem>,
    dir: TempDir,
}

async fn connect() -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).expect("etc");
    std::fs::write(etc.join("passwd"), PASSWD).expect("passwd");
    std::fs::write(etc.join("group"), GROUP).expect("group");

    let system = Arc::new(FakeSystem::default());
    let config = AgentConfig {
        root_mounted: false,
        etc,
        fs_root: dir.path().join("root"),
    };
    let agent = Agent::new(config, system.clone());
    let (host_io, guest_io) = tokio::io::duplex(256 * 1024);
    let (guest_r, guest_w) = tokio::io::split(guest_io);
    tokio::spawn(serve::serve(agent, guest_r, guest_w));

    let (host_r, mut host_w) = tokio::io::split(host_io);
    let mut reader = FrameReader::new(host_r);
    handshake_host(&mut reader, &mut host_w)
        .await
        .expect("handshake");
    let (session, tasks) = Session::start(Role::Host, reader, host_w);
    Host {
        session,
        tasks: Some(tasks),
        system,
        dir,
    }
}

/// Everything a stream carried until it closed.
#[derive(Debug, Default)]
struct Reply {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    eofs: Vec<u8>,
    controls: Vec<Control>,
    reason: Option<String>,
}

impl Reply {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn error(&self) -> Option<&str> {
        self.controls.iter().find_map(|c| match c {
            Control::Error { message } => Some(message.as_str()),
            _ => None,
        })
    }

    fn exit(&self) -> Option<hearth_protocol::ExitStatus> {
        self.controls.iter().find_map(|c| match c {
            Control::Exit(status) => Some(*status),
            _ => None,
        })
    }
}

async fn collect(rx: &mut StreamReceiver) -> Reply {
    let mut reply = Reply::default();
    let all = async {
        loop {
            match rx.recv().await {
                Event::Data {
                    chan: CHAN_STDERR,
                    bytes,
                } => reply.stderr.extend_from_slice(&bytes),
                Event::Data { bytes, .. } => reply.stdout.extend_from_slice(&bytes),
                Event::Eof { chan } => reply.eofs.push(chan),
                Event::Control(control) => reply.controls.push(control),
                Event::Closed { reason } => {
                    reply.reason = reason;
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("the stream closes in time");
    reply
}

impl Host {
    fn open(&self, request: &Request) -> Stream {
        self.session.open(request).expect("open")
    }

    /// Sends a request with optional channel-0 input and collects the reply.
    async fn call(&self, request: Request, input: Option<&[u8]>) -> Reply {
        let (tx, mut rx) = self.open(&request).split();
        if let Some(input) = input {
            tx.data(CHAN_STDIO, input).await.expect("send");
            tx.eof(CHAN_STDIO).expect("eof");
        }
        collect(&mut rx).await
    }

    async fn exec(&self, argv: &[&str], input: Option<&[u8]>) -> Reply {
        self.call(Request::Exec(exec_spec(argv)), input).await
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
}

fn exec_spec(argv: &[&str]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecSpec::default()
    }
}

fn app_spec(script: &str) -> AppSpec {
    AppSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..AppSpec::default()
    }
}

/// Waits until a process no longer exists (the reaper collected it).
async fn gone(pid: &str) -> bool {
    let proc_dir = format!("/proc/{}", pid.trim());
    for _ in 0..100 {
        if !Path::new(&proc_dir).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn read_pid(path: &str) -> String {
    for _ in 0..100 {
        if let Ok(pid) = std::fs::read_to_string(path) {
            if pid.ends_with('\n') {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid file at {path}");
}

#[tokio::test]
async fn ping_answers_with_the_agents_info() {
    let host = connect().await;
    let reply = host.call(Request::Ping, None).await;
    let Some(Control::Info(info)) = reply.controls.first() else {
        panic!("{reply:?}");
    };
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(!info.root_mounted);
    assert!(!info.kernel_release.is_empty());
    assert!(info.uptime_secs > 0.0);
    assert_eq!(reply.reason, None);
}

#[tokio::test]
async fn a_request_that_does_not_parse_is_refused() {
    let host = connect().await;
    let (_tx, mut rx) = host
        .session
        .open(&serde_json::json!({"op": "fly"}))
        .expect("open")
        .split();
    let reply = collect(&mut rx).await;
    assert!(
        reply.error().expect("error").starts_with("bad request"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn exec_carries_stdin_stdout_stderr_and_the_exit_code() {
    let host = connect().await;
    let script = "cat; echo oops >&2; exit 7";
    let reply = host.exec(&["sh", "-c", script], Some(b"hello\n")).await;
    assert_eq!(reply.stdout(), "hello\n");
    assert_eq!(reply.stderr, b"oops\n");
    assert_eq!(reply.eofs, vec![CHAN_STDIO, CHAN_STDERR]);
    assert_eq!(reply.exit().expect("exit").code, Some(7));
    assert_eq!(reply.reason, None);
}

#[tokio::test]
async fn exec_of_a_missing_program_is_refused_naming_it() {
    let host = connect().await;
    let reply = host.exec(&["nosuch-program"], None).await;
    assert_eq!(
        reply.error(),
        Some("exec nosuch-program: No such file or directory")
    );
    assert_eq!(reply.exit(), None);
}

#[tokio::test]
async fn exec_applies_env_cwd_and_user() {
    let host = connect().await;
    let mut spec = exec_spec(&["sh", "-c", "pwd; echo $FOO $HOME; id -u; id -G"]);
    spec.env = vec!["FOO=bar".into()];
    spec.cwd = Some("/tmp".into());
    spec.user = Some("app".into());
    let reply = host.call(Request::Exec(spec), None).await;
    assert_eq!(reply.stdout(), "/tmp\nbar /home/app\n4242\n4343 4444\n");
    assert_eq!(reply.exit().expect("exit").code, Some(0));

    let mut spec = exec_spec(&["true"]);
    spec.user = Some("ghost".into());
    let reply = host.call(Request::Exec(spec), None).await;
    assert!(
        reply.error().expect("error").contains("user ghost"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn exec_streams_large_output_under_flow_control() {
    let host = connect().await;
    let reply = host
        .exec(&["head", "-c", "3000000", "/dev/zero"], None)
        .await;
    assert_eq!(reply.stdout.len(), 3_000_000);
    assert_eq!(reply.exit().expect("exit").code, Some(0));
}

#[tokio::test]
async fn a_signal_from_the_host_reaches_the_command() {
    let host = connect().await;
    let (tx, mut rx) = host
        .open(&Request::Exec(exec_spec(&["sleep", "30"])))
        .split();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.control(&Control::Signal { signal: 15 }).expect("signal");
    let reply = collect(&mut rx).await;
    assert_eq!(reply.exit().expect("exit").signal, Some(15));
}

#[tokio::test]
async fn exec_on_a_terminal_sees_its_size_and_term() {
    let host = connect().await;
    let mut spec = exec_spec(&["sh", "-c", "stty size; tty; echo $TERM"]);
    spec.tty = Some(TtySize {
        rows: 33,
        cols: 101,
    });
    let reply = host.call(Request::Exec(spec), None).await;
    let out = reply.stdout();
    assert!(out.contains("33 101\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("xterm-256color"), "{out:?}");
    assert_eq!(reply.exit().expect("exit").code, Some(0));
}

#[tokio::test]
async fn a_terminal_follows_resizes_and_input() {
    let host = connect().await;
    let mut spec = exec_spec(&["sh", "-c", "read line; stty size; echo got $line"]);
    spec.tty = Some(TtySize { rows: 24, cols: 80 });
    let (tx, mut rx) = host.open(&Request::Exec(spec)).split();
    tx.control(&Control::Resize(TtySize {
        rows: 50,
        cols: 120,
    }))
    .expect("resize");
    tx.data(CHAN_STDIO, b"hi\n").await.expect("input");
    let reply = collect(&mut rx).await;
    let out = reply.stdout();
    assert!(out.contains("50 120"), "{out:?}");
    assert!(out.contains("got hi"), "{out:?}");
}

#[tokio::test]
async fn closing_a_terminal_exec_hangs_up_the_command() {
    let host = connect().await;
    let pid_file = host.path("pid");
    let script = format!("echo $$ > {pid_file}; exec sleep 30");
    let mut spec = exec_spec(&["sh", "-c", &script]);
    spec.tty = Some(TtySize { rows: 24, cols: 80 });
    let (tx, _rx) = host.open(&Request::Exec(spec)).split();

    let pid = read_pid(&pid_file).await;
    tx.close(Some("client went away"));
    assert!(gone(&pid).await, "the command outlived its terminal");
}

#[tokio::test]
async fn closing_a_piped_exec_closes_its_stdin() {
    let host = connect().await;
    let pid_file = host.path("pid");
    let script = format!("echo $$ > {pid_file}; exec cat");
    let (tx, _rx) = host
        .open(&Request::Exec(exec_spec(&["sh", "-c", &script])))
        .split();

    let pid = read_pid(&pid_file).await;
    tx.close(None);
    assert!(gone(&pid).await, "cat kept running without stdin");
}

#[tokio::test]
async fn a_shell_is_closed_with_a_reason_when_the_guest_powers_off() {
    let host = connect().await;
    let spec = ShellSpec {
        tty: TtySize { rows: 24, cols: 80 },
        env: Vec::new(),
    };
    let (tx, mut rx) = host.open(&Request::Shell(spec)).split();
    tx.data(CHAN_STDIO, b"echo up-$((1+1))\n")
        .await
        .expect("type");
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("up-2") {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Event::Data { bytes, .. }) => screen.extend_from_slice(&bytes),
            Ok(Event::Closed { reason }) => panic!("closed early: {reason:?}"),
            Ok(_) => {}
            Err(_) => panic!("no output: {}", String::from_utf8_lossy(&screen)),
        }
    }

    host.call(Request::Shutdown, None).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Event::Closed { reason }) => {
                assert_eq!(reason.as_deref(), Some("the microVM is shutting down"));
                break;
            }
            Ok(Event::Control(Control::Exit(status))) => panic!("an exit came first: {status:?}"),
            Ok(_) => {}
            Err(_) => panic!("the shell stayed open"),
        }
    }
}

#[tokio::test]
async fn a_file_written_as_the_app_belongs_to_the_apps_user() {
    let host = connect().await;
    let path = host.path("app-owned");
    let write = |as_app| Request::WriteFile {
        path: path.clone(),
        mode: Some(0o640),
        as_app,
    };

    // Before any app, "as the app" means root.
    let reply = host.call(write(true), Some(b"one")).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
    let meta = std::fs::metadata(&path).expect("written");
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    let spec = AppSpec {
        user: Some("app".into()),
        ..app_spec("sleep 5")
    };
    host.call(Request::StartApp(spec), None).await;
    let reply = host.call(write(true), Some(b"two")).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
    let meta = std::fs::metadata(&path).expect("written");
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);

    let reply = host.call(write(false), Some(b"three")).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
    assert_eq!(std::fs::metadata(&path).expect("written").uid(), 0);
}

#[tokio::test]
async fn files_round_trip_with_their_mode() {
    let host = connect().await;
    let path = host.path("a/b/file.txt");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let write = Request::WriteFile {
        path: path.clone(),
        mode: Some(0o600),
        as_app: false,
    };
    let reply = host.call(write, Some(&data)).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );

    let meta = std::fs::metadata(&path).expect("written");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let dir_entries = std::fs::read_dir(host.path("a/b")).expect("dir").count();
    assert_eq!(dir_entries, 1, "a temporary file was left behind");

    let reply = host.call(Request::ReadFile { path }, None).await;
    assert_eq!(reply.stdout, data);
    assert_eq!(reply.eofs, vec![CHAN_STDIO]);
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_write_cut_short_leaves_nothing() {
    let host = connect().await;
    let path = host.path("partial");
    let (tx, _rx) = host
        .open(&Request::WriteFile {
            path: path.clone(),
            mode: None,
            as_app: false,
        })
        .split();
    tx.data(CHAN_STDIO, b"half").await.expect("data");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.close(Some("gone"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = std::fs::read_dir(host.dir.path()).expect("dir").count();
    assert_eq!(left, 1, "only etc/ should remain");
}

#[tokio::test]
async fn file_errors_name_the_path() {
    let host = connect().await;
    let missing = host.path("missing");
    let reply = host
        .call(
            Request::ReadFile {
                path: missing.clone(),
            },
            None,
        )
        .await;
    assert_eq!(
        reply.error(),
        Some(format!("read {missing}: No such file or directory").as_str())
    );

    let relative = Request::WriteFile {
        path: "relative".into(),
        mode: None,
        as_app: false,
    };
    let reply = host.call(relative, Some(b"x")).await;
    assert_eq!(reply.error(), Some("path relative is not absolute"));
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_and_half_closes() {
    let host = connect().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        socket.read_to_end(&mut got).await.expect("read");
        got.make_ascii_uppercase();
        socket.write_all(&got).await.expect("write");
    });

    let reply = host.call(Request::Tunnel { port }, Some(b"hello")).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
    assert_eq!(reply.stdout(), "HELLO");
    assert_eq!(reply.eofs, vec![CHAN_STDIO]);
    assert_eq!(reply.reason, None);
}

#[tokio::test]
async fn a_tunnel_to_a_closed_port_is_refused() {
    let host = connect().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let reply = host.call(Request::Tunnel { port }, None).await;
    let expected = format!("connection refused to port {port}");
    assert_eq!(reply.error(), Some(expected.as_str()));
}

async fn app_status(host: &Host) -> AppState {
    let reply = host.call(Request::AppStatus, None).await;
    match reply.controls.first() {
        Some(Control::App(state)) => state.clone(),
        other => panic!("{other:?}"),
    }
}

async fn wait_for_exit(host: &Host) -> AppState {
    for _ in 0..200 {
        let state = app_status(host).await;
        if state.exit.is_some() {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the app did not exit");
}

#[tokio::test]
async fn the_app_starts_once_and_its_output_is_kept() {
    let host = connect().await;
    assert!(!app_status(&host).await.started);

    let spec = app_spec("echo out; echo err >&2; sleep 0.3");
    let reply = host.call(Request::StartApp(spec.clone()), None).await;
    let Some(Control::Ok { value }) = reply.controls.first() else {
        panic!("{reply:?}");
    };
    let pid = value["pid"].as_u64().expect("pid");

    let again = host.call(Request::StartApp(spec), None).await;
    let message = again.error().expect("refused");
    assert!(
        message.contains(&format!("already running (pid {pid})")),
        "{message}"
    );

    let state = wait_for_exit(&host).await;
    assert_eq!(state.pid, None);
    assert_eq!(state.exit.expect("exit").code, Some(0));

    let logs = host.call(Request::Logs { follow: false }, None).await;
    assert_eq!(logs.stdout(), "out\n");
    assert_eq!(logs.stderr, b"err\n");
}

#[tokio::test]
async fn following_logs_streams_until_the_app_ends() {
    let host = connect().await;
    let (_tx, mut rx) = host.open(&Request::Logs { follow: true }).split();
    let spec = app_spec("echo one; sleep 0.3; echo two");
    host.call(Request::StartApp(spec), None).await;
    let reply = collect(&mut rx).await;
    assert_eq!(reply.stdout(), "one\ntwo\n");
    assert_eq!(reply.reason, None);
}

#[tokio::test]
async fn the_app_keeps_only_dockers_default_capabilities() {
    let host = connect().await;
    let spec = app_spec("grep CapBnd /proc/self/status");
    host.call(Request::StartApp(spec), None).await;
    wait_for_exit(&host).await;
    let logs = host.call(Request::Logs { follow: false }, None).await;
    assert_eq!(logs.stdout(), "CapBnd:\t00000000a80425fb\n");

    let host = connect().await;
    let mut spec = app_spec("grep CapBnd /proc/self/status");
    spec.all_capabilities = true;
    host.call(Request::StartApp(spec), None).await;
    wait_for_exit(&host).await;
    let logs = host.call(Request::Logs { follow: false }, None).await;
    assert_ne!(logs.stdout(), "CapBnd:\t00000000a80425fb\n");
}

#[tokio::test]
async fn identity_and_shutdown_go_to_the_system() {
    let host = connect().await;
    let identity = Identity {
        entropy: "AAECAwQFBgcICQ==".into(),
        unix_time_ns: 42,
        hostname: "vm-1".into(),
    };
    let reply = host.call(Request::Identity(identity), None).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );

    let reply = host.call(Request::Shutdown, None).await;
    assert!(
        matches!(reply.controls[..], [Control::Ok { .. }]),
        "{reply:?}"
    );
    let calls = host.system.calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        vec!["entropy 10", "clock 42", "hostname vm-1", "power off"]
    );
}

#[tokio::test]
async fn a_new_hello_starts_a_new_session_at_once() {
    let (host_io, guest_io) = tokio::io::duplex(64 * 1024);
    let (guest_r, guest_w) = tokio::io::split(guest_io);
    let config = AgentConfig {
        root_mounted: true,
        etc: "/nonexistent".into(),
        fs_root: "/nonexistent".into(),
    };
    let agent = Agent::new(config, Arc::new(FakeSystem::default()));
    tokio::spawn(serve::serve(agent, guest_r, guest_w));

    let (host_r, mut host_w) = tokio::io::split(host_io);
    let mut reader = FrameReader::new(host_r);
    handshake_host(&mut reader, &mut host_w)
        .await
        .expect("first handshake");
    // A host that restarts says Hello again on the same channel.
    let ack = tokio::time::timeout(
        Duration::from_secs(5),
        handshake_host(&mut reader, &mut host_w),
    )
    .await
    .expect("answered in time")
    .expect("second handshake");
    assert!(ack.info.root_mounted);

    let (session, _tasks) = Session::start(Role::Host, reader, host_w);
    let (_tx, mut rx) = session.open(&Request::Ping).expect("open").split();
    let reply = collect(&mut rx).await;
    assert!(
        matches!(reply.controls[..], [Control::Info(_)]),
        "{reply:?}"
    );
}

#[tokio::test]
async fn after_a_freeze_the_next_hello_starts_a_new_session() {
    let mut host = connect().await;
    host.call(Request::StartApp(app_spec("echo hi; sleep 5")), None)
        .await;
    let (_tx, mut follower) = host.open(&Request::Logs { follow: true }).split();
    let reply = host.exec(&["echo", "before"], None).await;
    assert_eq!(reply.stdout(), "before\n");

    tokio::time::timeout(Duration::from_secs(5), host.session.freeze("snapshot"))
        .await
        .expect("frozen in time")
        .expect("the guest acknowledges the freeze");
    let reply = collect(&mut follower).await;
    assert_eq!(reply.reason.as_deref(), Some("snapshot"));

    let tasks = host.tasks.take().expect("tasks");
    let (mut reader, mut writer, end) = tasks.join().await;
    assert!(matches!(end, SessionEnd::Frozen), "{end:?}");
    tokio::time::timeout(
        Duration::from_secs(5),
        handshake_host(&mut reader, &mut writer),
    )
    .await
    .expect("answered in time")
    .expect("handshake");
    let (session, _tasks) = Session::start(Role::Host, reader, writer);
    host.session = session;
    let reply = host.exec(&["echo", "after"], None).await;
    assert_eq!(reply.stdout(), "after\n");
}

#[tokio::test]
async fn an_export_since_a_mark_carries_only_the_change() {
    let host = connect().await;
    let root = host.dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/keep"), "keep").expect("write");
    std::fs::write(root.join("etc/gone"), "gone").expect("write");

    let reply = host
        .call(Request::FsExport { since_mark: true }, None)
        .await;
    assert_eq!(reply.error(), Some("export: no FsMark was made"));

    let reply = host.call(Request::FsMark, None).await;
    let Some(Control::Ok { value }) = reply.controls.first() else {
        panic!("{reply:?}");
    };
    assert_eq!(value["entries"], 3);

    std::fs::remove_file(root.join("etc/gone")).expect("rm");
    std::fs::write(root.join("new"), "fresh").expect("write");
    let reply = host
        .call(Request::FsExport { since_mark: true }, None)
        .await;
    assert_eq!(reply.eofs, vec![CHAN_STDIO]);
    let Some(Control::Ok { value }) = reply.controls.last() else {
        panic!("{reply:?}");
    };
    let summary: hearth_protocol::FsExportSummary =
        serde_json::from_value(value.clone()).expect("summary");
    assert_eq!((summary.entries, summary.removed, summary.bytes), (2, 1, 5));

    let mut archive = tar::Archive::new(reply.stdout.as_slice());
    let names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, vec!["etc/.wh.gone", "etc", "new"]);
}

#[tokio::test]
async fn a_bad_network_request_names_the_field() {
    let host = connect().await;
    let spec = hearth_protocol::NetworkSpec {
        address: "10.0.2.15".to_owned(),
        ..Default::default()
    };
    let reply = host.call(Request::Network(spec), None).await;
    let error = reply.error().expect("refused");
    assert!(error.starts_with("bad address \"10.0.2.15\""), "{error}");
}
