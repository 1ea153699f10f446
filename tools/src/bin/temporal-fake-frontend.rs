//! A fast fake Temporal frontend, for BENCHMARKS ONLY.
//!
//! It answers the few methods the benchmarks call at once, with valid gRPC
//! responses and trailers, so that what a benchmark measures is the cost of
//! whatever sits in front of it (temporal-mtls-proxy, nginx, HAProxy), not
//! the cost of a real server. It is not a Temporal server: correctness is
//! tested against the real one (see `/work/shared/TEMPORAL.md`).
//!
//! Run:
//!
//! ```text
//! cargo run --release -p temporal-mtls-proxy-tools --bin temporal-fake-frontend -- \
//!     --listen 127.0.0.1:7233
//! target/release/temporal-fake-frontend --listen 127.0.0.1:0 \
//!     --tls-cert server.pem --tls-key server.key [--tls-client-ca ca.pem] \
//!     [--threads N] [--poll-hold 60s]
//! ```
//!
//! It serves HTTP/2 only: cleartext with prior knowledge (h2c) by default, TLS
//! with ALPN `h2` when `--tls-cert`/`--tls-key` are given, and requires a client
//! certificate chaining to `--tls-client-ca` when that is given. Once bound it
//! prints exactly one line `listening on ADDR` to stdout (scripts read it;
//! `--listen 127.0.0.1:0` picks a free port).
//!
//! Methods (every other path gets a trailers-only `UNIMPLEMENTED`):
//! - `WorkflowService/GetSystemInfo`: a small `GetSystemInfoResponse`
//!   (server_version "1.32.0-fake", empty capabilities).
//! - `WorkflowService/StartWorkflowExecution`: a response with a 36-char run_id.
//! - `WorkflowService/PollWorkflowTaskQueue`, `PollActivityTaskQueue`: held
//!   open for `--poll-hold`, or until 1 s before the `grpc-timeout` deadline if
//!   sooner, then an empty response (a long poll that found no task).
//! - `grpc.health.v1.Health/Check`: SERVING.
//! - `test.Echo/Echo`: the request body streamed back frame by frame as it
//!   arrives (not buffered), then OK trailers.
//! - `test.Bulk/Download`: the request's message is a 4-byte big-endian
//!   size N; the answer is one message of N zero bytes, made as it is sent
//!   (16 KiB chunks of one static buffer), then OK trailers.
//!
//! Every answer but the echo is sent after the whole request body was read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use temporal_mtls_proxy_testwire::grpc::frame;
use temporal_mtls_proxy_testwire::temporal;
use temporal_mtls_proxy_tools::tls;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const RUN_ID: &str = "0195f1d2-7c3a-7e4b-9a51-6b2f3c4d5e6f";

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "temporal-fake-frontend",
    about = "A fast fake Temporal frontend for benchmarks only (h2c or TLS)."
)]
struct Args {
    /// Address to listen on (port 0 picks a free one; see the `listening on` line).
    #[arg(long, default_value = "127.0.0.1:7233")]
    listen: SocketAddr,
    /// Server certificate chain (PEM); turns on TLS with ALPN h2.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM); when given, clients must present a certificate it signed.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Tokio worker threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// How long a long poll is held before its empty answer (capped at the
    /// call's grpc-timeout minus 1 s).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    poll_hold: Duration,
}

/// Everything a call needs, built once and leaked (lives for the process).
struct Shared {
    http2: http2::Builder<TokioExecutor>,
    poll_hold: Duration,
    /// Length-prefixed response messages.
    system_info: Bytes,
    start_workflow: Bytes,
    empty: Bytes,
    serving: Bytes,
    /// `grpc-status: 0`.
    ok_trailers: HeaderMap,
}

impl Shared {
    fn new(poll_hold: Duration) -> Shared {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .max_concurrent_streams(100_000)
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .max_frame_size(64 << 10)
            .max_send_buf_size(1 << 20)
            .max_header_list_size(64 << 10)
            .max_pending_accept_reset_streams(Some(10_000))
            .adaptive_window(false)
            .auto_date_header(false);

        let mut ok_trailers = HeaderMap::with_capacity(1);
        ok_trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Shared {
            http2: builder,
            poll_hold,
            system_info: frame(&temporal::get_system_info_response("1.32.0-fake"), false),
            start_workflow: frame(&temporal::start_workflow_execution_response(RUN_ID), false),
            empty: frame(b"", false),
            serving: frame(&temporal::health_check_response(temporal::SERVING), false),
            ok_trailers,
        }
    }
}

/// The response body: a precomputed message then trailers, nothing (for a
/// trailers-only answer), or the request's data echoed back then trailers.
/// No exact `size_hint`: with one, hyper adds `content-length` and ends the
/// HTTP/2 stream after the data, so the trailers (grpc-status) are lost.
enum Reply {
    Fixed {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Echo {
        request: Incoming,
        trailers: Option<HeaderMap>,
    },
    /// A message of `left` zero bytes still to send (its prefix first).
    Bulk {
        prefix: Option<Bytes>,
        left: usize,
        trailers: Option<HeaderMap>,
    },
}

/// What bulk responses are cut from.
static ZEROS: [u8; 16 << 10] = [0; 16 << 10];

impl Body for Reply {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Reply::Fixed { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Reply::Echo { request, trailers } => loop {
                if trailers.is_none() {
                    return Poll::Ready(None);
                }
                match ready!(Pin::new(&mut *request).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => {
                            return Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        // Empty data or the request's trailers: nothing to echo.
                        _ => continue,
                    },
                    Some(Err(e)) => {
                        *trailers = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => {
                        return Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                }
            },
            Reply::Bulk {
                prefix,
                left,
                trailers,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                if *left > 0 {
                    let n = (*left).min(ZEROS.len());
                    *left -= n;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Fixed { data, trailers } => data.is_none() && trailers.is_none(),
            Reply::Echo { trailers, .. } | Reply::Bulk { trailers, .. } => trailers.is_none(),
        }
    }
}

fn grpc_response(body: Reply) -> Response<Reply> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

fn ok(shared: &Shared, message: &Bytes) -> Response<Reply> {
    grpc_response(Reply::Fixed {
        data: Some(message.clone()),
        trailers: Some(shared.ok_trailers.clone()),
    })
}

fn unimplemented() -> Response<Reply> {
    let mut response = grpc_response(Reply::Fixed {
        data: None,
        trailers: None,
    });
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from_static("12"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("method not implemented by the fake frontend"),
    );
    response
}

/// Reads (and drops) the whole request body.
async fn drain(body: &mut Incoming) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// The `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`), if valid.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

async fn handle(
    shared: &'static Shared,
    req: Request<Incoming>,
) -> Result<Response<Reply>, hyper::Error> {
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path();
    if path == temporal::path::ECHO {
        return Ok(grpc_response(Reply::Echo {
            request: body,
            trailers: Some(shared.ok_trailers.clone()),
        }));
    }
    if path == temporal::path::DOWNLOAD {
        let request = body.collect().await?.to_bytes();
        let size = match request.get(5..9) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        };
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&size.to_be_bytes());
        return Ok(grpc_response(Reply::Bulk {
            prefix: Some(Bytes::from(prefix)),
            left: size as usize,
            trailers: Some(shared.ok_trailers.clone()),
        }));
    }
    drain(&mut body).await?;
    let response = match path {
        temporal::path::HEALTH_CHECK => ok(shared, &shared.serving),
        _ => match path.strip_prefix(temporal::path::WORKFLOW_SERVICE) {
            Some("GetSystemInfo") => ok(shared, &shared.system_info),
            Some("StartWorkflowExecution") => ok(shared, &shared.start_workflow),
            Some("PollWorkflowTaskQueue" | "PollActivityTaskQueue") => {
                let hold = match grpc_timeout(&parts.headers) {
                    Some(t) => shared
                        .poll_hold
                        .min(t.saturating_sub(Duration::from_secs(1))),
                    None => shared.poll_hold,
                };
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                ok(shared, &shared.empty)
            }
            _ => unimplemented(),
        },
    };
    Ok(response)
}

async fn serve<I>(shared: &'static Shared, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(shared, req));
    // Errors here are clients going away mid-benchmark: not worth a line.
    let _ = shared
        .http2
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn tls_config(args: &Args) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let identity = tls::load_key_pair(cert, key)?;
    let client_roots = match &args.tls_client_ca {
        Some(ca) => Some(tls::load_roots(ca)?),
        None => None,
    };
    let config = tls::server_config(identity, client_roots)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

async fn accept_loop(listener: TcpListener, shared: &'static Shared, tls: Option<TlsAcceptor>) {
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                eprintln!("temporal-fake-frontend: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                tokio::spawn(serve(shared, tcp));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(shared, stream).await;
                    }
                });
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tls = tls_config(&args)?;
    let shared: &'static Shared = Box::leak(Box::new(Shared::new(args.poll_hold)));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("fake-fe-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "listening on {}", listener.local_addr()?)?;
            stdout.flush()?;
        }
        accept_loop(listener, shared, tls).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        let timeout = |v: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_static(v));
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("70S"), Some(Duration::from_secs(70)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(timeout("S"), None);
        assert_eq!(timeout("10s"), None, "units are case-sensitive");
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
