//! A frame-level HTTP/2 client for hostile tests: it sends what well-behaved
//! libraries refuse to send (uppercase or invalid header names, misplaced or
//! unknown pseudo-headers, connection-specific headers, request trailers,
//! arbitrary DATA splits, raw frames of any type) and records every frame
//! the server sends back, per stream and per connection.
//!
//! Transport: plaintext TCP (h2c, to the dev server directly) or TLS with a
//! client certificate ([`ClientTls`], ALPN `h2`, to the proxy).
//!
//! Sending: HEADERS blocks are HPACK-encoded by the tiny encoder in
//! [`hpack`] (literals without Huffman; with or without incremental
//! indexing; indexed fields), optionally split into HEADERS + CONTINUATION.
//! DATA respects the server's flow-control windows. Raw frames bypass
//! everything.
//!
//! Receiving: a background task decodes every frame (HPACK with
//! `loona-hpack`, its dynamic table kept across blocks; CONTINUATION
//! reassembled) into per-stream events (response headers, data, trailers,
//! RST_STREAM) and connection events (GOAWAY, EOF). It ACKs the server's
//! SETTINGS and PINGs and returns flow-control credit for received DATA,
//! unless told not to ([`H2Options`]).
//!
//! Every wait is bounded in time.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::grpc::{self, ClientTls};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 section 6).
pub mod frame_type {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;

    pub fn name(t: u8) -> &'static str {
        match t {
            DATA => "DATA",
            HEADERS => "HEADERS",
            PRIORITY => "PRIORITY",
            RST_STREAM => "RST_STREAM",
            SETTINGS => "SETTINGS",
            PUSH_PROMISE => "PUSH_PROMISE",
            PING => "PING",
            GOAWAY => "GOAWAY",
            WINDOW_UPDATE => "WINDOW_UPDATE",
            CONTINUATION => "CONTINUATION",
            _ => "UNKNOWN",
        }
    }
}

/// Frame flags.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RST_STREAM, GOAWAY).
pub mod error_code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const CONNECT_ERROR: u32 = 0xa;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    pub const INADEQUATE_SECURITY: u32 = 0xc;
    pub const HTTP_1_1_REQUIRED: u32 = 0xd;

    pub fn name(code: u32) -> String {
        let n = match code {
            NO_ERROR => "NO_ERROR",
            PROTOCOL_ERROR => "PROTOCOL_ERROR",
            INTERNAL_ERROR => "INTERNAL_ERROR",
            FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            STREAM_CLOSED => "STREAM_CLOSED",
            FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            REFUSED_STREAM => "REFUSED_STREAM",
            CANCEL => "CANCEL",
            COMPRESSION_ERROR => "COMPRESSION_ERROR",
            CONNECT_ERROR => "CONNECT_ERROR",
            ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            INADEQUATE_SECURITY => "INADEQUATE_SECURITY",
            HTTP_1_1_REQUIRED => "HTTP_1_1_REQUIRED",
            other => return format!("0x{other:x}"),
        };
        n.to_string()
    }
}

/// A tiny HPACK encoder (RFC 7541): integers, literals without Huffman
/// coding, indexed fields. Enough to say anything, including what a real
/// encoder never would.
pub mod hpack {
    /// Appends `value` as an HPACK integer with an `n`-bit prefix; `first`
    /// holds the representation's high bits.
    pub fn integer(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        out.push(value as u8);
    }

    /// A string literal, no Huffman coding.
    pub fn string(out: &mut Vec<u8>, s: &[u8]) {
        integer(out, 0x00, 7, s.len());
        out.extend_from_slice(s);
    }

    /// Literal header field with a new name: without indexing (0x00),
    /// with incremental indexing (0x40), or never indexed (0x10).
    pub fn literal(out: &mut Vec<u8>, first: u8, name: &[u8], value: &[u8]) {
        out.push(first);
        string(out, name);
        string(out, value);
    }

    /// Indexed header field (static table 1..=61, dynamic 62..).
    pub fn indexed(out: &mut Vec<u8>, index: usize) {
        integer(out, 0x80, 7, index);
    }
}

/// One entry of a header block as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// Literal without indexing, new name (the default).
    Literal(Vec<u8>, Vec<u8>),
    /// Literal with incremental indexing, new name: the server adds it to
    /// its dynamic table, so a later block can send [`Field::Indexed`].
    Indexing(Vec<u8>, Vec<u8>),
    /// Literal never indexed, new name.
    NeverIndexed(Vec<u8>, Vec<u8>),
    /// Indexed field: static 1..=61, dynamic from 62 (62 = newest entry).
    Indexed(usize),
    /// Raw HPACK bytes, sent as given.
    Raw(Vec<u8>),
}

impl Field {
    /// The name of a literal field (None for indexed and raw ones).
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Field::Literal(n, _) | Field::Indexing(n, _) | Field::NeverIndexed(n, _) => Some(n),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Field::Literal(n, v) => hpack::literal(out, 0x00, n, v),
            Field::Indexing(n, v) => hpack::literal(out, 0x40, n, v),
            Field::NeverIndexed(n, v) => hpack::literal(out, 0x10, n, v),
            Field::Indexed(i) => hpack::indexed(out, *i),
            Field::Raw(b) => out.extend_from_slice(b),
        }
    }
}

/// A literal field (without indexing) from any bytes.
pub fn field(name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Field {
    Field::Literal(name.as_ref().to_vec(), value.as_ref().to_vec())
}

/// HPACK-encodes a header block.
pub fn encode_block(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        f.encode(&mut out);
    }
    out
}

/// The request headers of a gRPC call as a well-behaved client sends them:
/// `:method POST`, `:scheme`, `:path`, `:authority`, `content-type:
/// application/grpc`, `te: trailers`.
pub fn grpc_headers(scheme: &str, authority: &str, path: &str) -> Vec<Field> {
    vec![
        field(":method", "POST"),
        field(":scheme", scheme),
        field(":path", path),
        field(":authority", authority),
        field("content-type", "application/grpc"),
        field("te", "trailers"),
    ]
}

/// A decoded header list.
pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a [u8]> {
    h.iter()
        .find(|(n, _)| n.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn show_headers(h: &Headers) -> String {
    h.iter()
        .map(|(n, v)| format!("{}: {}", show_bytes(n), show_bytes(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes as text with non-printable bytes escaped.
pub fn show_bytes(b: &[u8]) -> String {
    b.iter()
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .collect()
}

/// Connection settings of the client.
#[derive(Clone, Debug)]
pub struct H2Options {
    /// The SETTINGS sent after the preface.
    pub settings: Vec<(u16, u32)>,
    /// WINDOW_UPDATE on stream 0 right after the SETTINGS (0: none).
    pub connection_window_increment: u32,
    /// Return flow-control credit for every DATA frame received (off: the
    /// client never reads, for slow-reader tests).
    pub auto_window_update: bool,
    /// ACK the server's PINGs.
    pub auto_ping_ack: bool,
    /// ACK the server's SETTINGS.
    pub auto_settings_ack: bool,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// How long `connect` waits for the server's SETTINGS (its preface).
    pub settings_wait: Duration,
}

impl Default for H2Options {
    fn default() -> Self {
        H2Options {
            settings: vec![
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20),
            ],
            connection_window_increment: 1 << 20,
            auto_window_update: true,
            auto_ping_ack: true,
            auto_settings_ack: true,
            connect_timeout: Duration::from_secs(10),
            settings_wait: Duration::from_secs(5),
        }
    }
}

/// A GOAWAY frame received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream_id: u32,
    pub error_code: u32,
    pub debug: Vec<u8>,
}

impl fmt::Display for GoAway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GOAWAY {} last_stream_id={} debug={:?}",
            error_code::name(self.error_code),
            self.last_stream_id,
            show_bytes(&self.debug)
        )
    }
}

/// What the server sent on one stream.
#[derive(Clone, Debug, Default)]
pub struct StreamEvents {
    /// 1xx header blocks.
    pub informational: Vec<Headers>,
    /// The response header block (the first non-1xx one).
    pub headers: Option<Headers>,
    /// All DATA payloads concatenated (padding removed).
    pub data: Vec<u8>,
    pub data_frames: usize,
    /// The header block after the response headers.
    pub trailers: Option<Headers>,
    /// Any further header blocks (a protocol violation by the server).
    pub extra_blocks: Vec<Headers>,
    /// RST_STREAM error code.
    pub reset: Option<u32>,
    /// The server ended its side (END_STREAM).
    pub end_stream: bool,
    /// Our send window on this stream.
    send_window: i64,
}

impl StreamEvents {
    /// The server is done with the stream (END_STREAM or RST_STREAM).
    pub fn finished(&self) -> bool {
        self.end_stream || self.reset.is_some()
    }
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, StreamEvents>,
    goaways: Vec<GoAway>,
    /// EOF or a read/decode error.
    closed: Option<String>,
    write_error: Option<String>,
    peer_settings: Vec<(u16, u32)>,
    peer_settings_frames: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    conn_send_window: i64,
    settings_acks: usize,
    pings: Vec<[u8; 8]>,
    ping_acks: Vec<[u8; 8]>,
    next_stream_id: u32,
    /// One line per frame received.
    log: Vec<String>,
}

impl State {
    fn stream(&mut self, id: u32) -> &mut StreamEvents {
        let initial = self.peer_initial_window;
        self.streams.entry(id).or_insert_with(|| StreamEvents {
            send_window: initial,
            ..Default::default()
        })
    }

    /// Why the connection cannot carry anything any more, if it cannot.
    fn dead(&self) -> Option<String> {
        if let Some(c) = &self.closed {
            return Some(match self.goaways.last() {
                Some(g) => format!("{g}; then {c}"),
                None => c.clone(),
            });
        }
        self.write_error.clone()
    }
}

/// A gRPC reply as it came off the wire.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub http_status: Option<u16>,
    pub headers: Headers,
    pub trailers: Option<Headers>,
    /// From the trailers, or from the headers of a trailers-only reply.
    pub grpc_status: Option<i32>,
    /// Percent-decoded.
    pub grpc_message: Option<String>,
    /// gRPC messages of the body (decompressed when flagged and gzip).
    pub messages: Vec<Vec<u8>>,
    pub framing_error: Option<String>,
    /// DATA bytes received.
    pub body: Vec<u8>,
    /// RST_STREAM after the complete response (e.g. NO_ERROR).
    pub reset_after: Option<u32>,
}

impl Response {
    /// The reply as far as `ev` has it.
    pub fn from_events(ev: &StreamEvents) -> Response {
        let headers = ev.headers.clone().unwrap_or_default();
        let http_status = header(&headers, ":status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok());
        let source = match &ev.trailers {
            Some(t) if header(t, "grpc-status").is_some() => t,
            _ => &headers,
        };
        let grpc_status = header(source, "grpc-status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse().ok());
        let grpc_message = header(source, "grpc-message")
            .map(|v| grpc::percent_decode(&String::from_utf8_lossy(v)));
        let gzip = header(&headers, "grpc-encoding").is_some_and(|v| v == b"gzip");
        let is_grpc =
            header(&headers, "content-type").is_some_and(|v| v.starts_with(b"application/grpc"));
        let (messages, framing_error) = if is_grpc {
            let (m, e) = grpc::split_messages(&ev.data, gzip);
            (m.into_iter().map(|b| b.to_vec()).collect(), e)
        } else {
            (Vec::new(), None)
        };
        Response {
            http_status,
            headers,
            trailers: ev.trailers.clone(),
            grpc_status,
            grpc_message,
            messages,
            framing_error,
            body: ev.data.clone(),
            reset_after: if ev.end_stream { ev.reset } else { None },
        }
    }

    /// The first message (empty if none).
    pub fn message(&self) -> Vec<u8> {
        self.messages.first().cloned().unwrap_or_default()
    }
}

/// What happened to one call.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The server ended the stream (END_STREAM).
    Response(Response),
    /// The server reset the stream; `partial` is what had arrived.
    Reset { code: u32, partial: Response },
    /// The connection ended by GOAWAY before the stream did.
    GoAway(GoAway),
    /// The connection ended (EOF, read error) without GOAWAY.
    Closed(String),
    /// Nothing conclusive within the time allowed.
    Timeout { waited: Duration, partial: Response },
    /// The request could not be sent.
    SendFailed(String),
}

impl Outcome {
    pub fn response(&self) -> Option<&Response> {
        match self {
            Outcome::Response(r) => Some(r),
            _ => None,
        }
    }

    pub fn grpc_status(&self) -> Option<i32> {
        self.response().and_then(|r| r.grpc_status)
    }

    pub fn grpc_message(&self) -> Option<&str> {
        self.response().and_then(|r| r.grpc_message.as_deref())
    }

    pub fn is_ok(&self) -> bool {
        self.grpc_status() == Some(0)
    }

    /// The connection went away (GOAWAY, EOF) before the call ended.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Outcome::GoAway(_) | Outcome::Closed(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Response(r) => {
                write!(f, "HTTP {}", r.http_status.unwrap_or(0))?;
                match r.grpc_status {
                    Some(c) => write!(f, " grpc-status {c} ({})", code_name(c))?,
                    None => write!(f, " no grpc-status")?,
                }
                if let Some(m) = &r.grpc_message {
                    write!(f, " {m:?}")?;
                }
                if !r.messages.is_empty() {
                    write!(f, " [{} message(s)]", r.messages.len())?;
                } else if r.grpc_status.is_none() && !r.body.is_empty() {
                    let n = r.body.len().min(120);
                    write!(f, " body {:?}", show_bytes(&r.body[..n]))?;
                }
                if let Some(c) = r.reset_after {
                    write!(f, " (then RST_STREAM {})", error_code::name(c))?;
                }
                Ok(())
            }
            Outcome::Reset { code, partial } => {
                write!(f, "RST_STREAM {}", error_code::name(*code))?;
                if let Some(s) = partial.http_status {
                    write!(f, " (after HTTP {s})")?;
                }
                Ok(())
            }
            Outcome::GoAway(g) => write!(f, "{g}"),
            Outcome::Closed(why) => write!(f, "connection closed: {why}"),
            Outcome::Timeout { waited, partial } => {
                write!(f, "no end within {waited:?}")?;
                if let Some(s) = partial.http_status {
                    write!(f, " (headers HTTP {s} arrived)")?;
                }
                Ok(())
            }
            Outcome::SendFailed(e) => write!(f, "send failed: {e}"),
        }
    }
}

/// gRPC status code names.
pub fn code_name(c: i32) -> &'static str {
    match c {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "?",
    }
}

/// One step of a request on a new stream, for [`H2Conn::run`].
#[derive(Clone, Debug)]
pub enum Step {
    /// A header block; `fragment` splits it into HEADERS + CONTINUATION
    /// frames of that many bytes of block each.
    Headers {
        fields: Vec<Field>,
        end_stream: bool,
        fragment: Option<usize>,
    },
    /// DATA in frames of at most `chunk` bytes (0: the largest the server
    /// allows); END_STREAM on the last one. Empty bytes: one empty frame.
    Data {
        bytes: Vec<u8>,
        end_stream: bool,
        chunk: usize,
    },
    /// Any frame on this stream, sent as given (no flow control).
    Frame { ty: u8, flags: u8, payload: Vec<u8> },
    /// Any frame on stream 0 (PING ACK, SETTINGS, ...), as given.
    ConnFrame { ty: u8, flags: u8, payload: Vec<u8> },
    /// Wait before the next step.
    Pause(Duration),
}

impl Step {
    pub fn headers(fields: Vec<Field>) -> Step {
        Step::Headers {
            fields,
            end_stream: false,
            fragment: None,
        }
    }

    pub fn data(bytes: impl Into<Vec<u8>>, end_stream: bool) -> Step {
        Step::Data {
            bytes: bytes.into(),
            end_stream,
            chunk: 0,
        }
    }

    /// Trailers: a header block with END_STREAM.
    pub fn trailers(fields: Vec<Field>) -> Step {
        Step::Headers {
            fields,
            end_stream: true,
            fragment: None,
        }
    }
}

/// One HTTP/2 connection, raw. Cheap to share by reference; several
/// streams may be driven at once from different tasks.
pub struct H2Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    /// `http` (h2c) or `https`.
    pub scheme: &'static str,
    /// `host:port` for `:authority`.
    pub authority: String,
    /// True: the reader stops reading the socket.
    paused: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serializes one frame.
pub fn encode_frame(ty: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn settings_payload(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in settings {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

impl H2Conn {
    /// Plaintext HTTP/2 (prior knowledge) to `addr`.
    pub async fn h2c(addr: SocketAddr, opts: &H2Options) -> Result<H2Conn, String> {
        let tcp = tokio::time::timeout(opts.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("TCP connect to {addr}: timed out"))?
            .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
        tcp.set_nodelay(true).ok();
        Self::start(tcp, "http", addr.to_string(), opts).await
    }

    /// HTTP/2 over TLS (ALPN and client certificate from `tls`).
    pub async fn tls(
        addr: SocketAddr,
        tls: &ClientTls,
        opts: &H2Options,
    ) -> Result<H2Conn, String> {
        let stream = tokio::time::timeout(opts.connect_timeout, grpc::raw_tls(addr, tls))
            .await
            .map_err(|_| format!("TLS connect to {addr}: timed out"))??;
        let authority = format!("{}:{}", tls.server_name, addr.port());
        Self::start(stream, "https", authority, opts).await
    }

    /// Sends the preface and SETTINGS over `io`, starts the reader and
    /// writer tasks and waits for the server's SETTINGS.
    pub async fn start<S>(
        io: S,
        scheme: &'static str,
        authority: String,
        opts: &H2Options,
    ) -> Result<H2Conn, String>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let state = Arc::new(Mutex::new(State {
            peer_initial_window: 65_535,
            peer_max_frame: 16_384,
            conn_send_window: 65_535,
            next_stream_id: 1,
            ..Default::default()
        }));
        let notify = Arc::new(Notify::new());
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();

        let mut first = PREFACE.to_vec();
        first.extend(encode_frame(
            frame_type::SETTINGS,
            0,
            0,
            &settings_payload(&opts.settings),
        ));
        if opts.connection_window_increment > 0 {
            first.extend(encode_frame(
                frame_type::WINDOW_UPDATE,
                0,
                0,
                &opts.connection_window_increment.to_be_bytes(),
            ));
        }
        tx.send(first).map_err(|_| "writer gone".to_string())?;

        let wstate = state.clone();
        let wnotify = notify.clone();
        let writer = tokio::spawn(async move {
            while let Some(buf) = rx.recv().await {
                let r = async {
                    wr.write_all(&buf).await?;
                    wr.flush().await
                }
                .await;
                if let Err(e) = r {
                    wstate.lock().unwrap().write_error = Some(format!("write: {e}"));
                    wnotify.notify_waiters();
                    return;
                }
            }
        });

        let rstate = state.clone();
        let rnotify = notify.clone();
        let rtx = tx.clone();
        let ropts = opts.clone();
        let (paused, mut rpaused) = watch::channel(false);
        let reader = tokio::spawn(async move {
            let mut decoder = loona_hpack::Decoder::new();
            // (stream, block so far, END_STREAM of its HEADERS)
            let mut pending: Option<(u32, Vec<u8>, bool)> = None;
            loop {
                if rpaused.wait_for(|p| !*p).await.is_err() {
                    return;
                }
                let mut head = [0u8; 9];
                if let Err(e) = rd.read_exact(&mut head).await {
                    let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        "EOF".to_string()
                    } else {
                        format!("read: {e}")
                    };
                    rstate.lock().unwrap().closed = Some(why);
                    rnotify.notify_waiters();
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let ty = head[3];
                let fl = head[4];
                let sid = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                if let Err(e) = rd.read_exact(&mut payload).await {
                    rstate.lock().unwrap().closed = Some(format!("read frame payload: {e}"));
                    rnotify.notify_waiters();
                    return;
                }
                let mut out: Vec<Vec<u8>> = Vec::new();
                {
                    let mut st = rstate.lock().unwrap();
                    let mut line = format!(
                        "{} flags=0x{fl:02x} stream={sid} len={len}",
                        frame_type::name(ty)
                    );
                    match ty {
                        frame_type::DATA => {
                            let body = strip_padding(&payload, fl);
                            let end = fl & flags::END_STREAM != 0;
                            let s = st.stream(sid);
                            s.data.extend_from_slice(body);
                            s.data_frames += 1;
                            if end {
                                s.end_stream = true;
                            }
                            if ropts.auto_window_update && len > 0 {
                                let inc = (len as u32).to_be_bytes();
                                out.push(encode_frame(frame_type::WINDOW_UPDATE, 0, 0, &inc));
                                if !end {
                                    out.push(encode_frame(frame_type::WINDOW_UPDATE, 0, sid, &inc));
                                }
                            }
                        }
                        frame_type::HEADERS => {
                            let mut block = strip_padding(&payload, fl);
                            if fl & flags::PRIORITY != 0 && block.len() >= 5 {
                                block = &block[5..];
                            }
                            let end = fl & flags::END_STREAM != 0;
                            if fl & flags::END_HEADERS != 0 {
                                let decoded = decoder.decode(block);
                                line.push_str(&on_block(&mut st, sid, decoded, end));
                            } else {
                                pending = Some((sid, block.to_vec(), end));
                            }
                        }
                        frame_type::CONTINUATION => match pending.as_mut() {
                            Some((psid, buf, _)) if *psid == sid => {
                                buf.extend_from_slice(&payload);
                                if fl & flags::END_HEADERS != 0 {
                                    let (psid, buf, end) = pending.take().unwrap();
                                    let decoded = decoder.decode(&buf);
                                    line.push_str(&on_block(&mut st, psid, decoded, end));
                                }
                            }
                            _ => line.push_str(" (unexpected CONTINUATION)"),
                        },
                        frame_type::RST_STREAM => {
                            let code = be32(&payload);
                            line.push_str(&format!(" {}", error_code::name(code)));
                            st.stream(sid).reset = Some(code);
                        }
                        frame_type::SETTINGS => {
                            if fl & flags::ACK != 0 {
                                st.settings_acks += 1;
                            } else {
                                for pair in payload.chunks_exact(6) {
                                    let id = u16::from_be_bytes([pair[0], pair[1]]);
                                    let v = be32(&pair[2..]);
                                    line.push_str(&format!(" {id}={v}"));
                                    st.peer_settings.push((id, v));
                                    match id {
                                        setting::INITIAL_WINDOW_SIZE => {
                                            let delta = v as i64 - st.peer_initial_window;
                                            st.peer_initial_window = v as i64;
                                            for s in st.streams.values_mut() {
                                                s.send_window += delta;
                                            }
                                        }
                                        setting::MAX_FRAME_SIZE => st.peer_max_frame = v as usize,
                                        _ => {}
                                    }
                                }
                                st.peer_settings_frames += 1;
                                if ropts.auto_settings_ack {
                                    out.push(encode_frame(
                                        frame_type::SETTINGS,
                                        flags::ACK,
                                        0,
                                        &[],
                                    ));
                                }
                            }
                        }
                        frame_type::PING => {
                            let mut data = [0u8; 8];
                            let n = payload.len().min(8);
                            data[..n].copy_from_slice(&payload[..n]);
                            if fl & flags::ACK != 0 {
                                st.ping_acks.push(data);
                            } else {
                                st.pings.push(data);
                                if ropts.auto_ping_ack {
                                    out.push(encode_frame(frame_type::PING, flags::ACK, 0, &data));
                                }
                            }
                        }
                        frame_type::GOAWAY => {
                            let g = GoAway {
                                last_stream_id: be32(&payload) & 0x7fff_ffff,
                                error_code: be32(payload.get(4..).unwrap_or_default()),
                                debug: payload.get(8..).unwrap_or_default().to_vec(),
                            };
                            line = format!("{g}");
                            st.goaways.push(g);
                        }
                        frame_type::WINDOW_UPDATE => {
                            let inc = (be32(&payload) & 0x7fff_ffff) as i64;
                            line.push_str(&format!(" +{inc}"));
                            if sid == 0 {
                                st.conn_send_window += inc;
                            } else {
                                st.stream(sid).send_window += inc;
                            }
                        }
                        _ => {}
                    }
                    st.log.push(line);
                }
                for f in out {
                    let _ = rtx.send(f);
                }
                rnotify.notify_waiters();
            }
        });

        let conn = H2Conn {
            tx,
            state,
            notify,
            scheme,
            authority,
            paused,
            tasks: vec![writer, reader],
        };
        let got = conn
            .wait_until(opts.settings_wait, |st| {
                st.peer_settings_frames > 0 || st.dead().is_some()
            })
            .await;
        let st = conn.state.lock().unwrap();
        if st.peer_settings_frames == 0 {
            let why = st
                .dead()
                .unwrap_or_else(|| format!("no SETTINGS within {:?}", opts.settings_wait));
            drop(st);
            return Err(format!("HTTP/2 preface: {why} (got {got})"));
        }
        drop(st);
        Ok(conn)
    }

    /// Waits until `pred` holds (true) or `timeout` passes (false).
    async fn wait_until(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(&self.state.lock().unwrap()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(slice, notified).await;
        }
    }

    /// Queues raw bytes for the socket.
    /// Stops reading the socket (after the frame being read, if any): the
    /// server's writes fill the TCP buffers and then wait, whatever the
    /// HTTP/2 windows allow.
    pub fn stop_reading(&self) {
        self.paused.send_replace(true);
    }

    pub fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.tx
            .send(bytes)
            .map_err(|_| "the connection's writer has stopped".to_string())
    }

    /// Sends any frame as given.
    pub fn send_frame(&self, ty: u8, fl: u8, stream_id: u32, payload: &[u8]) -> Result<(), String> {
        self.send_bytes(encode_frame(ty, fl, stream_id, payload))
    }

    /// Allocates the next client stream id (1, 3, 5, ...).
    pub fn next_stream_id(&self) -> u32 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_stream_id;
        st.next_stream_id += 2;
        id
    }

    /// Sends a header block on `stream_id`: one HEADERS frame, or with
    /// `fragment` HEADERS + CONTINUATION frames of that many block bytes
    /// each (written in one piece, so nothing interleaves).
    pub fn send_headers(
        &self,
        stream_id: u32,
        fields: &[Field],
        end_stream: bool,
        fragment: Option<usize>,
    ) -> Result<(), String> {
        let block = encode_block(fields);
        let max = self.state.lock().unwrap().peer_max_frame;
        let size = fragment.unwrap_or(max).clamp(1, max);
        let es = if end_stream { flags::END_STREAM } else { 0 };
        let mut bytes = Vec::new();
        if block.len() <= size {
            bytes.extend(encode_frame(
                frame_type::HEADERS,
                es | flags::END_HEADERS,
                stream_id,
                &block,
            ));
        } else {
            let chunks: Vec<&[u8]> = block.chunks(size).collect();
            for (i, c) in chunks.iter().enumerate() {
                let last = i + 1 == chunks.len();
                let eh = if last { flags::END_HEADERS } else { 0 };
                let (ty, fl) = if i == 0 {
                    (frame_type::HEADERS, es | eh)
                } else {
                    (frame_type::CONTINUATION, eh)
                };
                bytes.extend(encode_frame(ty, fl, stream_id, c));
            }
        }
        {
            // Register the stream with the current initial window.
            let mut st = self.state.lock().unwrap();
            st.stream(stream_id);
        }
        self.send_bytes(bytes)
    }

    /// Request trailers: a header block with END_STREAM.
    pub fn send_trailers(&self, stream_id: u32, fields: &[Field]) -> Result<(), String> {
        self.send_headers(stream_id, fields, true, None)
    }

    /// Takes up to `want` bytes of send window on `stream_id` (at least
    /// one byte, or all of `want` when `exact`), waiting up to `timeout`.
    /// `Ok(None)`: the server has finished the stream or the connection is
    /// gone, so there is no point in sending more.
    async fn reserve(
        &self,
        stream_id: u32,
        want: usize,
        exact: bool,
        timeout: Duration,
    ) -> Result<Option<usize>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap();
                if st.dead().is_some() || st.stream(stream_id).finished() {
                    return Ok(None);
                }
                if want == 0 {
                    return Ok(Some(0));
                }
                let avail = st.conn_send_window.min(st.stream(stream_id).send_window);
                let take = if exact {
                    if avail >= want as i64 {
                        want
                    } else {
                        0
                    }
                } else {
                    (avail.max(0) as usize).min(want)
                };
                if take > 0 {
                    st.conn_send_window -= take as i64;
                    st.stream(stream_id).send_window -= take as i64;
                    return Ok(Some(take));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no flow-control window for {want} bytes on stream {stream_id} within {timeout:?}"
                ));
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(slice, notified).await;
        }
    }

    /// Sends `data` in DATA frames of at most `chunk` bytes (0: the
    /// server's max frame size), within the server's windows; END_STREAM on
    /// the last frame. Empty `data` sends one empty frame. Stops early
    /// (`Ok(false)`) when the server has finished the stream or the
    /// connection has gone.
    pub async fn send_data(
        &self,
        stream_id: u32,
        data: &[u8],
        end_stream: bool,
        chunk: usize,
        timeout: Duration,
    ) -> Result<bool, String> {
        let max = self.state.lock().unwrap().peer_max_frame;
        let chunk = if chunk == 0 { max } else { chunk.min(max) };
        if data.is_empty() {
            return self
                .send_data_frame(stream_id, &[], end_stream, timeout)
                .await;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let want = rest.len().min(chunk);
            let Some(n) = self.reserve(stream_id, want, false, timeout).await? else {
                return Ok(false);
            };
            let (now, later) = rest.split_at(n);
            let fl = if later.is_empty() && end_stream {
                flags::END_STREAM
            } else {
                0
            };
            self.send_frame(frame_type::DATA, fl, stream_id, now)?;
            rest = later;
        }
        Ok(true)
    }

    /// Sends exactly one DATA frame with `data` (waiting for enough window).
    pub async fn send_data_frame(
        &self,
        stream_id: u32,
        data: &[u8],
        end_stream: bool,
        timeout: Duration,
    ) -> Result<bool, String> {
        if self
            .reserve(stream_id, data.len(), true, timeout)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let fl = if end_stream { flags::END_STREAM } else { 0 };
        self.send_frame(frame_type::DATA, fl, stream_id, data)?;
        Ok(true)
    }

    pub fn ping(&self, data: [u8; 8]) -> Result<(), String> {
        self.send_frame(frame_type::PING, 0, 0, &data)
    }

    /// A PING ACK (unsolicited, if no PING asked for it).
    pub fn ping_ack(&self, data: [u8; 8]) -> Result<(), String> {
        self.send_frame(frame_type::PING, flags::ACK, 0, &data)
    }

    pub fn rst_stream(&self, stream_id: u32, code: u32) -> Result<(), String> {
        self.send_frame(frame_type::RST_STREAM, 0, stream_id, &code.to_be_bytes())
    }

    pub fn goaway(&self, last_stream_id: u32, code: u32, debug: &[u8]) -> Result<(), String> {
        let mut p = last_stream_id.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(debug);
        self.send_frame(frame_type::GOAWAY, 0, 0, &p)
    }

    pub fn window_update(&self, stream_id: u32, increment: u32) -> Result<(), String> {
        self.send_frame(
            frame_type::WINDOW_UPDATE,
            0,
            stream_id,
            &increment.to_be_bytes(),
        )
    }

    pub fn settings(&self, settings: &[(u16, u32)]) -> Result<(), String> {
        self.send_frame(frame_type::SETTINGS, 0, 0, &settings_payload(settings))
    }

    pub fn settings_ack(&self) -> Result<(), String> {
        self.send_frame(frame_type::SETTINGS, flags::ACK, 0, &[])
    }

    /// What the server has sent on `stream_id` so far.
    pub fn stream(&self, stream_id: u32) -> Option<StreamEvents> {
        self.state.lock().unwrap().streams.get(&stream_id).cloned()
    }

    /// GOAWAY frames received, in order.
    pub fn goaways(&self) -> Vec<GoAway> {
        self.state.lock().unwrap().goaways.clone()
    }

    /// Why the connection is finished (EOF, read or write error), if it is.
    pub fn closed(&self) -> Option<String> {
        self.state.lock().unwrap().dead()
    }

    /// Settings the server has sent, in order.
    pub fn peer_settings(&self) -> Vec<(u16, u32)> {
        self.state.lock().unwrap().peer_settings.clone()
    }

    /// SETTINGS ACKs received, PINGs received, PING ACKs received.
    pub fn counters(&self) -> (usize, Vec<[u8; 8]>, Vec<[u8; 8]>) {
        let st = self.state.lock().unwrap();
        (st.settings_acks, st.pings.clone(), st.ping_acks.clone())
    }

    /// One line per frame received.
    pub fn frame_log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Waits for a PING ACK carrying `data`.
    pub async fn wait_ping_ack(&self, data: [u8; 8], timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.ping_acks.contains(&data))
            .await
    }

    /// Waits until the connection is closed (EOF/error), or `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<String> {
        self.wait_until(timeout, |st| st.dead().is_some()).await;
        self.closed()
    }

    /// Waits until the stream ends (END_STREAM or RST_STREAM), the
    /// connection goes away before it does, or `timeout` passes.
    pub async fn wait_stream(&self, stream_id: u32, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let fate = |st: &State| -> Option<Outcome> {
            let ev = st.streams.get(&stream_id).cloned().unwrap_or_default();
            // END_STREAM first: a server may reset a stream (NO_ERROR)
            // after a complete response to stop the client sending.
            if ev.end_stream {
                return Some(Outcome::Response(Response::from_events(&ev)));
            }
            if let Some(code) = ev.reset {
                return Some(Outcome::Reset {
                    code,
                    partial: Response::from_events(&ev),
                });
            }
            // A GOAWAY that excludes this stream: it was never processed.
            if let Some(g) = st.goaways.iter().find(|g| g.last_stream_id < stream_id) {
                return Some(Outcome::GoAway(g.clone()));
            }
            if let Some(why) = &st.closed {
                return Some(match st.goaways.last() {
                    Some(g) => Outcome::GoAway(g.clone()),
                    None => Outcome::Closed(why.clone()),
                });
            }
            if let Some(e) = &st.write_error {
                return Some(Outcome::Closed(e.clone()));
            }
            None
        };
        self.wait_until(timeout, |st| fate(st).is_some()).await;
        let st = self.state.lock().unwrap();
        fate(&st).unwrap_or_else(|| Outcome::Timeout {
            waited: started.elapsed(),
            partial: st
                .streams
                .get(&stream_id)
                .map(Response::from_events)
                .unwrap_or_default(),
        })
    }

    /// Sends `steps` on a new stream (without waiting for the reply).
    pub async fn send_steps(&self, steps: &[Step], timeout: Duration) -> Result<u32, String> {
        let id = self.next_stream_id();
        self.send_steps_on(id, steps, timeout).await?;
        Ok(id)
    }

    /// Sends `steps` on stream `id`. Sending stops early once the server has
    /// finished the stream or the connection is gone.
    pub async fn send_steps_on(
        &self,
        id: u32,
        steps: &[Step],
        timeout: Duration,
    ) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Headers {
                    fields,
                    end_stream,
                    fragment,
                } => self.send_headers(id, fields, *end_stream, *fragment)?,
                Step::Data {
                    bytes,
                    end_stream,
                    chunk,
                } => {
                    if !self
                        .send_data(id, bytes, *end_stream, *chunk, timeout)
                        .await?
                    {
                        return Ok(());
                    }
                }
                Step::Frame { ty, flags, payload } => self.send_frame(*ty, *flags, id, payload)?,
                Step::ConnFrame { ty, flags, payload } => {
                    self.send_frame(*ty, *flags, 0, payload)?
                }
                Step::Pause(d) => tokio::time::sleep(*d).await,
            }
        }
        Ok(())
    }

    /// Sends `steps` on a new stream and waits for what happens to it, all
    /// within `timeout`.
    pub async fn run(&self, steps: &[Step], timeout: Duration) -> (u32, Outcome) {
        let started = Instant::now();
        let id = self.next_stream_id();
        if let Err(e) = self.send_steps_on(id, steps, timeout).await {
            // The server may have answered already (e.g. refused before
            // granting window): that answer is the outcome.
            let o = self.wait_stream(id, Duration::from_millis(200)).await;
            return match o {
                Outcome::Timeout { .. } => (id, Outcome::SendFailed(e)),
                other => (id, other),
            };
        }
        let left = timeout.saturating_sub(started.elapsed());
        (id, self.wait_stream(id, left).await)
    }

    /// The gRPC request headers for `path` on this connection, plus
    /// `extra` (appended after the standard ones).
    pub fn request_headers(&self, path: &str, extra: &[(&str, &str)]) -> Vec<Field> {
        let mut h = grpc_headers(self.scheme, &self.authority, path);
        for (k, v) in extra {
            h.push(field(k, v));
        }
        h
    }

    /// A unary call with a raw body: HEADERS (gRPC's plus `extra_headers`),
    /// `body` as DATA with END_STREAM; waits up to 10 s for the outcome.
    /// `body` is sent as is: frame messages with [`grpc::frame`], or use
    /// [`H2Conn::call`].
    pub async fn unary(&self, path: &str, extra_headers: &[(&str, &str)], body: &[u8]) -> Outcome {
        self.unary_timeout(path, extra_headers, body, Duration::from_secs(10))
            .await
    }

    pub async fn unary_timeout(
        &self,
        path: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Outcome {
        let steps = [
            Step::headers(self.request_headers(path, extra_headers)),
            Step::data(body.to_vec(), true),
        ];
        self.run(&steps, timeout).await.1
    }

    /// A unary call with one uncompressed message.
    pub async fn call(
        &self,
        path: &str,
        extra_headers: &[(&str, &str)],
        message: &[u8],
    ) -> Outcome {
        self.unary(path, extra_headers, &grpc::frame(message, false))
            .await
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut x = [0u8; 4];
    let n = b.len().min(4);
    x[..n].copy_from_slice(&b[..n]);
    u32::from_be_bytes(x)
}

fn strip_padding(payload: &[u8], fl: u8) -> &[u8] {
    if fl & flags::PADDED == 0 || payload.is_empty() {
        return payload;
    }
    let pad = payload[0] as usize;
    let end = payload.len().saturating_sub(pad).max(1);
    &payload[1..end]
}

/// Files a decoded header block under its stream; returns text for the log.
fn on_block(
    st: &mut State,
    sid: u32,
    decoded: Result<Headers, loona_hpack::decoder::DecoderError>,
    end: bool,
) -> String {
    let headers = match decoded {
        Ok(h) => h,
        Err(e) => {
            st.closed = Some(format!("HPACK decoding failed on stream {sid}: {e}"));
            return format!(" (HPACK error: {e})");
        }
    };
    let text = format!(" [{}]", show_headers(&headers));
    let s = st.stream(sid);
    if s.headers.is_none() {
        let informational = header(&headers, ":status").is_some_and(|v| v.starts_with(b"1"));
        if informational && !end {
            s.informational.push(headers);
        } else {
            s.headers = Some(headers);
        }
    } else if s.trailers.is_none() {
        s.trailers = Some(headers);
    } else {
        s.extra_blocks.push(headers);
    }
    if end {
        s.end_stream = true;
    }
    text
}
