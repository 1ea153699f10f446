//! One probe connection, made as a Temporal SDK makes its own: TCP, TLS with
//! the probe's client certificate, the CA it trusts and ALPN `h2` (or
//! plaintext h2c), hyper's HTTP/2 client with the tap (`tap`) between TLS and
//! hyper; and one unary gRPC call on it, answered the way the probe reports
//! a call: its status and message, or how it broke.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use super::tap;
use crate::grpc::frame::{parse_prefix, PREFIX_LEN};

/// How long an SDK waits for a PING's ACK (sdk-core and the Go SDK: 15 s).
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the probe waits for the server's first bytes after the TLS
/// handshake: an HTTP/2 server sends its SETTINGS at once, and a server
/// that refuses the client certificate under TLS 1.3 says so only then.
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(2);
/// Response bytes kept of one call (the probe's responses are a few
/// hundred bytes; the rest is read and dropped).
const MAX_KEPT_RESPONSE: usize = 1 << 20;

pub const USER_AGENT: &str = concat!("temporal-mtls-proxy-probe/", env!("CARGO_PKG_VERSION"));

/// Where the probe connects and how.
pub struct Target {
    /// `host:port` as given.
    pub address: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `:authority` of the calls.
    authority: String,
    /// For each step of a connect, and the default for a call.
    pub timeout: Duration,
    /// `authorization: Bearer ...` on every call (`--token-file`).
    authorization: Option<http::HeaderValue>,
}

/// Splits `host:port` (`[v6]:port` for IPv6).
pub fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

impl Target {
    /// `tls` is the client config and the name the server's certificate
    /// must carry; `None` for plaintext h2c.
    pub fn new(
        address: &str,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        timeout: Duration,
    ) -> Result<Target, String> {
        let (host, port) = split_address(address)
            .ok_or_else(|| format!("{address:?} is not a host:port address"))?;
        let (tls, authority) = match tls {
            None => (None, address.to_owned()),
            Some((config, name)) => {
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|e| format!("{name:?} is not a valid server name: {e}"))?;
                let authority = if name == host {
                    address.to_owned()
                } else {
                    format!("{name}:{port}")
                };
                (Some((TlsConnector::from(config), server_name)), authority)
            }
        };
        Ok(Target {
            address: address.to_owned(),
            host,
            port,
            tls,
            authority,
            timeout,
            authorization: None,
        })
    }

    /// Sends `token` as a bearer token on every call.
    pub fn set_token(&mut self, token: &str) -> Result<(), String> {
        if token.is_empty() {
            return Err("the token file is empty".into());
        }
        let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the token holds characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// What the TLS handshake settled, as the probe reports it.
#[derive(Debug, Clone)]
pub struct TlsSession {
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: Option<String>,
    pub alpn: Option<String>,
    /// As the server sent it, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// TCP connect and TLS handshake together.
    pub handshake: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {address}: {error}")]
    Tcp { address: String, error: String },
    #[error("no {what} within {}", humantime::format_duration(*.after))]
    Timeout { what: &'static str, after: Duration },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the server ended the connection right after the TLS handshake ({0}); it probably refused the client certificate")]
    RefusedAfterHandshake(String),
    #[error("HTTP/2 handshake failed: {0}")]
    Http2(String),
}

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub at: Instant,
    /// `None` for a clean end (after a GOAWAY without error, or EOF).
    pub error: Option<String>,
}

/// One open HTTP/2 connection.
pub struct Conn {
    sender: http2::SendRequest<Full<Bytes>>,
    scheme: &'static str,
    authority: String,
    authorization: Option<http::HeaderValue>,
    pub tls: Option<TlsSession>,
    pub tap: tap::Log,
    ended: watch::Receiver<Option<Ended>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn within<T>(
    after: Duration,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(after, f)
        .await
        .map_err(|_| ConnectError::Timeout { what, after })?
}

/// Opens a connection to `target`; with `ping_interval`, hyper sends a PING
/// after that long without reading anything, with or without calls open,
/// as the SDKs do.
pub async fn connect(
    target: &Target,
    ping_interval: Option<Duration>,
) -> Result<Conn, ConnectError> {
    let started = Instant::now();
    let address = target.address.clone();
    let tcp = within(target.timeout, "TCP connection", async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| ConnectError::Tcp {
                address: address.clone(),
                error: e.to_string(),
            })?;
        // Latency is what is measured: no Nagle delay on small calls.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    })
    .await?;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(interval) = ping_interval {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true);
    }
    let Some((connector, name)) = &target.tls else {
        let (io, log) = tap::Tapped::new(tcp, Bytes::new());
        return handshake(target, builder, io, log, None).await;
    };
    let mut stream = within(target.timeout, "TLS handshake", async {
        connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| ConnectError::Tls(chain(&e)))
    })
    .await?;
    let handshake_took = started.elapsed();
    let session = {
        let (_, conn) = stream.get_ref();
        TlsSession {
            version: conn
                .protocol_version()
                .map(version_name)
                .unwrap_or_else(|| "unknown".into()),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_else(|| "unknown".into()),
            key_exchange: conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            chain: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            handshake: handshake_took,
        }
    };
    // The server's first bytes: its SETTINGS, or (TLS 1.3) the alert that
    // says it refused the client certificate after all.
    let mut first = vec![0u8; 16 * 1024];
    let pending = match tokio::time::timeout(
        FIRST_BYTES_WAIT.min(target.timeout),
        stream.read(&mut first),
    )
    .await
    {
        Err(_) => Bytes::new(),
        Ok(Ok(0)) => {
            return Err(ConnectError::RefusedAfterHandshake(
                "it closed the connection".into(),
            ))
        }
        Ok(Ok(n)) => Bytes::copy_from_slice(&first[..n]),
        Ok(Err(e)) => return Err(ConnectError::RefusedAfterHandshake(chain(&e))),
    };
    let (io, log) = tap::Tapped::new(stream, pending);
    handshake(target, builder, io, log, Some(session)).await
}

async fn handshake<T>(
    target: &Target,
    builder: http2::Builder<TokioExecutor>,
    io: T,
    log: tap::Log,
    tls: Option<TlsSession>,
) -> Result<Conn, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = within(target.timeout, "HTTP/2 handshake", async {
        builder
            .handshake::<_, Full<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| ConnectError::Http2(chain(&e)))
    })
    .await?;
    let (tx, ended) = watch::channel(None);
    let driver = tokio::spawn(async move {
        let error = conn.await.err().map(|e| chain(&e));
        let _ = tx.send(Some(Ended {
            at: Instant::now(),
            error,
        }));
    });
    Ok(Conn {
        sender,
        scheme: if tls.is_some() { "https" } else { "http" },
        authority: target.authority.clone(),
        authorization: target.authorization.clone(),
        tls,
        tap: log,
        ended,
        driver,
    })
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        other => format!("{other:?}"),
    }
}

/// An error and its causes, each once (hyper's and h2's errors repeat
/// their source's text in their own).
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The HTTP/2 error code in an error's causes (a reset stream's, a GOAWAY's).
fn h2_reason(e: &(dyn StdError + 'static)) -> Option<h2::Reason> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        source = s.source();
    }
    None
}

impl Conn {
    /// Whether the connection has ended (or hyper will send no more on it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.ended.borrow().is_some()
    }

    /// How the connection ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.ended.borrow().clone()
    }

    /// Waits until the connection ends.
    pub async fn closed(&self) -> Ended {
        let mut ended = self.ended.clone();
        loop {
            if let Some(e) = ended.borrow_and_update().clone() {
                return e;
            }
            if ended.changed().await.is_err() {
                // The driver is gone without a word: it was aborted.
                return Ended {
                    at: Instant::now(),
                    error: Some("the connection's task ended".into()),
                };
            }
        }
    }

    /// One unary call: `message` (protobuf, uncompressed) to `path`, with
    /// `headers`, answered within `timeout` (after which the call is
    /// cancelled, RST_STREAM CANCEL).
    pub async fn unary(
        &self,
        path: &str,
        message: &Bytes,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Answer {
        let started = Instant::now();
        let mut answer = Answer::default();
        let call = self.call(path, message, headers, &mut answer);
        if tokio::time::timeout(timeout, call).await.is_err() {
            answer.failure = Some(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ));
            answer.timed_out = true;
        }
        answer.elapsed = started.elapsed();
        answer
    }

    async fn call(
        &self,
        path: &str,
        message: &Bytes,
        headers: &[(&'static str, String)],
        answer: &mut Answer,
    ) {
        let len = match u32::try_from(message.len()) {
            Ok(len) => len,
            Err(_) => {
                answer.failure = Some("a gRPC message must be under 4 GiB".into());
                return;
            }
        };
        let mut body = BytesMut::with_capacity(PREFIX_LEN + message.len());
        body.put_u8(0);
        body.put_u32(len);
        body.put_slice(message);
        let mut request =
            http::Request::post(format!("{}://{}{path}", self.scheme, self.authority))
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .header(http::header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        let request = match request.body(Full::new(body.freeze())) {
            Ok(r) => r,
            Err(e) => {
                answer.failure = Some(format!("cannot build the request: {e}"));
                return;
            }
        };
        let mut sender = self.sender.clone();
        if let Err(e) = sender.ready().await {
            answer.failure = Some(format!("the connection is closed: {}", chain(&e)));
            return;
        }
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                answer.reset = h2_reason(&e);
                answer.failure = Some(describe_failure(&e, answer.reset));
                return;
            }
        };
        let (parts, mut body) = response.into_parts();
        answer.http_status = Some(parts.status.as_u16());
        answer.server = header(&parts.headers, "server");
        answer.content_type = header(&parts.headers, "content-type");
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    answer.reset = h2_reason(&e);
                    answer.failure = Some(describe_failure(&e, answer.reset));
                    break;
                }
            };
            match frame.into_data() {
                Ok(d) => {
                    let room = MAX_KEPT_RESPONSE.saturating_sub(data.len());
                    data.put_slice(&d[..d.len().min(room)]);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        let status_from = match &trailers {
            Some(t) if t.contains_key("grpc-status") => t,
            _ => &parts.headers,
        };
        answer.grpc_status = crate::grpc::grpc_status(status_from);
        answer.grpc_message = header(status_from, "grpc-message").map(|m| percent_decode(&m));
        answer.message = first_message(&data);
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn describe_failure(e: &(dyn StdError + 'static), reason: Option<h2::Reason>) -> String {
    let text = chain(e);
    match reason {
        Some(r) if !text.contains(&format!("{r:?}")) => format!("{text} ({r:?})"),
        _ => text,
    }
}

/// The first complete, uncompressed message of a response body.
fn first_message(body: &[u8]) -> Option<Bytes> {
    let prefix: [u8; PREFIX_LEN] = body.get(..PREFIX_LEN)?.try_into().ok()?;
    let prefix = parse_prefix(prefix).ok()?;
    if prefix.compressed {
        return None;
    }
    let end = PREFIX_LEN.checked_add(usize::try_from(prefix.len).ok()?)?;
    body.get(PREFIX_LEN..end).map(Bytes::copy_from_slice)
}

/// `grpc-message` is percent-encoded (gRPC's spec: `%XX` for bytes outside
/// printable ASCII and for `%` itself).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How one call ended, as the probe reports it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub elapsed: Duration,
    pub http_status: Option<u16>,
    /// The response's `server` header: often names an intermediary.
    pub server: Option<String>,
    pub content_type: Option<String>,
    pub grpc_status: Option<i32>,
    pub grpc_message: Option<String>,
    /// The first response message.
    pub message: Option<Bytes>,
    /// The call broke (reset, connection error) or timed out.
    pub failure: Option<String>,
    /// The HTTP/2 error code of a reset or GOAWAY that ended it.
    pub reset: Option<h2::Reason>,
    pub timed_out: bool,
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none() && self.grpc_status == Some(0)
    }

    /// The gRPC status name, or what stood in for one.
    pub fn status_name(&self) -> String {
        match (self.grpc_status, &self.failure, self.http_status) {
            (_, Some(_), _) if self.timed_out => "TIMEOUT".into(),
            (_, Some(_), _) => match self.reset {
                Some(r) => format!("RESET {r:?}"),
                None => "CONNECTION_ERROR".into(),
            },
            (Some(code), None, _) => code_name(code).into(),
            (None, None, Some(http)) => format!("HTTP {http}"),
            (None, None, None) => "NO_STATUS".into(),
        }
    }

    /// One line: `OK`, `PERMISSION_DENIED: <message>`, `HTTP 504 from
    /// nginx/1.22.1 (text/html), no grpc-status`, or how it broke.
    pub fn summary(&self) -> String {
        if let Some(failure) = &self.failure {
            return match self.http_status {
                Some(http) if !self.timed_out => {
                    format!("{failure} (after the response headers, HTTP {http})")
                }
                _ => failure.clone(),
            };
        }
        match self.grpc_status {
            Some(code) => match self.grpc_message.as_deref() {
                Some(m) if !m.is_empty() => format!("{}: {m}", code_name(code)),
                _ => code_name(code).to_owned(),
            },
            None => {
                let http = self.http_status.unwrap_or(0);
                let from = self
                    .server
                    .as_deref()
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default();
                let ct = self
                    .content_type
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                format!("HTTP {http}{from}{ct}, no grpc-status")
            }
        }
    }
}

/// gRPC's status code names.
pub fn code_name(code: i32) -> &'static str {
    crate::grpc::code_name(code).unwrap_or("UNKNOWN_CODE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_address("127.0.0.1:7443"),
            Some(("127.0.0.1".into(), 7443))
        );
        assert_eq!(split_address("[::1]:7443"), Some(("::1".into(), 7443)));
        assert_eq!(
            split_address("temporal.example.org:443"),
            Some(("temporal.example.org".into(), 443))
        );
        assert_eq!(split_address("localhost"), None);
        assert_eq!(split_address(":7443"), None);
        assert_eq!(split_address("localhost:http"), None);
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%25c"), "a b%c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn the_first_message_is_read_from_its_prefix() {
        assert_eq!(
            first_message(&[0, 0, 0, 0, 2, 8, 1, 9]).as_deref(),
            Some(&[8u8, 1][..])
        );
        assert_eq!(first_message(&[0, 0, 0, 0, 3, 8]), None);
        assert_eq!(first_message(&[1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn answers_sum_up_in_one_line() {
        let denied = Answer {
            http_status: Some(200),
            grpc_status: Some(7),
            grpc_message: Some("permission denied: x".into()),
            ..Answer::default()
        };
        assert_eq!(denied.summary(), "PERMISSION_DENIED: permission denied: x");
        assert_eq!(denied.status_name(), "PERMISSION_DENIED");
        let gateway = Answer {
            http_status: Some(504),
            server: Some("nginx/1.22.1".into()),
            content_type: Some("text/html".into()),
            ..Answer::default()
        };
        assert_eq!(
            gateway.summary(),
            "HTTP 504 from nginx/1.22.1 (text/html), no grpc-status"
        );
        assert_eq!(gateway.status_name(), "HTTP 504");
    }
}
