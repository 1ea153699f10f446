//! A fault-injecting h2c upstream for what the real Temporal server cannot
//! be made to do: accept TCP and never speak, send GOAWAY storms, reset
//! every stream, send malformed HTTP/2, or die part-way through a streamed
//! response. The behaviour is a [`Mode`] that can be switched at run time
//! (new connections take the new mode; open raw connections end with a
//! GOAWAY and close when it changes, healthy ones are shut down
//! gracefully), and every accepted TCP connection is counted, so tests can
//! bound how often the proxy reconnects.
//!
//! Healthy connections are served by hyper: every path answers with the
//! request message echoed back and grpc-status 0, except [`SLOW_STREAM`].
//! The faulty modes speak HTTP/2 by hand, byte by byte, so that they can
//! send what no conforming library would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A path answered (in [`Mode::Healthy`]) with [`SLOW_STREAM_MESSAGES`]
/// messages, one every [`SLOW_STREAM_INTERVAL`], then grpc-status 0.
pub const SLOW_STREAM: &str = "/test.Fault/SlowStream";
pub const SLOW_STREAM_MESSAGES: usize = 100;
pub const SLOW_STREAM_INTERVAL: Duration = Duration::from_millis(100);

/// The longest a raw (faulty) connection is kept open, whatever the peer
/// does.
const RAW_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 frame types used here.
mod frame_type {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
}

/// HTTP/2 error codes used here.
const NO_ERROR: u32 = 0x0;
const INTERNAL_ERROR: u32 = 0x2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A working gRPC server (hyper).
    Healthy,
    /// Accepts TCP, reads and discards everything, never writes a byte.
    Silent,
    /// Every connection gets SETTINGS and then [`GOAWAY_STORM_FRAMES`]
    /// GOAWAY frames (last stream 0), and is closed a moment later.
    GoAwayStorm,
    /// A proper SETTINGS exchange; every stream is reset (RST_STREAM
    /// INTERNAL_ERROR) as soon as its HEADERS arrive.
    ResetEveryStream,
    /// A proper SETTINGS exchange and PINGs answered, but no stream is ever
    /// answered (a hung frontend).
    Hung,
    /// After SETTINGS, each stream's HEADERS are answered with a malformed
    /// frame of this kind (see [`Malformed`]).
    Malformed(Malformed),
}

/// The malformed answers of [`Mode::Malformed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A DATA frame on stream 0 (a connection error: PROTOCOL_ERROR).
    DataOnStreamZero,
    /// A frame header announcing 16 MiB - 1 bytes, over any frame size the
    /// proxy allows (FRAME_SIZE_ERROR), followed by a few bytes.
    OversizeLength,
    /// A SETTINGS frame whose length is not a multiple of 6.
    BadSettingsLength,
    /// A response HEADERS frame on the stream whose block is garbage, not
    /// HPACK (index 0, then an integer that never ends): a connection
    /// error (the proxy's h2 answers it with GOAWAY PROTOCOL_ERROR).
    GarbageHeaders,
    /// An HTTP/1.1 answer instead of HTTP/2 at all (no SETTINGS).
    Http1Answer,
}

/// GOAWAY frames each connection gets in [`Mode::GoAwayStorm`].
pub const GOAWAY_STORM_FRAMES: usize = 20;

pub struct FaultUpstream {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    /// HEADERS frames (or hyper requests) seen, over every connection.
    streams: Arc<AtomicUsize>,
    /// Messages of [`SLOW_STREAM`] responses sent so far.
    slow_messages_sent: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaultUpstream {
    /// A fault upstream on a free loopback port, in `mode`.
    pub async fn start(mode: Mode) -> FaultUpstream {
        Self::start_on("127.0.0.1:0".parse().unwrap(), mode).await
    }

    /// A fault upstream on `addr` (e.g. where a killed one was).
    pub async fn start_on(addr: SocketAddr, mode: Mode) -> FaultUpstream {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind the fault upstream on {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(mode);
        let upstream = FaultUpstream {
            addr,
            mode,
            accepted: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            slow_messages_sent: Arc::new(AtomicUsize::new(0)),
            stop: CancellationToken::new(),
        };
        let shared = Shared {
            mode: upstream.mode.clone(),
            accepted: upstream.accepted.clone(),
            streams: upstream.streams.clone(),
            slow_messages_sent: upstream.slow_messages_sent.clone(),
            stop: upstream.stop.clone(),
        };
        tokio::spawn(accept_loop(listener, shared));
        upstream
    }

    /// `http://host:port`, the proxy's `upstream.address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the behaviour: new connections get `mode`, open ones end.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Streams (requests) seen so far, over every connection.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// Messages of [`SLOW_STREAM`] responses sent so far.
    pub fn slow_messages_sent(&self) -> usize {
        self.slow_messages_sent.load(Ordering::SeqCst)
    }

    /// Dies at once: the listener and every connection are dropped (the
    /// sockets closed, as a killed process's would be).
    pub fn kill(&self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Shared {
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    slow_messages_sent: Arc<AtomicUsize>,
    stop: CancellationToken,
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            let stop = shared.stop.clone();
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve(tcp, shared) => {}
            }
        });
    }
}

async fn serve(mut tcp: TcpStream, shared: Shared) {
    let mode = *shared.mode.borrow();
    let changed = {
        let mut rx = shared.mode.subscribe();
        async move {
            let _ = rx.wait_for(|m| *m != mode).await;
        }
    };
    match mode {
        Mode::Healthy => serve_healthy(tcp, shared, changed).await,
        Mode::Silent => {
            tokio::select! {
                () = changed => {}
                () = discard(&mut tcp) => {}
            }
        }
        _ => {
            let _ = tokio::time::timeout(
                RAW_CONNECTION_LIFETIME,
                serve_raw(tcp, mode, &shared, changed),
            )
            .await;
        }
    }
}

async fn discard(tcp: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn serve_healthy(
    tcp: TcpStream,
    shared: Shared,
    changed: impl std::future::Future<Output = ()>,
) {
    let streams = shared.streams.clone();
    let sent = shared.slow_messages_sent.clone();
    let service = hyper::service::service_fn(move |req| {
        streams.fetch_add(1, Ordering::SeqCst);
        handle(req, sent.clone())
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = changed => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

async fn handle(
    req: Request<Incoming>,
    slow_sent: Arc<AtomicUsize>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = if path == SLOW_STREAM {
        let messages = futures_util::stream::unfold(0usize, move |i| {
            let slow_sent = slow_sent.clone();
            async move {
                if i == SLOW_STREAM_MESSAGES {
                    return None;
                }
                tokio::time::sleep(SLOW_STREAM_INTERVAL).await;
                slow_sent.fetch_add(1, Ordering::SeqCst);
                let message = Bytes::from(vec![0, 0, 0, 0, 1, i as u8]);
                Some((Ok::<_, Infallible>(Frame::data(message)), i + 1))
            }
        });
        let end = futures_util::stream::iter([Ok(Frame::trailers(trailers))]);
        BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(
            messages, end,
        )))
    } else {
        // The request (one whole gRPC message) back as the response.
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter([
            Ok(Frame::data(body)),
            Ok(Frame::trailers(trailers)),
        ])))
    };
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap())
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn goaway(last_stream: u32, code: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8);
    payload.extend_from_slice(&last_stream.to_be_bytes());
    payload.extend_from_slice(&code.to_be_bytes());
    frame(frame_type::GOAWAY, 0, 0, &payload)
}

fn malformed(kind: Malformed, stream: u32) -> Vec<u8> {
    match kind {
        Malformed::DataOnStreamZero => frame(frame_type::DATA, 0, 0, b"not on stream 0"),
        Malformed::OversizeLength => {
            let mut out = vec![0xff, 0xff, 0xff, frame_type::DATA, 0, 0, 0, 0, 1];
            out.extend_from_slice(&[0u8; 64]);
            out
        }
        Malformed::BadSettingsLength => frame(frame_type::SETTINGS, 0, 0, &[0, 3, 0, 0, 0]),
        Malformed::GarbageHeaders => {
            let mut block = vec![0x80];
            block.extend_from_slice(&[0xff; 15]);
            frame(frame_type::HEADERS, 0x4, stream, &block)
        }
        Malformed::Http1Answer => {
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
        }
    }
}

/// One raw HTTP/2 connection in a faulty `mode`.
async fn serve_raw(
    mut tcp: TcpStream,
    mode: Mode,
    shared: &Shared,
    changed: impl std::future::Future<Output = ()>,
) {
    if mode == Mode::Malformed(Malformed::Http1Answer) {
        // Not HTTP/2 at all: answer the preface with HTTP/1.1 and close.
        let mut preface = [0u8; PREFACE.len()];
        let _ = tcp.read_exact(&mut preface).await;
        let _ = tcp.write_all(&malformed(Malformed::Http1Answer, 0)).await;
        return;
    }
    let mut preface = [0u8; PREFACE.len()];
    if tcp.read_exact(&mut preface).await.is_err() || preface != PREFACE {
        return;
    }
    let mut out = frame(frame_type::SETTINGS, 0, 0, &[]);
    if mode == Mode::GoAwayStorm {
        for _ in 0..GOAWAY_STORM_FRAMES {
            out.extend_from_slice(&goaway(0, NO_ERROR));
        }
        let _ = tcp.write_all(&out).await;
        // Give the peer a moment to read it all, then close.
        let _ = tokio::time::timeout(Duration::from_millis(500), discard(&mut tcp)).await;
        return;
    }
    if tcp.write_all(&out).await.is_err() {
        return;
    }
    let (mut rd, mut wr) = tcp.into_split();
    let mut last_stream = 0u32;
    tokio::pin!(changed);
    loop {
        let mut header = [0u8; 9];
        tokio::select! {
            () = &mut changed => {
                let _ = wr.write_all(&goaway(last_stream, NO_ERROR)).await;
                return;
            }
            read = rd.read_exact(&mut header) => {
                if read.is_err() {
                    return;
                }
            }
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let kind = header[3];
        let flags = header[4];
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if len > 1 << 20 {
            return;
        }
        let mut payload = vec![0u8; len];
        if rd.read_exact(&mut payload).await.is_err() {
            return;
        }
        let answer = match kind {
            frame_type::SETTINGS if flags & 0x1 == 0 => frame(frame_type::SETTINGS, 0x1, 0, &[]),
            frame_type::PING if flags & 0x1 == 0 => frame(frame_type::PING, 0x1, 0, &payload),
            frame_type::HEADERS => {
                shared.streams.fetch_add(1, Ordering::SeqCst);
                last_stream = last_stream.max(stream);
                match mode {
                    Mode::Hung => continue,
                    Mode::Malformed(kind) => malformed(kind, stream),
                    _ => frame(
                        frame_type::RST_STREAM,
                        0,
                        stream,
                        &INTERNAL_ERROR.to_be_bytes(),
                    ),
                }
            }
            _ => continue,
        };
        if wr.write_all(&answer).await.is_err() {
            return;
        }
    }
}
