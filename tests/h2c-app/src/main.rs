//! An HTTP/2-only app (h2c with prior knowledge) on port 8080:
//! - `/`: `h2 <method> <path>`;
//! - `/stream`: five chunks sent 50 ms apart, then the trailer
//!   `x-stream-status: done` (the shape of a server-streaming gRPC call).
//!
//! An HTTP/1.1 request fails the HTTP/2 handshake, so an answer proves the
//! client side spoke HTTP/2.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/stream" {
        let text = format!("h2 {} {}", req.method(), req.uri().path());
        return Ok(Response::new(Full::new(Bytes::from(text)).boxed()));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for i in 0..5 {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(format!("chunk {i}\n")))))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-stream-status", HeaderValue::from_static("done"));
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    Ok(Response::new(Frames(rx).boxed()))
}

/// A body whose frames come from a channel.
struct Frames(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listener = TcpListener::bind("0.0.0.0:8080").await.expect("bind 8080");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service_fn(answer))
                .await;
        });
    }
}
