//! Connections and calls: dialing (TCP, TLS, HTTP/2) and one gRPC call.

use bytes::Bytes;
use http::{Method as HttpMethod, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::target::Target;

/// The request side of one HTTP/2 connection.
pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// Opens one HTTP/2 connection (its task runs on its own).
pub(crate) async fn connect(target: &Target) -> Result<Sender, &'static str> {
    dial(target).await.map(|(sender, _)| sender)
}

/// Opens one HTTP/2 connection: the sender of its requests and the task
/// that drives it (it finishes when the connection closes).
pub(crate) async fn dial(target: &Target) -> Result<(Sender, JoinHandle<()>), &'static str> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|_| "connect")?;
    let _ = tcp.set_nodelay(true);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_send_buf_size(4 << 20);
    match &target.tls {
        None => {
            let (sender, conn) = builder
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(|_| "h2-handshake")?;
            Ok((sender, tokio::spawn(async move { _ = conn.await })))
        }
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|_| "tls-handshake")?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("no-alpn-h2");
            }
            let (sender, conn) = builder
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|_| "h2-handshake")?;
            Ok((sender, tokio::spawn(async move { _ = conn.await })))
        }
    }
}

/// How one call ended.
pub(crate) enum Outcome {
    /// A gRPC answer: its grpc-status and the message bytes received.
    Grpc { status: String, received: u64 },
    /// No gRPC answer: what failed.
    Transport(String),
}

/// Makes one call on `sender`: the target's request, the whole response
/// read, its grpc-status from the trailers (or a trailers-only answer).
pub(crate) async fn call(sender: &mut Sender, target: &Target) -> Outcome {
    let mut req = Request::new(Full::new(target.body()));
    *req.method_mut() = HttpMethod::POST;
    *req.uri_mut() = target.uri.clone();
    *req.headers_mut() = target.headers.clone();
    let resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(_) => return Outcome::Transport("http2".into()),
    };
    if resp.status() != http::StatusCode::OK {
        return Outcome::Transport(format!("http-{}", resp.status().as_u16()));
    }
    let mut status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => return Outcome::Transport("body".into()),
        };
        match frame.into_data() {
            Ok(data) => received += data.len() as u64,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    if let Some(s) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
                        status = Some(s.to_owned());
                    }
                }
            }
        }
    }
    match status {
        Some(status) => Outcome::Grpc { status, received },
        None => Outcome::Transport("no-grpc-status".into()),
    }
}
