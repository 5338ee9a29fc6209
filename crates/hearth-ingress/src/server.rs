//! The listeners: plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge)
//! and HTTPS (HTTP/2 by ALPN, else HTTP/1.1). Each connection runs in its
//! own task; a stop ends the accept loops.

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::backend::Backend;
use crate::proxy::Proxy;

/// Serves plain HTTP on `listener` until `stop` completes.
pub async fn serve_http<B: Backend>(
    listener: TcpListener,
    proxy: Arc<Proxy<B>>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, proxy.clone()));
            }
            Err(error) => tracing::warn!(error = %error, "ingress accept failed"),
        }
    }
}

/// Serves HTTPS on `listener` with `tls` until `stop` completes.
pub async fn serve_https<B: Backend>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: Arc<Proxy<B>>,
    stop: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => connection(tls, proxy).await,
                        Err(error) => tracing::debug!(error = %error, "tls handshake failed"),
                    }
                });
            }
            Err(error) => tracing::warn!(error = %error, "ingress accept failed"),
        }
    }
}

/// Serves one client connection, HTTP/1.1 or HTTP/2 as it speaks.
async fn connection<B, I>(io: I, proxy: Arc<Proxy<B>>)
where
    B: Backend,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy.clone().handle(req));
    let served = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(error = %error, "ingress connection ended");
    }
}
