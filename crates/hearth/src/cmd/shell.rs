//! `hearth shell` and `hearth cp`: a person's way into a microVM.
//!
//! `hearth shell ID` joins the local terminal to a shell in the microVM's app
//! container, over the shell's WebSocket (see `hearth_shim::shell` for its
//! messages): through the microVM's endpoint with a shell token (asked of
//! the API with `CreateMicrovmShellAuthToken` unless one is given), or with
//! `--local` straight to the microVM's shim through its VM directory, which
//! needs no server and no token (for the host's administrator). Both speak
//! the same WebSocket protocol; `--local` runs the server side in process.
//!
//! The terminal is put in raw mode, window changes become resize messages,
//! the end of standard input is sent as ^D, and the command exits with the
//! shell's exit code.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::{SinkExt, StreamExt};
use hearth_protocol::TtySize;
use hearth_shim::shell::{self, ClientMessage, ServerMessage, SHELL_PORT, SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use hearth_api::model::{CreateMicrovmShellAuthTokenRequest, GetMicrovmRequest, PROXY_AUTH_HEADER};

use crate::cmd::api::ApiArgs;
use crate::cmd::vm::{self, tty};

/// Arguments of `hearth shell`.
#[derive(Args)]
pub struct ShellArgs {
    /// The microVM (or VM) id.
    id: String,
    /// Go straight to the microVM's shim through its VM directory instead
    /// of its endpoint; needs access to the data directory, not a token.
    #[arg(long)]
    local: bool,
    /// The address the microVMs' endpoints listen on (`host:port`); by
    /// default the port of the microVM's endpoint (from GetMicrovm) on
    /// 127.0.0.1.
    #[arg(long, env = "HEARTH_INGRESS_ADDR")]
    ingress: Option<String>,
    /// With --ingress: the endpoints' domain, a microVM's endpoint being
    /// `<id>.<domain>` (otherwise it is taken from GetMicrovm).
    #[arg(long, env = "HEARTH_ENDPOINT_DOMAIN", default_value = "localhost")]
    domain: String,
    /// A shell token to use instead of asking the API for one.
    #[arg(long, env = "HEARTH_SHELL_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// The byte a terminal sends for ^D.
const EOT: u8 = 0x04;

/// Minutes a shell token asked for by `hearth shell` stays valid; it is
/// needed only to open the connection.
const TOKEN_MINUTES: i32 = 5;

/// Runs `hearth shell`.
///
/// # Errors
///
/// Fails when the shell cannot be reached or ends without an exit.
pub async fn run(args: ShellArgs) -> Result<ExitCode> {
    let size = tty::size();
    let code = match args.local {
        true => local(&args.id, size).await?,
        false => remote(&args, size).await?,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// A shell through the microVM's shim, with the WebSocket server in process.
async fn local(id: &str, size: Option<TtySize>) -> Result<i32> {
    let client = vm::connect(id).await?;
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { shell::serve(server_io, &client).await });

    let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let result = drive(ws, size).await;
    match server.await {
        Ok(Err(err)) if result.is_err() => Err(anyhow::Error::new(err)),
        _ => result,
    }
}

/// A shell through the microVM's endpoint.
async fn remote(args: &ShellArgs, size: Option<TtySize>) -> Result<i32> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => shell_token(args).await?,
    };
    let (endpoint, address) = match &args.ingress {
        Some(ingress) => {
            let port = ingress.rsplit_once(':').map_or("80", |(_, port)| port);
            (
                format!("{}.{}:{port}", args.id, args.domain),
                ingress.clone(),
            )
        }
        None => {
            let input = GetMicrovmRequest {
                microvm_identifier: args.id.clone(),
            };
            let microvm = args
                .api
                .client()?
                .get_microvm(&input)
                .await
                .context("asking the API for the microVM's endpoint")?;
            endpoint_target(&microvm.endpoint)?
        }
    };
    let request = shell_request(&endpoint, &token, size)?;

    // `*.localhost` names loopback; the address is dialled and the endpoint
    // named by the Host header, as any client does.
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .with_context(|| format!("connecting to the endpoints at {address}"))?;
    let ws = match tokio_tungstenite::client_async(request, tcp).await {
        Ok((ws, _response)) => ws,
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            bail!(
                "the endpoint refused the shell: {} {}",
                response.status(),
                String::from_utf8_lossy(body).trim()
            );
        }
        Err(err) => return Err(anyhow::Error::new(err).context("opening the shell's websocket")),
    };
    drive(ws, size).await
}

/// From a microVM's endpoint URL (`http://<id>.<domain>:<port>`): the
/// endpoint as `host:port` for the Host header, and the address to dial,
/// its port on 127.0.0.1.
fn endpoint_target(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let port = match authority.rsplit_once(':') {
        Some((_, port)) => port
            .parse::<u16>()
            .with_context(|| format!("the endpoint {url} has no valid port"))?,
        None if url.starts_with("https://") => 443,
        None => 80,
    };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if host.is_empty() {
        bail!("the microVM's endpoint {url:?} names no host");
    }
    Ok((format!("{host}:{port}"), format!("127.0.0.1:{port}")))
}

/// The WebSocket request for the shell at `endpoint` (`host:port`): path
/// `/shell` with the size in the query, and the subprotocols that carry the
/// token and name the shell's port.
fn shell_request(endpoint: &str, token: &str, size: Option<TtySize>) -> Result<Request> {
    let query = size.map_or(String::new(), |s| {
        format!("?cols={}&rows={}", s.cols, s.rows)
    });
    let mut request = format!("ws://{endpoint}/shell{query}")
        .into_client_request()
        .context("the shell's url")?;

    let protocols = format!(
        "{SUBPROTOCOL}, {SUBPROTOCOL}.authentication.{token}, {SUBPROTOCOL}.port.{SHELL_PORT}"
    );
    let protocols = HeaderValue::from_str(&protocols).context("the token is not a header value")?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols);
    Ok(request)
}

/// Asks the API for a shell token for the microVM.
async fn shell_token(args: &ShellArgs) -> Result<String> {
    let input = CreateMicrovmShellAuthTokenRequest {
        microvm_identifier: args.id.clone(),
        expiration_in_minutes: TOKEN_MINUTES,
    };
    let output = args
        .api
        .client()?
        .create_microvm_shell_auth_token(&input)
        .await
        .context("asking the API for a shell token")?;
    let parts = output.auth_token;
    parts
        .get(PROXY_AUTH_HEADER)
        .or_else(|| parts.values().next())
        .cloned()
        .ok_or_else(|| anyhow!("the API's shell token is empty"))
}

/// Joins the local terminal to a shell WebSocket; returns the exit code.
async fn drive<S>(ws: WebSocketStream<S>, size: Option<TtySize>) -> Result<i32>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let size = size.unwrap_or(shell::DEFAULT_SIZE);
    sink.send(resize(size)).await?;
    let _raw = tty::RawMode::enter();

    // Keystrokes and window changes go out through one channel.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let keys_tx = out_tx.clone();
    let keys = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stdin.read(&mut buf).await.unwrap_or(0);
            // The end of input is typed as a terminal's ^D, which ends a
            // shell at its prompt (`echo ls | hearth shell ID` then exits).
            let bytes = if n == 0 { vec![EOT] } else { buf[..n].to_vec() };
            if keys_tx.send(Message::binary(bytes)).await.is_err() || n == 0 {
                break;
            }
        }
    });
    let resizes = tokio::spawn(async move {
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = tty::size() {
                if out_tx.send(resize(size)).await.is_err() {
                    break;
                }
            }
        }
    });
    let sender = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut stdout = tokio::io::stdout();
    let mut exit = None;
    let mut close_reason = None;
    while let Some(message) = source.next().await {
        match message.context("reading the shell's websocket")? {
            Message::Binary(bytes) => {
                stdout.write_all(&bytes).await?;
                stdout.flush().await?;
            }
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Exit { code, .. }) => exit = Some(code),
                Ok(ServerMessage::Error { message }) => close_reason = Some(message),
                Err(_) => {}
            },
            Message::Close(frame) => {
                if let Some(frame) = frame.filter(|f| !f.reason.is_empty()) {
                    close_reason.get_or_insert_with(|| frame.reason.to_string());
                }
                break;
            }
            _ => {}
        }
    }
    keys.abort();
    resizes.abort();
    sender.abort();

    exit.ok_or_else(|| {
        let reason = close_reason.unwrap_or_else(|| "the connection ended".to_owned());
        anyhow!("the shell ended without an exit: {reason}")
    })
}

fn resize(size: TtySize) -> Message {
    let message = ClientMessage::Resize {
        cols: size.cols,
        rows: size.rows,
    };
    Message::text(serde_json::to_string(&message).expect("a resize serializes"))
}

/// Arguments of `hearth cp`.
#[derive(Args)]
pub struct CpArgs {
    /// Source: a local path or `ID:/path` in a microVM.
    src: String,
    /// Destination: a local path or `ID:/path` in a microVM.
    dst: String,
}

/// Runs `hearth cp`: a file into or out of a microVM's app container; a file
/// copied in belongs to the app's user.
///
/// # Errors
///
/// Fails when neither or both sides name a microVM, or the copy fails.
pub async fn cp(args: CpArgs) -> Result<ExitCode> {
    vm::cp(&args.src, &args.dst, vm::Owner::App).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_request_names_the_endpoint_token_and_port() {
        let size = TtySize {
            rows: 40,
            cols: 120,
        };
        let request =
            shell_request("microvm-ab12.localhost:7080", "tok3n", Some(size)).expect("request");

        assert_eq!(
            request.uri().to_string(),
            "ws://microvm-ab12.localhost:7080/shell?cols=120&rows=40"
        );
        let protocols = request.headers()["Sec-WebSocket-Protocol"]
            .to_str()
            .expect("ascii");
        let protocols: Vec<&str> = protocols.split(", ").collect();
        assert_eq!(
            protocols,
            [
                "lambda-microvms",
                "lambda-microvms.authentication.tok3n",
                "lambda-microvms.port.8022"
            ]
        );
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        let err =
            shell_request("microvm-ab12.localhost:7080", "bad\ntoken", None).expect_err("newline");
        assert!(err.to_string().contains("token"), "{err}");
    }

    #[test]
    fn the_endpoint_from_get_microvm_is_dialled_on_loopback_at_its_port() {
        let (host, address) =
            endpoint_target("http://microvm-ab12.localhost:41234").expect("target");
        assert_eq!(host, "microvm-ab12.localhost:41234");
        assert_eq!(address, "127.0.0.1:41234");

        let (host, address) = endpoint_target("http://microvm-ab12.example.test").expect("target");
        assert_eq!(host, "microvm-ab12.example.test:80");
        assert_eq!(address, "127.0.0.1:80");

        assert!(endpoint_target("http://microvm-ab12.localhost:notaport").is_err());
        assert!(endpoint_target("http://").is_err());
    }
}
