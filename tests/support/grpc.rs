//! A raw gRPC client for tests: one HTTP/2 connection (hyper 1.x) over
//! plaintext h2c or over TLS (tokio-rustls, aws-lc-rs), unary calls with
//! hand-framed messages, and the reply's HTTP status, headers, messages and
//! trailers as they came off the wire. Nothing is retried or hidden, so tests
//! can see exactly what the proxy (or the server) answered.
//!
//! Protobuf requests are hand-encoded in [`pb`] (no codegen).

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// The request body type of [`GrpcConn`].
pub type ReqBody = BoxBody<Bytes, BoxError>;

/// Hard cap on one [`GrpcConn::unary`] call, so that a hung peer fails the
/// test instead of hanging it. Long polls fit (SDKs use at most 70 s).
pub const UNARY_CAP: Duration = Duration::from_secs(300);

/// gRPC status codes (same numbers as `tonic::Code`).
pub mod code {
    pub const OK: i32 = 0;
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const ABORTED: i32 = 10;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const DATA_LOSS: i32 = 15;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Full method paths of the calls the tests use most.
pub mod path {
    pub const GET_SYSTEM_INFO: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
    pub const DESCRIBE_NAMESPACE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";
    pub const LIST_NAMESPACES: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/ListNamespaces";
    pub const LIST_WORKFLOW_EXECUTIONS: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/ListWorkflowExecutions";
    pub const POLL_WORKFLOW_TASK_QUEUE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue";
    pub const POLL_ACTIVITY_TASK_QUEUE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/PollActivityTaskQueue";
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
}

/// TLS settings of a test client. `alpn` defaults to `[b"h2"]` in
/// [`ClientTls::new`]; set it to `vec![]` to offer no ALPN at all.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: String,
    pub alpn: Vec<Vec<u8>>,
}

impl ClientTls {
    /// Server-authenticated TLS only (no client certificate), ALPN `h2`.
    pub fn new(ca: impl Into<PathBuf>, server_name: &str) -> ClientTls {
        ClientTls {
            ca: ca.into(),
            cert: None,
            key: None,
            server_name: server_name.to_owned(),
            alpn: vec![b"h2".to_vec()],
        }
    }

    /// mTLS: `new` plus a client certificate chain and its key (PEM files).
    pub fn mtls(
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        server_name: &str,
    ) -> ClientTls {
        ClientTls {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..ClientTls::new(ca, server_name)
        }
    }
}

/// Connection tuning; `Default` is what [`GrpcConn::connect`] uses.
#[derive(Clone, Debug)]
pub struct ConnOptions {
    /// Connect (TCP + TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// With TLS, how long `connect` waits for the server's first bytes (its
    /// HTTP/2 SETTINGS). A TLS 1.3 server rejects a client certificate only
    /// after the client's handshake is done; this wait turns that alert into
    /// a `connect` error. No bytes within the wait is not an error.
    pub first_bytes_wait: Duration,
    /// HTTP/2 PING interval (none by default) and its ack timeout.
    pub keep_alive_interval: Option<Duration>,
    pub keep_alive_timeout: Duration,
    pub keep_alive_while_idle: bool,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            connect_timeout: Duration::from_secs(10),
            first_bytes_wait: Duration::from_secs(2),
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            keep_alive_while_idle: false,
        }
    }
}

/// One HTTP/2 connection to a gRPC server. Cheap to share by reference;
/// calls may run concurrently (each is one HTTP/2 stream).
pub struct GrpcConn {
    sender: SendRequest<ReqBody>,
    scheme: &'static str,
    authority: String,
    /// The ALPN protocol the server chose (TLS only).
    pub alpn: Option<Vec<u8>>,
    /// The TLS protocol version negotiated (TLS only), e.g. "TLSv1_3".
    pub tls_version: Option<String>,
    conn_task: Mutex<Option<JoinHandle<Result<(), String>>>>,
    conn_result: Arc<Mutex<Option<Result<(), String>>>>,
}

/// Everything a call got back.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    pub http_status: u16,
    pub headers: HeaderMap,
    /// gRPC messages of the body, decompressed when flagged and
    /// `grpc-encoding: gzip`.
    pub messages: Vec<Bytes>,
    /// From the trailers, or from the headers of a trailers-only reply.
    pub grpc_status: Option<i32>,
    /// Percent-decoded `grpc-message`, from the same place as `grpc_status`.
    pub grpc_message: Option<String>,
    pub trailers: Option<HeaderMap>,
    /// The raw DATA bytes (for replies that are not gRPC, e.g. an HTTP error).
    pub body: Bytes,
    /// Set when `body` did not split into whole gRPC messages.
    pub framing_error: Option<String>,
    /// From sending the request to the end of the reply.
    pub elapsed: Duration,
}

impl GrpcReply {
    pub fn is_ok(&self) -> bool {
        self.grpc_status == Some(code::OK)
    }

    /// The first message (empty if none).
    pub fn message(&self) -> Bytes {
        self.messages.first().cloned().unwrap_or_default()
    }

    /// A header or trailer value, trailers first.
    pub fn metadata(&self, name: &str) -> Option<String> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

fn err_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    // The Debug form carries h2 reason codes (e.g. `Reason(REFUSED_STREAM)`,
    // `GoAway(.., ENHANCE_YOUR_CALM, ..)`), which tests may want to match.
    format!("{s} [{e:?}]")
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("read certificates {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parse certificates {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&tls.ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("CA {}: {e}", tls.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("read key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("ClientTls needs both cert and key, or neither".into()),
    };
    config.alpn_protocols = tls.alpn.clone();
    Ok(config)
}

/// A stream that first yields `prefix` (bytes already read from `inner`).
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body fed from a channel, for tests that send a body slowly, in
/// pieces, or never finish it. Drop the sender to end the body.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

/// A body sender/body pair: push `Frame::data(..)` (or an `Err` to reset the
/// stream); dropping the sender ends the body.
pub fn channel_body(capacity: usize) -> (mpsc::Sender<Result<Frame<Bytes>, BoxError>>, ReqBody) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (tx, BoxBody::new(ChannelBody { rx }))
}

/// A complete body.
pub fn full_body(bytes: impl Into<Bytes>) -> ReqBody {
    BoxBody::new(Full::new(bytes.into()).map_err(|never| match never {}))
}

/// One length-prefixed gRPC message: flag byte (1 = compressed), u32 BE length.
pub fn frame(message: &[u8], compressed: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(u8::from(compressed));
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// gzip-compresses `data` (for `grpc-encoding: gzip` requests).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip write");
    enc.finish().expect("gzip finish")
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| format!("gunzip: {e}"))?;
    Ok(out)
}

/// Percent-decodes a `grpc-message` value (invalid escapes are kept as is).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a gRPC body into messages.
pub fn split_messages(body: &[u8], gzip_encoded: bool) -> (Vec<Bytes>, Option<String>) {
    let mut buf = body;
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 5 {
            return (
                out,
                Some(format!("{} stray bytes after the last message", buf.len())),
            );
        }
        let flag = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return (
                out,
                Some(format!(
                    "truncated message: wants {len} bytes, has {}",
                    buf.len() - 5
                )),
            );
        }
        let msg = &buf[5..5 + len];
        if flag & 1 == 1 {
            if !gzip_encoded {
                return (
                    out,
                    Some("compressed flag without grpc-encoding gzip".into()),
                );
            }
            match gunzip(msg) {
                Ok(m) => out.push(Bytes::from(m)),
                Err(e) => return (out, Some(e)),
            }
        } else {
            out.push(Bytes::copy_from_slice(msg));
        }
        buf.advance(5 + len);
    }
    (out, None)
}

impl GrpcConn {
    /// Opens one HTTP/2 connection: h2c when `tls` is `None`. `Err` carries the
    /// TCP/TLS/HTTP2 error text (e.g. `received fatal alert: CertificateRequired`).
    pub async fn connect(addr: SocketAddr, tls: Option<&ClientTls>) -> Result<GrpcConn, String> {
        Self::connect_with(addr, tls, &ConnOptions::default()).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        tls: Option<&ClientTls>,
        opts: &ConnOptions,
    ) -> Result<GrpcConn, String> {
        let tcp = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("TCP connect to {addr}: timed out"))?
            .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
        tcp.set_nodelay(true).ok();
        match tls {
            None => {
                let authority = addr.to_string();
                Self::handshake(TokioIo::new(tcp), "http", authority, None, None, opts).await
            }
            Some(tls) => {
                let config = client_config(tls)?;
                let name = ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| format!("server name {:?}: {e}", tls.server_name))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let mut stream =
                    tokio::time::timeout(opts.connect_timeout, connector.connect(name, tcp))
                        .await
                        .map_err(|_| "TLS handshake: timed out".to_string())?
                        .map_err(|e| format!("TLS handshake: {}", err_chain(&e)))?;
                let (alpn, version) = {
                    let (_, conn) = stream.get_ref();
                    (
                        conn.alpn_protocol().map(|p| p.to_vec()),
                        conn.protocol_version().map(|v| format!("{v:?}")),
                    )
                };
                // See ConnOptions::first_bytes_wait.
                let mut first = vec![0u8; 4096];
                let prefix = match tokio::time::timeout(
                    opts.first_bytes_wait,
                    stream.read(&mut first),
                )
                .await
                {
                    Err(_) => Bytes::new(),
                    Ok(Ok(0)) => {
                        return Err(
                            "TLS: connection closed by the server after the handshake".to_string()
                        )
                    }
                    Ok(Ok(n)) => Bytes::copy_from_slice(&first[..n]),
                    Ok(Err(e)) => return Err(format!("TLS: {}", err_chain(&e))),
                };
                let authority = format!("{}:{}", tls.server_name, addr.port());
                let io = TokioIo::new(Prefixed {
                    prefix,
                    inner: stream,
                });
                Self::handshake(io, "https", authority, alpn, version, opts).await
            }
        }
    }

    async fn handshake<T>(
        io: T,
        scheme: &'static str,
        authority: String,
        alpn: Option<Vec<u8>>,
        tls_version: Option<String>,
        opts: &ConnOptions,
    ) -> Result<GrpcConn, String>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        if let Some(interval) = opts.keep_alive_interval {
            builder
                .keep_alive_interval(interval)
                .keep_alive_timeout(opts.keep_alive_timeout)
                .keep_alive_while_idle(opts.keep_alive_while_idle);
        }
        let (sender, conn) = builder
            .handshake::<_, ReqBody>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {}", err_chain(&e)))?;
        let conn_result = Arc::new(Mutex::new(None));
        let slot = conn_result.clone();
        let task = tokio::spawn(async move {
            let r = conn.await.map_err(|e| err_chain(&e));
            *slot.lock().unwrap() = Some(r.clone());
            r
        });
        Ok(GrpcConn {
            sender,
            scheme,
            authority,
            alpn,
            tls_version,
            conn_task: Mutex::new(Some(task)),
            conn_result,
        })
    }

    /// A request for `path` with gRPC's headers (`content-type:
    /// application/grpc`, `te: trailers`) plus `headers`; later headers of
    /// the same name are appended, not replaced.
    pub fn request_builder(&self, path: &str, headers: &[(&str, &str)]) -> http::request::Builder {
        let uri = format!("{}://{}{}", self.scheme, self.authority, path);
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b
    }

    /// Sends one uncompressed gRPC message and collects the reply.
    pub async fn unary(
        &self,
        path: &str,
        message: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<GrpcReply, String> {
        let req = self
            .request_builder(path, headers)
            .body(full_body(frame(message, false)))
            .map_err(|e| format!("build request: {e}"))?;
        self.request_timeout(req, UNARY_CAP).await
    }

    /// `unary` with a client-side timeout (the call is cancelled with
    /// RST_STREAM(CANCEL) when it fires). Does not send `grpc-timeout`; pass
    /// that in `headers` if the server should know.
    pub async fn unary_timeout(
        &self,
        path: &str,
        message: &[u8],
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<GrpcReply, String> {
        let req = self
            .request_builder(path, headers)
            .body(full_body(frame(message, false)))
            .map_err(|e| format!("build request: {e}"))?;
        self.request_timeout(req, timeout).await
    }

    /// Sends already gzip-compressed bytes with the compressed flag set and
    /// `grpc-encoding: gzip` (as recent SDKs do). See [`gzip`].
    pub async fn raw_compressed(
        &self,
        path: &str,
        compressed: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<GrpcReply, String> {
        let mut h: Vec<(&str, &str)> = vec![("grpc-encoding", "gzip")];
        h.extend_from_slice(headers);
        let req = self
            .request_builder(path, &h)
            .body(full_body(frame(compressed, true)))
            .map_err(|e| format!("build request: {e}"))?;
        self.request_timeout(req, UNARY_CAP).await
    }

    /// Sends any request (custom method, headers, body) and returns the
    /// response as soon as its headers arrive.
    pub async fn send(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, String> {
        let mut sender = self.sender.clone();
        sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {}", err_chain(&e)))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {}", err_chain(&e)))
    }

    /// Sends any request and collects the whole reply, within `timeout`.
    pub async fn request_timeout(
        &self,
        req: Request<ReqBody>,
        timeout: Duration,
    ) -> Result<GrpcReply, String> {
        let started = Instant::now();
        let fut = async {
            let resp = self.send(req).await?;
            collect_reply(resp, started).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("client timeout after {timeout:?}")),
        }
    }

    /// Whether hyper considers the connection closed (e.g. after GOAWAY and
    /// the last stream, or a connection error).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Waits up to `timeout` for the connection to end; `Some(Ok(()))` for a
    /// clean close (GOAWAY/EOF), `Some(Err(text))` for an error, `None` if it
    /// is still open.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<Result<(), String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.conn_result.lock().unwrap().clone() {
                return Some(r);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `:authority` used for requests (`host:port`).
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl Drop for GrpcConn {
    fn drop(&mut self) {
        if let Some(task) = self.conn_task.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// Reads a response to its end into a [`GrpcReply`].
pub async fn collect_reply(
    resp: Response<Incoming>,
    started: Instant,
) -> Result<GrpcReply, String> {
    let (parts, mut body) = resp.into_parts();
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            format!(
                "response body (HTTP {}, {} bytes so far): {}",
                parts.status.as_u16(),
                data.len(),
                err_chain(&e)
            )
        })?;
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    match &mut trailers {
                        None => trailers = Some(t),
                        Some(all) => all.extend(t),
                    }
                }
            }
        }
    }
    let body = data.freeze();
    let is_grpc = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    let gzip_encoded = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let (messages, framing_error) = if is_grpc {
        split_messages(&body, gzip_encoded)
    } else {
        (Vec::new(), None)
    };
    let source: &HeaderMap = match &trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => &parts.headers,
    };
    let grpc_status = source
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<i32>().ok());
    let grpc_message = source
        .get("grpc-message")
        .map(|v| percent_decode(&String::from_utf8_lossy(v.as_bytes())));
    Ok(GrpcReply {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        messages,
        grpc_status,
        grpc_message,
        trailers,
        body,
        framing_error,
        elapsed: started.elapsed(),
    })
}

/// Builds a header map from pairs (test convenience).
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    m
}

/// Hand-written protobuf encoding (and a little decoding) for test requests:
/// the workspace's one copy, in `tools/wire` (crate
/// temporal-mtls-proxy-testwire), shared with the benchmark tools. Field
/// numbers are checked there against the Temporal and gRPC health protos.
pub mod pb {
    // Each test binary uses some of these (as with `dead_code` in mod.rs).
    #![allow(unused_imports)]
    pub use temporal_mtls_proxy_testwire::pb::{
        concat, decode, field_bytes, field_message, field_string, field_varint, get_bytes,
        get_path_string, get_string, get_varint, tag, varint, Value, LEN, VARINT,
    };
    pub use temporal_mtls_proxy_testwire::temporal::{
        describe_namespace, get_system_info, health_check, health_status, list_namespaces,
        list_workflow_executions, namespace_name, namespace_names, poll_activity_task_queue,
        poll_workflow_task_queue, server_version, task_queue, task_token,
    };
}

/// A bare TLS connection (ALPN and client certificate from `tls`), for tests
/// that speak raw HTTP/2 frames or drive the `h2` crate directly.
pub async fn raw_tls(
    addr: SocketAddr,
    tls: &ClientTls,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let config = client_config(tls)?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("server name: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

impl GrpcConn {
    /// A PollWorkflowTaskQueue on `queue` of `namespace` with a gRPC
    /// deadline of `deadline` (sent as `grpc-timeout`, so the frontend holds
    /// the poll until about then); the client gives up 30 s later.
    pub async fn poll_workflow_task_queue(
        &self,
        namespace: &str,
        queue: &str,
        deadline: Duration,
    ) -> Result<GrpcReply, String> {
        self.unary_timeout(
            path::POLL_WORKFLOW_TASK_QUEUE,
            &pb::poll_workflow_task_queue(namespace, queue, queue),
            &[("grpc-timeout", &format!("{}S", deadline.as_secs()))],
            deadline + Duration::from_secs(30),
        )
        .await
    }
}
