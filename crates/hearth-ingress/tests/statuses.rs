//! The proxy's own answers, against a fake control plane: which status
//! each refusal gets, and that a refused request never wakes the microVM.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hearth_api::model::{IdlePolicy, MicrovmState};
use hearth_control::tokens::{self, AllowedPorts, TokenClaims, TokenError, TokenKind, TokenSigner};
use hearth_control::{IngressView, WakeError};
use hearth_ingress::{serve_http, Backend, IngressConfig, Proxy, TunnelError};
use hearth_protocol::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ID: &str = "microvm-0123456789abcdef0123456789abcdef";

/// How the fake microVM behaves.
#[derive(Clone, Copy)]
enum Wake {
    Never,
    Refuses,
    Runs,
}

struct Fake {
    signer: TokenSigner,
    state: MicrovmState,
    connectors: Vec<String>,
    wake: Wake,
    wakes: AtomicUsize,
}

#[async_trait]
impl Backend for Fake {
    fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        self.signer.verify(token, now)
    }

    fn microvm(&self, id: &str) -> Option<IngressView> {
        (id == ID).then(|| IngressView {
            state: self.state,
            connectors: self.connectors.clone(),
            idle_policy: Some(IdlePolicy {
                max_idle_duration_seconds: 60,
                suspended_duration_seconds: 60,
                auto_resume_enabled: true,
            }),
        })
    }

    async fn wake(&self, _id: &str) -> Result<(), WakeError> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        match self.wake {
            Wake::Never => std::future::pending().await,
            Wake::Refuses => Err(WakeError::NotResumable {
                state: MicrovmState::Suspended,
            }),
            Wake::Runs => Ok(()),
        }
    }

    async fn tunnel(&self, _id: &str, port: u16) -> Result<Stream, TunnelError> {
        Err(TunnelError {
            port,
            detail: "connection refused".to_owned(),
        })
    }

    async fn shim(
        &self,
        _id: &str,
    ) -> Result<std::sync::Arc<hearth_shim::ShimClient>, TunnelError> {
        Err(TunnelError {
            port: 8022,
            detail: "no shim".to_owned(),
        })
    }

    fn record_traffic(&self, _id: &str, _bytes_in: u64, _bytes_out: u64) {}
}

fn fake(state: MicrovmState, wake: Wake) -> Fake {
    Fake {
        signer: TokenSigner::new([9; 32]),
        state,
        connectors: vec!["ALL_INGRESS".to_owned()],
        wake,
        wakes: AtomicUsize::new(0),
    }
}

fn token(fake: &Fake, microvm: &str, exp_in: i64, ports: AllowedPorts) -> String {
    let exp = hearth_api::model::Timestamp::now().unix_seconds() + exp_in;
    fake.signer
        .sign(&tokens::claims(TokenKind::Endpoint, microvm, exp, ports))
}

/// Starts a proxy in front of `fake`; returns its address.
async fn start(fake: Arc<Fake>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = IngressConfig {
        wake_timeout: Duration::from_millis(300),
        ..IngressConfig::default()
    };
    let proxy = Arc::new(Proxy::new(fake, config));
    tokio::spawn(serve_http(listener, proxy, std::future::pending()));
    addr
}

/// The status of `GET /` with `headers`.
async fn status(addr: std::net::SocketAddr, headers: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {ID}.localhost:7080\r\nConnection: close\r\n{headers}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn refused_tokens_never_wake_the_microvm() {
    let fake = Arc::new(fake(MicrovmState::Suspended, Wake::Runs));
    let addr = start(fake.clone()).await;
    let expired = token(&fake, ID, -1, AllowedPorts::All);
    let other = token(
        &fake,
        "microvm-ffffffffffffffffffffffffffffffff",
        60,
        AllowedPorts::All,
    );
    let narrow = token(&fake, ID, 60, AllowedPorts::Ranges(vec![(9000, 9000)]));
    let forged = TokenSigner::new([1; 32]).sign(&tokens::claims(
        TokenKind::Endpoint,
        ID,
        i64::MAX,
        AllowedPorts::All,
    ));

    assert_eq!(status(addr, "").await, 401);
    for bad in [&expired, &other, &narrow, &forged] {
        let header = format!("X-aws-proxy-auth: {bad}\r\n");
        assert_eq!(status(addr, &header).await, 403, "{bad}");
    }
    assert_eq!(fake.wakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wake_that_does_not_finish_in_time_is_504() {
    let fake = Arc::new(fake(MicrovmState::Suspended, Wake::Never));
    let addr = start(fake.clone()).await;
    let good = token(&fake, ID, 60, AllowedPorts::All);
    assert_eq!(
        status(addr, &format!("X-aws-proxy-auth: {good}\r\n")).await,
        504
    );
}

#[tokio::test]
async fn a_microvm_that_does_not_resume_on_traffic_is_409() {
    let fake = Arc::new(fake(MicrovmState::Suspended, Wake::Refuses));
    let addr = start(fake.clone()).await;
    let good = token(&fake, ID, 60, AllowedPorts::All);
    assert_eq!(
        status(addr, &format!("X-aws-proxy-auth: {good}\r\n")).await,
        409
    );
}

#[tokio::test]
async fn nothing_listening_is_502_and_no_ingress_is_403() {
    let fake = Arc::new(fake(MicrovmState::Running, Wake::Runs));
    let addr = start(fake.clone()).await;
    let good = token(&fake, ID, 60, AllowedPorts::All);
    assert_eq!(
        status(addr, &format!("X-aws-proxy-auth: {good}\r\n")).await,
        502
    );

    let mut closed = self::fake(MicrovmState::Running, Wake::Runs);
    closed.connectors = vec!["NO_INGRESS".to_owned()];
    let closed = Arc::new(closed);
    let addr = start(closed.clone()).await;
    let good = token(&closed, ID, 60, AllowedPorts::All);
    assert_eq!(
        status(addr, &format!("X-aws-proxy-auth: {good}\r\n")).await,
        403
    );
}
