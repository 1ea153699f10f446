//! Accepting one TLS connection: refusing clients that do not speak TLS at
//! all (with a plaintext answer they can understand), running the rustls
//! handshake under a timeout, requiring ALPN `h2`, and turning every failure
//! into a [`HandshakeRefusal`] whose text an operator understands without a TLS
//! manual.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::{AlertDescription, CertificateError, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::identity::PeerIdentity;
use super::ALPN_H2;

/// A completed handshake: the stream, and what the proxy knows about the
/// client connection from it.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    pub info: Arc<ConnectionInfo>,
}

/// What the proxy knows about a client connection, shared by its calls.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The verified client certificate's identity, read once.
    pub identity: Option<Arc<PeerIdentity>>,
    /// The server name the client asked for (SNI), if any.
    pub sni: Option<String>,
}

/// Why a connection was refused before any HTTP/2 was spoken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error("no client certificate presented")]
    NoClientCertificate,
    #[error("client certificate is not issued by a trusted CA (unknown CA)")]
    UnknownCa,
    #[error("client certificate signature does not verify against the trusted CA (unknown CA or forged certificate)")]
    BadSignature,
    #[error("client certificate expired{}", at("not after", .not_after))]
    Expired { not_after: Option<SystemTime> },
    #[error("client certificate not yet valid{}", at("not before", .not_before))]
    NotYetValid { not_before: Option<SystemTime> },
    #[error("client certificate revoked (listed in a configured CRL)")]
    Revoked,
    #[error("client certificate has the wrong key usage: it is not allowed for client authentication (extended key usage lacks clientAuth)")]
    WrongKeyUsage,
    #[error("client certificate rejected: {0}")]
    BadCertificate(String),
    /// Verified by rustls, but its identity cannot be read (it cannot
    /// happen for a certificate webpki accepted; refused rather than served
    /// with an identity the proxy cannot name).
    #[error("client certificate unreadable: {0}")]
    UnreadableCertificate(String),
    #[error("client did not offer ALPN h2 (offered: {})", offered_list(.offered))]
    NoAlpnH2 { offered: Vec<String> },
    #[error("plaintext HTTP/2 (h2c) sent to the TLS port; this port requires TLS with a client certificate")]
    PlaintextH2,
    #[error("plaintext HTTP/1.x request sent to the TLS port; this port requires TLS with a client certificate")]
    PlaintextHttp1,
    #[error("not a TLS handshake (first bytes {0})")]
    NotTls(String),
    /// rustls refuses handshake messages over 64 KiB and sends no alert
    /// for it (the client sees the connection close).
    #[error("client handshake message over TLS's 64 KiB limit: a client certificate chain that large? (send fewer or smaller certificates; the client gets no TLS alert for this, only the close)")]
    TooLarge,
    #[error("client TLS version or cipher suites not acceptable: {0}")]
    Incompatible(String),
    #[error("client aborted the handshake with alert '{0}' (it probably does not trust the server certificate or its CA)")]
    ClientAlert(String),
    #[error("handshake not completed within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// `limits.max_connections` was reached and a new connection took the
    /// place of this one, the oldest still in its handshake.
    #[error("handshake still in progress when limits.max_connections was reached: the oldest handshake gives its place to a new connection")]
    Evicted,
    #[error("client closed the connection before completing the handshake")]
    Closed,
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("I/O error during the handshake: {0}")]
    Io(String),
    /// `listen.proxy_protocol` is on and the connection did not start with
    /// an acceptable PROXY protocol v2 header (the reason in words, from
    /// `server::proxy_header`).
    #[error("{0}")]
    ProxyHeader(String),
}

impl HandshakeRefusal {
    /// Every [`HandshakeRefusal::label`], for the metrics (whose series start at
    /// zero); a test checks the two agree.
    pub const LABELS: [&'static str; 22] = [
        "no_client_certificate",
        "unknown_ca",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "revoked",
        "wrong_key_usage",
        "bad_certificate",
        "unreadable_certificate",
        "no_alpn_h2",
        "plaintext_h2c",
        "plaintext_http1",
        "not_tls",
        "handshake_too_large",
        "incompatible",
        "client_alert",
        "timeout",
        "evicted",
        "closed",
        "tls_error",
        "io_error",
        "proxy_header",
    ];

    /// A short stable label (for metrics and log fields).
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeRefusal::NoClientCertificate => "no_client_certificate",
            HandshakeRefusal::UnknownCa => "unknown_ca",
            HandshakeRefusal::BadSignature => "bad_signature",
            HandshakeRefusal::Expired { .. } => "expired",
            HandshakeRefusal::NotYetValid { .. } => "not_yet_valid",
            HandshakeRefusal::Revoked => "revoked",
            HandshakeRefusal::WrongKeyUsage => "wrong_key_usage",
            HandshakeRefusal::BadCertificate(_) => "bad_certificate",
            HandshakeRefusal::UnreadableCertificate(_) => "unreadable_certificate",
            HandshakeRefusal::NoAlpnH2 { .. } => "no_alpn_h2",
            HandshakeRefusal::PlaintextH2 => "plaintext_h2c",
            HandshakeRefusal::PlaintextHttp1 => "plaintext_http1",
            HandshakeRefusal::NotTls(_) => "not_tls",
            HandshakeRefusal::TooLarge => "handshake_too_large",
            HandshakeRefusal::Incompatible(_) => "incompatible",
            HandshakeRefusal::ClientAlert(_) => "client_alert",
            HandshakeRefusal::Timeout(_) => "timeout",
            HandshakeRefusal::Evicted => "evicted",
            HandshakeRefusal::Closed => "closed",
            HandshakeRefusal::Tls(_) => "tls_error",
            HandshakeRefusal::Io(_) => "io_error",
            HandshakeRefusal::ProxyHeader(_) => "proxy_header",
        }
    }

    /// Connections that closed without trying (TCP health checks, port
    /// scans) are not worth a warning.
    pub fn is_quiet(&self) -> bool {
        matches!(self, HandshakeRefusal::Closed)
    }
}

fn at(what: &str, t: &Option<SystemTime>) -> String {
    match t {
        Some(t) => format!(" ({what} {})", humantime::format_rfc3339_seconds(*t)),
        None => String::new(),
    }
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "none".to_owned()
    } else {
        offered.join(", ")
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Accepts one connection from `peer` under `timeout`.
pub async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<Accepted, HandshakeRefusal> {
    let (stream, sni) = match tokio::time::timeout(timeout, accept_inner(tcp, config)).await {
        Ok(result) => result?,
        Err(_) => return Err(HandshakeRefusal::Timeout(timeout)),
    };
    // The certificate was verified by the handshake; reading it cannot fail
    // for one webpki accepted, but if it does, refuse.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    let identity = match leaf.map(|der| PeerIdentity::from_der(der)) {
        Some(Ok(id)) => Some(Arc::new(id)),
        Some(Err(e)) => return Err(HandshakeRefusal::UnreadableCertificate(e.to_string())),
        None => None,
    };
    Ok(Accepted {
        stream,
        info: Arc::new(ConnectionInfo {
            peer,
            identity,
            sni,
        }),
    })
}

async fn accept_inner(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> Result<(TlsStream<TcpStream>, Option<String>), HandshakeRefusal> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Err(HandshakeRefusal::Closed),
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => return Err(refuse_plaintext(tcp).await),
        Ok(_) => {}
        // A reset before the first byte is a probe too (HAProxy's health
        // checks close with RST): `closed`, as classify_io says.
        Err(e) => return Err(classify_io(&e, &[])),
    }

    let mut lazy = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match (&mut lazy).await {
        Ok(start) => start,
        Err(e) => {
            if let Some(tcp) = lazy.take_io() {
                tokio::spawn(linger_close(tcp));
            }
            return Err(classify_io(&e, &[]));
        }
    };
    let hello = start.client_hello();
    let offered: Vec<String> = hello
        .alpn()
        .map(|protos| {
            protos
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let sni = hello.server_name().map(str::to_owned);

    let mut stream = match start.into_stream(config).into_fallible().await {
        Ok(stream) => stream,
        Err((e, tcp)) => {
            tokio::spawn(linger_close(tcp));
            return Err(classify_io(&e, &offered));
        }
    };
    if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        // The handshake itself completed (the client offered no ALPN at
        // all): end it with close_notify.
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        return Err(HandshakeRefusal::NoAlpnH2 { offered });
    }
    Ok((stream, sni))
}

/// Closes a refused connection so that the client reads the TLS alert that
/// says why: send FIN after the alert, then read and discard what the client
/// still sends (the rest of its handshake flight) for a moment. Closing with
/// unread data would make the kernel send a RST, and the client would see
/// "broken pipe" instead of the alert.
async fn linger_close(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

const LINGER: Duration = Duration::from_secs(1);

/// A client that does not speak TLS: read enough to tell what it speaks,
/// answer in its own protocol that TLS is required, and refuse.
async fn refuse_plaintext(mut tcp: TcpStream) -> HandshakeRefusal {
    let mut buf = [0u8; 24];
    let mut n = 0;
    // Enough bytes to recognise the request, or whatever came within 1 s.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while n < H2_PREFACE.len() {
            match tcp.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    let got = &buf[..n];
    let message = b"this port requires TLS with a client certificate (mTLS)";
    let (refusal, reply) = if got.starts_with(H2_PREFACE) {
        (HandshakeRefusal::PlaintextH2, h2_goaway(message))
    } else if looks_like_http1(got) {
        let mut reply = Vec::from(
            &b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"[..],
        );
        reply.extend_from_slice(message);
        reply.push(b'\n');
        (HandshakeRefusal::PlaintextHttp1, reply)
    } else {
        let hex: Vec<String> = got.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mut what = hex.join(" ");
        // A load balancer sending PROXY protocol to a listener not set up
        // for it: say which setting to look at.
        if got.starts_with(b"\r\n\r\n\0\r\nQUIT\n") || got.starts_with(b"PROXY ") {
            what.push_str(": a PROXY protocol header, but listen.proxy_protocol is off");
        }
        (HandshakeRefusal::NotTls(what), Vec::new())
    };
    if !reply.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = tcp.write_all(&reply).await;
            let _ = tcp.shutdown().await;
        })
        .await;
    }
    refusal
}

fn looks_like_http1(got: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| got.starts_with(m))
}

/// A server preface (empty SETTINGS) followed by GOAWAY(PROTOCOL_ERROR) whose
/// debug data says why, so an h2c client shows the reason.
fn h2_goaway(debug: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let len = 8 + debug.len();
    out.extend_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x7,
        0,
        0,
        0,
        0,
        0,
    ]);
    out.extend_from_slice(&0u32.to_be_bytes()); // last stream id
    out.extend_from_slice(&1u32.to_be_bytes()); // PROTOCOL_ERROR
    out.extend_from_slice(debug);
    out
}

fn classify_io(e: &std::io::Error, offered_alpn: &[String]) -> HandshakeRefusal {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return classify(tls, offered_alpn);
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => HandshakeRefusal::Closed,
        _ => HandshakeRefusal::Io(e.to_string()),
    }
}

/// Maps a rustls error to the reason an operator reads.
pub fn classify(e: &rustls::Error, offered_alpn: &[String]) -> HandshakeRefusal {
    use rustls::Error as E;
    match e {
        E::NoCertificatesPresented => HandshakeRefusal::NoClientCertificate,
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => HandshakeRefusal::UnknownCa,
            CertificateError::BadSignature => HandshakeRefusal::BadSignature,
            CertificateError::Expired => HandshakeRefusal::Expired { not_after: None },
            CertificateError::ExpiredContext { not_after, .. } => HandshakeRefusal::Expired {
                not_after: Some(unix_to_system(not_after)),
            },
            CertificateError::NotValidYet => HandshakeRefusal::NotYetValid { not_before: None },
            CertificateError::NotValidYetContext { not_before, .. } => {
                HandshakeRefusal::NotYetValid {
                    not_before: Some(unix_to_system(not_before)),
                }
            }
            CertificateError::Revoked => HandshakeRefusal::Revoked,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                HandshakeRefusal::WrongKeyUsage
            }
            other => HandshakeRefusal::BadCertificate(format!("{other:?}")),
        },
        E::NoApplicationProtocol => HandshakeRefusal::NoAlpnH2 {
            offered: offered_alpn.to_vec(),
        },
        E::PeerIncompatible(p) => HandshakeRefusal::Incompatible(format!("{p:?}")),
        E::AlertReceived(alert) => match alert {
            AlertDescription::NoApplicationProtocol => HandshakeRefusal::NoAlpnH2 {
                offered: offered_alpn.to_vec(),
            },
            other => HandshakeRefusal::ClientAlert(format!("{other:?}")),
        },
        E::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge) => {
            HandshakeRefusal::TooLarge
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            HandshakeRefusal::NotTls(e.to_string())
        }
        other => HandshakeRefusal::Tls(other.to_string()),
    }
}

fn unix_to_system(t: &rustls::pki_types::UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// Logs a refusal as one line (a warning, except for probes that just
/// connect and close). `via`: the load balancer's address when the peer's
/// came from its PROXY protocol header.
pub fn log_refusal(peer: SocketAddr, via: Option<SocketAddr>, refusal: &HandshakeRefusal) {
    let via = via.map(tracing::field::display);
    if refusal.is_quiet() {
        tracing::debug!(peer = %peer, via, reason = %refusal, kind = refusal.label(), "TLS handshake refused");
    } else if crate::logging::limit::HANDSHAKE_REFUSED.admit() {
        tracing::warn!(peer = %peer, via, reason = %refusal, kind = refusal.label(), "TLS handshake refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(
            classify(&rustls::Error::NoCertificatesPresented, &[]).to_string(),
            "no client certificate presented"
        );
        let r = classify(
            &rustls::Error::InvalidCertificate(CertificateError::Revoked),
            &[],
        );
        assert!(r.to_string().contains("revoked"));
        let r = classify(&rustls::Error::NoApplicationProtocol, &["http/1.1".into()]);
        assert_eq!(
            r.to_string(),
            "client did not offer ALPN h2 (offered: http/1.1)"
        );
        let r = classify(
            &rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                time: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                    2_000_000_000,
                )),
                not_after: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                    1_700_000_000,
                )),
            }),
            &[],
        );
        assert_eq!(
            r.to_string(),
            "client certificate expired (not after 2023-11-14T22:13:20Z)"
        );
    }

    #[test]
    fn h2_goaway_frame_is_well_formed() {
        let f = h2_goaway(b"why");
        // SETTINGS frame header, then GOAWAY with 8 + 3 bytes of payload.
        assert_eq!(&f[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..12], &[0, 0, 11]);
        assert_eq!(f[12], 7);
        assert_eq!(&f[f.len() - 3..], b"why");
    }

    #[test]
    fn http1_requests_are_recognised() {
        assert!(looks_like_http1(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http1(b"POST /x HTTP/1.1"));
        assert!(!looks_like_http1(H2_PREFACE));
    }

    #[test]
    fn every_label_is_listed_once() {
        let every = [
            HandshakeRefusal::NoClientCertificate,
            HandshakeRefusal::UnknownCa,
            HandshakeRefusal::BadSignature,
            HandshakeRefusal::Expired { not_after: None },
            HandshakeRefusal::NotYetValid { not_before: None },
            HandshakeRefusal::Revoked,
            HandshakeRefusal::WrongKeyUsage,
            HandshakeRefusal::BadCertificate(String::new()),
            HandshakeRefusal::UnreadableCertificate(String::new()),
            HandshakeRefusal::NoAlpnH2 { offered: vec![] },
            HandshakeRefusal::PlaintextH2,
            HandshakeRefusal::PlaintextHttp1,
            HandshakeRefusal::NotTls(String::new()),
            HandshakeRefusal::TooLarge,
            HandshakeRefusal::Incompatible(String::new()),
            HandshakeRefusal::ClientAlert(String::new()),
            HandshakeRefusal::Timeout(Duration::ZERO),
            HandshakeRefusal::Evicted,
            HandshakeRefusal::Closed,
            HandshakeRefusal::Tls(String::new()),
            HandshakeRefusal::Io(String::new()),
            HandshakeRefusal::ProxyHeader(String::new()),
        ];
        let labels: Vec<&str> = every.iter().map(HandshakeRefusal::label).collect();
        assert_eq!(labels, HandshakeRefusal::LABELS);
    }

    /// Every rustls error the handshake can end with, as the operator
    /// reads it: (error, ALPN the client offered) -> (label, reason).
    #[test]
    fn rustls_errors_become_labels_and_reasons() {
        use rustls::pki_types::UnixTime;
        use rustls::Error as E;
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let http11 = vec!["http/1.1".to_owned()];
        let table: Vec<(E, &[String], &str, &str)> = vec![
            (E::NoCertificatesPresented, &[], "no_client_certificate", "no client certificate presented"),
            (
                E::InvalidCertificate(CertificateError::UnknownIssuer),
                &[],
                "unknown_ca",
                "client certificate is not issued by a trusted CA (unknown CA)",
            ),
            (
                E::InvalidCertificate(CertificateError::BadSignature),
                &[],
                "bad_signature",
                "client certificate signature does not verify against the trusted CA (unknown CA or forged certificate)",
            ),
            (E::InvalidCertificate(CertificateError::Expired), &[], "expired", "client certificate expired"),
            (
                E::InvalidCertificate(CertificateError::ExpiredContext {
                    time: at(2_000_000_000),
                    not_after: at(1_700_000_000),
                }),
                &[],
                "expired",
                "client certificate expired (not after 2023-11-14T22:13:20Z)",
            ),
            (
                E::InvalidCertificate(CertificateError::NotValidYet),
                &[],
                "not_yet_valid",
                "client certificate not yet valid",
            ),
            (
                E::InvalidCertificate(CertificateError::NotValidYetContext {
                    time: at(1_600_000_000),
                    not_before: at(1_700_000_000),
                }),
                &[],
                "not_yet_valid",
                "client certificate not yet valid (not before 2023-11-14T22:13:20Z)",
            ),
            (
                E::InvalidCertificate(CertificateError::Revoked),
                &[],
                "revoked",
                "client certificate revoked (listed in a configured CRL)",
            ),
            (
                E::InvalidCertificate(CertificateError::InvalidPurpose),
                &[],
                "wrong_key_usage",
                "client certificate has the wrong key usage: it is not allowed for client authentication (extended key usage lacks clientAuth)",
            ),
            (
                E::InvalidCertificate(CertificateError::UnhandledCriticalExtension),
                &[],
                "bad_certificate",
                "client certificate rejected: UnhandledCriticalExtension",
            ),
            (
                E::NoApplicationProtocol,
                &http11,
                "no_alpn_h2",
                "client did not offer ALPN h2 (offered: http/1.1)",
            ),
            (
                E::AlertReceived(AlertDescription::NoApplicationProtocol),
                &[],
                "no_alpn_h2",
                "client did not offer ALPN h2 (offered: none)",
            ),
            (
                E::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
                &[],
                "incompatible",
                "client TLS version or cipher suites not acceptable: NoCipherSuitesInCommon",
            ),
            (
                E::AlertReceived(AlertDescription::UnknownCA),
                &[],
                "client_alert",
                "client aborted the handshake with alert 'UnknownCA' (it probably does not trust the server certificate or its CA)",
            ),
            (
                E::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge),
                &[],
                "handshake_too_large",
                "client handshake message over TLS's 64 KiB limit: a client certificate chain that large? (send fewer or smaller certificates; the client gets no TLS alert for this, only the close)",
            ),
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                &[],
                "not_tls",
                "not a TLS handshake (first bytes received corrupt message of type InvalidContentType)",
            ),
            (
                E::General("something else".into()),
                &[],
                "tls_error",
                "TLS error: unexpected error: something else",
            ),
        ];
        for (error, offered, label, reason) in table {
            let refusal = classify(&error, offered);
            assert_eq!(
                (refusal.label(), refusal.to_string().as_str()),
                (label, reason),
                "{error:?}"
            );
            assert!(HandshakeRefusal::LABELS.contains(&label));
        }
    }

    /// What a client that does not complete a TLS handshake sends.
    struct RawClient {
        sends: &'static [u8],
        /// Closes its side after sending.
        closes: bool,
    }

    /// The refusal of a connection whose client does `client`, under a
    /// handshake timeout of 300 ms, and what the client read back.
    async fn refused(client: RawClient) -> (HandshakeRefusal, Vec<u8>) {
        let (config, _dir) = crate::layers::testing::config("http://127.0.0.1:9", "");
        let tls = crate::tls::server::server_config(&config.tls.material).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(client.sends).await.unwrap();
            if client.closes {
                tcp.shutdown().await.unwrap();
            }
            let mut reply = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await;
            reply
        });
        let (tcp, peer) = listener.accept().await.unwrap();
        let refusal = match accept(tcp, peer, tls, Duration::from_millis(300)).await {
            Err(refusal) => refusal,
            Ok(_) => panic!("accepted"),
        };
        (refusal, reader.await.unwrap())
    }

    /// Clients that never start TLS: (client) -> (label, reason, the
    /// start of what it is told).
    #[tokio::test]
    async fn clients_that_do_not_speak_tls_are_refused_with_a_reason() {
        let table: [(RawClient, &str, &str, &[u8]); 5] = [
            (
                RawClient { sends: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", closes: false },
                "plaintext_h2c",
                "plaintext HTTP/2 (h2c) sent to the TLS port; this port requires TLS with a client certificate",
                // An empty SETTINGS, then GOAWAY.
                &[0, 0, 0, 4, 0, 0, 0, 0, 0],
            ),
            (
                RawClient { sends: b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n", closes: false },
                "plaintext_http1",
                "plaintext HTTP/1.x request sent to the TLS port; this port requires TLS with a client certificate",
                b"HTTP/1.1 400 Bad Request\r\n",
            ),
            (
                RawClient { sends: b"\x00\x01garbage", closes: true },
                "not_tls",
                "not a TLS handshake (first bytes 00 01 67 61 72 62 61 67)",
                b"",
            ),
            (RawClient { sends: b"", closes: true }, "closed", "client closed the connection before completing the handshake", b""),
            (
                RawClient { sends: &[TLS_HANDSHAKE_RECORD], closes: false },
                "timeout",
                "handshake not completed within 300ms",
                b"",
            ),
        ];
        for (client, label, reason, told) in table {
            let sends = client.sends;
            let (refusal, reply) = refused(client).await;
            assert_eq!(
                (refusal.label(), refusal.to_string().as_str()),
                (label, reason),
                "{sends:?}"
            );
            assert!(reply.starts_with(told), "{sends:?} was told {reply:?}");
            if told.is_empty() {
                assert!(reply.is_empty(), "{sends:?} was told {reply:?}");
            }
        }
    }
}
